"""A second NVFlare release for upgrade tests, made offline from the one in the wheelhouse.

Only one NVFlare release is pinned (and downloaded into the wheelhouse), so an upgrade test
rebuilds that wheel under a bumped version (2.9.0 -> 2.9.0.post1): the same code, with the new
version wherever a tool reads it - the wheel's file name, its .dist-info folder and METADATA,
and NVFlare's own _version.py (nvflare.__version__, which every participant reports to the
server). RECORD gets the new files' hashes, as a wheel installer expects.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def bumped_wheel(wheel: Path, version: str, dest: Path) -> Path:
    """Write a copy of the NVFlare WHEEL as VERSION into the folder DEST; its path."""
    match = re.match(r"nvflare-([^-]+)-(.+)\.whl$", wheel.name)
    if not match:
        raise ValueError(f"not an NVFlare wheel: {wheel}")
    old, tags = match.groups()
    target = dest / f"nvflare-{version}-{tags}.whl"
    old_info, new_info = f"nvflare-{old}.dist-info/", f"nvflare-{version}.dist-info/"
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as src:
        for name in src.namelist():
            data = src.read(name)
            new_name = new_info + name[len(old_info) :] if name.startswith(old_info) else name
            if name == old_info + "METADATA":
                data = re.sub(rb"(?m)^Version: .*$", f"Version: {version}".encode(), data, count=1)
            elif name == "nvflare/_version.py":
                data = data.replace(f'"version": "{old}"'.encode(), f'"version": "{version}"'.encode())
            files[new_name] = data
    if f'"version": "{version}"'.encode() not in files.get("nvflare/_version.py", b""):
        raise ValueError(f"nvflare/_version.py of {wheel} does not hold version {old}")
    record = new_info + "RECORD"
    files[record] = (
        "".join(f"{name},{_digest(data)},{len(data)}\n" for name, data in files.items() if name != record).encode()
        + f"{record},,\n".encode()
    )
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in files.items():
            out.writestr(name, data)
    return target
