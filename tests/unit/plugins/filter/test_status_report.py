"""federated.nvflare.status_report: the participants' reports and the server's view, joined."""

from __future__ import annotations

import copy

from ansible_collections.federated.nvflare.plugins.filter.status_report import status_report

SITES = ["site-1", "site-2"]


def _status(state="running", version="2.9.0", cert=300, root=300, problems=(), manager="systemd"):
    return {
        "changed": False,
        "installed": True,
        "nvflare_version": version,
        "service": {"manager": manager, "state": state, "since": "2026-12-01T10:00:00+00:00", "restarts": 0},
        "certificates": [
            {"role": "participant", "days_left": cert},
            {"role": "root CA", "days_left": root},
        ],
        "problems": list(problems),
    }


def _reports():
    return [
        {
            "name": "admin@example.com",
            "type": "admin",
            "host": "server",
            "status": _status(state="none", manager="none"),
        },
        {"name": "site-2", "type": "client", "host": "h2", "status": _status()},
        {"name": "server", "type": "server", "host": "server", "status": _status()},
        {"name": "site-1", "type": "client", "host": "h1", "status": _status()},
    ]


FEDERATION = {
    "changed": False,
    "server_status": "started",
    "server_start_time": "2026-12-01T09:00:00+00:00",
    "site_names": SITES,
    "jobs": [
        {"job_id": "j1", "name": "old", "status": "FINISHED:COMPLETED", "duration": "0:01:00"},
        {"job_id": "j2", "name": "spleen", "status": "RUNNING", "duration": "0:00:10"},
    ],
    "running_jobs": ["j2"],
}


def test_a_healthy_federation():
    status = status_report(_reports(), FEDERATION, SITES)
    assert status["ok"] is True and status["problems"] == []
    assert [r["name"] for r in status["participants"]] == ["server", "site-1", "site-2", "admin@example.com"]
    site1 = status["participants"][1]
    assert site1["registered"] is True and site1["cert_days_left"] == 300 and site1["state"] == "running"
    assert status["participants"][0]["registered"] is None
    assert status["running_jobs"] == [{"job_id": "j2", "name": "spleen", "duration": "0:00:10"}]
    assert status["nvflare_versions"] == {"2.9.0": ["admin@example.com", "server", "site-1", "site-2"]}
    lines = status["table"].splitlines()
    assert lines[0].split()[:4] == ["participant", "host", "type", "service"]
    assert "running jobs: spleen (j2, 0:00:10)" in status["table"]
    assert lines[-1] == "problems: none"


def test_every_problem_is_named():
    reports = _reports()
    reports[1]["status"] = _status(state="shut down", problems=["site-2 is shut down by an NVFlare admin"])
    reports[2]["status"] = _status(version="2.8.0")
    for r in reports:  # the root CA is in every kit: its problem once in the list
        r["status"]["problems"].append("the root CA certificate rootCA.pem (p) expires in 3 days")
    federation = dict(FEDERATION, site_names=["site-1"])
    status = status_report(reports, federation, SITES)
    assert status["ok"] is False
    problems = status["problems"]
    assert "site-2 is shut down by an NVFlare admin" in problems
    assert "site site-2 is not registered with the server" in problems
    assert problems.count("the root CA certificate rootCA.pem (p) expires in 3 days") == 1
    assert any(
        p.startswith("NVFlare releases differ between participants (2.8.0 on server; 2.9.0 on admin@example.com")
        for p in problems
    ), problems
    assert status["participants"][2]["registered"] is False
    assert "  - site site-2 is not registered with the server" in status["table"]


def test_unreachable_server_and_missing_hosts():
    reports = [r for r in _reports() if r["name"] not in ("server", "site-2")]
    reports[0]["status"] = {"changed": False, "failed": False, "msg": "unreachable"}
    federation = {"failed": True, "msg": "cannot connect to the NVFlare server server:8003"}
    status = status_report(copy.deepcopy(reports), federation, SITES)
    problems = status["problems"]
    assert problems[0] == "the admin cannot reach the server: cannot connect to the NVFlare server server:8003"
    assert "the server's host did not report" in problems
    assert "site site-2 of the project has no host in the inventory that reported it" in problems
    assert any(p.startswith("no report from admin@example.com on server") for p in problems), problems
    # Registration is unknown, not "no", when the server cannot be asked.
    assert all(r["registered"] is None for r in status["participants"])
    assert status["server"]["reachable"] is False


def test_a_participant_that_runs_an_older_release_than_installed():
    federation = dict(FEDERATION, versions={"server": "2.9.0", "site-1": "2.9.0", "site-2": "2.8.0"})
    status = status_report(_reports(), federation, SITES)
    assert status["problems"] == [
        "site-2 runs NVFlare 2.8.0 but 2.9.0 is installed: restart it (the next site.yml run does)"
    ]
    rows = {r["name"]: r for r in status["participants"]}
    assert rows["site-2"]["running_version"] == "2.8.0" and rows["server"]["running_version"] == "2.9.0"
    assert rows["admin@example.com"]["running_version"] is None
