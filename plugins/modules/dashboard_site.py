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
      - Memory per GPU, in GiB, the site offers to jobs (a fraction is allowed).
    type: float
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

from ansible_collections.federated.nvflare.plugins.module_utils._dashboard import (
    APPROVED,
    PENDING,
    DashboardError,
    dashboard_argument_spec,
    is_approved,
)
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard_records import RecordManager
from ansible_collections.federated.nvflare.plugins.module_utils._resources import gib

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


def capacity_of(site: dict | None, params: dict) -> dict:
    capacity = dict((site or {}).get("capacity") or {})
    for key in CAPACITY:
        if params[key] is not None:
            capacity[key] = gib(params[key]) if key == "mem_per_gpu_in_GiB" else params[key]
    return capacity


class SiteManager(RecordManager):
    kind = "site"
    key = "name"
    name_rule = "site"
    path = "/clients"
    answer = "client"
    create_verb = "register"
    required = ("organization",)
    fields = ("organization", "approved") + CAPACITY
    sent_as_is = ("organization",)
    admin_only = ("organization", "approved")

    def validate(self) -> None:
        super().validate()
        p = self.params
        for key in CAPACITY:
            if p[key] is not None and p[key] < 0:
                raise DashboardError(f"cannot manage dashboard site {p['name']!r}: {key} must not be negative")

    view = staticmethod(view)

    def find(self) -> dict | None:
        return self.client.find_site(self.params["name"])

    def planned(self) -> dict:
        p = self.params
        return view(
            {
                "name": p["name"],
                "organization": p["organization"],
                "capacity": capacity_of(None, p),
                "approval_state": APPROVED if p["approved"] else PENDING,
            }
        )

    def create_body(self) -> dict:
        body = {"name": self.params["name"], "organization": self.params["organization"]}
        capacity = capacity_of(None, self.params)
        if capacity:
            body["capacity"] = capacity
        return body

    def conflict(self) -> str:
        return "A site with this name already exists"

    def update_body(self, changes: dict) -> dict:
        body = super().update_body(changes)
        if any(k in changes for k in CAPACITY):
            body["capacity"] = capacity_of(self.record, self.params)
        return body


def main():
    argument_spec = dashboard_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True),
        organization=dict(type="str"),
        num_of_gpus=dict(type="int"),
        mem_per_gpu_in_GiB=dict(type="float"),
        approved=dict(type="bool"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    SiteManager.run(module)


if __name__ == "__main__":
    main()
