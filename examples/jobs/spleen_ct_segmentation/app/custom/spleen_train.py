# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""3D spleen CT segmentation with MONAI, run by NVIDIA FLARE's Client API.

One script serves every task the server sends to a site:

* ``train``: evaluate the received global model (``val_dice``), train it locally, send the
  weights back with the metric (FedAvg selects the best global model by ``val_dice``);
* ``validate`` (cross-site validation): evaluate the received model, send only the metric;
* ``submit_model`` (cross-site validation): send this site's last locally trained weights.

Two data modes share the same code path (NIfTI files read by the same transforms, a 3D
UNet, DiceLoss, DiceMetric); only sizes differ:

* ``bundle``: the site's Medical Segmentation Decathlon ``Task09_Spleen`` folder, with the
  network and transform settings read from the ``spleen_ct_segmentation`` MONAI bundle;
* ``synthetic``: small spleen-like volumes generated once per site, seeded by the site name,
  so that a job trains on a CPU in about a minute.

The site's data folder is ``$NVFLARE_DATA_DIR`` (``--data_dir`` overrides it); without it,
``<client workspace>/data``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import zlib

import numpy as np
import nvflare.client as flare
import torch
from nvflare.client.tracking import MLflowWriter

DATA_ENV = "NVFLARE_DATA_DIR"
BUNDLE_NAME = "spleen_ct_segmentation"
TASK_NAME = "Task09_Spleen"
KEY_METRIC = "val_dice"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


