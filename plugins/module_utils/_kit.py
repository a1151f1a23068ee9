# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Startup kits of NVIDIA FLARE: safe reading, layout rules, certificate checks, digests, zips.

This is a private module_utils file of federated.nvflare: its interface may change at any
time and it must not be used by other collections.

It runs on managed hosts (federated.nvflare.startup_kit) as well as on the controller
(federated.nvflare.provision), so it imports only the standard library and, guarded,
the ``cryptography`` package (an NVFlare dependency, present wherever NVFlare is).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import stat
import struct
import time
import traceback
import zipfile
import zlib

from ansible_collections.federated.nvflare.plugins.module_utils import _files

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import NameOID

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised only where cryptography is missing
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

KIT_TYPES = ("server", "client", "admin")

# The files without which a kit of each type cannot start (NVFlare 2.9 layout).
REQUIRED_FILES = {
    "server": (
        "startup/fed_server.json",
        "startup/rootCA.pem",
        "startup/server.crt",
        "startup/server.key",
        "startup/start.sh",
        "startup/sub_start.sh",
    ),
    "client": (
        "startup/fed_client.json",
        "startup/rootCA.pem",
        "startup/client.crt",
        "startup/client.key",
        "startup/start.sh",
        "startup/sub_start.sh",
    ),
    "admin": (
        "startup/fed_admin.json",
        "startup/rootCA.pem",
        "startup/client.crt",
        "startup/client.key",
        "startup/fl_admin.sh",
    ),
}

# The participant's own certificate and key, by kit type.
IDENTITY_FILES = {
    "server": ("startup/server.crt", "startup/server.key"),
    "client": ("startup/client.crt", "startup/client.key"),
    "admin": ("startup/client.crt", "startup/client.key"),
}

# The configuration file that tells which type a kit is.
TYPE_MARKERS = (
    ("startup/fed_server.json", "server"),
    ("startup/fed_client.json", "client"),
    ("startup/fed_admin.json", "admin"),
)

ROOT_CA = "startup/rootCA.pem"

# Bounds that no real kit comes near (a kit is tens of KiB, an HE kit a few MiB): they stop
# a zip bomb or a wrong src (a home folder) from filling memory.
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_ENTRIES = 10000

_REDO = "download the kit again"

# Files whose content is randomised on every provisioning run although nothing changed
# (NVFlare signs HE and CC kits with RSA-PSS, which is salted).
VOLATILE_BASENAMES = ("signature.json",)

# In local/, these kit files follow the kit on every apply: NVFlare's reference copies
# (resources.json.default, privacy.json.sample, ...) and the HE signature over them. Any
# other file there belongs to the host (roles template local/resources.json and friends).
LOCAL_KIT_OWNED_SUFFIXES = (".default", ".sample")

DIR_MODE = 0o755
SECRET_MODE = 0o600
EXEC_MODE = 0o755
FILE_MODE = 0o644


class KitError(Exception):
    """A kit problem, with a message fit to show the user as it is."""


def file_mode(relpath: str) -> int:
    """The mode a kit file gets: private keys and HE contexts 0600, scripts 0755, others 0644."""
    name = relpath.rsplit("/", 1)[-1]
    if name.endswith(".key") or name.endswith(".tenseal"):
        return SECRET_MODE
    if name.endswith(".sh"):
        return EXEC_MODE
    return FILE_MODE


def install_policy(relpath: str) -> str:
    """How a kit file is installed into an existing kit folder on a host.

    'replace': the file follows the kit (startup/, top-level files, NVFlare's reference
    copies in local/). 'keep': the file is installed only when the host has none, so the
    host's own settings (local/resources.json, files in transfer/) survive a re-applied kit.
    """
    parts = relpath.split("/")
    if len(parts) == 1 or parts[0] == "startup":
        return "replace"
    name = parts[-1]
    if (
        parts[0] == "local"
        and len(parts) == 2
        and (name.endswith(LOCAL_KIT_OWNED_SUFFIXES) or name in VOLATILE_BASENAMES)
    ):
        return "replace"
    return "keep"


class Kit:
    """A startup kit held in memory: relative POSIX paths to bytes, plus its folders."""

    def __init__(self, label: str, files: dict[str, bytes], dirs: set[str]):
        self.label = label
        self.files = files
        self.dirs = dirs

    @property
    def type(self) -> str | None:
        return kit_type(self.files)


