"""Deployment figures on the local inventory (the one-machine demo), printed, not asserted.

For each site count (2 and 8 by default), on this one machine, packages already in the
wheelhouse and the virtualenv:
1. deploy: site.yml from stopped services until every site is registered (the admin role
   waits for that; no job), after an untimed warm-up run that installs that count's kits;
2. re-run: site.yml again with nothing to do, and its `changed` count;
3. NVFlare's own route with the same count: `nvflare poc prepare -n N` + `nvflare poc start`
   until N clients are registered.
Then one table: each figure, NVFlare's, the ratios computed in this run, and the targets
(deploy at most 1.0x POC, growth from the smallest to the largest count at most 1.3x, re-run
within 10 s for 2 sites and 12 s for 8).

`--profile` adds, for the largest count, where the time of the deploy and of the re-run goes:
the slowest tasks (ansible.posix.profile_tasks) and the number of tasks run per host.

Run as root from the repository: .venv/bin/python bench/deploy_local.py [--sites 2 8] [--profile]
Each count gets an inventory and a provisioning workspace of its own under a temporary folder;
the federation is stopped at the end; the POC is stopped and removed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
LOCAL = ROOT / "inventories" / "local"
TARGETS = {"deploy_ratio": 1.0, "growth": 1.3, "rerun": {2: 10.0, 8: 12.0}}


def env(extra: dict | None = None) -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{VENV_BIN}:{e['PATH']}"
    e["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".venv" / "collections")
    e["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    e.setdefault("NVFLARE_WHEELHOUSE", str(ROOT / ".cache" / "wheelhouse"))
    e.update(extra or {})
    return e


def inventory(folder: Path, sites: int) -> Path:
    """The local inventory with SITES client hosts, its group_vars copied beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(LOCAL / "group_vars", folder / "group_vars", dirs_exist_ok=True)
    hosts = "".join(f"        site-{i}:\n" for i in range(1, sites + 1))
    (folder / "hosts.yml").write_text(
        "all:\n  children:\n"
        "    nvflare_server:\n      hosts:\n        server:\n          nvflare_server_name: localhost\n"
        f"    nvflare_clients:\n      hosts:\n{hosts}"
        "    nvflare_admin:\n      hosts:\n        admin:\n"
    )
    return folder / "hosts.yml"


class Run:
    """ansible-playbook against one inventory, with its own provisioning workspace."""

    def __init__(self, hosts: Path, workspace: Path, profile: bool = False):
        self.hosts = hosts
        extra = {"NVFLARE_DEMO_WORKSPACE": str(workspace)}
        if profile:
            extra.update(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PROFILE_TASKS_TASK_OUTPUT_LIMIT="12")
        self.env = env(extra)

    def playbook(self, name: str) -> tuple[float, str]:
        t0 = time.monotonic()
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(self.hosts), f"playbooks/{name}"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            sys.exit(f"{name} failed ({self.hosts}):\n{failures(proc.stdout)}\n{proc.stderr[-2000:]}")
        return elapsed, proc.stdout


def failures(output: str) -> str:
    """The failed tasks of a playbook's output, each with its task header, and the recap."""
    blocks = re.split(r"\n(?=TASK \[|PLAY RECAP)", output)
    failed = [b for b in blocks if re.search(r"^(fatal|failed):", b, re.M) or b.startswith("PLAY RECAP")]
    return "\n".join(failed)[-6000:] or output[-3000:]


def changed(output: str) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output))


def tasks_per_host(output: str) -> dict[str, int]:
    """ok + changed + skipped (tasks Ansible had to consider) per host, from the recap."""
    counts = {}
    for host, ok, _chg, skipped in re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+).*?skipped=(\d+)", output, re.M):
        counts[host] = int(ok) + int(skipped)
    return counts


def profile_lines(output: str) -> list[str]:
    """The slowest tasks, as ansible.posix.profile_tasks prints them at the end."""
    marker = output.rfind("=" * 20)
    tail = output[marker:] if marker >= 0 else ""
    return [line for line in tail.splitlines() if re.search(r"-+ \d+\.\d+s$", line)]


def last_start(sites: int, started: float) -> float | None:
    """Seconds after STARTED (wall clock) at which the last participant process of the local
    inventory was started: the newest of their pid files, which the process service manager
    writes when it starts one."""
    names = ["localhost"] + [f"site-{i}" for i in range(1, sites + 1)]
    stamps = [p.stat().st_mtime for p in (Path("/var/lib/nvflare") / n / "service.pid" for n in names) if p.exists()]
    return max(stamps) - started if len(stamps) == len(names) else None


def ours(sites: int, work: Path, profile: bool) -> dict:
    run = Run(inventory(work / f"inventory-{sites}", sites), work / f"provision-{sites}", profile)
    run.playbook("stop.yml")
    run.playbook("site.yml")  # warm-up: this count's kits and folders
    run.playbook("stop.yml")
    started = time.time()
    deploy, deploy_out = run.playbook("site.yml")
    started_last = last_start(sites, started)
    rerun, rerun_out = run.playbook("site.yml")
    run.playbook("stop.yml")
    return {
        "deploy": deploy,
        "rerun": rerun,
        "changed": changed(rerun_out),
        "tasks": tasks_per_host(rerun_out),
        "profile": (profile_lines(deploy_out), profile_lines(rerun_out)),
        "last_start": started_last,
    }


