#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: provision
short_description: Provision the startup kits of an NVIDIA FLARE project, keeping its root CA
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Writes the C(project.yml) of an NVIDIA FLARE 2.9 project (C(api_version) 3) from the
    options and provisions it with NVFlare's own provisioning code (its builders and
    provisioner, run in-process), the path without a dashboard.
  - Runs where NVFlare is installed, normally the controller with
    C(ansible_python_interpreter) set to the virtualenv that holds NVFlare.
  - Keeps the project's root CA and the certificate of every participant in
    C(WORKSPACE/NAME/state/cert.json), where C(nvflare provision) keeps them too. Running again
    with the same options changes nothing. Adding a site creates its kit and leaves the root CA
    and every other kit as they were. Changing the server's name or ports rewrites the kits
    that name the server but keeps the root CA and every participant's certificate.
  - A participant whose organisation or admin role changed, or whose certificate expires within
    30 days, gets a new certificate (and key); every other certificate is reused.
  - Kits are provisioned into a temporary folder and compared file by file with the kits
    already in the workspace; only kits whose content changed are replaced, each with a rename.
    The kits live in stable folders, C(WORKSPACE/kits/PARTICIPANT); the module writes no
    C(prod_NN) folders.
  - Every name is checked against NVFlare's rules before anything is provisioned.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode provisions into a temporary folder outside the workspace, reports which kits
        would be created, updated or removed, and writes nothing in the workspace.
  diff_mode:
    support: full
    details: The diff shows the change to C(project.yml).
  platform:
    platforms: posix
requirements:
  - nvflare 2.9 (in the Python that runs the module)
  - tenseal, only when O(he=true)
options:
  workspace:
    description:
      - Folder that holds C(project.yml), the project's CA state (C(NAME/state/)), the kits
        (C(kits/PARTICIPANT/)) and, with O(zip) or O(pin), the zips (C(zips/PARTICIPANT.zip)).
      - Created with mode 0700 when missing. It holds the root CA's private key. Keep it
        private and back it up, since losing it rotates every certificate of the project.
    type: path
    required: true
  name:
    description:
      - Name of the project, the common name of its root CA.
    type: str
    required: true
  server:
    description:
      - The FL server.
    type: dict
    required: true
    suboptions:
      name:
        description:
          - Fully qualified domain name clients and admins connect to. It is the common name of
            the server's certificate. A server named C(localhost) listens on 127.0.0.1 only.
        type: str
        required: true
      org:
        description:
          - Organisation of the server (letters, digits and underscores).
        type: str
        required: true
      fed_learn_port:
        description:
          - Port clients connect to.
        type: int
        default: 8002
      admin_port:
        description:
          - Port admin consoles connect to. Written explicitly, since NVFlare would otherwise use
            O(server.fed_learn_port).
        type: int
        default: 8003
  sites:
    description:
      - The client sites.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description:
          - Name of the site (letters, digits, hyphens and underscores).
        type: str
        required: true
      org:
        description:
          - Organisation of the site (letters, digits and underscores, no hyphen).
        type: str
        required: true
      num_of_gpus:
        description:
          - Number of GPUs the site offers to jobs, written to its C(local/resources.json.default).
            A client whose value exceeds the GPUs of its host refuses to start.
        type: int
      mem_per_gpu_in_GiB:
        description:
          - Memory per GPU in GiB that the site offers to jobs.
        type: int
  admins:
    description:
      - The admin users, who get admin console kits.
    type: list
    elements: dict
    default: []
    suboptions:
      email:
        description:
          - Email address of the admin, their name in NVFlare.
        type: str
        required: true
      org:
        description:
          - Organisation of the admin.
        type: str
        required: true
      role:
        description:
          - Role of the admin. One of V(project_admin), V(org_admin), V(lead), V(member).
        type: str
        required: true
  he:
    description:
      - Adds NVFlare's HEBuilder, which puts a homomorphic-encryption (TenSEAL CKKS) context into
        the server and client kits and signs them.
      - Needs the C(tenseal) package in the Python that runs the module. Without it the task fails
        and says so.
      - The context is kept in the workspace's state folder, like the root CA, so that a
        re-run or an added site gets the same context.
    type: bool
    default: false
  pin:
    description:
      - When set, every kit is also packed as C(WORKSPACE/zips/PARTICIPANT.zip), encrypted with
        this PIN in the format the NVFlare dashboard serves (ZipCrypto, kit content at the top),
        which M(federated.nvflare.startup_kit) installs. Letters and digits only.
      - When neither this nor O(zip) is set, zips a previous run wrote are removed.
    type: str
  zip:
    description:
      - Also pack every kit as C(WORKSPACE/zips/PARTICIPANT.zip), encrypted when O(pin) is set and
        plain otherwise.
      - One file per kit is much faster to copy to a host than a kit folder (the copy module
        handles a folder file by file), and M(federated.nvflare.startup_kit) installs either.
      - A zip is written again only when its kit changes, so a re-run copies nothing.
    type: bool
    default: false
