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
          - Memory per GPU in GiB that the site offers to jobs; a fraction such as V(7.5) is allowed.
        type: float
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
import io
import json
import os
import shutil
import tempfile
import traceback
import zipfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.yaml import HAS_YAML, yaml_dump

from ansible_collections.federated.nvflare.plugins.module_utils import _files, _kit, _names, _resources

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
    """NVFlare's provisioning refused the project or failed."""


class WorkspaceError(Exception):
    """The workspace cannot be provisioned into as it is (its message says why and what to do)."""


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
        if "mem_per_gpu_in_GiB" in capacity:
            capacity["mem_per_gpu_in_GiB"] = _resources.gib(capacity["mem_per_gpu_in_GiB"])
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
                _files.write_atomic(x, self._blobs[i], 0o600)

        def get_serialized_context(self, is_client=False):
            return self._blobs[1] if is_client else self._blobs[0]

    return HEBuilder, StatefulHEBuilder()


def stale_subjects(state: dict, project: dict, now) -> list[str]:
    """Participants whose stored certificate no longer fits: organisation or role changed, or it
    expires within RENEW_DAYS. NVFlare would reuse it as it is (or, for a role, refuse to run)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    stale = []
    for part in project["participants"]:
        entry = state.get(part["name"])
        if not isinstance(entry, dict) or "cert" not in entry:
            continue
        cert = x509.load_pem_x509_certificate(entry["cert"].encode("ascii"))
        if _kit.name_attr(cert.subject, NameOID.ORGANIZATION_NAME) != part["org"]:
            stale.append(part["name"])
        elif part["type"] == "admin" and _kit.name_attr(cert.subject, NameOID.UNSTRUCTURED_NAME) != part["role"]:
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
        _files.write_atomic(os.path.join(tmp_state, "cert.json"), json.dumps(state).encode("ascii"), 0o600)
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


def _zip_infos(path: str) -> list:
    with zipfile.ZipFile(path) as zf:
        return zf.infolist()


def _listing(folder: str, suffix: str = "") -> list[str]:
    """Names in FOLDER (none hidden) ending with SUFFIX, sorted; [] when there is no FOLDER."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if not n.startswith(".") and n.endswith(suffix))


class Workspace:
    """Where a project's files live in the workspace, and what it held before this run."""

    def __init__(self, params: dict, project: dict):
        self.project = project
        self.he = params["he"]
        self.pin = params["pin"]
        # Zips are wanted with a PIN (encrypted) or with zip: true (plain).
        self.want_zips = bool(self.pin) or params["zip"]
        self.root = params["workspace"]
        self.name = params["name"]
        self.yml_path = os.path.join(self.root, "project.yml")
        self.state_dir = os.path.join(self.root, self.name, "state")
        self.kits_dir = os.path.join(self.root, "kits")
        self.zips_dir = os.path.join(self.root, "zips")
        self.manifest_path = os.path.join(self.state_dir, "federated.nvflare.json")
        self.participants = [x["name"] for x in project["participants"]]
        self.wanted_yml = render(project).encode("utf-8")
        self.old_yml = _files.read_bytes(self.yml_path)
        self.old_state = _files.read_bytes(self.state_file("cert.json"))

    def state_file(self, name: str) -> str:
        return os.path.join(self.state_dir, name)

    def kit_path(self, part: str) -> str:
        return os.path.join(self.kits_dir, part)

    def zip_path(self, part: str) -> str:
        return os.path.join(self.zips_dir, part + ".zip")

    def he_digests(self) -> dict:
        if not self.he:
            return {}
        return {n: _files.sha256(_files.read_bytes(self.state_file(n))) for n in HE_STATE_FILES}

    def root_ca_sha256(self, state: bytes | None) -> str | None:
        if not state:
            return None
        return _kit.pem_sha256(json.loads(state)["root_cert"].encode("ascii"), "root CA")


def check_root_ca(ws: Workspace, now) -> tuple[list[str], list[str]]:
    """(participants whose certificate must be issued anew, warnings). Raises WorkspaceError on an
    expired root CA."""
    if not ws.old_state:
        return [], []
    from cryptography import x509

    state = json.loads(ws.old_state)
    root = x509.load_pem_x509_certificate(state["root_cert"].encode("ascii"))
    end = _kit.not_valid_after(root)
    if end <= now:
        raise WorkspaceError(
            f"root CA of project {ws.name} in {ws.state_dir} expired on {end.isoformat()}: "
            "every kit of the project needs a new CA; provision into a new workspace"
        )
    warnings = []
    if end - now < datetime.timedelta(days=RENEW_DAYS):
        warnings.append(
            f"root CA of project {ws.name} expires on {end.isoformat()}: plan a new workspace (a new CA) before then"
        )
    return stale_subjects(state, ws.project, now), warnings


