"""scripts/controller.sh (`make controller`): what it says when it cannot make the controller.

Run on a copy of the scripts in a temporary clone, with stand-in interpreters that behave as an
old Python and as Debian's python3 without python3-venv do; the real, successful run is the
cloud scenario's (a fresh ordinary user runs the README's `make controller`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _clone(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "scripts", clone / "scripts")
    shutil.copytree(ROOT / "requirements", clone / "requirements")
    (clone / "meta").mkdir()
    shutil.copy(ROOT / "meta" / "ee-requirements.txt", clone / "meta")
    return clone


def _fake_python(tmp_path: Path, body: str) -> Path:
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(0o755)
    return fake


def _run(clone: Path, python: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=python)
    return subprocess.run(
        ["bash", str(clone / "scripts" / "controller.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_no_python_names_what_to_install(tmp_path):
    clone = _clone(tmp_path)
    proc = _run(clone, str(tmp_path / "no-such-python3"))
    assert proc.returncode != 0
    assert "Install Python 3.11 or newer" in proc.stderr and "python3-venv" in proc.stderr
    assert not (clone / ".venv").exists()


def test_an_old_python_is_refused_before_anything_is_written(tmp_path):
    clone = _clone(tmp_path)
    fake = _fake_python(tmp_path, 'case "$2" in *print*) echo 3.9 ;; *exit*) exit 1 ;; esac\n')
    proc = _run(clone, str(fake))
    assert proc.returncode != 0
    assert "is Python 3.9; the controller needs 3.11 or newer" in proc.stderr, proc.stderr
    assert "make controller PYTHON=python3.11" in proc.stderr
    assert not (clone / ".venv").exists() and not (clone / ".cache").exists()


def test_a_python_without_venv_leaves_nothing_half_made(tmp_path):
    """Debian's python3 without python3-venv creates the folder, then fails on ensurepip."""
    clone = _clone(tmp_path)
    fake = _fake_python(
        tmp_path,
        'case "$*" in\n'
        "  *print*) echo 3.11 ;;\n"
        "  *exit*) exit 0 ;;\n"
        '  "-m venv "*) mkdir -p "$3/bin"; echo "Error: ensurepip is not available" >&2; exit 1 ;;\n'
        "esac\n",
    )
    proc = _run(clone, str(fake))
    assert proc.returncode != 0
    assert "sudo apt-get install python3-venv" in proc.stderr, proc.stderr
    assert "ensurepip is not available" in proc.stderr
    assert not (clone / ".venv").exists()
