"""dashboard_project against the shared (never frozen) dashboard; freezing itself is in test_dashboard_flow."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

SETTINGS = dict(
    short_name="spleen_p",
    title="Spleen segmentation",
    description="Three hospitals",
    server="fl.example.org",
    fed_learn_port=8102,
    admin_port=8103,
    public=True,
)


def test_check_mode_then_apply_then_idempotent(dashboard, run_module):
    before = dashboard.project()

    check = run_module("dashboard_project", dashboard.conn(**SETTINGS), check_mode=True, diff=True)
    assert check["changed"] is True
    assert check["diff"]["after"]["server"] == "fl.example.org"
    assert dashboard.project() == before, "check mode changed the dashboard"

    applied = run_module("dashboard_project", dashboard.conn(**SETTINGS), diff=True)
    assert applied["changed"] is True
    assert applied["project"] == dict(SETTINGS, frozen=False)
    project = dashboard.project()
    assert project["short_name"] == "spleen_p"
    assert project["server1"] == "fl.example.org"
    assert project["server_props"] == {"fed_learn_port": 8102, "admin_port": 8103}
    assert project["public"] is True

    again = run_module("dashboard_project", dashboard.conn(**SETTINGS))
    assert again["changed"] is False
    again_check = run_module("dashboard_project", dashboard.conn(**SETTINGS), check_mode=True)
    assert again_check["changed"] is False


def test_one_option_changes_only_that_option(dashboard, run_module):
    run_module("dashboard_project", dashboard.conn(**SETTINGS))
    result = run_module("dashboard_project", dashboard.conn(admin_port=9103), diff=True)
    assert result["changed"] is True
    assert result["diff"]["before"]["admin_port"] == 8103
    assert result["diff"]["after"]["admin_port"] == 9103
    project = dashboard.project()
    assert project["server_props"] == {"fed_learn_port": 8102, "admin_port": 9103}
    assert project["title"] == "Spleen segmentation"
    assert run_module("dashboard_project", dashboard.conn(**SETTINGS))["changed"] is True
    assert dashboard.project()["server_props"]["admin_port"] == 8103


def test_freeze_in_check_mode_is_reported_and_not_done(dashboard, run_module):
    run_module("dashboard_project", dashboard.conn(**SETTINGS))
    result = run_module("dashboard_project", dashboard.conn(frozen=True), check_mode=True, diff=True)
    assert result["changed"] is True
    assert result["diff"]["before"]["frozen"] is False
    assert result["diff"]["after"]["frozen"] is True
    assert "irreversible" in json.dumps(result.get("warnings")), result
    assert dashboard.project()["frozen"] is False


def test_frozen_false_on_an_unfrozen_project_is_no_change(dashboard, run_module):
    assert run_module("dashboard_project", dashboard.conn(frozen=False))["changed"] is False


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(short_name="a_name_longer_than_16"), "longer than 16 characters"),
        (dict(short_name="bad name"), "invalid project name 'bad name'"),
        (dict(server="not_a_host!"), "invalid server name 'not_a_host!'"),
        (dict(fed_learn_port=70000), "fed_learn_port 70000 is not a TCP port"),
    ],
)
def test_bad_settings_fail_before_any_request(dashboard, run_module, dead_url, options, message):
    # dead_url: any request would fail with "cannot connect" instead.
    result = run_module("dashboard_project", dashboard.conn(url=dead_url, **options))
    assert result.failed
    assert message in result["msg"]