def zip_current(path: str, tree: dict, pin: str | None, known: dict | None) -> bool:
    """Whether the zip at PATH opens with PIN (plain when None) and holds the kit TREE as it stands.
    KNOWN is what the manifest recorded for it."""
    if (
        known
        and known.get("sha256") == _files.file_sha256(path)
        and known.get("kit") == _kit.tree_digest(tree)
        and known.get("encrypted", True) == bool(pin)
    ):
        # The zip is the one the last run wrote for this very kit: only the PIN is in question.
        return not pin or _kit.zip_pin_ok(path, pin)
    try:
        kit = _kit.read_zip(path, pin)
    except _kit.KitError:
        return False
    if any(bool(info.flag_bits & 0x1) != bool(pin) for info in _zip_infos(path) if not info.is_dir()):
        return False  # encrypted where a plain zip is wanted, or the other way round
    return _kit.digest(kit.files) == _kit.digest({k: v[0] for k, v in tree.items()})


class Manifest:
    """NAME/state/federated.nvflare.json: what the last successful run wrote.

    When the inputs and every output still match it, a re-run is known to change nothing and
    skips provisioning (NVFlare re-reads every participant's private key, about 0.1 s each).
    """

    VERSION = 1

    def __init__(self, ws: Workspace):
        self.ws = ws
        try:
            with open(ws.manifest_path) as f:
                self.data = json.load(f)
        except (OSError, ValueError):
            self.data = None

    def known_zips(self) -> dict:
        return (self.data or {}).get("zips", {})

    def _inputs(self, state: bytes | None) -> dict:
        ws = self.ws
        return {
            "version": self.VERSION,
            "nvflare": NVFLARE_VERSION,
            "project_yml": _files.sha256(ws.wanted_yml),
            "cert_json": _files.sha256(state),
            "he": ws.he_digests(),
        }

    def unchanged(self, reissue: list[str]) -> dict | None:
        """The kits as they stand (participant -> (tree, dirs)) when the manifest proves that
        provisioning again would change nothing; None otherwise."""
        ws, data = self.ws, self.data
        if data is None or reissue or any(data.get(k) != v for k, v in self._inputs(ws.old_state).items()):
            return None
        if ws.old_yml != ws.wanted_yml or _listing(ws.kits_dir) != sorted(ws.participants):
            return None
        kits, final = data.get("kits", {}), {}
        for part in ws.participants:
            tree = _kit.read_tree(ws.kit_path(part))
            if kits.get(part) != _kit.tree_digest(tree):
                return None
            final[part] = (tree, _kit.list_dirs(ws.kit_path(part)))
        return final if self._zips_unchanged(kits) else None

    def _zips_unchanged(self, kits: dict) -> bool:
        ws = self.ws
        wanted = ws.participants if ws.want_zips else []
        if _listing(ws.zips_dir, ".zip") != sorted(part + ".zip" for part in wanted):
            return False
        for part in wanted:
            path, entry = ws.zip_path(part), self.known_zips().get(part) or {}
            if entry.get("sha256") != _files.file_sha256(path) or entry.get("kit") != kits.get(part):
                return False
            if entry.get("encrypted", True) != bool(ws.pin):
                return False
            if ws.pin and not _kit.zip_pin_ok(path, ws.pin):
                return False
        return True

    def write(self, final: dict, state: bytes | None) -> None:
        """Record what the workspace holds now (bookkeeping: not a change of its own)."""
        ws = self.ws
        kits = {part: _kit.tree_digest(final[part][0]) for part in ws.participants}
        zips = {
            part: {"sha256": _files.file_sha256(ws.zip_path(part)), "kit": kits[part], "encrypted": bool(ws.pin)}
            for part in (ws.participants if ws.want_zips else ())
        }
        manifest = dict(self._inputs(state), kits=kits, zips=zips)
        data = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")
        if data != _files.read_bytes(ws.manifest_path):
            os.makedirs(ws.state_dir, 0o700, exist_ok=True)
            _files.write_atomic(ws.manifest_path, data, 0o600)


