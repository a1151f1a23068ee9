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
import hashlib
import json
import os
import pwd
import shutil
import stat
import tempfile
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.federated.nvflare.plugins.module_utils import _files, _kit, _resources

EXPIRY_WARNING_DAYS = 30


def _resolve(value, lookup, kind):
    if value is None:
        return None
    if str(value).isdigit():
        return int(value)
    try:
        return lookup(value)
    except KeyError:
        raise _kit.KitError(f"unknown {kind} {value!r} on this host: create it before installing the kit") from None


class Plan:
    """What must change in DEST for it to hold KIT."""

    def __init__(self, kit, dest, uid, gid, resources=None):
        self.kit = kit
        # local/resources.json's wanted bytes, or None to leave it alone.
        self.resources = resources
        self.resources_changed = False
        self.dest = dest
        self.uid = uid
        self.gid = gid
        self.exists = os.path.isdir(dest)
        self.added: list[str] = []
        self.modified: list[str] = []
        self.removed: list[str] = []
        self.writes: list[str] = []  # files outside startup/ to (re)write
        self.attr_fixes: list[str] = []  # existing paths whose mode/owner only must change
        self.missing_dirs: list[str] = []  # kit folders dest lacks that no write creates
        self.startup_content_changed = False
        self.before_lines: list[str] = []
        self.after_lines: list[str] = []
        self._compute()

    @property
    def changed(self):
        return bool(self.added or self.modified or self.removed or self.attr_fixes or self.resources_changed)

    def _owner_differs(self, st):
        return (self.uid is not None and st.st_uid != self.uid) or (self.gid is not None and st.st_gid != self.gid)

    def _line(self, rel, data, mode, st=None):
        owner = ""
        if self.uid is not None or self.gid is not None:
            uid = st.st_uid if st is not None else self.uid if self.uid is not None else os.getuid()
            gid = st.st_gid if st is not None else self.gid if self.gid is not None else os.getgid()
            owner = f" owner {uid}:{gid}"
        return f"{rel} sha256:{hashlib.sha256(data).hexdigest()[:16]} mode {mode:04o}{owner}"

    def _compute(self):
        if os.path.lexists(self.dest) and not self.exists:
            raise _kit.KitError(f"dest {self.dest} exists and is not a folder: remove it or choose another dest")
        for rel in sorted(self.kit.files):
            self._compare_file(rel)
        self._compare_startup_leftovers()
        if self.startup_content_changed:
            # startup/ is swapped as a whole: the attribute fixes inside it come with it.
            self.attr_fixes = [r for r in self.attr_fixes if not r.startswith("startup/")]
        self._compare_dirs()
        if self.resources is not None:
            self._compute_resources()

    def _content_changes(self, rel):
        """Record that REL's content changes: startup/ is rebuilt, other files are (re)written."""
        if rel.startswith("startup/"):
            self.startup_content_changed = True
        else:
            self.writes.append(rel)

    def _compare_file(self, rel):
        data = self.kit.files[rel]
        mode = _kit.file_mode(rel)
        want_line = self._line(rel, data, mode)
        path = os.path.join(self.dest, rel)
        st = os.lstat(path) if self.exists and os.path.lexists(path) else None
        if st is None:
            self.added.append(rel)
            self.after_lines.append(want_line)
            self._content_changes(rel)
            return
        if not stat.S_ISREG(st.st_mode):
            if not rel.startswith("startup/"):
                raise _kit.KitError(f"{path} is not a regular file where the kit has one: move it away and run again")
            self.modified.append(rel)
            self.startup_content_changed = True
            self.before_lines.append(f"{rel} (not a regular file)")
            self.after_lines.append(want_line)
            return
        if _kit.install_policy(rel) == "keep":
            return  # The host's own copy wins; it is not the module's to compare.
        with open(path, "rb") as f:
            have = f.read()
        self.before_lines.append(self._line(rel, have, stat.S_IMODE(st.st_mode), st))
        self.after_lines.append(want_line)
        if have != data:
            self.modified.append(rel)
            self._content_changes(rel)
        elif stat.S_IMODE(st.st_mode) != mode or self._owner_differs(st):
            self.modified.append(rel)
            self.attr_fixes.append(rel)

    def _compare_startup_leftovers(self):
        """Files in dest's startup/ that the kit does not have: startup/ is replaced as a whole."""
        startup = os.path.join(self.dest, "startup")
        if self.exists and os.path.isdir(startup) and not os.path.islink(startup):
            for rel, (data, mode) in sorted(_kit.read_tree(startup).items()):
                full = "startup/" + rel
                if full not in self.kit.files:
                    self.removed.append(full)
                    self.startup_content_changed = True
                    self.before_lines.append(self._line(full, data, mode))
        elif self.exists and os.path.lexists(startup):
            self.startup_content_changed = True

    def _compare_dirs(self):
        """Dest and the kit's folders must exist and, when owner/group are set, be owned."""
        if not self.exists:
            return
        for rel in [""] + sorted(self.kit.dirs):
            path = os.path.join(self.dest, rel) if rel else self.dest
            if not os.path.lexists(path):
                if rel and rel != "startup" and not any(w.startswith(rel + "/") for w in self.writes):
                    self.missing_dirs.append(rel + "/")
                continue
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                if rel == "startup":
                    continue
                raise _kit.KitError(f"{path} is not a folder where the kit has one: move it away and run again")
            if self._owner_differs(st) and not (rel == "startup" and self.startup_content_changed):
                self.attr_fixes.append(rel)
                self.modified.append(rel + "/" if rel else "./")
        self.added.extend(self.missing_dirs)

    def _compute_resources(self):
        rel = _resources.RESOURCES
        mode = _resources.RESOURCES_MODE
        path = os.path.join(self.dest, rel)
        want_line = self._line(rel, self.resources, mode)
        self.after_lines.append(want_line)
        if not os.path.lexists(path):
            self.added.append(rel)
            self.resources_changed = True
            return
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _kit.KitError(f"{path} is not a regular file: move it away and run again")
        with open(path, "rb") as f:
            have = f.read()
        self.before_lines.append(self._line(rel, have, stat.S_IMODE(st.st_mode), st))
        if have != self.resources or stat.S_IMODE(st.st_mode) != mode or self._owner_differs(st):
            self.modified.append(rel)
            self.resources_changed = True

    # -- applying --------------------------------------------------------------------------

    def _own(self, path):
        if self.uid is not None or self.gid is not None:
            os.lchown(path, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)

    def _write_file(self, path, rel):
        self._write_bytes(path, self.kit.files[rel], _kit.file_mode(rel))

    def _write_bytes(self, path, data, mode):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        self._own(path)

    def _stage_resources(self, root):
        """local/resources.json into ROOT (a staged tree, or a temporary name); its path."""
        path = os.path.join(root, "resources.json.new")
        self._write_bytes(path, self.resources, _resources.RESOURCES_MODE)
        return path

    def _mkdir(self, path):
        os.mkdir(path, _kit.DIR_MODE)
        os.chmod(path, _kit.DIR_MODE)
        self._own(path)

    def _build_tree(self, root, prefix=""):
        """Write the kit's files and folders under PREFIX ('' = all) into ROOT."""
        for d in sorted(self.kit.dirs):
            if prefix and not (d == prefix or d.startswith(prefix + "/")):
                continue
            self._mkdir(os.path.join(root, d))
        for rel in sorted(self.kit.files):
            if prefix and not rel.startswith(prefix + "/"):
                continue
            self._write_file(os.path.join(root, rel), rel)

    def _makedirs_in_dest(self, rel_dir):
        self._makedirs_in_tree(self.dest, rel_dir)

    def _makedirs_in_tree(self, root, rel_dir):
        parts = rel_dir.split("/") if rel_dir else []
        for i in range(1, len(parts) + 1):
            path = os.path.join(root, *parts[:i])
            if not os.path.isdir(path):
                self._mkdir(path)

    def apply(self):
        dest = self.dest.rstrip("/") or self.dest
        parent = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        stage_parent = parent
        if self.exists and os.stat(dest).st_dev != os.stat(parent).st_dev:
            stage_parent = dest  # dest is a mount point: renames must stay inside it
        stage = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.kit-", dir=stage_parent)
        try:
            if self.exists:
                self._update(stage, dest)
            else:
                self._install_new(stage, dest)
        finally:
            if os.path.lexists(stage):
                shutil.rmtree(stage, ignore_errors=True)

    def _install_new(self, stage, dest):
        """Build the whole kit in STAGE and rename it to DEST."""
        self._build_tree(stage)
        if self.resources_changed:
            tmp = self._stage_resources(stage)
            self._makedirs_in_tree(stage, os.path.dirname(_resources.RESOURCES))
            os.rename(tmp, os.path.join(stage, _resources.RESOURCES))
        os.chmod(stage, _kit.DIR_MODE)
        self._own(stage)
        os.rename(stage, dest)

    def _update(self, stage, dest):
        """Write everything new into STAGE (DEST is not touched yet), then move it in with renames."""
        if self.startup_content_changed:
            self._build_tree(stage, "startup")
        staged = []
        for i, rel in enumerate(self.writes):
            tmp = os.path.join(stage, f"f{i}")
            self._write_file(tmp, rel)
            staged.append((tmp, rel))
        if self.resources_changed:
            staged.append((self._stage_resources(stage), _resources.RESOURCES))
        if self.startup_content_changed:
            _files.replace_dir(os.path.join(stage, "startup"), os.path.join(dest, "startup"), stage)
        for d in sorted(self.kit.dirs):
            self._makedirs_in_dest(d)
        for tmp, rel in staged:
            self._makedirs_in_dest(os.path.dirname(rel))
            os.replace(tmp, os.path.join(dest, rel))
        for rel in self.attr_fixes:
            path = os.path.join(dest, rel) if rel else dest
            if rel in self.kit.files:
                os.chmod(path, _kit.file_mode(rel))
            self._own(path)


