"""The skip policy of the suite (tests/helpers/skip_policy.py), run on small inner test files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

POLICY = Path(__file__).resolve().parents[1] / "helpers" / "skip_policy.py"

INNER = """
import pytest

def test_passes():
    pass

def test_needs_a_package():
    pytest.importorskip("no_such_package_for_the_skip_policy_test")

def test_by_design():
    pytest.skip("not applicable: checked on another host")

@pytest.mark.skipif(True, reason="moto not installed")
def test_marked_missing():
    pass

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    raise AssertionError
"""

MODULE_SKIP = """
import pytest
pytest.skip("chromium not installed", allow_module_level=True)

def test_never_collected():
    pass
"""

MODULE_BY_DESIGN = """
import pytest
pytest.skip("not applicable: another platform", allow_module_level=True)

def test_never_collected():
    pass
"""


@pytest.fixture
def inner(pytester, monkeypatch, tmp_path):
    pytester.makeconftest(
        f"""
import importlib.util
def pytest_configure(config):
    spec = importlib.util.spec_from_file_location("nvflare_skip_policy", {str(POLICY)!r})
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config.pluginmanager.register(mod, "nvflare_skip_policy")
"""
    )
    counts = tmp_path / "counts.jsonl"
    monkeypatch.setenv("NVFLARE_TEST_COUNTS", str(counts))

    def run(ci: str | None, **files):
        if ci is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", ci)
        counts.unlink(missing_ok=True)
        pytester.makepyfile(**files)
        result = pytester.runpytest_subprocess("-rA", "-p", "no:cacheprovider")
        return result, [json.loads(line) for line in counts.read_text().splitlines()]

    return run


def test_outside_ci_missing_parts_stay_skips(inner):
    result, counts = inner(None, test_inner=INNER)
    assert result.ret == 0
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    assert counts == [{"passed": 1, "failed": 0, "errors": 0, "skipped": 3, "not_applicable": 1}]
    result.stdout.fnmatch_lines(["*3 skipped (1 not applicable by design, 2 for something missing)*"])


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_a_skip_for_something_missing_fails_with_its_reason(inner, ci):
    result, counts = inner(ci, test_inner=INNER)
    assert result.ret == 1
    # A skipif mark skips in the setup phase: failing there is reported as an error.
    result.assert_outcomes(passed=1, failed=1, errors=1, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*test skipped under CI=true because something is missing: *no_such_package_for_the_skip_policy_test*",
            "*test skipped under CI=true because something is missing: moto not installed*",
        ]
    )
    assert counts == [{"passed": 1, "failed": 1, "errors": 1, "skipped": 1, "not_applicable": 1}]


def test_ci_false_is_not_ci(inner):
    result, _counts = inner("false", test_inner=INNER)
    assert result.ret == 0


def test_in_ci_a_module_that_skips_itself_fails_the_session(inner):
    result, counts = inner("true", test_passing="def test_ok():\n    pass\n", test_browser=MODULE_SKIP)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*FAILED test_browser.py: module skipped under CI=true because something is missing: chromium not installed*"]
    )
    assert counts == [{"passed": 1, "failed": 1, "errors": 0, "skipped": 0, "not_applicable": 0}]


def test_in_ci_a_module_not_applicable_by_design_stays_skipped(inner):
    result, counts = inner("true", test_passing="def test_ok():\n    pass\n", test_other=MODULE_BY_DESIGN)
    assert result.ret == 0
    assert counts == [{"passed": 1, "failed": 0, "errors": 0, "skipped": 1, "not_applicable": 1}]
