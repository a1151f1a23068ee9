"""Verify the headline run of the cloud scenario (testinfra, run by `molecule verify`).

site.yml ran as the operator (an ordinary user on the controller) over SSH as `ubuntu` with
sudo, from inventories/aws_ec2.yml against moto; the admin side ran on the controller as that
user. Checks on the test hosts go through the docker connection; checks of the controller's side
run here, on the controller.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import cloudctl  # noqa: E402

from tests.helpers import learning  # noqa: E402

ADMIN = "admin@example.com"
ADMIN_HOME = cloudctl.HOME / ".nvflare-admin"
SUMMARY = ADMIN_HOME / "results" / "spleen_ct_segmentation.json"
SITES = ["site-1", "site-2"]
STATE = Path(os.environ.get("NVFLARE_CLOUD_STATE", "/nonexistent"))

REGISTERED = f"""
import json
from nvflare.fuel.flare_api.flare_api import new_secure_session
s = new_secure_session({ADMIN!r}, {str(ADMIN_HOME / ADMIN)!r}, timeout=30)
try:
    print(json.dumps(sorted(c.name for c in s.get_system_info().client_info)))
finally:
    s.close()
"""


def _instance(host) -> str:
    return host.backend.get_hostname().removeprefix("cloud-")


def _unit(host) -> str:
    name = _instance(host)
    return f"nvflare-{cloudctl.SERVER_FQDN}.service" if name == "server" else f"nvflare-{name}.service"


def test_the_operator_is_an_ordinary_user():
    entry = pwd.getpwnam(cloudctl.OPERATOR)
    assert entry.pw_uid != 0 and entry.pw_dir == str(cloudctl.HOME)
    groups = subprocess.run(["id", "-Gn", cloudctl.OPERATOR], capture_output=True, text=True, check=True).stdout.split()
    assert not {"root", "sudo", "docker"} & set(groups), groups


def test_the_inventory_is_the_dynamic_one_with_the_production_tags():
    """The hosts and their login come from the aws_ec2 plugin reading moto (the layer adds addresses only)."""
    out = subprocess.run(
        [sys.executable, cloudctl.__file__, "run", str(STATE), "--",
         "ansible-inventory", "--list", "-i", "inventories/aws_ec2.yml"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    inventory = json.loads(out)
    assert sorted(inventory["nvflare_clients"]["hosts"]) == SITES
    assert inventory["nvflare_server"]["hosts"] == ["server"]
    hostvars = inventory["_meta"]["hostvars"]
    for name in ["server", *SITES]:
        assert _unsafe(hostvars[name]["ansible_user"]) == "ubuntu"
    assert _unsafe(hostvars["server"]["nvflare_fqdn"]) == cloudctl.SERVER_FQDN


def _unsafe(value):
    return value["__ansible_unsafe"] if isinstance(value, dict) else value


def test_ansible_logged_in_over_ssh_as_ubuntu(host):
    """sshd accepted the operator's key for `ubuntu`, and sudo ran Ansible's modules as root."""
    journal = host.check_output("journalctl -u ssh.service --no-pager -o cat")
    assert "Accepted publickey for ubuntu" in journal
    assert "Accepted publickey for root" not in journal
    sudo = host.check_output("journalctl --no-pager -o cat _COMM=sudo")
    assert re.search(r"ubuntu : .*USER=root", sudo), sudo[-2000:]


def test_service_active_as_the_service_user(host):
    unit = _unit(host)
    service = host.service(unit)
    assert service.is_running and service.is_enabled
    assert host.check_output(f"systemctl show -p User --value {unit}") == "nvflare"
    pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "nvflare"


def test_packages_came_from_the_pushed_wheelhouse(host):
    wheelhouse = host.file("/opt/nvflare-wheelhouse")
    assert wheelhouse.is_directory
    assert host.run("ls /opt/nvflare-wheelhouse/nvflare-*.whl").rc == 0
    assert host.run("/opt/nvflare/venv/bin/python -c 'import nvflare'").rc == 0


def test_both_sites_registered(host):
    if _instance(host) != "server":
        pytest.skip("not applicable: asked once, from the controller")
    out = subprocess.run(
        ["runuser", "-u", cloudctl.OPERATOR, "--", str(ADMIN_HOME / "venv" / "bin" / "python"), "-c", REGISTERED],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=cloudctl.HOME,
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == SITES


def test_job_finished_with_a_cross_site_matrix_and_learned(host):
    if _instance(host) != "server":
        pytest.skip("not applicable: the results are on the controller")
    summary = json.loads(SUMMARY.read_text())
    assert summary["status"] == "FINISHED:COMPLETED"
    matrix = summary["cross_site_validation"]
    assert {site for per_model in matrix.values() for site in per_model} == set(SITES)
    initial = {}
    for site in SITES:
        log = subprocess.run(
            ["docker", "exec", f"cloud-{site}", "cat", f"/var/lib/nvflare/{site}/{summary['job_id']}/log.txt"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        initial[site] = learning.initial_dice(log, site)
    learning.check_learned(summary, initial, "cloud")


def test_the_admin_side_belongs_to_the_operator_and_nothing_of_roots_is_in_its_home(host):
    if _instance(host) != "server":
        pytest.skip("not applicable: the controller is checked once")
    uid = pwd.getpwnam(cloudctl.OPERATOR).pw_uid
    for path in (ADMIN_HOME / ADMIN, ADMIN_HOME / "venv", SUMMARY, cloudctl.PROJECT_DIR / ".nvflare-workspace"):
        assert path.exists() and path.stat().st_uid == uid, path
    foreign = subprocess.run(
        ["find", str(cloudctl.HOME), "-xdev", "(", "-not", "-user", cloudctl.OPERATOR, "-o", "-not", "-group",
         cloudctl.OPERATOR, ")", "-print"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert foreign == [], foreign[:20]
    # The staged kit too: in the operator's folder, not in the system's staging folder.
    staged = ADMIN_HOME / "kits" / f"{ADMIN}.zip"
    assert staged.stat().st_uid == uid and oct(staged.stat().st_mode & 0o777) == "0o600"
