#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: startup_kit
short_description: Install and verify an NVIDIA FLARE startup kit on a host
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Installs the startup kit of one NVIDIA FLARE 2.9 participant (server, client site or admin)
    from a zip file or a folder on the managed host into O(dest), the folder NVFlare runs from.
  - Accepts the zip the NVFlare dashboard serves (ZipCrypto-encrypted with a PIN, kit content at
    the top of the archive), a zip holding a single participant folder, a zip made by
    M(federated.nvflare.provision), and a kit folder as C(nvflare provision) writes it
    (the participant folder itself, holding C(startup/), C(local/), ...).
  - Before anything is written, it checks that every entry of the zip has a safe path (not
    absolute, no C(..), no symbolic link, no device file), that the PIN opens the zip, that the
    kit holds the files its O(type) needs, that the participant certificate is signed by the
    kit's C(rootCA.pem), belongs to the kit's private key, carries O(participant) as its common
    name and has not expired. On any failure the task fails with one line that says what is
    wrong and what to do, and O(dest) is left exactly as it was.
  - The kit is unpacked into a temporary folder beside O(dest) (or inside it when O(dest) is
    a mount point) and moved in with renames, so a host never runs from a half-written kit.
  - C(startup/) is replaced as a whole (files no longer in the kit are removed). Files at the
    top of the kit (C(readme.txt)) follow the kit. In C(local/), NVFlare's reference copies
    (C(*.default), C(*.sample)) and C(signature.json) follow the kit; every other file there
    belongs to the host and is kept, so settings that roles template (C(local/resources.json),
    C(local/authorization.json), ...) survive a re-applied kit. Files in other folders of the
    kit (C(transfer/)) are installed only where the host has none. Everything NVFlare writes
    at run time (job folders, logs) is never touched.
  - Modes are restored, whatever the zip says. Scripts (C(*.sh)) 0755, private keys (C(*.key))
    and HE contexts (C(*.tenseal)) 0600, other files 0644, new folders 0755.
  - Idempotent by content. Zip timestamps, compression and encryption do not count, so
    the same kit downloaded twice reports no change.
  - Warns when the certificate expires within 30 days.
  - With O(resources), it also writes C(local/resources.json) (mode 0640) from the kit's
    C(local/resources.json.default) with this host's settings applied, as the
    P(federated.nvflare.local_resources#filter) filter does. The file follows the kit; a new
    kit or other settings rewrite it.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Check mode verifies the kit as a real run does and reports which files would change.
  diff_mode:
    support: full
    details: The diff lists the files the module manages, with a short content hash and the mode.
  platform:
    platforms: posix
requirements:
  - cryptography (on the managed host; NVFlare depends on it)
options:
  src:
    description:
      - Path on the managed host of the kit, a zip file or a folder.
      - Required when O(state=present).
    type: path
  dest:
    description:
      - Folder the kit is installed into, for example C(/opt/nvflare/site-1). Missing parent
        folders are created.
    type: path
    required: true
  pin:
    description:
      - PIN the zip is encrypted with (the one given to the dashboard when the kit was
        downloaded, or to M(federated.nvflare.provision)). Required for an encrypted zip;
        ignored for a plain zip or a folder.
    type: str
  participant:
    description:
      - Name the kit must belong to, the common name of its certificate, for example
        C(site-1), the server's FQDN, or an admin's email address.
      - Required when O(state=present).
    type: str
  type:
    description:
      - Type of participant the kit must be for.
      - Required when O(state=present).
    type: str
    choices: [server, client, admin]
  owner:
    description:
      - User (name or uid) that owns the installed kit, usually the service user NVFlare runs as.
        Left as it is when not set.
    type: str
  group:
    description:
      - Group (name or gid) that owns the installed kit. Left as it is when not set.
    type: str
  state:
    description:
      - V(present) installs the kit.
      - V(absent) removes O(dest) and everything in it, including job folders and logs that
        NVFlare wrote there.
    type: str
    choices: [present, absent]
    default: present
  resources:
    description:
      - Settings for C(local/resources.json), written from the kit's C(local/resources.json.default).
        Left alone when not set.
    type: dict
    suboptions:
      data_dir:
        description:
          - Server only. Folder for job and snapshot storage (instead of C(/tmp/nvflare)).
        type: path
      max_jobs:
        description:
          - Server only. Jobs the server runs at the same time.
        type: int
      num_of_gpus:
        description:
          - Client only. GPUs the site offers to jobs.
        type: int
      mem_per_gpu_in_GiB:
        description:
          - Client only. Memory per GPU, in GiB; a fraction such as V(7.5) is allowed.
        type: float
      class_allow_list:
        description:
          - Classes to add to the allow-list NVFlare 2.9 enforces for jobs without custom code.
        type: list
        elements: str
        default: []
    version_added: 0.2.0
notes:
  - NVFlare 2.9 signs only HE and confidential-computing kits (C(signature.json)); a standard kit
    carries no signature, so its certificate chain is what this module verifies.
  - The dashboard zip of NVFlare 2.9 has no folder at its top; older dashboards and
    hand-made zips hold a single participant folder. Both are accepted.
seealso:
  - module: federated.nvflare.provision
  - module: federated.nvflare.dashboard_kit
"""

EXAMPLES = r"""
- name: Install the kit of site-1 downloaded from the dashboard
  federated.nvflare.startup_kit:
    src: /tmp/site-1.zip
    pin: "{{ vault_site1_pin }}"
    dest: /opt/nvflare/site-1
    participant: site-1
    type: client
    owner: nvflare
    group: nvflare

- name: Install the server kit that federated.nvflare.provision wrote, copied as a folder
  federated.nvflare.startup_kit:
    src: /tmp/kits/fl.example.org
    dest: /opt/nvflare/server
    participant: fl.example.org
    type: server
    owner: nvflare
    resources:
      data_dir: /var/lib/nvflare/server-data
      max_jobs: 2
  register: server_kit

- name: Check that the server and this site belong to the same project
  ansible.builtin.assert:
    that: server_kit.root_ca_sha256 == hostvars[groups['nvflare_server'][0]].server_kit.root_ca_sha256
    fail_msg: the kits come from two different projects

- name: Remove an admin's kit
  federated.nvflare.startup_kit:
    dest: /home/alice/nvflare/alice@example.org
    state: absent
"""

RETURN = r"""
participant:
  description: Common name of the kit's certificate (the participant's name).
  returned: when O(state=present)
  type: str
  sample: site-1
