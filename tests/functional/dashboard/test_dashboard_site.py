"""dashboard_site against the shared dashboard."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

MEMBER_PW = "SiteMemberPw3141"


@pytest.fixture(scope="module")
def member(dashboard):
    """An approved member of hospital_d (not the project admin), made through the API directly."""
    email = "member@hospital-d.example.org"
    status, _answer = dashboard.api(
        "POST", "/users", {"email": email, "password": MEMBER_PW, "organization": "hospital_d", "role": "member"}
    )
    assert status == 201
    user_id = dashboard.users()[email]["id"]
    assert dashboard.api("PATCH", f"/users/{user_id}", {"approval_state": 100}, token=dashboard.token())[0] == 200
    return dict(username=email, password=MEMBER_PW)


def test_register_check_mode_apply_idempotent_delete(dashboard, run_module):
    wanted = dict(
        name="hospital-a-gpu1", organization="hospital_a", num_of_gpus=2, mem_per_gpu_in_GiB=40, approved=True
    )

    check = run_module("dashboard_site", dashboard.conn(**wanted), check_mode=True, diff=True)
    assert check["changed"] is True
    assert check["diff"]["after"]["num_of_gpus"] == 2
    assert "hospital-a-gpu1" not in dashboard.sites()

    created = run_module("dashboard_site", dashboard.conn(**wanted))
    assert created["changed"] is True
    stored = dashboard.sites()["hospital-a-gpu1"]
    assert stored["organization"] == "hospital_a"
    assert stored["capacity"] == {"num_of_gpus": 2, "mem_per_gpu_in_GiB": 40}
    assert stored["approval_state"] == 100
    assert created["site"]["id"] == stored["id"]

    assert run_module("dashboard_site", dashboard.conn(**wanted))["changed"] is False
    assert run_module("dashboard_site", dashboard.conn(**wanted), check_mode=True)["changed"] is False

    assert run_module("dashboard_site", dashboard.conn(name="hospital-a-gpu1", state="absent"), check_mode=True)[
        "changed"
    ]
    assert "hospital-a-gpu1" in dashboard.sites()
    assert run_module("dashboard_site", dashboard.conn(name="hospital-a-gpu1", state="absent"))["changed"] is True
    assert "hospital-a-gpu1" not in dashboard.sites()
    assert run_module("dashboard_site", dashboard.conn(name="hospital-a-gpu1", state="absent"))["changed"] is False


def test_update_capacity_organization_and_approval(dashboard, run_module):
    name = "hospital-a-cpu"
    assert run_module("dashboard_site", dashboard.conn(name=name, organization="hospital_a"))["changed"] is True
    assert dashboard.sites()[name]["approval_state"] == 0
    assert "capacity" not in dashboard.sites()[name]

    result = run_module("dashboard_site", dashboard.conn(name=name, num_of_gpus=1), diff=True)
    assert result["changed"] is True
    assert result["diff"]["before"]["num_of_gpus"] is None
    assert dashboard.sites()[name]["capacity"] == {"num_of_gpus": 1}

    # A capacity option left out keeps its value; the other one is added.
    assert run_module("dashboard_site", dashboard.conn(name=name, mem_per_gpu_in_GiB=16))["changed"] is True
    assert dashboard.sites()[name]["capacity"] == {"num_of_gpus": 1, "mem_per_gpu_in_GiB": 16}

    moved = run_module("dashboard_site", dashboard.conn(name=name, organization="hospital_e", approved=True))
    assert moved["changed"] is True
    stored = dashboard.sites()[name]
    assert (stored["organization"], stored["approval_state"]) == ("hospital_e", 100)
    assert (
        run_module("dashboard_site", dashboard.conn(name=name, organization="hospital_e", approved=True))["changed"]
        is False
    )

    unapproved = run_module("dashboard_site", dashboard.conn(name=name, approved=False))
    assert unapproved["changed"] is True
    assert dashboard.sites()[name]["approval_state"] == 0


def test_register_needs_an_organization(dashboard, run_module):
    result = run_module("dashboard_site", dashboard.conn(name="orphan-site"))
    assert result.failed
    assert "organization must be set" in result["msg"]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(name="site-x", organization="hospital-a"), "invalid org name 'hospital-a'"),
        (dict(name="site x", organization="hospital_a"), "invalid site name 'site x'"),
        (dict(name="site-x", organization="hospital_a", num_of_gpus=-1), "num_of_gpus must not be negative"),
    ],
)
def test_bad_names_fail_before_any_request(dashboard, run_module, dead_url, options, message):
    result = run_module("dashboard_site", dashboard.conn(url=dead_url, **options))
    assert result.failed
    assert message in result["msg"]


def test_a_member_may_register_a_site_but_not_approve_it(dashboard, run_module, member):
    refused = run_module(
        "dashboard_site", dashboard.conn(name="hospital-d-1", organization="hospital_d", approved=True, **member)
    )
    assert refused.failed
    assert "is not the project admin" in refused["msg"]
    assert "hospital-d-1" not in dashboard.sites()

    registered = run_module("dashboard_site", dashboard.conn(name="hospital-d-1", organization="hospital_d", **member))
    assert registered["changed"] is True
    # Its creator may change its capacity...
    assert run_module("dashboard_site", dashboard.conn(name="hospital-d-1", num_of_gpus=4, **member))["changed"]
    assert dashboard.sites()["hospital-d-1"]["capacity"] == {"num_of_gpus": 4}


def test_a_member_cannot_change_a_site_it_did_not_register(dashboard, run_module, member):
    run_module("dashboard_site", dashboard.conn(name="admins-site", organization="hospital_d"))
    result = run_module("dashboard_site", dashboard.conn(name="admins-site", num_of_gpus=8, **member))
    assert result.failed
    assert "HTTP 403" in result["msg"]
    assert member["username"] in result["msg"]
    assert "capacity" not in dashboard.sites()["admins-site"]
