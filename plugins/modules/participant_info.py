#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: participant_info
short_description: Look at everything an NVIDIA FLARE participant needs on its host, in one call
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Reads, in one call and without changing anything, what the server, client_gpu and admin
    roles would otherwise check task by task - the service account and its home, the virtualenv
    and its pinned packages, the staged copy of the startup kit, the installed kit with its
    C(local/resources.json), the data folder, the GPUs, and whether the service runs.
  - The roles run their install steps only for what this module reports as not current, so a
    re-run on a converged host costs one module call instead of dozens of tasks.
  - Anything it cannot decide (a requirement that is not a plain C(name==version) pin, a kit that
    cannot be read) is reported as not current, so that the full install steps run and report
    the real problem.
  - Needs only Python's standard library on the host; the kit's certificates are checked by
    M(federated.nvflare.startup_kit) when it installs them.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only, it runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    description: It never changes anything.
    support: full
  platform:
    platforms: posix
options:
  user:
    description: The account the participant runs as.
    type: str
    required: true
  group:
    description: Its primary group, which owns its home and folders. Defaults to O(user).
    type: str
  home:
    description:
      - The account's home folder, which must be a folder owned by O(user) and O(group) with mode
        C(0750).
      - Not checked when omitted.
    type: path
  account:
    description:
      - Whether the account itself must be as the roles create it - O(home) as its home, the
        C(/usr/sbin/nologin) shell, O(group) as its primary group.
      - V(false) for an existing account the roles do not manage (a cluster user).
    type: bool
    default: true
  venv:
    description: The virtualenv the participant runs from. Not checked when omitted.
    type: path
  requirements:
    description:
      - What the virtualenv must hold. Only plain pins (C(name==version)) can be decided without
        pip; anything else makes the virtualenv count as not current.
    type: list
    elements: str
    default: []
  kit:
    description: The startup kit, staged on the host and installed in its folder.
    type: dict
    suboptions:
      src:
        description: The staged copy on the host (a zip or a folder), as the roles copy it.
        type: path
        required: true
      src_digest:
        description:
          - The digest of the kit on the controller, from the
            P(federated.nvflare.kit_source_digest#filter) filter. The staged copy is current
            only when its digest is the same.
        type: str
        required: true
      staging:
        description:
          - The folder holding staged kits, which must be owned by O(kit.staging_owner) and
            O(kit.staging_group) with mode C(0700), as must the staged copy.
        type: path
      staging_owner:
        description: The user owning the staging folder and the staged copy (the installing account).
        type: str
        default: root
      staging_group:
        description: The group owning the staging folder.
        type: str
        default: root
      dest:
        description: The folder the kit is installed in, as for M(federated.nvflare.startup_kit).
        type: path
        required: true
      pin:
        description: The PIN of an encrypted kit zip.
        type: str
      type:
        description: The kit's type.
        type: str
        choices: [server, client, admin]
        required: true
      resources:
        description:
          - The settings of C(local/resources.json), as M(federated.nvflare.startup_kit) takes
            them. With O(gpus.detect), the GPUs offered replace C(num_of_gpus) and
            C(mem_per_gpu_in_GiB).
        type: dict
        suboptions:
          data_dir:
            description: Server only. Folder for job and snapshot storage.
            type: path
          max_jobs:
            description: Server only. Jobs the server runs at the same time.
            type: int
          num_of_gpus:
            description: Client only. GPUs the site offers to jobs.
            type: int
          mem_per_gpu_in_GiB:
            description: Client only. Memory per GPU, in GiB.
            type: float
          class_allow_list:
            description: Classes to add to the allow-list.
            type: list
            elements: str
            default: []
  data_dir:
    description: A folder the participant writes, owned by O(user) and O(group) with mode C(0750).
    type: path
  gpus:
    description: Detect the host's GPUs with C(nvidia-smi) and settle what the site offers to jobs.
    type: dict
    suboptions:
      detect:
        description: Whether to run C(nvidia-smi).
        type: bool
        default: false
      num_of_gpus:
        description: GPUs to offer; at most what is detected. Null offers every detected GPU.
        type: int
      mem_per_gpu_in_GiB:
        description: Memory per GPU to offer, in GiB. Null offers the smallest detected GPU's memory.
        type: float
  service:
    description: How the participant runs.
    type: dict
    suboptions:
      manager:
        description:
          - V(systemd) (O(service.unit)), V(process) (O(service.pidfile)) or V(none).
          - V(container) is looked at by the roles with community.docker's modules; this module
            reports nothing of it.
        type: str
        choices: [systemd, process, container, none]
        default: none
      unit:
        description: The systemd unit's name.
        type: str
      pidfile:
        description: The file holding the process group id of a participant run as a plain process.
        type: path
seealso:
  - module: federated.nvflare.startup_kit
  - module: federated.nvflare.python_venv
"""

EXAMPLES = r"""
- name: Look at the client site
  federated.nvflare.participant_info:
    user: nvflare
    home: /var/lib/nvflare
    venv: /opt/nvflare/venv
    requirements: [nvflare==2.9.0, torch==2.9.1+cpu]
    kit:
      src: /var/lib/nvflare-kits/site-1.zip
      src_digest: "{{ 'workspace/zips/site-1.zip' | federated.nvflare.kit_source_digest }}"
      staging: /var/lib/nvflare-kits
      dest: /opt/nvflare/site-1
      type: client
      resources: {class_allow_list: []}
    data_dir: /var/lib/nvflare/data
    gpus: {detect: true}
    service: {manager: systemd, unit: nvflare-site-1.service}
  register: look

- name: Install the runtime only when something is missing
  ansible.builtin.include_role:
    name: federated.nvflare.client_gpu
  when: not look.runtime.current
"""

RETURN = r"""
runtime:
  description: The account, its home and the virtualenv.
  returned: always
  type: dict
  contains:
    current:
      description: Whether all of them are as wanted.
      type: bool
    account:
      description: Whether the account is as wanted (true when O(account=false)).
      type: bool
    home:
      description: Whether the home folder is as wanted.
      type: bool
    venv:
      description: Whether the virtualenv exists with every requirement at its pinned version.
      type: bool
    unmet:
      description: What the virtualenv lacks (V(null) when only pip can tell).
      type: list
      elements: str
  sample: {current: true, account: true, home: true, venv: true, unmet: []}
kit:
  description: The staged copy, the installed kit and the data folder (empty without O(kit)).
  returned: always
  type: dict
  contains:
    current:
      description: Whether all of them are as wanted.
      type: bool
    staged:
      description: Whether the staged copy is the controller's kit, with its owner and mode.
      type: bool
    installed:
      description: Whether the kit folder holds that kit and C(local/resources.json) as wanted.
      type: bool
    data_dir:
      description: Whether the data folder is as wanted (true without O(data_dir)).
      type: bool
    problem:
      description: Why the installed kit could not be compared, when it could not.
      type: str
  sample: {current: true, staged: true, installed: true, data_dir: true}
gpus:
  description: What C(nvidia-smi) found and what the site offers (empty without O(gpus.detect)).
  returned: always
  type: dict
  contains:
    detected:
      description: GPUs found.
      type: int
    offer:
      description: GPUs offered to jobs.
      type: int
    offer_mem:
      description: Memory per GPU offered, in GiB.
      type: float
    problem:
      description: Why no GPU was found.
      type: str
  sample: {detected: 0, offer: 0, offer_mem: 0, problem: nvidia-smi is not installed}
service:
  description:
    - Whether the participant runs (and, for systemd, starts at boot).
    - C(stale) is true when it runs but started before NVFlare in O(venv) was last installed - an
      upgrade whose restart did not happen (a run that stopped in between), which the roles restart.
  returned: always
  type: dict
  sample: {running: true, enabled: true, stale: false}
"""

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.federated.nvflare.plugins.module_utils import _install, _kit, _proc, _venv

NOLOGIN = "/usr/sbin/nologin"


def _stat(path):
    try:
        return os.stat(path)
    except OSError:
        return None


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def _pw(user):
    try:
        return pwd.getpwnam(user)
    except KeyError:
        return None


def _owned_folder(path, uid, group, mode):
    """Whether PATH is a folder owned by UID and GROUP (a name) with MODE."""
    st = _stat(path)
    return bool(
        st
        and stat.S_ISDIR(st.st_mode)
        and st.st_uid == uid
        and _group_name(st.st_gid) == group
        and stat.S_IMODE(st.st_mode) == mode
    )


def look_runtime(p, run):
    pw = _pw(p["user"])
    home = p["home"]
    home_ok = home is None or bool(pw and _owned_folder(home, pw.pw_uid, p["group"], 0o750))
    st = _stat(home) if home else None
    account_ok = not p["account"] or bool(
        pw
        and pw.pw_dir == home
        and pw.pw_shell == NOLOGIN
        and st is not None
        and _group_name(st.st_gid) == p["group"]
        and pw.pw_gid == st.st_gid
    )
    unmet = []
    if p["venv"]:
        venv = _venv.VirtualEnv(p["venv"], run)
        names = [n for n in map(_venv.requirement_name, p["requirements"]) if n]
        unmet = _venv.unmet(p["requirements"], venv.versions(names)) if venv.exists else ["no virtualenv"]
    venv_ok = unmet == []
    return {
        "current": account_ok and home_ok and venv_ok,
        "account": account_ok,
        "home": home_ok,
        "venv": venv_ok,
        "unmet": unmet,
    }


def _staged(k):
    """Whether the staged copy is the controller's kit, owned by the installing account, as the roles copy it."""
    owner = _pw(k["staging_owner"])
    if owner is None:
        return False
    if k["staging"] and not _owned_folder(k["staging"], owner.pw_uid, k["staging_group"], 0o700):
        return False
    st = _stat(k["src"])
    if st is None or st.st_uid != owner.pw_uid or _kit.source_digest(k["src"]) != k["src_digest"]:
        return False
    return stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) == 0o600


