"""Connection options shared by every dashboard_* module: TLS trust, credentials, reachability."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_ca_path_makes_the_private_ca_trusted(dashboard, run_module):
    result = run_module("dashboard_project", dashboard.conn())
    assert not result.failed, result
    assert result["changed"] is False
    assert result["project"]["frozen"] is False


def test_untrusted_ca_fails_clearly(dashboard, run_module):
    result = run_module("dashboard_project", dashboard.conn(ca_path=str(dashboard.tls.untrusted_ca_path)))
    assert result.failed
    assert "TLS certificate is not trusted" in result["msg"]
    assert "Set ca_path" in result["msg"]


def test_system_trust_store_does_not_know_the_test_ca(dashboard, run_module):
    args = dashboard.conn()
    del args["ca_path"]
    result = run_module("dashboard_project", args)
    assert result.failed
    assert "TLS certificate is not trusted" in result["msg"]


def test_validate_certs_false_skips_verification(dashboard, run_module):
    args = dashboard.conn(validate_certs=False)
    del args["ca_path"]
    result = run_module("dashboard_project", args)
    assert not result.failed, result
    assert result["project"]["frozen"] is False


def test_url_may_carry_the_dashboard_path(dashboard, run_module):
    result = run_module("dashboard_site", dashboard.conn(url=dashboard.url + "/nvflare-dashboard/", name="nosuchsite"))
    # The site does not exist and no organization was given: the module got as far as the lookup.
    assert result.failed
    assert "organization must be set to register a site" in result["msg"]


def test_wrong_password_is_a_401_message_without_the_password(dashboard, run_module):
    wrong = "NotTheRightPassword42"
    result = run_module("dashboard_user", dashboard.conn(password=wrong, email="x@example.org"), secrets=[wrong])
    assert result.failed
    assert "HTTP 401" in result["msg"]
    assert "wrong email or password" in result["msg"]
    assert dashboard.conn()["username"] in result["msg"]


def test_unreachable_dashboard(dashboard, run_module, dead_url):
    result = run_module("dashboard_project", dashboard.conn(url=dead_url))
    assert result.failed
    assert result["msg"].startswith("cannot connect to the NVFlare dashboard at " + dead_url)
