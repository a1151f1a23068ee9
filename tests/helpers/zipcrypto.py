"""Whether a PIN opens a kit zip (ZipCrypto, as the dashboard and `unzip -P` write them)."""

from __future__ import annotations

import zipfile
import zlib


def pin_refused(path, pin: str) -> bool:
    """True when PIN does not open every member of the zip at PATH.

    ZipCrypto checks a password against one byte of a member's encryption header: a wrong one
    passes that check with probability 1/256, and then fails while inflating (zlib) or on the
    member's CRC. Reading every member is what tells a wrong PIN, as unzip does.
    """
    try:
        with zipfile.ZipFile(path) as kit:
            for info in kit.infolist():
                if not info.is_dir():
                    kit.read(info, pwd=pin.encode())
    except RuntimeError as exc:
        if "Bad password" in str(exc):
            return True
        raise
    except (zlib.error, zipfile.BadZipFile):
        return True
    return False
