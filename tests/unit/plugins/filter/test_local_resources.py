from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ansible_collections.federated.nvflare.plugins.filter.local_resources import local_resources


@pytest.fixture(scope="module")
def kit_defaults(tmp_path_factory):
    """resources.json.default of a real server and client kit from NVFlare's provisioning."""
    ws = tmp_path_factory.mktemp("prov")
    (ws / "project.yml").write_text(
        "api_version: 3\nname: p\ndescription: d\nparticipants:\n"
        "  - {name: localhost, type: server, org: o, fed_learn_port: 8002, admin_port: 8003}\n"
        "  - {name: site-1, type: client, org: o}\n"
        "builders:\n"
        "  - path: nvflare.lighter.impl.workspace.WorkspaceBuilder\n"
        "  - path: nvflare.lighter.impl.static_file.StaticFileBuilder\n"
        "    args: {config_folder: config, scheme: grpc}\n"
        "  - path: nvflare.lighter.impl.cert.CertBuilder\n"
    )
    nvflare = [sys.executable, "-m", "nvflare.cli"]
    subprocess.run(
        nvflare + ["provision", "-p", str(ws / "project.yml"), "-w", str(ws / "w"), "--force"],
        check=True,
        capture_output=True,
    )
    kits = ws / "w" / "p" / "prod_00"
    return {
        "server": json.loads((kits / "localhost" / "local" / "resources.json.default").read_text()),
        "client": json.loads((kits / "site-1" / "local" / "resources.json.default").read_text()),
    }


def _comp(res, cid):
    return next(c for c in res["components"] if c["id"] == cid)


def test_server_storage_moves_out_of_tmp(kit_defaults):
    res = local_resources(kit_defaults["server"], data_dir="/var/lib/nvflare/server-data/", max_jobs=2)
    text = json.dumps(res)
    assert "/tmp/nvflare" not in text
    assert (
        res["snapshot_persistor"]["args"]["storage"]["args"]["root_dir"]
        == "/var/lib/nvflare/server-data/snapshot-storage"
    )
    assert _comp(res, "job_manager")["args"]["uri_root"] == "/var/lib/nvflare/server-data/jobs-storage"
    assert _comp(res, "job_scheduler")["args"]["max_jobs"] == 2
    # The input is not modified.
    assert "/tmp/nvflare" in json.dumps(kit_defaults["server"])


def test_client_gpu_capacity(kit_defaults):
    res = local_resources(kit_defaults["client"], num_of_gpus=2, mem_per_gpu_in_GiB=80)
    args = _comp(res, "resource_manager")["args"]
    assert (args["num_of_gpus"], args["mem_per_gpu_in_GiB"]) == (2, 80)
    # Values templated by a role may arrive as strings; the JSON gets numbers.
    res = local_resources(kit_defaults["client"], num_of_gpus="1", mem_per_gpu_in_GiB="15.5")
    args = _comp(res, "resource_manager")["args"]
    assert (args["num_of_gpus"], args["mem_per_gpu_in_GiB"]) == (1, 15.5)


def test_allow_list_extended_once(kit_defaults):
    extra = ["my.pkg.Trainer", "nvflare.app_common.workflows.fedavg.FedAvg"]
    res = local_resources(kit_defaults["client"], class_allow_list=extra)
    assert res["class_allow_list"].count("my.pkg.Trainer") == 1
    assert res["class_allow_list"].count("nvflare.app_common.workflows.fedavg.FedAvg") == 1
