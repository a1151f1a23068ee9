# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Python virtualenvs filled with pip: the quick look at pinned packages, the lock, the install.

This is a private module_utils file of federated.nvflare: its interface may change at any
time and it must not be used by other collections.

It runs on managed hosts with their own Python (federated.nvflare.python_venv), so it imports
only the standard library. Commands run through a RUN callable, ``run(argv, env) -> (rc, out,
err)`` (the module passes AnsibleModule.run_command), so that nothing here fails the task:
problems are raised as VenvError.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil

# A plain pin, "name==version" (a local label such as +cpu allowed): the only kind of
# requirement whose presence can be decided without pip.
PIN_RE = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.!+_-]+)\s*")
# The project name at the start of any other requirement ("monai>=1.6", "certbot[docs]").
NAME_RE = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:[<>=!~;@(]|$)")

WHEELHOUSE_HINT = (
    "build one with 'make wheelhouse' on the controller and copy it to the host "
    "(the roles' *_wheelhouse_src variables do), or place the wheels there"
)

# Run by the virtualenv's own interpreter: the installed version of each name, null if none.
VERSIONS_SCRIPT = """
import json, sys
from importlib import metadata
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
print(json.dumps({name: version(name) for name in sys.argv[1:]}))
"""

PIP_ENV = {"PIP_NO_CACHE_DIR": "1"}
TAIL_LINES = 12


class VenvError(Exception):
    """A virtualenv could not be read, created or filled; the message says what to do."""


def normalize(name: str) -> str:
    """A project name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pin(spec: str) -> tuple[str, str] | None:
    """(name, version) of a plain pin "name==version"; None for any other requirement."""
    m = PIN_RE.fullmatch(spec)
    return (m.group(1), m.group(2)) if m else None


def requirement_name(spec: str) -> str | None:
    """The project a requirement names ("name @ URL" included); None for a bare URL or path."""
    if spec.lstrip().startswith((".", "/", "-")):
        return None
    m = NAME_RE.match(spec)
    return m.group(1) if m else None


def version_matches(have: str | None, want: str) -> bool:
    """Whether version HAVE satisfies the pin WANT as pip sees it: 2.13.0+cpu satisfies
    ==2.13.0, but ==2.13.0+cu121 wants exactly that local build."""
    if have is None:
        return False
    return have == want or ("+" not in want and have.split("+")[0] == want)


def unmet(requirements: list[str], versions: dict) -> list[str] | None:
    """The requirements not yet satisfied: a list of messages ([] when every requirement is a
    plain pin installed at its version), or None when some requirement is not a plain pin
    (only pip can tell then)."""
    missing = []
    for spec in requirements:
        pin = parse_pin(spec)
        if pin is None:
            return None
        name, want = pin
        have = versions.get(name)
        if have is None:
            missing.append(f"missing: {name}")
        elif not version_matches(have, want):
            missing.append(f"{name}: {have} installed, {want} wanted")
    return missing


def names_to_install(requirements: list[str], versions: dict) -> list[str]:
    """Projects that pip must find: pins not met and other requirements not installed."""
    names = []
    for spec in requirements:
        name = requirement_name(spec)
        if name is None:
            continue
        pin = parse_pin(spec)
        have = versions.get(name)
        if (pin and not version_matches(have, pin[1])) or (not pin and have is None):
            names.append(name)
    return names


def wheelhouse_lacks(wheelhouse: str, names: list[str]) -> list[str]:
    """The NAMES that have no wheel (or source archive) in the folder WHEELHOUSE."""
    if not os.path.isdir(wheelhouse):
        raise VenvError(f"wheelhouse {wheelhouse} is not a folder on this host: {WHEELHOUSE_HINT}")
    present = set()
    for entry in os.listdir(wheelhouse):
        if entry.endswith(".whl"):
            present.add(normalize(entry.split("-")[0]))
        elif entry.endswith((".tar.gz", ".zip")):
            present.add(normalize(entry.rsplit("-", 1)[0]))
    return [name for name in names if normalize(name) not in present]


def parse_pip_list(output: str, marker: str) -> list[str]:
    """The "name==version" items of pip's "Successfully installed a-1 b-2" (or "Would install")
    line in OUTPUT."""
    for line in output.splitlines():
        if line.startswith(marker):
            items = line[len(marker) :].split()
            return [("==".join(item.rsplit("-", 1)) if "-" in item else item) for item in items]
    return []


def tail(*texts: str) -> str:
    """The last lines of a command's output, for an error message."""
    lines = [line for text in texts for line in (text or "").splitlines() if line.strip()]
    return "\n".join(lines[-TAIL_LINES:])


@contextlib.contextmanager
def locked(folder: str):
    """Hold an exclusive flock on FOLDER (the virtualenv's parent) for the duration: hosts that
    share a machine and a virtualenv install one after the other. Compatible with flock(1) on
    the same folder."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class VirtualEnv:
    """A virtualenv at PATH, read and changed through RUN (see the module docstring)."""

    def __init__(self, path: str, run):
        self.path = path
        self.python = os.path.join(path, "bin", "python")
        self.run = run

    @property
    def exists(self) -> bool:
        return os.access(self.python, os.X_OK)

    def versions(self, names: list[str]) -> dict:
        """Installed version of each of NAMES (None when missing); all None without a venv."""
        if not self.exists:
            return dict.fromkeys(names)
        rc, out, err = self.run([self.python, "-I", "-c", VERSIONS_SCRIPT, *names], None)
        try:
            found = json.loads(out.strip().splitlines()[-1]) if rc == 0 else None
        except (ValueError, IndexError):
            found = None
        if not isinstance(found, dict):
            raise VenvError(f"cannot read the packages of virtualenv {self.path} (rc {rc}): {tail(out, err)}")
        return {name: found.get(name) for name in names}

    def create(self, interpreter: str, system_site_packages: bool) -> None:
        """Create the virtualenv with INTERPRETER; a half-made one is removed on failure."""
        fresh = not os.path.lexists(self.path)
        argv = [interpreter, "-m", "venv"] + (["--system-site-packages"] if system_site_packages else [])
        try:
            rc, out, err = self.run(argv + [self.path], None)
        except OSError as e:
            rc, out, err = 127, "", str(e)
        if rc != 0 or not self.exists:
            if fresh and os.path.isdir(self.path):
                shutil.rmtree(self.path, ignore_errors=True)
            raise VenvError(
                f"cannot create virtualenv {self.path} with {interpreter} (rc {rc}): {tail(out, err)}\n"
                "Install the interpreter and its venv module (python3-venv on Debian and Ubuntu)."
            )

    def pip_install(self, source_args: list[str], requirements: list[str], dry_run: bool) -> list[str]:
        """Run pip install; return what it installed (or, with DRY_RUN, would install)."""
        argv = [self.python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        argv += (["--dry-run"] if dry_run else []) + source_args + requirements
        rc, out, err = self.run(argv, PIP_ENV)
        if rc != 0:
            raise VenvError(f"pip install into {self.path} failed (rc {rc}):\n{tail(out, err)}")
        marker = "Would install " if dry_run else "Successfully installed "
        return parse_pip_list(out, marker)
