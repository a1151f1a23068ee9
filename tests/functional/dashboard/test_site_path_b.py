"""site.yml path B: playbooks/dashboard_kits.yml run by ansible-playbook against a real dashboard.

A fresh dashboard of its own (the play freezes its project). The inventory has a server, two
sites (one with a GPU capacity and one with its own PIN in host vars) and an admin host whose
admin is a separate dashboard user. A wrapper play after dashboard_kits.yml installs every kit
with federated.nvflare.startup_kit from the nvflare_provisioned fact (as the roles do) and
saves the fact to a file, so the contract with the rest of site.yml is checked too.

The tests build on each other in file order: refusals first (nothing may reach the dashboard),
then the real run, then the re-run.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.helpers.ansible import ansible_env
from tests.helpers.zipcrypto import pin_refused

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = ROOT / "playbooks" / "dashboard_kits.yml"
PIN = "PathB7Pin2026"
SITE2_PIN = "Site2OwnPin99"
LEAD = "lead@hospital-a.example.org"
LEAD_PW = "PathBLeadPw8642"
SERVER = "fl.example.org"
# The dashboard's own secrets (conftest.Dashboard.start) must not show up either.
DASHBOARD_SECRETS = ["functional-test-secret-key-0123456789", "functional-test-passphrase"]
SECRETS = [PIN, SITE2_PIN, LEAD_PW, *DASHBOARD_SECRETS]  # plus the dashboard admin's password
KITS = {SERVER: ("server", PIN), "site-1": ("client", PIN), "site-2": ("client", SITE2_PIN), LEAD: ("admin", PIN)}

WRAPPER = """---
- name: Path B
  ansible.builtin.import_playbook: {playbook}

- name: Use the fact the way site.yml's roles do
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Install each kit
      federated.nvflare.startup_kit:
        src: "{{{{ nvflare_provisioned.kits[item.key] }}}}"
        dest: "{{{{ installed_dir }}}}/{{{{ item.key }}}}"
        pin: "{{{{ nvflare_provisioned.pins[item.key] }}}}"
        participant: "{{{{ item.key }}}}"
        type: "{{{{ item.value }}}}"
      loop: "{{{{ kit_types | dict2items }}}}"
      loop_control:
        label: "{{{{ item.key }}}}"

    - name: Save the fact for the test
      ansible.builtin.copy:
        content: "{{{{ nvflare_provisioned | to_nice_json }}}}"
        dest: "{{{{ fact_file }}}}"
        mode: "0600"
      no_log: true