def poc(sites: int) -> tuple[float, float]:
    """Seconds from `poc prepare` until SITES clients are registered, and of those the prepare's."""
    work = Path(tempfile.mkdtemp(prefix=f"nvflare-poc-bench-{sites}."))
    e = env({"NVFLARE_POC_WORKSPACE": str(work)})
    nvflare = [str(VENV_BIN / "nvflare")]
    t0 = time.monotonic()
    prepare = nvflare + ["poc", "prepare", "-n", str(sites), "--force"]
    subprocess.run(prepare, env=e, input="y\n", text=True, capture_output=True, check=True)
    prepared = time.monotonic() - t0
    subprocess.Popen(nvflare + ["poc", "start"], env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = next(work.rglob("admin@nvidia.com"))
    code = (
        "import sys\n"
        "from nvflare.fuel.flare_api.flare_api import new_secure_session\n"
        f"s = new_secure_session('admin@nvidia.com', {str(admin)!r}, timeout=5)\n"
        "try:\n"
        f"    sys.exit(0 if len(s.get_system_info().client_info) >= {sites} else 1)\n"
        "finally:\n"
        "    s.close()\n"
    )
    try:
        while time.monotonic() - t0 < 300:
            probe = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, check=False, timeout=60)
            if probe.returncode == 0:
                return time.monotonic() - t0, prepared
            time.sleep(1)
        sys.exit(f"POC clients did not register within 300 s ({sites} sites)")
    finally:
        subprocess.run(nvflare + ["poc", "stop"], env=e, capture_output=True, check=False, timeout=120)
        time.sleep(5)
        subprocess.run(nvflare + ["poc", "clean"], env=e, capture_output=True, check=False, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else f"missed by {value - target:.2f}"


def table(counts: list[int], results: dict, baseline: dict) -> list[str]:
    rows = ["| measure | federated.nvflare | NVFlare POC | ratio | target | |", "| --- | --- | --- | --- | --- | --- |"]
    for n in counts:
        ratio = results[n]["deploy"] / baseline[n]
        rows.append(
            f"| deploy until all sites registered, {n} sites | {results[n]['deploy']:.1f} s | {baseline[n]:.1f} s "
            f"| {ratio:.2f}x | <= {TARGETS['deploy_ratio']:.1f}x | {verdict(ratio, TARGETS['deploy_ratio'])} |"
        )
    lo, hi = min(counts), max(counts)
    if lo != hi:
        growth, poc_growth = results[hi]["deploy"] / results[lo]["deploy"], baseline[hi] / baseline[lo]
        rows.append(
            f"| growth from {lo} to {hi} sites | {growth:.2f}x | {poc_growth:.2f}x | - "
            f"| <= {TARGETS['growth']:.1f}x | {verdict(growth, TARGETS['growth'])} |"
        )
    for n in counts:
        target = TARGETS["rerun"].get(n)
        mark = verdict(results[n]["rerun"], target) if target else ""
        rows.append(
            f"| re-run with nothing to do, {n} sites (changed={results[n]['changed']}) | {results[n]['rerun']:.1f} s "
            f"| - | - | {f'<= {target:.0f} s' if target else '-'} | {mark} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[2, 8], help="site counts (default: 2 8)")
    parser.add_argument("--profile", action="store_true", help="where the time goes, for the largest count")
    args = parser.parse_args()
    counts = sorted(set(args.sites))
    work = Path(tempfile.mkdtemp(prefix="nvflare-deploy-bench."))
    results, baseline, prepares = {}, {}, {}
    try:
        for n in counts:
            results[n] = ours(n, work, args.profile and n == counts[-1])
            print(f"{n} sites: deploy {results[n]['deploy']:.1f} s, re-run {results[n]['rerun']:.1f} s", flush=True)
            baseline[n], prepares[n] = poc(n)
            print(f"{n} sites: nvflare poc prepare + start {baseline[n]:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + "\n".join(table(counts, results, baseline)))
    if args.profile:
        n = counts[-1]
        big = results[n]
        if big["last_start"] is not None:
            print(
                f"\nDeploy, {n} sites: the last participant process started {big['last_start']:.1f} s into the run, "
                f"the run ended (every site registered) {big['deploy'] - big['last_start']:.1f} s later. "
                f"POC, {n} sites: prepare {prepares[n]:.1f} s, "
                f"start until registered {baseline[n] - prepares[n]:.1f} s."
            )
        print(f"\nTasks per host in the re-run ({n} sites): {big['tasks']}")
        for title, lines in zip(("deploy", "re-run"), big["profile"], strict=True):
            print(f"\nSlowest tasks of the {title} ({counts[-1]} sites):")
            print("\n".join(lines) or "  (no profile output)")


if __name__ == "__main__":
    main()