notes:
  - Re-running C(nvflare provision -p WORKSPACE/project.yml -w WORKSPACE) by hand reuses the same
    root CA and certificates and writes C(prod_NN) folders beside the module's C(kits/).
  - Sites and admins removed from the options lose their kit folder and zip. Their certificates
    stay valid until they expire, since NVFlare has no revocation.
seealso:
  - module: federated.nvflare.startup_kit
"""

EXAMPLES = r"""
- name: Provision the project on the controller
  federated.nvflare.provision:
    workspace: "{{ playbook_dir }}/workspace"
    name: spleen
    server:
      name: fl.example.org
      org: hospital_a
    sites:
      - name: site-1
        org: hospital_a
        num_of_gpus: 1
        mem_per_gpu_in_GiB: 16
      - name: site-2
        org: hospital_b
    admins:
      - email: admin@example.org
        org: hospital_a
        role: project_admin
    pin: "{{ vault_kit_pin }}"
  delegate_to: localhost
  run_once: true
  register: provision

- name: Install each site's kit from its zip
  federated.nvflare.startup_kit:
    src: "{{ provision.zips[inventory_hostname] }}"
    pin: "{{ vault_kit_pin }}"
    dest: /opt/nvflare/{{ inventory_hostname }}
    participant: "{{ inventory_hostname }}"
    type: client
"""

RETURN = r"""
kits:
  description: Folder of each participant's kit, by participant name.
  returned: always
  type: dict
  sample:
    fl.example.org: /srv/workspace/kits/fl.example.org
    site-1: /srv/workspace/kits/site-1
    admin@example.org: /srv/workspace/kits/admin@example.org
zips:
  description: Encrypted zip of each participant's kit, by participant name.
  returned: when O(zip) or O(pin) is set
  type: dict
  sample:
    site-1: /srv/workspace/zips/site-1.zip
root_ca_sha256:
  description:
    - SHA-256 fingerprint (lower-case hex of the DER encoding) of the project's root CA,
      the value M(federated.nvflare.startup_kit) returns for every kit of the project.
    - Null in check mode before the first real run, when no root CA exists yet.
  returned: always
  type: str
  sample: 20763648d68bacc53527619fffbb3eae47d2f6cca8acfcf5b5adab7095cbae0b
project_yml:
  description: Path of the C(project.yml) the module writes.
  returned: always
  type: str
  sample: /srv/workspace/project.yml
changes:
  description:
    - Participants whose kit was created, updated or removed, and those whose certificate was
      issued anew (organisation or role changed, or expiring within 30 days).
  returned: always
  type: dict
  sample:
    created: [site-3]
    updated: []
    removed: []
    reissued: []
