"""The MONAI spleen job's files, templates and train script, without a federation.

Bundle mode cannot fetch the real bundle or Task09_Spleen here; its code path runs on a
Decathlon-shaped folder of synthetic volumes and a bundle-shaped configs/train.json.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
JOB = ROOT / "examples/jobs/spleen_ct_segmentation"
SCRIPT = JOB / "app/custom/spleen_train.py"
NETWORK = SCRIPT.with_name("spleen_network.py")
TEMPLATES = JOB


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def train():
    pytest.importorskip("monai")
    pytest.importorskip("nibabel")
    return _load("spleen_train", SCRIPT)


@pytest.fixture(scope="module")
def network():
    pytest.importorskip("monai")
    return _load("spleen_network", NETWORK)


def _configs(job: Path):
    server = json.loads((job / "app/config/config_fed_server.json").read_text())
    client = json.loads((job / "app/config/config_fed_client.json").read_text())
    meta = json.loads((job / "meta.json").read_text())
    return meta, server, client


def _component(server: dict, ident: str) -> dict:
    return next(c for c in server["components"] if c["id"] == ident)


def _script_args(client: dict) -> str:
    return client["executors"][0]["executor"]["args"]["task_script_args"]


def args_seed(client: dict) -> int:
    words = _script_args(client).split()
    return int(words[words.index("--seed") + 1])


def test_templates_mirror_the_job_layout():
    rendered = sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.j2"))
    assert rendered == [
        "app/config/config_fed_client.json.j2",
        "app/config/config_fed_server.json.j2",
        "meta.json.j2",
    ]
    assert SCRIPT.is_file()


@pytest.mark.parametrize(
    "mode, channels, res_units, rounds",
    [("synthetic", [8, 16, 32, 64], 1, 2), ("bundle", [16, 32, 64, 128, 256], 2, 10)],
)
def test_rendered_job_agrees_between_server_and_client(train, network, spleen_jobs, mode, channels, res_units, rounds):
    meta, server, client = _configs(spleen_jobs[mode])
    assert meta["name"] == "spleen_ct_segmentation" and meta["min_clients"] == 2
    assert meta["custom_props"]["data_mode"] == mode
    fedavg = server["workflows"][0]["args"]
    assert fedavg == {"num_clients": 2, "num_rounds": rounds, "aggregation_weights": {}}
    net = _component(server, "persistor")["args"]["model"]
    assert net["path"] == "spleen_network.SeededUNet"
    assert net["args"]["seed"] == 0 and args_seed(client) == 0
    assert net["args"]["channels"] == channels
    assert net["args"]["strides"] == [2] * (len(channels) - 1)
    assert net["args"]["num_res_units"] == res_units
    assert _component(server, "model_selector")["args"]["key_metric"] == train.KEY_METRIC
    args = train.parse_args(_script_args(client).split())
    assert args.data_mode == mode
    assert list(args.channels) == channels and args.num_res_units == res_units
    # The network the clients build loads the server's initial weights.
    train.build_network(args).load_state_dict(network.SeededUNet(**net["args"]).state_dict())


def test_initial_model_is_the_same_for_a_seed_and_leaves_the_random_state_alone(network):
    import torch

    kwargs = dict(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=0)
    state = torch.random.get_rng_state()
    first, again, other = (network.SeededUNet(seed=s, **kwargs).state_dict() for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_overrides_reach_both_sides(train, spleen_jobs):
    # The variables are in conftest.SPLEEN_VARIANTS["overrides"].
    meta, server, client = _configs(spleen_jobs["overrides"])
    assert meta["name"] == "spleen_run_2" and meta["min_clients"] == 3
    assert server["workflows"][0]["args"]["num_clients"] == 3
    assert server["workflows"][0]["args"]["num_rounds"] == 7
    assert _component(server, "persistor")["args"]["model"]["args"]["channels"] == [4, 8, 16]
    args = train.parse_args(_script_args(client).split())
    assert list(args.channels) == [4, 8, 16]
    assert args.num_res_units == 0 and args.num_workers == 0  # 0 is a value, not "use the default"
    assert args.bundle_dir == "/srv/bundles/spleen_ct_segmentation"
    assert args.intensity_range == (-100.0, 200.0)
    assert _component(server, "persistor")["args"]["model"]["args"]["seed"] == 7 and args.seed == 7


def test_synthetic_data_is_seeded_by_site(train, tmp_path):
    import nibabel

    args = train.parse_args(["--synthetic_cases", "3", "--synthetic_size", "24"])
    one = Path(train.make_synthetic(str(tmp_path / "a"), "site-1", args))
    again = Path(train.make_synthetic(str(tmp_path / "b"), "site-1", args))
    other = Path(train.make_synthetic(str(tmp_path / "c"), "site-2", args))

    def read(folder):
        return [nibabel.load(folder / "imagesTr" / f"spleen_{i}.nii.gz").get_fdata().tobytes() for i in range(3)]

    assert read(one) == read(again)
    assert read(one) != read(other)
    assert len(train.read_datalist(str(one))) == 3


def _fake_bundle(folder: Path, roi: int, channels: list[int], res_units: int = 1) -> Path:
    """A configs/train.json shaped like the spleen_ct_segmentation bundle's (only the keys the script reads)."""
    config = {
        "network_def": {
            "_target_": "UNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "channels": channels,
            "strides": [2] * (len(channels) - 1),
            "num_res_units": res_units,
            "norm": "batch",
        },
        "train": {
            "deterministic_transforms": [
                {"_target_": "LoadImaged", "keys": ["image", "label"]},
                {"_target_": "EnsureChannelFirstd", "keys": ["image", "label"]},
                {"_target_": "Orientationd", "keys": ["image", "label"], "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": ["image", "label"], "pixdim": [1.2, 1.2, 1.5]},
                {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -60, "a_max": 160, "b_min": 0},
                {"_target_": "CropForegroundd", "keys": ["image", "label"], "source_key": "image"},
            ],
            "random_transforms": [
                {"_target_": "RandCropByPosNegLabeld", "spatial_size": [roi, roi, roi], "num_samples": 1},
            ],
        },
    }
    (folder / "configs").mkdir(parents=True)
    (folder / "configs" / "train.json").write_text(json.dumps(config))
    return folder


