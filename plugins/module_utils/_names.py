# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Name rules NVIDIA FLARE enforces on participants, checked before anything is provisioned.

This is a private module_utils file of federated.nvflare: its interface may change at any
time and it must not be used by other collections.
"""

from __future__ import annotations

import re

ORG_RE = re.compile(r"^[A-Za-z0-9_]+$")
SITE_RE = re.compile(r"^[A-Za-z0-9-_]+$")
PIN_RE = re.compile(r"^[A-Za-z0-9]+$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
ADMIN_ROLES = ("project_admin", "org_admin", "lead", "member")

RULES = {
    "org": "letters, digits and underscores only (^[A-Za-z0-9_]+$; no hyphen)",
    "site": "letters, digits, hyphens and underscores only (^[A-Za-z0-9-_]+$)",
    "admin": "an email address",
    "server": "a hostname or FQDN (labels of letters, digits and hyphens, separated by dots)",
    "pin": "letters and digits only (^[A-Za-z0-9]+$)",
    "project": "letters, digits, hyphens and underscores only (^[A-Za-z0-9_-]+$)",
    "role": "one of " + ", ".join(ADMIN_ROLES),
}


def is_hostname(value: str) -> bool:
    if not value or len(value) > 253:
        return False
    return all(HOST_LABEL_RE.match(label) for label in value.rstrip(".").split("."))


def check(kind: str, value) -> str | None:
    """Return None when VALUE is a valid name of KIND, else a message naming value and rule."""
    text = "" if value is None else str(value)
    ok = {
        "org": lambda v: bool(ORG_RE.match(v)),
        "site": lambda v: bool(SITE_RE.match(v)),
        "admin": lambda v: bool(EMAIL_RE.match(v)),
        "server": is_hostname,
        "pin": lambda v: bool(PIN_RE.match(v)),
        "project": lambda v: bool(PROJECT_RE.match(v)),
        "role": lambda v: v in ADMIN_ROLES,
    }[kind](text)
    if ok:
        return None
    if kind == "pin":
        # Never echo a secret back.
        return f"invalid PIN: it must be {RULES[kind]}"
    return f"invalid {kind} name {text!r}: it must be {RULES[kind]}"


def duplicates(names) -> list[str]:
    """Names that occur more than once, in first-seen order."""
    seen: set[str] = set()
    dups: list[str] = []
    for name in names:
        if name in seen and name not in dups:
            dups.append(name)
        seen.add(name)
    return dups
