"""Real startup kits for the kit tests: provisioned by NVFlare, zipped with `zip -P` as the dashboard does.

Everything here is session-scoped: provisioning two projects costs a few seconds, once.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

PIN = "Kit4Test7pin"
SERVER = "fl.example.org"
ADMIN = "admin@example.org"

NVFLARE = str(Path(sys.executable).with_name("nvflare"))


def project_yml(name: str, server: str, sites: list[str]) -> str:
    lines = [
        "api_version: 3",
        f"name: {name}",
        "participants:",
        f"  - {{name: {server}, type: server, org: org_a, fed_learn_port: 8002, admin_port: 8003}}",
    ]
    lines += [f"  - {{name: {s}, type: client, org: org_a}}" for s in sites]
    lines += [
        f"  - {{name: '{ADMIN}', type: admin, org: org_a, role: project_admin}}",
        "builders:",
        "  - path: nvflare.lighter.impl.workspace.WorkspaceBuilder",
        "  - path: nvflare.lighter.impl.static_file.StaticFileBuilder",
        "    args: {config_folder: config, scheme: grpc}",
        "  - path: nvflare.lighter.impl.cert.CertBuilder",
        "  - path: nvflare.lighter.impl.signature.SignatureBuilder",
    ]
    return "\n".join(lines) + "\n"


def nvflare_provision(workdir: Path, name: str, sites: list[str]) -> Path:
    """Run `nvflare provision` as a user would; return the prod_00 folder."""
    workdir.mkdir(parents=True)
    (workdir / "project.yml").write_text(project_yml(name, SERVER, sites))
    subprocess.run(
        [NVFLARE, "provision", "-p", "project.yml", "-w", "ws", "--force"],
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return workdir / "ws" / name / "prod_00"


def dashboard_zip(kit_dir: Path, out: Path, pin: str | None = PIN) -> Path:
    """Zip a kit exactly as the NVFlare 2.9 dashboard does: `zip -rq -P PIN tmp.zip .` inside the kit."""
    work = out.parent / (out.name + ".d")
    shutil.copytree(kit_dir, work, symlinks=True)
    cmd = ["zip", "-rqy"] + (["-P", pin] if pin else []) + ["tmp.zip", "."]
    subprocess.run(cmd, cwd=work, check=True)
    shutil.move(str(work / "tmp.zip"), out)
    shutil.rmtree(work)
    return out


def folder_zip(prod_dir: Path, participant: str, out: Path, pin: str = PIN) -> Path:
    """A zip that holds the participant folder itself (older dashboards, hand-made zips)."""
    subprocess.run(["zip", "-rq", "-P", pin, str(out), participant], cwd=prod_dir, check=True)
    return out


def crafted_zip(out: Path, kit_dir: Path, extra: list[tuple[str, bytes, int]]) -> Path:
    """A plain zip of KIT_DIR plus hand-made entries (name, data, unix mode with file type)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(kit_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(kit_dir).as_posix())
        for name, data, mode in extra:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return out


