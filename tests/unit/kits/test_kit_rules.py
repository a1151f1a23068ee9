"""The rules of plugins/module_utils/_kit.py that the modules build on."""

from __future__ import annotations

import zipfile

import pytest

from ansible_collections.federated.nvflare.plugins.module_utils import _kit


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
