"""DashboardClient of module_utils/_dashboard.py without a dashboard: its failures are DashboardError."""

from __future__ import annotations

import json

import pytest

from ansible_collections.federated.nvflare.plugins.module_utils import _dashboard
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard import DashboardClient, DashboardError


class FakeModule:
    def __init__(self, **params):
        self.params = dict(
            url="https://dashboard.example.org",
            username="admin@example.org",
            password="secret",
            ca_path=None,
            validate_certs=True,
            timeout=5,
        )
        self.params.update(params)
        self.failed = None

    def fail_json(self, **result):
        self.failed = result
        raise SystemExit(1)


def client_answering(*answers):
    """A client whose requests get ANSWERS, (status, JSON body) each, in turn."""
    client = DashboardClient(FakeModule())
    queue = list(answers)
    client.requests = []

    def _open(method, path, data=None, auth=True):
        client.requests.append((method, path, data))
        status, body = queue.pop(0)
        return status, json.dumps(body).encode(), "application/json"

    client._open = _open
    return client


def test_the_dashboard_path_in_the_url_is_dropped():
    assert DashboardClient(FakeModule(url="https://d.example.org/nvflare-dashboard/")).base == "https://d.example.org"


def test_a_url_that_is_not_http_is_a_dashboard_error():
    with pytest.raises(DashboardError, match="it must be an http\\(s\\) URL") as info:
        DashboardClient(FakeModule(url="dashboard.example.org"))
    assert info.value.result == {}


def test_a_failure_never_ends_the_module_from_inside_the_client():
    module = FakeModule(url="ftp://dashboard.example.org")
    with pytest.raises(DashboardError, match="^cannot use url 'ftp://dashboard.example.org'"):
        DashboardClient(module)
    assert module.failed is None


def test_login_keeps_the_token_and_the_account():
    client = client_answering((200, {"access_token": "t", "user": {"id": 1, "role": "project_admin"}}))
    assert client.login() == {"id": 1, "role": "project_admin"}
    assert client.is_project_admin()
    assert client.requests == [("POST", "/login", {"email": "admin@example.org", "password": "secret"})]


def test_wrong_password_is_a_401_message():
    client = client_answering((401, {}))
    with pytest.raises(DashboardError, match="failed \\(HTTP 401\\): wrong email or password"):
        client.login()


@pytest.mark.parametrize(
    "status,body,fragment",
    [
        (403, {"status": "not approved yet"}, "is not approved yet (HTTP 403)"),
        (403, {}, "is not allowed to (HTTP 403)"),
        (404, {}, "no such record (HTTP 404)"),
        (409, {}, "conflicts with an existing record (HTTP 409). A record with this name already exists"),
        (500, {}, "failed with HTTP 500"),
        (418, {"status": "teapot"}, "answered HTTP 418 (teapot)"),
    ],
)
def test_refused_requests_raise_with_an_explanation(status, body, fragment):
    client = client_answering((status, body))
    with pytest.raises(DashboardError) as info:
        client.call("GET", "/project", "read the project")
    assert info.value.msg.startswith("cannot read the project: ")
    assert fragment in info.value.msg


def test_an_expired_session_logs_in_again():
    client = client_answering(
        (401, {}), (200, {"access_token": "new", "user": {}}), (200, {"project": {"short_name": "p"}})
    )
    assert client.project() == {"short_name": "p"}
    assert [r[1] for r in client.requests] == ["/project", "/login", "/project"]


def test_find_returns_the_record_with_that_name_or_none():
    client = client_answering(*[(200, {"client_list": [{"name": "a", "id": 1}, {"name": "b", "id": 2}]})] * 2)
    assert client.find_site("b") == {"name": "b", "id": 2}
    assert client.find_site("c") is None


def test_approval_reads_the_approval_state():
    assert _dashboard.is_approved({"approval_state": 100})
    assert not _dashboard.is_approved({"approval_state": 0})
    assert not _dashboard.is_approved({})
