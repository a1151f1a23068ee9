"""federated.nvflare.provision: real provisioning with NVFlare's own builders run in-process, no mocks.

Adopting a workspace that `nvflare provision` made is tested in tests/functional/kits."""

from __future__ import annotations

import json
import stat
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from tests.helpers.zipcrypto import pin_refused

PIN = "Prov1sionPin"
SERVER = "fl.example.org"
ADMIN = "admin@example.org"


def spec(ws: Path, sites=("site-1", "site-2"), server=SERVER, **kw) -> dict:
    out = {
        "workspace": str(ws),
        "name": "spleen",
        "server": {"name": server, "org": "org_a"},
        "sites": [{"name": s, "org": "org_a" if i % 2 == 0 else "org_b"} for i, s in enumerate(sites)],
        "admins": [{"email": ADMIN, "org": "org_a", "role": "project_admin"}],
    }
    out.update(kw)
    return out


def tree(path: Path) -> dict:
    """Every file under PATH with its bytes, mode and mtime: proof that nothing was touched."""
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(path))] = (
            p.read_bytes() if p.is_file() else None,
            stat.S_IMODE(st.st_mode),
            st.st_mtime_ns,
        )
    return out


def cert(ws: Path, participant: str, name: str = "client.crt") -> bytes:
    return (ws / "kits" / participant / "startup" / name).read_bytes()


