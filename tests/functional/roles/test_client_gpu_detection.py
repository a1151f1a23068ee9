"""client_gpu's GPU detection and its PyTorch check, run by ansible-playbook on this machine.

This machine has no GPU, so what a GPU host would show is stood in for: an `nvidia-smi`
script that prints what the real one prints for `--query-gpu=memory.total
--format=csv,noheader,nounits` (one line per GPU, MiB), and, for a CUDA build of PyTorch, a
`torch` package that reports a CUDA version and a device count. The CPU-build case uses the
real PyTorch 2.13.0+cpu of the test virtualenv. Every case is an inventory host of its own
(local connection), so one ansible-playbook run covers them all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.ansible import ansible_env

ROOT = Path(__file__).resolve().parents[3]

PLAY = """
- name: Detect GPUs as the client_gpu role does
  hosts: all
  gather_facts: false
  environment:
    PATH: "{{ case_path }}"
  tasks:
    # What the role's look (the _participant role's tasks/look.yml) passes for the GPUs.
    - name: Look at the GPUs
      federated.nvflare.participant_info:
        user: root
        gpus:
          detect: true
          num_of_gpus: "{{ client_gpu_num_of_gpus | default(none) }}"
          mem_per_gpu_in_GiB: "{{ client_gpu_mem_per_gpu_gib | default(none) }}"
      register: __participant_look
    - name: Detect
      ansible.builtin.include_role:
        name: federated.nvflare.client_gpu
        tasks_from: gpu
    - name: Check PyTorch
      ansible.builtin.include_role:
        name: federated.nvflare.client_gpu
        tasks_from: gpu_torch
      when: __client_gpu_offer | int > 0
    - name: Report
      ansible.builtin.debug:
        msg: "{{ {'offer': __client_gpu_offer | int, 'mem': __client_gpu_offer_mem | float} }}"
"""


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _nvidia_smi(folder: Path, mibs: list[int]) -> Path:
    """A folder with an nvidia-smi that lists GPUs of MIBS MiB each."""
    lines = "".join(f"{m}\\n" for m in mibs)
    _script(folder / "nvidia-smi", f"#!/bin/sh\nprintf '{lines}'\n")
    return folder


def _cuda_torch_venv(folder: Path, devices: int) -> Path:
    """A 'virtualenv' whose python imports a torch that reports CUDA 12.8 and DEVICES GPUs."""
    pkg = folder / "site" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        '__version__ = "2.13.0+cu128"\n'
        "class version:\n    cuda = '12.8'\n"
        f"class cuda:\n    @staticmethod\n    def device_count():\n        return {devices}\n"
    )
    _script(folder / "bin" / "python", f'#!/bin/sh\nPYTHONPATH={folder / "site"} exec {sys.executable} "$@"\n')
    return folder


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu")
    system = "/usr/bin:/bin"
    two_gpus = _nvidia_smi(tmp / "smi-2", [81559, 40960])
    cpu_venv = Path(sys.executable).parent.parent
    cuda_venv = _cuda_torch_venv(tmp / "cuda-2", 2)
    blind_venv = _cuda_torch_venv(tmp / "cuda-0", 0)
    cases = {
        "cuda": {"case_path": f"{two_gpus}:{system}", "client_gpu_venv": str(cuda_venv)},
        "cuda_one": {
            "case_path": f"{two_gpus}:{system}",
            "client_gpu_venv": str(cuda_venv),
            "client_gpu_num_of_gpus": 1,
        },
        "cuda_too_many": {
            "case_path": f"{two_gpus}:{system}",
            "client_gpu_venv": str(cuda_venv),
            "client_gpu_num_of_gpus": 4,
            "client_gpu_mem_per_gpu_gib": 16,
        },
        "cpu_torch": {"case_path": f"{two_gpus}:{system}", "client_gpu_venv": str(cpu_venv)},
        "cpu_torch_required": {
            "case_path": f"{two_gpus}:{system}",
            "client_gpu_venv": str(cpu_venv),
            "client_gpu_require_gpu": True,
        },
        "old_driver": {"case_path": f"{two_gpus}:{system}", "client_gpu_venv": str(blind_venv)},
        "no_torch": {"case_path": f"{two_gpus}:{system}", "client_gpu_venv": str(tmp / "missing")},
        "no_driver": {"case_path": system, "client_gpu_venv": str(cpu_venv)},
        "no_driver_required": {"case_path": system, "client_gpu_venv": str(cpu_venv), "client_gpu_require_gpu": True},
    }
    hosts = {
        name: dict(v, ansible_connection="local", ansible_python_interpreter=sys.executable, client_gpu_name=name)
        for name, v in cases.items()
    }
    (tmp / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
    (tmp / "play.yml").write_text(PLAY)
    env = ansible_env(tmp)
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp / "inventory.json"),
            str(tmp / "play.yml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = json.loads(proc.stdout)
    results: dict[str, dict] = {name: {"messages": []} for name in cases}
    for task in out["plays"][0]["tasks"]:
        for host, res in task["hosts"].items():
            if res.get("failed"):
                results[host]["failed"] = res.get("msg", "")
            if "msg" in res and task["task"]["name"] == "Report":
                results[host]["report"] = res["msg"]
            elif "msg" in res and not res.get("failed"):
                results[host]["messages"].append(str(res["msg"]))
    return results


def test_cuda_build_that_sees_the_gpus_offers_them(detection):
    # Two GPUs of 79.6 and 40 GiB: the smaller bounds what a job may ask per GPU.
    assert detection["cuda"]["report"] == {"offer": 2, "mem": 40}
    assert detection["cuda_one"]["report"] == {"offer": 1, "mem": 40}
    # Never more than detected (NVFlare refuses a kit that promises more); memory as asked.
    assert detection["cuda_too_many"]["report"] == {"offer": 2, "mem": 16}


def test_cpu_build_of_torch_offers_no_gpu_and_says_why(detection):
    res = detection["cpu_torch"]
    assert res["report"] == {"offer": 0, "mem": 0}
    said = " ".join(res["messages"])
    assert "nvidia-smi finds 2 GPU(s)" in said
    assert "PyTorch 2.13.0+cpu" in said and "is a CPU build" in said
    assert "trains on the CPU" in said


def test_cpu_build_fails_when_a_gpu_is_required(detection):
    res = detection["cpu_torch_required"]
    assert "report" not in res
    assert "is a CPU build: install the CUDA build" in res["failed"]
    assert "client_gpu_require_gpu=false" in res["failed"]


def test_cuda_build_that_sees_no_gpu_points_at_the_driver(detection):
    res = detection["old_driver"]
    assert res["report"] == {"offer": 0, "mem": 0}
    assert "(CUDA 12.8) sees no GPU" in " ".join(res["messages"])
    assert "driver may be too old" in " ".join(res["messages"])


def test_missing_torch_offers_no_gpu(detection):
    res = detection["no_torch"]
    assert res["report"] == {"offer": 0, "mem": 0}
    assert "PyTorch cannot be imported" in " ".join(res["messages"])


def test_no_nvidia_smi(detection):
    assert detection["no_driver"]["report"] == {"offer": 0, "mem": 0}
    failed = detection["no_driver_required"]["failed"]
    assert "has no usable GPU: nvidia-smi is not installed" in failed
    assert "client_gpu_require_gpu=false" in failed
