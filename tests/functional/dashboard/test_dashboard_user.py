"""dashboard_user against the shared dashboard."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

LEAD_PW = "LeadUserPw9137"
NEW_PW = "ChangedUserPw2468"
ORG_ADMIN_PW = "OrgAdminPw5521"
PENDING_PW = "PendingPw7788"
SECRETS = [LEAD_PW, NEW_PW, ORG_ADMIN_PW, PENDING_PW]


def user_args(dashboard, email, **options):
    return dashboard.conn(email=email, **options)


@pytest.fixture(scope="module")
def org_admin(dashboard):
    """An approved org_admin of hospital_b (a non-admin account), made through the API directly."""
    email = "orgadmin@hospital-b.example.org"
    status, _answer = dashboard.api(
        "POST",
        "/users",
        {"email": email, "password": ORG_ADMIN_PW, "organization": "hospital_b", "role": "org_admin"},
    )
    assert status == 201
    user_id = dashboard.users()[email]["id"]
    status, _answer = dashboard.api("PATCH", f"/users/{user_id}", {"approval_state": 100}, token=dashboard.token())
    assert status == 200
    return dict(username=email, password=ORG_ADMIN_PW)


def test_create_check_mode_apply_idempotent_delete(dashboard, run_module):
    email = "lead@hospital-a.example.org"
    wanted = dict(name="Lead A", user_password=LEAD_PW, organization="hospital_a", role="lead", approved=True)

    check = run_module("dashboard_user", user_args(dashboard, email, **wanted), check_mode=True, secrets=SECRETS)
    assert check["changed"] is True
    assert email not in dashboard.users()

    created = run_module("dashboard_user", user_args(dashboard, email, **wanted), diff=True, secrets=SECRETS)
    assert created["changed"] is True
    assert created["diff"]["before"] == {}
    stored = dashboard.users()[email]
    assert (stored["name"], stored["organization"], stored["role"]) == ("Lead A", "hospital_a", "lead")
    assert stored["approval_state"] >= 100
    assert created["user"]["id"] == stored["id"]
    dashboard.token(email, LEAD_PW)  # the password works

    again = run_module("dashboard_user", user_args(dashboard, email, **wanted), secrets=SECRETS)
    assert again["changed"] is False
    assert again["password_updated"] is False
    assert run_module("dashboard_user", user_args(dashboard, email, **wanted), check_mode=True)["changed"] is False

    deleted_check = run_module("dashboard_user", user_args(dashboard, email, state="absent"), check_mode=True)
    assert deleted_check["changed"] is True
    assert email in dashboard.users()
    deleted = run_module("dashboard_user", user_args(dashboard, email, state="absent"))
    assert deleted["changed"] is True
    assert email not in dashboard.users()
    assert run_module("dashboard_user", user_args(dashboard, email, state="absent"))["changed"] is False


def test_update_role_name_approval_and_password(dashboard, run_module):
    email = "member@hospital-a.example.org"
    base = dict(user_password=LEAD_PW, organization="hospital_a", role="member")

    def args(**overrides):
        return user_args(dashboard, email, **{**base, **overrides})

    assert run_module("dashboard_user", args(), secrets=SECRETS)["changed"] is True
    assert dashboard.users()[email]["approval_state"] == 0

    result = run_module(
        "dashboard_user",
        args(role="lead", name="Now a lead", approved=True),
        diff=True,
        secrets=SECRETS,
    )
    assert result["changed"] is True
    assert result["password_updated"] is False
    assert result["diff"]["before"]["role"] == "member"
    assert result["diff"]["after"]["role"] == "lead"
    stored = dashboard.users()[email]
    assert (stored["role"], stored["name"], stored["approval_state"]) == ("lead", "Now a lead", 100)

    check = run_module("dashboard_user", args(user_password=NEW_PW), check_mode=True)
    assert (check["changed"], check["password_updated"]) == (True, True)
    dashboard.token(email, LEAD_PW)  # check mode left the old password

    changed = run_module("dashboard_user", args(user_password=NEW_PW))
    assert (changed["changed"], changed["password_updated"]) == (True, True)
    dashboard.token(email, NEW_PW)
    again = run_module("dashboard_user", args(user_password=NEW_PW))
    assert again["changed"] is False

    on_create = run_module(
        "dashboard_user", user_args(dashboard, email, user_password=LEAD_PW, update_password="on_create")
    )
    assert on_create["changed"] is False
    dashboard.token(email, NEW_PW)

    unapproved = run_module("dashboard_user", user_args(dashboard, email, approved=False))
    assert unapproved["changed"] is True
    assert dashboard.users()[email]["approval_state"] == 0


def test_create_needs_password_organization_and_role(dashboard, run_module):
    result = run_module("dashboard_user", user_args(dashboard, "nobody@example.org", organization="hospital_a"))
    assert result.failed
    assert "user_password, role must be set to create a user" in result["msg"]


def test_project_admin_cannot_be_created(dashboard, run_module):
    result = run_module(
        "dashboard_user",
        user_args(dashboard, "boss@example.org", user_password=LEAD_PW, organization="x", role="project_admin"),
        secrets=SECRETS,
    )
    assert result.failed
    assert "only creates the project admin it is seeded with" in result["msg"]
    assert "boss@example.org" not in dashboard.users()


def test_hyphenated_organization_is_rejected_before_any_request(dashboard, run_module, dead_url):
    result = run_module(
        "dashboard_user",
        user_args(
            dashboard, "x@example.org", url=dead_url, user_password=LEAD_PW, organization="hospital-a", role="lead"
        ),
        secrets=SECRETS,
    )
    assert result.failed
    assert "invalid org name 'hospital-a'" in result["msg"]
    assert "no hyphen" in result["msg"]


def test_bad_email_is_rejected_before_any_request(dashboard, run_module, dead_url):
    result = run_module("dashboard_user", user_args(dashboard, "not an email", url=dead_url))
    assert result.failed
    assert "invalid admin name 'not an email'" in result["msg"]


def test_cannot_delete_the_account_logged_in(dashboard, run_module):
    result = run_module("dashboard_user", user_args(dashboard, dashboard.conn()["username"], state="absent"))
    assert result.failed
    assert "logged in as it" in result["msg"]


def test_non_admin_gets_403_message(dashboard, run_module, org_admin):
    # hospital_b's org_admin may list its own organization, but not change another user.
    other = "colleague@hospital-b.example.org"
    run_module(
        "dashboard_user", user_args(dashboard, other, user_password=LEAD_PW, organization="hospital_b", role="member")
    )
    result = run_module("dashboard_user", dashboard.conn(email=other, name="Renamed", **org_admin), secrets=SECRETS)
    assert result.failed
    assert "HTTP 403" in result["msg"]
    assert "not allowed" in result["msg"]
    assert org_admin["username"] in result["msg"]
    assert dashboard.users()[other]["name"] == ""


def test_non_admin_cannot_approve(dashboard, run_module, org_admin):
    other = "second@hospital-b.example.org"
    run_module(
        "dashboard_user", user_args(dashboard, other, user_password=LEAD_PW, organization="hospital_b", role="member")
    )
    result = run_module("dashboard_user", dashboard.conn(email=other, approved=True, **org_admin), secrets=SECRETS)
    assert result.failed
    assert "only the project admin may" in result["msg"]
    assert dashboard.users()[other]["approval_state"] == 0


def test_duplicate_email_in_an_organization_the_account_cannot_see_is_a_409(dashboard, run_module, org_admin):
    # The user lives in hospital_c; hospital_b's org_admin does not see it and tries to create it.
    email = "dup@hospital-c.example.org"
    run_module(
        "dashboard_user", user_args(dashboard, email, user_password=LEAD_PW, organization="hospital_c", role="lead")
    )
    result = run_module(
        "dashboard_user",
        dashboard.conn(email=email, user_password=LEAD_PW, organization="hospital_b", role="member", **org_admin),
        secrets=SECRETS,
    )
    assert result.failed
    assert "HTTP 409" in result["msg"]
    assert "log in as the project admin" in result["msg"]
    assert dashboard.users()[email]["organization"] == "hospital_c"


def test_unapproved_account_is_told_to_get_approved(dashboard, run_module):
    email = "pending@hospital-a.example.org"
    run_module(
        "dashboard_user", user_args(dashboard, email, user_password=PENDING_PW, organization="hospital_a", role="lead")
    )
    result = run_module(
        "dashboard_user", dashboard.conn(username=email, password=PENDING_PW, email=email), secrets=SECRETS
    )
    assert result.failed
    assert "is not approved yet (HTTP 403)" in result["msg"]
    assert "approved=true" in result["msg"]


def test_non_admin_cannot_configure_the_project(dashboard, run_module, org_admin):
    title = dashboard.project()["title"]
    result = run_module("dashboard_project", dashboard.conn(title="Taken over", **org_admin), secrets=SECRETS)
    assert result.failed
    assert "cannot configure the dashboard project" in result["msg"]
    assert "HTTP 403" in result["msg"]
    assert dashboard.project()["title"] == title
