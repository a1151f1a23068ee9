"""federated.nvflare.federation_info against a real federation on loopback."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

SITES = ["site-1", "site-2"]


def test_reports_registered_sites(module):
    result = module("federation_info", {"wait_for_sites": SITES, "timeout": 30, "poll_interval": 1})
    assert result.rc == 0, result
    assert not result.failed
    assert result["changed"] is False
    assert result["site_names"] == SITES
    assert [s["name"] for s in result["sites"]] == SITES
    assert all(s["last_connect_time"].startswith("20") for s in result["sites"])
    assert result["missing_sites"] == []
    assert result["server_status"]
    assert result["server_start_time"].startswith("20")
    assert isinstance(result["jobs"], list)


def test_check_mode_reads_the_same(module):
    result = module("federation_info", {}, check_mode=True)
    assert result.rc == 0, result
    assert result["changed"] is False
    assert result["site_names"] == SITES


def test_reports_the_release_each_participant_runs(module):
    from importlib.metadata import version

    result = module("federation_info", {"versions": True})
    assert result.rc == 0, result
    assert result["versions"] == dict.fromkeys(["server", *SITES], version("nvflare"))
    assert module("federation_info", {})["versions"] == {}
    waited = module("federation_info", {"wait_for_sites": SITES, "wait_for_version": version("nvflare"), "timeout": 30})
    assert waited.rc == 0 and waited["versions"]["site-2"] == version("nvflare"), waited


def test_another_release_fails_at_timeout_naming_each_participant(module):
    result = module("federation_info", {"wait_for_sites": SITES, "wait_for_version": "9.9.9", "timeout": 3})
    assert result.failed and 3 <= result.wall < 30
    assert "not every participant runs NVFlare 9.9.9 after 3 s" in result["msg"]
    for name in ("server", *SITES):
        assert f"{name}: " in result["msg"]


def test_missing_site_fails_at_timeout_naming_it(module):
    result = module("federation_info", {"wait_for_sites": ["site-1", "site-9"], "timeout": 3, "poll_interval": 1})
    assert result.failed and result.rc != 0
    assert result["missing_sites"] == ["site-9"]
    assert "site-9" in result["msg"]
    assert "registered: site-1, site-2" in result["msg"]
    assert 3 <= result.wall < 30


def test_unreachable_server_fails_clearly_and_exits(raw_module, closed_port_kit):
    kit, port = closed_port_kit
    result = raw_module("federation_info", {"admin_kit": str(kit), "connect_timeout": 2}, timeout=60)
    assert result.failed and result.rc != 0
    assert "cannot connect to the NVFlare server" in result["msg"]
    assert f"localhost:{port}" in result["msg"]
    assert result.wall < 30  # the process ended: no session left open


def test_unreachable_server_while_waiting_names_the_sites(raw_module, closed_port_kit):
    kit, _unused = closed_port_kit
    args = {"admin_kit": str(kit), "connect_timeout": 1, "wait_for_sites": ["site-1"], "timeout": 3, "poll_interval": 1}
    result = raw_module("federation_info", args, timeout=60)
    assert result.failed
    assert "site-1" in result["msg"] and "cannot connect" in result["msg"]
    assert result["missing_sites"] == ["site-1"]
    assert result.wall < 30


def test_wrong_username_is_refused(module):
    result = module("federation_info", {"username": "nobody@nvidia.com", "connect_timeout": 2}, timeout=60)
    assert result.failed
    assert "nobody@nvidia.com" in result["msg"]


def test_not_an_admin_kit(raw_module, tmp_path):
    result = raw_module("federation_info", {"admin_kit": str(tmp_path)}, timeout=60)
    assert result.failed
    assert "startup/fed_admin.json" in result["msg"]
