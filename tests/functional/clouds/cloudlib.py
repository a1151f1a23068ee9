# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers and constants of the cloud infrastructure tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".venv"
COLLECTIONS = VENV / "collections"
HERE = Path(__file__).resolve().parent
ANSIBLE_WHEEL_GLOB = "ansible-*-py3-none-any.whl"
REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ansible_env(collections_paths: list[Path] | None = None) -> dict[str, str]:
    """The environment of scripts/lib.sh's use_venv, without any AWS or Azure setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "ANSIBLE_", "BOTO"))}
    paths = (collections_paths or []) + [COLLECTIONS]
    env.update(
        PATH=f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        VIRTUAL_ENV=str(VENV),
        ANSIBLE_COLLECTIONS_PATH=":".join(str(p) for p in paths),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_HOME=str(ROOT / ".cache" / "ansible-home"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    return env


class PlaybookRun:
    """One ansible-playbook run with the JSON callback: rc, per-task results, the raw output."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        try:
            start = proc.stdout.index("{")
            self.data = json.loads(proc.stdout[start:])
        except ValueError:
            self.data = {"plays": [], "stats": {}}

    def tasks(self):
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                for host, result in task.get("hosts", {}).items():
                    # "federated.nvflare.aws_infra : Converge ..." -> "Converge ..."
                    yield task["task"]["name"].split(" : ", 1)[-1], host, result

    def changed_tasks(self) -> list[str]:
        return [name for name, _host, result in self.tasks() if result.get("changed")]

    def failures(self) -> list[str]:
        """'task: message' of every failed task, and of every failed item of a loop."""
        out = []
        for name, _host, result in self.tasks():
            if not result.get("failed") or result.get("ignore_errors"):
                continue
            out.append(f"{name}: {result.get('msg')}")
            out += [f"{name}: {item.get('msg')}" for item in result.get("results", []) if item.get("failed")]
        return out

    def explain(self) -> str:
        return f"rc={self.rc}\nfailures={self.failures()}\nstderr={self.stderr[-3000:]}\nstdout={self.stdout[-3000:]}"


def run_playbook(
    playbook: str | Path,
    env: dict[str, str],
    extra_vars: dict | None = None,
    inventory: list[str | Path] | None = None,
    args: list[str] | None = None,
    timeout: int = 600,
) -> PlaybookRun:
    cmd = [str(VENV / "bin" / "ansible-playbook"), str(playbook)]
    for inv in inventory or []:
        cmd += ["-i", str(inv)]
    if extra_vars is not None:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += args or []
    run_env = dict(env, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    proc = subprocess.run(cmd, env=run_env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    return PlaybookRun(proc)


def ansible_inventory(env: dict[str, str], inventories: list[str | Path], *args: str) -> subprocess.CompletedProcess:
    cmd = [str(VENV / "bin" / "ansible-inventory")]
    for inv in inventories:
        cmd += ["-i", str(inv)]
    cmd += list(args)
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


AWS_PLAYBOOK = ROOT / "playbooks" / "aws_infra.yml"
AWS_TEARDOWN = ROOT / "playbooks" / "aws_teardown.yml"
AWS_INVENTORY = ROOT / "inventories" / "aws_ec2.yml"
ZONE = "fl.example.org"
ADMIN_CIDR = "198.51.100.7/32"

# moto's machine images stand in for Ubuntu and the Deep Learning AMI.
MOTO_IMAGES = {
    "dashboard": {"name": "ubuntu/images/hvm-ssd/ubuntu-*", "owner": "099720109477"},
    "server": {"name": "ubuntu/images/hvm-ssd/ubuntu-*", "owner": "099720109477"},
    "client": {"name": "Deep Learning AMI Ubuntu*", "owner": "898082745236"},
}


def project_env(env: dict[str, str], project: str) -> dict[str, str]:
    return dict(env, NVFLARE_PROJECT=project)


def unwrap(value):
    """ansible-inventory --list marks values of dynamic sources as {"__ansible_unsafe": ...}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def inventory_list(env: dict[str, str], project: str, *extra: str | Path) -> dict:
    proc = ansible_inventory(project_env(env, project), [AWS_INVENTORY, *extra], "--list")
    assert proc.returncode == 0, proc.stderr
    return unwrap(json.loads(proc.stdout))


def group_hosts(inventory: dict, group: str) -> list[str]:
    return sorted(inventory.get(group, {}).get("hosts", []))


AZURE_PLAYBOOK = ROOT / "playbooks" / "azure_infra.yml"
AZURE_TEARDOWN = ROOT / "playbooks" / "azure_teardown.yml"
AZURE_INVENTORY = ROOT / "inventories" / "azure_rm.yml"
AZURE_PLAN = HERE / "playbooks" / "azure_plan.yml"


def sample_azure_inventory(directory: Path) -> Path:
    """inventories/azure_rm.yml, verbatim but for `plugin:`, which names the sample plugin."""
    text = AZURE_INVENTORY.read_text()
    assert "\nplugin: azure.azcollection.azure_rm\n" in text
    path = directory / "sample.azure_rm.yml"
    path.write_text(text.replace("\nplugin: azure.azcollection.azure_rm\n", "\nplugin: azure_rm_sample\n"))
    return path


def azure_plan(env: dict[str, str], extra_vars: dict, out: Path, inventory: list[Path] | None = None) -> tuple:
    """Run the azure_infra role's checks and derivations only; return (run, plan or None)."""
    run = run_playbook(
        AZURE_PLAN, env, dict(extra_vars, plan_out=str(out)), inventory=inventory, args=["--tags", "azure_infra_plan"]
    )
    plan = json.loads(out.read_text()) if run.rc == 0 and out.exists() else None
    return run, plan
