"""Verify the Slurm client site that site.yml converged (testinfra, run by `molecule verify`).

slurm-login is the login node, slurmctld and the compute node; its client runs as a batch
job. The admin kit sits on slurm-server: checks that need the FLARE API run a short Python
program there through the service virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from tests.helpers import flare_admin, learning, playbooks  # noqa: E402  (the repository root, as the dashboard verifier does)
from tests.helpers.polling import wait_until  # noqa: E402

VENV = "/opt/nvflare/venv"
ADMIN = "admin@example.com"
ADMIN_KIT = f"/var/lib/nvflare/{ADMIN}"
SERVER_LOG = "/var/lib/nvflare/slurm-server/log.txt"
SITES = ["slurm-login", "slurm-site"]
JOB_NAME = "nvflare-slurm-login"
SUMMARY = "/var/lib/nvflare/admin-results/spleen_ct_segmentation.json"


def _docker(container, *argv, timeout=90):
    return subprocess.run(
        ["docker", "exec", container, *argv], capture_output=True, text=True, check=True, timeout=timeout
    ).stdout


def _admin(action, *args):
    """NVFlare's own admin command, through the admin kit on the server container."""
    return flare_admin.run(["docker", "exec", "slurm-server"], f"{VENV}/bin/python", ADMIN, ADMIN_KIT, action, *args)


def _registered():
    """Sites the server lists."""
    return _admin("registered")


def _joins():
    """How often the Slurm site joined the server (one log line per registration)."""
    out = _docker("slurm-server", "grep", "-c", "New client slurm-login@", SERVER_LOG)
    return int(out.strip() or 0)


def _jobs():
    """The site's jobs: [(id, state, tres, user)], oldest first."""
    out = _docker("slurm-login", "squeue", "--noheader", f"--name={JOB_NAME}", "--format=%i|%T|%b|%u", "--sort=i")
    return [tuple(line.split("|")) for line in out.split("\n") if line.strip()]


def _wait(predicate, timeout, step=2):
    return wait_until(predicate, timeout, step)


@pytest.fixture
def login(host):
    if host.backend.get_hostname() != "slurm-login":
        pytest.skip("not applicable: checked on the Slurm login node")
    return host


def test_client_runs_as_one_gpu_job_with_one_successor_queued(login):
    jobs = _jobs()
    running = [j for j in jobs if j[1] == "RUNNING"]
    pending = [j for j in jobs if j[1] == "PENDING"]
    assert len(running) == 1 and len(pending) == 1, jobs
    assert "gpu:1" in running[0][2], running
    assert {j[3] for j in jobs} == {"nvflare"}


def test_job_runs_the_client_of_the_shared_kit(login):
    job_id = next(j[0] for j in _jobs() if j[1] == "RUNNING")
    pids = login.check_output("pgrep -u nvflare -f 'nvflare.private.fed.app.client.client_train'").split()
    assert pids, "no NVFlare client process"
    env = login.check_output(f"tr '\\0' '\\n' < /proc/{pids[0]}/environ")
    assert f"SLURM_JOB_ID={job_id}" in env.split("\n")
    assert "PATH=/shared/nvflare/venv/bin:" in env
    assert login.file("/shared/nvflare/sites/slurm-login/startup/client.key").mode == 0o600


def test_no_client_outside_slurm_on_the_login_node(login):
    assert not login.service("nvflare-slurm-login.service").is_running
    assert not login.file("/shared/nvflare/sites/slurm-login/service.pid").exists


def test_both_sites_registered(login):
    assert _registered() == SITES


def test_spleen_job_finished_with_both_sites(login):
    summary = json.loads(_docker("slurm-server", "cat", SUMMARY))
    assert summary["status"] == "FINISHED:COMPLETED"
    # {model owner: {validating site: {metric: value}}}: each site's model is validated by every site.
    matrix = summary["cross_site_validation"]
    assert set(SITES) <= set(matrix)
    assert all(set(matrix[site]) == set(SITES) for site in SITES)
    values = [v for per_site in matrix.values() for metrics in per_site.values() for v in metrics.values()]
    assert values and all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values)


