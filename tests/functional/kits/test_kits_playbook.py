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


def _root_ca_digests(workspace: Path) -> set[str]:
    import hashlib

    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in workspace.glob("**/startup/rootCA.pem")}


def test_a_workspace_at_the_old_default_is_moved_once_not_provisioned_anew(tmp_path):
    """An earlier release kept the provisioning workspace beside the playbooks folder (inside the
    clone or the installed collection); the role moves it into the private state folder once,
    with a message, and provisioning keeps its root CA."""
    collection = tmp_path / "collection"
    (collection / "playbooks").mkdir(parents=True)
    playbook = collection / "playbooks" / "role.yml"
    playbook.write_text(NVFLARE_ROLE_PLAY)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "vars": {"nvflare_project": "movetest", "facts_file": str(tmp_path / "facts.json")},
                    "children": {
                        "nvflare_server": {"hosts": {"fl-server": local}},
                        "nvflare_clients": {"hosts": {"site-1": local}},
                    },
                }
            }
        )
    )
    env = ansible_env(tmp_path)
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    old = collection / ".nvflare-workspace"
    state = tmp_path / "xdg" / "federated.nvflare" / "movetest"
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(playbook)]

    def run(*extra: str) -> str:
        proc = subprocess.run([*cmd, *extra], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
        return proc.stdout

    # As an earlier release ran it: the workspace beside the playbooks folder.
    run("-e", f"nvflare_workspace={old}")
    before = _root_ca_digests(old)
    assert len(before) == 1, before

    out = run()
    # The message, wherever the output's YAML wrapped its line.
    assert f"moved {old} to {state / 'workspace'}" in " ".join(out.split()), out[-3000:]
    assert not old.exists()
    assert state.stat().st_mode & 0o777 == 0o700
    assert _root_ca_digests(state / "workspace") == before
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert facts["spec"]["state_dir"] == str(state)
    assert facts["spec"]["workspace"] == str(state / "workspace")

    # Moved once: the next run changes nothing and says nothing about moving.
    out = run()
    assert "changed=0" in out, out[-3000:]
    assert "moved /" not in out
    assert _root_ca_digests(state / "workspace") == before


CHECK_PLAY = """---
- name: The controller's preflight
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Check what a play needs
      federated.nvflare.controller_check:
        nvflare_version: "{{ want_nvflare }}"
        collections: "{{ want_collections }}"
        python_modules: "{{ want_modules }}"
"""


def test_controller_check_names_each_missing_thing_and_its_install_command(tmp_path):
    playbook = tmp_path / "check.yml"
    playbook.write_text(CHECK_PLAY)
    # An aws_ec2 inventory source (an empty one: the check reads its file name, as the plugin does).
    (tmp_path / "demo.aws_ec2.yml").write_text("plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n")
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", str(playbook)]
    env = ansible_env(tmp_path)

    def run(nvflare: str, collections: list[str], modules: list[str], *extra: str) -> subprocess.CompletedProcess:
        args = json.dumps({"want_nvflare": nvflare, "want_collections": collections, "want_modules": modules})
        return subprocess.run(
            [*cmd, "-e", args, *extra], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    ok = run("2.9.0", ["ansible.utils", "community.docker"], ["boto3"])
    assert ok.returncode == 0, (ok.stdout + ok.stderr)[-3000:]
    assert "changed=0" in ok.stdout

    bad = run("2.7.0", ["no_such.collection"], ["no_such_module"])
    out = bad.stdout + bad.stderr
    assert bad.returncode == 2, out[-3000:]
    assert "NVFlare 2.9.0 in " in out and "the project runs 2.7.0" in out
    assert "pip install 'nvflare==2.7.0'" in out
    assert "the collection no_such.collection is not on Ansible's collections path" in out
    assert "ansible-galaxy collection install no_such.collection" in out
    assert "the Python module no_such_module is not importable" in out
    assert "make controller" in out

    # An AWS inventory needs amazon.aws and boto3: found here, so the check passes with it too;
    # without the collections path, amazon.aws is named.
    with_aws = run("2.9.0", [], [], "-i", str(tmp_path / "demo.aws_ec2.yml"))
    assert with_aws.returncode == 0, (with_aws.stdout + with_aws.stderr)[-3000:]
    env["ANSIBLE_COLLECTIONS_PATH"] = str(tmp_path / "empty")
    missing_aws = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-i",
         str(tmp_path / "demo.aws_ec2.yml"), str(playbook), "-e",
         json.dumps({"want_nvflare": "", "want_collections": [], "want_modules": []})],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = missing_aws.stdout + missing_aws.stderr
    # Without the collections path the collection's own module is not found either: Ansible says so.
    assert missing_aws.returncode != 0, out[-3000:]
