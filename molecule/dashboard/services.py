"""Stand-ins for the outside services of the dashboard scenario, run on the controller.

pebble (Let's Encrypt's test ACME server) and moto's server (Route53) listen on the scenario's
docker bridge gateway address, on ports the kernel picked, so that the test hosts on the internal
network reach them and nothing outside does. Nothing here talks to a real ACME or AWS endpoint.

Two pebbles: the scenario's, which rejects pebble's default share of good nonces (5 %, a fault
the converge must survive, as with Let's Encrypt), and a noisy one that rejects half of them
(PEBBLE_WFE_NONCEREJECT=50), for the verifier's issuance and renewal under heavy badNonce load.
Both use the same listener certificate; each has its own ports, roots and log.

    services.py start NETWORK STATE_DIR   start both, create the hosted zone, write services.json
    services.py stop STATE_DIR            stop what `start` started (by the process groups it saved)
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ZONE = "nvflare.test"
BIN = Path(sys.executable).parent
PEBBLE = "/usr/bin/pebble"


def _free_ports(address: str, count: int) -> list[int]:
    """`count` distinct ports the kernel picked (all held open until each one is picked)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((address, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _gateway(network: str) -> str:
    out = subprocess.run(
        ["docker", "network", "inspect", network, "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ipaddress.ip_address(out)
    return out


def _listener_tls(state: Path, address: str) -> tuple[Path, Path, Path]:
    """A CA of its own and a certificate for pebble's listener (not pebble's issuing root)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dash scenario pebble listener CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = state / "pebble-listener-ca.pem", state / "pebble.crt", state / "pebble.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return proc.pid


def _wait(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except Exception as exc:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer in {timeout} s: {exc}") from exc
            time.sleep(0.3)


def _pebble(
    state: Path, name: str, address: str, ports: list[int], tls: tuple[Path, Path], env: dict
) -> tuple[dict, int]:
    """Start one pebble on `address`, `ports` its ACME and management ports: (its URLs, its pid)."""
    acme_port, mgmt_port = ports
    config = state / f"{name}.json"
    config.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"{address}:{acme_port}",
                    "managementListenAddress": f"{address}:{mgmt_port}",
                    "certificate": str(tls[0]),
                    "privateKey": str(tls[1]),
                    "httpPort": 5002,
                    "tlsPort": 5001,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    # The DNS-01 challenge is recorded by moto (TXT records in Route53); pebble itself does not
    # query DNS here (PEBBLE_VA_ALWAYS_VALID), so nothing needs a resolver for the test zone.
    pid = _spawn(
        [PEBBLE, "-config", str(config)],
        state / f"{name}.log",
        {"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1", **env},
    )
    urls = {"directory": f"https://{address}:{acme_port}/dir", "management": f"https://{address}:{mgmt_port}"}
    return urls, pid


def start(network: str, state: Path) -> dict:
    stop(state)  # what an interrupted run left behind
    state.mkdir(parents=True, exist_ok=True)
    address = _gateway(network)
    ca_path, cert_path, key_path = _listener_tls(state, address)
    moto_port, *pebble_ports = _free_ports(address, 5)
    info = {
        "address": address,
        "pebble_listener_ca": str(ca_path),
        "route53_endpoint": f"http://{address}:{moto_port}",
        "zone": ZONE,
        "recording": str(state / "moto-recording.jsonl"),
        "pids": [],
    }
    # pebble's default nonce rejection (5 %) stays on for the scenario's own certificate.
    main, pid = _pebble(state, "pebble", address, pebble_ports[:2], (cert_path, key_path), {})
    info.update(acme_directory=main["directory"], pebble_management=main["management"])
    info["pids"].append(pid)
    noisy, pid = _pebble(
        state, "pebble-noisy", address, pebble_ports[2:], (cert_path, key_path), {"PEBBLE_WFE_NONCEREJECT": "50"}
    )
    info.update(
        acme_directory_noisy=noisy["directory"],
        pebble_management_noisy=noisy["management"],
        pebble_log_noisy=str(state / "pebble-noisy.log"),
    )
    info["pids"].append(pid)
    info["pids"].append(
        _spawn(
            [str(BIN / "moto_server"), "-H", address, "-p", str(moto_port)],
            state / "moto.log",
            {"MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": info["recording"]},
        )
    )
    (state / "services.json").write_text(json.dumps(info, indent=2))

    ctx = ssl.create_default_context(cafile=str(ca_path))
    for suffix in ("", "_noisy"):
        directory = info["acme_directory" + suffix]
        _wait(lambda url=directory: urllib.request.urlopen(url, context=ctx, timeout=5).read(), "pebble" + suffix)
    _wait(lambda: urllib.request.urlopen(info["route53_endpoint"] + "/moto-api/", timeout=5).read(), "moto")
    for suffix in ("", "_noisy"):
        root = urllib.request.urlopen(info["pebble_management" + suffix] + "/roots/0", context=ctx, timeout=10).read()
        path = state / f"pebble-root{suffix.replace('_', '-')}.pem"
        path.write_bytes(root)
        info["pebble_root" + suffix] = str(path)

    import boto3  # the controller's, from moto's requirements

    route53 = boto3.client(
        "route53",
        endpoint_url=info["route53_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="dashscenario",
        aws_secret_access_key="dashscenario",
    )
    zone = route53.create_hosted_zone(Name=ZONE + ".", CallerReference=f"dash-{time.time()}")
    info["zone_id"] = zone["HostedZone"]["Id"].split("/")[-1]
    (state / "services.json").write_text(json.dumps(info, indent=2))
    return info


def stop(state: Path) -> None:
    path = state / "services.json"
    if not path.exists():
        return
    for pid in json.loads(path.read_text()).get("pids", []):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(50):
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
    path.unlink()


if __name__ == "__main__":
    if sys.argv[1] == "start":
        print(json.dumps(start(sys.argv[2], Path(sys.argv[3]))))
    elif sys.argv[1] == "stop":
        stop(Path(sys.argv[2]))
    else:
        sys.exit(__doc__)
