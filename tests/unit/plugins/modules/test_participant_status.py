"""federated.nvflare.participant_status: how an installed participant is doing, read-only.

Certificates are made with the cryptography package and read back by the module's own DER
reader (standard library only); the process service manager is checked against a real process
group. systemd and Slurm are stood in for by scripts on PATH that print what `systemctl show`
and `squeue` print (the Molecule scenarios run the module against the real ones).
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.federated.nvflare.plugins.modules import participant_status

UTC = datetime.timezone.utc


def _cert(cn: str, not_after: datetime.datetime) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "org"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def kit(tmp_path):
    """An installed client kit: a certificate good for a year, a root CA good until 2060."""
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    startup = tmp_path / "site-1" / "startup"
    startup.mkdir(parents=True)
    (startup / "client.crt").write_text(_cert("site-1", now + datetime.timedelta(days=365, hours=1)))
    (startup / "rootCA.pem").write_text(_cert("project", datetime.datetime(2060, 6, 1, tzinfo=UTC)))
    venv = tmp_path / "venv"
    (venv / "lib" / "python3.11" / "site-packages" / "nvflare-2.9.0.dist-info").mkdir(parents=True)
    return {"name": "site-1", "type": "client", "dir": str(startup.parent), "venv": str(venv)}


def test_reads_certificates_as_cryptography_does():
    for when in (datetime.datetime(2027, 3, 4, 5, 6, 7, tzinfo=UTC), datetime.datetime(2061, 1, 2, tzinfo=UTC)):
        pem = _cert("site-ä", when)  # UTCTime before 2050, GeneralizedTime after
        assert participant_status.read_certificate(pem) == ("site-ä", when)
    with pytest.raises(ValueError):
        participant_status.read_certificate("not a certificate")


def test_certificates_version_and_no_service(run_module, kit):
    res = run_module("participant_status", kit, check_mode=True)
    assert not res.failed, res
    assert res["changed"] is False and res["installed"] is True
    assert res["nvflare_version"] == "2.9.0"
    assert res["service"]["state"] == "none" and res["problems"] == []
    certs = res["certificates"]
    assert [c["role"] for c in certs] == ["participant", "root CA"]
    assert certs[0]["subject"] == "site-1" and certs[0]["days_left"] == 365 and certs[0]["expiring"] is False
    assert certs[1]["not_after"] == "2060-06-01T00:00:00+00:00"


def test_expiring_and_expired_certificates_are_problems(run_module, kit):
    startup = Path(kit["dir"], "startup")
    now = datetime.datetime.now(UTC)
    (startup / "client.crt").write_text(_cert("site-1", now + datetime.timedelta(days=10, hours=1)))
    (startup / "rootCA.pem").write_text(_cert("project", now - datetime.timedelta(days=3, hours=1)))
    res = run_module("participant_status", dict(kit, cert_warning_days=30))
    assert [c["days_left"] for c in res["certificates"]] == [-3, 10]
    assert all(c["expiring"] for c in res["certificates"])
    assert any("root CA certificate" in p and "expired 3 days ago" in p for p in res["problems"]), res["problems"]
    assert any("(site-1) expires in 10 days" in p for p in res["problems"]), res["problems"]
    expired = [p for p in res["problems"] if p.endswith("days ago")]
    assert run_module("participant_status", dict(kit, cert_warning_days=5))["problems"] == expired


def test_missing_kit_and_virtualenv(run_module, tmp_path):
    res = run_module("participant_status", {"name": "s", "type": "client", "dir": str(tmp_path / "no"), "venv": "/no"})
    assert res["installed"] is False and res["nvflare_version"] is None and res["certificates"] == []
    assert f"no startup kit in {tmp_path / 'no'}" in res["problems"]
    assert "no NVFlare in the virtualenv /no" in res["problems"]


def test_process_running_with_restarts_then_shut_down(run_module, kit):
    ws = Path(kit["dir"])
    (ws / "service.log").write_text("x\n2026-12-01T10:00:00+00:00 restart.fl: starting again\n" * 2)
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (ws / "service.pid").write_text(f"{proc.pid}\n")
        args = dict(kit, service={"manager": "process", "pidfile": str(ws / "service.pid")})
        res = run_module("participant_status", args)
        assert res["service"]["state"] == "running" and res["service"]["pid"] == str(proc.pid)
        assert res["service"]["restarts"] == 2
        since = datetime.datetime.fromisoformat(res["service"]["since"])
        assert abs((datetime.datetime.now(UTC) - since).total_seconds()) < 30
        assert res["problems"] == []
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    res = run_module("participant_status", args)
    assert res["service"]["state"] == "stopped" and res["problems"] == ["site-1 is stopped"]
    (ws / "shutdown.fl").touch()
    res = run_module("participant_status", args)
    assert res["service"]["state"] == "shut down" and res["admin_shutdown"] is True
    assert res["problems"] == ["site-1 is shut down by an NVFlare admin (the next site.yml run starts it)"]


def _on_path(monkeypatch, tmp_path, name, text):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/bin/sh\ncat <<'EOF'\n{text}\nEOF\n")
    (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_systemd_unit_properties(run_module, kit, monkeypatch, tmp_path):
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    # Some time ago, after the boot (a machine may have booted less than an hour ago).
    before = min(3600.0, uptime / 2)
    entered = int((uptime - before) * 1e6)
    _on_path(
        monkeypatch,
        tmp_path,
        "systemctl",
        f"LoadState=loaded\nActiveState=active\nResult=success\nActiveEnterTimestampMonotonic={entered}\n"
        "InactiveEnterTimestampMonotonic=0\nNRestarts=3\nMainPID=4242\nUnitFileState=enabled",
    )
    res = run_module("participant_status", dict(kit, service={"manager": "systemd", "unit": "nvflare-site-1.service"}))
    s = res["service"]
    assert (s["state"], s["restarts"], s["pid"], s["enabled"]) == ("running", 3, "4242", True)
    ago = datetime.datetime.now(UTC) - datetime.datetime.fromisoformat(s["since"])
    assert abs(ago.total_seconds() - before) < 60


def test_systemd_unit_not_installed(run_module, kit, monkeypatch, tmp_path):
    _on_path(monkeypatch, tmp_path, "systemctl", "LoadState=not-found\nActiveState=inactive")
    res = run_module("participant_status", dict(kit, service={"manager": "systemd", "unit": "nvflare-x.service"}))
    assert res["service"]["state"] == "not installed"
    assert res["problems"] == ["site-1 is not installed"]


def test_container_running_then_held_down_by_an_admin_shutdown(run_module, kit, monkeypatch, tmp_path):
    """A container stays up while NVFlare's `shutdown` keeps its participant down: shut down, not running."""
    _on_path(monkeypatch, tmp_path, "docker", "running|2026-12-01T10:00:00.1Z|2|4242|unless-stopped")
    args = dict(kit, service={"manager": "container", "container": "nvflare-site-1"})
    s = run_module("participant_status", args)["service"]
    assert (s["state"], s["restarts"], s["pid"], s["enabled"]) == ("running", 2, "4242", True)
    (Path(kit["dir"]) / "shutdown.fl").touch()
    res = run_module("participant_status", args)
    assert res["service"]["state"] == "shut down" and res["admin_shutdown"] is True
    _on_path(monkeypatch, tmp_path, "docker", "Error: No such container: nvflare-site-1")
    (Path(kit["dir"]) / "shutdown.fl").unlink()
    res = run_module("participant_status", args)
    assert res["service"]["state"] == "not installed" and res["problems"] == ["site-1 is not installed"]


def test_slurm_running_and_queued(run_module, kit, monkeypatch, tmp_path):
    _on_path(monkeypatch, tmp_path, "squeue", "101|RUNNING|2026-12-01T10:00:00\n102|PENDING|N/A")
    args = dict(kit, service={"manager": "slurm", "job_name": "nvflare-site-1"})
    res = run_module("participant_status", args)
    assert res["service"]["state"] == "running" and res["service"]["pid"] == "101"
    assert res["service"]["since"].startswith("2026-12-01T")
    _on_path(monkeypatch, tmp_path, "squeue", "102|PENDING|N/A")
    assert run_module("participant_status", args)["service"]["state"] == "queued"
