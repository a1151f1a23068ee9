# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filter that joins what every participant's host and the server report into one status."""

from __future__ import annotations

DOCUMENTATION = r"""
name: status_report
short_description: Join the participants' reports and the server's view into one federation status
version_added: 0.3.0
author: federated.nvflare contributors (@federated-nvflare)
description:
  - Used by C(playbooks/status.yml). Takes the reports that the roles' C(status) entry points
    collected on each host (M(federated.nvflare.participant_status)) and what the server said
    (M(federated.nvflare.federation_info), through the admin kit) and returns one status of the
    federation - a row per participant, the problems found, and a table to print.
  - A problem is anything an operator must act on - a participant whose service does not run, a
    site that is not registered with the server, NVFlare releases that differ between
    participants (NVFlare needs them in lockstep), a certificate that expires within the warning
    window, a server the admin cannot reach.
options:
  _input:
    description:
      - The participants' reports, each a dict with V(name), V(type) (V(server), V(client) or
        V(admin)), V(host) (the inventory host) and V(status) (the registered result of
        M(federated.nvflare.participant_status)).
    type: list
    elements: dict
    required: true
  federation:
    description:
      - The registered result of M(federated.nvflare.federation_info) (a failed one when the
        server could not be reached; its C(msg) is reported).
    type: dict
    required: true
  sites:
    description: The names of the sites the project has (they must be registered).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Join the reports
  ansible.builtin.set_fact:
    nvflare_status: "{{ reports | federated.nvflare.status_report(federation, sites) }}"
"""

RETURN = r"""
_value:
  description: The federation's status.
  type: dict
  contains:
    ok:
      description: Whether nothing is wrong.
      type: bool
    problems:
      description: What is wrong, one sentence each.
      type: list
      elements: str
    participants:
      description:
        - One row per participant - V(name), V(type), V(host), V(state), V(since), V(restarts),
          V(registered) (sites; null for the server and admins), V(nvflare_version) (installed),
          V(running_version) (what its process reports to the server),
          V(cert_days_left), V(root_ca_days_left), V(problems).
      type: list
      elements: dict
    server:
      description: V(reachable), V(status) and V(start_time) as the server reports them.
      type: dict
    running_jobs:
      description: The jobs running now (V(job_id), V(name), V(duration)).
      type: list
      elements: dict
    nvflare_versions:
      description: The NVFlare releases found, each with the participants that have it.
      type: dict
    table:
      description: The rows as a text table, with the running jobs and the problems below it.
      type: str
"""

_ORDER = {"server": 0, "client": 1, "admin": 2}
_COLUMNS = (
    ("participant", "name"),
    ("host", "host"),
    ("type", "type"),
    ("service", "state"),
    ("since", "since"),
    ("restarts", "restarts"),
    ("registered", "registered"),
    ("nvflare", "nvflare_version"),
    ("cert days", "cert_days_left"),
    ("root CA days", "root_ca_days_left"),
)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return str(value)


def _days(certs: list, role: str):
    days = [c.get("days_left") for c in certs or [] if c.get("role") == role]
    return min(days) if days else None


def status_report(reports: list, federation: dict, sites: list) -> dict:
    reachable = not federation.get("failed") and "site_names" in federation
    registered = set(federation.get("site_names") or [])
    problems: list[str] = []
    if not reachable:
        problems.append(f"the admin cannot reach the server: {federation.get('msg', 'no answer')}")

    rows = []
    versions: dict[str, list[str]] = {}
    for report in sorted(reports, key=lambda r: (_ORDER.get(r.get("type"), 9), r.get("name", ""))):
        status = report.get("status") or {}
        name, kind = report.get("name"), report.get("type")
        service = status.get("service") or {}
        row_problems = list(status.get("problems") or [])
        if status.get("failed") or "service" not in status:
            row_problems.append(f"no report from {name} on {report.get('host')}: {status.get('msg', 'not read')}")
        is_site = kind == "client"
        if is_site and reachable and name not in registered:
            row_problems.append(f"site {name} is not registered with the server")
        version = status.get("nvflare_version")
        if version:
            versions.setdefault(version, []).append(name)
        # What the running process reports (the server's report_version), against what is installed.
        running = (federation.get("versions") or {}).get("server" if kind == "server" else name)
        if running and version and running != version:
            row_problems.append(
                f"{name} runs NVFlare {running} but {version} is installed: restart it (the next site.yml run does)"
            )
        rows.append(
            {
                "name": name,
                "type": kind,
                "host": report.get("host"),
                "state": service.get("state", "unknown") if kind != "admin" else "-",
                "since": service.get("since"),
                "restarts": service.get("restarts"),
                "registered": (name in registered) if is_site and reachable else None,
                "nvflare_version": version,
                "running_version": running,
                "cert_days_left": _days(status.get("certificates"), "participant"),
                "root_ca_days_left": _days(status.get("certificates"), "root CA"),
                "problems": row_problems,
            }
        )
        problems.extend(row_problems)

    if not any(r["type"] == "server" for r in rows):
        problems.append("the server's host did not report")
    reported = {r["name"] for r in rows if r["type"] == "client"}
    for site in sites:
        if site not in reported:
            problems.append(f"site {site} of the project has no host in the inventory that reported it")
    if len(versions) > 1:
        listing = "; ".join(f"{v} on {', '.join(sorted(names))}" for v, names in sorted(versions.items()))
        problems.append(f"NVFlare releases differ between participants ({listing}): NVFlare needs them in lockstep")

    running_ids = set(federation.get("running_jobs") or [])
    running = [
        {"job_id": j.get("job_id"), "name": j.get("name"), "duration": j.get("duration")}
        for j in federation.get("jobs") or []
        if j.get("job_id") in running_ids or j.get("status") == "RUNNING"
    ]
    # Problems repeat on every row that shares a certificate (the root CA): once each in the list.
    problems = list(dict.fromkeys(problems))
    return {
        "ok": not problems,
        "problems": problems,
        "participants": rows,
        "server": {
            "reachable": reachable,
            "status": federation.get("server_status"),
            "start_time": federation.get("server_start_time"),
        },
        "running_jobs": running,
        "nvflare_versions": {v: sorted(n) for v, n in versions.items()},
        "table": _table(rows, running, problems),
    }


def _table(rows: list, running: list, problems: list) -> str:
    cells = [[column[0] for column in _COLUMNS]]
    cells += [[_cell(row[column[1]]) for column in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    lines.append("")
    if running:
        lines.append("running jobs: " + ", ".join(f"{j['name']} ({j['job_id']}, {j['duration']})" for j in running))
    else:
        lines.append("running jobs: none")
    if problems:
        lines.append("problems:")
        lines += [f"  - {p}" for p in problems]
    else:
        lines.append("problems: none")
    return "\n".join(lines)


class FilterModule:
    def filters(self):
        return {"status_report": status_report}
