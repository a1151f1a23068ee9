"""A real browser on the NVIDIA FLARE dashboard: headless Debian Chromium driven by Selenium.

    from tests.helpers.browser import dashboard_sites_seen, DashboardNotTrusted
    sites = dashboard_sites_seen(
        "https://dashboard.nvflare.test:8443",
        ca_pem="/path/to/pebble-root.pem",
        resolve={"dashboard.nvflare.test": "172.18.0.5"},
        email="admin@example.org",
        password=secret,
        screenshot="tests/output/dashboard-sites.png",
    )

(With the repository root on ``sys.path``; or load this file with importlib by its path.)

What it does, like a person would:
1. Trusts ONLY ``ca_pem``: Chromium on Linux takes locally added roots from the NSS database
   in ``$HOME/.pki/nssdb``; the helper runs Chromium with a throwaway HOME whose NSS database
   (made with ``certutil`` from Debian's libnss3-tools) holds that one CA. No
   ``--ignore-certificate-errors`` of any kind: a dashboard whose chain does not end at that CA
   shows Chromium's certificate interstitial, and the helper raises DashboardNotTrusted.
2. Maps each FQDN of ``resolve`` to its IP with ``--host-resolver-rules``, so the URL keeps the
   name the certificate is for, without DNS or /etc/hosts. Every other name resolves to nothing
   (``MAP * ~NOTFOUND``; the URL's own host is exempt when it is not in ``resolve``), so
   Chromium's background requests cannot leave the machine.
3. Opens the dashboard, signs in through its real login form (fields ``username`` and
   ``password``, button "Sign In"), follows the menu link "CLIENT SITES" (the project admin's
   Client Sites Dashboard, ``/nvflare-dashboard/site-dashboard``), waits for the table and
   returns the NAME column's values, in the order shown.
4. Saves a PNG screenshot of that page to ``screenshot`` (its folder is created).

Requirements: /usr/bin/chromium and /usr/bin/chromedriver (Debian packages chromium and
chromium-driver, same version), certutil (libnss3-tools; or the path in $NVFLARE_CERTUTIL),
and the selenium package. ``missing_requirements()`` names what is missing, for a skip.

Processes: chromedriver runs in a session of its own; on the way out the driver quits and
every process left in that session, and any Chromium still using this call's throwaway
profile, is killed by PID. The whole call is bounded by ``timeout`` seconds per wait.
The password is typed into the form only; it is never logged or put on a command line.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = os.environ.get("NVFLARE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NVFLARE_CHROMEDRIVER", "/usr/bin/chromedriver")
SITES_LINK = "CLIENT SITES"


class DashboardNotTrusted(RuntimeError):
    """Chromium refused the dashboard's TLS certificate (its chain does not end at the given CA)."""


class DashboardUIError(RuntimeError):
    """The dashboard's pages did not look as expected (login refused, no sites table, ...)."""


def certutil() -> str | None:
    """Path of NSS's certutil, or None."""
    return os.environ.get("NVFLARE_CERTUTIL") or shutil.which("certutil")


def missing_requirements() -> list[str]:
    """What this helper needs and does not find (empty when it can run)."""
    missing = []
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            missing.append(f"{path} (apt package {package})")
    if not certutil():
        missing.append("certutil (apt package libnss3-tools)")
    try:
        import selenium  # noqa: F401  # pylint: disable=unused-import
    except ImportError:
        missing.append("the selenium Python package")
    return missing


def _nss_home(folder: Path, ca_pem: str | os.PathLike) -> Path:
    """A HOME whose NSS database trusts exactly CA_PEM for TLS servers."""
    home = folder / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    tool = certutil()
    if not tool:
        raise DashboardUIError("certutil not found: install Debian's libnss3-tools (or set NVFLARE_CERTUTIL)")
    for args in (
        ["-N", "-d", f"sql:{nssdb}", "--empty-password"],
        # C,,: a trusted CA for TLS server certificates; nothing else.
        ["-A", "-d", f"sql:{nssdb}", "-n", "dashboard-ca", "-t", "C,,", "-i", str(ca_pem)],
    ):
        subprocess.run([tool, *args], check=True, capture_output=True, timeout=30)
    return home


