"""Shared by every functional test."""

from __future__ import annotations

# Modules run in-process (run_module fixtures) make ansible-core replace sys.intern with a
# wrapper object. torch._dynamo registers a polyfill for sys.intern when first imported and
# fails on anything but the builtin, so it must be imported before any module runs; tests
# that load the MONAI train script in-process would otherwise fail depending on test order.
try:
    import torch._dynamo  # noqa: F401  # pylint: disable=unused-import
except ImportError:  # the ML stack is optional for tests that do not train
    pass
