"""federated.nvflare.slurm_job against stand-in squeue, sbatch and scancel on PATH.

The stand-ins keep the queue in a JSON file and log every call, so each test sees both what the
module decided and which commands it ran. They answer only the calls the module makes (squeue
--me --name --format=%i|%T|%k; sbatch --parsable --comment; scancel IDS). Real Slurm runs in the
Molecule `slurm` scenario.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ansible_collections.federated.nvflare.plugins.modules import slurm_job

NAME = "nvflare-site-1"
OTHER = "nvflare-site-2"

STAND_IN = """#!{python}
import json, os, sys
state = os.environ["FAKE_SLURM"]
queue = json.load(open(state + "/queue.json"))
with open(state + "/calls.log", "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
fail = os.environ.get("FAKE_SLURM_FAIL", "")
cmd = os.path.basename(sys.argv[0])
if cmd == fail:
    sys.stderr.write("sbatch: error: Batch job submission failed: Invalid partition name specified\\n")
    sys.exit(1)
if cmd == "squeue":
    assert "--me" in sys.argv and "--noheader" in sys.argv and "--format=%i|%T|%k" in sys.argv, sys.argv
    name = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--name="))
    for job in queue["jobs"]:
        if job["name"] == name:
            print("|".join([job["id"], job["state"], job["comment"]]))
elif cmd == "sbatch":
    assert sys.argv[1] == "--parsable", sys.argv
    comment = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--comment="))
    script = sys.argv[-1]
    name = open(script).read().split("--job-name=", 1)[1].split()[0]
    queue["next"] += 1
    queue["jobs"].append({{"id": str(queue["next"]), "state": "PENDING", "comment": comment, "name": name}})
    print(str(queue["next"]) + ";cluster")
elif cmd == "scancel":
    ids = sys.argv[1:]
    queue["jobs"] = [job for job in queue["jobs"] if job["id"] not in ids]
json.dump(queue, open(state + "/queue.json", "w"))
"""


class FakeSlurm:
    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        for cmd in ("squeue", "sbatch", "scancel"):
            path = self.bin / cmd
            path.write_text(STAND_IN.format(python=sys.executable))
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        self.queue = []

    @property
    def queue(self) -> list[dict]:
        return json.loads((self.root / "queue.json").read_text())["jobs"]

    @queue.setter
    def queue(self, jobs: list[dict]) -> None:
        top = max([int(job["id"]) for job in jobs], default=100)
        (self.root / "queue.json").write_text(json.dumps({"jobs": jobs, "next": top}))

    def calls(self, cmd: str | None = None) -> list[list[str]]:
        log = self.root / "calls.log"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [c for c in calls if cmd is None or c[0] == cmd]

    def clear_calls(self) -> None:
        (self.root / "calls.log").unlink(missing_ok=True)


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    fake = FakeSlurm(tmp_path / "slurm")
    monkeypatch.setenv("FAKE_SLURM", str(fake.root))
    monkeypatch.setenv("PATH", f"{fake.bin}{os.pathsep}{os.environ['PATH']}")
    return fake


@pytest.fixture
def site(tmp_path):
    """An installed client kit (the files the revision covers, plus runtime files it ignores)
    and its job script."""
    kit = tmp_path / "sites" / "site-1"
    (kit / "startup").mkdir(parents=True)
    (kit / "local").mkdir()
    (kit / "startup" / "fed_client.json").write_text('{"servers": []}')
    (kit / "startup" / "client.crt").write_text("certificate")
    (kit / "local" / "resources.json").write_text('{"num_of_gpus": 1}')
    (kit / "log.txt").write_text("a log line\n")
    script = kit / "slurm" / f"{NAME}.sbatch"
    script.parent.mkdir()
    script.write_text(f"#!/usr/bin/env bash\n#SBATCH --job-name={NAME}\n#SBATCH --time=1-00:00:00\n")
    return {"name": NAME, "script": str(script), "kit": str(kit)}


def job(job_id, state, comment, name=NAME):
    return {"id": str(job_id), "state": state, "comment": comment, "name": name}


def current(site):
    return slurm_job.revision(site["script"], site["kit"])


def test_revision_covers_the_script_and_the_kit_but_not_the_logs(site):
    first = current(site)
    assert first.startswith("nvflare-") and len(first) == len("nvflare-") + 12
    Path(site["kit"], "log.txt").write_text("more log\n")
    Path(site["kit"], "slurm", "nvflare-site-1-7.out").write_text("job output\n")
    assert current(site) == first
    Path(site["kit"], "local", "resources.json").write_text('{"num_of_gpus": 2}')
    second = current(site)
    assert second != first
    Path(site["script"]).write_text(Path(site["script"]).read_text().replace("1-00:00:00", "02:00:00"))
    assert current(site) not in (first, second)


def test_nothing_queued_queues_one_job_of_the_current_revision(run_module, slurm, site):
    slurm.queue = [job(7, "RUNNING", "x", name=OTHER)]
    result = run_module("slurm_job", site)
    assert result.rc == 0 and result["changed"]
    assert result["revision"] == current(site)
    assert result["submitted"] == "8"
    assert result["job_id"] == "8" and result["job_state"] == "PENDING"
    assert result["cancelled"] == [] and result["jobs"] == []
    assert slurm.calls("sbatch") == [["sbatch", "--parsable", f"--comment={current(site)}", site["script"]]]
    assert slurm.calls("scancel") == []
    assert [j["id"] for j in slurm.queue] == ["7", "8"]


def test_a_running_job_without_a_successor_gets_one(run_module, slurm, site):
    slurm.queue = [job(7, "RUNNING", current(site))]
    result = run_module("slurm_job", site)
    assert result["changed"] and result["submitted"] == "8"
    assert result["job_id"] == "7" and result["job_state"] == "RUNNING"
    assert slurm.calls("scancel") == []


def test_a_running_and_a_waiting_job_of_the_current_revision_change_nothing(run_module, slurm, site):
    slurm.queue = [job(7, "RUNNING", current(site)), job(8, "PENDING", current(site))]
    result = run_module("slurm_job", site)
    assert not result["changed"]
    assert result["submitted"] is None and result["cancelled"] == []
    assert result["job_id"] == "7"
    assert result["jobs"] == [
        {"id": "7", "state": "RUNNING", "revision": current(site)},
        {"id": "8", "state": "PENDING", "revision": current(site)},
    ]
    assert [c[0] for c in slurm.calls()] == ["squeue"]


def test_stale_jobs_are_replaced_successor_first(run_module, slurm, site):
    slurm.queue = [job(7, "RUNNING", "nvflare-000000000000"), job(8, "PENDING", "nvflare-000000000000")]
    result = run_module("slurm_job", site)
    assert result["changed"]
    assert result["cancelled"] == ["8", "7"] and result["submitted"] == "9"
    assert result["job_id"] == "9"
    # Waiting stale job out, the new one in, then the running one cancelled: the new one takes over.
    assert [c[0] for c in slurm.calls()] == ["squeue", "scancel", "sbatch", "scancel"]
    assert slurm.calls("scancel") == [["scancel", "8"], ["scancel", "7"]]
    assert slurm.queue == [job(9, "PENDING", current(site))]


def test_surplus_waiting_jobs_go_and_the_oldest_current_one_stays(run_module, slurm, site):
    rev = current(site)
    slurm.queue = [
        job(7, "RUNNING", rev),
        job(12, "PENDING", rev),
        job(9, "PENDING", rev),
        job(10, "PENDING", "nvflare-000000000000"),
    ]
    result = run_module("slurm_job", site)
    assert result["changed"]
    assert result["cancelled"] == ["10", "12"] and result["submitted"] is None
    assert slurm.calls("scancel") == [["scancel", "10", "12"]]
    assert [j["id"] for j in slurm.queue] == ["7", "9"]


def test_ending_jobs_are_left_alone(run_module, slurm, site):
    rev = current(site)
    slurm.queue = [job(6, "COMPLETING", "nvflare-000000000000"), job(7, "RUNNING", rev), job(8, "PENDING", rev)]
    result = run_module("slurm_job", site)
    assert not result["changed"]
    assert [c[0] for c in slurm.calls()] == ["squeue"]


def test_configuring_and_suspended_jobs_count_as_running(run_module, slurm, site):
    rev = current(site)
    slurm.queue = [job(7, "CONFIGURING", "old"), job(8, "SUSPENDED", "old"), job(9, "PENDING", rev)]
    result = run_module("slurm_job", site)
    assert result["cancelled"] == ["7", "8"] and result["submitted"] is None
    assert result["job_id"] == "9" and result["job_state"] == "PENDING"


def test_restart_replaces_current_jobs(run_module, slurm, site):
    rev = current(site)
    slurm.queue = [job(7, "RUNNING", rev), job(8, "PENDING", rev)]
    result = run_module("slurm_job", dict(site, restart=True))
    assert result["changed"]
    assert result["cancelled"] == ["8", "7"] and result["submitted"] == "9"
    assert [c[0] for c in slurm.calls()] == ["squeue", "scancel", "sbatch", "scancel"]


def test_check_mode_reports_without_queueing_or_cancelling(run_module, slurm, site):
    slurm.queue = [job(7, "RUNNING", "old"), job(8, "PENDING", "old")]
    result = run_module("slurm_job", site, check_mode=True)
    assert result["changed"]
    assert result["cancelled"] == ["8", "7"] and result["submitted"] is None
    assert result["job_id"] is None and result["job_state"] is None
    assert result["revision"] == current(site)
    assert [c[0] for c in slurm.calls()] == ["squeue"]
    assert [j["id"] for j in slurm.queue] == ["7", "8"]


def test_check_mode_before_the_kit_is_installed_counts_every_job_as_stale(run_module, slurm, tmp_path):
    slurm.queue = [job(7, "RUNNING", "nvflare-000000000000")]
    args = {"name": NAME, "script": str(tmp_path / "none.sbatch"), "kit": str(tmp_path / "none")}
    result = run_module("slurm_job", args, check_mode=True)
    assert result["changed"] and "revision" not in result
    assert result["cancelled"] == ["7"]
    assert [c[0] for c in slurm.calls()] == ["squeue"]


def test_a_missing_kit_fails_with_what_to_do(run_module, slurm, site, tmp_path):
    slurm.queue = []
    result = run_module("slurm_job", dict(site, kit=str(tmp_path / "none")))
    assert result.failed
    assert f"cannot read the job script {site['script']} or the kit in {tmp_path / 'none'}" in result["msg"]
    assert "install the kit" in result["msg"]
    assert slurm.calls("sbatch") == []


def test_sbatch_failure_says_what_sbatch_said(run_module, slurm, site, monkeypatch):
    slurm.queue = []
    monkeypatch.setenv("FAKE_SLURM_FAIL", "sbatch")
    result = run_module("slurm_job", site)
    assert result.failed
    assert result["msg"].startswith(f"sbatch could not queue a job of {NAME} from {site['script']}: sbatch: error:")
    assert "Invalid partition name specified" in result["msg"]


def test_missing_squeue_says_so(run_module, site, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run_module("slurm_job", site)
    assert result.failed
    assert result["msg"].startswith(f"squeue could not list the jobs named {NAME} (is this host a Slurm login node?): ")


def test_stopped_cancels_waiting_and_running_jobs_only(run_module, slurm):
    slurm.queue = [
        job(6, "COMPLETING", "a"),
        job(7, "RUNNING", "a"),
        job(8, "PENDING", "a"),
        job(9, "RUNNING", "b", OTHER),
    ]
    result = run_module("slurm_job", {"name": NAME, "state": "stopped"})
    assert result["changed"] and result["cancelled"] == ["7", "8"]
    assert slurm.calls("scancel") == [["scancel", "7", "8"]]
    assert [j["id"] for j in slurm.queue] == ["6", "9"]
    slurm.clear_calls()
    again = run_module("slurm_job", {"name": NAME, "state": "stopped"})
    assert not again["changed"] and again["cancelled"] == []
    assert [c[0] for c in slurm.calls()] == ["squeue"]


def test_stopped_in_check_mode_cancels_nothing(run_module, slurm):
    slurm.queue = [job(7, "RUNNING", "a")]
    result = run_module("slurm_job", {"name": NAME, "state": "stopped"}, check_mode=True)
    assert result["changed"] and result["cancelled"] == ["7"]
    assert slurm.calls("scancel") == []


def test_started_needs_the_script_and_the_kit(run_module, slurm):
    result = run_module("slurm_job", {"name": NAME})
    assert result.failed and "script" in result["msg"] and "kit" in result["msg"]


def test_a_second_run_changes_nothing(run_module, slurm, site):
    slurm.queue = []
    assert run_module("slurm_job", site)["changed"]
    # The job starts and (as the job script does) queues its successor with its own revision.
    queue = slurm.queue
    queue[0]["state"] = "RUNNING"
    queue.append(job(int(queue[0]["id"]) + 1, "PENDING", queue[0]["comment"]))
    slurm.queue = queue
    slurm.clear_calls()
    result = run_module("slurm_job", site)
    assert not result["changed"]
    assert [c[0] for c in slurm.calls()] == ["squeue"]