def fingerprint(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()


def test_check_mode_first_run_writes_nothing(run_module, tmp_path):
    ws = tmp_path / "workspace"
    res = run_module("provision", spec(ws, pin=PIN), check_mode=True, diff=True)
    assert not res.failed, res
    assert res["changed"] is True
    assert res["changes"]["created"] == [SERVER, "site-1", "site-2", ADMIN]
    assert res["root_ca_sha256"] is None
    assert res["diff"]["before"] == "" and "api_version: 3" in res["diff"]["after"]
    assert not ws.exists()
    assert list(tmp_path.iterdir()) == []


def test_project_lifecycle(run_module, tmp_path):
    ws = tmp_path / "workspace"
    # 1. First run: kits, zips, project.yml, CA state.
    first = run_module("provision", spec(ws, pin=PIN), diff=True)
    assert not first.failed, first
    assert first["changed"] is True
    assert first["changes"] == {
        "created": [SERVER, "site-1", "site-2", ADMIN],
        "updated": [],
        "removed": [],
        "reissued": [],
    }
    assert first["kits"] == {p: str(ws / "kits" / p) for p in (SERVER, "site-1", "site-2", ADMIN)}
    assert first["zips"] == {p: str(ws / "zips" / (p + ".zip")) for p in (SERVER, "site-1", "site-2", ADMIN)}
    assert first["project_yml"] == str(ws / "project.yml")
    root = json.loads((ws / "spleen" / "state" / "cert.json").read_text())["root_cert"].encode()
    assert first["root_ca_sha256"] == fingerprint(root)
    assert fingerprint(cert(ws, "site-1", "rootCA.pem")) == first["root_ca_sha256"]
    assert stat.S_IMODE((ws / "spleen" / "state" / "cert.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(ws.stat().st_mode) == 0o700
    assert not list((ws / "spleen").glob("prod_*")) and not list(ws.glob(".provision-*"))

    project = yaml.safe_load((ws / "project.yml").read_text())
    assert project["api_version"] == 3
    server = project["participants"][0]
    assert server == {"name": SERVER, "type": "server", "org": "org_a", "fed_learn_port": 8002, "admin_port": 8003}
    static = [b for b in project["builders"] if b["path"].endswith("StaticFileBuilder")][0]
    assert static["args"]["scheme"] == "grpc"
    fed_server = json.loads(cert(ws, SERVER, "fed_server.json"))
    assert fed_server["servers"][0]["admin_port"] == 8003
    assert "grpc" in json.dumps(fed_server)
    fed_client = json.loads(cert(ws, "site-1", "fed_client.json"))
    assert "grpc" in json.dumps(fed_client) and SERVER in json.dumps(fed_client)
    assert stat.S_IMODE((ws / "kits" / "site-1" / "startup" / "client.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((ws / "kits" / "site-1" / "startup" / "sub_start.sh").stat().st_mode) == 0o755

    # 2. Same input: nothing changes, not even a timestamp.
    before = tree(ws)
    again = run_module("provision", spec(ws, pin=PIN), diff=True)
    assert again["changed"] is False, again["changes"]
    assert again["root_ca_sha256"] == first["root_ca_sha256"]
    assert again["diff"]["before"] == again["diff"]["after"]
    assert tree(ws) == before

    # 3. Adding a site, in check mode first: reported, not written.
    bigger = spec(ws, sites=("site-1", "site-2", "site-3"), pin=PIN)
    check = run_module("provision", bigger, check_mode=True, diff=True)
    assert check["changed"] is True
    assert check["changes"] == {"created": ["site-3"], "updated": [], "removed": [], "reissued": []}
    assert "site-3" in check["diff"]["after"] and "site-3" not in check["diff"]["before"]
    assert check["root_ca_sha256"] == first["root_ca_sha256"]
    assert tree(ws) == before

    added = run_module("provision", bigger)
    assert added["changed"] is True
    assert added["changes"]["created"] == ["site-3"] and added["changes"]["updated"] == []
    assert added["root_ca_sha256"] == first["root_ca_sha256"]
    after = tree(ws)
    for part in (SERVER, "site-1", "site-2", ADMIN):
        kit = {k: v for k, v in after.items() if k.startswith(f"kits/{part}/")}
        assert kit == {k: v for k, v in before.items() if k.startswith(f"kits/{part}/")}, part
    assert (
        x509.load_pem_x509_certificate(cert(ws, "site-3"))
        .subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0]
        .value
        == "org_a"
    )
    assert (ws / "zips" / "site-3.zip").is_file()

    # 4. A new server address: kits follow, root CA and every certificate stay.
    site1_cert = cert(ws, "site-1")
    moved = run_module("provision", spec(ws, sites=("site-1", "site-2", "site-3"), server="fl2.example.org", pin=PIN))
    assert moved["changed"] is True
    assert moved["root_ca_sha256"] == first["root_ca_sha256"]
    assert moved["changes"]["created"] == ["fl2.example.org"]
    assert moved["changes"]["removed"] == [SERVER]
    assert sorted(moved["changes"]["updated"]) == sorted(["site-1", "site-2", "site-3", ADMIN])
    assert cert(ws, "site-1") == site1_cert
    assert "fl2.example.org" in cert(ws, "site-1", "fed_client.json").decode()
    assert not (ws / "kits" / SERVER).exists() and not (ws / "zips" / (SERVER + ".zip")).exists()
    assert fingerprint(cert(ws, "fl2.example.org", "rootCA.pem")) == first["root_ca_sha256"]


def test_zips_are_dashboard_format_and_install_with_startup_kit(run_module, tmp_path):
    ws = tmp_path / "workspace"
    res = run_module("provision", spec(ws, pin=PIN))
    z = Path(res["zips"]["site-1"])
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
        assert "startup/client.crt" in names and "transfer/" in names
        assert not any(n.startswith("site-1/") for n in names)  # content at the top, as the dashboard's
        info = zf.getinfo("startup/client.key")
        assert info.flag_bits & 0x1  # encrypted
        assert (info.external_attr >> 16) & 0o777 == 0o600
        assert zf.read("startup/client.crt", pwd=PIN.encode()) == cert(ws, "site-1")
    assert pin_refused(z, "wrongPin")
    # unzip -P (Info-ZIP) opens it as it opens dashboard zips.
    out = tmp_path / "unzipped"
    import subprocess

    subprocess.run(["unzip", "-q", "-P", PIN, str(z), "-d", str(out)], check=True)
    assert (out / "startup" / "client.crt").read_bytes() == cert(ws, "site-1")
    assert stat.S_IMODE((out / "startup" / "sub_start.sh").stat().st_mode) == 0o755

    dest = tmp_path / "host" / "site-1"
    kit = run_module(
        "startup_kit", {"src": str(z), "pin": PIN, "dest": str(dest), "participant": "site-1", "type": "client"}
    )
    assert not kit.failed, kit
    assert kit["root_ca_sha256"] == res["root_ca_sha256"]
    folder = run_module(
        "startup_kit",
        {"src": res["kits"]["site-1"], "dest": str(dest), "participant": "site-1", "type": "client"},
    )
    assert folder["changed"] is False and folder["digest"] == kit["digest"]


def test_pin_change_rewrites_zips_only_and_no_pin_removes_them(run_module, tmp_path):
    ws = tmp_path / "workspace"
    run_module("provision", spec(ws, pin=PIN))
    kits_before = tree(ws / "kits")
    res = run_module("provision", spec(ws, pin="Other2pin"))
    assert res["changed"] is True
    assert res["changes"] == {"created": [], "updated": [], "removed": [], "reissued": []}
    assert tree(ws / "kits") == kits_before
    with zipfile.ZipFile(res["zips"]["site-2"]) as zf:
        assert zf.read("startup/client.crt", pwd=b"Other2pin") == cert(ws, "site-2")
    assert run_module("provision", spec(ws, pin="Other2pin"))["changed"] is False
    gone = run_module("provision", spec(ws))
    assert gone["changed"] is True and "zips" not in gone
    assert list((ws / "zips").iterdir()) == []
    assert tree(ws / "kits") == kits_before


def test_plain_zips_with_zip_option(run_module, tmp_path):
    """zip: true without a PIN: plain zips that startup_kit installs; switching to and from a PIN
    rewrites them, a re-run touches nothing, zip: false removes them."""
    ws = tmp_path / "workspace"
    res = run_module("provision", spec(ws, zip=True))
    assert not res.failed, res
    z = Path(res["zips"]["site-1"])
    with zipfile.ZipFile(z) as zf:
        assert not any(i.flag_bits & 0x1 for i in zf.infolist())  # not encrypted
        assert zf.read("startup/client.crt") == cert(ws, "site-1")
    first = {n: (ws / "zips" / n).read_bytes() for n in sorted(p.name for p in (ws / "zips").iterdir())}
    again = run_module("provision", spec(ws, zip=True))
    assert again["changed"] is False
    assert {n: (ws / "zips" / n).read_bytes() for n in first} == first
    dest = tmp_path / "host" / "site-1"
    kit = run_module("startup_kit", {"src": str(z), "dest": str(dest), "participant": "site-1", "type": "client"})
    assert not kit.failed and kit["changed"] is True, kit
    # Encrypted now (PIN added), then plain again (PIN dropped, zip kept): each a rewrite.
    enc = run_module("provision", spec(ws, zip=True, pin=PIN))
    assert enc["changed"] is True
    with zipfile.ZipFile(z) as zf:
        assert zf.getinfo("startup/client.crt").flag_bits & 0x1
    plain = run_module("provision", spec(ws, zip=True))
    assert plain["changed"] is True
    with zipfile.ZipFile(z) as zf:
        assert not zf.getinfo("startup/client.crt").flag_bits & 0x1
    # Without the manifest the module compares in full and still sees the plain zips as current.
    (ws / "spleen" / "state" / "federated.nvflare.json").unlink()
    assert run_module("provision", spec(ws, zip=True))["changed"] is False
    gone = run_module("provision", spec(ws))
    assert gone["changed"] is True and "zips" not in gone and list((ws / "zips").iterdir()) == []


def test_hand_edited_kit_is_repaired(run_module, tmp_path):
    ws = tmp_path / "workspace"
    run_module("provision", spec(ws))
    original = cert(ws, "site-2", "fed_client.json")
    (ws / "kits" / "site-2" / "startup" / "fed_client.json").write_text("{}")
    res = run_module("provision", spec(ws))
    assert res["changed"] is True and res["changes"]["updated"] == ["site-2"]
    assert cert(ws, "site-2", "fed_client.json") == original


def test_rerun_without_manifest_or_with_a_swapped_zip(run_module, tmp_path):
    """The quick no-change path relies on a manifest; without it, or when an output no longer
    matches it, the module provisions and compares in full."""
    ws = tmp_path / "workspace"
    run_module("provision", spec(ws, pin=PIN))
    manifest = ws / "spleen" / "state" / "federated.nvflare.json"
    recorded = json.loads(manifest.read_text())
    assert sorted(recorded["kits"]) == sorted([SERVER, "site-1", "site-2", ADMIN])
    assert PIN not in manifest.read_text()
    manifest.unlink()
    kits_before = tree(ws / "kits")
    res = run_module("provision", spec(ws, pin=PIN))
    assert res["changed"] is False, res["changes"]
    assert tree(ws / "kits") == kits_before
    assert json.loads(manifest.read_text()) == recorded
    # site-2's zip replaced by site-1's (same PIN): caught and rewritten.
    (ws / "zips" / "site-2.zip").write_bytes((ws / "zips" / "site-1.zip").read_bytes())
    res = run_module("provision", spec(ws, pin=PIN))
    assert res["changed"] is True and res["changes"]["updated"] == []
    with zipfile.ZipFile(ws / "zips" / "site-2.zip") as zf:
        assert zf.read("startup/client.crt", pwd=PIN.encode()) == cert(ws, "site-2")
    # A stray zip is removed.
    (ws / "zips" / "old-site.zip").write_bytes(b"x")
    res = run_module("provision", spec(ws, pin=PIN))
    assert res["changed"] is True and not (ws / "zips" / "old-site.zip").exists()
    assert run_module("provision", spec(ws, pin=PIN))["changed"] is False


def test_role_and_org_changes_reissue_only_that_certificate(run_module, tmp_path):
    ws = tmp_path / "workspace"
    first = run_module("provision", spec(ws))
    server_cert = cert(ws, SERVER, "server.crt")
    site2_cert = cert(ws, "site-2")
    changed = spec(ws)
    changed["admins"][0]["role"] = "lead"
    changed["sites"][0]["org"] = "org_c"
    res = run_module("provision", changed)
    assert not res.failed, res
    assert sorted(res["changes"]["reissued"]) == sorted([ADMIN, "site-1"])
    assert sorted(res["changes"]["updated"]) == sorted([ADMIN, "site-1"])
    assert res["root_ca_sha256"] == first["root_ca_sha256"]
    admin = x509.load_pem_x509_certificate(cert(ws, ADMIN))
    assert admin.subject.get_attributes_for_oid(NameOID.UNSTRUCTURED_NAME)[0].value == "lead"
    site1 = x509.load_pem_x509_certificate(cert(ws, "site-1"))
    assert site1.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "org_c"
    assert cert(ws, SERVER, "server.crt") == server_cert and cert(ws, "site-2") == site2_cert
    assert run_module("provision", changed)["changed"] is False


BAD = [
    (lambda s: s["sites"][0].update(org="org-a"), "sites[0].org: invalid org name 'org-a'", "no hyphen"),
    (
        lambda s: s["sites"][1].update(name="site 2"),
        "sites[1].name: invalid site name 'site 2'",
        "hyphens and underscores",
    ),
    (lambda s: s["admins"][0].update(email="not-an-email"), "admins[0].email: invalid admin name", "email address"),
    (lambda s: s["admins"][0].update(role="owner"), "admins[0].role: invalid role name 'owner'", "project_admin"),
    (lambda s: s["server"].update(name="fl_server!"), "server.name: invalid server name 'fl_server!'", "hostname"),
    (lambda s: s["server"].update(org="a b"), "server.org: invalid org name 'a b'", "underscores"),
    (lambda s: s.update(name="my project"), "name: invalid project name 'my project'", "letters"),
    (
        lambda s: s["sites"].append({"name": "site-1", "org": "org_a"}),
        "participant name 'site-1' is used more than once",
        "",
    ),
    (lambda s: s["server"].update(admin_port=70000), "server.admin_port: 70000", "1-65535"),
    (lambda s: s.update(pin="12-34"), "pin: invalid PIN", "letters and digits"),
]


@pytest.mark.parametrize("mutate, where, rule", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_names_fail_before_anything_is_written(run_module, tmp_path, mutate, where, rule):
    ws = tmp_path / "workspace"
    s = spec(ws, pin=PIN)
    mutate(s)
    res = run_module("provision", s)
    assert res.failed
    assert where in res["msg"], res["msg"]
    assert rule in res["msg"]
    assert not ws.exists()
    assert "12-34" not in res["msg"] and PIN not in res["msg"]


def test_nvflare_own_rejection_fails_cleanly(run_module, tmp_path):
    """NVFlare wants a top-level domain in an admin's email; whichever check catches it, nothing is left behind."""
    ws = tmp_path / "workspace"
    s = spec(ws)
    s["admins"][0]["email"] = "admin@localhost"
    res = run_module("provision", s)
    assert res.failed and "admin@localhost" in res["msg"]
    assert "\n" not in res["msg"]
    assert not ws.exists()


def test_every_bad_name_is_reported_at_once(run_module, tmp_path):
    s = spec(tmp_path / "ws")
    s["sites"][0]["org"] = "org-a"
    s["admins"][0]["role"] = "boss"
    res = run_module("provision", s)
    assert "sites[0].org" in res["msg"] and "admins[0].role" in res["msg"]


def test_he_without_tenseal_fails_clearly(run_module, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tenseal", None)  # what `import tenseal` meets where it is not installed
    ws = tmp_path / "workspace"
    res = run_module("provision", spec(ws, he=True))
    assert res.failed
    assert "tenseal" in res["msg"] and "he: true" in res["msg"]
    assert not ws.exists()


def _has_tenseal() -> bool:
    try:
        import tenseal  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_tenseal(), reason="tenseal is not installed")
def test_he_context_is_kept_across_runs_and_sites(run_module, tmp_path):
    ws = tmp_path / "workspace"
    first = run_module("provision", spec(ws, he=True))
    assert not first.failed, first
    ctx1 = cert(ws, "site-1", "client_context.tenseal")
    assert ctx1 == cert(ws, "site-2", "client_context.tenseal")
    assert (ws / "kits" / SERVER / "startup" / "server_context.tenseal").is_file()
    assert (ws / "kits" / "site-1" / "startup" / "signature.json").is_file()
    assert run_module("provision", spec(ws, he=True))["changed"] is False
    more = run_module("provision", spec(ws, sites=("site-1", "site-2", "site-3"), he=True))
    assert more["changes"]["created"] == ["site-3"] and more["changes"]["updated"] == []
    assert cert(ws, "site-3", "client_context.tenseal") == ctx1
