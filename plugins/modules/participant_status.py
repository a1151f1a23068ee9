#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: participant_status
short_description: Report how an installed NVIDIA FLARE participant is doing on its host
version_added: 0.3.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Reads, without changing anything, what an operator asks about a running participant - the
    state of its service (since when, how often it was restarted), whether an NVFlare admin shut
    it down, the NVFlare release in its virtualenv, and when the certificates of its startup kit
    and the project's root CA expire.
  - The roles' C(status) entry points call it for C(playbooks/status.yml), which joins the
    reports of every host with what the server says into one table.
  - Needs only Python's standard library on the host (the certificates are read without the
    C(cryptography) package), so it also reports a participant whose virtualenv is gone.
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
  name:
    description: The participant's name in the project (server name, site name or admin e-mail).
    type: str
    required: true
  type:
    description: What the participant is.
    type: str
    choices: [server, client, admin]
    required: true
  dir:
    description: The folder its startup kit is installed in (its workspace, with C(startup/)).
    type: path
    required: true
  venv:
    description: Its virtualenv, whose NVFlare release is reported. Not read when omitted.
    type: path
  service:
    description: How it runs.
    type: dict
    default: {}
    suboptions:
      manager:
        description:
          - V(systemd) (O(service.unit)), V(process) (the process group in O(service.pidfile)),
            V(slurm) (the batch jobs named O(service.job_name) of O(service.job_user)),
            V(container) (the Docker container O(service.container), read with C(docker inspect)) or
            V(none) (an admin kit, which runs no service).
        type: str
        choices: [systemd, process, slurm, container, none]
        default: none
      unit:
        description: The systemd unit.
        type: str
      pidfile:
        description: The pid file of the process service manager, holding the process group id.
        type: path
      container:
        description: The name of the participant's Docker container.
        type: str
      job_name:
        description: The name of the site's Slurm jobs.
        type: str
      job_user:
        description: The user whose Slurm jobs they are. Defaults to the user the module runs as.
        type: str
  cert_warning_days:
    description: A certificate that expires within this many days counts as expiring.
    type: int
    default: 30
seealso:
  - module: federated.nvflare.federation_info
"""

EXAMPLES = r"""
- name: Read how site-1 is doing
  federated.nvflare.participant_status:
    name: site-1
    type: client
    dir: /var/lib/nvflare/site-1
    venv: /opt/nvflare/venv
    service:
      manager: systemd
      unit: nvflare-site-1.service
  register: site_status
"""

RETURN = r"""
installed:
  description: Whether a startup kit is installed in O(dir).
  returned: always
  type: bool
nvflare_version:
  description: The NVFlare release installed in O(venv) (null when there is none).
  returned: always
  type: str
  sample: 2.9.0
service:
  description: The participant's service.
  returned: always
  type: dict
  contains:
    manager:
      description: O(service.manager).
      type: str
    state:
      description:
        - V(running); V(shut down) (an NVFlare admin's C(shutdown) keeps it down, C(shutdown.fl) is
          in its workspace); V(stopped); V(failed) (systemd gave up on it); V(queued) (a Slurm job
          waits for resources); V(not installed) (no unit, no kit); V(none) for an admin kit.
      type: str
      sample: running
    since:
      description: When it entered its state (ISO 8601, UTC; null when unknown).
      type: str
    restarts:
      description:
        - How often its service manager started it again since it was started (systemd's
          C(NRestarts); the process service manager's restarts after an NVFlare admin's C(restart));
          null where the service manager does not count.
      type: int
    pid:
      description: Its main process (systemd, process) or its running Slurm job's id; null when not running.
      type: str
    enabled:
      description: Whether the systemd unit starts at boot (null for other service managers).
      type: bool
admin_shutdown:
  description: Whether C(shutdown.fl) of an NVFlare admin's C(shutdown) is in the workspace.
  returned: always
  type: bool
certificates:
  description: The certificates of the startup kit (its own and the root CA), soonest expiring first.
  returned: always
  type: list
  elements: dict
  contains:
    file:
      description: Path of the certificate.
      type: str
    role:
      description: V(participant) or V(root CA).
      type: str
    subject:
      description: Its subject's common name.
      type: str
    not_after:
      description: When it expires (ISO 8601, UTC).
      type: str
    days_left:
      description: Whole days until it expires (negative once it has).
      type: int
    expiring:
      description: Whether it expires within O(cert_warning_days).
      type: bool
problems:
  description: What is wrong, in words (empty when nothing is).
  returned: always
  type: list
  elements: str