"""

import contextlib
import copy
import datetime
import hashlib
import io
import json
import os
import shutil
import tempfile
import traceback
import zipfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.yaml import HAS_YAML, yaml_dump

from ansible_collections.federated.nvflare.plugins.module_utils import _kit, _names

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

try:
    from nvflare import __version__ as NVFLARE_VERSION
    from nvflare.lighter.constants import CtxKey
    from nvflare.lighter.prov_utils import prepare_builders
    from nvflare.lighter.provision import prepare_project
    from nvflare.lighter.provisioner import Provisioner

    HAS_NVFLARE = True
    NVFLARE_IMPORT_ERROR = None
except ImportError:
    HAS_NVFLARE = False
    NVFLARE_VERSION = None
    NVFLARE_IMPORT_ERROR = traceback.format_exc()

RENEW_DAYS = 30
CN_MAX = 64
PROJECT_MAX = 63
HE_STATE_FILES = ("server_context.tenseal", "client_context.tenseal")
HEADER = "# Written by federated.nvflare.provision; changes made here are overwritten on its next run.\n"


class ProvisionError(Exception):
    pass


def validate(p) -> list[str]:
    """Every problem with the names and numbers in the options, each saying what and which rule."""
    errors = []

    def check(kind, value, where):
        msg = _names.check(kind, value)
        if msg:
            errors.append(f"{where}: {msg}")

    check("project", p["name"], "name")
    if p["name"] and len(p["name"]) > PROJECT_MAX:
        errors.append(f"name: project name {p['name']!r} is longer than {PROJECT_MAX} characters")
    server = p["server"]
    check("server", server["name"], "server.name")
    if server["name"] and len(server["name"]) > CN_MAX:
        errors.append(
            f"server.name: {server['name']!r} is longer than {CN_MAX} characters, the most a certificate's CN holds"
        )
    check("org", server["org"], "server.org")
    for key in ("fed_learn_port", "admin_port"):
        if not 1 <= server[key] <= 65535:
            errors.append(f"server.{key}: {server[key]} is not a TCP port (1-65535)")
    for i, site in enumerate(p["sites"]):
        check("site", site["name"], f"sites[{i}].name")
        check("org", site["org"], f"sites[{i}].org")
        for key in ("num_of_gpus", "mem_per_gpu_in_GiB"):
            if site.get(key) is not None and site[key] < 0:
                errors.append(f"sites[{i}].{key}: {site[key]} is negative")
    for i, admin in enumerate(p["admins"]):
        check("admin", admin["email"], f"admins[{i}].email")
        check("org", admin["org"], f"admins[{i}].org")
        check("role", admin["role"], f"admins[{i}].role")
    names = [server["name"]] + [s["name"] for s in p["sites"]] + [a["email"] for a in p["admins"]]
    for dup in _names.duplicates(names):
        errors.append(f"participant name {dup!r} is used more than once: every server, site and admin needs its own")
    if p["pin"] is not None:
        check("pin", p["pin"], "pin")
    return errors


def project_dict(p) -> dict:
    server = p["server"]
    participants = [
        {
            "name": server["name"],
            "type": "server",
            "org": server["org"],
            "fed_learn_port": server["fed_learn_port"],
            "admin_port": server["admin_port"],
        }
    ]
    for site in p["sites"]:
        entry = {"name": site["name"], "type": "client", "org": site["org"]}
        capacity = {k: site[k] for k in ("num_of_gpus", "mem_per_gpu_in_GiB") if site.get(k) is not None}
        if capacity:
            entry["capacity"] = capacity
        participants.append(entry)
    for admin in p["admins"]:
        participants.append({"name": admin["email"], "type": "admin", "org": admin["org"], "role": admin["role"]})
    builders = [
        {"path": "nvflare.lighter.impl.workspace.WorkspaceBuilder"},
        # grpc, as the dashboard's kits use; NVFlare's own default is http.
        {
            "path": "nvflare.lighter.impl.static_file.StaticFileBuilder",
            "args": {"config_folder": "config", "scheme": "grpc"},
        },
        {"path": "nvflare.lighter.impl.cert.CertBuilder"},
    ]
    if p["he"]:
        builders.append({"path": "nvflare.lighter.impl.he.HEBuilder"})
    builders.append({"path": "nvflare.lighter.impl.signature.SignatureBuilder"})
    return {"api_version": 3, "name": p["name"], "participants": participants, "builders": builders}


def render(project: dict) -> str:
    return HEADER + yaml_dump(project, default_flow_style=False, sort_keys=False)


class _Log:
    """Collects NVFlare's provisioning messages (its default logger prints to stdout, which
    would corrupt the module's JSON)."""

    def __init__(self):
        self.errors = []

    def info(self, msg):
        pass

    def debug(self, msg):
        pass

    def warning(self, msg):
        pass

    def error(self, msg):
        self.errors.append(str(msg))