def test_bundle_mode_code_path(train, tmp_path):
    data = tmp_path / "site-data"
    synth = train.parse_args(["--synthetic_cases", "4", "--synthetic_size", "32"])
    # A Decathlon-shaped Task09_Spleen folder (dataset.json, imagesTr/, labelsTr/) ...
    (Path(train.make_synthetic(str(data), "site-1", synth))).rename(data / "Task09_Spleen")
    # ... and the bundle beside it, where the script looks by default.
    _fake_bundle(data / "spleen_ct_segmentation", roi=16, channels=[4, 8, 16])
    args = train.parse_args(
        ["--data_mode", "bundle", "--data_dir", str(data), "--channels", "4,8,16", "--num_res_units", "1"]
    )
    site = train.SpleenSite(args, "site-1")
    assert args.pixdim == (1.2, 1.2, 1.5) and args.intensity_range == (-60.0, 160.0)
    assert args.roi_size == 16 and args.num_samples == 1
    assert site.train() > 0
    assert 0.0 <= site.evaluate() <= 1.0


def test_bundle_mode_defaults_agree_with_the_published_bundle(train, tmp_path):
    """The settings of spleen_ct_segmentation's configs/train.json as the MONAI model zoo publishes
    it (values written down from it; expressions such as "$@network.parameters()" included, as they
    are there): with them the job's bundle-mode defaults build the same network, and the transform
    settings the script reads are the bundle's."""
    config = {
        "imports": ["$import glob", "$import os", "$import ignite"],
        "bundle_root": ".",
        "dataset_dir": "/workspace/data/Task09_Spleen",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": {
            "_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
            "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch",
        },
        "network": "$@network_def.to(@device)",
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.0001},
        "train": {
            "deterministic_transforms": [
                {"_target_": "LoadImaged", "keys": ["image", "label"]},
                {"_target_": "EnsureChannelFirstd", "keys": ["image", "label"]},
                {"_target_": "Orientationd", "keys": ["image", "label"], "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": ["image", "label"], "pixdim": [1.5, 1.5, 2.0],
                 "mode": ["bilinear", "nearest"]},
                {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164,
                 "b_min": 0, "b_max": 1, "clip": True},
                {"_target_": "EnsureTyped", "keys": ["image", "label"]},
            ],
            "random_transforms": [
                {"_target_": "RandCropByPosNegLabeld", "keys": ["image", "label"], "label_key": "label",
                 "spatial_size": [96, 96, 96], "pos": 1, "neg": 1, "num_samples": 4, "image_key": "image",
                 "image_threshold": 0},
            ],
            "preprocessing": {"_target_": "Compose",
                              "transforms": "$@train#deterministic_transforms + @train#random_transforms"},
        },
    }  # fmt: skip
    bundle = tmp_path / "spleen_ct_segmentation"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "train.json").write_text(json.dumps(config, indent=4))
    args = train.parse_args(["--data_mode", "bundle"])
    train.apply_bundle_settings(args, str(bundle))  # raises when the networks differ
    assert args.pixdim == (1.5, 1.5, 2.0) and args.intensity_range == (-57.0, 164.0)
    assert args.roi_size == 96 and args.num_samples == 4 and args.learning_rate == 0.0001
    net = train.build_network(args)
    assert sum(p.numel() for p in net.parameters()) > 4_000_000  # the bundle's 4.8 M-parameter UNet


def test_bundle_mode_rejects_a_different_network(train, tmp_path):
    bundle = _fake_bundle(tmp_path / "bundle", roi=16, channels=[16, 32, 64, 128, 256])
    args = train.parse_args(["--data_mode", "bundle", "--channels", "8,16,32,64"])
    with pytest.raises(RuntimeError, match="differs from the bundle's network_def"):
        train.apply_bundle_settings(args, str(bundle))


def test_bundle_mode_without_data_or_bundle_says_where_to_get_them(train, tmp_path):
    args = train.parse_args(["--data_mode", "bundle", "--data_dir", str(tmp_path)])
    with pytest.raises(RuntimeError, match="monai.bundle download"):
        train.SpleenSite(args, "site-1")
    _fake_bundle(tmp_path / "spleen_ct_segmentation", roi=96, channels=[16, 32, 64, 128, 256], res_units=2)
    with pytest.raises(RuntimeError, match="Task09_Spleen"):
        train.SpleenSite(train.parse_args(["--data_mode", "bundle", "--data_dir", str(tmp_path)]), "site-1")


def test_invalid_script_args_raise_instead_of_exiting(train):
    with pytest.raises(ValueError, match="invalid task_script_args"):
        train.parse_args(["--no-such-option"])