def _wanted_resources(kit, settings):
    """local/resources.json's bytes for KIT with SETTINGS applied; None when not asked for."""
    if settings is None:
        return None
    default = kit.files.get(_resources.RESOURCES_DEFAULT)
    if default is None:
        raise _kit.KitError(
            f"the kit has no {_resources.RESOURCES_DEFAULT} to write local/resources.json from: "
            "use a kit from NVFlare's provisioning or the dashboard, or leave resources unset"
        )
    try:
        parsed = json.loads(default)
    except ValueError as e:
        raise _kit.KitError(
            f"the kit's {_resources.RESOURCES_DEFAULT} is not valid JSON ({e}): provision the kit again"
        ) from None
    return _resources.render(_resources.local_resources(parsed, **settings))


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
    uid = _resolve(p["owner"], lambda n: pwd.getpwnam(n).pw_uid, "owner")
    gid = _resolve(p["group"], lambda n: grp.getgrnam(n).gr_gid, "group")
    kit = _kit.load_kit(p["src"], p["pin"])
    _kit.check_layout(kit, p["type"])
    info = _kit.verify_identity(kit, p["type"], p["participant"], now)
    return kit, info, Plan(kit, dest, uid, gid, _wanted_resources(kit, p["resources"]))


def result_of(p: dict, dest: str, kit, info: dict, plan: Plan, diff: bool) -> dict:
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
    resources=dict(
        type="dict",
        options=dict(
            data_dir=dict(type="path"),
            max_jobs=dict(type="int"),
            num_of_gpus=dict(type="int"),
            mem_per_gpu_in_GiB=dict(type="float"),
            class_allow_list=dict(type="list", elements="str", default=[]),
        ),
    ),
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
