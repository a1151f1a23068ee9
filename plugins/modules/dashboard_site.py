#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: dashboard_site
short_description: Manage the client sites of an NVIDIA FLARE dashboard
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Registers, updates, approves and deletes client sites on an NVIDIA FLARE 2.9 dashboard
    through its REST API. Each approved site can download its startup kit
    (M(federated.nvflare.dashboard_kit) with O(federated.nvflare.dashboard_kit#module:kind=site)).
  - Sites are identified by O(name). Options left out are left as they are.
  - A site belongs to the account that registered it; only that account and the project admin
    may change it, and only the project admin may approve it or move it to another organization.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - federated.nvflare.dashboard
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  name:
    description:
      - Name of the site, letters, digits, hyphens and underscores only.
    type: str
    required: true
  organization:
    description:
      - Organization of the site, letters, digits and underscores only (the dashboard accepts
        a hyphen, then fails when it builds the kit). Required to register a site.
    type: str
  num_of_gpus:
    description:
      - Number of GPUs the site offers to jobs (its kit's capacity). A kit that promises GPUs
        refuses to start on a host that has fewer.
    type: int
  mem_per_gpu_in_GiB:
    description:
      - Memory per GPU, in GiB, the site offers to jobs.
    type: int
  approved:
    description:
      - Whether the project admin approved the site. V(false) puts an approved site back to
        pending.
    type: bool
  state:
    description:
      - V(absent) deletes the site.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: federated.nvflare.dashboard_user
  - module: federated.nvflare.dashboard_kit
"""

EXAMPLES = r"""
- name: Register and approve the GPU site of hospital A
  federated.nvflare.dashboard_site:
    url: https://dashboard.example.org
    username: admin@example.org
    password: "{{ vault_dashboard_admin_password }}"
    name: hospital-a-gpu1
    organization: hospital_a
    num_of_gpus: 2
    mem_per_gpu_in_GiB: 40
    approved: true
"""

RETURN = r"""
site:
  description: The site as the dashboard holds it after the run (in check mode, as it would be); empty when absent.
  returned: success
  type: dict
  sample:
    id: 1
    name: hospital-a-gpu1
    organization: hospital_a
    num_of_gpus: 2
    mem_per_gpu_in_GiB: 40
    approved: true
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

CAPACITY = ("num_of_gpus", "mem_per_gpu_in_GiB")


def view(site: dict | None) -> dict:
    if not site:
        return {}
    capacity = site.get("capacity") or {}
    return {
        "id": site.get("id"),
        "name": site.get("name", ""),
        "organization": site.get("organization", ""),
        "num_of_gpus": capacity.get("num_of_gpus"),
        "mem_per_gpu_in_GiB": capacity.get("mem_per_gpu_in_GiB"),
        "approved": is_approved(site),
    }


def validate(module: AnsibleModule) -> None:
    p = module.params
    error = _names.check("site", p["name"])
    if not error and p["organization"] is not None:
        error = _names.check("org", p["organization"])
    if error:
        module.fail_json(msg=f"cannot manage dashboard site {p['name']!r}: {error}")
    for key in CAPACITY:
        if p[key] is not None and p[key] < 0:
            module.fail_json(msg=f"cannot manage dashboard site {p['name']!r}: {key} must not be negative")


def capacity_of(site: dict | None, params: dict) -> dict:
    capacity = dict((site or {}).get("capacity") or {})
    for key in CAPACITY:
        if params[key] is not None:
            capacity[key] = params[key]
    return capacity


def main():
    argument_spec = dashboard_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True),
        organization=dict(type="str"),
        num_of_gpus=dict(type="int"),
        mem_per_gpu_in_GiB=dict(type="int"),
        approved=dict(type="bool"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    validate(module)
    p = module.params
    name = p["name"]

    client = DashboardClient(module)
    client.login()
    site = client.find_site(name)
    before = view(site)

    if p["state"] == "absent":
        if site is None:
            module.exit_json(changed=False, site={})
        if not module.check_mode:
            client.call("DELETE", f"/clients/{site['id']}", f"delete dashboard site {name}")
        result = dict(changed=True, site={})
        if module._diff:
            result["diff"] = dict(before=before, after={})
        module.exit_json(**result)

    if site is None:
        if p["organization"] is None:
            module.fail_json(msg=f"cannot register dashboard site {name}: organization must be set to register a site")
        if p["approved"] and not client.is_project_admin():
            module.fail_json(
                msg=f"cannot approve dashboard site {name}: dashboard account {client.username} is not the project "
                "admin. Log in as the project admin, or leave approved unset"
            )
        capacity = capacity_of(None, p)
        after = view(
            {
                "name": name,
                "organization": p["organization"],
                "capacity": capacity,
                "approval_state": APPROVED if p["approved"] else PENDING,
            }
        )
        if not module.check_mode:
            body = {"name": name, "organization": p["organization"]}
            if capacity:
                body["capacity"] = capacity
            created = (
                client.call(
                    "POST",
                    "/clients",
                    f"register dashboard site {name}",
                    data=body,
                    conflict="A site with this name already exists",
                ).get("client")
                or {}
            )
            if p["approved"]:
                created = (
                    client.call(
                        "PATCH",
                        f"/clients/{created['id']}",
                        f"approve dashboard site {name}",
                        data={"approval_state": APPROVED},
                    ).get("client")
                    or created
                )
            after = view(created)
        result = dict(changed=True, site=after)
        if module._diff:
            result["diff"] = dict(before={}, after=after)
        module.exit_json(**result)

    changes = {}
    for key in ("organization", "approved") + CAPACITY:
        if p[key] is not None and before[key] != p[key]:
            changes[key] = p[key]
    admin_changes = [k for k in ("organization", "approved") if k in changes]
    if admin_changes and not client.is_project_admin():
        # The dashboard would silently ignore these for anyone but the project admin.
        module.fail_json(
            msg=f"cannot change {', '.join(admin_changes)} of dashboard site {name}: only the project admin may, "
            f"and dashboard account {client.username} is not it. Log in as the project admin"
        )
    after = dict(before, **changes)
    if changes and not module.check_mode:
        body = {}
        if "organization" in changes:
            body["organization"] = changes["organization"]
        if "approved" in changes:
            body["approval_state"] = APPROVED if changes["approved"] else PENDING
        if any(k in changes for k in CAPACITY):
            body["capacity"] = capacity_of(site, p)
        updated = client.call("PATCH", f"/clients/{site['id']}", f"update dashboard site {name}", data=body)
        after = view(updated.get("client")) or after
    result = dict(changed=bool(changes), site=after)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
