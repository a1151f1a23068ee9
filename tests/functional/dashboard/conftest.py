"""A real NVIDIA FLARE dashboard under gunicorn, with TLS from a CA made here, on loopback.

The dashboard_* modules are run in-process against it (run_module), and its REST API is
read directly (Dashboard.api) to check what the modules did, independently of them.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers.modules import run_module as _run_module

GUNICORN = Path(sys.executable).parent / "gunicorn"
API = "/nvflare-dashboard/api/v1"

ADMIN_EMAIL = "admin@lead.example.org"
ADMIN_PASSWORD = "Adm1nSecretPw4711"
ADMIN_ORG = "lead_org"
# Every secret the tests use; none may appear in any module result.
SECRETS = [ADMIN_PASSWORD]


# -- TLS material ------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def make_ca(folder: Path, cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(folder: Path, ca_key, ca_cert, name: str = "localhost"):
    """web.crt/web.key in FOLDER for NAME (and 127.0.0.1), signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "web.crt", folder / "web.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


class TLS:
    def __init__(self, folder: Path):
        self.ca_path, ca_key, ca_cert = make_ca(folder, "dashboard-test-ca")
        self.certfile, self.keyfile = make_server_cert(folder, ca_key, ca_cert)
        # A CA that signed nothing the dashboard serves.
        self.untrusted_ca_path, _key, _cert = make_ca(folder, "some-other-ca")


# -- the dashboard -----------------------------------------------------------------------------


class Dashboard:
    """One gunicorn-served dashboard with its own web root (SQLite DB) and seeded project admin."""

    def __init__(self, folder: Path, tls: TLS):
        self.folder = folder
        self.tls = tls
        self.web_root = folder / "web"
        self.web_root.mkdir(parents=True)
        self.log_path = folder / "gunicorn.log"
        self.proc = None
        self.url = None
        self._tokens = {}
        self._ssl = ssl.create_default_context(cafile=str(tls.ca_path))

    def start(self, timeout: float = 60) -> None:
        env = dict(os.environ)
        env.update(
            NVFL_WEB_ROOT=str(self.web_root),
            NVFL_CREDENTIAL=f"{ADMIN_EMAIL}:{ADMIN_PASSWORD}:{ADMIN_ORG}",
            SECRET_KEY="functional-test-secret-key-0123456789",
            NVFL_DASHBOARD_PP="functional-test-passphrase",
        )
        env.pop("DATABASE_URL", None)
        cmd = [
            str(GUNICORN),
            "--preload",
            "-w",
            "2",
            # Port 0: the kernel picks a free port, which gunicorn logs; no race with other tests.
            "-b",
            "127.0.0.1:0",
            "--certfile",
            str(self.tls.certfile),
            "--keyfile",
            str(self.tls.keyfile),
            # gunicorn 27 otherwise opens ~/.gunicorn/gunicorn.ctl, shared by every instance.
            "--no-control-socket",
            "nvflare.dashboard.wsgi:app",
        ]
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited:\n" + self.log_path.read_text(errors="replace"))
            match = re.search(r"Listening at: https://127\.0\.0\.1:(\d+)", self.log_path.read_text(errors="replace"))
            if match:
                self.url = f"https://127.0.0.1:{match.group(1)}"
                try:
                    if self.api("GET", "/project")[0] == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the dashboard did not answer in time:\n" + self.log_path.read_text(errors="replace"))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # Its own session: the master and its two workers, nothing else. SIGINT: quick shutdown; the
        # master then idles ~2 s before it exits, and nothing of this throwaway DB needs it.
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def api(self, method: str, path: str, data=None, token: str | None = None):
        """(status, parsed JSON or raw bytes) of one request, verifying TLS with the test CA."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + API + path, data=body, headers=headers, method=method)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._ssl)
        )
        try:
            with opener.open(req, timeout=30) as resp:
                status, content = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, content = e.code, e.read()
        try:
            return status, json.loads(content)
        except ValueError:
            return status, content

    def token(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> str:
        """A JWT of EMAIL (asserts that PASSWORD logs it in). The admin's is reused: each login costs an scrypt."""
        if email == ADMIN_EMAIL and email in self._tokens:
            return self._tokens[email]
        status, answer = self.api("POST", "/login", {"email": email, "password": password})
        assert status == 200, answer
        self._tokens[email] = answer["access_token"]
        return answer["access_token"]

    def project(self) -> dict:
        return self.api("GET", "/project")[1]["project"]

    def users(self) -> dict:
        return {u["email"]: u for u in self.api("GET", "/users", token=self.token())[1]["user_list"]}

    def sites(self) -> dict:
        return {s["name"]: s for s in self.api("GET", "/clients", token=self.token())[1]["client_list"]}

    def conn(self, **overrides) -> dict:
        """Connection options of the dashboard_* modules, as the project admin."""
        args = dict(url=self.url, username=ADMIN_EMAIL, password=ADMIN_PASSWORD, ca_path=str(self.tls.ca_path))
        args.update(overrides)
        return args


@pytest.fixture(scope="session")
def tls(tmp_path_factory) -> TLS:
    return TLS(tmp_path_factory.mktemp("dashboard-tls"))


@pytest.fixture(scope="session")
def start_dashboard(tls, tmp_path_factory):
    """Start a fresh dashboard (its own DB); every one started is stopped at the end of the session."""
    started = []

    def _start() -> Dashboard:
        dashboard = Dashboard(tmp_path_factory.mktemp("dashboard"), tls)
        started.append(dashboard)
        dashboard.start()
        return dashboard

    yield _start
    for dashboard in started:
        dashboard.stop()


@pytest.fixture(scope="session")
def dashboard(start_dashboard) -> Dashboard:
    """The shared dashboard; its project is never frozen."""
    return start_dashboard()


@pytest.fixture(scope="session", autouse=True)
def _no_proxy_for_loopback():
    """open_url honours proxy variables; the dashboard is on loopback and must be reached directly."""
    saved = {k: os.environ.get(k) for k in ("no_proxy", "NO_PROXY")}
    for key in saved:
        os.environ[key] = ",".join(filter(None, [saved[key], "127.0.0.1", "localhost"]))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# -- running modules ---------------------------------------------------------------------------


@pytest.fixture
def run_module():
    """federated.nvflare.<name> run in-process (tests/helpers/modules.py), its raw JSON checked
    for every known secret (SECRETS, plus those passed in SECRETS=) and for Ansible's no_log mask."""

    def _run(name: str, args: dict, check_mode: bool = False, diff: bool = False, secrets=()):
        return _run_module(name, args, check_mode=check_mode, diff=diff, secrets=list(SECRETS) + list(secrets))

    return _run


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens: a module that reaches it fails with 'cannot connect'."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"https://127.0.0.1:{port}"