def test_the_federation_learned_on_every_site(login):
    summary = json.loads(_docker("slurm-server", "cat", SUMMARY))
    initial = {}
    for container, site in (("slurm-login", "slurm-login"), ("slurm-site", "slurm-site")):
        # The Slurm site's workspace is on the cluster's shared folder, the other under /var/lib.
        log = _docker(
            container,
            "sh",
            "-c",
            f"cat $(find /var/lib/nvflare /shared -path '*/{summary['job_id']}/log.txt' 2>/dev/null)",
        )
        initial[site] = learning.initial_dice(log, site)
    learning.check_learned(summary, initial, "slurm")


def test_scancel_hands_over_to_the_successor_which_reregisters(login):
    jobs = _jobs()
    running = next(j[0] for j in jobs if j[1] == "RUNNING")
    successor = next(j[0] for j in jobs if j[1] == "PENDING")
    joins = _joins()
    start = time.monotonic()
    login.run_expect([0], f"scancel {running}")
    assert _wait(lambda: (successor, "RUNNING") in [j[:2] for j in _jobs()], 120), _jobs()
    started = time.monotonic() - start
    assert _wait(lambda: _joins() > joins, 180), "the successor did not register with the server"
    print(f"successor running after {started:.0f} s, registered after {time.monotonic() - start:.0f} s")
    assert _registered() == SITES
    # The successor queued its own successor: again exactly one running and one waiting.
    assert _wait(lambda: sorted(j[1] for j in _jobs()) == ["PENDING", "RUNNING"], 60), _jobs()
    assert running not in [j[0] for j in _jobs()]


# -- NVFlare's own admin commands on the site's batch jobs -----------------------------------

KIT = "/shared/nvflare/sites/slurm-login"


def test_admin_restart_ends_the_job_and_its_successor_reregisters(login):
    jobs = _jobs()
    running = next(j[0] for j in jobs if j[1] == "RUNNING")
    joins = _joins()
    start = time.monotonic()
    _admin("restart", "client", "slurm-login")
    # The client exits with restart.fl, its job ends, the successor starts it again.
    assert _wait(lambda: running not in [j[0] for j in _jobs()], 120), _jobs()
    assert _wait(lambda: _joins() > joins, 180), "the successor did not register after the admin's restart"
    print(f"slurm-login registered again {time.monotonic() - start:.0f} s after the admin's restart")
    assert _wait(lambda: sorted(j[1] for j in _jobs()) == ["PENDING", "RUNNING"], 60), _jobs()
    assert not login.file(f"{KIT}/restart.fl").exists
    assert _wait(lambda: _registered() == SITES, 60)


def test_status_reports_the_slurm_site_by_its_job(login):
    status = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "status.json"
    _playbook("status.yml", "--check", "-e", f"nvflare_status_file={status}")
    report = json.loads(status.read_text())
    assert report["ok"] is True, report["problems"]
    row = next(r for r in report["participants"] if r["name"] == "slurm-login")
    assert (row["state"], row["registered"], row["nvflare_version"]) == ("running", True, "2.9.0")
    assert row["since"] and row["cert_days_left"] > 300 and row["restarts"] is None


def test_admin_shutdown_ends_the_chain_of_jobs_until_site_yml_runs(login):
    _admin("shutdown", "client", "slurm-login")
    # The running job ends; its successor starts, finds shutdown.fl and ends without a successor.
    assert _wait(lambda: _jobs() == [], 120), _jobs()
    assert login.file(f"{KIT}/shutdown.fl").exists
    time.sleep(10)
    assert _jobs() == []
    assert _wait(lambda: "slurm-login" not in _registered(), 180), _registered()
    failed = _playbook("status.yml", rc=2)
    assert "slurm-login is shut down by an NVFlare admin" in " ".join(failed.split()), failed[-3000:]
    logs = login.check_output(f"cat {KIT}/slurm/{JOB_NAME}-*.out")
    assert "was shut down by an NVFlare admin (shutdown.fl): not starting, no successor queued" in logs

    joins = _joins()
    assert _playbook("site.yml", "--limit", "localhost,slurm-login") > 0
    assert not login.file(f"{KIT}/shutdown.fl").exists
    assert _wait(lambda: sorted(j[1] for j in _jobs()) == ["PENDING", "RUNNING"], 120), _jobs()
    assert _wait(lambda: _joins() > joins, 180), "the site did not register after site.yml"
    assert _wait(lambda: _registered() == SITES, 60)


