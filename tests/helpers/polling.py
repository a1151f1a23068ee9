"""Waiting for a service to come back, as the functional tests and the Molecule verifiers do."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 3.0) -> bool:
    """Call PREDICATE every STEP seconds until it is true (True) or TIMEOUT seconds passed (False).

    An exception counts as not yet: the service being waited for is coming back.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(step)
    return False
