#!/usr/bin/env python3
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Time and bytes on the wire per FedAvg round: the MONAI spleen job in plain and under homomorphic
encryption (TenSEAL CKKS), on loopback federations.

For each variant: provisions a project (server on localhost, 2 sites, 1 admin; the HE one with
NVFlare's HEBuilder), starts it from its kits, lays the job out from the admin role's files and
templates (admin_spleen_he, and no cross-site validation so that only the rounds are measured),
runs it with the federated.nvflare.job module and prints:

* seconds per round: from the server's first task of round 0 to the model it persisted after the
  last round (server log), divided by the rounds;
* megabytes per round the server's job process sent (models to the sites) and received (the
  sites' updates), from NVFlare's own message statistics (workspace/stats_pool_summary.json),
  divided by the rounds (the job's few other messages are included: heartbeats, metrics);
* the size of the global model the server persisted (plaintext tensors, or CKKS ciphertexts).

Figures, not assertions. Usage: .venv/bin/python bench/he_vs_plain.py [--rounds N] [--size S]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "functional" / "federation"))

import conftest as fed  # noqa: E402  (the functional tests' federation helpers)

MB = 2**20


def _stamp(line: str) -> datetime.datetime:
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def seconds_of_the_rounds(server_log: Path, rounds: int) -> float | None:
    """From the first training task sent to the last model persisted (FedAvg), or from round 0's
    start to the last round's end (ScatterAndGather, the HE variant)."""
    lines = [line for line in server_log.read_text(errors="replace").splitlines() if line[:4].isdigit()]
    starts = [line for line in lines if "Sending task train" in line or "Round 0 started." in line]
    ends = [line for line in lines if "End persist model on server" in line or f"Round {rounds - 1} finished." in line]
    if not starts or not ends:
        return None
    return (_stamp(ends[-1]) - _stamp(starts[0])).total_seconds()


def megabytes(stats: Path) -> tuple[float, float]:
    """(sent, received) by the server's job process, MB, from NVFlare's message statistics."""
    data = json.loads(stats.read_text())
    totals = []
    for pool in ("sent_msg_sizes", "received_msg_sizes"):
        rows = data[pool]["pool"]["cat_data"].values()
        totals.append(sum(r.get("total", 0) for bucket in rows for r in bucket if isinstance(r, dict)))
    return totals[0], totals[1]


def run_variant(work: Path, he: bool, args) -> dict:
    name = "he" if he else "plain"
    federation = fed.Federation(work / f"federation-{name}", he=he)
    federation.root.mkdir(parents=True)
    job = work / "jobs" / name / ("spleen_he" if he else "spleen_plain")
    fed.render_spleen_jobs(
        {
            str(job): {
                "admin_spleen_data_mode": "synthetic",
                "admin_spleen_job_name": f"spleen_{name}",
                "admin_spleen_he": he,
                "admin_spleen_cross_site_validation": False,
                "admin_spleen_num_rounds": args.rounds,
                "admin_spleen_synthetic_size": args.size,
            }
        },
        work / f"render-{name}",
    )
    try:
        federation.provision()
        federation.start_all()
        federation.wait_registered()
        module_args = {
            "admin_kit": str(federation.admin_kit),
            "job_dir": str(job),
            "timeout": 3600,
            "poll_interval": 1,
            "download_dir": str(work / f"results-{name}"),
        }
        started = time.monotonic()
        result = fed.run_module("job", module_args, work / f"module-{name}", timeout=3700)
        wall = time.monotonic() - started
    finally:
        federation.stop_all()
    figures = {"variant": name, "status": result.get("status"), "wall": wall, "msg": result.get("msg", "")}
    if result.get("result_dir"):
        workspace = Path(result["result_dir"]) / "workspace"
        figures["round_seconds"] = seconds_of_the_rounds(workspace / "log.txt", args.rounds)
        figures["sent"], figures["received"] = megabytes(workspace / "stats_pool_summary.json")
        model = workspace / "app_server" / "FL_global_model.pt"
        figures["model_mb"] = model.stat().st_size / MB if model.is_file() else None
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=48, help="synthetic volume edge (voxels)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    try:
        import tenseal  # noqa: F401  pylint: disable=unused-import
    except ImportError:
        print("tenseal is not installed in this Python: make bootstrap installs it", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="nvflare-bench-he-"))
    rows = [run_variant(work, he, args) for he in (False, True)]

    print(f"machine: {os.cpu_count()} CPUs; {args.rounds} rounds, 2 sites, synthetic {args.size}^3 volumes")
    print(f"{'variant':<8} {'status':<20} {'s/round':>8} {'MB sent/round':>14} {'MB recv/round':>14} {'model MB':>9}")
    for row in rows:
        per_round = row.get("round_seconds")
        cells = [
            f"{per_round / args.rounds:8.1f}" if per_round else f"{'?':>8}",
            f"{row['sent'] / args.rounds:14.2f}" if "sent" in row else f"{'?':>14}",
            f"{row['received'] / args.rounds:14.2f}" if "received" in row else f"{'?':>14}",
            f"{row['model_mb']:9.2f}" if row.get("model_mb") else f"{'?':>9}",
        ]
        print(f"{row['variant']:<8} {str(row['status']):<20} " + " ".join(cells))
        if row["status"] != "FINISHED:COMPLETED":
            print(f"  {row['msg']}")
    plain, he = rows
    if plain.get("round_seconds") and he.get("round_seconds"):
        ratio_t = he["round_seconds"] / plain["round_seconds"]
        ratio_b = (he["sent"] + he["received"]) / max(plain["sent"] + plain["received"], 1e-9)
        print(f"HE / plain: {ratio_t:.1f}x the time per round, {ratio_b:.0f}x the bytes on the wire")
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["status"] == "FINISHED:COMPLETED" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