class Changes:
    """What this run changes in the workspace, found by provisioning into a temporary folder."""

    def __init__(self, ws: Workspace, reissue: list[str], final: dict | None = None):
        self.ws = ws
        self.reissue = reissue
        self.created: list[str] = []
        self.updated: list[str] = []
        self.removed: list[str] = []
        self.zip_writes: list[str] = []
        self.zip_removes: list[str] = []
        self.state_changed = False
        self.new_state = ws.old_state
        self.new_kits = self.new_state_dir = None
        self.final = final or {}  # participant -> (tree, dirs) the kit holds after the run

    @property
    def yml_changed(self) -> bool:
        return self.ws.old_yml != self.ws.wanted_yml

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

    def plan(self, tmp_root: str, manifest: Manifest) -> None:
        """Provision into TMP_ROOT and compare the result with the workspace."""
        ws = self.ws
        self.new_kits, self.new_state_dir = provision_into(tmp_root, ws.project, ws.state_dir, ws.he, self.reissue)
        self._compare_kits()
        self._plan_zips(manifest.known_zips())
        self.new_state = _files.read_bytes(os.path.join(self.new_state_dir, "cert.json"))
        self.state_changed = self.new_state != ws.old_state or any(
            _files.read_bytes(os.path.join(self.new_state_dir, n)) != _files.read_bytes(ws.state_file(n))
            for n in (HE_STATE_FILES if ws.he else ())
        )

    def _compare_kits(self) -> None:
        ws = self.ws
        for part in ws.participants:
            new_path, old_path = os.path.join(self.new_kits, part), ws.kit_path(part)
            new_tree = _kit.read_tree(new_path)
            old_tree = _kit.read_tree(old_path) if os.path.isdir(old_path) else None
            if old_tree is not None and _kit.same_kit(old_tree, new_tree):
                self.final[part] = (old_tree, _kit.list_dirs(old_path))
                continue
            (self.created if old_tree is None else self.updated).append(part)
            self.final[part] = (new_tree, _kit.list_dirs(new_path))
        self.removed = [d for d in _listing(ws.kits_dir) if d not in ws.participants]

    def _plan_zips(self, known: dict) -> None:
        ws = self.ws
        existing = _listing(ws.zips_dir, ".zip")
        if not ws.want_zips:
            self.zip_removes = existing
            return
        for part in ws.participants:
            fresh = part not in self.created and part not in self.updated
            if not fresh or not zip_current(ws.zip_path(part), self.final[part][0], ws.pin, known.get(part)):
                self.zip_writes.append(part)
        self.zip_removes = [z for z in existing if z[:-4] not in ws.participants]


def commit(ws: Workspace, changes: Changes, tmp_root: str) -> None:
    """Write CHANGES into the workspace, the CA state first: kits written later can always be
    rebuilt from it."""
    os.makedirs(ws.state_dir, 0o700, exist_ok=True)
    if changes.new_state != ws.old_state:
        _files.write_atomic(ws.state_file("cert.json"), changes.new_state, 0o600)
    for n in HE_STATE_FILES if ws.he else ():
        blob = _files.read_bytes(os.path.join(changes.new_state_dir, n))
        if blob is not None and blob != _files.read_bytes(ws.state_file(n)):
            _files.write_atomic(ws.state_file(n), blob, 0o600)
    # The kits, each swapped in with renames.
    os.makedirs(ws.kits_dir, 0o700, exist_ok=True)
    for part in changes.created + changes.updated:
        _files.replace_dir(os.path.join(changes.new_kits, part), ws.kit_path(part), tmp_root)
    for part in changes.removed:
        shutil.rmtree(ws.kit_path(part))
    if changes.zip_writes:
        os.makedirs(ws.zips_dir, 0o700, exist_ok=True)
    for part in changes.zip_writes:
        files, dirs = changes.final[part]
        _files.write_atomic(ws.zip_path(part), _kit.zip_bytes(files, ws.pin, dirs), 0o600)
    for z in changes.zip_removes:
        os.unlink(os.path.join(ws.zips_dir, z))
    # project.yml last: it says what the workspace holds.
    if changes.yml_changed:
        _files.write_atomic(ws.yml_path, ws.wanted_yml, 0o644)


