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
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The password never appears in the diff; RV(password_updated) says whether it changes.
  platform:
    platforms: posix
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
- name: Register and approve the lead of hospital A
  federated.nvflare.dashboard_user:
    url: https://dashboard.example.org
    username: admin@example.org
    password: "{{ vault_dashboard_admin_password }}"
    email: lead@hospital-a.example.org
    name: Lead of hospital A
    user_password: "{{ vault_lead_password }}"
    organization: hospital_a
    role: lead
    approved: true

- name: Remove a user and the sites it registered
  federated.nvflare.dashboard_user:
    url: https://dashboard.example.org
    username: admin@example.org
    password: "{{ vault_dashboard_admin_password }}"
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

from ansible_collections.federated.nvflare.plugins.module_utils import _names
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard import (
    APPROVED,
    PENDING,
    DashboardClient,
    dashboard_argument_spec,
    is_approved,
)

ADMIN_ONLY = ("organization", "role", "approved")


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


def validate(module: AnsibleModule) -> None:
    p = module.params
    error = _names.check("admin", p["email"])
    if not error and p["organization"] is not None:
        error = _names.check("org", p["organization"])
    if error:
        module.fail_json(msg=f"cannot manage dashboard user {p['email']!r}: {error}")


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
    validate(module)
    p = module.params
    email = p["email"]

    client = DashboardClient(module)
    client.login()
    own_account = email == client.username
    user = client.find_user(email)
    before = view(user)

    if p["state"] == "absent":
        if user is None:
            module.exit_json(changed=False, user={}, password_updated=False)
        if own_account:
            module.fail_json(msg=f"refusing to delete dashboard user {email}: the module is logged in as it")
        if not module.check_mode:
            client.call("DELETE", f"/users/{user['id']}", f"delete dashboard user {email}")
        result = dict(changed=True, user={}, password_updated=False)
        if module._diff:
            result["diff"] = dict(before=before, after={})
        module.exit_json(**result)

    if user is None:
        missing = [k for k in ("user_password", "organization", "role") if p[k] is None]
        if missing:
            module.fail_json(
                msg=f"cannot create dashboard user {email}: {', '.join(missing)} must be set to create a user"
            )
        if p["role"] == "project_admin":
            module.fail_json(
                msg=f"cannot create dashboard user {email} with role project_admin: the dashboard only creates the "
                "project admin it is seeded with. Create the user with another role, then change it"
            )
        if p["approved"] and not client.is_project_admin():
            module.fail_json(
                msg=f"cannot approve dashboard user {email}: dashboard account {client.username} is not the project "
                "admin. Log in as the project admin, or leave approved unset"
            )
        after = {
            "id": None,
            "email": email,
            "name": p["name"] or "",
            "organization": p["organization"],
            "role": p["role"],
            "approved": bool(p["approved"]),
        }
        if not module.check_mode:
            body = {
                "email": email,
                "name": p["name"] or "",
                "password": p["user_password"],
                "organization": p["organization"],
                "role": p["role"],
            }
            created = (
                client.call(
                    "POST",
                    "/users",
                    f"create dashboard user {email}",
                    data=body,
                    conflict=f"A user with this email exists that account {client.username} cannot list (only the "
                    "project admin sees other organizations): log in as the project admin",
                ).get("user")
                or {}
            )
            if p["approved"]:
                created = (
                    client.call(
                        "PATCH",
                        f"/users/{created['id']}",
                        f"approve dashboard user {email}",
                        data={"approval_state": APPROVED},
                    ).get("user")
                    or created
                )
            after = view(created)
        result = dict(changed=True, user=after, password_updated=True)
        if module._diff:
            result["diff"] = dict(before={}, after=after)
        module.exit_json(**result)

    changes = {}
    for key in ("name", "organization", "role", "approved"):
        if p[key] is not None and before[key] != p[key]:
            changes[key] = p[key]
    password_updated = False
    if p["user_password"] is not None and p["update_password"] == "always":
        if int(user.get("approval_state") or 0) < 0:
            module.warn(
                f"dashboard user {email} is rejected, so the dashboard refuses its login and its password cannot be "
                "checked; it was left as it is"
            )
        elif not client.check_password(email, p["user_password"]):
            password_updated = True

    admin_changes = [k for k in ADMIN_ONLY if k in changes]
    if admin_changes and not client.is_project_admin():
        # The dashboard would silently ignore these for anyone but the project admin.
        module.fail_json(
            msg=f"cannot change {', '.join(admin_changes)} of dashboard user {email}: only the project admin may, "
            f"and dashboard account {client.username} is not it. Log in as the project admin"
        )

    after = dict(before, **changes)
    changed = bool(changes) or password_updated
    if changed and not module.check_mode:
        body = {}
        for key in ("name", "organization", "role"):
            if key in changes:
                body[key] = changes[key]
        if "approved" in changes:
            body["approval_state"] = APPROVED if changes["approved"] else PENDING
        if password_updated:
            body["password"] = p["user_password"]
        updated = client.call("PATCH", f"/users/{user['id']}", f"update dashboard user {email}", data=body)
        if updated.get("status") != "ok":
            module.fail_json(msg=f"cannot update dashboard user {email}: the dashboard answered {updated!r}")
        after = view(updated.get("user")) or after
    result = dict(changed=changed, user=after, password_updated=password_updated)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
