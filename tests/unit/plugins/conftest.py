"""Fixtures of the plugin unit tests: startup kits built from tests/unit/fixtures (no NVFlare run)."""

from __future__ import annotations

import pytest

from tests.unit.fixtures.kits import Kits
from tests.unit.fixtures.kits import snapshot as _snapshot


@pytest.fixture(scope="session")
def kits(tmp_path_factory) -> Kits:
    return Kits(tmp_path_factory.mktemp("kits"))


@pytest.fixture(scope="session")
def snapshot():
    return _snapshot
