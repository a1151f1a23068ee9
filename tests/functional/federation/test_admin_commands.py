"""NVFlare's own admin `restart` and `shutdown` on participants run by the process service manager.

A federation of its own (a server and two sites from `nvflare provision`, free ports), started
by a playbook that runs the _participant role's service tasks with the process service manager
(the one-machine demo's) for each participant, each an inventory host of its own on this
machine. Then `restart` and `shutdown` through the FLARE API with the admin kit, as an operator
issues them, and the playbook again: a restarted participant comes back and registers; a shut
down one stays away until the next playbook run, which reports it changed.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.functional.federation.conftest import ADMIN, PYTHON, SITES, VENV_BIN, Federation
from tests.helpers import flare_admin
from tests.helpers.ansible import ansible_env
from tests.helpers.polling import wait_until

SERVER = "localhost"
PARTICIPANTS = (SERVER, *SITES)

PLAY = """
- name: Run the participants as plain processes
  hosts: all
  gather_facts: false
  tasks:
    - name: Run the service
      ansible.builtin.include_role:
        name: federated.nvflare._participant
        tasks_from: "{{ entry | default('service') }}"
      vars:
        _participant_name: "{{ inventory_hostname }}"
        _participant_type: "{{ 'server' if inventory_hostname == 'localhost' else 'client' }}"
        _participant_staging: "{{ kits }}/staging"
        _participant_dir: "{{ kits }}/{{ inventory_hostname }}"
        _participant_user: "{{ service_user }}"
        _participant_venv: "{{ venv }}"
        _participant_service_manager: process
        _participant_environment:
          OMP_NUM_THREADS: "1"
          MKL_NUM_THREADS: "1"

    - name: Keep the status report
      ansible.builtin.copy:
        content: "{{ __participant_status_reports | to_json }}"
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        mode: "0644"
      when: entry | default('service') == 'status'
