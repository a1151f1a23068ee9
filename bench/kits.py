#!/usr/bin/env python
"""Benchmark of the startup-kit modules: provisioning at scale, installing one kit.

Run from the collection root with the project's virtualenv:

    .venv/bin/python bench/kits.py [--sites 50] [--repeat 5] [--no-playbook]

Prints figures; asserts nothing. The modules run in-process (as the unit tests run them), so
the figures leave out Ansible's per-task overhead; the last figure is one startup_kit task
run end to end by ansible-playbook on localhost, overhead included.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".venv" / "collections"))

from ansible.module_utils.testing import patch_module_args  # noqa: E402

PIN = "Bench2pin"


def run_module(name: str, args: dict, check_mode: bool = False) -> dict:
    mod = importlib.import_module("ansible_collections.federated.nvflare.plugins.modules." + name)
    full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=False, _ansible_remote_tmp="/tmp")
    out = io.StringIO()
    with patch_module_args(full), contextlib.redirect_stdout(out):
        try:
            mod.main()
        except SystemExit:
            pass
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    if result.get("failed"):
        raise SystemExit(f"{name} failed: {result.get('msg')}")
    return result


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def project(ws: Path, sites: int) -> dict:
    return {
        "workspace": str(ws),
        "name": "bench",
        "server": {"name": "fl.example.org", "org": "org_a"},
        "sites": [{"name": f"site-{i}", "org": f"org_{i % 5}"} for i in range(1, sites + 1)],
        "admins": [{"email": "admin@example.org", "org": "org_a", "role": "project_admin"}],
        "pin": PIN,
    }


def line(label: str, seconds: float, note: str = "") -> None:
    print(f"{label:<58} {seconds:8.3f} s  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-playbook", action="store_true", help="skip the ansible-playbook figure")
    opts = parser.parse_args()

    from ansible_collections.federated.nvflare.plugins.module_utils import _kit

    tmp = Path(tempfile.mkdtemp(prefix="bench-kits-"))
    try:
        ws = tmp / "workspace"
        spec = project(ws, opts.sites)
        print(
            f"federated.nvflare kits benchmark: {opts.sites} sites, "
            f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
        )
        t, res = timed(lambda: run_module("provision", spec, check_mode=True))
        line(f"provision {opts.sites} sites, check mode (nothing yet)", t, f"changed={res['changed']}")
        t, res = timed(lambda: run_module("provision", spec))
        line(f"provision {opts.sites} sites, first run (CA, keys, zips)", t, f"kits={len(res['kits'])}")
        t, res = timed(lambda: run_module("provision", spec))
        line(f"provision {opts.sites} sites, same input again", t, f"changed={res['changed']}")
        spec["sites"].append({"name": "site-new", "org": "org_a"})
        t, res = timed(lambda: run_module("provision", spec))
        line(f"provision {opts.sites} sites + 1 added", t, f"created={res['changes']['created']}")

        zip_path = res["zips"]["site-1"]
        args = {"src": zip_path, "pin": PIN, "participant": "site-1", "type": "client"}
        installs, reruns, verifies = [], [], []
        for i in range(opts.repeat):
            dest = tmp / "hosts" / f"h{i}" / "site-1"
            t, r = timed(lambda dest=dest: run_module("startup_kit", dict(args, dest=str(dest))))
            assert r["changed"]
            installs.append(t)
            t, r = timed(lambda dest=dest: run_module("startup_kit", dict(args, dest=str(dest))))
            assert not r["changed"]
            reruns.append(t)

            def verify():
                kit = _kit.read_zip(zip_path, PIN)
                _kit.check_layout(kit, "client")
                return _kit.verify_identity(kit, "client", "site-1")

            t, _ = timed(verify)
            verifies.append(t)
        n = f"median of {opts.repeat}"
        line("startup_kit: extract + verify + install one kit (zip, PIN)", statistics.median(installs), n)
        line("startup_kit: same kit again (verify, no change)", statistics.median(reruns), n)
        line("verify only: open zip with PIN, layout, certificate chain", statistics.median(verifies), n)

        if not opts.no_playbook:
            line("ansible-playbook, one startup_kit task on localhost", playbook_run(tmp, zip_path), "end to end")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def playbook_run(tmp: Path, zip_path: str) -> float:
    venv_bin = Path(sys.executable).parent
    (tmp / "hosts.json").write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {
                        "localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
                    }
                }
            }
        )
    )
    (tmp / "vars.json").write_text(json.dumps({"pin": PIN, "src": zip_path, "dest": str(tmp / "pb" / "site-1")}))
    (tmp / "play.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - federated.nvflare.startup_kit: {src: '{{ src }}', pin: '{{ pin }}', dest: '{{ dest }}',"
        " participant: site-1, type: client}\n"
    )
    env = dict(
        os.environ,
        PATH=f"{venv_bin}:{os.environ.get('PATH', '')}",
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".venv" / "collections"),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
    )
    cmd = [
        str(venv_bin / "ansible-playbook"),
        "-i",
        str(tmp / "hosts.json"),
        "-e",
        f"@{tmp / 'vars.json'}",
        str(tmp / "play.yml"),
    ]
    t, proc = timed(lambda: subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False))
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return t


if __name__ == "__main__":
    main()