def _own_processes(marker: str) -> list[int]:
    """PIDs whose command line contains MARKER (this call's unique profile folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def _kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _interstitial(driver) -> str | None:
    """Chromium's error code when it shows its certificate or network error page instead of the site."""
    try:
        text = driver.execute_script(
            "const e = document.querySelector('#error-code, .error-code');"
            "return (e ? e.textContent : '') + ' ' + document.title + ' ' + "
            "(document.body ? document.body.innerText.slice(0, 400) : '');"
        )
    except Exception:  # pylint: disable=broad-except
        return None
    match = re.search(r"(NET::ERR_CERT_[A-Z_]+|ERR_CERT_[A-Z_]+|ERR_SSL_[A-Z_]+|ERR_[A-Z_]+)", text or "")
    if match:
        return match.group(1)
    if "Privacy error" in (text or "") or "connection is not private" in (text or ""):
        return "privacy error"
    return None


def dashboard_sites_seen(
    url: str,
    ca_pem: str | os.PathLike,
    resolve: dict[str, str] | None = None,
    email: str = "",
    password: str = "",
    screenshot: str | os.PathLike | None = None,
    timeout: float = 30,
) -> list[str]:
    """Log in to the dashboard at URL as EMAIL in headless Chromium and return the site names it lists.

    url: base URL, e.g. ``https://dashboard.example.org`` or ``https://fqdn:8443`` (a path such
        as ``/nvflare-dashboard`` is fine).
    ca_pem: PEM file of the only CA trusted (e.g. pebble's root, or the test's own CA).
    resolve: {fqdn: ip} handed to Chromium's host resolver, instead of DNS.
    email, password: the project admin's dashboard account (other roles have no site list).
    screenshot: PNG written once the sites table shows (also on a certificate error, of the
        interstitial, and on a UI error, of what was shown), when given.
    timeout: seconds for each wait (page load, login, table).

    Returns the NAME column of the Client Sites table (one page, up to 25 rows by default).
    Raises DashboardNotTrusted when Chromium rejects the certificate, DashboardUIError when the
    login or the table does not appear (the message says what was seen).
    """
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base = url.rstrip("/")
    if not base.endswith("/nvflare-dashboard"):
        base += "/nvflare-dashboard"
    shot = Path(screenshot) if screenshot else None
    if shot:
        shot.parent.mkdir(parents=True, exist_ok=True)

    with _chromium(base, ca_pem, resolve, timeout) as driver:
        wait = WebDriverWait(driver, timeout)

        def fail(exc_type, message: str):
            if shot:
                driver.save_screenshot(str(shot))
            raise exc_type(message)

        try:
            driver.get(base + "/")
        except WebDriverException as exc:
            code = _interstitial(driver) or str(exc).splitlines()[0]
            fail(DashboardNotTrusted if "CERT" in code.upper() else DashboardUIError, f"{base}: {code}")
        code = _interstitial(driver)
        if code:
            fail(
                DashboardNotTrusted if "CERT" in code.upper() or "privacy" in code else DashboardUIError,
                f"{base}: {code}",
            )

        try:
            user_field = wait.until(ec.visibility_of_element_located((By.NAME, "username")))
        except TimeoutException:
            fail(DashboardUIError, f"no login form at {base}/ within {timeout} s")
        user_field.send_keys(email)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.XPATH, "//button[normalize-space()='Sign In']").click()
        try:
            link = wait.until(ec.element_to_be_clickable((By.LINK_TEXT, SITES_LINK)))
        except TimeoutException:
            fail(
                DashboardUIError,
                f"after signing in as {email}, no '{SITES_LINK}' menu link within {timeout} s "
                "(wrong password, or not the project admin)",
            )
        link.click()
        table = "[data-testid=kui-table]"
        try:
            wait.until(ec.url_contains("/site-dashboard"))
            # The header row, then either data rows or the empty table.
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"{table} [role=columnheader]")))
        except TimeoutException:
            fail(DashboardUIError, f"the Client Sites table did not show within {timeout} s")
        # Rows are filled in by an API call after the table renders; wait until the counter
        # ("Showing 1 - 2 of 2") matches the rows drawn.
        deadline = time.monotonic() + timeout
        names: list[str] = []
        while True:
            headers = [
                h.text.strip().upper() for h in driver.find_elements(By.CSS_SELECTOR, f"{table} [role=columnheader]")
            ]
            if "NAME" not in headers:
                fail(DashboardUIError, f"the Client Sites table has no NAME column: {headers}")
            column = headers.index("NAME")
            rows = [
                r.find_elements(By.CSS_SELECTOR, "[role=cell]")
                for r in driver.find_elements(By.CSS_SELECTOR, f"{table} [role=row]")
            ]
            # The cell's title holds the whole value, also when the column is too narrow to show it.
            names = [(cells[column].get_attribute("title") or cells[column].text).strip() for cells in rows if cells]
            shown = re.search(r"Showing\s+\d+\s*-\s*(\d+)\s+of\s+(\d+)", driver.find_element(By.TAG_NAME, "body").text)
            if shown and int(shown.group(1)) == len(names):
                if int(shown.group(2)) > len(names):
                    fail(
                        DashboardUIError,
                        f"the dashboard lists {shown.group(2)} sites on several pages; only one is read",
                    )
                break
            if time.monotonic() > deadline:
                if not shown and not names:
                    break  # an empty table shows no counter
                fail(DashboardUIError, f"the Client Sites table did not fill within {timeout} s (saw {names})")
            time.sleep(0.2)
        if shot:
            driver.save_screenshot(str(shot))
        return names


