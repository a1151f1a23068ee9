"""Verify the federation that site.yml converged (testinfra, run by `molecule verify`).

The admin kit sits on the server host; checks that need the FLARE API run a short
Python program there with the admin kit, through the service virtualenv.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.helpers import flare_admin, learning  # noqa: E402  (the repository root, as the dashboard verifier does)
from tests.helpers.polling import wait_until  # noqa: E402

VENV = "/opt/nvflare/venv"
ADMIN = "admin@example.com"
ADMIN_KIT = f"/var/lib/nvflare/{ADMIN}"
SITES = ["site-1", "site-2"]
SUMMARY = "/var/lib/nvflare/admin-results/spleen_ct_segmentation.json"
WHEELHOUSE = "/opt/wheelhouse"


def _participant(host):
    groups = host.ansible.get_variables()["group_names"]
    return ("server", "localhost") if "nvflare_server" in groups else ("client", host.backend.get_hostname())


def _unit(host):
    kind, _ = _participant(host)
    return "nvflare-server.service" if kind == "server" else f"nvflare-{host.backend.get_hostname()}.service"


def _admin(action, *args):
    """NVFlare's own admin command, through the admin kit on the server container."""
    return flare_admin.run(["docker", "exec", "server"], f"{VENV}/bin/python", ADMIN, ADMIN_KIT, action, *args)


def _registered():
    """Sites the server lists."""
    return _admin("registered")


def _wait(predicate, timeout, step=3):
    return wait_until(predicate, timeout, step)


# -- the runtime (the _runtime role) on every host: account, virtualenv, offline install ----------


def test_service_user_is_a_system_account_without_a_shell(host):
    user = host.user("nvflare")
    assert user.exists
    assert user.uid != 0 and user.uid < 1000, "expected a system user"
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/opt/nvflare"


def test_venv_is_root_owned_and_the_service_user_cannot_change_it(host):
    assert host.file(VENV).is_directory and host.file(VENV).user == "root"
    home = host.file("/opt/nvflare")
    assert home.user == "nvflare" and home.mode == 0o750
    assert host.run("runuser -u nvflare -- test -w %s/bin", VENV).rc != 0


def test_nvflare_and_the_callers_packages_import_as_the_service_user(host):
    """NVFlare at the pinned release, and the packages the server and client_gpu roles add (the ML stack)."""
    program = "import monai, nvflare, torch; print(nvflare.__version__)"
    cmd = host.run("runuser -u nvflare -- %s/bin/python -c %s", VENV, program)
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "2.9.0"


def test_every_package_came_from_the_wheelhouse(host):
    def norm(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    wheels = {}
    for name in host.file(WHEELHOUSE).listdir():
        if name.endswith(".whl"):
            dist, version = name.split("-")[:2]
            wheels[norm(dist)] = version
    installed = json.loads(
        host.check_output("%s/bin/python -m pip list --format json --disable-pip-version-check", VENV)
    )
    assert installed
    # pip and setuptools come with the venv itself (ensurepip), not from an index.
    outside = [
        f"{p['name']}=={p['version']}"
        for p in installed
        if norm(p["name"]) not in ("pip", "setuptools") and wheels.get(norm(p["name"])) != p["version"]
    ]
    assert outside == [], f"installed from outside the wheelhouse: {outside}"


def test_hosts_sit_on_an_internal_network():
    # Docker enforces `internal: true` with firewall rules: no route out of the test network.
    out = subprocess.run(
        ["docker", "network", "inspect", "--format", "{{.Internal}}", "nvflare-federation"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "true"


def test_service_active_enabled_and_unprivileged(host):
    svc = host.service(_unit(host))
    assert svc.is_running and svc.is_enabled
    pid = host.check_output(f"systemctl show -p MainPID --value {_unit(host)}")
    user = host.check_output(f"ps -o user= -p {pid}")
    assert user.strip() == "nvflare"


def test_private_keys_are_0600_and_owned_by_the_service_user(host):
    keys = host.check_output("find /var/lib/nvflare -name '*.key'").split()
    assert keys
    for key in keys:
        f = host.file(key)
        assert f.mode == 0o600, key
        assert f.user == "nvflare", key


def test_job_storage_is_not_under_tmp(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: server only")
    res = json.loads(host.file("/var/lib/nvflare/server/local/resources.json").content_string)
    assert "/tmp/nvflare" not in json.dumps(res)


def test_both_sites_registered(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: checked from the admin kit on the server host")
    assert _registered() == SITES


def test_spleen_job_finished_with_cross_site_dice(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: the admin kit lives on the server host")
    summary = json.loads(host.file(SUMMARY).content_string)
    assert summary["status"] == "FINISHED:COMPLETED"
    matrix = summary["cross_site_validation"]
    assert matrix, "no cross-site validation results"
    values = [v for per_site in matrix.values() for metrics in per_site.values() for v in metrics.values()]
    sites_seen = {site for per_site in matrix.values() for site in per_site}
    assert sites_seen == set(SITES)
    assert values and all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values)


def test_the_federation_learned_on_every_site(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: the admin kit lives on the server host")
    summary = json.loads(host.file(SUMMARY).content_string)
    initial = {}
    for site in SITES:
        log = subprocess.run(
            ["docker", "exec", site, "cat", f"/var/lib/nvflare/{site}/{summary['job_id']}/log.txt"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        initial[site] = learning.initial_dice(log, site)
    learning.check_learned(summary, initial, "default")


def test_site_container_restart_comes_back_and_reregisters(host):
    if host.backend.get_hostname() != "site-1":
        pytest.skip("not applicable: one site is enough")
    subprocess.run(["docker", "restart", "site-1"], check=True, capture_output=True)
    assert _wait(lambda: host.service("nvflare-site-1.service").is_running, 120)
    assert _wait(lambda: "site-1" in _registered(), 180), "site-1 did not re-register"


def test_killed_server_is_restarted(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: server only")
    unit = "nvflare-server.service"
    before = host.check_output(f"systemctl show -p MainPID --value {unit}").strip()
    host.run(f"kill -9 {before}")
    assert _wait(
        lambda: host.check_output(f"systemctl show -p MainPID --value {unit}").strip() not in ("0", before), 60
    ), "systemd did not restart the server"
    assert _wait(lambda: host.socket("tcp://0.0.0.0:8002").is_listening, 120)
    assert _wait(lambda: _registered() == SITES, 180), "sites did not come back after the server restart"