class _Parser(argparse.ArgumentParser):
    # Inside a client job the script runs in a thread: argparse's SystemExit would end it
    # without a trace in the logs, an exception is logged with its message.
    def error(self, message):
        raise ValueError(f"spleen_train.py: invalid task_script_args: {message}")


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--data_mode", choices=("synthetic", "bundle"), default="synthetic")
    p.add_argument("--data_dir", default="", help=f"site data folder (default: ${DATA_ENV})")
    p.add_argument("--bundle_dir", default="", help=f"bundle mode: MONAI bundle (default: DATA_DIR/{BUNDLE_NAME})")
    p.add_argument("--local_epochs", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--learning_rate", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--roi_size", type=int, default=96, help="edge of the cubic training patch, in voxels")
    p.add_argument("--num_samples", type=int, default=4, help="patches cropped per volume and epoch")
    p.add_argument("--pixdim", type=_floats, default=(1.5, 1.5, 2.0), help="target voxel spacing in mm")
    p.add_argument("--intensity_range", type=_floats, default=(-57.0, 164.0), help="CT window (HU) mapped to 0..1")
    p.add_argument("--channels", type=_ints, default=(16, 32, 64, 128, 256), help="UNet channels per level")
    p.add_argument("--num_res_units", type=int, default=2)
    p.add_argument("--norm", default="batch")
    p.add_argument("--val_fraction", type=float, default=0.2, help="share of the site's cases kept for validation")
    p.add_argument("--cache_rate", type=float, default=1.0)
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--synthetic_cases", type=int, default=8, help="synthetic mode: volumes per site")
    p.add_argument("--synthetic_size", type=int, default=48, help="synthetic mode: volume edge in voxels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if len(args.pixdim) != 3 or len(args.intensity_range) != 2 or len(args.channels) < 2:
        p.error("--pixdim needs 3 numbers, --intensity_range 2, --channels at least 2")
    return args


# ----------------------------------------------------------------------------- data


def site_data_dir(args: argparse.Namespace) -> str:
    if args.data_dir:
        return os.path.abspath(args.data_dir)
    if os.environ.get(DATA_ENV):
        return os.path.abspath(os.environ[DATA_ENV])
    # The client job process runs in the client's workspace (the startup kit folder).
    return os.path.join(os.getcwd(), "data")


def read_datalist(dataset_dir: str) -> list[dict]:
    """The ``training`` cases of a Decathlon ``dataset.json`` as absolute file names."""
    with open(os.path.join(dataset_dir, "dataset.json"), encoding="utf-8") as f:
        meta = json.load(f)
    cases = []
    for item in meta.get("training", []):
        image = os.path.normpath(os.path.join(dataset_dir, item["image"]))
        label = os.path.normpath(os.path.join(dataset_dir, item["label"]))
        if os.path.isfile(image) and os.path.isfile(label):
            cases.append({"image": image, "label": label})
    return cases


def find_task09(data_dir: str) -> str:
    for candidate in (data_dir, os.path.join(data_dir, TASK_NAME)):
        if os.path.isfile(os.path.join(candidate, "dataset.json")):
            return candidate
    raise RuntimeError(
        f"bundle mode: no {TASK_NAME} dataset (dataset.json, imagesTr/, labelsTr/) in {data_dir} or "
        f"{data_dir}/{TASK_NAME}; put the site's data there or point {DATA_ENV} at it (see docs/jobs.md)"
    )


def make_synthetic(data_dir: str, site: str, args: argparse.Namespace) -> str:
    """Write spleen-like NIfTI volumes (one blob per volume) in the Decathlon layout, once per site.

    The volumes depend only on the site name and the sizes, so every run of a site sees the
    same data; a folder written with other sizes is rewritten.
    """
    import nibabel as nib
    from monai.data.synthetic import create_test_image_3d

    folder = os.path.join(data_dir, f"synthetic_spleen_{site}")
    params = {"site": site, "cases": args.synthetic_cases, "size": args.synthetic_size, "version": 1}
    marker = os.path.join(folder, "dataset.json")
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            if json.load(f).get("synthetic") == params:
                return folder
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    size = args.synthetic_size
    low, high = args.intensity_range
    affine = np.eye(4)
    training = []
    for i in range(args.synthetic_cases):
        rng = np.random.RandomState(zlib.crc32(f"{site}:{i}".encode()))
        image, label = create_test_image_3d(
            size, size, size, num_objs=1, rad_max=max(4, size // 4), rad_min=max(2, size // 8),
            noise_max=0.15, num_seg_classes=1, random_state=rng,
        )  # fmt: skip
        hu = (low + image * (high - low)).astype(np.float32)
        name = f"spleen_{i}.nii.gz"
        nib.save(nib.Nifti1Image(hu, affine), os.path.join(folder, "imagesTr", name))
        nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), os.path.join(folder, "labelsTr", name))
        training.append({"image": "./imagesTr/" + name, "label": "./labelsTr/" + name})
    tmp = marker + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"name": "synthetic spleen", "synthetic": params, "training": training}, f, indent=1)
    os.replace(tmp, marker)
    return folder


def apply_bundle_settings(args: argparse.Namespace, bundle_dir: str) -> None:
    """Take the transform settings of the MONAI bundle and check that its network is the job's.

    Only plain JSON values are read (no bundle expression is evaluated), so no bundle code runs.
    """
    path = os.path.join(bundle_dir, "configs", "train.json")
    if not os.path.isfile(path):
        raise RuntimeError(
            f"bundle mode: no MONAI bundle at {bundle_dir} (configs/train.json missing); download it with "
            f"'python -m monai.bundle download --name {BUNDLE_NAME} --bundle_dir DIR' (see docs/jobs.md)"
        )
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    train = cfg.get("train", {})
    transforms = list(train.get("deterministic_transforms", [])) + list(train.get("random_transforms", []))
    for t in transforms:
        if not isinstance(t, dict):
            continue
        target = str(t.get("_target_", "")).rsplit(".", 1)[-1]
        if target == "Spacingd" and isinstance(t.get("pixdim"), list):
            args.pixdim = tuple(float(v) for v in t["pixdim"])
        elif target == "ScaleIntensityRanged" and "a_min" in t and "a_max" in t:
            args.intensity_range = (float(t["a_min"]), float(t["a_max"]))
        elif target == "RandCropByPosNegLabeld":
            if isinstance(t.get("spatial_size"), list):
                args.roi_size = int(t["spatial_size"][0])
            if isinstance(t.get("num_samples"), int):
                args.num_samples = t["num_samples"]
    optimizer = cfg.get("optimizer", {})
    if isinstance(optimizer, dict) and isinstance(optimizer.get("lr"), (int, float)):
        args.learning_rate = float(optimizer["lr"])
    net = cfg.get("network_def", {})
    theirs = {k: net.get(k) for k in ("channels", "num_res_units", "norm") if k in net}
    ours = {"channels": list(args.channels), "num_res_units": args.num_res_units, "norm": args.norm}
    diff = {k: (ours[k], v) for k, v in theirs.items() if (list(v) if isinstance(v, list) else v) != ours[k]}
    if diff:
        raise RuntimeError(
            f"bundle mode: the job's network differs from the bundle's network_def in {path}: {diff} (job, bundle); "
            "render the job with the bundle's values"
        )


