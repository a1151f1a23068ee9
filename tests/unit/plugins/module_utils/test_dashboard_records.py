"""The managers of module_utils/_dashboard_records.py, driven through the dashboard_* modules with a stand-in client."""

from __future__ import annotations

import pytest

from ansible_collections.federated.nvflare.plugins.module_utils import _dashboard_records
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard import DashboardError

CONN = dict(url="https://dashboard.example.org", username="admin@example.org", password="secret")


class StandIn:
    """Holds the records a DashboardClient stand-in reads and writes; records every request."""

    def __init__(self):
        self.role = "project_admin"
        self.sites = []
        self.users = [{"id": 1, "email": "admin@example.org", "organization": "nvidia", "role": "project_admin"}]
        self.project = {"short_name": "p", "server1": "fl.example.org", "frozen": False}
        self.requests = []
        self.logins = 0


@pytest.fixture
def dashboard(monkeypatch):
    state = StandIn()

    class Client:
        def __init__(self, module):
            self.username = module.params["username"]

        def login(self):
            state.logins += 1

        def is_project_admin(self):
            return state.role == "project_admin"

        def find_site(self, name):
            return next((s for s in state.sites if s["name"] == name), None)

        def find_user(self, email):
            return next((u for u in state.users if u["email"] == email), None)

        def check_password(self, email, password):
            return password == "right"

        def project(self):
            return state.project

        def call(self, method, path, what, data=None, conflict=None):
            state.requests.append((method, path, data))
            if method == "POST":
                return {"client": dict(data, id=7)}
            if method == "PATCH" and path == "/project":
                raise DashboardError(f"cannot {what}: refused")
            return {"status": "ok", "client": {"id": 7, "name": "s1", "organization": "o", **(data or {})}}

    monkeypatch.setattr(_dashboard_records, "DashboardClient", Client)
    return state


def test_a_bad_name_fails_before_any_login(dashboard, run_module):
    result = run_module("dashboard_site", dict(CONN, name="site 1"))
    assert result.failed
    assert result["msg"].startswith("cannot manage dashboard site 'site 1': invalid site name")
    assert dashboard.logins == 0


def test_registering_in_check_mode_sends_nothing(dashboard, run_module):
    result = run_module(
        "dashboard_site", dict(CONN, name="s1", organization="o", approved=True), check_mode=True, diff=True
    )
    assert result["changed"] is True
    assert result["site"]["approved"] is True and result["site"]["id"] is None
    assert result["diff"] == {"before": {}, "after": result["site"]}
    assert dashboard.requests == []


def test_registering_posts_then_approves(dashboard, run_module):
    result = run_module("dashboard_site", dict(CONN, name="s1", organization="o", num_of_gpus=2, approved=True))
    assert result["changed"] is True
    assert dashboard.requests == [
        ("POST", "/clients", {"name": "s1", "organization": "o", "capacity": {"num_of_gpus": 2}}),
        ("PATCH", "/clients/7", {"approval_state": 100}),
    ]


def test_registering_needs_an_organization(dashboard, run_module):
    result = run_module("dashboard_site", dict(CONN, name="s1"))
    assert result["msg"] == "cannot register dashboard site s1: organization must be set to register a site"


def test_only_the_project_admin_changes_the_organization(dashboard, run_module):
    dashboard.role = "lead"
    dashboard.sites.append({"id": 7, "name": "s1", "organization": "o", "approval_state": 0})
    result = run_module("dashboard_site", dict(CONN, name="s1", organization="other"))
    assert result.failed
    assert "cannot change organization of dashboard site s1: only the project admin may" in result["msg"]
    assert dashboard.requests == []


def test_an_unchanged_site_sends_nothing(dashboard, run_module):
    dashboard.sites.append({"id": 7, "name": "s1", "organization": "o", "approval_state": 100})
    result = run_module("dashboard_site", dict(CONN, name="s1", organization="o", approved=True))
    assert result["changed"] is False
    assert dashboard.requests == []


def test_deleting_a_missing_user_is_no_change(dashboard, run_module):
    result = run_module("dashboard_user", dict(CONN, email="x@example.org", state="absent"), diff=True)
    assert dict(result) == {"changed": False, "user": {}, "password_updated": False, "invocation": result["invocation"]}


def test_the_logged_in_account_is_not_deleted(dashboard, run_module):
    result = run_module("dashboard_user", dict(CONN, email="admin@example.org", state="absent"))
    assert result["msg"] == "refusing to delete dashboard user admin@example.org: the module is logged in as it"


def test_a_new_user_sets_its_password(dashboard, run_module):
    args = dict(CONN, email="lead@example.org", user_password="pw", organization="o", role="lead")
    result = run_module("dashboard_user", args, check_mode=True)
    assert (result["changed"], result["password_updated"]) == (True, True)


def test_a_password_that_no_longer_logs_in_is_set(dashboard, run_module):
    dashboard.users.append({"id": 3, "email": "lead@example.org", "organization": "o", "role": "lead"})
    args = dict(CONN, email="lead@example.org", user_password="wrong")
    result = run_module("dashboard_user", args)
    assert (result["changed"], result["password_updated"]) == (True, True)
    assert dashboard.requests == [("PATCH", "/users/3", {"password": "wrong"})]


def test_a_dashboard_error_fails_the_module_with_its_fields(dashboard, run_module):
    dashboard.project = dict(dashboard.project, frozen=True)
    result = run_module("dashboard_project", dict(CONN, title="new"))
    assert result.failed
    assert result["msg"].startswith("cannot change title of dashboard project 'p': the project is frozen")
    assert result["project"]["frozen"] is True


def test_an_error_from_the_client_reaches_the_result(dashboard, run_module):
    result = run_module("dashboard_project", dict(CONN, title="new"))
    assert result.failed
    assert result["msg"] == "cannot configure the dashboard project: refused"
