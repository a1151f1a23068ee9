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
  diff_mode:
    support: full
  platform:
    platforms: posix
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
    DashboardClient,
    dashboard_argument_spec,
)

SHORT_NAME_MAX = 16
FIELDS = ("short_name", "title", "description", "server", "fed_learn_port", "admin_port", "public", "frozen")


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


def validate(module: AnsibleModule) -> None:
    p = module.params
    if p["short_name"] is not None:
        error = _names.check("project", p["short_name"])
        if error:
            module.fail_json(msg="cannot configure the dashboard project: " + error)
        if len(p["short_name"]) > SHORT_NAME_MAX:
            short_name = p["short_name"]
            module.fail_json(
                msg=f"cannot configure the dashboard project: short_name {short_name!r} is longer than "
                f"{SHORT_NAME_MAX} characters, which the dashboard would silently truncate"
            )
    if p["server"] is not None:
        error = _names.check("server", p["server"])
        if error:
            module.fail_json(msg="cannot configure the dashboard project: " + error)
    for port in ("fed_learn_port", "admin_port"):
        if p[port] is not None and not 1 <= p[port] <= 65535:
            module.fail_json(msg=f"cannot configure the dashboard project: {port} {p[port]} is not a TCP port")


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
    validate(module)
    p = module.params

    client = DashboardClient(module)
    client.login()
    current = client.project()
    before = view(current)
    wanted = {k: p[k] for k in FIELDS if p[k] is not None}
    changes = {k: v for k, v in wanted.items() if before[k] != v}

    short_name = before["short_name"]
    if before["frozen"]:
        if p["frozen"] is False:
            module.fail_json(
                msg=f"cannot unfreeze dashboard project {short_name!r}: freezing is irreversible (its root CA and "
                "kits exist). Remove frozen=false, or start a new dashboard database for a new project"
            )
        if changes:
            module.fail_json(
                msg=f"cannot change {', '.join(sorted(changes))} of dashboard project {short_name!r}: the project "
                "is frozen and the dashboard keeps it read-only. Remove those options, or start a new dashboard "
                "database for a new project",
                project=before,
            )

    after = dict(before, **changes)
    if changes.get("frozen"):
        missing = [k for k in ("short_name", "server") if not after[k]]
        if missing:
            module.fail_json(
                msg=f"cannot freeze dashboard project: {' and '.join(missing)} not set. Set them (here or in an "
                "earlier task) before freezing, since the root CA and every kit are built from them"
            )
        if module.check_mode:
            module.warn(
                f"dashboard project {after['short_name']!r} would be frozen: this is irreversible, its root CA "
                "would be created and its settings become read-only"
            )

    result = dict(changed=bool(changes), project=after if module.check_mode else before)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    if changes and not module.check_mode:
        body = {}
        for key in ("short_name", "title", "description", "public"):
            if key in changes:
                body[key] = changes[key]
        if "server" in changes:
            body["server1"] = changes["server"]
        if "fed_learn_port" in changes or "admin_port" in changes:
            props = dict(current.get("server_props") or {})
            for key in ("fed_learn_port", "admin_port"):
                if key in changes:
                    props[key] = changes[key]
            body["server_props"] = props
        # Freezing in the same request applies the other settings first, then builds the CA.
        if changes.get("frozen"):
            body["frozen"] = True
        answer = client.call("PATCH", "/project", "configure the dashboard project", data=body)
        if answer.get("status") != "ok":
            module.fail_json(
                msg=f"cannot configure the dashboard project: the dashboard answered {answer.get('status')!r}"
            )
        result["project"] = view(answer.get("project") or {})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
