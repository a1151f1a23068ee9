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
requirements:
  - cryptography (in the Python that runs the module; Ansible itself depends on it)
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.federated.nvflare.plugins.module_utils import _files, _kit, _names
from ansible_collections.federated.nvflare.plugins.module_utils._dashboard import (
    DashboardClient,
    DashboardError,
    dashboard_argument_spec,
    is_approved,
)

MODE = 0o600
NAME_KIND = {"server": "server", "site": "site", "user": "admin"}
# Which dashboard module creates and approves a record of each kind.
MANAGER = {"site": "federated.nvflare.dashboard_site", "user": "federated.nvflare.dashboard_user"}


class KitDownloadError(Exception):
    """Why a kit cannot be downloaded, in words fit for the task's message."""


def validate(params: dict) -> None:
    kind, name, dest = params["kind"], params["name"], params["dest"]
    error = _names.check("pin", params["pin"])
    if not error and name is not None:
        error = _names.check(NAME_KIND[kind], name)
    if error:
        raise KitDownloadError(f"cannot download the {kind} kit {name or ''}: {error}")
    if os.path.isdir(dest):
        raise KitDownloadError(f"cannot write the kit to {dest}: it is a directory; give the path of the zip file")
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise KitDownloadError(f"cannot write the kit to {dest}: directory {parent} does not exist")


def check_ready(kind: str, name: str, record: dict) -> None:
    """Raise unless the site or user RECORD is approved and its organization lets the dashboard build a kit."""
    what = f"{kind} {name}"
    if not is_approved(record):
        raise KitDownloadError(
            f"cannot download the kit of {what}: it is not approved yet. Approve it with {MANAGER[kind]} approved=true"
        )
    error = _names.check("org", record.get("organization", ""))
    if error:
        raise KitDownloadError(
            f"cannot download the kit of {what}: its {error}, and the dashboard fails to build its kit "
            "(HTTP 500). Fix its organization first"
        )


def resolve_server(name: str | None, project: dict) -> tuple[str, str]:
    server = project.get("server1") or ""
    if name is not None and name != server:
        raise KitDownloadError(
            f"cannot download the server kit {name}: the dashboard project's server is {server!r}. "
            "Change it with federated.nvflare.dashboard_project before freezing, or ask for that name"
        )
    # The dashboard has one server and ignores the id in this route.
    return server, "/servers/1/blob"


def find_user(client: DashboardClient, name: str) -> dict | None:
    if name == client.username:
        # Any account may read itself, even one that may not list the users.
        user = client.call("GET", f"/users/{client.account.get('id')}", f"read dashboard user {name}")
        return user.get("user") or None
    return client.find_user(name)


def resolve(params: dict, client: DashboardClient, project: dict) -> tuple[str, str]:
    """(participant name, blob path) of the kit to download."""
    kind, name = params["kind"], params["name"]
    if kind == "server":
        return resolve_server(name, project)
    if kind == "site":
        record = client.find_site(name)
        missing = "the dashboard has no such site"
    else:
        record = find_user(client, name)
        missing = f"the dashboard has no such user (or account {client.username} cannot list it)"
    if record is None:
        noun = "Register" if kind == "site" else "Create"
        raise KitDownloadError(f"cannot download the kit of {kind} {name}: {missing}. {noun} it with {MANAGER[kind]}")
    check_ready(kind, name, record)
    route = "clients" if kind == "site" else "users"
    return name, f"/{route}/{record['id']}/blob"


def describe(fingerprint: dict | None, names) -> str:
    if fingerprint is None:
        return ""
    return "".join(f"{n}: {fingerprint[n]}\n" for n in names if n in fingerprint)


def download(client: DashboardClient, path: str, pin: str, what: str) -> tuple[bytes, dict]:
    """The kit zip the dashboard builds now, and its fingerprint."""
    content, _ctype = client.call("POST", path, what, data={"pin": pin}, raw=True)
    if not content.startswith(b"PK"):
        answer = client._json(content).get("status") or "an answer that is not a zip file"
        raise KitDownloadError(f"cannot {what}: the dashboard answered {answer!r}")
    try:
        return content, _kit.fingerprint(_kit.read_zip_bytes(content, pin, "the downloaded zip"))
    except _kit.KitError as e:
        raise KitDownloadError(f"cannot {what}: {e}") from None


def compare(result: dict, dest: str, pin: str, new: dict, diff: bool) -> bool:
    """Fill RESULT with how DEST differs from the kit fingerprinted NEW; whether its content differs."""
    old = None
    if os.path.exists(dest):
        with open(dest, "rb") as handle:
            old = _kit.kit_fingerprint(handle.read(), pin)
    differ = sorted(n for n in set(new) | set(old or {}) if (old or {}).get(n) != new.get(n))
    mode_wrong = os.path.exists(dest) and stat.S_IMODE(os.stat(dest).st_mode) != MODE
    result.update(changed=bool(differ) or mode_wrong, changed_entries=differ)
    if diff:
        result["diff"] = dict(
            before=describe(old, differ), after=describe(new, differ), before_header=dest, after_header=dest
        )
    return bool(differ)


def ensure_kit(module: AnsibleModule, client: DashboardClient) -> dict:
    """Download the kit and write it to dest when it differs; the module's result."""
    kind, name, dest, pin = (module.params[k] for k in ("kind", "name", "dest", "pin"))
    project = client.project()
    if not project.get("frozen"):
        raise KitDownloadError(
            f"cannot download the {kind} kit {name or ''}: dashboard project {project.get('short_name', '')!r} "
            "is not frozen, and kits exist only once it is. Freeze it with federated.nvflare.dashboard_project "
            "frozen=true"
        )
    participant, path = resolve(module.params, client, project)
    result = dict(changed=False, dest=dest, participant=participant, changed_entries=[])
    if not os.path.exists(dest) and module.check_mode:
        # Nothing to compare with: no download, which the dashboard would count.
        result.update(changed=True)
        if module._diff:
            result["diff"] = dict(before="", after=f"kit of {participant}\n", before_header=dest, after_header=dest)
        return result
    content, new = download(client, path, pin, f"download the {kind} kit of {participant}")
    content_differs = compare(result, dest, pin, new, module._diff)
    if module.check_mode or not result["changed"]:
        return result
    try:
        if content_differs:
            _files.write_atomic(dest, content, MODE)
        else:
            os.chmod(dest, MODE)
    except OSError as e:
        raise KitDownloadError(f"cannot write the kit to {dest}: {e}") from None
    return result


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
    if not _kit.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=_kit.CRYPTOGRAPHY_IMPORT_ERROR)
    try:
        validate(module.params)
        client = DashboardClient(module)
        client.login()
        result = ensure_kit(module, client)
    except KitDownloadError as e:
        module.fail_json(msg=str(e))
    except DashboardError as e:
        module.fail_json(msg=e.msg, **e.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
