# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""When a process started, read from /proc (Linux), for the modules that look at a participant's service.

This is a private module_utils file of federated.nvflare: its interface may change at any
time and it must not be used by other collections. Standard library only.
"""

from __future__ import annotations

import os


def boot_time() -> float:
    """When the host booted (seconds since the epoch), from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def started_at(pid) -> float | None:
    """When process PID started (seconds since the epoch), or None when it cannot be read."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
