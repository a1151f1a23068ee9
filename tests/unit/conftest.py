"""Fixtures shared by every unit test of the collection."""

from __future__ import annotations

import importlib
import json

import pytest
from ansible.module_utils.testing import patch_module_args


class ModuleResult(dict):
    """The JSON a module printed, plus whether it failed."""

    @property
    def failed(self) -> bool:
        return bool(self.get("failed"))


@pytest.fixture
def run_module(capsys):
    """Run federated.nvflare.<name> in-process with ARGS and return its JSON result.

    Check mode and diff are passed as the special arguments Ansible uses
    (`_ansible_check_mode`, `_ansible_diff`).
    """

    def _run(name: str, args: dict, check_mode: bool = False, diff: bool = False) -> ModuleResult:
        mod = importlib.import_module("ansible_collections.federated.nvflare.plugins.modules." + name)
        full = dict(args)
        full["_ansible_check_mode"] = check_mode
        full["_ansible_diff"] = diff
        full.setdefault("_ansible_remote_tmp", "/tmp")
        full.setdefault("_ansible_keep_remote_files", False)
        with patch_module_args(full):
            with pytest.raises(SystemExit):
                mod.main()
        out = capsys.readouterr().out
        return ModuleResult(json.loads(out.strip().splitlines()[-1]))

    return _run
