# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Small file helpers shared by the kit modules: read a file if it is there, write one atomically,
swap a folder in with renames.

This is a private module_utils file of federated.nvflare: its interface may change at any
time and it must not be used by other collections. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile


def read_bytes(path: str) -> bytes | None:
    """The content of the regular file at PATH, or None when there is none."""
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def sha256(data: bytes | None) -> str | None:
    """Hex SHA-256 of DATA; None for None."""
    return None if data is None else hashlib.sha256(data).hexdigest()


def file_sha256(path: str) -> str | None:
    """Hex SHA-256 of the regular file at PATH, read in blocks; None when there is none."""
    if not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: str, data: bytes, mode: int) -> None:
    """Write DATA to PATH with MODE through a temporary file in the same folder and a rename:
    readers see the old file or the new one, never a half-written one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def replace_dir(new: str, dest: str, scratch: str) -> None:
    """Put folder NEW at DEST with renames. An existing DEST is first moved into SCRATCH (a folder
    on the same file system), restored if the second rename fails, and removed afterwards."""
    if not os.path.lexists(dest):
        os.rename(new, dest)
        return
    old = os.path.join(scratch, "old-" + os.path.basename(dest))
    os.rename(dest, old)
    try:
        os.rename(new, dest)
    except OSError:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
