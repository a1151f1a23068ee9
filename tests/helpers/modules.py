"""Run a module of the collection from a test: the one helper every test layer uses.

`run_module(name, args)` runs federated.nvflare.NAME in this process (fast; the default) or,
with `process=True`, in a fresh Python process the way Ansible runs it (an args file on argv),
so that a module hanging at interpreter exit fails its test instead of going unnoticed.
Check mode and diff are passed as Ansible's special arguments. The raw JSON is checked for
every secret given in SECRETS and for Ansible's no_log mask (a mask means the module tried to
return a no_log value).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".venv" / "collections"
PACKAGE = "ansible_collections.federated.nvflare.plugins.modules."


class ModuleResult(dict):
    """The JSON a module printed, plus how it ran (rc, wall seconds, stderr)."""

    rc: int = 0
    wall: float = 0.0
    stderr: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.get("failed"))


def _special_args(args: dict, check_mode: bool, diff: bool) -> dict:
    full = dict(args)
    full["_ansible_check_mode"] = check_mode
    full["_ansible_diff"] = diff
    full.setdefault("_ansible_remote_tmp", "/tmp")
    full.setdefault("_ansible_keep_remote_files", False)
    return full


def _in_process(name: str, full: dict) -> tuple[str, int]:
    mod = importlib.import_module(PACKAGE + name)
    out = io.StringIO()
    code = 0
    # Importing any controller code (a filter plugin under test) marks the process as the
    # controller, and module warnings then go to the display instead of into the result: run
    # the module as on a managed host.
    was_controller = module_utils_internal.is_controller
    module_utils_internal.is_controller = False
    try:
        with patch_module_args(full), contextlib.redirect_stdout(out):
            try:
                mod.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            else:
                raise AssertionError(f"module {name} returned without exit_json or fail_json")
    finally:
        module_utils_internal.is_controller = was_controller
    return out.getvalue(), code


def _in_subprocess(name: str, full: dict, workdir: Path | None, env: dict | None, timeout: float):
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"module-{name}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args_file = workdir / f"args-{name}-{time.monotonic_ns()}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": full}))
    run_env = dict(env if env is not None else os.environ)
    run_env["PYTHONPATH"] = str(COLLECTIONS)
    proc = subprocess.run(
        [sys.executable, "-m", PACKAGE + name, str(args_file)],
        cwd=workdir,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.stdout, proc.returncode, proc.stderr


def run_module(
    name: str,
    args: dict,
    check_mode: bool = False,
    diff: bool = False,
    secrets=(),
    process: bool = False,
    workdir: Path | None = None,
    env: dict | None = None,
    timeout: float = 300,
) -> ModuleResult:
    """Run federated.nvflare.NAME with ARGS and return its result (see the module docstring).

    PROCESS=True runs it in a fresh interpreter in WORKDIR with ENV (default: os.environ), killed
    after TIMEOUT seconds."""
    full = _special_args(args, check_mode, diff)
    started = time.monotonic()
    stderr = ""
    if process:
        stdout, code, stderr = _in_subprocess(name, full, workdir, env, timeout)
    else:
        stdout, code = _in_process(name, full)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"module {name} printed no JSON (rc {code}):\n{stdout}\n{stderr}"
    raw = lines[-1]
    for secret in secrets:
        assert secret not in raw, f"a secret leaked into the result of {name}"
    assert "********" not in raw, f"{name} put a no_log value into its result: {raw}"
    result = ModuleResult(json.loads(raw))
    result.rc = code
    result.wall = time.monotonic() - started
    result.stderr = stderr
    return result
