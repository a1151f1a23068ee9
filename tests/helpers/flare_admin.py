"""NVFlare's own admin commands, as an operator issues them, for tests that check how our services react.

PROGRAM is a short Python program for the FLARE API (the API behind `nvflare system ...` and the
admin console), run with an admin kit's interpreter wherever the kit lives (a test host through
`docker exec`, this machine):

    python -c PROGRAM <admin user> <admin kit> registered
    python -c PROGRAM <admin user> <admin kit> versions
    python -c PROGRAM <admin user> <admin kit> jobs
    python -c PROGRAM <admin user> <admin kit> restart|shutdown server|client|all [site ...]

It prints one JSON line: the sorted names of the registered sites, {participant: the NVFlare
release its process reports}, {job id: status} of every job in the job store, or the command's reply. The
commands do not wait for the outcome (wait=False): the tests watch the services themselves.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

PROGRAM = r"""
import json, sys
from nvflare.fuel.flare_api.flare_api import new_secure_session

user, kit, action, *args = sys.argv[1:]
session = new_secure_session(user, kit, timeout=30)
try:
    if action == "registered":
        reply = sorted(c.name for c in session.get_system_info().client_info)
    elif action == "versions":
        reply = {name: value.get("version") for name, value in session.report_version("all").items()}
    elif action == "jobs":
        reply = {job["job_id"]: job["status"] for job in session.list_jobs()}
    elif action in ("restart", "shutdown"):
        target, *sites = args
        reply = getattr(session, action)(target, client_names=sites or None, wait=False)
    else:
        raise SystemExit(f"unknown action {action}")
finally:
    try:
        session.close()
    except Exception:
        pass
print(json.dumps(reply, default=str))
"""


def command(python: str, user: str, kit: str, action: str, *args: str) -> list[str]:
    """The argv that runs ACTION with the admin kit KIT of USER through the interpreter PYTHON."""
    return [python, "-c", PROGRAM, user, kit, action, *args]


def run(prefix: Sequence[str], python: str, user: str, kit: str, action: str, *args: str, timeout: float = 120):
    """Run ACTION, with PREFIX before the argv (for example ["docker", "exec", "server"]); its JSON reply."""
    proc = subprocess.run(
        [*prefix, *command(python, user, kit, action, *args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"admin command {action} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])
