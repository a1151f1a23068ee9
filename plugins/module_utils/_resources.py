# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A kit's local/resources.json.default adapted to a host: shared by the local_resources
filter and the startup_kit module (which writes local/resources.json with the kit)."""

from __future__ import annotations

import copy
import json

RESOURCES_DEFAULT = "local/resources.json.default"
RESOURCES = "local/resources.json"
RESOURCES_MODE = 0o640


def gib(value) -> int | float:
    """A GiB figure as NVFlare's files hold it: a whole number as an int (16, not 16.0), a fraction
    as a float (7.5). Options take floats, so that both are accepted and written as before."""
    mem = float(value)
    return int(mem) if mem.is_integer() else mem


def _component(resources: dict, component_id: str) -> dict | None:
    for comp in resources.get("components", []):
        if comp.get("id") == component_id:
            return comp
    return None


def local_resources(
    defaults,
    data_dir=None,
    max_jobs=None,
    num_of_gpus=None,
    mem_per_gpu_in_GiB=None,  # noqa: N803 - NVFlare's own spelling
    class_allow_list=None,
):
    res = copy.deepcopy(defaults or {})
    if data_dir:
        data_dir = str(data_dir).rstrip("/")
        snap = res.get("snapshot_persistor", {}).get("args", {}).get("storage", {}).get("args")
        if snap is not None:
            snap["root_dir"] = data_dir + "/snapshot-storage"
        manager = _component(res, "job_manager")
        if manager is not None:
            manager.setdefault("args", {})["uri_root"] = data_dir + "/jobs-storage"
    if max_jobs is not None:
        scheduler = _component(res, "job_scheduler")
        if scheduler is not None:
            scheduler.setdefault("args", {})["max_jobs"] = int(max_jobs)
    if num_of_gpus is not None or mem_per_gpu_in_GiB is not None:
        manager = _component(res, "resource_manager")
        if manager is not None:
            args = manager.setdefault("args", {})
            if num_of_gpus is not None:
                args["num_of_gpus"] = int(num_of_gpus)
            if mem_per_gpu_in_GiB is not None:
                args["mem_per_gpu_in_GiB"] = gib(mem_per_gpu_in_GiB)
    extra = [c for c in (class_allow_list or []) if c not in res.get("class_allow_list", [])]
    if extra and "class_allow_list" in res:
        res["class_allow_list"] = list(res["class_allow_list"]) + extra
    return res


def render(resources) -> bytes:
    """The file's bytes, as Ansible's to_nice_json(indent=2) writes them."""
    return json.dumps(resources, indent=2, sort_keys=True, separators=(",", ": ")).encode()
