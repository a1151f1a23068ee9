"""The local_resources filter (and _resources behind it) on the defaults of real kits."""

from __future__ import annotations

import json

import pytest

from ansible_collections.federated.nvflare.plugins.filter.local_resources import local_resources
from ansible_collections.federated.nvflare.plugins.module_utils._resources import gib
from tests.unit.fixtures.kits import FIXTURES

KITS = FIXTURES / "project_a"


@pytest.fixture(scope="module")
def kit_defaults():
    """resources.json.default of a server and a client kit from NVFlare's provisioning (ready-made)."""
    return {
        "server": json.loads((KITS / "fl.example.org" / "local" / "resources.json.default").read_text()),
        "client": json.loads((KITS / "site-1" / "local" / "resources.json.default").read_text()),
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


@pytest.mark.parametrize("value, written", [(16, 16), (16.0, 16), ("16", 16), (7.5, 7.5), ("0.5", 0.5)])
def test_gib_keeps_whole_numbers_whole(value, written):
    assert gib(value) == written
    assert type(gib(value)) is type(written)