def look_kit(p, resources):
    k = p["kit"]
    out = {"staged": _staged(k), "installed": False, "data_dir": True}
    if p["data_dir"]:
        pw = _pw(p["user"])
        out["data_dir"] = bool(pw and _owned_folder(p["data_dir"], pw.pw_uid, p["group"], 0o750))
    if out["staged"]:
        try:
            kit = _kit.load_kit(k["src"], k["pin"])
            _kit.check_layout(kit, k["type"])
            uid = _install.resolve(p["user"], lambda n: pwd.getpwnam(n).pw_uid, "owner")
            gid = _install.resolve(p["group"], lambda n: grp.getgrnam(n).gr_gid, "group")
            plan = _install.Plan(kit, k["dest"], uid, gid, _install.wanted_resources(kit, resources))
            out["installed"] = not plan.changed
        except (_kit.KitError, OSError) as e:
            out["problem"] = str(e)
    out["current"] = out["staged"] and out["installed"] and out["data_dir"]
    return out


def look_gpus(g, module):
    smi = module.get_bin_path("nvidia-smi")
    mem_mib, problem = [], ""
    if smi is None:
        problem = "nvidia-smi is not installed"
    else:
        rc, out, err = module.run_command([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"])
        lines = [line.strip() for line in out.splitlines()] if rc == 0 else []
        mem_mib = [int(line) for line in lines if line.isdigit()]
        if not mem_mib:
            problem = f"nvidia-smi found none ({(err or out).strip()})"
    detected = len(mem_mib)
    wanted = detected if g["num_of_gpus"] is None else g["num_of_gpus"]
    mem = (min(mem_mib) // 1024 if mem_mib else 0) if g["mem_per_gpu_in_GiB"] is None else g["mem_per_gpu_in_GiB"]
    return {"detected": detected, "offer": min(wanted, detected), "offer_mem": mem, "problem": problem}


def _installed_at(venv):
    """When NVFlare was last installed into VENV (its .dist-info folder's time), or None."""
    latest = None
    for lib in ("lib", "lib64"):
        base = os.path.join(venv or "", lib)
        for python in os.listdir(base) if os.path.isdir(base) else []:
            site = os.path.join(base, python, "site-packages")
            for name in os.listdir(site) if os.path.isdir(site) else []:
                if name.startswith("nvflare-") and name.endswith(".dist-info"):
                    when = _stat(os.path.join(site, name))
                    latest = max(latest or 0, when.st_mtime) if when else latest
    return latest


def _stale(pid, venv):
    started, installed = _proc.started_at(pid), _installed_at(venv)
    # A second of slack: the process may start within the second the install ended.
    return bool(started and installed and started + 1 < installed)


def look_service(s, module, venv=None):
    if s["manager"] == "systemd":
        systemctl = module.get_bin_path("systemctl")
        if systemctl is None:
            return {"running": False, "enabled": False, "stale": False}
        argv = [systemctl, "show", s["unit"], "-p", "ActiveState", "-p", "UnitFileState", "-p", "MainPID"]
        _rc, out, _err = module.run_command(argv)
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        running = props.get("ActiveState") == "active"
        return {
            "running": running,
            "enabled": props.get("UnitFileState") == "enabled",
            "stale": running and _stale(props.get("MainPID", "0"), venv),
        }
    if s["manager"] == "process":
        try:
            with open(s["pidfile"]) as f:
                pgid = int(f.read().strip())
            os.killpg(pgid, 0)
        except (OSError, ValueError, TypeError):
            return {"running": False, "stale": False}
        # The supervising loop (the group's leader) stays across restarts; its NVFlare processes count.
        return {"running": True, "stale": _stale(_oldest_member(pgid) or pgid, venv)}
    return {}


def _oldest_member(pgid):
    """The process of process group PGID that started first, its leader (the supervising loop) aside."""
    oldest, oldest_start = None, None
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pgid:
            continue
        try:
            if os.getpgid(int(entry)) != pgid:
                continue
        except OSError:
            continue
        started = _proc.started_at(entry)
        if started is not None and (oldest_start is None or started < oldest_start):
            oldest, oldest_start = int(entry), started
    return oldest


ARGUMENT_SPEC = dict(
    user=dict(type="str", required=True),
    group=dict(type="str"),
    home=dict(type="path"),
    account=dict(type="bool", default=True),
    venv=dict(type="path"),
    requirements=dict(type="list", elements="str", default=[]),
    kit=dict(
        type="dict",
        options=dict(
            src=dict(type="path", required=True),
            src_digest=dict(type="str", required=True),
            staging=dict(type="path"),
            staging_owner=dict(type="str", default="root"),
            staging_group=dict(type="str", default="root"),
            dest=dict(type="path", required=True),
            pin=dict(type="str", no_log=True),
            type=dict(type="str", choices=["server", "client", "admin"], required=True),
            resources=dict(type="dict", options=_install.RESOURCES_OPTIONS),
        ),
    ),
    data_dir=dict(type="path"),
    gpus=dict(
        type="dict",
        options=dict(
            detect=dict(type="bool", default=False),
            num_of_gpus=dict(type="int"),
            mem_per_gpu_in_GiB=dict(type="float"),
        ),
    ),
    service=dict(
        type="dict",
        options=dict(
            manager=dict(type="str", choices=["systemd", "process", "container", "none"], default="none"),
            unit=dict(type="str"),
            pidfile=dict(type="path"),
        ),
        required_if=[("manager", "systemd", ("unit",)), ("manager", "process", ("pidfile",))],
    ),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    p["group"] = p["group"] or p["user"]

    def run(argv, env):
        return module.run_command(argv, environ_update=env or {})

    result = {"changed": False, "runtime": {}, "kit": {}, "gpus": {}, "service": {}}
    try:
        result["runtime"] = look_runtime(p, run)
    except _venv.VenvError as e:
        result["runtime"] = {"current": False, "account": None, "home": None, "venv": False, "unmet": [str(e)]}
    if p["gpus"] and p["gpus"]["detect"]:
        result["gpus"] = look_gpus(p["gpus"], module)
    if p["kit"]:
        resources = p["kit"]["resources"]
        if resources is not None and result["gpus"]:
            resources = dict(resources, num_of_gpus=result["gpus"]["offer"])
            resources["mem_per_gpu_in_GiB"] = result["gpus"]["offer_mem"]
        result["kit"] = look_kit(p, resources)
    if p["service"]:
        result["service"] = look_service(p["service"], module, p["venv"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