def _stateful_he_builder():
    """NVFlare's HEBuilder draws a new TenSEAL context on every run; this one keeps the first
    context's serialised server and client halves in the state folder and reuses them."""
    from nvflare.lighter.impl.he import HEBuilder

    class StatefulHEBuilder(HEBuilder):
        def initialize(self, project, ctx):
            state_dir = ctx.get_state_dir()
            paths = [os.path.join(state_dir, n) for n in HE_STATE_FILES]
            if all(os.path.isfile(x) for x in paths):
                blobs = []
                for x in paths:
                    with open(x, "rb") as f:
                        blobs.append(f.read())
                self._blobs = tuple(blobs)
                return
            super().initialize(project, ctx)
            self._blobs = (
                HEBuilder.get_serialized_context(self, is_client=False),
                HEBuilder.get_serialized_context(self, is_client=True),
            )
            for i, x in enumerate(paths):
                _kit.write_atomic(x, self._blobs[i], 0o600)

        def get_serialized_context(self, is_client=False):
            return self._blobs[1] if is_client else self._blobs[0]

    return HEBuilder, StatefulHEBuilder()


def _cert_attr(cert, oid_name):
    from cryptography.x509.oid import NameOID

    values = cert.subject.get_attributes_for_oid(getattr(NameOID, oid_name))
    return values[0].value if values else None


def stale_subjects(state: dict, project: dict, now) -> list[str]:
    """Participants whose stored certificate no longer fits: organisation or role changed, or it
    expires within RENEW_DAYS. NVFlare would reuse it as it is (or, for a role, refuse to run)."""
    from cryptography import x509

    stale = []
    for part in project["participants"]:
        entry = state.get(part["name"])
        if not isinstance(entry, dict) or "cert" not in entry:
            continue
        cert = x509.load_pem_x509_certificate(entry["cert"].encode("ascii"))
        if _cert_attr(cert, "ORGANIZATION_NAME") != part["org"]:
            stale.append(part["name"])
        elif part["type"] == "admin" and _cert_attr(cert, "UNSTRUCTURED_NAME") != part["role"]:
            stale.append(part["name"])
        elif _kit.not_valid_after(cert) - now < datetime.timedelta(days=RENEW_DAYS):
            stale.append(part["name"])
    return stale


def provision_into(tmp_root: str, project: dict, state_dir: str, he: bool, reissue: list[str]) -> tuple[str, str]:
    """Provision PROJECT under TMP_ROOT from a copy of STATE_DIR. Return (kits folder, state folder)."""
    tmp_state = os.path.join(tmp_root, project["name"], "state")
    os.makedirs(tmp_state, 0o700)
    cert_json = os.path.join(state_dir, "cert.json")
    if os.path.isfile(cert_json):
        with open(cert_json) as f:
            state = json.load(f)
        for name in reissue:
            state.pop(name, None)
        _kit.write_atomic(os.path.join(tmp_state, "cert.json"), json.dumps(state).encode("ascii"), 0o600)
    for name in HE_STATE_FILES:
        src = os.path.join(state_dir, name)
        if he and os.path.isfile(src):
            shutil.copyfile(src, os.path.join(tmp_state, name))
    project_copy = copy.deepcopy(project)
    log = _Log()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            prov_project = prepare_project(project_copy)
            builders = prepare_builders(project_copy)
            if he:
                he_class, stateful = _stateful_he_builder()
                builders = [stateful if isinstance(b, he_class) else b for b in builders]
            ctx = Provisioner(tmp_root, builders).provision(prov_project, logger=log)
        except (ValueError, RuntimeError, TypeError, KeyError) as e:
            raise ProvisionError(str(e)) from None
    if ctx.get(CtxKey.BUILD_ERROR) or not ctx.get_result_location():
        lines = out.getvalue().strip().splitlines()
        raise ProvisionError("; ".join(log.errors) or (lines[-1] if lines else "no detail"))
    result = ctx.get_result_location()
    # NVFlare's modes depend on the umask; give every kit the modes startup_kit installs.
    for root, dnames, fnames in os.walk(result):
        for d in dnames:
            os.chmod(os.path.join(root, d), _kit.DIR_MODE)
        for n in fnames:
            os.chmod(os.path.join(root, n), _kit.file_mode(n))
    return result, tmp_state


