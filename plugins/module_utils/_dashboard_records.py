# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Managers that bring a record of the NVIDIA FLARE dashboard to the state a task asks for.

This is a private module_utils file of federated.nvflare: its interface may change at any
time and it must not be used by other collections.

A dashboard_* module defines a manager class and calls `run()` on it from main(): the manager
checks the options before any request, logs in, does the work and returns the module's result.
Every failure on the way is a DashboardError, which `run()` alone turns into fail_json.
"""

from __future__ import annotations

from ansible_collections.federated.nvflare.plugins.module_utils import _names
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard import (
    APPROVED,
    PENDING,
    DashboardClient,
    DashboardError,
)


class DashboardManager:
    """Base of the dashboard_* modules' managers: options check, login, result, diff."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client: DashboardClient | None = None

    def validate(self) -> None:
        """Check the options before any request; raise DashboardError on a wrong one."""

    def manage(self) -> dict:
        """Read the record, change what differs (unless in check mode); return the module's result."""
        raise NotImplementedError

    @classmethod
    def run(cls, module) -> None:
        """Manage with a logged-in client and end the module with its result or its failure."""
        manager = cls(module)
        try:
            manager.validate()
            manager.client = DashboardClient(module)
            manager.client.login()
            result = manager.manage()
        except DashboardError as exc:
            module.fail_json(msg=exc.msg, **exc.result)
        module.exit_json(**result)

    def result(self, changed: bool, before: dict, after: dict, **fields) -> dict:
        result = dict(changed=changed, **fields)
        if self.module._diff:
            result["diff"] = dict(before=before, after=after)
        return result


class RecordManager(DashboardManager):
    """A user or a site: found by one option, created, updated (some fields by the project admin only), deleted.

    Subclasses name the record and say how it reads (`view`) and what the dashboard is sent
    (`planned`, `create_body`, `update_body`); hooks let them refuse what the dashboard would do wrong.
    """

    kind = ""  # the word in messages and the key of the record in the result: "user", "site"
    key = ""  # the option that names the record: "email", "name"
    name_rule = ""  # the NVFlare naming rule (module_utils/_names) that name follows: "admin", "site"
    path = ""  # the REST collection: "/users", "/clients"
    answer = ""  # the key of the record in the dashboard's answers: "user", "client"
    create_verb = "create"
    required: tuple[str, ...] = ()  # options needed to create a record
    fields: tuple[str, ...] = ()  # options compared with the record (in view()'s vocabulary)
    sent_as_is: tuple[str, ...] = ()  # changed fields the update sends under their own name
    admin_only: tuple[str, ...] = ()  # fields only the project admin may change (others are ignored)

    def __init__(self, module):
        super().__init__(module)
        self.record: dict | None = None
        self.before: dict = {}

    @property
    def label(self) -> str:
        return f"dashboard {self.kind} {self.params[self.key]}"

    def validate(self) -> None:
        """The record's name and organization follow NVFlare's naming rules (the dashboard checks too little)."""
        name = self.params[self.key]
        error = _names.check(self.name_rule, name)
        if not error and self.params["organization"] is not None:
            error = _names.check("org", self.params["organization"])
        if error:
            raise DashboardError(f"cannot manage dashboard {self.kind} {name!r}: {error}")

    # -- what subclasses define ---------------------------------------------------------------

    def find(self) -> dict | None:
        raise NotImplementedError

    def view(self, record: dict | None) -> dict:
        raise NotImplementedError

    def planned(self) -> dict:
        """The view of the record a creation would make (what check mode reports)."""
        raise NotImplementedError

    def create_body(self) -> dict:
        raise NotImplementedError

    def update_body(self, changes: dict) -> dict:
        body = {k: changes[k] for k in self.sent_as_is if k in changes}
        if "approved" in changes:
            body["approval_state"] = APPROVED if changes["approved"] else PENDING
        return body

    def extra_result(self) -> dict:
        """Result fields beside changed, the record and diff."""
        return {}

    def check_remove(self) -> None:
        """Refuse a deletion the module must not do."""

    def check_create(self) -> None:
        """Refuse a creation the dashboard cannot do."""

    def check_update(self, changes: dict) -> None:
        """Look at what the options change, before the project admin check."""

    def updated(self, answer: dict) -> dict | None:
        """The record in the dashboard's answer to an update."""
        return answer.get(self.answer)

    # -- the flow -----------------------------------------------------------------------------

    def manage(self) -> dict:
        self.record = self.find()
        self.before = self.view(self.record)
        if self.params["state"] == "absent":
            return self.remove()
        if self.record is None:
            return self.create()
        return self.update()

    def record_result(self, changed: bool, before: dict, after: dict) -> dict:
        return self.result(changed, before, after, **{self.kind: after}, **self.extra_result())

    def remove(self) -> dict:
        if self.record is None:
            return dict(changed=False, **{self.kind: {}}, **self.extra_result())
        self.check_remove()
        if not self.module.check_mode:
            self.client.call("DELETE", f"{self.path}/{self.record['id']}", f"delete {self.label}")
        return self.record_result(True, self.before, {})

    def create(self) -> dict:
        missing = [k for k in self.required if self.params[k] is None]
        if missing:
            raise DashboardError(
                f"cannot {self.create_verb} {self.label}: {', '.join(missing)} must be set to "
                f"{self.create_verb} a {self.kind}"
            )
        self.check_create()
        if self.params["approved"] and not self.client.is_project_admin():
            raise DashboardError(
                f"cannot approve {self.label}: dashboard account {self.client.username} is not the project "
                "admin. Log in as the project admin, or leave approved unset"
            )
        after = self.planned()
        if not self.module.check_mode:
            after = self.view(self.post())
        return self.record_result(True, {}, after)

    def conflict(self) -> str | None:
        """What an HTTP 409 on creation means (None: a record with this name exists)."""
        return None

    def post(self) -> dict:
        """Create the record, and approve it when asked; the record as the dashboard holds it."""
        what = f"{self.create_verb} {self.label}"
        created = self.client.call("POST", self.path, what, data=self.create_body(), conflict=self.conflict())
        created = created.get(self.answer) or {}
        if self.params["approved"]:
            answer = self.client.call(
                "PATCH", f"{self.path}/{created['id']}", f"approve {self.label}", data={"approval_state": APPROVED}
            )
            created = answer.get(self.answer) or created
        return created

    def update(self) -> dict:
        p = self.params
        changes = {k: p[k] for k in self.fields if p[k] is not None and self.before[k] != p[k]}
        self.check_update(changes)
        admin_changes = [k for k in self.admin_only if k in changes]
        if admin_changes and not self.client.is_project_admin():
            # The dashboard would silently ignore these for anyone but the project admin.
            raise DashboardError(
                f"cannot change {', '.join(admin_changes)} of {self.label}: only the project admin may, "
                f"and dashboard account {self.client.username} is not it. Log in as the project admin"
            )
        after = dict(self.before, **changes)
        body = self.update_body(changes)
        if body and not self.module.check_mode:
            answer = self.client.call("PATCH", f"{self.path}/{self.record['id']}", f"update {self.label}", data=body)
            after = self.view(self.updated(answer)) or after
        return self.record_result(bool(body), self.before, after)