def kit_type(files) -> str | None:
    for marker, ktype in TYPE_MARKERS:
        if marker in files:
            return ktype
    return None


def _parents(relpath: str) -> list[str]:
    parts = relpath.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def safe_relpath(name: str, label: str) -> str:
    """Normalise an archive member name to a relative POSIX path, or raise KitError."""
    what = f"unsafe entry {name!r} in {label}"
    todo = "refusing to extract it: use the kit as NVFlare or the dashboard produced it"
    if not name:
        raise KitError(f"{what}: empty name; {todo}")
    if "\\" in name:
        raise KitError(f"{what}: backslash in the path; {todo}")
    if "\x00" in name:
        raise KitError(f"{what}: NUL byte in the path; {todo}")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise KitError(f"{what}: absolute path; {todo}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise KitError(f"{what}: '..' leads out of the kit folder; {todo}")
    if not parts:
        raise KitError(f"{what}: empty path; {todo}")
    return "/".join(parts)


def _strip_top(paths: set[str], label: str) -> str:
    """The prefix to strip: '' for a kit whose content is at the top (startup/, local/, ...),
    'NAME/' for an archive or folder holding a single participant folder."""
    tops = {p.split("/", 1)[0] for p in paths}
    if "startup" in tops:
        return ""
    if len(tops) == 1:
        top = next(iter(tops))
        if any(p.startswith(top + "/startup/") or p == top + "/startup" for p in paths):
            return top + "/"
    raise KitError(
        f"{label} is not an NVFlare startup kit: no startup/ folder at its top or in a single participant folder"
    )


def _finish(label: str, files: dict[str, bytes], dirs: set[str]) -> Kit:
    prefix = _strip_top(set(files) | dirs, label)
    if prefix:
        files = {k[len(prefix) :]: v for k, v in files.items() if k.startswith(prefix)}
        dirs = {d[len(prefix) :] for d in dirs if d.startswith(prefix) and d != prefix[:-1]}
    for rel in files:
        dirs.update(_parents(rel))
    clash = sorted(set(files) & dirs)
    if clash:
        raise KitError(f"unsafe entry {clash[0]!r} in {label}: it is both a file and a folder")
    return Kit(label, files, dirs)


def _zip_members(infos: list, label: str) -> tuple[list, set[str]]:
    """(member, relative path) of every file entry and the folders, after every name and type
    check; raise KitError on the first unsafe entry."""
    members: list[tuple[zipfile.ZipInfo, str]] = []
    dirs: set[str] = set()
    seen: set[str] = set()
    for info in infos:
        if info.filename in ("./", "."):
            continue  # the archive's own root, as some zip tools write it
        rel = safe_relpath(info.filename, label)
        mode = (info.external_attr >> 16) if info.create_system == 3 else 0
        ftype = stat.S_IFMT(mode)
        if ftype == stat.S_IFLNK:
            raise KitError(
                f"unsafe entry {info.filename!r} in {label}: symbolic link; refusing to extract it: kits hold no links"
            )
        if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise KitError(f"unsafe entry {info.filename!r} in {label}: device or special file; refusing to extract it")
        if rel in seen:
            raise KitError(f"unsafe entry {info.filename!r} in {label}: the name occurs twice")
        seen.add(rel)
        if info.is_dir() or ftype == stat.S_IFDIR:
            dirs.add(rel)
        else:
            members.append((info, rel))
    return members, dirs


def _check_pin(zf: zipfile.ZipFile, members: list, pwd: bytes | None, label: str) -> None:
    """Raise KitError unless PWD opens every encrypted member.

    Opening a member checks the PIN against its encryption header; a wrong PIN fails this
    check for each member with probability 255/256, so checking every member before reading
    any tells a wrong PIN from a corrupted file."""
    encrypted = [info for info, _rel in members if info.flag_bits & 0x1]
    if encrypted and not pwd:
        raise KitError(f"{label} is encrypted: set pin to the PIN the kit was downloaded with")
    for info in encrypted:
        try:
            zf.open(info, pwd=pwd).close()
        except RuntimeError as e:
            if "password" in str(e).lower():
                raise KitError(f"wrong PIN for {label}: give the PIN the kit was downloaded with") from None
            raise KitError(f"{label} is corrupted ({e}): {_REDO}") from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:
            raise KitError(f"{label} is corrupted ({e}): {_REDO}") from None


def _read_members(zf: zipfile.ZipFile, members: list, pwd: bytes | None, label: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for info, rel in members:
        try:
            files[rel] = zf.read(info, pwd=pwd if info.flag_bits & 0x1 else None)
        except NotImplementedError as e:
            raise KitError(f"{label} uses a zip feature NVFlare kits do not ({e}): {_REDO}") from None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError, zlib.error) as e:
            raise KitError(f"{label} is corrupted ({rel}: {e}): {_REDO}") from None
    return files


def read_zip(path, pin: str | None = None, label: str | None = None) -> Kit:
    """Read a kit zip (plain or ZipCrypto-encrypted as the dashboard makes them) from PATH, a
    file name or a binary file object.

    Every member's name and type are checked before any content is decrypted, then the PIN
    is checked on every encrypted member, then every member is read and CRC-checked.
    """
    label = label or os.path.basename(path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise KitError(f"{label} is not a valid zip file (truncated or corrupted): {_REDO}") from None
    except (OSError, ValueError) as e:
        raise KitError(f"cannot read {label}: {e}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise KitError(f"{label} has {len(infos)} entries, more than a kit ever has ({MAX_ENTRIES})")
        if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
            raise KitError(f"{label} unpacks to more than {MAX_TOTAL_BYTES >> 20} MiB: not a startup kit")
        members, dirs = _zip_members(infos, label)
        pwd = pin.encode("utf-8") if pin else None
        _check_pin(zf, members, pwd, label)
        files = _read_members(zf, members, pwd, label)
    return _finish(label, files, dirs)


def read_zip_bytes(data: bytes, pin: str | None, label: str) -> Kit:
    """read_zip for a zip held in memory (a download)."""
    return read_zip(io.BytesIO(data), pin, label)


def _walk_folder(path: str, label: str) -> tuple[dict[str, bytes], set[str]]:
    """(files, folders) under PATH: only regular files and folders, no links, no special files."""
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    total = 0
    for root, dnames, fnames in os.walk(path):
        rel_root = os.path.relpath(root, path)
        rel_root = "" if rel_root == "." else rel_root.replace(os.sep, "/")
        for name in sorted(dnames + fnames):
            full = os.path.join(root, name)
            rel = rel_root + "/" + name if rel_root else name
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                raise KitError(
                    f"unsafe entry {rel!r} in {label}: symbolic link; kits hold no links: copy the kit without them"
                )
            if stat.S_ISDIR(st.st_mode):
                dirs.add(rel)
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                if total > MAX_TOTAL_BYTES or len(files) >= MAX_ENTRIES:
                    raise KitError(f"{label} holds more than a kit ever does: is src the right folder?")
                with open(full, "rb") as f:
                    files[rel] = f.read()
            else:
                raise KitError(f"unsafe entry {rel!r} in {label}: device or special file")
    return files, dirs


def read_folder(path: str, label: str | None = None) -> Kit:
    """Read a kit folder: only regular files and folders, no links, no special files."""
    label = label or path
    return _finish(label, *_walk_folder(path, label))


def load_kit(src: str, pin: str | None = None) -> Kit:
    """Read the kit at SRC on this host: a zip file or a folder."""
    label = src
    if os.path.isdir(src):
        return read_folder(src, label)
    if not os.path.exists(src):
        raise KitError(f"src {src} does not exist on this host: copy the kit there first")
    return read_zip(src, pin, label)


def check_layout(kit: Kit, expected: str) -> None:
    """Raise KitError unless KIT is a complete kit of type EXPECTED."""
    actual = kit.type
    if actual and actual != expected:
        raise KitError(
            f"{kit.label} holds a {actual} kit, not a {expected} kit: set type: {actual} or use the {expected}'s kit"
        )
    missing = [f for f in REQUIRED_FILES[expected] if f not in kit.files]
    if missing:
        raise KitError(
            "{} is not a complete {} kit: {} missing; download or provision the kit again".format(
                kit.label, expected, ", ".join(missing)
            )
        )


def digest(files) -> str:
    """SHA-256 over the kit's paths and contents: independent of zip timestamps, modes,
    compression, encryption and of whether it came as a zip or a folder."""
    h = hashlib.sha256(b"federated.nvflare kit v1\n")
    for rel in sorted(files):
        h.update(rel.encode("utf-8") + b"\0" + hashlib.sha256(files[rel]).digest())
    return h.hexdigest()


def _utc(dt: datetime.datetime) -> datetime.datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=datetime.timezone.utc)


def not_valid_after(cert) -> datetime.datetime:
    return _utc(getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after)


def not_valid_before(cert) -> datetime.datetime:
    return _utc(getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before)


def name_attr(name, oid) -> str | None:
    """The first value of attribute OID (a NameOID) in the x509 NAME, or None."""
    values = name.get_attributes_for_oid(oid)
    return values[0].value if values else None


def cert_sha256(cert) -> str:
    """Lower-case hex SHA-256 fingerprint of a certificate (of its DER encoding)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def load_cert(pem: bytes, what: str):
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise KitError(f"{what} is not a PEM certificate ({e}): download or provision the kit again") from None


def pem_sha256(pem: bytes, what: str = "certificate") -> str:
    return cert_sha256(load_cert(pem, what))


def issued_by(cert, ca) -> bool:
    """Whether CA's key signed CERT (and CERT names CA as issuer)."""
    if cert.issuer != ca.subject:
        return False
    try:
        if hasattr(cert, "verify_directly_issued_by"):
            cert.verify_directly_issued_by(ca)
            return True
        # cryptography < 40: check the signature by hand.
        pub = ca.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
        return True
    except Exception:  # InvalidSignature, ValueError, TypeError: all mean "not issued by CA"
        return False


def _public_bytes(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def verify_identity(kit: Kit, ktype: str, participant: str, now: datetime.datetime | None = None) -> dict:
    """Check the participant certificate of KIT: CN, chain to the kit's rootCA.pem, key pair,
    validity. Return facts about it; raise KitError on the first problem."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    crt_name, key_name = IDENTITY_FILES[ktype]
    ca = load_cert(kit.files[ROOT_CA], f"{ROOT_CA} in {kit.label}")
    cert = load_cert(kit.files[crt_name], f"{crt_name} in {kit.label}")
    cn = name_attr(cert.subject, NameOID.COMMON_NAME)
    if cn != participant:
        raise KitError(
            f"{kit.label} is the kit of {cn}, not of {participant}: use {participant}'s kit or set participant: {cn}"
        )
    if not issued_by(cert, ca):
        raise KitError(
            f"{crt_name} in {kit.label} is not signed by the kit's {ROOT_CA} "
            "(another project's CA, or a tampered kit): download or provision the kit again"
        )
    try:
        key = serialization.load_pem_private_key(kit.files[key_name], password=None)
    except (ValueError, TypeError) as e:
        raise KitError(f"{key_name} in {kit.label} is not an unencrypted PEM private key ({e})") from None
    if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
        raise KitError(f"{key_name} in {kit.label} does not belong to {crt_name}: download or provision the kit again")
    after = not_valid_after(cert)
    if after <= now:
        raise KitError(
            f"certificate of {participant} in {kit.label} expired on {after.isoformat()}: "
            "provision or download a new kit"
        )
    return {
        "participant": cn,
        "org": name_attr(cert.subject, NameOID.ORGANIZATION_NAME),
        "role": name_attr(cert.subject, NameOID.UNSTRUCTURED_NAME) if ktype == "admin" else None,
        "not_before": not_valid_before(cert),
        "not_after": after,
        "days_left": int((after - now).total_seconds() // 86400),
        "root_ca_sha256": cert_sha256(ca),
    }


def cert_identity(pem: bytes) -> tuple[bytes, bytes, bytes, datetime.datetime]:
    """(issuer, subject, subjectAltName, not_after) of a PEM certificate; the first three as DER.

    Two certificates with equal issuer, subject and SAN name the same participant under the same
    CA, whatever their keys and validity dates. Raises ValueError when PEM is no certificate.
    """
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.public_bytes()
    except x509.ExtensionNotFound:
        san = b""
    return cert.issuer.public_bytes(), cert.subject.public_bytes(), san, not_valid_after(cert)


def _entry_fingerprint(name: str, content: bytes, now: datetime.datetime) -> str:
    if name.endswith(".key"):
        return "private key"
    if name.endswith(".crt"):
        try:
            issuer, subject, san, after = cert_identity(content)
        except ValueError:
            pass
        else:
            identity = hashlib.sha256(issuer + subject + san).hexdigest()
            return "certificate:" + identity + (" (expired)" if after <= now else "")
    return "sha256:" + hashlib.sha256(content).hexdigest()


def fingerprint(kit: Kit, now: datetime.datetime | None = None) -> dict[str, str]:
    """Entry name -> what must stay equal for two copies of one kit to count as the same, for kits
    whose every copy carries a new key and certificate (the dashboard makes them on each download).

    Private keys count by presence only, participant certificates by identity (issuer, subject,
    SAN) and expiry, every other file byte for byte. Empty folders count as 'NAME/': 'dir'.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    result = {rel: _entry_fingerprint(rel, data, now) for rel, data in kit.files.items()}
    parents = {p for rel in kit.files for p in _parents(rel)}
    result.update({d + "/": "dir" for d in kit.dirs - parents})
    return result


def kit_fingerprint(data: bytes, pin: str) -> dict | None:
    """fingerprint() of the kit zip DATA opened with PIN; None when DATA is no kit zip PIN opens."""
    try:
        return fingerprint(read_zip_bytes(data, pin, "kit"))
    except KitError:
        return None


# Folders of an installed kit that decide how its participant runs. Everything else in the kit
# folder is the participant's own (logs, job folders, transfer/) or reference text (readme.txt).
KIT_DIGEST_FOLDERS = ("startup", "local")


def kit_digest(path: str) -> str:
    """SHA-256 of the installed kit folder PATH, the same whenever the participant would run the same.

    It covers the path and content of every file under startup/ (configuration, certificates,
    keys, scripts) and local/ (resources.json and the other host settings, NVFlare's reference
    copies), in the format of digest(): a new kit, another certificate or key, and a changed
    local/resources.json each change it. Modes, owners, timestamps and everything outside those
    two folders (logs, job folders, transfer/) do not. Raises KitError when PATH holds no
    startup/ folder or holds a link or special file there.
    """
    if not os.path.isdir(os.path.join(path, "startup")):
        raise KitError(f"{path} holds no installed startup kit (no startup/ folder): install the kit first")
    files: dict[str, bytes] = {}
    for top in KIT_DIGEST_FOLDERS:
        folder = os.path.join(path, top)
        if not os.path.isdir(folder):
            continue
        found, _dirs = _walk_folder(folder, path)
        files.update({f"{top}/{rel}": data for rel, data in found.items()})
    return digest(files)


def list_dirs(path: str) -> set[str]:
    """Folders under PATH (relative POSIX paths), links not followed."""
    out: set[str] = set()
    for root, dnames, _fnames in os.walk(path):
        for name in dnames:
            out.add(os.path.relpath(os.path.join(root, name), path).replace(os.sep, "/"))
    return out


def read_tree(path: str) -> dict[str, tuple[bytes, int]]:
    """Files under PATH (no links followed): relative POSIX path -> (content, permission bits)."""
    out: dict[str, tuple[bytes, int]] = {}
    for root, _dnames, fnames in os.walk(path):
        for name in fnames:
            full = os.path.join(root, name)
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            with open(full, "rb") as f:
                out[rel] = (f.read(), stat.S_IMODE(st.st_mode))
    return out


def tree_digest(tree: dict) -> str:
    """SHA-256 over a tree from read_tree: paths, modes and contents."""
    h = hashlib.sha256(b"federated.nvflare tree v1\n")
    for rel in sorted(tree):
        data, mode = tree[rel]
        h.update(f"{rel}\0{mode:o}\0".encode() + hashlib.sha256(data).digest())
    return h.hexdigest()


def zip_pin_ok(path: str, pin: str) -> bool:
    """Whether PIN passes the encryption-header check of every encrypted member of the zip at PATH
    (a wrong PIN passes one member's check with probability 1/256, all of a kit's about never).
    Cheap: nothing is decompressed."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [i for i in zf.infolist() if i.flag_bits & 0x1]
            if not members:
                return False
            for info in members:
                zf.open(info, pwd=pin.encode("utf-8")).close()
    except (RuntimeError, zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False
    return True


def same_kit(a: dict, b: dict) -> bool:
    """Whether two kit trees (from read_tree) hold the same files, ignoring volatile signatures
    when both have them."""

    def strip(tree):
        return {k: v for k, v in tree.items() if k.rsplit("/", 1)[-1] not in VOLATILE_BASENAMES}

    if set(a) != set(b):
        return False
    return strip(a) == strip(b)


# ZipCrypto ("traditional PKWARE encryption"), the format `zip -P` writes and the dashboard
# serves. Python's zipfile reads it but cannot write it, and handing the PIN to `zip -P` would
# put it on a command line, where other local users could read it: so it is written here.
_CRC_TABLE: list[int] = []


def _crc_table() -> list[int]:
    if not _CRC_TABLE:
        for n in range(256):
            c = n
            for _bit in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            _CRC_TABLE.append(c)
    return _CRC_TABLE


def _zipcrypto(pwd: bytes, data: bytes) -> bytes:
    table = _crc_table()
    keys = [305419896, 591751049, 878082192]

    def update(c: int) -> None:
        keys[0] = (keys[0] >> 8) ^ table[(keys[0] ^ c) & 0xFF]
        keys[1] = (((keys[1] + (keys[0] & 0xFF)) & 0xFFFFFFFF) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = (keys[2] >> 8) ^ table[(keys[2] ^ (keys[1] >> 24)) & 0xFF]

    for c in pwd:
        update(c)
    out = bytearray(len(data))
    for i, p in enumerate(data):
        t = (keys[2] | 2) & 0xFFFF
        out[i] = p ^ (((t * (t ^ 1)) >> 8) & 0xFF)
        update(p)
    return bytes(out)


def _dos_time(ts: float) -> tuple[int, int]:
    t = time.localtime(ts)
    year = max(t.tm_year, 1980)
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday


def _zip_entry(name: str, data: bytes | None, mode: int, pwd: bytes | None) -> tuple:
    """(flags, method, crc, payload, size, external attributes) of one entry; DATA None is a folder."""
    flags = 0x800 if any(b > 0x7F for b in name.encode("utf-8")) else 0
    if data is None:
        return flags, zipfile.ZIP_STORED, 0, b"", 0, ((stat.S_IFDIR | mode) << 16) | 0x10
    crc = zlib.crc32(data) & 0xFFFFFFFF
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    payload = comp.compress(data) + comp.flush()
    if pwd:
        flags |= 0x1
        # 11 random bytes and the CRC's high byte: the reader's PIN check.
        payload = _zipcrypto(pwd, os.urandom(11) + bytes([crc >> 24]) + payload)
    return flags, zipfile.ZIP_DEFLATED, crc, payload, len(data), (stat.S_IFREG | mode) << 16


def zip_bytes(files: dict[str, tuple[bytes, int]], pin: str | None, dirs=()) -> bytes:
    """A zip of FILES (relative path -> (content, mode)) laid out as the dashboard's kits are
    (content at the top, one entry per folder), ZipCrypto-encrypted with PIN when given."""
    pwd = pin.encode("utf-8") if pin else None
    dirs = sorted(set(dirs) | {d for rel in files for d in _parents(rel)})
    entries = [(d + "/", None, DIR_MODE) for d in dirs] + [(rel, *files[rel]) for rel in sorted(files)]
    dostime, dosdate = _dos_time(time.time())
    local = bytearray()
    central = bytearray()
    for name, data, mode in entries:
        raw_name = name.encode("utf-8")
        flags, method, crc, payload, size, attr = _zip_entry(name, data, mode, pwd)
        offset = len(local)
        if offset > 0xFFFFFFFF or len(payload) > 0xFFFFFFFF:
            raise KitError("kit too large for a zip without ZIP64")
        # Fields the local header and the central directory share, in their common order.
        common = (flags, method, dostime, dosdate, crc, len(payload), size, len(raw_name), 0)
        local += struct.pack(zipfile.structFileHeader, zipfile.stringFileHeader, 20, 0, *common)
        local += raw_name + payload
        tail = (0, 0, 0, attr, offset)
        central += struct.pack(zipfile.structCentralDir, zipfile.stringCentralDir, 30, 3, 20, 0, *common, *tail)
        central += raw_name
    count = len(entries)
    end = (zipfile.stringEndArchive, 0, 0, count, count, len(central), len(local), 0)
    return bytes(local + central + struct.pack(zipfile.structEndArchive, *end))


def source_digest(path: str) -> str | None:
    """What a kit source at PATH holds, to tell whether a copy of it is the same: "sha256:HEX" of
    a zip (or any file), "tree:HEX" (tree_digest: paths, modes, contents) of a folder; None when
    PATH does not exist. The controller's source and the host's staged copy digest alike."""
    if os.path.isdir(path):
        return "tree:" + tree_digest(read_tree(path))
    sha = _files.file_sha256(path)
    return None if sha is None else "sha256:" + sha
