"""The headline run over SSH, on the cloud scenario's hosts: figures printed, not asserted.

The hosts are the Molecule scenario `cloud`'s (molecule/cloud): three systemd containers that
log in `ubuntu` over SSH with sudo, the instances built in moto by aws_infra.yml, an ordinary
user on the controller. Each route starts from running containers with nothing installed.

1. federated.nvflare: site.yml as that user, as docs/aws.md gives it (molecule/cloud/cloudctl.py
   site): packages pushed from the controller's wheelhouse over SSH, kits, services, the admin
   side on the controller, the reference job (synthetic spleen, 2 rounds). Timed until the first
   round finished (the earliest `round 1: global` line of a site's job log: a site received the
   model aggregated from round 0) and until the run ended (job done, results downloaded).
2. re-run: site.yml again with nothing to do, and its changed count.
3. NVFlare's own route (--no-nvflare-route leaves it out), on fresh containers again, the way
   NVFlare's guides do it by hand over SSH: `nvflare provision` of the same project.yml, then
   for each host at once: scp of the wheelhouse, a virtualenv and `pip install --no-index` as
   `ubuntu`, scp of its kit, `startup/start.sh`; then the admin submits the same job folder
   through the FLARE API once both sites are registered. Timed until the first round finished.

Targets (server and two sites on 2 cores): first round within 180 s, re-run within 30 s.

Run as root from the repository after `make molecule SCENARIO=cloud` (or `make test`) has built
the images and the wheelhouse: .venv/bin/python bench/cloud_ssh.py
The scenario's containers, moto and the test user are removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "molecule" / "cloud"))
import cloudctl  # noqa: E402

TARGETS = {"first_round": 180.0, "rerun": 30.0}
ROUND1 = re.compile(r"^(\S+ \S+),\d+ .*: round 1: global val_dice", re.M)
ADMIN = "admin@example.com"
# What the roles install (server_packages, client_gpu_packages): the job's server side needs PyTorch too.
PACKAGES = ["nvflare==2.9.0", "torch==2.13.0", "monai==1.6.1", "nibabel==5.4.2"]


def molecule(*steps: str) -> None:
    for step in steps:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "molecule.sh"), "cloud", step], capture_output=True,
                              text=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"molecule {step} -s cloud failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")


def fresh_hosts() -> Path:
    """Containers with nothing installed, the instances in moto, the operator: the scenario's prepare."""
    molecule("cleanup", "destroy", "create")
    pattern = ROOT / ".cache" / "molecule-ansible-home" / "tmp" / "molecule.*.cloud" / "cloud" / "moto.json"
    found = sorted(glob.glob(str(pattern)), key=os.path.getmtime)
    if not found:
        raise SystemExit("the cloud scenario's state (moto.json) was not found after `molecule create`")
    return Path(found[-1]).parent


def first_round_end(logs_at: dict[str, str]) -> float | None:
    """Epoch seconds of the earliest `round 1: global` line in the sites' job logs (UTC in the containers)."""
    stamps = []
    for site, pattern in logs_at.items():
        out = subprocess.run(["docker", "exec", f"cloud-{site}", "sh", "-c", f"cat {pattern} 2>/dev/null"],
                             capture_output=True, text=True, check=False).stdout  # fmt: skip
        for match in ROUND1.finditer(out):
            when = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.timezone.utc)
            stamps.append(when.timestamp())
    return min(stamps) if stamps else None


