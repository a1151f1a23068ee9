#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: dashboard_user
short_description: Manage users (admin participants) of an NVIDIA FLARE dashboard
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Creates, updates, approves and deletes the users of an NVIDIA FLARE 2.9 dashboard through
    its REST API. Each approved user can download an admin startup kit
    (M(federated.nvflare.dashboard_kit) with O(federated.nvflare.dashboard_kit#module:kind=user)).
  - Users are identified by O(email). Options left out are left as they are.
  - Creating a user works like the dashboard's sign-up form; approving it, and changing its
    organization or role, needs the project admin.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - federated.nvflare.dashboard
attributes:
  diff_mode:
    support: full
    details: The password never appears in the diff; RV(password_updated) says whether it changes.
options:
  email:
    description:
      - Email address of the user; NVFlare uses it as the admin participant's name.
    type: str
    required: true
  name:
    description:
      - Display name of the user.
    type: str
  user_password:
    description:
      - Password of the user on the dashboard. Required to create a user.
      - Called C(user_password) because O(password) is the password the module logs in with.
    type: str
  update_password:
    description:
      - V(always) checks that O(user_password) still logs the user in and sets it when it does
        not. V(on_create) sets it only when the user is created.
      - The password of a rejected user (approval state below 0) cannot be checked, since the
        dashboard refuses its login; it is then left alone with a warning.
    type: str
    choices: [always, on_create]
    default: always
  organization:
    description:
      - Organization of the user, letters, digits and underscores only (the dashboard accepts
        a hyphen, then fails when it builds the kit). Required to create a user.
    type: str
  role:
    description:
      - NVFlare admin role of the user. Required to create a user.
      - The dashboard creates no V(project_admin) through its API (only the account seeded at
        its first start is one), but an existing user can be given that role.
    type: str
    choices: [project_admin, org_admin, lead, member]
  approved:
    description:
      - Whether the project admin approved the user. V(false) puts an approved user back to
        pending.
    type: bool
  state:
    description:
      - V(absent) deletes the user. The dashboard then also deletes the sites that user created.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: federated.nvflare.dashboard_site
  - module: federated.nvflare.dashboard_kit
"""

EXAMPLES = r"""
- name: Manage the users as the project admin
  module_defaults:
    group/federated.nvflare.dashboard:
      url: https://dashboard.example.org
      username: admin@example.org
      password: "{{ vault_dashboard_admin_password }}"
  block:
    - name: Register and approve the lead of hospital A
      federated.nvflare.dashboard_user:
        email: lead@hospital-a.example.org
        name: Lead of hospital A
        user_password: "{{ vault_lead_password }}"
        organization: hospital_a
        role: lead
        approved: true

    - name: Remove a user and the sites it registered
      federated.nvflare.dashboard_user:
        email: former@hospital-a.example.org
        state: absent
"""

RETURN = r"""
user:
  description: The user as the dashboard holds it after the run (in check mode, as it would be); empty when absent.
  returned: success
  type: dict
  sample:
    id: 2
    email: lead@hospital-a.example.org
    name: Lead of hospital A
    organization: hospital_a
    role: lead
    approved: true
password_updated:
  description: Whether the user's password was (or in check mode would be) set.
  returned: success
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.federated.nvflare.plugins.module_utils._dashboard import (
    DashboardError,
    dashboard_argument_spec,
    is_approved,
)
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard_records import RecordManager


def view(user: dict | None) -> dict:
    if not user:
        return {}
    return {
        "id": user.get("id"),
        "email": user.get("email", ""),
        "name": user.get("name", ""),
        "organization": user.get("organization", ""),
        "role": user.get("role", ""),
        "approved": is_approved(user),
    }


class UserManager(RecordManager):
    kind = "user"
    key = "email"
    name_rule = "admin"
    path = "/users"
    answer = "user"
    required = ("user_password", "organization", "role")
    fields = ("name", "organization", "role", "approved")
    sent_as_is = ("name", "organization", "role")
    admin_only = ("organization", "role", "approved")

    def __init__(self, module):
        super().__init__(module)
        self.password_updated = False

    view = staticmethod(view)

    def find(self) -> dict | None:
        return self.client.find_user(self.params["email"])

    def extra_result(self) -> dict:
        return {"password_updated": self.password_updated}

    def check_remove(self) -> None:
        if self.params["email"] == self.client.username:
            raise DashboardError(f"refusing to delete {self.label}: the module is logged in as it")

    def create(self) -> dict:
        self.password_updated = True
        return super().create()

    def check_create(self) -> None:
        if self.params["role"] == "project_admin":
            raise DashboardError(
                f"cannot create {self.label} with role project_admin: the dashboard only creates the project admin "
                "it is seeded with. Create the user with another role, then change it"
            )

    def planned(self) -> dict:
        p = self.params
        return {
            "id": None,
            "email": p["email"],
            "name": p["name"] or "",
            "organization": p["organization"],
            "role": p["role"],
            "approved": bool(p["approved"]),
        }

    def create_body(self) -> dict:
        p = self.params
        body = {k: p[k] for k in ("email", "organization", "role")}
        body.update(name=p["name"] or "", password=p["user_password"])
        return body

    def conflict(self) -> str:
        return (
            f"A user with this email exists that account {self.client.username} cannot list (only the project admin "
            "sees other organizations): log in as the project admin"
        )

    def check_update(self, changes: dict) -> None:
        p = self.params
        if p["user_password"] is None or p["update_password"] != "always":
            return
        if int(self.record.get("approval_state") or 0) < 0:
            self.module.warn(
                f"{self.label} is rejected, so the dashboard refuses its login and its password cannot be "
                "checked; it was left as it is"
            )
        elif not self.client.check_password(p["email"], p["user_password"]):
            self.password_updated = True

    def update_body(self, changes: dict) -> dict:
        body = super().update_body(changes)
        if self.password_updated:
            body["password"] = self.params["user_password"]
        return body

    def updated(self, answer: dict) -> dict | None:
        if answer.get("status") != "ok":
            raise DashboardError(f"cannot update {self.label}: the dashboard answered {answer!r}")
        return answer.get("user")


def main():
    argument_spec = dashboard_argument_spec()
    argument_spec.update(
        email=dict(type="str", required=True),
        name=dict(type="str"),
        user_password=dict(type="str", no_log=True),
        update_password=dict(type="str", choices=["always", "on_create"], default="always", no_log=False),
        organization=dict(type="str"),
        role=dict(type="str", choices=["project_admin", "org_admin", "lead", "member"]),
        approved=dict(type="bool"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    UserManager.run(module)


if __name__ == "__main__":
    main()