"""

import base64
import datetime
import glob
import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.federated.nvflare.plugins.module_utils import _proc

_RESTART_LINE = "restart.fl: starting again"
_UTC = datetime.timezone.utc


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, _UTC).isoformat(timespec="seconds")


# -- certificates, read with the standard library -------------------------------------------------


def _tlv(data: bytes, i: int) -> tuple[int, int, int]:
    """The DER element at I: (tag, start of its content, end of its content)."""
    tag, length = data[i], data[i + 1]
    i += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[i : i + n], "big")
        i += n
    return tag, i, i + length


def _der_time(tag: int, raw: bytes) -> datetime.datetime:
    text = raw.decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime, two-digit year (RFC 5280: 50-99 is 19xx)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=_UTC)


def read_certificate(pem: str) -> tuple[str, datetime.datetime]:
    """(subject common name, not after) of the first certificate in PEM."""
    match = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem, re.S)
    if not match:
        raise ValueError("no PEM certificate")
    der = base64.b64decode("".join(match.group(1).split()))
    i = _tlv(der, _tlv(der, 0)[1])[1]  # into Certificate, into TBSCertificate
    version = _tlv(der, i)
    if version[0] == 0xA0:  # [0] version
        i = version[2]
    for _field in ("serial number", "signature algorithm", "issuer"):
        i = _tlv(der, i)[2]
    validity = _tlv(der, i)
    not_after_at = _tlv(der, validity[1])[2]  # after not before
    tag, a, b = _tlv(der, not_after_at)
    not_after = _der_time(tag, der[a:b])
    subject_tlv = _tlv(der, validity[2])
    subject = der[subject_tlv[1] : subject_tlv[2]]
    cn = ""
    at = subject.find(b"\x06\x03\x55\x04\x03")  # OID 2.5.4.3, commonName
    if at >= 0:
        value = _tlv(subject, at + 5)
        cn = subject[value[1] : value[2]].decode("utf-8", errors="replace")
    return cn, not_after


def certificates(kit: str, warning_days: int, now: datetime.datetime) -> tuple[list[dict], list[str]]:
    found, problems = [], []
    startup = os.path.join(kit, "startup")
    files = sorted(glob.glob(os.path.join(startup, "*.crt"))) + [os.path.join(startup, "rootCA.pem")]
    for path in files:
        if not os.path.isfile(path):
            continue
        role = "root CA" if path.endswith("rootCA.pem") else "participant"
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                subject, not_after = read_certificate(f.read())
        except (OSError, ValueError, IndexError) as exc:
            problems.append(f"cannot read the certificate {path}: {exc}")
            continue
        # Whole days, toward zero: 3 days and 1 hour ago is 3 days ago.
        days = int((not_after - now).total_seconds() // 1 / 86400)
        found.append(
            {
                "file": path,
                "role": role,
                "subject": subject,
                "not_after": not_after.isoformat(timespec="seconds"),
                "days_left": days,
                "expiring": days < warning_days,
            }
        )
        if days < 0:
            problems.append(f"the {role} certificate {path} ({subject}) expired {-days} days ago")
        elif days < warning_days:
            problems.append(f"the {role} certificate {path} ({subject}) expires in {days} days")
    found.sort(key=lambda c: c["days_left"])
    return found, problems


# -- the NVFlare release ---------------------------------------------------------------------------


def nvflare_version(venv: str | None) -> str | None:
    if not venv:
        return None
    for info in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "nvflare-*.dist-info")):
        match = re.match(r"nvflare-(.+)\.dist-info$", os.path.basename(info))
        if match:
            return match.group(1)
    return None


# -- the service -----------------------------------------------------------------------------------


def _systemd(module, unit: str) -> dict:
    systemctl = module.get_bin_path("systemctl")
    result = {"state": "not installed", "since": None, "restarts": None, "pid": None, "enabled": None}
    if systemctl is None or not unit:
        return result
    props = ("LoadState", "ActiveState", "Result", "ActiveEnterTimestampMonotonic", "InactiveEnterTimestampMonotonic")
    argv = [systemctl, "show", unit] + [f"--property={p}" for p in props + ("NRestarts", "MainPID", "UnitFileState")]
    _rc, out, _err = module.run_command(argv)
    p = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if p.get("LoadState") == "not-found":
        return result
    active = p.get("ActiveState")
    result["state"] = {"active": "running", "failed": "failed"}.get(active, "stopped")
    mono = p.get("ActiveEnterTimestampMonotonic" if active == "active" else "InactiveEnterTimestampMonotonic", "0")
    if mono.isdigit() and int(mono) > 0:
        try:
            result["since"] = _iso(_proc.boot_time() + int(mono) / 1e6)
        except OSError:
            pass
    result["restarts"] = int(p["NRestarts"]) if p.get("NRestarts", "").isdigit() else None
    result["pid"] = p.get("MainPID") if p.get("MainPID") not in (None, "", "0") else None
    result["enabled"] = p.get("UnitFileState") == "enabled"
    return result


def _process(pidfile: str | None, kit: str) -> dict:
    result = {"state": "stopped", "since": None, "restarts": None, "pid": None, "enabled": None}
    try:
        with open(pidfile or "") as f:
            pgid = int(f.read().strip())
    except (OSError, ValueError):
        return result
    try:
        os.killpg(pgid, 0)
    except PermissionError:
        pass  # alive, another user's
    except OSError:
        return result
    result.update(state="running", pid=str(pgid))
    result["since"] = _iso(_proc.started_at(pgid))
    try:
        with open(os.path.join(kit, "service.log"), errors="replace") as f:
            result["restarts"] = sum(_RESTART_LINE in line for line in f)
    except OSError:
        pass
    return result


def _container(module, name: str | None) -> dict:
    result = {"state": "not installed", "since": None, "restarts": None, "pid": None, "enabled": None}
    docker = module.get_bin_path("docker")
    if docker is None or not name:
        return result
    fmt = "{{.State.Status}}|{{.State.StartedAt}}|{{.RestartCount}}|{{.State.Pid}}|{{.HostConfig.RestartPolicy.Name}}"
    rc, out, _err = module.run_command([docker, "inspect", "--type=container", f"--format={fmt}", name])
    if rc != 0 or out.count("|") != 4:
        return result
    status, started, restarts, pid, policy = out.strip().split("|")
    result["state"] = "running" if status == "running" else "stopped"
    result["since"] = started if status == "running" else None
    result["restarts"] = int(restarts) if restarts.isdigit() else None
    result["pid"] = pid if status == "running" and pid not in ("", "0") else None
    # Started again by Docker after a crash and a restart of the engine or the host.
    result["enabled"] = policy in ("always", "unless-stopped", "on-failure")
    return result


def _slurm(module, job_name: str | None, job_user: str | None) -> dict:
    result = {"state": "stopped", "since": None, "restarts": None, "pid": None, "enabled": None}
    squeue = module.get_bin_path("squeue")
    if squeue is None or not job_name:
        result["state"] = "not installed"
        return result
    who = f"--user={job_user}" if job_user else "--me"
    rc, out, err = module.run_command([squeue, who, "--noheader", f"--name={job_name}", "--format=%i|%T|%S"])
    if rc != 0:
        module.fail_json(msg=f"squeue failed: {(err or out).strip()}")
    jobs = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
    running = [j for j in jobs if j[1] == "RUNNING"]
    if running:
        job_id, _state, start = running[0]
        result.update(state="running", pid=job_id)
        try:
            local = datetime.datetime.strptime(start, "%Y-%m-%dT%H:%M:%S")
            result["since"] = local.astimezone(_UTC).isoformat(timespec="seconds")
        except ValueError:
            pass
    elif jobs:
        result["state"] = "queued"
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            type=dict(type="str", choices=["server", "client", "admin"], required=True),
            dir=dict(type="path", required=True),
            venv=dict(type="path"),
            service=dict(
                type="dict",
                default={},
                options=dict(
                    manager=dict(
                        type="str", choices=["systemd", "process", "slurm", "container", "none"], default="none"
                    ),
                    container=dict(type="str"),
                    unit=dict(type="str"),
                    pidfile=dict(type="path"),
                    job_name=dict(type="str"),
                    job_user=dict(type="str"),
                ),
            ),
            cert_warning_days=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    kit = p["dir"]
    now = datetime.datetime.now(_UTC)
    installed = os.path.isdir(os.path.join(kit, "startup"))
    problems = []
    if not installed:
        problems.append(f"no startup kit in {kit}")

    manager = p["service"]["manager"]
    if manager == "systemd":
        service = _systemd(module, p["service"]["unit"])
    elif manager == "process":
        service = _process(p["service"]["pidfile"], kit)
    elif manager == "container":
        service = _container(module, p["service"]["container"])
    elif manager == "slurm":
        service = _slurm(module, p["service"]["job_name"], p["service"]["job_user"])
    else:
        service = {"state": "none", "since": None, "restarts": None, "pid": None, "enabled": None}
    service["manager"] = manager
    admin_shutdown = os.path.exists(os.path.join(kit, "shutdown.fl"))
    # A container stays up, idle, while an NVFlare admin's shutdown keeps its participant down.
    if admin_shutdown and (service["state"] != "running" or manager == "container"):
        service["state"] = "shut down"
    if manager != "none" and service["state"] != "running":
        why = " by an NVFlare admin (the next site.yml run starts it)" if service["state"] == "shut down" else ""
        problems.append(f"{p['name']} is {service['state']}{why}")

    version = nvflare_version(p["venv"])
    if p["venv"] and version is None:
        problems.append(f"no NVFlare in the virtualenv {p['venv']}")
    certs, cert_problems = certificates(kit, p["cert_warning_days"], now) if installed else ([], [])
    problems.extend(cert_problems)
    module.exit_json(
        changed=False,
        installed=installed,
        nvflare_version=version,
        service=service,
        admin_shutdown=admin_shutdown,
        certificates=certs,
        problems=problems,
    )


if __name__ == "__main__":
    main()
