"""Fixtures shared by every unit test of the collection."""

from __future__ import annotations

import pytest

from tests.helpers.modules import run_module as _run_module


@pytest.fixture
def run_module():
    """federated.nvflare.<name> run in-process with ARGS (tests/helpers/modules.py)."""
    return _run_module
