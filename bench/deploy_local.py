"""Deployment figures on the local inventory (the one-machine demo), printed, not asserted.

1. site.yml until both sites are registered (no job), packages already in the wheelhouse
   and the virtualenv, from stopped services: the deploy time.
2. site.yml again with nothing to do: the re-run time and its `changed` count.
3. NVFlare's own baseline on the same machine: `nvflare poc prepare -n 2` +
   `nvflare poc start` until 2 clients are registered.
Then the ratio deploy / baseline (target <= 1.5) and the re-run time (target <= 20 s).

Run as root from the repository: .venv/bin/python bench/deploy_local.py
It stops the demo federation first and leaves it stopped; the POC is stopped and removed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
INVENTORY = ROOT / "inventories" / "local" / "hosts.yml"


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{VENV_BIN}:{e['PATH']}"
    e["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".venv" / "collections")
    e["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    e.setdefault("NVFLARE_WHEELHOUSE", str(ROOT / ".cache" / "wheelhouse"))
    return e


def playbook(name: str, *extra: str) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), f"playbooks/{name}", *extra],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def changed(output: str) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output))


def poc_baseline() -> float:
    work = Path(tempfile.mkdtemp(prefix="nvflare-poc-bench."))
    e = env()
    e["NVFLARE_POC_WORKSPACE"] = str(work)
    nvflare = [str(VENV_BIN / "nvflare")]
    t0 = time.monotonic()
    prepare = nvflare + ["poc", "prepare", "-n", "2", "--force"]
    subprocess.run(prepare, env=e, input="y\n", text=True, capture_output=True, check=True)
    subprocess.Popen(nvflare + ["poc", "start"], env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = next(work.rglob("admin@nvidia.com"))
    code = (
        "import sys\n"
        "from nvflare.fuel.flare_api.flare_api import new_secure_session\n"
        f"s = new_secure_session('admin@nvidia.com', {str(admin)!r}, timeout=5)\n"
        "try:\n"
        "    sys.exit(0 if len(s.get_system_info().client_info) >= 2 else 1)\n"
        "finally:\n"
        "    s.close()\n"
    )
    try:
        while time.monotonic() - t0 < 300:
            probe = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, check=False, timeout=60)
            if probe.returncode == 0:
                return time.monotonic() - t0
            time.sleep(1)
        sys.exit("POC clients did not register within 300 s")
    finally:
        subprocess.run(nvflare + ["poc", "stop"], env=e, capture_output=True, check=False, timeout=120)
        time.sleep(5)
        subprocess.run(nvflare + ["poc", "clean"], env=e, capture_output=True, check=False, timeout=60)


def main() -> None:
    playbook("stop.yml")
    deploy, _ = playbook("site.yml")
    rerun, out = playbook("site.yml")
    playbook("stop.yml")
    print(f"site.yml until 2 sites registered:      {deploy:6.1f} s")
    print(
        f"site.yml re-run, nothing to do:         {rerun:6.1f} s  (changed={changed(out)}, target <= 20 s)", flush=True
    )
    baseline = poc_baseline()
    print(f"nvflare poc prepare + start, 2 clients: {baseline:6.1f} s")
    print(f"ratio deploy / poc:                     {deploy / baseline:6.2f}    (target <= 1.5)")


if __name__ == "__main__":
    main()
