"""The _participant role restarts through its handlers: once per change, on the right host.

Two inventory hosts on this machine, each a participant of its own run by the process service
manager, included from two roles with vars of their own, in a play with strategy free (as
site.yml runs them). A stand-in startup/sub_start.sh records every start in its workspace and
sleeps. The kit's change notification is a task of the including role (tasks/main.yml notifies
the same way after a kit install, which needs a real kit and root).
"""

from __future__ import annotations

import getpass
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.ansible import ansible_env

HOSTS = ("alpha", "beta")

SUB_START = """#!/usr/bin/env bash
echo "$HOME $$" >> "$HOME/starts"
exec sleep 600
"""

CALLER = """
- name: Load the participant role (its handlers)
  ansible.builtin.include_role:
    name: federated.nvflare._participant
    tasks_from: service
  vars:
    _participant_name: {name}
    _participant_service_manager: none

- name: Stand in for a changed kit
  ansible.builtin.command: "true"
  changed_when: kit_changed | bool
  notify: Restart the participant

- name: Run the service
  ansible.builtin.include_role:
    name: federated.nvflare._participant
    tasks_from: service
  vars:
    _participant_name: {name}
    _participant_dir: "{{{{ workspaces }}}}/{name}"
    _participant_user: "{{{{ service_user }}}}"
    _participant_venv: /nonexistent
    _participant_service_manager: process
"""

PLAY = """
- name: Run two participants
  hosts: all
  strategy: free
  gather_facts: false
  tasks:
    - name: Run alpha
      ansible.builtin.include_role:
        name: caller_alpha
      when: inventory_hostname == 'alpha'
    - name: Run beta
      ansible.builtin.include_role:
        name: caller_beta
      when: inventory_hostname == 'beta'
"""


@pytest.fixture
def deploy(tmp_path):
    workspaces = tmp_path / "workspaces"
    for host in HOSTS:
        startup = workspaces / host / "startup"
        startup.mkdir(parents=True)
        (startup / "sub_start.sh").write_text(SUB_START)
        role = tmp_path / "roles" / f"caller_{host}" / "tasks"
        role.mkdir(parents=True)
        (role / "main.yml").write_text(CALLER.format(name=host))
    (tmp_path / "site.yml").write_text(PLAY)
    (tmp_path / "hosts.ini").write_text(
        "".join(f"{h} ansible_connection=local ansible_python_interpreter={sys.executable}\n" for h in HOSTS)
    )
    env = ansible_env(tmp_path)
    env["ANSIBLE_ROLES_PATH"] = str(tmp_path / "roles")

    def run(kit_changed: bool) -> str:
        proc = subprocess.run(
            [
                "ansible-playbook",
                "-i",
                str(tmp_path / "hosts.ini"),
                str(tmp_path / "site.yml"),
                "-e",
                f"workspaces={workspaces} service_user={getpass.getuser()} kit_changed={kit_changed}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return proc.stdout

    yield run, workspaces
    for host in HOSTS:
        pidfile = workspaces / host / "service.pid"
        if pidfile.exists():
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def _starts(workspaces: Path, host: str) -> list[str]:
    path = workspaces / host / "starts"
    return path.read_text().splitlines() if path.exists() else []


def _running(workspaces: Path, host: str) -> bool:
    pgid = int((workspaces / host / "service.pid").read_text())
    return subprocess.run(["kill", "-0", "--", f"-{pgid}"], check=False).returncode == 0


def test_a_change_restarts_each_participant_once_on_its_own_host(deploy):
    run, workspaces = deploy
    out = run(kit_changed=True)
    for host in HOSTS:
        starts = _starts(workspaces, host)
        # Started once, by the handler; the start task then found it running.
        assert len(starts) == 1, (host, starts, out[-3000:])
        assert starts[0].split()[0] == str(workspaces / host)
        assert _running(workspaces, host)
    assert "Restart the participant's process" in out

    # Nothing changed: nothing restarts.
    run(kit_changed=False)
    assert all(len(_starts(workspaces, host)) == 1 for host in HOSTS)

    # A change restarts each once more, in its own workspace; the old process is gone.
    first = {host: int(_starts(workspaces, host)[0].split()[1]) for host in HOSTS}
    run(kit_changed=True)
    for host in HOSTS:
        starts = _starts(workspaces, host)
        assert len(starts) == 2, (host, starts)
        assert {line.split()[0] for line in starts} == {str(workspaces / host)}
        assert _running(workspaces, host)
        with pytest.raises(ProcessLookupError):
            os.kill(first[host], 0)


def test_the_handlers_read_only_the_hosts_fact():
    """A handler that read the role's variables would get those of whichever include loaded it last."""
    handlers = (Path(__file__).resolve().parents[3] / "roles" / "_participant" / "handlers" / "main.yml").read_text()
    code = "\n".join(line for line in handlers.splitlines() if not line.lstrip().startswith("#"))
    names = set(re.findall(r"\b_{1,2}participant_\w+", code))
    # The process scripts are fixed text of vars/main.yml; every setting comes from the fact.
    # (__participant_restarted and __participant_container_restart are the handlers' own
    # registered results.)
    allowed = {
        "__participant_service",
        "__participant_restarted",
        "__participant_container_restart",
        "_participant_process_stop",
        "_participant_process_start",
    }
    assert names <= allowed, names
    vars_text = (Path(__file__).resolve().parents[3] / "roles" / "_participant" / "vars" / "main.yml").read_text()
    for script in ("_participant_process_stop", "_participant_process_start"):
        block = vars_text.split(f"{script}: |", 1)[1].split("\n_participant", 1)[0]
        assert "{{" not in block and "{%" not in block, script
    # systemd, process, and the container's two steps (look, then restart when it exists).
    assert code.count("listen: Restart the participant") == 4
