"""A real browser on the dashboard: headless Chromium trusting only the test's CA (tests/helpers/browser.py).

A dashboard of its own, whose TLS certificate names an FQDN that exists nowhere
(dashboard.nvflare.test): Chromium reaches it only through --host-resolver-rules, and trusts
it only through the CA put in its throwaway NSS database. The sites are created by the
dashboard_* modules; the browser logs in through the login form and must list them. With
another CA the page must not load. Screenshots land in tests/output/browser/.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
OUTPUT = ROOT / "tests" / "output" / "browser"
FQDN = "dashboard.nvflare.test"
SITES = {"site-alpha": "hospital_a", "site-beta": "hospital_b", "site_gamma": "hospital_a"}


def _load_browser():
    spec = importlib.util.spec_from_file_location("nvflare_test_browser", ROOT / "tests" / "helpers" / "browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


browser = _load_browser()
if browser.missing_requirements():
    pytest.skip("headless browser not available: " + ", ".join(browser.missing_requirements()), allow_module_level=True)


class FqdnTLS:
    """The shape of conftest.TLS, for a certificate that names FQDN (and 127.0.0.1, for the fixture's own checks)."""

    def __init__(self, folder: Path):
        dconf = importlib.import_module("tests.functional.dashboard.conftest")
        self.ca_path, ca_key, ca_cert = dconf.make_ca(folder, "browser-test-ca")
        self.untrusted_ca_path, _key, _cert = dconf.make_ca(folder, "browser-other-ca")
        self.certfile, self.keyfile = dconf.make_server_cert(folder, ca_key, ca_cert, FQDN)


@pytest.fixture(scope="module")
def fqdn_dashboard(dashboard, tmp_path_factory):
    """A dashboard (same class as the shared one) serving a certificate for FQDN only, stopped at the end."""
    folder = tmp_path_factory.mktemp("browser-dashboard")
    tls = FqdnTLS(folder)
    own = type(dashboard)(folder / "dashboard", tls)
    own.start()
    yield own
    own.stop()


@pytest.fixture(scope="module")
def fqdn_url(fqdn_dashboard) -> str:
    return fqdn_dashboard.url.replace("127.0.0.1", FQDN)


def test_the_browser_sees_the_sites_the_modules_created(fqdn_dashboard, fqdn_url, run_module):
    conn = fqdn_dashboard.conn()
    assert not run_module("dashboard_project", dict(conn, short_name="browsed", title="Browsed")).failed
    for name, org in SITES.items():
        result = run_module("dashboard_site", dict(conn, name=name, organization=org, num_of_gpus=1, approved=True))
        assert result["changed"] is True, result
    screenshot = OUTPUT / "dashboard-sites.png"
    screenshot.unlink(missing_ok=True)

    seen = browser.dashboard_sites_seen(
        fqdn_url,
        ca_pem=fqdn_dashboard.tls.ca_path,
        resolve={FQDN: "127.0.0.1"},
        email=conn["username"],
        password=conn["password"],
        screenshot=screenshot,
    )

    assert sorted(seen) == sorted(SITES)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000


def test_with_another_ca_the_page_does_not_load(fqdn_dashboard, fqdn_url):
    screenshot = OUTPUT / "dashboard-untrusted.png"
    with pytest.raises(browser.DashboardNotTrusted, match="ERR_CERT_AUTHORITY_INVALID"):
        browser.dashboard_sites_seen(
            fqdn_url,
            ca_pem=fqdn_dashboard.tls.untrusted_ca_path,
            resolve={FQDN: "127.0.0.1"},
            email=fqdn_dashboard.conn()["username"],
            password=fqdn_dashboard.conn()["password"],
            screenshot=screenshot,
        )
    assert screenshot.is_file()


def test_a_wrong_password_does_not_show_the_sites(fqdn_dashboard, fqdn_url):
    with pytest.raises(browser.DashboardUIError, match="no 'CLIENT SITES' menu link"):
        browser.dashboard_sites_seen(
            fqdn_url,
            ca_pem=fqdn_dashboard.tls.ca_path,
            resolve={FQDN: "127.0.0.1"},
            email=fqdn_dashboard.conn()["username"],
            password="NotThePassword1",
            timeout=5,
        )
