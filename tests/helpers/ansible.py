"""The environment for running ansible-playbook from a test, as scripts/lib.sh's use_venv sets it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ansible_env(folder: Path) -> dict:
    """os.environ plus this venv first on PATH, the project's collections and ansible.cfg, and
    Ansible's home and temporary files under FOLDER (so that parallel tests do not share them)."""
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ)
    env.update(
        PATH=f"{venv_bin}:{env.get('PATH', '')}",
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".venv" / "collections"),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_HOME=str(folder / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(folder / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    return env