# -- a changed job script, then the teardown (last: they change what the tests above saw) ------


def _playbook(name, *args, timeout=900, rc=0):
    """Run playbooks/NAME; its output when it must fail (RC), else its total of changed tasks."""
    result = playbooks.run(name, *args, rc=rc, timeout=timeout)
    return result.output if rc else sum(result.recap.values())


def _time_limits():
    out = _docker("slurm-login", "squeue", "--noheader", f"--name={JOB_NAME}", "--format=%i|%T|%l", "--sort=i")
    return [tuple(line.split("|")) for line in out.split("\n") if line.strip()]


def _probe(*args):
    """Run the role's probe (tests/probe.yml) with ARGS; its output. It must fail."""
    inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(Path(__file__).parent / "probe.yml"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    return " ".join(output.split())


def test_probe_says_when_a_compute_node_cannot_reach_the_server(login):
    out = _probe()
    assert "A compute node of partition 'gpu' cannot reach the FL server at slurm-server:1 within 4 s" in out
    assert "Connection refused" in out
    assert "got no compute node" not in out


def test_probe_says_when_no_compute_node_is_allocated(login):
    out = _probe("-e", "client_gpu_slurm_partition=no-such-partition")
    assert "got no compute node in partition 'no-such-partition'" in out
    assert "Unable to allocate resources" in out
    assert "cannot reach the FL server" not in out


def test_changed_job_script_replaces_the_running_job(login):
    old = {j[0] for j in _jobs()}
    joins = _joins()
    changed = _playbook("site.yml", "--limit", "localhost,slurm-login", "-e", "client_gpu_slurm_time=01:30:00")
    assert changed > 0
    # The old jobs are gone; one running and one waiting job, both with the new walltime.
    assert _wait(
        lambda: (
            (jobs := _time_limits())
            and sorted(j[1] for j in jobs) == ["PENDING", "RUNNING"]
            and all(j[2] == "1:30:00" for j in jobs)
            and not old & {j[0] for j in jobs}
        ),
        180,
    ), _time_limits()
    assert _wait(lambda: _joins() > joins, 180), "the replacing job did not register with the server"
    assert _wait(lambda: _registered() == SITES, 60)


def test_teardown_cancels_the_sites_jobs(login):
    assert _jobs()
    assert _playbook("slurm_teardown.yml") > 0
    assert _wait(lambda: _jobs() == [], 60), _jobs()
    assert _playbook("slurm_teardown.yml") == 0
    assert _jobs() == []


def test_uninstall_removes_the_slurm_site_and_keeps_the_cluster_account(login):
    """uninstall.yml on the Slurm site (its jobs were cancelled above): the kit on the shared
    filesystem and the shared virtualenv go; the site's data folder and the cluster's account (not
    the collection's) stay."""
    user = _docker("slurm-login", "stat", "-c", "%U", KIT).strip()
    assert _playbook("uninstall.yml", "--limit", "localhost,slurm-login") > 0
    assert _jobs() == []
    left = _docker("slurm-login", "sh", "-c", "ls -d /shared/nvflare/sites/* /shared/nvflare/venv 2>/dev/null || true")
    assert left.split() == ["/shared/nvflare/sites/slurm-login-data"], left
    assert _docker("slurm-login", "getent", "passwd", user).startswith(f"{user}:")
    assert _playbook("uninstall.yml", "--limit", "localhost,slurm-login") == 0