@contextlib.contextmanager
def _chromium(base: str, ca_pem: str | os.PathLike, resolve: dict[str, str] | None, timeout: float):
    """Headless Chromium (a Selenium driver) that trusts only CA_PEM and resolves only RESOLVE's names
    (and BASE's own host); every process it started is killed on the way out."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    folder = Path(tempfile.mkdtemp(prefix="nvflare-browser-"))
    profile = folder / "profile"
    driver = None
    service = None
    try:
        home = _nss_home(folder, ca_pem)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            # Chromium refuses to run as root with its sandbox; the tests run as root.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            # Proxies in the environment must not see loopback traffic.
            "--no-proxy-server",
            "--window-size=1280,800",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(arg)
        # Every other name resolves to nothing, so Chromium's own background requests cannot
        # leave the machine (the tests may reach only loopback and their own hosts).
        rules = [f"MAP {name} {ip}" for name, ip in (resolve or {}).items()]
        host = urlsplit(base).hostname or ""
        if host not in (resolve or {}):
            rules.append(f"EXCLUDE {host}")
        rules.append("MAP * ~NOTFOUND")
        options.add_argument("--host-resolver-rules=" + ", ".join(rules))
        env = dict(os.environ, HOME=str(home))
        service = Service(
            CHROMEDRIVER,
            env=env,
            log_output=str(folder / "chromedriver.log"),
            popen_kw={"start_new_session": True},
        )
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(timeout)
        yield driver
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:  # pylint: disable=broad-except
                pass
        if service is not None and service.process is not None:
            try:
                os.killpg(service.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        # Chromium's helpers may have left the session; the profile path is unique to this call.
        _kill(_own_processes(str(profile)))
        shutil.rmtree(folder, ignore_errors=True)


def mlflow_page_shows(
    url: str,
    ca_pem: str | os.PathLike,
    expect: list[str],
    resolve: dict[str, str] | None = None,
    username: str = "",
    password: str = "",
    screenshot: str | os.PathLike | None = None,
    timeout: float = 45,
) -> str:
    """Open an MLflow UI page (URL, e.g. ``https://host:5443/#/experiments/1``) in headless Chromium,
    signed in with HTTP basic auth (sent with every request, as MLflow's basic-auth app wants it),
    and wait until every string of EXPECT shows in the page's text. Returns that text.

    Raises DashboardNotTrusted when Chromium rejects the certificate, DashboardUIError when the page
    does not show them within TIMEOUT seconds (the message says what was seen). The password goes
    into a request header through the DevTools protocol only; it is never logged.
    """
    import base64

    from selenium.common.exceptions import WebDriverException

    shot = Path(screenshot) if screenshot else None
    if shot:
        shot.parent.mkdir(parents=True, exist_ok=True)
    with _chromium(url, ca_pem, resolve, timeout) as driver:
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
        try:
            driver.get(url)
        except WebDriverException as exc:
            code = _interstitial(driver) or str(exc).splitlines()[0]
            raise (DashboardNotTrusted if "CERT" in code.upper() else DashboardUIError)(f"{url}: {code}") from None
        code = _interstitial(driver)
        if code:
            if shot:
                driver.save_screenshot(str(shot))
            trusted = "CERT" in code.upper() or "privacy" in code
            raise (DashboardNotTrusted if trusted else DashboardUIError)(f"{url}: {code}")
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = driver.execute_script("return document.body ? document.body.innerText : '';") or ""
            if all(item in text for item in expect):
                break
            time.sleep(0.5)
        if shot:
            driver.save_screenshot(str(shot))
        missing = [item for item in expect if item not in text]
        if missing:
            raise DashboardUIError(f"{url} did not show {missing} within {timeout} s; it showed: {text[:600]!r}")
        return text
