#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: federation_info
short_description: Report the state of an NVIDIA FLARE federation, optionally waiting for sites
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Logs in to the NVFlare server with an admin startup kit (FLARE API secure session) and
    reports the server status, the client sites registered with it and the jobs it knows.
  - With O(wait_for_sites), polls until every named site is registered, and fails at
    O(timeout) naming the sites still missing. Use it after starting the server and clients,
    before submitting a job.
  - Read-only, it never changes the federation.
  - The session is always closed, also when a step fails.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - federated.nvflare.flare
options:
  wait_for_sites:
    description:
      - Names of client sites that must be registered with the server.
      - The module polls until all of them are, retrying the connection while the server
        comes up, and fails at O(timeout) with a message naming the missing sites.
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds to wait for O(wait_for_sites) (and for the server to accept the connection
        while waiting). Ignored without O(wait_for_sites).
    type: float
    default: 120.0
  poll_interval:
    description:
      - Seconds between two polls while waiting for O(wait_for_sites).
    type: float
    default: 2.0
  versions:
    description:
      - Also ask the server and every registered site which NVFlare release their running
        process reports (NVFlare's C(report_version) admin command), in RV(versions).
    type: bool
    default: false
  wait_for_version:
    description:
      - With O(wait_for_sites), also wait until the server and every one of those sites report
        this NVFlare release (after an upgrade, until each restarted), and fail at O(timeout)
        naming those that report another one. Implies O(versions).
    type: str
seealso:
  - module: federated.nvflare.job
notes:
  - A site that stopped without logging out stays listed until the server's heartbeat
    timeout expires (up to 10 minutes), so registered does not mean alive.
"""

EXAMPLES = r"""
- name: Wait until both hospitals are connected
  federated.nvflare.federation_info:
    admin_kit: /opt/nvflare/admin/admin@example.org
    wait_for_sites: [hospital-a, hospital-b]
    timeout: 300
  register: federation

- name: Show the registered sites
  ansible.builtin.debug:
    msg: "{{ federation.sites | map(attribute='name') | list }}"

- name: Report the federation with the admin kit set once for the FLARE modules of the block
  module_defaults:
    group/federated.nvflare.flare:
      admin_kit: /opt/nvflare/admin/admin@example.org
      connect_timeout: 30
  block:
    - name: Read the server status, sites and jobs
      federated.nvflare.federation_info:
      register: federation
"""

RETURN = r"""
server_status:
  description:
    - Run status of the server engine as NVFlare reports it (C(stopped) when no job runs,
      C(started) while one does).
  returned: success
  type: str
  sample: stopped
server_start_time:
  description: When the server process started (ISO 8601, UTC).
  returned: success
  type: str
  sample: "2026-11-23T18:02:05.508634+00:00"
sites:
  description: Client sites registered with the server, sorted by name.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Site name.
      type: str
      sample: site-1
    last_connect_time:
      description: Last time the site contacted the server (ISO 8601, UTC).
      type: str
      sample: "2026-11-23T18:02:18.361566+00:00"
site_names:
  description: Names of the registered sites, sorted.
  returned: success
  type: list
  elements: str
  sample: [site-1, site-2]
missing_sites:
  description: Sites of O(wait_for_sites) that are not registered (empty on success).
  returned: always
  type: list
  elements: str
  sample: []
jobs:
  description: Jobs the server knows (in this admin's study), oldest first.
  returned: success
  type: list
  elements: dict
  contains:
    job_id:
      description: Job ID.
      type: str
    name:
      description: Job name.
      type: str
    status:
      description: Job status, for example C(RUNNING) or C(FINISHED:COMPLETED).
      type: str
    submit_time:
      description: Submission time (ISO 8601).
      type: str
    duration:
      description: Run time so far or in total (H:MM:SS.ffffff).
      type: str
versions:
  description:
    - The NVFlare release each running participant reports, C(server) for the server, by site
      name for the sites (null for one that did not answer). Empty without O(versions).
  returned: success
  type: dict
  sample: {server: 2.9.0, site-1: 2.9.0, site-2: 2.9.0}
running_jobs:
  description: IDs of the jobs running now.
  returned: success
  type: list
  elements: str
  sample: []
"""

import time
import traceback

from ansible_collections.federated.nvflare.plugins.module_utils import _flare


def _versions(sess) -> dict:
    """{participant: release} from NVFlare's report_version; None for one that did not answer."""
    try:
        reply = sess.report_version("all") or {}
    except Exception:  # a site that is restarting: asked again at the next poll
        return {}
    versions = {}
    for name, value in reply.items():
        version = value.get("version") if isinstance(value, dict) else value
        versions[str(name)] = str(version) if version and version != "unknown" else None
    return versions


def _read(sess, versions: bool = False) -> dict:
    info = sess.get_system_info()
    sites = sorted(
        ({"name": c.name, "last_connect_time": _flare.iso_time(c.last_connect_time)} for c in info.client_info),
        key=lambda s: s["name"],
    )
    jobs = [
        {
            "job_id": j.get("job_id"),
            "name": j.get("job_name"),
            "status": j.get("status"),
            "submit_time": j.get("submit_time"),
            "duration": j.get("duration"),
        }
        for j in sess.list_jobs()
    ]
    return {
        "server_status": info.server_info.status,
        "server_start_time": _flare.iso_time(info.server_info.start_time),
        "sites": sites,
        "site_names": [s["name"] for s in sites],
        "jobs": jobs,
        "running_jobs": [j.job_id for j in info.job_info],
        "versions": _versions(sess) if versions else {},
    }


def _behind(result: dict, wanted: list, version: str | None) -> list:
    """Of the server and the sites WANTED, those that do not report VERSION yet."""
    if not version:
        return []
    reported = result.get("versions") or {}
    return [name for name in ["server", *wanted] if reported.get(name) != version]


def _gather(module, kit, username) -> dict:
    p = module.params
    wanted = list(dict.fromkeys(p["wait_for_sites"]))
    version = p["wait_for_version"]
    ask_versions = p["versions"] or bool(version)
    if not wanted:
        with _flare.session(kit, username, p["connect_timeout"]) as sess:
            result = _read(sess, ask_versions)
        result["missing_sites"] = []
        return result

    deadline = time.monotonic() + p["timeout"]
    last_error = None
    result = None
    while True:
        try:
            with _flare.session(kit, username, p["connect_timeout"]) as sess:
                while True:
                    result = _read(sess, ask_versions)
                    missing = [s for s in wanted if s not in result["site_names"]]
                    behind = _behind(result, wanted, version)
                    if (not missing and not behind) or time.monotonic() >= deadline:
                        break
                    time.sleep(min(p["poll_interval"], max(0.0, deadline - time.monotonic())))
            break
        except _flare.FlareError as exc:
            # The server may still be starting: retry the connection until the deadline.
            last_error = exc
            if not exc.retryable or time.monotonic() + p["poll_interval"] >= deadline:
                break
            time.sleep(p["poll_interval"])

    if result is None:
        if not last_error.retryable:
            raise last_error
        raise _flare.FlareError(
            f"sites {', '.join(wanted)} not confirmed within {p['timeout']:g} s: {last_error.msg}", missing_sites=wanted
        )
    missing = [s for s in wanted if s not in result["site_names"]]
    result["missing_sites"] = missing
    behind = [name for name in _behind(result, wanted, version) if name not in missing]
    if behind and not missing:
        reported = ", ".join(f"{name}: {result['versions'].get(name) or 'no answer'}" for name in behind)
        raise _flare.FlareError(
            f"not every participant runs NVFlare {version} after {p['timeout']:g} s ({reported}); a participant "
            f"whose virtualenv was upgraded runs the old release until it restarts: check its service",
            **result,
        )
    if missing:
        registered = ", ".join(result["site_names"]) or "none"
        raise _flare.FlareError(
            f"sites not registered with the NVFlare server {kit.endpoint} after {p['timeout']:g} s: "
            f"{', '.join(missing)} (registered: {registered}); check that these clients run, that their kits name "
            f"this server and that they can reach it (client log: <client workspace>/log.txt)",
            **result,
        )
    return result


def main():
    module = _flare.flare_module(
        dict(
            wait_for_sites=dict(type="list", elements="str", default=[]),
            timeout=dict(type="float", default=120.0),
            poll_interval=dict(type="float", default=2.0),
            versions=dict(type="bool", default=False),
            wait_for_version=dict(type="str"),
        ),
        seconds=("connect_timeout", "timeout", "poll_interval"),
    )
    try:
        kit, username = _flare.open_kit(module)
        result = _gather(module, kit, username)
    except _flare.FlareError as exc:
        result = dict(exc.result)
        result.setdefault("missing_sites", [])
        module.fail_json(msg=exc.msg, **result)
    except Exception as exc:  # an NVFlare API error the module has no better words for
        module.fail_json(
            msg=f"NVFlare federation query failed: {type(exc).__name__}: {exc}",
            exception=traceback.format_exc(),
            missing_sites=list(module.params["wait_for_sites"]),
        )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
