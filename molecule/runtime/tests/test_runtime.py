"""Verify the runtime role on every test host (testinfra, run by `molecule verify`)."""

from __future__ import annotations

import json
import re
import subprocess

NVFLARE_VERSION = "2.9.0"
VENV = "/opt/nvflare/venv"
WHEELHOUSE = "/opt/wheelhouse"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_service_user_is_unprivileged(host):
    user = host.user("nvflare")
    assert user.exists
    assert user.uid != 0 and user.uid < 1000, "expected a system user"
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/opt/nvflare"


def test_venv_is_root_owned_and_readable_by_the_service_user(host):
    venv = host.file(VENV)
    assert venv.is_directory
    assert venv.user == "root"
    home = host.file("/opt/nvflare")
    assert home.user == "nvflare" and home.mode == 0o750
    # The service user cannot change the code it runs.
    cmd = host.run("runuser -u nvflare -- test -w %s/bin", VENV)
    assert cmd.rc != 0


def test_nvflare_importable_as_service_user_at_pinned_version(host):
    cmd = host.run("runuser -u nvflare -- %s/bin/python -c 'import nvflare; print(nvflare.__version__)'", VENV)
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == NVFLARE_VERSION


def test_callers_extra_packages_are_installed_where_asked(host):
    groups = host.ansible.get_variables()["group_names"]
    cmd = host.run("runuser -u nvflare -- %s/bin/python -c 'import fsspec; print(fsspec.__version__)'", VENV)
    if "nvflare_clients" in groups:
        assert cmd.rc == 0, cmd.stderr
        assert cmd.stdout.strip() == "2026.9.0"
    else:
        assert cmd.rc != 0


def test_every_package_came_from_the_wheelhouse(host):
    wheels = {}
    for name in host.file(WHEELHOUSE).listdir():
        if name.endswith(".whl"):
            dist, version = name.split("-")[:2]
            wheels[_norm(dist)] = version
    listing = host.check_output("%s/bin/python -m pip list --format json --disable-pip-version-check", VENV)
    installed = json.loads(listing)
    assert installed
    # pip and setuptools come with the venv itself (ensurepip), not from an index.
    outside = [
        f"{p['name']}=={p['version']}"
        for p in installed
        if _norm(p["name"]) not in ("pip", "setuptools") and wheels.get(_norm(p["name"])) != p["version"]
    ]
    assert outside == [], f"installed from outside the wheelhouse: {outside}"


def test_hosts_sit_on_an_internal_network():
    # Docker enforces `internal: true` with firewall rules: no route out of the test network.
    out = subprocess.run(
        ["docker", "network", "inspect", "--format", "{{.Internal}}", "nvflare-runtime"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "true"