"""


class PathB:
    def __init__(self, dashboard, folder: Path):
        self.dashboard = dashboard
        self.folder = folder
        self.kits_dir = folder / "kits"
        self.installed_dir = folder / "installed"
        self.fact_file = folder / "fact.json"
        self.playbook = folder / "wrapper.yml"
        self.playbook.write_text(WRAPPER.format(playbook=PLAYBOOK))
        conn = dashboard.conn()
        self.secrets = [conn["password"], *SECRETS]
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        inventory = {
            "all": {
                "vars": {
                    "nvflare_dashboard_url": dashboard.url,
                    "nvflare_dashboard_username": conn["username"],
                    "nvflare_dashboard_password": conn["password"],
                    "nvflare_dashboard_ca_path": str(dashboard.tls.ca_path),
                    "nvflare_kit_pin": PIN,
                    "nvflare_admin_password": LEAD_PW,
                    "nvflare_project": "pathb",
                    "nvflare_fed_learn_port": 8202,
                    "nvflare_admin_port": 8203,
                    "nvflare_dashboard_kits_dir": str(self.kits_dir),
                    "installed_dir": str(self.installed_dir),
                    "fact_file": str(self.fact_file),
                    "kit_types": {name: kind for name, (kind, _pin) in KITS.items()},
                },
                "children": {
                    "nvflare_server": {"hosts": {"fl-server": dict(local, nvflare_server_name=SERVER)}},
                    "nvflare_clients": {
                        "hosts": {
                            "site-1": dict(
                                local, nvflare_org="hospital_a", client_gpu_num_of_gpus=1, client_gpu_mem_per_gpu_gib=8
                            ),
                            "gpu-host-2": dict(
                                local, nvflare_site_name="site-2", nvflare_org="hospital_b", nvflare_kit_pin=SITE2_PIN
                            ),
                        }
                    },
                    "nvflare_admin": {
                        "hosts": {"admin-host": dict(local, nvflare_admin_email=LEAD, nvflare_org="hospital_a")}
                    },
                },
            }
        }
        self.inventory = folder / "hosts.yml"
        self.inventory.write_text(json.dumps(inventory))

    def run(self, *args: str, extra: dict | None = None, playbook: Path | None = None) -> tuple[int, str]:
        """rc and everything ansible-playbook printed (stdout + stderr)."""
        cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(self.inventory), *args]
        if extra is not None:
            # A file, so that no secret is on the command line.
            extra_file = self.folder / "extra.json"
            extra_file.write_text(json.dumps(extra))
            cmd += ["-e", f"@{extra_file}"]
        env = ansible_env(self.folder)
        env["no_proxy"] = ",".join(filter(None, [env.get("no_proxy"), "127.0.0.1", "localhost"]))
        proc = subprocess.run(
            cmd + [str(playbook or self.playbook)], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        return proc.returncode, proc.stdout + proc.stderr

    def assert_no_secret(self, output: str) -> None:
        for secret in self.secrets:
            assert secret not in output, f"a secret ({secret[:3]}...) is in ansible-playbook's output"
            assert secret.lower() not in output.lower()


@pytest.fixture(scope="module")
def pathb(start_dashboard, tmp_path_factory) -> PathB:
    return PathB(start_dashboard(), tmp_path_factory.mktemp("path-b"))


def recap(output: str) -> dict:
    line = next(x for x in output.splitlines() if x.startswith("localhost ") and "ok=" in x)
    return {k: int(v) for k, v in (f.split("=") for f in line.split()[2:])}


def open_kit(path: Path, pin: str) -> dict:
    with zipfile.ZipFile(path) as kit:
        return {i.filename: kit.read(i, pwd=pin.encode()) for i in kit.infolist() if not i.is_dir()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "extra, says",
    [
        ({"nvflare_kit_pin": "CHANGE_ME"}, "nvflare_kit_pin for the kit of fl.example.org"),
        ({"nvflare_kit_pin": ""}, "nvflare_kit_pin for the kit of fl.example.org"),
        ({"nvflare_dashboard_password": "changeme"}, "nvflare_dashboard_password (from Ansible Vault)"),
        ({"nvflare_dashboard_password": ""}, "nvflare_dashboard_password (from Ansible Vault)"),
        ({"nvflare_admin_password": "<lead password>"}, "set its password in nvflare_admin_password"),
    ],
    ids=["placeholder-pin", "empty-pin", "placeholder-password", "empty-password", "placeholder-admin-password"],
)
def test_placeholder_or_empty_secrets_fail_before_any_request(pathb, extra, says):
    rc, output = pathb.run(extra=extra)
    assert rc != 0
    assert says in " ".join(output.split()), output[-3000:]
    assert "placeholder" in output
    assert not pathb.kits_dir.exists(), "a kit folder was made although the play refused its secrets"
    # Nothing reached the dashboard.
    project = pathb.dashboard.project()
    assert project["frozen"] is False
    assert project["short_name"] != "pathb"
    assert pathb.dashboard.sites() == {}
    assert LEAD not in pathb.dashboard.users()
    pathb.assert_no_secret(output)


def test_check_mode_changes_nothing(pathb):
    # dashboard_kits.yml alone: the wrapper's startup_kit would have no zip to read in check mode.
    rc, output = pathb.run("--check", playbook=PLAYBOOK)
    assert rc == 0, output[-6000:]
    pathb.assert_no_secret(output)
    assert recap(output)["changed"] > 0
    project = pathb.dashboard.project()
    assert project["frozen"] is False
    assert project["short_name"] != "pathb"
    assert pathb.dashboard.sites() == {}
    assert LEAD not in pathb.dashboard.users()
    assert not pathb.kits_dir.exists()


def test_first_run_sets_up_the_dashboard_and_downloads_valid_kits(pathb):
    rc, output = pathb.run("-vvv")
    assert rc == 0, output[-6000:]
    pathb.assert_no_secret(output)
    assert recap(output)["failed"] == 0
    assert recap(output)["changed"] > 0

    project = pathb.dashboard.project()
    assert (project["short_name"], project["server1"], project["frozen"]) == ("pathb", SERVER, True)
    assert project["server_props"] == {"fed_learn_port": 8202, "admin_port": 8203}
    sites = pathb.dashboard.sites()
    assert set(sites) == {"site-1", "site-2"}
    assert sites["site-1"]["organization"] == "hospital_a"
    assert sites["site-2"]["organization"] == "hospital_b"
    assert all(s["approval_state"] >= 100 for s in sites.values())
    assert sites["site-1"]["capacity"]["num_of_gpus"] == 1
    lead = pathb.dashboard.users()[LEAD]
    assert (lead["role"], lead["organization"]) == ("lead", "hospital_a")
    assert lead["approval_state"] >= 100

    # The fact the rest of site.yml reads.
    fact = json.loads(pathb.fact_file.read_text())
    assert fact["admin"] == LEAD
    assert fact["kits"] == {name: str(pathb.kits_dir / f"{name}.zip") for name in KITS}
    assert fact["pins"] == {name: pin for name, (_kind, pin) in KITS.items()}

    for name, (kind, pin) in KITS.items():
        zip_path = pathb.kits_dir / f"{name}.zip"
        assert stat.S_IMODE(zip_path.stat().st_mode) == 0o600
        content = open_kit(zip_path, pin)
        cert_file = {"server": "startup/server.crt", "client": "startup/client.crt", "admin": "startup/client.crt"}[
            kind
        ]
        root = x509.load_pem_x509_certificate(content["startup/rootCA.pem"])
        cert = x509.load_pem_x509_certificate(content[cert_file])
        cert.verify_directly_issued_by(root)  # raises unless the root CA signed it
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pathb"
        # startup_kit installed it from the fact (verifying chain and participant itself).
        assert (pathb.installed_dir / name / cert_file).is_file()
    assert pin_refused(pathb.kits_dir / "site-2.zip", PIN)
    resources = json.loads(open_kit(pathb.kits_dir / "site-1.zip", PIN)["local/resources.json.default"])
    assert '"num_of_gpus": 1' in json.dumps(resources)
    fed_client = json.loads(open_kit(pathb.kits_dir / "site-1.zip", PIN)["startup/fed_client.json"])
    assert f"{SERVER}:8202" in json.dumps(fed_client)


def test_a_second_run_changes_nothing_and_keeps_the_kits(pathb):
    before = {name: sha256(pathb.kits_dir / f"{name}.zip") for name in KITS}
    rc, output = pathb.run("-vvv")
    assert rc == 0, output[-6000:]
    pathb.assert_no_secret(output)
    assert recap(output)["changed"] == 0, output[-6000:]
    assert {name: sha256(pathb.kits_dir / f"{name}.zip") for name in KITS} == before
