# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""REST client for the NVIDIA FLARE dashboard, shared by the dashboard_* modules.

This is a private module_utils file of federated.nvflare: its interface may change at any
time and it must not be used by other collections.

Only the standard library and ansible.module_utils are used, so the modules run on any
host Ansible targets without extra Python packages.
"""

from __future__ import annotations

import json
import ssl
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import open_url

API_PREFIX = "/nvflare-dashboard/api/v1"

# approval_state values the dashboard's own web UI writes: -1 rejected, 0 pending,
# >= 100 approved (the seeded project admin has 200). Approval is read at login time.
APPROVED = 100
PENDING = 0


def dashboard_argument_spec() -> dict:
    """Connection options every dashboard_* module takes (documented in the doc fragment)."""
    return dict(
        url=dict(type="str", required=True),
        username=dict(type="str", required=True),
        password=dict(type="str", required=True, no_log=True),
        ca_path=dict(type="path"),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=60),
    )


def is_approved(record: dict) -> bool:
    return int(record.get("approval_state") or 0) >= APPROVED


class DashboardError(Exception):
    """A failure to report with fail_json: MSG says what to fix, RESULT holds extra result fields."""

    def __init__(self, msg: str, **result):
        super().__init__(msg)
        self.msg = msg
        self.result = result


def _first(records: list[dict], key: str, value: str) -> dict | None:
    return next((record for record in records if record.get(key) == value), None)


class DashboardClient:
    """One logged-in session against the dashboard's REST API.

    Every failure raises DashboardError with a message that says what to fix; callers only deal
    with successful answers and turn the error into fail_json at the top of the module.
    """

    def __init__(self, module):
        self.module = module
        params = module.params
        base = params["url"].rstrip("/")
        if base.endswith("/nvflare-dashboard"):
            base = base[: -len("/nvflare-dashboard")]
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.fail(
                f"cannot use url {params['url']!r} for the NVFlare dashboard: it must be an http(s) URL such as "
                "https://dashboard.example.org"
            )
        self.base = base
        self.username = params["username"]
        self._password = params["password"]
        self.validate_certs = params["validate_certs"]
        self.ca_path = params["ca_path"]
        self.timeout = params["timeout"]
        self._token = None
        self.account = {}

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def fail(msg: str, **result):
        raise DashboardError(msg, **result)

    def _open(self, method: str, path: str, data=None, auth: bool = True):
        """Send one request; return (status, body bytes, content type). HTTP errors are returned."""
        headers = {"Accept": "application/json"}
        body = None
        if data is not None:
            body = json.dumps(data)
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = "Bearer " + (self._token or "")
        url = self.base + API_PREFIX + path
        try:
            resp = open_url(
                url,
                data=body,
                headers=headers,
                method=method,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                timeout=self.timeout,
                follow_redirects="none",
                use_netrc=False,
                http_agent="federated.nvflare",
            )
            return resp.getcode(), resp.read(), resp.headers.get("Content-Type", "")
        except HTTPError as e:
            return self._http_error(e)
        except (TimeoutError, URLError, ssl.SSLError, OSError) as e:
            self._connection_error(e)

    def _http_error(self, e: HTTPError):
        """(status, body bytes, content type) of an HTTP error answer; a redirect is a failure."""
        try:
            content = e.read()
        except Exception:
            content = b""
        ctype = e.headers.get("Content-Type", "") if e.headers else ""
        if 300 <= e.code < 400:
            where = e.headers.get("Location", "?") if e.headers else "?"
            self.fail(
                f"NVFlare dashboard at {self.base} answered HTTP {e.code} with a redirect to {where}: "
                "set url to the address the dashboard is served from"
            )
        return e.code, content, ctype

    def _connection_error(self, e: OSError):
        reason = getattr(e, "reason", e)
        text = str(reason)
        if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(reason, ssl.SSLCertVerificationError):
            self.fail(
                f"cannot connect to the NVFlare dashboard at {self.base}: its TLS certificate is not trusted "
                f"({text}). Set ca_path to the CA certificate that signed it (validate_certs=false only for "
                "throwaway tests)"
            )
        self.fail(
            f"cannot connect to the NVFlare dashboard at {self.base}: {text}. "
            "Check url and that the dashboard is running"
        )

    @staticmethod
    def _json(content: bytes) -> dict:
        try:
            value = json.loads(content.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    def _explain(self, status: int, content: bytes, what: str, conflict: str | None) -> str:
        answer = self._json(content).get("status", "")
        who = f"dashboard account {self.username} (role {self.account.get('role', '?')})"
        if status == 401:
            return (
                f"cannot {what}: the dashboard refused the login of {self.username} (HTTP 401): the session "
                "expired or the account was rejected; check username and password"
            )
        if status == 403 and answer == "not approved yet":
            return (
                f"cannot {what}: {who} is not approved yet (HTTP 403). Approve it as the project admin "
                "(federated.nvflare.dashboard_user with approved=true), then run again"
            )
        if status == 403:
            return (
                f"cannot {what}: {who} is not allowed to (HTTP 403). Only the project admin, or the account "
                "that created the record, may do this: log in as the project admin"
            )
        if status == 404:
            return f"cannot {what}: the dashboard has no such record (HTTP 404)"
        if status == 409:
            hint = conflict or "A record with this name already exists"
            return f"cannot {what}: it conflicts with an existing record (HTTP 409). {hint}"
        if status >= 500:
            return (
                f"cannot {what}: the dashboard failed with HTTP {status}; see the dashboard's log. Common causes: "
                "the project is not frozen yet, an organization name with a hyphen, a PIN that is not "
                "alphanumeric, or no `zip` command on the dashboard host"
            )
        return f"cannot {what}: the dashboard answered HTTP {status} ({answer or 'no status'})"

    def call(self, method: str, path: str, what: str, data=None, conflict: str | None = None, raw: bool = False):
        """Authenticated request; fails with an explanation unless the answer is 200/201."""
        status, content, ctype = self._open(method, path, data)
        if status == 401:
            # The JWT lives 30 minutes; a long play may outlive it. Log in once more.
            self.login()
            status, content, ctype = self._open(method, path, data)
        if status not in (200, 201):
            self.fail(self._explain(status, content, what, conflict))
        if raw:
            return content, ctype
        return self._json(content)

    # -- session ----------------------------------------------------------------------------

    def login(self) -> dict:
        """Log in. Approval and role are baked into the token: a new login sees changes to them."""
        status, content, _ctype = self._open(
            "POST", "/login", {"email": self.username, "password": self._password}, auth=False
        )
        if status == 401:
            self.fail(
                f"login to the NVFlare dashboard at {self.base} as {self.username} failed (HTTP 401): wrong "
                "email or password, or the account was rejected. Check username and password"
            )
        answer = self._json(content)
        if status != 200 or "access_token" not in answer:
            self.fail(
                f"login to the NVFlare dashboard at {self.base} as {self.username} failed: HTTP {status}. "
                "Check that url points at an NVFlare dashboard"
            )
        self._token = answer["access_token"]
        self.account = answer.get("user") or {}
        return self.account

    def check_password(self, email: str, password: str) -> bool:
        """Whether EMAIL can log in with PASSWORD (does not touch this client's session)."""
        status, _content, _ctype = self._open("POST", "/login", {"email": email, "password": password}, auth=False)
        return status == 200

    def is_project_admin(self) -> bool:
        return self.account.get("role") == "project_admin"

    # -- reads ------------------------------------------------------------------------------

    def project(self) -> dict:
        return self.call("GET", "/project", "read the project").get("project") or {}

    def users(self) -> list[dict]:
        return self.call("GET", "/users", "list the users").get("user_list") or []

    def find_user(self, email: str) -> dict | None:
        return _first(self.users(), "email", email)

    def sites(self) -> list[dict]:
        return self.call("GET", "/clients", "list the sites").get("client_list") or []

    def find_site(self, name: str) -> dict | None:
        return _first(self.sites(), "name", name)
