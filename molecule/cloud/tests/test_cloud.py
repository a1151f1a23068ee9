"""Verify the headline run of the cloud scenario (testinfra, run by `molecule verify`).

The operator (an ordinary user on the controller, with nothing but a clone) ran the README's
commands as the README writes them: `make controller`, then aws_infra.yml and site.yml from
inventories/aws_ec2.yml against moto, over SSH as `ubuntu` with sudo; the admin side ran on the
controller as that user. Then the collection's other route: its tarball installed into an empty
collections path and site.yml run by name. Checks on the test hosts go through the docker
connection; checks of the controller's side run here, on the controller.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
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
    for path in (ADMIN_HOME / ADMIN, ADMIN_HOME / "venv", SUMMARY, cloudctl.STATE_DIR / "workspace"):
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


def test_the_controller_is_the_clones_own_virtualenv_made_by_make_controller(host):
    """`make controller` made .venv in the clone, as the operator, with the pinned ansible-core and
    NVFlare and the collections beside a link to the clone; nothing of root's is borrowed."""
    if _instance(host) != "server":
        pytest.skip("not applicable: the controller is checked once")
    venv = cloudctl.OPERATOR_VENV
    uid = pwd.getpwnam(cloudctl.OPERATOR).pw_uid
    assert venv.is_dir() and venv.stat().st_uid == uid
    base = (venv / "pyvenv.cfg").read_text()
    assert "/root" not in base, base
    pins = (cloudctl.ROOT / "requirements" / "constraints.txt").read_text()
    probe = subprocess.run(
        ["runuser", "-u", cloudctl.OPERATOR, "--", str(venv / "bin" / "python"), "-c",
         "import importlib.metadata as m, json, sys; "
         "print(json.dumps([m.version('ansible-core'), m.version('nvflare'), m.version('boto3'), sys.path]))"],
        capture_output=True, text=True, check=True, cwd=cloudctl.HOME,
    )  # fmt: skip
    core, nvflare, boto3, path = json.loads(probe.stdout)
    assert f"ansible-core=={core}\n" in pins and f"nvflare=={nvflare}\n" in pins and f"boto3=={boto3}\n" in pins
    assert not [p for p in path if p.startswith(("/root", str(cloudctl.ROOT)))], path
    link = venv / "collections" / "ansible_collections" / "federated" / "nvflare"
    assert link.resolve() == cloudctl.PROJECT_DIR
    for collection in ("amazon/aws", "community/docker", "ansible/utils"):
        assert (venv / "collections" / "ansible_collections" / collection / "MANIFEST.json").is_file(), collection


def test_the_state_lives_in_the_private_folder_not_in_the_clone(host):
    if _instance(host) != "server":
        pytest.skip("not applicable: the controller is checked once")
    state = cloudctl.STATE_DIR
    assert state.stat().st_mode & 0o777 == 0o700
    assert list((state / "workspace").glob("**/state/cert.json")), "no root CA state in the workspace"
    assert not (cloudctl.PROJECT_DIR / ".nvflare-workspace").exists()


def _recap(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


def _root_cas(host) -> set[str]:
    """SHA-256 of the root CA in the server's kit, and of every root CA in the controller's workspace."""
    import hashlib

    server = host.check_output("sha256sum $(find /var/lib/nvflare -path '*/startup/rootCA.pem') | cut -d' ' -f1")
    workspace = cloudctl.STATE_DIR / "workspace"
    ours = {hashlib.sha256(p.read_bytes()).hexdigest() for p in workspace.glob("**/rootCA.pem")}
    return set(server.split()) | ours


def test_the_tarball_route_by_name_keeps_the_root_ca_and_changes_nothing(host):
    """The collection built, installed into an empty collections path (its dependencies from the
    operator's collections, as from a mirror: Galaxy is not reachable here), site.yml run BY NAME
    from a folder outside the clone: the same state folder, the same root CA, nothing to change;
    again after a reinstall with --force."""
    if _instance(host) != "server":
        pytest.skip("not applicable: the controller is checked once")
    before = _root_cas(host)
    assert len(before) == 1, before
    collections = cloudctl.OPERATOR_VENV / "collections" / "ansible_collections"
    deps = ["amazon/aws", "ansible/utils", "community/crypto", "community/docker",
            "community/library_inventory_filtering_v1"]  # fmt: skip
    requirements = "collections:\n" + "".join(f"  - name: {collections / d}\n    type: dir\n" for d in deps)
    work = cloudctl.HOME / "by-name"
    rc, out = cloudctl.run_lines(STATE, [
        f"source {cloudctl.OPERATOR_VENV}/bin/activate",
        f"rm -rf {work} ~/dist ~/.ansible/collections",
        "ansible-galaxy collection build --output-path ~/dist .",
        f"mkdir -p {work}/inventories && cd {work}",
        # The user's inventory file, with the test-only layer beside it.
        f"cd {cloudctl.LAYER_DIR} && cp -r aws_ec2.yml host_vars group_vars {work}/inventories/ && cd {work}",
        f"printf '%s' {shlex.quote(requirements)} > deps.yml",
        "ansible-galaxy collection install --offline -r deps.yml",
        "ansible-galaxy collection install --offline ~/dist/federated-nvflare-*.tar.gz",
    ], capture=True)  # fmt: skip
    assert rc == 0, out[-4000:]
    # Found where it was installed, and only there (no ansible.cfg of the clone in this folder).
    rc, listed = cloudctl.run_lines(STATE, [
        f"source {cloudctl.OPERATOR_VENV}/bin/activate", f"cd {work}",
        "ansible-galaxy collection list federated.nvflare",
    ], capture=True)  # fmt: skip
    assert rc == 0, listed
    assert str(cloudctl.HOME / ".ansible" / "collections" / "ansible_collections") in listed, listed
    assert str(cloudctl.PROJECT_DIR) not in listed, listed

    site = [f"source {cloudctl.OPERATOR_VENV}/bin/activate", f"cd {work}",
            *[line for line in cloudctl.ENV_LINES if line.startswith("export ")],
            cloudctl.SITE_LINE.replace("playbooks/site.yml", "federated.nvflare.site")]  # fmt: skip
    for attempt in ("installed", "reinstalled"):
        if attempt == "reinstalled":
            rc, out = cloudctl.run_lines(STATE, [
                f"source {cloudctl.OPERATOR_VENV}/bin/activate", f"cd {work}",
                "ansible-galaxy collection install --offline --force ~/dist/federated-nvflare-*.tar.gz",
            ], capture=True)  # fmt: skip
            assert rc == 0, out[-3000:]
        rc, out = cloudctl.run_lines(STATE, site, capture=True)
        assert rc == 0, out[-6000:]
        recap = _recap(out)
        assert set(recap) >= {"server", "site-1", "site-2", "localhost"}, out[-3000:]
        assert all(changed == 0 for changed in recap.values()), (attempt, recap, out[-6000:])
        flat = " ".join(out.split())
        assert f"The controller's state of project {cloudctl.PROJECT} is in {cloudctl.STATE_DIR}" in flat, out[-3000:]
        assert _root_cas(host) == before, attempt
