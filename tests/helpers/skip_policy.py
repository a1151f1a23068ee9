"""pytest plugin: no silent skips in CI, and test counts for the layer table of `make test`.

Two kinds of skip exist in this suite:

* A skip by design: the check does not apply here (a per-host testinfra check that concerns
  another host). Its reason starts with ``not applicable:`` (use :func:`not_applicable`).
  It stays a skip everywhere.
* Every other skip means something is missing: a package, a binary, a cached wheel, an
  earlier test that did not run. On a developer's machine that is a skip with its reason;
  with ``CI=true`` it is a failure with the same reason, because a green run must mean that
  everything ran.

With ``NVFLARE_TEST_COUNTS`` set to a file path, one JSON line with the counts of the
session (passed, failed, errors, skipped, of which not applicable) is appended to it.

The repository's conftest.py registers this plugin for every pytest run under the
repository (unit, functional and the Molecule verifiers).
"""

from __future__ import annotations

import json
import os

import pytest

NOT_APPLICABLE = "not applicable:"


def not_applicable(reason: str) -> None:
    """Skip the current test by design: it does not apply here (stays a skip under CI)."""
    pytest.skip(f"{NOT_APPLICABLE} {reason}")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _clean(reason: str) -> str:
    return reason[len("Skipped: ") :] if reason.startswith("Skipped: ") else reason


def is_by_design(report) -> bool:
    return _clean(_skip_reason(report)).startswith(NOT_APPLICABLE)


def _fail_missing(report, what: str) -> None:
    reason = _clean(_skip_reason(report))
    report.outcome = "failed"
    report.longrepr = (
        f"{what} skipped under CI=true because something is missing: {reason}\n"
        f"(Install what it needs, or, if the check does not apply here by design, skip it with "
        f"a reason starting with '{NOT_APPLICABLE}'.)"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    # xfail is reported as a skip with `wasxfail`: that is an expected failure, not a missing part.
    if report.skipped and not hasattr(report, "wasxfail") and in_ci() and not is_by_design(report):
        _fail_missing(report, "test")


def _missing_modules(terminalreporter) -> list:
    """Modules that skipped themselves at import for something missing (CI=true only).

    They are not turned into collection errors, which would stop the whole session: the
    session fails at its end instead, and the summary names them.
    """
    if not in_ci():
        return []
    return [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if isinstance(r, pytest.CollectReport) and not is_by_design(r)
    ]


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _missing_modules(reporter) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    stats = terminalreporter.stats
    modules = _missing_modules(terminalreporter)
    for report in modules:
        terminalreporter.write_line(
            f"FAILED {report.nodeid}: module skipped under CI=true because something is missing: "
            f"{_clean(_skip_reason(report))}"
        )
    skipped = [r for r in stats.get("skipped", []) if not hasattr(r, "wasxfail") and r not in modules]
    by_design = sum(1 for r in skipped if is_by_design(r))
    counts = {
        "passed": len(stats.get("passed", [])),
        "failed": len(stats.get("failed", [])) + len(modules),
        "errors": len(stats.get("error", [])),
        "skipped": len(skipped),
        "not_applicable": by_design,
    }
    missing = len(skipped) - by_design
    terminalreporter.write_line(
        f"skip policy: {counts['skipped']} skipped ({by_design} not applicable by design, "
        f"{missing} for something missing){' — CI=true: missing parts fail' if in_ci() else ''}"
    )
    path = os.environ.get("NVFLARE_TEST_COUNTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(counts) + "\n")