# ----------------------------------------------------------------------------- model


def build_network(args: argparse.Namespace) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=tuple(args.channels),
        strides=(2,) * (len(args.channels) - 1),
        num_res_units=args.num_res_units,
        norm=args.norm,
    )


def build_transforms(args: argparse.Namespace):
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        Orientationd,
        RandCropByPosNegLabeld,
        ScaleIntensityRanged,
        Spacingd,
    )

    # The spleen_ct_segmentation bundle's train#deterministic_transforms and
    # train#random_transforms, with the sizes as parameters.

    keys = ["image", "label"]
    low, high = args.intensity_range
    deterministic = [
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS", labels=None),
        Spacingd(keys=keys, pixdim=args.pixdim, mode=("bilinear", "nearest")),
        ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
        EnsureTyped(keys=keys),
    ]
    random = [
        RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=(args.roi_size,) * 3, pos=1, neg=1,
            num_samples=args.num_samples, image_key="image", image_threshold=0,
        ),
    ]  # fmt: skip
    return Compose(deterministic + random), Compose(deterministic)


class SpleenSite:
    def __init__(self, args: argparse.Namespace, site: str):
        from monai.data import CacheDataset, DataLoader
        from monai.losses import DiceLoss
        from monai.metrics import DiceMetric
        from monai.utils import set_determinism

        set_determinism(seed=args.seed + zlib.crc32(site.encode()) % 1000)
        self.args = args
        data_dir = site_data_dir(args)
        if args.data_mode == "bundle":
            try:
                import nibabel  # noqa: F401  (LoadImaged needs it for .nii.gz)
            except ImportError as exc:
                raise RuntimeError("bundle mode needs nibabel in the client's Python environment") from exc
            apply_bundle_settings(args, args.bundle_dir or os.path.join(data_dir, BUNDLE_NAME))
            dataset_dir = find_task09(data_dir)
        else:
            dataset_dir = make_synthetic(data_dir, site, args)
        cases = read_datalist(dataset_dir)
        if len(cases) < 2:
            raise RuntimeError(f"{site}: {len(cases)} usable cases in {dataset_dir}; at least 2 are needed")
        n_val = min(len(cases) - 1, max(1, int(round(len(cases) * args.val_fraction))))
        train_tf, val_tf = build_transforms(args)
        self.train_loader = DataLoader(
            CacheDataset(cases[:-n_val], train_tf, cache_rate=args.cache_rate, num_workers=args.num_workers),
            batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers,
        )  # fmt: skip
        self.val_loader = DataLoader(
            CacheDataset(cases[-n_val:], val_tf, cache_rate=args.cache_rate, num_workers=args.num_workers),
            batch_size=1, num_workers=args.num_workers,
        )  # fmt: skip
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = build_network(args).to(self.device)
        self.loss = DiceLoss(include_background=False, to_onehot_y=True, softmax=True)
        self.metric = DiceMetric(include_background=False, reduction="mean")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.learning_rate)
        self.local_weights = None
        print(
            f"{site}: {args.data_mode} data in {dataset_dir}: {len(cases) - n_val} training, {n_val} validation "
            f"cases; roi {args.roi_size}, pixdim {args.pixdim}, device {self.device}"
        )

    def load(self, params: dict) -> None:
        self.model.load_state_dict({k: torch.as_tensor(v) for k, v in params.items()})

    def weights(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def evaluate(self) -> float:
        from monai.data import decollate_batch
        from monai.inferers import sliding_window_inference
        from monai.transforms import AsDiscrete

        to_pred, to_label = AsDiscrete(argmax=True, to_onehot=2), AsDiscrete(to_onehot=2)
        self.model.eval()
        self.metric.reset()
        roi = (self.args.roi_size,) * 3
        with torch.no_grad():
            for batch in self.val_loader:
                image, label = batch["image"].to(self.device), batch["label"].to(self.device)
                out = sliding_window_inference(image, roi, 4, self.model, overlap=0.5)
                self.metric(
                    y_pred=[to_pred(p) for p in decollate_batch(out)], y=[to_label(y) for y in decollate_batch(label)]
                )
        value = float(self.metric.aggregate().item())
        self.metric.reset()
        return 0.0 if np.isnan(value) else value

    def train(self, on_epoch=None) -> int:
        """Local epochs; ``on_epoch(epoch, mean_loss)`` after each one (for the metric stream)."""
        self.model.train()
        steps = 0
        for epoch in range(self.args.local_epochs):
            total, batches = 0.0, 0
            for batch in self.train_loader:
                image, label = batch["image"].to(self.device), batch["label"].to(self.device)
                self.optimizer.zero_grad()
                loss = self.loss(self.model(image), label)
                loss.backward()
                self.optimizer.step()
                total, batches = total + float(loss.item()), batches + 1
                steps += 1
            if on_epoch is not None and batches:
                on_epoch(epoch, total / batches)
        self.local_weights = self.weights()
        return steps


def stream_loss(writer, offset: int, epoch: int, loss: float) -> None:
    writer.log_metric("train_loss", loss, step=offset + epoch)


def main(argv=None) -> None:
    args = parse_args(argv)
    flare.init()
    site_name = flare.get_site_name()
    site = SpleenSite(args, site_name)
    # NVFlare's metric streaming: each value goes to the server as an event (ConvertToFedEvent in
    # config_fed_client), where a receiver (MLflowReceiver when the job is rendered with a tracking
    # URI) writes it to the site's run; without a receiver the server drops them.
    writer = MLflowWriter()
    writer.set_tag("site", site_name)
    while flare.is_running():
        incoming = flare.receive()
        if incoming is None:
            break
        if flare.is_submit_model():
            # Cross-site validation asks for this site's own model: the last local training result.
            weights = site.local_weights if site.local_weights is not None else site.weights()
            flare.send(flare.FLModel(params=weights))
            continue
        site.load(incoming.params)
        started = time.time()
        dice = site.evaluate()
        if flare.is_evaluate():
            print(f"{site_name}: cross-site validation: {KEY_METRIC}={dice:.4f}")
            flare.send(flare.FLModel(metrics={KEY_METRIC: dice}))
            continue
        current = int(incoming.current_round or 0)
        writer.log_metric(KEY_METRIC, dice, step=current)
        # train_loss's step counts local epochs across rounds: round * local_epochs + epoch.
        steps = site.train(on_epoch=functools.partial(stream_loss, writer, current * args.local_epochs))
        print(
            f"{site_name}: round {incoming.current_round}: global {KEY_METRIC}={dice:.4f}, "
            f"{steps} local steps in {time.time() - started:.1f}s"
        )
        flare.send(
            flare.FLModel(
                params=site.local_weights, metrics={KEY_METRIC: dice}, meta={"NUM_STEPS_CURRENT_ROUND": steps}
            )
        )


if __name__ == "__main__":
    main(sys.argv[1:])
