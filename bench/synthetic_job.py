#!/usr/bin/env python3
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Wall time and peak memory of the MONAI spleen job (synthetic data) on a loopback federation.

Provisions a project (server on localhost, 2 sites, 1 admin), starts the server and the
clients from their kits, lays the job out from the admin role's files and templates, runs it
with the federated.nvflare.job module and prints:

* federation start-up (processes started -> both sites registered),
* module wall time (submit -> finished -> result downloaded) and the job's own duration,
* peak of the summed RSS of every federation process (server, clients, job processes),
  sampled every 0.2 s, plus each participant's own peak,
* the cross-site validation matrix (mean Dice per model and site).

Figures, not assertions. Usage: .venv/bin/python bench/synthetic_job.py [--rounds N] [--size S]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "functional" / "federation"))

import conftest as fed  # noqa: E402  (the functional tests' federation helpers)


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def role_of(pid: int, federation: fed.Federation) -> str:
    try:
        cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    for name in ("localhost", *fed.SITES):
        if str(federation.kit(name)) in cmd:
            kind = "job" if ("worker_process" in cmd or "runner_process" in cmd) else "parent"
            return f"{'server' if name == 'localhost' else name} {kind}"
    return "other"


class Sampler(threading.Thread):
    def __init__(self, federation: fed.Federation, interval: float = 0.2):
        super().__init__(daemon=True)
        self.federation = federation
        self.interval = interval
        self.peak_total = 0
        self.peak_by_role: dict[str, int] = {}
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            by_role: dict[str, int] = {}
            for pid in self.federation.pids():
                role = role_of(pid, self.federation)
                by_role[role] = by_role.get(role, 0) + rss_bytes(pid)
            self.peak_total = max(self.peak_total, sum(by_role.values()))
            for role, value in by_role.items():
                self.peak_by_role[role] = max(self.peak_by_role.get(role, 0), value)
            self.stop_event.wait(self.interval)


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="local epochs per round (default: the job's)")
    parser.add_argument("--size", type=int, default=48, help="synthetic volume edge (voxels)")
    parser.add_argument("--cases", type=int, default=8, help="synthetic volumes per site")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nvflare-bench-"))
    federation = fed.Federation(work / "federation")
    federation.root.mkdir(parents=True)
    job = work / "jobs" / "spleen_ct_segmentation"
    variables = {
        "admin_spleen_data_mode": "synthetic",
        "admin_spleen_num_rounds": args.rounds,
        "admin_spleen_synthetic_size": args.size,
        "admin_spleen_synthetic_cases": args.cases,
        "admin_spleen_local_epochs": args.epochs,
    }
    t0 = time.monotonic()
    fed.render_spleen_jobs({str(job): variables}, work / "render")
    render_s = time.monotonic() - t0
    sampler = Sampler(federation)
    try:
        federation.provision()
        t0 = time.monotonic()
        federation.start_all()
        sampler.start()
        startup_s = federation.wait_registered()
        idle_peak = sampler.peak_total
        module_args = {
            "admin_kit": str(federation.admin_kit),
            "job_dir": str(job),
            "timeout": 1800,
            "poll_interval": 1,
            "download_dir": str(work / "results"),
        }
        result = fed.run_module("job", module_args, work / "module", timeout=2000)
    finally:
        sampler.stop_event.set()
        if sampler.is_alive():
            sampler.join()
        federation.stop_all()

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"render job (ansible-playbook):       {render_s:6.1f} s")
    print(f"federation start -> 2 sites ready:   {startup_s:6.1f} s")
    print(f"job module wall (submit..download):  {result.wall:6.1f} s")
    print(f"job duration (NVFlare):              {result.get('duration')}")
    print(f"job status:                          {result.get('status')}  {result.get('msg', '')}")
    print(f"peak RSS, all federation processes:  {gib(sampler.peak_total)} (idle federation: {gib(idle_peak)})")
    for role, value in sorted(sampler.peak_by_role.items()):
        print(f"  peak {role:<22} {gib(value)}")
    matrix = result.get("cross_site_validation") or {}
    if matrix:
        sites = sorted({s for by_site in matrix.values() for s in by_site})
        print("cross-site validation, val_dice:   " + "  ".join(f"{s:>8}" for s in sites))
        for model, by_site in sorted(matrix.items()):
            cells = "  ".join(f"{by_site.get(s, {}).get('val_dice', float('nan')):8.4f}" for s in sites)
            print(f"  {model:<32} {cells}")
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if result.get("status") == "FINISHED:COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
