"""Loaded by every pytest run under this repository (unit, functional, Molecule verifiers).

It registers tests/helpers/skip_policy.py: with CI=true a skip for something missing fails;
skips by design say "not applicable:". The file is loaded by path because the suites run
with --import-mode=importlib, where the repository root is not on sys.path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_POLICY = Path(__file__).resolve().parent / "tests" / "helpers" / "skip_policy.py"


def pytest_configure(config):
    if config.pluginmanager.has_plugin("nvflare_skip_policy"):
        return
    spec = importlib.util.spec_from_file_location("nvflare_skip_policy", _POLICY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config.pluginmanager.register(module, "nvflare_skip_policy")