def site_run(state: Path) -> tuple[float, str]:
    t0 = time.time()
    proc = subprocess.run([sys.executable, cloudctl.__file__, "site", str(state)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    took = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"site.yml failed:\n{proc.stdout[-4000:]}")
    return took, proc.stdout


def changed(output: str) -> int:
    return sum(int(n) for n in re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)", output, re.M))


def collection_route(keep: Path) -> dict:
    state = fresh_hosts()
    t0 = time.time()
    took, _ = site_run(state)
    round1 = first_round_end({s: f"/var/lib/nvflare/{s}/*/log.txt" for s in ("site-1", "site-2")})
    rerun, output = site_run(state)
    # What NVFlare's route reuses: the same project and the same rendered job.
    workspace = cloudctl.STATE_DIR / "workspace"
    project = next(workspace.rglob("project.yml"))
    shutil.copy(project, keep / "project.yml")
    shutil.copytree(cloudctl.HOME / ".nvflare-admin" / "jobs" / "spleen_ct_segmentation", keep / "job")
    return {
        "first_round": round1 - t0 if round1 else None,
        "run": took,
        "rerun": rerun,
        "rerun_changed": changed(output),
    }


def nvflare_route(keep: Path) -> dict:
    fresh_hosts()
    key = str(cloudctl.HOME / ".ssh" / "id_ed25519")
    opts = ["-i", key, "-o", f"UserKnownHostsFile={cloudctl.HOME / '.ssh' / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]  # fmt: skip
    addresses = {name: cloudctl.container_ip(container) for name, container in cloudctl.INSTANCES.items()}
    wheelhouse = os.environ.get("NVFLARE_WHEELHOUSE", str(ROOT / ".cache" / "wheelhouse"))
    work = keep / "provision"
    t0 = time.time()
    provision = [str(ROOT / ".venv" / "bin" / "nvflare"), "provision", "-p", str(keep / "project.yml"), "-w", str(work)]
    subprocess.run(provision, check=True, capture_output=True, cwd=keep)
    prod = sorted(work.glob("*/prod_*"))[-1]
    errors: list[str] = []

    def host(name: str, kit: str) -> None:
        target = f"ubuntu@{addresses[name]}"
        steps = [
            ["scp", "-q", "-r", *opts, wheelhouse, f"{target}:wheelhouse"],
            ["ssh", *opts, target, "python3 -m venv nvflare-env && nvflare-env/bin/pip install -q --no-index "
             f"--disable-pip-version-check -f wheelhouse {' '.join(PACKAGES)}"],
            ["scp", "-q", "-r", *opts, str(prod / kit), f"{target}:{kit}"],
            ["ssh", *opts, target, f"cd {kit} && PATH=$HOME/nvflare-env/bin:$PATH setsid nohup bash startup/start.sh "
             "> start.log 2>&1 < /dev/null &"],
        ]  # fmt: skip
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
            if proc.returncode != 0:
                errors.append(f"{name}: {' '.join(cmd[:2])}: {proc.stderr[-500:]}")
                return

    threads = [threading.Thread(target=host, args=("server", cloudctl.SERVER_FQDN))]
    threads += [threading.Thread(target=host, args=(s, s)) for s in ("site-1", "site-2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("NVFlare's route failed: " + "; ".join(errors))
    submit = f"""
import sys, time
from nvflare.fuel.flare_api.flare_api import new_secure_session
s = new_secure_session({ADMIN!r}, {str(prod / ADMIN)!r}, timeout=300)
deadline = time.time() + 300
while len(s.get_system_info().client_info) < 2:
    if time.time() > deadline:
        sys.exit("the sites did not register within 300 s")
    time.sleep(0.5)
print(s.submit_job({str(keep / "job")!r}))
"""
    try:
        proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", submit], capture_output=True, text=True,
                              timeout=600, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SystemExit(f"NVFlare's route: the admin's login hung for 600 s\n{diagnostics()}") from None
    if proc.returncode != 0:
        raise SystemExit(f"NVFlare's route: the admin failed: {proc.stderr[-1500:]}\n{diagnostics()}")
    logs = {s: f"/home/ubuntu/{s}/*/log.txt" for s in ("site-1", "site-2")}
    deadline = time.time() + 900
    while (round1 := first_round_end(logs)) is None:
        if time.time() > deadline:
            raise SystemExit("NVFlare's route: no round finished within 15 minutes")
        time.sleep(1)
    return {"first_round": round1 - t0}


def diagnostics() -> str:
    """The last lines of each hand-started participant's logs."""
    out = []
    for name, container in cloudctl.INSTANCES.items():
        kit = cloudctl.SERVER_FQDN if name == "server" else name
        logs = f"tail -n 15 /home/ubuntu/{kit}/start.log /home/ubuntu/{kit}/log.txt 2>&1"
        tail = subprocess.run(
            ["docker", "exec", container, "sh", "-c", logs], capture_output=True, text=True, check=False
        )
        out.append(f"== {name}\n{tail.stdout}")
    return "\n".join(out)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-nvflare-route", action="store_true", help="time federated.nvflare only")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it creates the scenario's containers and test user)")
    keep = Path(tempfile.mkdtemp(prefix="bench-cloud-"))
    try:
        ours = collection_route(keep)
        print("federated.nvflare:", json.dumps(ours), flush=True)
        theirs = None
        if not args.no_nvflare_route:
            try:
                theirs = nvflare_route(keep)
            except SystemExit as failed:
                print(f"NVFlare's route gave no figure: {failed}", flush=True)
    finally:
        molecule("cleanup", "destroy")
        shutil.rmtree(keep, ignore_errors=True)
    ratio = f"{ours['first_round'] / theirs['first_round']:.2f}x" if theirs and ours["first_round"] else "-"
    rows = [
        ("first round finished, server + 2 sites, from bare containers", fmt(ours["first_round"]),
         fmt(theirs["first_round"]) if theirs else "-", ratio, f"{TARGETS['first_round']:.0f} s"),
        ("the whole run (job done, results downloaded)", fmt(ours["run"]), "-", "-", "-"),
        (f"re-run with nothing to do (changed={ours['rerun_changed']})", fmt(ours["rerun"]), "-", "-",
         f"{TARGETS['rerun']:.0f} s"),
    ]  # fmt: skip
    print("| measure (over SSH) | federated.nvflare | NVFlare by hand | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(json.dumps({"federated.nvflare": ours, "nvflare_by_hand": theirs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
