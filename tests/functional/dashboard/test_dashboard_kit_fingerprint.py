"""The stdlib-only certificate reader and kit fingerprint behind dashboard_kit's idempotence (no dashboard needed)."""

from __future__ import annotations

import datetime
import io
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.federated.nvflare.plugins.module_utils._kit import cert_identity, kit_fingerprint

NOW = datetime.datetime.now(datetime.timezone.utc)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "project")])


def cert(cn: str, not_after: datetime.datetime, san: str | None = None, org: str = "org_a") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])
        )
        .issuer_name(CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=400))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(CA_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "not_after",
    [NOW + datetime.timedelta(days=365), datetime.datetime(2051, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)],
    ids=["UTCTime", "GeneralizedTime"],
)
def test_cert_identity_matches_cryptography(not_after):
    pem = cert("site-1", not_after, san="site-1")
    issuer, subject, san, parsed_after = cert_identity(pem)
    parsed = x509.load_pem_x509_certificate(pem)
    assert issuer == parsed.issuer.public_bytes()
    assert subject == parsed.subject.public_bytes()
    assert san == parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.public_bytes()
    assert parsed_after == parsed.not_valid_after_utc.replace(microsecond=0)


def test_cert_without_san():
    _issuer, _subject, san, _after = cert_identity(cert("site-1", NOW + datetime.timedelta(days=1)))
    assert san == b""


def zipped(files: dict, pin: str) -> bytes:
    """An encrypted zip made the dashboard's way: `zip -P`."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            path = Path(tmp, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        subprocess.run(["zip", "-rq", "-P", pin, "kit.zip", "."], cwd=tmp, check=True)
        return Path(tmp, "kit.zip").read_bytes()


def kit(pin="Pin123", crt=None, config=b'{"fqsn": "site-1"}'):
    return zipped(
        {
            "startup/client.key": ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "startup/client.crt": crt or cert("site-1", NOW + datetime.timedelta(days=365), san="site-1"),
            "startup/fed_client.json": config,
        },
        pin,
    )


def test_two_downloads_of_one_kit_fingerprint_alike():
    first, second = kit(), kit()
    assert first != second
    assert kit_fingerprint(first, "Pin123") == kit_fingerprint(second, "Pin123")
    assert kit_fingerprint(first, "Pin123")["startup/client.key"] == "private key"


def test_what_makes_kits_differ():
    base = kit_fingerprint(kit(), "Pin123")
    assert kit_fingerprint(kit(config=b'{"fqsn": "site-2"}'), "Pin123") != base
    renamed = kit(crt=cert("site-2", NOW + datetime.timedelta(days=365), san="site-2"))
    assert kit_fingerprint(renamed, "Pin123")["startup/client.crt"] != base["startup/client.crt"]
    other_org = kit(crt=cert("site-1", NOW + datetime.timedelta(days=365), san="site-1", org="org_b"))
    assert kit_fingerprint(other_org, "Pin123")["startup/client.crt"] != base["startup/client.crt"]
    expired = kit(crt=cert("site-1", NOW - datetime.timedelta(days=1), san="site-1"))
    assert kit_fingerprint(expired, "Pin123")["startup/client.crt"].endswith("(expired)")


def test_wrong_pin_or_not_a_zip_is_none():
    assert kit_fingerprint(kit(), "WrongPin") is None
    assert kit_fingerprint(b"not a zip", "Pin123") is None
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("startup/fed_client.json", "{}")
    # A plain zip opens whatever the PIN: its content is what counts.
    assert kit_fingerprint(plain.getvalue(), "Pin123") == {
        "startup/fed_client.json": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    }
