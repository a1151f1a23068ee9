"""plugins/module_utils/_kit.py: the rules the kit modules build on, the fingerprint behind
dashboard_kit's idempotence and the digest of an installed kit."""

from __future__ import annotations

import datetime
import io
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.federated.nvflare.plugins.module_utils import _kit
from ansible_collections.federated.nvflare.plugins.module_utils._kit import cert_identity, kit_fingerprint


@pytest.mark.parametrize(
    "name, why",
    [
        ("../x", "'..'"),
        ("startup/../../x", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows/x", "absolute"),
        ("startup\\..\\x", "backslash"),
        ("a\x00b", "NUL"),
        ("", "empty"),
        ("./.", "empty path"),
    ],
)
def test_unsafe_names(name, why):
    with pytest.raises(_kit.KitError, match="unsafe entry") as err:
        _kit.safe_relpath(name, "k.zip")
    assert why in str(err.value)


@pytest.mark.parametrize(
    "name, rel", [("startup/a.json", "startup/a.json"), ("./startup//a", "startup/a"), ("local/", "local")]
)
def test_safe_names_are_normalised(name, rel):
    assert _kit.safe_relpath(name, "k.zip") == rel


@pytest.mark.parametrize(
    "rel, policy",
    [
        ("startup/fed_client.json", "replace"),
        ("startup/sub/x", "replace"),
        ("readme.txt", "replace"),
        ("local/resources.json.default", "replace"),
        ("local/privacy.json.sample", "replace"),
        ("local/signature.json", "replace"),
        ("local/resources.json", "keep"),
        ("transfer/job.zip", "keep"),
    ],
)
def test_install_policy(rel, policy):
    assert _kit.install_policy(rel) == policy


@pytest.mark.parametrize(
    "rel, mode",
    [
        ("startup/client.key", 0o600),
        ("startup/client_context.tenseal", 0o600),
        ("startup/sub_start.sh", 0o755),
        ("startup/rootCA.pem", 0o644),
    ],
)
def test_file_modes(rel, mode):
    assert _kit.file_mode(rel) == mode


def test_zip_bytes_round_trip_and_digest(tmp_path):
    files = {"startup/a.sh": (b"echo hi\n", 0o755), "startup/k.key": (b"secret", 0o600), "readme.txt": (b"r", 0o644)}
    path = tmp_path / "k.zip"
    path.write_bytes(_kit.zip_bytes(files, "Pin1", dirs={"transfer"}))
    kit = _kit.read_zip(str(path), "Pin1")
    assert kit.files == {k: v[0] for k, v in files.items()}
    assert "transfer" in kit.dirs
    assert _kit.zip_pin_ok(str(path), "Pin1") and not _kit.zip_pin_ok(str(path), "Pin2")
    plain = tmp_path / "p.zip"
    plain.write_bytes(_kit.zip_bytes(files, None))
    with zipfile.ZipFile(plain) as zf:
        assert not any(i.flag_bits & 1 for i in zf.infolist())
    assert _kit.digest(_kit.read_zip(str(plain)).files) == _kit.digest(kit.files)
    # The zip is not byte-identical twice (timestamps, random encryption headers): the digest is.
    assert path.read_bytes() != _kit.zip_bytes(files, "Pin1", dirs={"transfer"})


def test_root_entry_is_ignored(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("./", "")
        zf.writestr("startup/fed_client.json", "{}")
    assert set(_kit.read_zip(str(path)).files) == {"startup/fed_client.json"}


def test_kit_without_startup_is_refused(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a/b.txt", "x")
        zf.writestr("c/d.txt", "y")
    with pytest.raises(_kit.KitError, match="not an NVFlare startup kit"):
        _kit.read_zip(str(path))


class _OldCryptographyCert:
    """A real certificate seen through the API of cryptography < 40 (no verify_directly_issued_by)."""

    def __init__(self, cert):
        self._cert = cert

    def __getattr__(self, name):
        if name == "verify_directly_issued_by":
            raise AttributeError(name)
        return getattr(self._cert, name)


def test_chain_check_without_verify_directly_issued_by(kits):
    from cryptography import x509

    def load(path):
        return x509.load_pem_x509_certificate(path.read_bytes())

    site = load(kits.prod / "site-1" / "startup" / "client.crt")
    ca = load(kits.prod / "site-1" / "startup" / "rootCA.pem")
    other_ca = load(kits.other_prod / "site-1" / "startup" / "rootCA.pem")
    old = _OldCryptographyCert(site)
    assert not hasattr(old, "verify_directly_issued_by")
    assert _kit.issued_by(old, ca) is True
    assert _kit.issued_by(old, other_ca) is False
    assert _kit.issued_by(site, ca) is True and _kit.issued_by(site, other_ca) is False


# -- the fingerprint of a kit zip (dashboard_kit) --

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


def test_fingerprint_of_a_real_kit_counts_empty_folders_and_keys_by_presence(kits):
    fingerprint = kit_fingerprint(kits.site1_zip.read_bytes(), kits.pin)
    assert fingerprint == kit_fingerprint(kits.site1_zip_again.read_bytes(), kits.pin)
    assert fingerprint["transfer/"] == "dir" and "startup/" not in fingerprint
    assert fingerprint["startup/client.key"] == "private key"
    assert fingerprint["startup/client.crt"].startswith("certificate:")
    assert kit_fingerprint(kits.truncated_zip.read_bytes(), kits.pin) is None


# -- the digest of an installed kit (kit_digest) --


def installed(kits, tmp_path) -> Path:
    dest = tmp_path / "site-1"
    shutil.copytree(kits.site1_dir, dest)
    return dest


def test_kit_digest_is_the_same_for_the_same_kit_and_settings(kits, tmp_path):
    dest = installed(kits, tmp_path)
    first = _kit.kit_digest(str(dest))
    assert len(first) == 64
    # What NVFlare writes while it runs, modes and the reference readme do not count.
    (dest / "log.txt").write_text("round 1")
    (dest / "readme.txt").write_text("edited")
    (dest / "transfer" / "job.zip").write_bytes(b"job")
    job = dest / "0f4c2b5e-job"
    job.mkdir()
    (job / "log.txt").write_text("x")
    (dest / "startup" / "start.sh").chmod(0o700)
    assert _kit.kit_digest(str(dest)) == first
    # The same kit installed elsewhere gives the same digest.
    assert _kit.kit_digest(str(installed(kits, tmp_path / "again"))) == first


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "local" / "resources.json").write_text('{"num_of_gpus": 1}'),
        lambda d: (d / "startup" / "fed_client.json").write_text("{}"),
        lambda d: shutil.copy(d.parent.parent / "other.crt", d / "startup" / "client.crt"),
        lambda d: (d / "startup" / "rootCA.pem").unlink(),
    ],
    ids=["resources.json", "fed_client.json", "certificate", "rootCA.pem"],
)
def test_kit_digest_changes_with_the_kit_or_local_settings(kits, tmp_path, change):
    shutil.copy(kits.prod / "site-2" / "startup" / "client.crt", tmp_path / "other.crt")
    dest = installed(kits, tmp_path / "host")
    before = _kit.kit_digest(str(dest))
    change(dest)
    assert _kit.kit_digest(str(dest)) != before


def test_kit_digest_refuses_a_folder_without_a_kit_or_with_a_link(kits, tmp_path):
    with pytest.raises(_kit.KitError, match="no installed startup kit"):
        _kit.kit_digest(str(tmp_path))
    dest = installed(kits, tmp_path / "host")
    (dest / "local" / "resources.json").symlink_to("/etc/passwd")
    with pytest.raises(_kit.KitError, match="symbolic link"):
        _kit.kit_digest(str(dest))
