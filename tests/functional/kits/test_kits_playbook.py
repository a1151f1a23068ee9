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
