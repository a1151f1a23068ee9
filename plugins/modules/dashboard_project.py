#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: dashboard_project
short_description: Configure and freeze the project of an NVIDIA FLARE dashboard
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Sets the project of an NVIDIA FLARE 2.9 dashboard through its REST API, the same settings
    the dashboard's Project Configuration and Server Configuration pages hold.
  - Options left out are left as they are on the dashboard.
  - Freezing builds the project's root CA and allows kit downloads. It is irreversible, the
    dashboard keeps a frozen project read-only; changing a frozen project, or unfreezing it,
    fails with a message.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - federated.nvflare.dashboard
attributes:
  check_mode:
    support: full
    details: Check mode reports a freeze as a change and warns that it would be irreversible.
options:
  short_name:
    description:
      - Short name of the project (at most 16 characters; the dashboard silently truncates
        longer names). It becomes the common name of the root CA and the server's name in kits.
    type: str
  title:
    description:
      - Title shown on the dashboard.
    type: str
  description:
    description:
      - Description shown on the dashboard.
    type: str
  server:
    description:
      - Fully qualified DNS name of the FL server that clients and admins connect to
        (the dashboard's C(server1) field).
    type: str
  fed_learn_port:
    description:
      - Port the FL server listens on for clients. NVFlare's default is 8002.
    type: int
  admin_port:
    description:
      - Port the FL server listens on for admin consoles. NVFlare uses O(fed_learn_port) when
        this is not set.
    type: int
  public:
    description:
      - Whether the project is public, so that anyone can sign up on the dashboard.
    type: bool
  frozen:
    description:
      - V(true) freezes the project, which creates its root CA and enables kit downloads.
        Requires O(short_name) and O(server), given here or already set.
      - V(false) only asserts that the project is not frozen; a frozen project cannot be
        unfrozen.
    type: bool
seealso:
  - module: federated.nvflare.dashboard_user
  - module: federated.nvflare.dashboard_site
  - module: federated.nvflare.dashboard_kit
"""

EXAMPLES = r"""
- name: Configure the project
  federated.nvflare.dashboard_project:
    url: https://dashboard.example.org
    username: admin@example.org
    password: "{{ vault_dashboard_admin_password }}"
    short_name: spleen
    title: Spleen segmentation
    server: fl.example.org
    fed_learn_port: 8002
    admin_port: 8003
    public: true

- name: Freeze it once every site is registered
  federated.nvflare.dashboard_project:
    url: https://dashboard.example.org
    username: admin@example.org
    password: "{{ vault_dashboard_admin_password }}"
    frozen: true
"""

RETURN = r"""
project:
  description: The project as the dashboard holds it after the run (in check mode, as it would be).
  returned: success
  type: dict
  sample:
    short_name: spleen
    title: Spleen segmentation
    description: ""
    server: fl.example.org
    fed_learn_port: 8002
    admin_port: 8003
    public: true
    frozen: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.federated.nvflare.plugins.module_utils import _names
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard import (
    DashboardError,
    dashboard_argument_spec,
)
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard_records import DashboardManager

SHORT_NAME_MAX = 16
FIELDS = ("short_name", "title", "description", "server", "fed_learn_port", "admin_port", "public", "frozen")
PORTS = ("fed_learn_port", "admin_port")
WHAT = "configure the dashboard project"
FAILED = f"cannot {WHAT}"


def view(project: dict) -> dict:
    """The project in this module's vocabulary."""
    props = project.get("server_props") or {}
    return {
        "short_name": project.get("short_name", ""),
        "title": project.get("title", ""),
        "description": project.get("description", ""),
        "server": project.get("server1", ""),
        "fed_learn_port": props.get("fed_learn_port"),
        "admin_port": props.get("admin_port"),
        "public": bool(project.get("public")),
        "frozen": bool(project.get("frozen")),
    }


def request_body(current: dict, changes: dict) -> dict:
    """The PATCH /project body that makes CHANGES (in this module's vocabulary) to CURRENT."""
    body = {k: changes[k] for k in ("short_name", "title", "description", "public") if k in changes}
    if "server" in changes:
        body["server1"] = changes["server"]
    if any(k in changes for k in PORTS):
        props = dict(current.get("server_props") or {})
        props.update((k, changes[k]) for k in PORTS if k in changes)
        body["server_props"] = props
    # Freezing in the same request applies the other settings first, then builds the CA.
    if changes.get("frozen"):
        body["frozen"] = True
    return body


class ProjectManager(DashboardManager):
    def validate(self) -> None:
        p = self.params
        if p["short_name"] is not None:
            error = _names.check("project", p["short_name"])
            if error:
                raise DashboardError(f"{FAILED}: {error}")
            if len(p["short_name"]) > SHORT_NAME_MAX:
                raise DashboardError(
                    f"{FAILED}: short_name {p['short_name']!r} is longer than {SHORT_NAME_MAX} characters, which the "
                    "dashboard would silently truncate"
                )
        if p["server"] is not None:
            error = _names.check("server", p["server"])
            if error:
                raise DashboardError(f"{FAILED}: {error}")
        for port in PORTS:
            if p[port] is not None and not 1 <= p[port] <= 65535:
                raise DashboardError(f"{FAILED}: {port} {p[port]} is not a TCP port")

    def manage(self) -> dict:
        current = self.client.project()
        before = view(current)
        wanted = {k: self.params[k] for k in FIELDS if self.params[k] is not None}
        changes = {k: v for k, v in wanted.items() if before[k] != v}
        if before["frozen"]:
            self.check_frozen(before, changes)
        after = dict(before, **changes)
        if changes.get("frozen"):
            self.check_freeze(after)
        check_mode = self.module.check_mode
        result = self.result(bool(changes), before, after, project=after if check_mode else before)
        if changes and not check_mode:
            answer = self.client.call("PATCH", "/project", WHAT, data=request_body(current, changes))
            if answer.get("status") != "ok":
                raise DashboardError(f"{FAILED}: the dashboard answered {answer.get('status')!r}")
            result["project"] = view(answer.get("project") or {})
        return result

    def check_frozen(self, before: dict, changes: dict) -> None:
        """A frozen project can be neither changed nor unfrozen."""
        short_name = before["short_name"]
        if self.params["frozen"] is False:
            raise DashboardError(
                f"cannot unfreeze dashboard project {short_name!r}: freezing is irreversible (its root CA and "
                "kits exist). Remove frozen=false, or start a new dashboard database for a new project"
            )
        if changes:
            raise DashboardError(
                f"cannot change {', '.join(sorted(changes))} of dashboard project {short_name!r}: the project "
                "is frozen and the dashboard keeps it read-only. Remove those options, or start a new dashboard "
                "database for a new project",
                project=before,
            )

    def check_freeze(self, after: dict) -> None:
        """Freezing needs the names the root CA and every kit are built from; warn in check mode."""
        missing = [k for k in ("short_name", "server") if not after[k]]
        if missing:
            raise DashboardError(
                f"cannot freeze dashboard project: {' and '.join(missing)} not set. Set them (here or in an "
                "earlier task) before freezing, since the root CA and every kit are built from them"
            )
        if self.module.check_mode:
            self.module.warn(
                f"dashboard project {after['short_name']!r} would be frozen: this is irreversible, its root CA "
                "would be created and its settings become read-only"
            )


def main():
    argument_spec = dashboard_argument_spec()
    argument_spec.update(
        short_name=dict(type="str"),
        title=dict(type="str"),
        description=dict(type="str"),
        server=dict(type="str"),
        fed_learn_port=dict(type="int"),
        admin_port=dict(type="int"),
        public=dict(type="bool"),
        frozen=dict(type="bool"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    ProjectManager.run(module)


if __name__ == "__main__":
    main()