org:
  description: Organisation of the participant, from its certificate.
  returned: when O(state=present)
  type: str
  sample: hospital_a
type:
  description: Type of the kit.
  returned: when O(state=present)
  type: str
  sample: client
role:
  description: Role of an admin, from its certificate; null for servers and clients.
  returned: when O(state=present)
  type: str
  sample: lead
not_after:
  description: End of the certificate's validity, ISO 8601 in UTC.
  returned: when O(state=present)
  type: str
  sample: "2027-11-18T18:00:59+00:00"
days_left:
  description: Whole days until the certificate expires.
  returned: when O(state=present)
  type: int
  sample: 359
root_ca_sha256:
  description:
    - SHA-256 fingerprint (lower-case hex of the DER encoding) of the kit's root CA. Every kit of
      one project has the same; M(federated.nvflare.provision) returns it too.
  returned: when O(state=present)
  type: str
  sample: 20763648d68bacc53527619fffbb3eae47d2f6cca8acfcf5b5adab7095cbae0b
digest:
  description:
    - SHA-256 over the kit's file paths and contents. The same kit gives the same digest as a
      zip or as a folder, encrypted or not.
  returned: when O(state=present)
  type: str
  sample: 5b0f0f0e5a0e07d3c1b9d1f0a1b5c2f8d9b3c7e1f6a4d2b8c9e0f1a2b3c4d5e6
dest:
  description: The folder the kit is installed in.
  returned: always
  type: str
  sample: /opt/nvflare/site-1
changes:
  description: Files (relative to O(dest)) the run added, modified (content, mode or owner) or removed.
  returned: when O(state=present)
  type: dict
  sample:
    added: []
    modified: [startup/fed_client.json]
    removed: []