"""


class Deployment:
    def __init__(self, root: Path):
        self.root = root
        self.federation = Federation(root)
        self.env = ansible_env(root)

    def kit(self, name: str) -> Path:
        return self.federation.kit(name)

    def playbook(self, extra: str = "") -> dict[str, int]:
        """Run the play (EXTRA: more -e variables, e.g. the entry point); {host: changed} from its recap."""
        proc = subprocess.run(
            [
                str(VENV_BIN / "ansible-playbook"),
                "-i",
                str(self.root / "hosts.ini"),
                str(self.root / "play.yml"),
                "-e",
                f"kits={self.federation.kits} service_user={getpass.getuser()} venv={VENV_BIN.parent} {extra}",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return {h: int(n) for h, n in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M)}

    def admin(self, action: str, *args: str):
        return flare_admin.run([], PYTHON, ADMIN, str(self.federation.admin_kit), action, *args)

    def registered(self) -> list[str]:
        try:
            return self.admin("registered")
        except AssertionError:
            return []  # the server is restarting

    def log(self, name: str) -> str:
        path = self.kit(name) / "service.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pgid(self, name: str) -> int:
        return int((self.kit(name) / "service.pid").read_text())

    def alive(self, name: str) -> bool:
        try:
            os.killpg(self.pgid(name), 0)
        except (ProcessLookupError, FileNotFoundError, ValueError):
            return False
        return True

    def stop(self) -> None:
        for name in PARTICIPANTS:
            try:
                os.killpg(self.pgid(name), signal.SIGKILL)
            except (ProcessLookupError, FileNotFoundError, ValueError):
                pass
        for pid in self.federation.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait(predicate, timeout: float, step: float = 2.0) -> bool:
    return wait_until(predicate, timeout, step)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    pytest.importorskip("nvflare")
    d = Deployment(tmp_path_factory.mktemp("admin-commands"))
    d.federation.provision()
    (d.root / "play.yml").write_text(PLAY)
    (d.root / "hosts.ini").write_text(
        "".join(f"{h} ansible_connection=local ansible_python_interpreter={PYTHON}\n" for h in PARTICIPANTS)
    )
    try:
        changed = d.playbook()
        assert all(changed[h] > 0 for h in PARTICIPANTS), changed
        assert _wait(lambda: d.registered() == list(SITES), 120), d.log(SERVER)[-3000:]
        yield d
    finally:
        d.stop()
        # Killed processes that were not this test's children are reaped by someone else.
        assert _wait(lambda: not d.federation.pids(), 20, 0.5), f"processes left behind: {d.federation.pids()}"


def _registrations(d: Deployment, site: str) -> int:
    return d.log(site).count(f"Successfully registered client:{site}")


def test_admin_restart_of_a_site_brings_it_back_registered(deployment):
    d = deployment
    site = SITES[0]
    pgid, before = d.pgid(site), _registrations(d, site)
    start = time.monotonic()
    d.admin("restart", "client", site)
    assert _wait(lambda: _registrations(d, site) > before, 120), d.log(site)[-3000:]
    print(f"{site} registered again {time.monotonic() - start:.0f} s after the admin's restart")
    assert "restart.fl: starting again" in d.log(site)
    # The same supervisor brought it back; restart.fl is gone (sub_start.sh removes it).
    assert d.pgid(site) == pgid and d.alive(site)
    assert not (d.kit(site) / "restart.fl").exists()
    assert _wait(lambda: d.registered() == list(SITES), 60)


def test_admin_restart_of_the_server_brings_it_back_and_the_sites_reconnect(deployment):
    d = deployment
    start = time.monotonic()
    d.admin("restart", "server")
    assert _wait(lambda: "restart.fl: starting again" in d.log(SERVER), 120), d.log(SERVER)[-3000:]
    assert _wait(lambda: d.registered() == list(SITES), 180), d.log(SERVER)[-3000:]
    print(f"server back with both sites {time.monotonic() - start:.0f} s after the admin's restart")
    assert d.alive(SERVER) and not (d.kit(SERVER) / "restart.fl").exists()


def test_admin_shutdown_keeps_a_site_down_until_the_next_playbook_run(deployment):
    d = deployment
    site = SITES[1]
    d.admin("shutdown", "client", site)
    assert _wait(lambda: not d.alive(site), 90), d.log(site)[-3000:]
    assert (d.kit(site) / "shutdown.fl").exists()
    # It stays away: nothing starts it again.
    time.sleep(15)
    assert not d.alive(site)
    assert _wait(lambda: site not in d.registered(), 120), d.registered()

    # The next playbook run is the explicit start: only that site changes, and it registers.
    before = _registrations(d, site)
    changed = d.playbook()
    assert changed[site] > 0 and changed[SERVER] == 0 and changed[SITES[0]] == 0, changed
    assert d.alive(site) and not (d.kit(site) / "shutdown.fl").exists()
    assert _wait(lambda: _registrations(d, site) > before, 120), d.log(site)[-3000:]
    assert _wait(lambda: d.registered() == list(SITES), 60)
    assert d.playbook() == dict.fromkeys(PARTICIPANTS, 0)


def test_status_reads_each_process(deployment, tmp_path):
    """The status entry point (playbooks/status.yml's) on the process service manager."""
    d = deployment
    d.playbook(f"entry=status out={tmp_path}")
    for name in PARTICIPANTS:
        report = json.loads((tmp_path / f"{name}.json").read_text())[0]["status"]
        service = report["service"]
        assert service["manager"] == "process" and service["state"] == "running", report
        assert service["pid"] and service["since"], report
        assert report["installed"] and report["nvflare_version"] and report["problems"] == [], report


def test_uninstall_stops_each_process_and_removes_its_workspace(deployment):
    """The absent entry point (uninstall.yml's) on the process service manager; a second run changes nothing."""
    d = deployment
    pgids = {name: d.pgid(name) for name in PARTICIPANTS}
    changed = d.playbook("entry=absent")
    assert all(changed[h] > 0 for h in PARTICIPANTS), changed
    for name, pgid in pgids.items():
        assert not d.kit(name).exists(), name

        def gone(group=pgid):
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return True
            return False

        assert _wait(gone, 30, 0.5), f"{name}'s processes still run"
    assert d.playbook("entry=absent") == dict.fromkeys(PARTICIPANTS, 0)