def _read_bytes(path):
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def _sha256(data) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _replace_dir(new: str, dest: str, scratch: str):
    """Put folder NEW at DEST with renames (the old DEST goes to SCRATCH first)."""
    if os.path.lexists(dest):
        old = os.path.join(scratch, "old-" + os.path.basename(dest))
        os.rename(dest, old)
        try:
            os.rename(new, dest)
        except OSError:
            os.rename(old, dest)
            raise
        shutil.rmtree(old)
    else:
        os.rename(new, dest)


def _zip_infos(path: str) -> list:
    with zipfile.ZipFile(path) as zf:
        return zf.infolist()


class Workspace:
    """The provisioning workspace: project.yml, NVFlare's CA state, kits/, zips/ and a manifest.

    The manifest (NAME/state/federated.nvflare.json) records what the last successful run
    wrote. When the inputs and every output still match it, a re-run is known to change nothing
    and skips provisioning (NVFlare re-reads every participant's private key, about 0.1 s each).
    """

    MANIFEST_VERSION = 1

    def __init__(self, module, project: dict, he: bool, pin: str | None, zips: bool = False):
        p = module.params
        self.module = module
        self.project = project
        self.he = he
        self.pin = pin
        # Zips are wanted with a PIN (encrypted) or with zip: true (plain).
        self.want_zips = bool(pin) or zips
        self.root = p["workspace"]
        self.name = p["name"]
        self.yml_path = os.path.join(self.root, "project.yml")
        self.state_dir = os.path.join(self.root, self.name, "state")
        self.kits_dir = os.path.join(self.root, "kits")
        self.zips_dir = os.path.join(self.root, "zips")
        self.manifest_path = os.path.join(self.state_dir, "federated.nvflare.json")
        self.participants = [x["name"] for x in project["participants"]]
        self.wanted_yml = render(project).encode("utf-8")
        self.old_yml = _read_bytes(self.yml_path)
        self.old_state = _read_bytes(os.path.join(self.state_dir, "cert.json"))
        self.new_state = self.old_state
        self.reissue: list[str] = []
        self.created: list[str] = []
        self.updated: list[str] = []
        self.removed: list[str] = []
        self.zip_writes: list[str] = []
        self.zip_removes: list[str] = []
        self.state_changed = False
        self.final = {}  # participant -> (tree, dirs) the kit holds after the run

    # -- reading -----------------------------------------------------------------------------

    def check_root_ca(self, now):
        """Fail on an expired root CA, warn on one about to expire, and list stale certificates."""
        if not self.old_state:
            return
        from cryptography import x509

        state = json.loads(self.old_state)
        root = x509.load_pem_x509_certificate(state["root_cert"].encode("ascii"))
        end = _kit.not_valid_after(root)
        if end <= now:
            self.module.fail_json(
                msg=f"root CA of project {self.name} in {self.state_dir} expired on {end.isoformat()}: "
                "every kit of the project needs a new CA; provision into a new workspace"
            )
        if end - now < datetime.timedelta(days=RENEW_DAYS):
            self.module.warn(
                f"root CA of project {self.name} expires on {end.isoformat()}: "
                "plan a new workspace (a new CA) before then"
            )
        self.reissue = stale_subjects(state, self.project, now)

    def _he_digests(self) -> dict:
        if not self.he:
            return {}
        return {n: _sha256(_read_bytes(os.path.join(self.state_dir, n))) for n in HE_STATE_FILES}

    def _listing(self, folder, suffix=""):
        if not os.path.isdir(folder):
            return []
        return sorted(n for n in os.listdir(folder) if not n.startswith(".") and n.endswith(suffix))

    def unchanged_since_last_run(self) -> bool:
        """True when the manifest proves that provisioning again would change nothing."""
        try:
            with open(self.manifest_path) as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            return False
        expect = {
            "version": self.MANIFEST_VERSION,
            "nvflare": NVFLARE_VERSION,
            "project_yml": _sha256(self.wanted_yml),
            "cert_json": _sha256(self.old_state),
            "he": self._he_digests(),
        }
        if any(manifest.get(k) != v for k, v in expect.items()) or self.reissue:
            return False
        if self.old_yml != self.wanted_yml or self._listing(self.kits_dir) != sorted(self.participants):
            return False
        kits, zips = manifest.get("kits", {}), manifest.get("zips", {})
        for part in self.participants:
            path = os.path.join(self.kits_dir, part)
            tree = _kit.read_tree(path)
            if kits.get(part) != _kit.tree_digest(tree):
                return False
            self.final[part] = (tree, _kit.list_dirs(path))
        want_zips = sorted(part + ".zip" for part in self.participants) if self.want_zips else []
        if self._listing(self.zips_dir, ".zip") != want_zips:
            return False
        for part in self.participants if self.want_zips else []:
            path = os.path.join(self.zips_dir, part + ".zip")
            entry = zips.get(part) or {}
            if entry.get("sha256") != _kit.file_sha256(path) or entry.get("kit") != kits.get(part):
                return False
            if entry.get("encrypted", True) != bool(self.pin):
                return False
            if self.pin and not _kit.zip_pin_ok(path, self.pin):
                return False
        return True

    # -- planning ------------------------------------------------------------------------------

    def plan(self, tmp_root: str):
        """Provision into TMP_ROOT and compare the result with the workspace."""
        self.new_kits, self.new_state_dir = provision_into(
            tmp_root, self.project, self.state_dir, self.he, self.reissue
        )
        for part in self.participants:
            new_path = os.path.join(self.new_kits, part)
            new_tree = _kit.read_tree(new_path)
            old_path = os.path.join(self.kits_dir, part)
            old_tree = _kit.read_tree(old_path) if os.path.isdir(old_path) else None
            if old_tree is None:
                self.created.append(part)
                self.final[part] = (new_tree, _kit.list_dirs(new_path))
            elif _kit.same_kit(old_tree, new_tree):
                self.final[part] = (old_tree, _kit.list_dirs(old_path))
            else:
                self.updated.append(part)
                self.final[part] = (new_tree, _kit.list_dirs(new_path))
        self.removed = [d for d in self._listing(self.kits_dir) if d not in self.participants]

        existing = self._listing(self.zips_dir, ".zip")
        if self.want_zips:
            try:
                with open(self.manifest_path) as f:
                    known = json.load(f).get("zips", {})
            except (OSError, ValueError):
                known = {}
            for part in self.participants:
                if part in self.created or part in self.updated or not self._zip_current(part, known.get(part)):
                    self.zip_writes.append(part)
            self.zip_removes = [z for z in existing if z[:-4] not in self.participants]
        else:
            self.zip_removes = existing

        self.new_state = _read_bytes(os.path.join(self.new_state_dir, "cert.json"))
        self.state_changed = self.new_state != self.old_state or any(
            _read_bytes(os.path.join(self.new_state_dir, n)) != _read_bytes(os.path.join(self.state_dir, n))
            for n in (HE_STATE_FILES if self.he else ())
        )

    def _zip_current(self, part: str, known: dict | None) -> bool:
        """Whether the zip of PART opens with the PIN and holds the kit as it stands."""
        path = os.path.join(self.zips_dir, part + ".zip")
        tree = self.final[part][0]
        if (
            known
            and known.get("sha256") == _kit.file_sha256(path)
            and known.get("kit") == _kit.tree_digest(tree)
            and known.get("encrypted", True) == bool(self.pin)
        ):
            # The zip is the one the last run wrote for this very kit: only the PIN is in question.
            return not self.pin or _kit.zip_pin_ok(path, self.pin)
        try:
            kit = _kit.read_zip(path, self.pin)
        except _kit.KitError:
            return False
        if any(bool(info.flag_bits & 0x1) != bool(self.pin) for info in _zip_infos(path) if not info.is_dir()):
            return False  # encrypted where a plain zip is wanted, or the other way round
        return _kit.digest(kit.files) == _kit.digest({k: v[0] for k, v in tree.items()})

    @property
    def yml_changed(self) -> bool:
        return self.old_yml != self.wanted_yml

    @property
    def changed(self) -> bool:
        return bool(
            self.yml_changed
            or self.state_changed
            or self.created
            or self.updated
            or self.removed
            or self.zip_writes
            or self.zip_removes
        )

    # -- writing -------------------------------------------------------------------------------

    def commit(self, tmp_root: str):
        os.makedirs(self.state_dir, 0o700, exist_ok=True)
        # 1. The CA state first: kits written later can always be rebuilt from it.
        if self.new_state != self.old_state:
            _kit.write_atomic(os.path.join(self.state_dir, "cert.json"), self.new_state, 0o600)
        for n in HE_STATE_FILES if self.he else ():
            blob = _read_bytes(os.path.join(self.new_state_dir, n))
            if blob is not None and blob != _read_bytes(os.path.join(self.state_dir, n)):
                _kit.write_atomic(os.path.join(self.state_dir, n), blob, 0o600)
        # 2. The kits, each swapped in with renames.
        os.makedirs(self.kits_dir, 0o700, exist_ok=True)
        for part in self.created + self.updated:
            _replace_dir(os.path.join(self.new_kits, part), os.path.join(self.kits_dir, part), tmp_root)
        for part in self.removed:
            shutil.rmtree(os.path.join(self.kits_dir, part))
        # 3. The zips.
        if self.zip_writes:
            os.makedirs(self.zips_dir, 0o700, exist_ok=True)
        for part in self.zip_writes:
            files, dirs = self.final[part]
            _kit.write_atomic(os.path.join(self.zips_dir, part + ".zip"), _kit.zip_bytes(files, self.pin, dirs), 0o600)
        for z in self.zip_removes:
            os.unlink(os.path.join(self.zips_dir, z))
        # 4. project.yml: it says what the workspace holds.
        if self.yml_changed:
            _kit.write_atomic(self.yml_path, self.wanted_yml, 0o644)
        self.old_state = self.new_state

    def write_manifest(self):
        """Record what the workspace holds now (bookkeeping: not a change of its own)."""
        kits = {part: _kit.tree_digest(self.final[part][0]) for part in self.participants}
        manifest = {
            "version": self.MANIFEST_VERSION,
            "nvflare": NVFLARE_VERSION,
            "project_yml": _sha256(self.wanted_yml),
            "cert_json": _sha256(self.new_state),
            "he": self._he_digests(),
            "kits": kits,
            "zips": {
                part: {
                    "sha256": _kit.file_sha256(os.path.join(self.zips_dir, part + ".zip")),
                    "kit": kits[part],
                    "encrypted": bool(self.pin),
                }
                for part in (self.participants if self.want_zips else ())
            },
        }
        data = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")
        if data != _read_bytes(self.manifest_path):
            os.makedirs(self.state_dir, 0o700, exist_ok=True)
            _kit.write_atomic(self.manifest_path, data, 0o600)

    def root_ca_sha256(self) -> str | None:
        if not self.new_state:
            return None
        return _kit.pem_sha256(json.loads(self.new_state)["root_cert"].encode("ascii"), "root CA")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            workspace=dict(type="path", required=True),
            name=dict(type="str", required=True),
            server=dict(
                type="dict",
                required=True,
                options=dict(
                    name=dict(type="str", required=True),
                    org=dict(type="str", required=True),
                    fed_learn_port=dict(type="int", default=8002),
                    admin_port=dict(type="int", default=8003),
                ),
            ),
            sites=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    name=dict(type="str", required=True),
                    org=dict(type="str", required=True),
                    num_of_gpus=dict(type="int"),
                    mem_per_gpu_in_GiB=dict(type="int"),
                ),
            ),
            admins=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    email=dict(type="str", required=True),
                    org=dict(type="str", required=True),
                    role=dict(type="str", required=True),
                ),
            ),
            he=dict(type="bool", default=False),
            pin=dict(type="str", no_log=True),
            zip=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    errors = validate(p)
    if errors:
        module.fail_json(msg=f"invalid project {p['name']!r} for provisioning: " + "; ".join(errors))
    if not HAS_NVFLARE:
        module.fail_json(
            msg=missing_required_lib("nvflare", reason="to provision startup kits")
            + ". Set ansible_python_interpreter to the virtualenv that holds NVFlare.",
            exception=NVFLARE_IMPORT_ERROR,
        )
    if not _kit.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=_kit.CRYPTOGRAPHY_IMPORT_ERROR)
    if not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    if p["he"]:
        try:
            import tenseal  # noqa: F401  pylint: disable=unused-import
        except ImportError:
            module.fail_json(
                msg=missing_required_lib("tenseal", reason="for he: true (NVFlare's HEBuilder)")
                + ". Install it into the Python that runs this module (pip install tenseal), or set he: false.",
                exception=traceback.format_exc(),
            )

    ws_path = p["workspace"]
    if os.path.lexists(ws_path) and not os.path.isdir(ws_path):
        module.fail_json(msg=f"workspace {ws_path} exists and is not a folder: choose another workspace")
    project = project_dict(p)
    lock = None
    tmp_root = None
    made_ws = not os.path.lexists(ws_path)
    done = False
    try:
        if not module.check_mode:
            os.makedirs(ws_path, 0o700, exist_ok=True)
            if fcntl is not None:
                # One run at a time per workspace; opening without truncating keeps the file untouched.
                lock = os.open(os.path.join(ws_path, ".provision.lock"), os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(lock, fcntl.LOCK_EX)
        ws = Workspace(module, project, p["he"], p["pin"], p["zip"])
        ws.check_root_ca(datetime.datetime.now(datetime.timezone.utc))
        if not ws.unchanged_since_last_run():
            tmp_root = tempfile.mkdtemp(prefix=".provision-", dir=None if module.check_mode else ws_path)
            ws.plan(tmp_root)
            if ws.changed and not module.check_mode:
                ws.commit(tmp_root)
            if not module.check_mode:
                ws.write_manifest()
        # Before the first real run there is no CA yet; check mode's was a throwaway.
        root_sha = ws.root_ca_sha256() if (ws.old_state or not module.check_mode) else None
        done = True
    except ProvisionError as e:
        module.fail_json(msg=f"provisioning project {p['name']} with NVFlare failed: {e}")
    except (OSError, ValueError, KeyError, _kit.KitError) as e:
        module.fail_json(
            msg=f"provisioning project {p['name']} in {ws_path} failed: {e}: check the workspace",
            exception=traceback.format_exc(),
        )
    finally:
        if tmp_root and os.path.isdir(tmp_root):
            shutil.rmtree(tmp_root, ignore_errors=True)
        if lock is not None:
            os.close(lock)
        if not done and made_ws and not module.check_mode:
            # A first run that failed leaves no half-made workspace behind.
            shutil.rmtree(ws_path, ignore_errors=True)

    result = {
        "changed": ws.changed,
        "kits": {part: os.path.join(ws.kits_dir, part) for part in ws.participants},
        "root_ca_sha256": root_sha,
        "project_yml": ws.yml_path,
        "changes": {
            "created": ws.created,
            "updated": ws.updated,
            "removed": ws.removed,
            "reissued": sorted(ws.reissue),
        },
    }
    if ws.want_zips:
        result["zips"] = {part: os.path.join(ws.zips_dir, part + ".zip") for part in ws.participants}
    if module._diff:
        result["diff"] = {
            "before_header": ws.yml_path,
            "after_header": ws.yml_path,
            "before": ws.old_yml.decode("utf-8") if ws.old_yml else "",
            "after": ws.wanted_yml.decode("utf-8"),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