def resign(kit_dir: Path, cert_json: Path, not_before, not_after) -> None:
    """Give KIT_DIR's participant a certificate with the given validity, signed by the real root key."""
    state = json.loads(cert_json.read_text())
    root_key = serialization.load_pem_private_key(state["root_pri_key"].encode(), password=None)
    root = x509.load_pem_x509_certificate(state["root_cert"].encode())
    crt = kit_dir / "startup" / "client.crt"
    old = x509.load_pem_x509_certificate(crt.read_bytes())
    cert = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(root.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(root_key, hashes.SHA256())
    )
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class Kits:
    """Paths of the real kits and zips every test uses (read-only: copy before changing)."""

    pin = PIN
    server = SERVER
    admin = ADMIN

    def __init__(self, root: Path):
        self.root = root
        self.prod = nvflare_provision(root / "project_a", "project_a", ["site-1", "site-2"])
        # Another project under the same name: its CA has the same subject, only the key differs,
        # so telling the two apart takes the signature check, not a name comparison.
        self.other_prod = nvflare_provision(root / "project_b", "project_a", ["site-1"])
        self.cert_json = root / "project_a" / "ws" / "project_a" / "state" / "cert.json"
        z = root / "zips"
        z.mkdir()
        self.site1_zip = dashboard_zip(self.prod / "site-1", z / "site-1.zip")
        self.site1_zip_again = dashboard_zip(self.prod / "site-1", z / "site-1-again.zip")
        self.site1_folder_zip = folder_zip(self.prod, "site-1", z / "site-1-folder.zip")
        self.site1_plain_zip = dashboard_zip(self.prod / "site-1", z / "site-1-plain.zip", pin=None)
        self.site2_zip = dashboard_zip(self.prod / "site-2", z / "site-2.zip")
        self.server_zip = dashboard_zip(self.prod / SERVER, z / "server.zip")
        self.admin_zip = dashboard_zip(self.prod / ADMIN, z / "admin.zip")
        self.site1_dir = self.prod / "site-1"

        data = self.site1_zip.read_bytes()
        self.truncated_zip = z / "truncated.zip"
        self.truncated_zip.write_bytes(data[: len(data) // 2])
        self.corrupted_zip = z / "corrupted.zip"
        self.corrupted_zip.write_bytes(corrupt_largest_member(self.site1_zip))
        self.not_a_zip = z / "page.zip"
        self.not_a_zip.write_text("<html>Session expired</html>\n")

        self.slip_zip = crafted_zip(z / "slip.zip", self.site1_dir, [("../evil.sh", b"echo owned\n", 0o100755)])
        self.slip_nested_zip = crafted_zip(
            z / "slip-nested.zip", self.site1_dir, [("local/../../evil.sh", b"echo owned\n", 0o100644)]
        )
        self.absolute_zip = crafted_zip(z / "absolute.zip", self.site1_dir, [("/tmp/evil.sh", b"x", 0o100644)])
        self.device_zip = crafted_zip(z / "device.zip", self.site1_dir, [("startup/tty", b"", stat.S_IFCHR | 0o600)])

        link_kit = root / "link-kit"
        shutil.copytree(self.site1_dir, link_kit)
        os.symlink("/etc/shadow", link_kit / "local" / "resources.json")
        self.symlink_zip = dashboard_zip(link_kit, z / "symlink.zip")  # zip -y stores the link itself
        self.symlink_dir = link_kit

        mixed = root / "mixed-ca"
        shutil.copytree(self.site1_dir, mixed)
        shutil.copy(self.other_prod / "site-1" / "startup" / "rootCA.pem", mixed / "startup" / "rootCA.pem")
        self.other_ca_zip = dashboard_zip(mixed, z / "other-ca.zip")

        now = datetime.datetime.now(datetime.timezone.utc)
        expired = root / "expired"
        shutil.copytree(self.site1_dir, expired)
        resign(expired, self.cert_json, now - datetime.timedelta(days=400), now - datetime.timedelta(days=2))
        self.expired_zip = dashboard_zip(expired, z / "expired.zip")
        soon = root / "soon"
        shutil.copytree(self.site1_dir, soon)
        resign(soon, self.cert_json, now - datetime.timedelta(days=300), now + datetime.timedelta(days=10))
        self.expiring_zip = dashboard_zip(soon, z / "expiring.zip")

        incomplete = root / "incomplete"
        shutil.copytree(self.site1_dir, incomplete)
        (incomplete / "startup" / "client.key").unlink()
        (incomplete / "startup" / "start.sh").unlink()
        self.incomplete_zip = dashboard_zip(incomplete, z / "incomplete.zip")

        wrong_key = root / "wrong-key"
        shutil.copytree(self.site1_dir, wrong_key)
        shutil.copy(self.prod / "site-2" / "startup" / "client.key", wrong_key / "startup" / "client.key")
        self.wrong_key_zip = dashboard_zip(wrong_key, z / "wrong-key.zip")


def corrupt_largest_member(path: Path) -> bytes:
    """The zip's bytes with the middle of its largest member's data flipped."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.compress_size)
    name_len, extra_len = (
        int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"),
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little"),
    )
    start = info.header_offset + 30 + name_len + extra_len + 12
    for i in range(start + info.compress_size // 2, start + info.compress_size // 2 + 16):
        data[i] ^= 0xA5
    return bytes(data)


@pytest.fixture(scope="session")
def kits(tmp_path_factory) -> Kits:
    return Kits(tmp_path_factory.mktemp("kits"))


@pytest.fixture(scope="session")
def snapshot():
    return _snapshot


def _snapshot(path: Path) -> dict:
    """Everything about a tree that a failed run must leave alone: names, types, contents, modes, owners."""
    if not os.path.lexists(path):
        return {"<absent>": True}
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = Path(root) / name
            st = full.lstat()
            content = full.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[str(full.relative_to(path))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, content)
    st = path.lstat()
    out["."] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, None)
    return out
