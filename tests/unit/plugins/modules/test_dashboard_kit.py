"""federated.nvflare.dashboard_kit: the checks made before any dashboard is contacted.

The downloads themselves run against a real dashboard in tests/functional/dashboard."""

from __future__ import annotations

DEAD_URL = "http://127.0.0.1:9"  # nothing listens on the discard port


def args(tmp_path, **kw):
    base = {
        "url": DEAD_URL,
        "username": "admin@example.org",
        "password": "Secret1pw",
        "kind": "site",
        "name": "site-1",
        "pin": "Pin1234",
        "dest": str(tmp_path / "site-1.zip"),
    }
    base.update(kw)
    return base


def test_bad_pin_is_refused_before_the_dashboard_is_asked(run_module, tmp_path):
    res = run_module("dashboard_kit", args(tmp_path, pin="12-34"), secrets=["12-34", "Secret1pw"])
    assert res.failed
    assert "invalid PIN: it must be letters and digits only" in res["msg"]


def test_bad_site_name_is_refused(run_module, tmp_path):
    res = run_module("dashboard_kit", args(tmp_path, name="site 1"))
    assert res.failed and "cannot download the site kit site 1" in res["msg"]


def test_dest_must_be_a_file_in_an_existing_folder(run_module, tmp_path):
    res = run_module("dashboard_kit", args(tmp_path, dest=str(tmp_path)))
    assert res.failed and "it is a directory; give the path of the zip file" in res["msg"]
    res = run_module("dashboard_kit", args(tmp_path, dest=str(tmp_path / "no" / "kit.zip")))
    assert res.failed and f"directory {tmp_path / 'no'} does not exist" in res["msg"]


def test_unreachable_dashboard_is_reported_not_raised(run_module, tmp_path):
    res = run_module("dashboard_kit", args(tmp_path), secrets=["Secret1pw"])
    assert res.failed
    assert "cannot connect to the NVFlare dashboard" in res["msg"]
    assert not (tmp_path / "site-1.zip").exists()
