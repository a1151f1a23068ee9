"""Run tests/functional/kits/kits.yml with ansible-playbook on localhost.

The playbook asserts the module promises (check mode writes nothing, first run changed, second
run not, adding a site keeps the root CA); this test runs it at -vvv and checks that the PIN
appears nowhere in what Ansible printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.ansible import ansible_env

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(__file__).with_name("kits.yml")
PIN = "Zq81PinNeverShown"


def system_python() -> str:
    """A Python without NVFlare but with cryptography, like a managed host's (Debian's python3), or ''."""
    for candidate in ("/usr/bin/python3",):
        if os.access(candidate, os.X_OK):
            probe = subprocess.run(
                [
                    candidate,
                    "-c",
                    "import cryptography, json; import importlib.util as u; "
                    "print(json.dumps(u.find_spec('nvflare') is None))",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0 and probe.stdout.strip() == "true":
                return candidate
    return ""


def test_playbook_check_idempotence_and_no_pin_in_output(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                        }
                    }
                }
            }
        )
    )
    extra = tmp_path / "vars.json"  # a file, so the PIN is not on ansible-playbook's command line
    extra.write_text(
        json.dumps(
            {
                "kits_workspace": str(tmp_path / "workspace"),
                "kits_dest": str(tmp_path / "host" / "site-1"),
                "kits_pin": PIN,
                "kits_system_python": system_python(),
            }
        )
    )
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-vvv",
            "-i",
            str(inventory),
            "-e",
            f"@{extra}",
            str(PLAYBOOK),
        ],
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "failed=0" in output and "unreachable=0" in output
    rescued = 2 if system_python() else 1  # the refused kit mix-up, provision without NVFlare
    assert f"rescued={rescued}" in output
    if system_python():
        assert "skipped=0" in output
    assert PIN not in output
    assert PIN.lower() not in output.lower()
    # The run left what the play promised on disk.
    assert (tmp_path / "workspace" / "kits" / "site-3" / "startup" / "client.crt").is_file()
    assert (tmp_path / "workspace" / "zips" / "site-3.zip").is_file()
    assert (tmp_path / "host" / "site-1" / "startup" / "client.key").stat().st_mode & 0o777 == 0o600


NVFLARE_ROLE_PLAY = """---
- name: The nvflare role on the controller, as site.yml's first play runs it
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: federated.nvflare.nvflare
  post_tasks:
    - name: Save the facts for the test
      ansible.builtin.copy:
        content: "{{ {'spec': nvflare_project_spec, 'provisioned': nvflare_provisioned} | to_nice_json }}"
        dest: "{{ facts_file }}"
        mode: "0600"
      # The module's result (part of the facts) says whether it changed: not the role's doing.
      changed_when: false
"""


def test_nvflare_role_describes_the_project_once_and_provisions_its_kits(tmp_path):
    """Path A of the nvflare role: host variables win over the defaults, one kit per participant, re-run unchanged."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "vars": {
                        "nvflare_project": "roletest",
                        "nvflare_workspace": str(tmp_path / "workspace"),
                        "facts_file": str(tmp_path / "facts.json"),
                    },
                    "children": {
                        "nvflare_server": {"hosts": {"fl-server": dict(local, nvflare_fqdn="fl.example.org")}},
                        "nvflare_clients": {
                            "hosts": {
                                "gpu-host-1": dict(local, nvflare_site_name="site-1", nvflare_org="hospital_a"),
                                "site-2": local,
                            }
                        },
                        "nvflare_admin": {"hosts": {"admin-host": dict(local, nvflare_admin_email="lead@example.org")}},
                    },
                },
            }
        )
    )
    playbook = tmp_path / "role.yml"
    playbook.write_text(NVFLARE_ROLE_PLAY)
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(playbook)]
    runs = [
        subprocess.run(cmd, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=300, check=False)
        for _run in range(2)
    ]
    for proc in runs:
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    # The re-run provisions nothing.
    assert "changed=0" in runs[1].stdout, runs[1].stdout[-3000:]

    facts = json.loads((tmp_path / "facts.json").read_text())
    spec = facts["spec"]
    settings = (spec["name"], spec["fed_learn_port"], spec["admin_port"], spec["submit_job"])
    assert settings == ("roletest", 8002, 8003, False)
    assert spec["server"] == {"host": "fl-server", "name": "fl.example.org", "org": "nvflare"}
    assert [(s["host"], s["name"], s["org"]) for s in spec["sites"]] == [
        ("gpu-host-1", "site-1", "hospital_a"),
        ("site-2", "site-2", "nvflare"),
    ]
    assert spec["admin"] == {"host": "admin-host", "name": "lead@example.org", "org": "nvflare"}
    zips = facts["provisioned"]["zips"]
    assert set(zips) == {"fl.example.org", "site-1", "site-2", "lead@example.org"}
    assert all(Path(z).is_file() for z in zips.values())