@contextlib.contextmanager
def workspace_lock(ws_path: str, check_mode: bool):
    """Create the workspace (mode 0700) and hold its lock: one run at a time per workspace.
    A first run that fails leaves no half-made workspace behind. Check mode neither creates nor locks."""
    made = not os.path.lexists(ws_path)
    lock = None
    done = False
    try:
        if not check_mode:
            os.makedirs(ws_path, 0o700, exist_ok=True)
            if fcntl is not None:
                # Opening without truncating keeps the file untouched.
                lock = os.open(os.path.join(ws_path, ".provision.lock"), os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(lock, fcntl.LOCK_EX)
        yield
        done = True
    finally:
        if lock is not None:
            os.close(lock)
        if not done and made and not check_mode:
            shutil.rmtree(ws_path, ignore_errors=True)


def provision(ws: Workspace, check_mode: bool) -> tuple[Changes, list[str]]:
    """Bring the workspace to the project (in check mode: find what that would change).
    Returns the changes and warnings for the user."""
    reissue, warnings = check_root_ca(ws, datetime.datetime.now(datetime.timezone.utc))
    manifest = Manifest(ws)
    final = manifest.unchanged(reissue)
    changes = Changes(ws, reissue, final)
    if final is not None:
        return changes, warnings
    tmp_root = tempfile.mkdtemp(prefix=".provision-", dir=None if check_mode else ws.root)
    try:
        changes.plan(tmp_root, manifest)
        if changes.changed and not check_mode:
            commit(ws, changes, tmp_root)
        if not check_mode:
            manifest.write(changes.final, changes.new_state)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return changes, warnings


def _list_of(**options) -> dict:
    return dict(type="list", elements="dict", default=[], options=options)


def argument_spec() -> dict:
    required_str = dict(type="str", required=True)
    return dict(
        workspace=dict(type="path", required=True),
        name=required_str,
        server=dict(
            type="dict",
            required=True,
            options=dict(
                name=required_str,
                org=required_str,
                fed_learn_port=dict(type="int", default=8002),
                admin_port=dict(type="int", default=8003),
            ),
        ),
        sites=_list_of(
            name=required_str, org=required_str, num_of_gpus=dict(type="int"), mem_per_gpu_in_GiB=dict(type="float")
        ),
        admins=_list_of(email=required_str, org=required_str, role=required_str),
        he=dict(type="bool", default=False),
        pin=dict(type="str", no_log=True),
        zip=dict(type="bool", default=False),
    )


def check_requirements(module: AnsibleModule) -> None:
    """Fail the module on invalid names or a missing library, before anything is written."""
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


def result_of(ws: Workspace, changes: Changes, root_sha: str | None, diff: bool) -> dict:
    result = {
        "changed": changes.changed,
        "kits": {part: ws.kit_path(part) for part in ws.participants},
        "root_ca_sha256": root_sha,
        "project_yml": ws.yml_path,
        "changes": {
            "created": changes.created,
            "updated": changes.updated,
            "removed": changes.removed,
            "reissued": sorted(changes.reissue),
        },
    }
    if ws.want_zips:
        result["zips"] = {part: ws.zip_path(part) for part in ws.participants}
    if diff:
        result["diff"] = {
            "before_header": ws.yml_path,
            "after_header": ws.yml_path,
            "before": ws.old_yml.decode("utf-8") if ws.old_yml else "",
            "after": ws.wanted_yml.decode("utf-8"),
        }
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    check_requirements(module)
    p = module.params
    try:
        with workspace_lock(p["workspace"], module.check_mode):
            ws = Workspace(p, project_dict(p))
            changes, warnings = provision(ws, module.check_mode)
            # Before the first real run there is no CA yet; check mode's was a throwaway.
            root_sha = ws.root_ca_sha256(changes.new_state) if (ws.old_state or not module.check_mode) else None
    except WorkspaceError as e:
        module.fail_json(msg=str(e))
    except ProvisionError as e:
        module.fail_json(msg=f"provisioning project {p['name']} with NVFlare failed: {e}")
    except (OSError, ValueError, KeyError, _kit.KitError) as e:
        module.fail_json(
            msg=f"provisioning project {p['name']} in {p['workspace']} failed: {e}: check the workspace",
            exception=traceback.format_exc(),
        )
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result_of(ws, changes, root_sha, module._diff))


if __name__ == "__main__":
    main()
