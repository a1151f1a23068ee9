#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: dashboard_kit
short_description: Download a startup kit from an NVIDIA FLARE dashboard
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Downloads the startup kit of the server, of a client site or of a user (admin console) from
    an NVIDIA FLARE 2.9 dashboard, as the PIN-protected zip the dashboard builds, and writes it
    to O(dest) with mode C(0600).
  - The dashboard builds a new zip on every download, with new timestamps and a new private key
    and certificate for the participant. The module therefore compares what the kit is, not the
    zip's bytes, with the existing O(dest), opened with the same PIN. Every file must match byte
    for byte, except the participant's key (present in both) and certificate (same issuer,
    subject and names, not expired). O(dest) is replaced only when they differ, so re-runs do
    not rotate keys.
  - The project must be frozen (M(federated.nvflare.dashboard_project) with
    O(federated.nvflare.dashboard_project#module:frozen=true)) and the site or user approved.
  - Extract the zip with M(federated.nvflare.startup_kit), or C(unzip -P).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - federated.nvflare.dashboard
attributes:
  check_mode:
    support: full
    details:
      - When O(dest) exists, check mode downloads the kit to compare it; the dashboard counts that
        as a download.
  diff_mode:
    support: full
    details: The diff lists the kit's files that differ, by fingerprint; no file content is shown.
  platform:
    platforms: posix
options:
  kind:
    description:
      - Which startup kit to download.
    type: str
    choices: [server, site, user]
    required: true
  name:
    description:
      - The site's name (O(kind=site)) or the user's email (O(kind=user)). Required for those.
      - For O(kind=server), the server's DNS name; optional, but when given it must match the
        project's server.
    type: str
  pin:
    description:
      - PIN that encrypts the zip, letters and digits only (the dashboard fails on anything
        else). The same PIN opens the existing O(dest) for the comparison.
    type: str
    required: true
  dest:
    description:
      - Path of the zip file to write. Its directory must exist.
    type: path
    required: true
seealso:
  - module: federated.nvflare.dashboard_project
  - module: federated.nvflare.startup_kit
"""

EXAMPLES = r"""
- name: Download the kit of a site
  federated.nvflare.dashboard_kit:
    url: https://dashboard.example.org
    username: admin@example.org
    password: "{{ vault_dashboard_admin_password }}"
    kind: site
    name: hospital-a-gpu1
    pin: "{{ vault_kit_pin }}"
    dest: /var/lib/nvflare/kits/hospital-a-gpu1.zip

- name: Download the server kit
  federated.nvflare.dashboard_kit:
    url: https://dashboard.example.org
    username: admin@example.org
    password: "{{ vault_dashboard_admin_password }}"
    kind: server
    pin: "{{ vault_kit_pin }}"
    dest: /var/lib/nvflare/kits/server.zip
"""

RETURN = r"""
dest:
  description: Path of the kit's zip file.
  returned: success
  type: str
  sample: /var/lib/nvflare/kits/hospital-a-gpu1.zip
participant:
  description: Name of the participant the kit is for (server DNS name, site name or user email).
  returned: success
  type: str
  sample: hospital-a-gpu1
changed_entries:
  description:
    - Files of the kit that differ from (or are missing in) the existing O(dest), sorted.
    - Empty when only the mode of O(dest) changes, and in check mode when O(dest) does not exist yet
      (the kit is then not downloaded).
  returned: success
  type: list
  elements: str
  sample: [startup/fed_client.json]
"""

import os
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.federated.nvflare.plugins.module_utils import _names
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard import (
    DashboardClient,
    dashboard_argument_spec,
    is_approved,
    kit_fingerprint,
)

MODE = 0o600
NAME_KIND = {"server": "server", "site": "site", "user": "admin"}


def validate(module: AnsibleModule) -> None:
    kind, name, dest = module.params["kind"], module.params["name"], module.params["dest"]
    error = _names.check("pin", module.params["pin"])
    if not error and name is not None:
        error = _names.check(NAME_KIND[kind], name)
    if error:
        module.fail_json(msg=f"cannot download the {kind} kit {name or ''}: {error}")
    if os.path.isdir(dest):
        module.fail_json(msg=f"cannot write the kit to {dest}: it is a directory; give the path of the zip file")
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        module.fail_json(msg=f"cannot write the kit to {dest}: directory {parent} does not exist")


def check_org(module: AnsibleModule, what: str, record: dict) -> None:
    error = _names.check("org", record.get("organization", ""))
    if error:
        module.fail_json(
            msg=f"cannot download the kit of {what}: its {error}, and the dashboard fails to build its kit "
            "(HTTP 500). Fix its organization first"
        )


def resolve(module: AnsibleModule, client: DashboardClient, project: dict) -> tuple[str, str]:
    """(participant name, blob path) of the kit to download."""
    p = module.params
    kind, name = p["kind"], p["name"]
    if kind == "server":
        server = project.get("server1") or ""
        if name is not None and name != server:
            module.fail_json(
                msg=f"cannot download the server kit {name}: the dashboard project's server is {server!r}. "
                "Change it with federated.nvflare.dashboard_project before freezing, or ask for that name"
            )
        # The dashboard has one server and ignores the id in this route.
        return server, "/servers/1/blob"
    if kind == "site":
        site = client.find_site(name)
        if site is None:
            module.fail_json(
                msg=f"cannot download the kit of site {name}: the dashboard has no such site. Register it with "
                "federated.nvflare.dashboard_site"
            )
        if not is_approved(site):
            module.fail_json(
                msg=f"cannot download the kit of site {name}: it is not approved yet. Approve it with "
                "federated.nvflare.dashboard_site approved=true"
            )
        check_org(module, f"site {name}", site)
        return name, f"/clients/{site['id']}/blob"
    if name == client.username:
        # Any account may read itself, even one that may not list the users.
        user = client.call("GET", f"/users/{client.account.get('id')}", f"read dashboard user {name}")
        user = user.get("user") or None
    else:
        user = client.find_user(name)
    if user is None:
        module.fail_json(
            msg=f"cannot download the kit of user {name}: the dashboard has no such user (or account "
            f"{client.username} cannot list it). Create it with federated.nvflare.dashboard_user"
        )
    if not is_approved(user):
        module.fail_json(
            msg=f"cannot download the kit of user {name}: it is not approved yet. Approve it with "
            "federated.nvflare.dashboard_user approved=true"
        )
    check_org(module, f"user {name}", user)
    return name, f"/users/{user['id']}/blob"


def describe(fingerprint: dict | None, names) -> str:
    if fingerprint is None:
        return ""
    return "".join(f"{n}: {fingerprint[n]}\n" for n in names if n in fingerprint)


def write_atomically(module: AnsibleModule, dest: str, content: bytes) -> None:
    parent = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), MODE)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        module.fail_json(msg=f"cannot write the kit to {dest}: {e}")


def main():
    argument_spec = dashboard_argument_spec()
    argument_spec.update(
        kind=dict(type="str", choices=["server", "site", "user"], required=True),
        name=dict(type="str"),
        pin=dict(type="str", required=True, no_log=True),
        dest=dict(type="path", required=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("kind", "site", ("name",)), ("kind", "user", ("name",))],
    )
    validate(module)
    kind, name, dest, pin = (module.params[k] for k in ("kind", "name", "dest", "pin"))

    client = DashboardClient(module)
    client.login()
    project = client.project()
    if not project.get("frozen"):
        module.fail_json(
            msg=f"cannot download the {kind} kit {name or ''}: dashboard project {project.get('short_name', '')!r} "
            "is not frozen, and kits exist only once it is. Freeze it with federated.nvflare.dashboard_project "
            "frozen=true"
        )
    participant, path = resolve(module, client, project)
    result = dict(changed=False, dest=dest, participant=participant, changed_entries=[])

    exists = os.path.exists(dest)
    if not exists and module.check_mode:
        # Nothing to compare with: no download, which the dashboard would count.
        result.update(changed=True)
        if module._diff:
            result["diff"] = dict(before="", after=f"kit of {participant}\n", before_header=dest, after_header=dest)
        module.exit_json(**result)

    what = f"download the {kind} kit of {participant}"
    content, _ctype = client.call("POST", path, what, data={"pin": pin}, raw=True)
    if not content.startswith(b"PK"):
        answer = client._json(content).get("status") or "an answer that is not a zip file"
        module.fail_json(msg=f"cannot {what}: the dashboard answered {answer!r}")
    new = kit_fingerprint(content, pin)
    if new is None:
        module.fail_json(msg=f"cannot {what}: the downloaded zip does not open with the PIN")

    old = None
    if exists:
        with open(dest, "rb") as handle:
            old = kit_fingerprint(handle.read(), pin)
    differ = sorted(n for n in set(new) | set(old or {}) if (old or {}).get(n) != new.get(n))
    mode_wrong = exists and stat.S_IMODE(os.stat(dest).st_mode) != MODE
    result.update(changed=bool(differ) or mode_wrong, changed_entries=differ)
    if module._diff:
        result["diff"] = dict(
            before=describe(old, differ),
            after=describe(new, differ),
            before_header=dest,
            after_header=dest,
        )
    if module.check_mode:
        module.exit_json(**result)
    if differ:
        write_atomically(module, dest, content)
    elif mode_wrong:
        os.chmod(dest, MODE)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