"""

import datetime
import grp
import os
import pwd
import shutil
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.federated.nvflare.plugins.module_utils import _install, _kit

EXPIRY_WARNING_DAYS = 30


def absent(dest: str, check_mode: bool, diff: bool) -> dict:
    """Remove the kit folder DEST; the result. Raises KitError when it cannot."""
    exists = os.path.lexists(dest)
    result = {"changed": exists, "dest": dest}
    if diff:
        result["diff"] = {
            "before": {"path": dest, "state": "directory" if exists else "absent"},
            "after": {"path": dest, "state": "absent"},
        }
    if not exists or check_mode:
        return result
    if os.path.abspath(dest) == "/":
        raise _kit.KitError("refusing to remove / as a kit folder: check dest")
    try:
        if os.path.islink(dest) or not os.path.isdir(dest):
            os.unlink(dest)
        else:
            shutil.rmtree(dest)
    except OSError as e:
        raise _kit.KitError(f"cannot remove kit folder {dest}: {e}") from None
    return result


def inspect(p: dict, dest: str, now: datetime.datetime) -> tuple:
    """(kit, facts about its certificate, plan) for the options P; raises KitError or OSError."""
    uid = _install.resolve(p["owner"], lambda n: pwd.getpwnam(n).pw_uid, "owner")
    gid = _install.resolve(p["group"], lambda n: grp.getgrnam(n).gr_gid, "group")
    kit = _kit.load_kit(p["src"], p["pin"])
    _kit.check_layout(kit, p["type"])
    info = _kit.verify_identity(kit, p["type"], p["participant"], now)
    return kit, info, _install.Plan(kit, dest, uid, gid, _install.wanted_resources(kit, p["resources"]))


def result_of(p: dict, dest: str, kit, info: dict, plan: _install.Plan, diff: bool) -> dict:
    result = {
        "changed": plan.changed,
        "dest": dest,
        "participant": info["participant"],
        "org": info["org"],
        "type": p["type"],
        "role": info["role"],
        "not_after": info["not_after"].isoformat(),
        "days_left": info["days_left"],
        "root_ca_sha256": info["root_ca_sha256"],
        "digest": _kit.digest(kit.files),
        "changes": {"added": plan.added, "modified": plan.modified, "removed": plan.removed},
    }
    if diff:
        result["diff"] = {
            "before_header": dest,
            "after_header": "{} (kit of {})".format(p["src"], info["participant"]),
            "before": "".join(line + "\n" for line in sorted(plan.before_lines)),
            "after": "".join(line + "\n" for line in sorted(plan.after_lines)),
        }
    return result


def date_warnings(info: dict, now: datetime.datetime) -> list[str]:
    """Warnings about a certificate that expires soon or is not valid yet by this host's clock."""
    warnings = []
    if info["days_left"] < EXPIRY_WARNING_DAYS:
        warnings.append(
            f"certificate of {info['participant']} expires on {info['not_after'].isoformat()} "
            f"({info['days_left']} days left): provision or download a new kit and apply it"
        )
    if info["not_before"] > now:
        warnings.append(
            f"certificate of {info['participant']} is valid only from {info['not_before'].isoformat()}, "
            f"later than this host's clock ({now.isoformat()}): check the host's time"
        )
    return warnings


ARGUMENT_SPEC = dict(
    src=dict(type="path"),
    dest=dict(type="path", required=True),
    pin=dict(type="str", no_log=True),
    participant=dict(type="str"),
    type=dict(type="str", choices=["server", "client", "admin"]),
    owner=dict(type="str"),
    group=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    resources=dict(type="dict", options=_install.RESOURCES_OPTIONS),
)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ("src", "participant", "type"))],
        supports_check_mode=True,
    )
    p = module.params
    dest = os.path.abspath(p["dest"])
    if p["state"] == "absent":
        try:
            module.exit_json(**absent(dest, module.check_mode, module._diff))
        except _kit.KitError as e:
            module.fail_json(msg=str(e), changed=os.path.lexists(dest), dest=dest)
    if not _kit.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=_kit.CRYPTOGRAPHY_IMPORT_ERROR)
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        kit, info, plan = inspect(p, dest, now)
    except _kit.KitError as e:
        module.fail_json(msg=str(e), dest=dest)
    except OSError as e:
        module.fail_json(msg="cannot read kit {} or dest {}: {}".format(p["src"], dest, e), dest=dest)
    result = result_of(p, dest, kit, info, plan, module._diff)
    for warning in date_warnings(info, now):
        module.warn(warning)
    if plan.changed and not module.check_mode:
        try:
            plan.apply()
        except OSError as e:
            module.fail_json(
                msg=f"cannot write kit to {dest}: {e}: make dest's parent a writable folder",
                exception=traceback.format_exc(),
                dest=dest,
            )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
