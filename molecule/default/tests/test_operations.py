"""Day two on the converged federation (testinfra, run by `molecule verify` after test_federation.py).

NVFlare's own admin restart and shutdown on the systemd units, status.yml, site.yml --check
--diff, job.yml, an upgrade in lockstep and uninstall.yml, in this order: each changes what the
next one finds. No test here takes testinfra's `host` fixture: pytest runs the tests of a
module that are not parametrized by host after those that are, in the order of the file, so
test_federation.py's checks see the federation as converge left it, and these run in sequence.
The hosts are reached with `docker exec`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from tests.helpers import flare_admin, jobs, playbooks, wheels  # noqa: E402  (the repository root, as the other verifiers do)
from tests.helpers.polling import wait_until as _wait  # noqa: E402

VENV = "/opt/nvflare/venv"
ADMIN = "admin@example.com"
ADMIN_KIT = f"/var/lib/nvflare/{ADMIN}"
SITES = ["site-1", "site-2"]
UNITS = {"server": "nvflare-server.service", "site-1": "nvflare-site-1.service", "site-2": "nvflare-site-2.service"}
UPGRADE = "2.9.0.post1"
INSTALLED = "import importlib.metadata as m; print(m.version('nvflare'))"


def _in(container, *argv, check=True):
    proc = subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{container}: {argv} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def _exists(container, path):
    return subprocess.run(["docker", "exec", container, "test", "-e", path], capture_output=True).returncode == 0


def _active(container, unit):
    return _in(container, "systemctl", "is-active", unit, check=False).strip() == "active"


def _main_pid(container, unit):
    return _in(container, "systemctl", "show", "-p", "MainPID", "--value", unit).strip()


def _admin(action, *args):
    """NVFlare's own admin command, through the admin kit on the server container."""
    return flare_admin.run(["docker", "exec", "server"], f"{VENV}/bin/python", ADMIN, ADMIN_KIT, action, *args)


def _registered():
    try:
        return _admin("registered")
    except AssertionError:
        return []  # the server is restarting


def _playbook(name, *args, rc=0):
    return playbooks.run(name, *args, rc=rc).output


def _recap(out):
    return playbooks.Run(0, out).recap


def _scratch(name):
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / name


# -- status.yml on the healthy federation ------------------------------------------------------


def test_status_of_the_healthy_federation():
    """status.yml: one row per participant, nothing wrong; the fact's data in the JSON file."""
    out = _playbook("status.yml", "--check", "-e", f"nvflare_status_file={_scratch('status.json')}")
    assert "problems: none" in out, out[-3000:]
    report = json.loads(_scratch("status.json").read_text())
    assert report["ok"] is True and report["problems"] == []
    rows = {r["name"]: r for r in report["participants"]}
    assert set(rows) == {"server", "site-1", "site-2", ADMIN}
    for name in ("server", "site-1", "site-2"):
        assert rows[name]["state"] == "running" and rows[name]["restarts"] is not None, rows[name]
        assert 300 < rows[name]["cert_days_left"] <= 366 and 300 < rows[name]["root_ca_days_left"] <= 366
        assert rows[name]["running_version"] == rows[name]["nvflare_version"] == "2.9.0"
    assert rows["site-1"]["registered"] is True and rows["site-2"]["registered"] is True
    assert report["nvflare_versions"] == {"2.9.0": sorted(rows)}
    # test_federation.py killed the server's process; systemd restarted it, and counted it.
    assert rows["server"]["restarts"] >= 1


# -- NVFlare's own admin commands on the systemd units -------------------------------------------


def test_admin_restart_of_a_site_brings_it_back_registered():
    unit = UNITS["site-1"]
    before = _main_pid("site-1", unit)
    start = time.monotonic()
    _admin("restart", "client", "site-1")
    # The client exits 0 with restart.fl; systemd starts it again, sub_start.sh removes the file.
    assert _wait(lambda: _main_pid("site-1", unit) not in ("0", before), 90), _in("site-1", "systemctl", "status", unit)
    assert _wait(lambda: "site-1" in _registered(), 180), "site-1 did not re-register after the admin's restart"
    print(f"site-1 registered again {time.monotonic() - start:.0f} s after the admin's restart")
    assert not _exists("site-1", "/var/lib/nvflare/site-1/restart.fl")
    assert _active("site-1", unit)


def test_admin_restart_of_the_server_brings_it_back_and_the_sites_reconnect():
    unit = UNITS["server"]
    before = _main_pid("server", unit)
    start = time.monotonic()
    _admin("restart", "server")
    assert _wait(lambda: _main_pid("server", unit) not in ("0", before), 90), _in("server", "systemctl", "status", unit)
    assert _wait(lambda: _registered() == SITES, 240), "the sites did not reconnect after the admin's server restart"
    print(f"server back with both sites {time.monotonic() - start:.0f} s after the admin's restart")
    assert not _exists("server", "/var/lib/nvflare/server/restart.fl")


def test_admin_shutdown_keeps_a_site_down_until_site_yml_runs():
    unit = UNITS["site-2"]
    _admin("shutdown", "client", "site-2")
    assert _wait(lambda: not _active("site-2", unit), 90), _in("site-2", "systemctl", "status", unit, check=False)
    assert _exists("site-2", "/var/lib/nvflare/site-2/shutdown.fl")
    # It stays down, across a restart of the host too (the unit's condition), until a playbook run.
    time.sleep(15)
    assert not _active("site-2", unit)
    subprocess.run(["docker", "restart", "site-2"], check=True, capture_output=True, timeout=120)
    booted = ("running", "degraded")
    assert _wait(lambda: _in("site-2", "systemctl", "is-system-running", check=False).strip() in booted, 120)
    assert not _active("site-2", unit)
    assert _in("site-2", "systemctl", "is-enabled", unit).strip() == "enabled"
    assert _wait(lambda: "site-2" not in _registered(), 180), _registered()

    # status.yml names it and fails; read-only, the same in check mode.
    for extra in ([], ["--check"]):
        out = _playbook("status.yml", *extra, "-e", f"nvflare_status_file={_scratch('status-down.json')}", rc=2)
        text = " ".join(out.split())
        assert "site-2 is shut down by an NVFlare admin (the next site.yml run starts it)" in text, out[-3000:]
        assert "site site-2 is not registered with the server" in text
    report = json.loads(_scratch("status-down.json").read_text())
    rows = {r["name"]: r for r in report["participants"]}
    assert rows["site-2"]["state"] == "shut down" and rows["site-2"]["registered"] is False
    assert rows["site-1"]["state"] == "running" and rows["site-1"]["registered"] is True

    # The next site.yml run is the explicit start: it reports the site changed, and it registers.
    recap = _recap(_playbook("site.yml", "--limit", "localhost,site-2"))
    assert recap["site-2"] > 0, recap
    assert _active("site-2", unit)
    assert not _exists("site-2", "/var/lib/nvflare/site-2/shutdown.fl")
    assert _wait(lambda: _registered() == SITES, 180), "site-2 did not register after site.yml"


def test_check_diff_on_the_converged_federation_changes_nothing():
    """site.yml --check --diff on the converged hosts: no failed task, nothing to change."""
    output = _playbook("site.yml", "--check", "--diff")
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+).*failed=(\d+)", output, re.M)
    assert {host for host, _, _ in recap} >= {"server", "site-1", "site-2", "localhost"}, output[-3000:]
    assert all(changed == "0" and failed == "0" for _, changed, failed in recap), output[-4000:]


# -- playbooks/job.yml: any job folder, its sites' logs, list and abort ---------------------------


def _numpy_job(folder, script_args):
    """A copy of the small numpy test job on the controller, with its own script arguments."""
    return jobs.numpy_job(_scratch("jobs") / folder, script_args)


def _log_folders():
    return sorted(Path(tempfile.gettempdir()).glob("nvflare-job-logs-*"))


def test_job_yml_failing_job_names_the_site_and_collects_the_logs():
    before = _log_folders()
    job = _numpy_job("numpy_fail", "--fail-on site-2")
    out = _playbook("job.yml", "-e", f"job_dir={job}", "-e", "admin_job_timeout=300", rc=2)
    text = " ".join(out.split())
    assert "ended with status FINISHED:EXECUTION_EXCEPTION" in text, out[-4000:]
    assert "failing site(s): site-2" in text, out[-4000:]
    assert "last lines of site-2's job log" in text and "np_train.py failed on purpose on site-2" in text
    job_id = re.search(r"NVFlare job numpy_job \(([0-9a-f-]{36})\)", text).group(1)
    results = f"/var/lib/nvflare/admin-results/{job_id}"
    failing = f"{results}/sites/site-2/log.txt"
    assert "np_train.py failed on purpose on site-2" in _in("server", "cat", failing)
    # Owned like the downloaded result around it (the installing account's), readable by all.
    owner = _in("server", "stat", "-c", "%U", results).strip()
    assert _in("server", "stat", "-c", "%U %a", failing).split() == [owner, "644"]
    assert _exists("server", f"{results}/sites/site-1/log.txt")
    assert _exists("server", f"{results}/workspace/log.txt")  # the server's side, downloaded
    # Nothing of it is left on the controller.
    assert _log_folders() == before


def test_job_yml_submits_without_waiting_lists_and_aborts_by_folder():
    job = _numpy_job("numpy_sleep", "--sleep 600")
    _playbook("job.yml", "-e", f"job_dir={job}", "-e", "job_wait=false")
    listed = _playbook("job.yml", "-e", "job_action=list")
    line = next(x for x in listed.splitlines() if "numpy_job" in x and ("RUNNING" in x or "SUBMITTED" in x))
    job_id = re.search(r"[0-9a-f-]{36}", line).group(0)

    aborted = _playbook("job.yml", "-e", "job_action=abort", "-e", f"job_dir={job}")
    assert _recap(aborted)["server"] > 0, aborted[-3000:]
    listed = _playbook("job.yml", "-e", "job_action=list")
    assert re.search(rf"{job_id}\s+FINISHED:ABORTED", listed), listed[-3000:]
    # By its id, again: nothing left to abort.
    again = _playbook("job.yml", "-e", "job_action=abort", "-e", f"job_id={job_id}")
    assert _recap(again)["server"] == 0, again[-3000:]


def test_job_yml_refuses_an_unclear_request_and_leaves_nothing_behind():
    before = _log_folders()
    out = _playbook("job.yml", "-e", "job_action=abort", rc=2)
    assert "Ask for one of: submit" in " ".join(out.split())
    assert _log_folders() == before


# -- backup.yml / restore.yml (the server's job store and the controller's workspace are lost) ------


def _jobs():
    """NVFlare's job list, through the FLARE API: {job id: status}."""
    return _admin("jobs")


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_then_restore_after_losing_the_job_store_and_the_workspace():
    before = _jobs()
    assert len(before) >= 3, before  # the converge's job and job.yml's
    backups = _scratch("backups")
    out = _playbook("backup.yml", "-e", f"nvflare_backup_dir={backups}", "-e", "nvflare_backup_name=day-two")
    folder = backups / "day-two"
    assert _mode(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "provisioning.tar.gz", "server.tar.gz"]
    assert all(_mode(p) == 0o600 for p in folder.iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["project"] == "molecule" and {a["name"] for a in manifest["archives"]} == {"provisioning", "server"}
    assert "PRIVATE KEY" not in out  # the root CA's key is in the archive, never in the output

    # The server host loses its job store, the controller its provisioning workspace (the root CA).
    workspace = _scratch("provision")
    site_pids = {s: _main_pid(s, UNITS[s]) for s in SITES}
    _in("server", "systemctl", "stop", UNITS["server"])
    _in("server", "rm", "-rf", "/var/lib/nvflare/server-data")
    shutil.move(workspace, _scratch("provision.lost"))
    try:
        start = time.monotonic()
        restore = ("restore.yml", "-e", f"nvflare_backup={folder}", "-e", "nvflare_submit_job=false")
        run = playbooks.run(*restore)
        print(f"restore run: {time.monotonic() - start:.0f} s")
        recap, changed = run.recap, {h: run.changed_tasks(h) for h in ["localhost", "server", *SITES]}
        # The same root CA: provisioning found its workspace, the sites' kits did not change and
        # their services were not touched; they reconnect to the restored server.
        assert recap["site-1"] == recap["site-2"] == 0, changed
        assert recap["localhost"] > 0 and recap["server"] > 0, changed
        assert {s: _main_pid(s, UNITS[s]) for s in SITES} == site_pids
        assert _wait(lambda: _registered() == SITES, 120), _registered()
        # The same job history, through NVFlare's own job list.
        after = _jobs()
        assert {k: after.get(k) for k in before} == before, (before, after)
        assert _in("server", "stat", "-c", "%U", "/var/lib/nvflare/server-data/jobs-storage").strip() == "nvflare"
        # Nothing left to restore: a second run changes nothing.
        again = playbooks.run(*restore)
        assert set(again.recap.values()) == {0}, {h: again.changed_tasks(h) for h in again.recap}
    finally:
        if not workspace.exists():
            shutil.move(_scratch("provision.lost"), workspace)
        shutil.rmtree(_scratch("provision.lost"), ignore_errors=True)


# -- upgrade in lockstep (the federation then runs another release) -------------------------------


def test_upgrade_in_lockstep_restarts_each_participant_once():
    """nvflare_version changed: every venv upgraded from the wheelhouse, each service restarted once."""
    wheelhouse = Path(os.environ["NVFLARE_WHEELHOUSE"])
    # The same code as the pinned release, under a bumped version (tests/helpers/wheels.py),
    # in the wheelhouse the test hosts mount: the only release the hosts can upgrade to offline.
    bumped = wheels.bumped_wheel(wheelhouse / "nvflare-2.9.0-py3-none-any.whl", UPGRADE, wheelhouse)
    try:
        since = {c: _in(c, "date", "+%s").strip() for c in UNITS}
        start = time.monotonic()
        out = _playbook("site.yml", "-e", f"nvflare_version={UPGRADE}")
        print(f"upgrade run: {time.monotonic() - start:.0f} s")
        recap = _recap(out)
        assert all(recap[c] > 0 for c in UNITS), recap
        for container, unit in UNITS.items():
            assert _in(container, f"{VENV}/bin/python", "-c", INSTALLED).strip() == UPGRADE, container
            journal = _in(container, "journalctl", "-u", unit, "--since", f"@{since[container]}", "-o", "cat")
            starts = [line for line in journal.splitlines() if line.startswith("Started ")]
            assert len(starts) == 1, (container, journal[-2000:])
        # The admin side waited until every participant reported the new release; it still does.
        assert _admin("versions") == {"server": UPGRADE, "site-1": UPGRADE, "site-2": UPGRADE}
        assert _registered() == SITES
        # The status is clean: one release everywhere, the admin's included.
        report = _scratch("status-upgraded.json")
        _playbook("status.yml", "-e", f"nvflare_version={UPGRADE}", "-e", f"nvflare_status_file={report}")
        data = json.loads(report.read_text())
        assert data["nvflare_versions"] == {UPGRADE: [ADMIN, "server", "site-1", "site-2"]}
        assert all(r["running_version"] in (UPGRADE, None) for r in data["participants"])
    finally:
        bumped.unlink(missing_ok=True)


# -- uninstall (the very end: nothing of the federation is left) ----------------------------------


def _left(container):
    """What of the federation is on CONTAINER: units, the service account, folders."""
    # (systemctl exits 1 when no unit matches.)
    units = _in(container, "systemctl", "list-unit-files", "nvflare-*", "--no-legend", check=False).split()
    account = subprocess.run(["docker", "exec", container, "getent", "passwd", "nvflare"], capture_output=True)
    folders = _in(container, "sh", "-c", "ls -d /opt/nvflare* /var/lib/nvflare* /var/lib/nvflare/* 2>/dev/null || true")
    return {"units": units, "account": account.returncode == 0, "folders": sorted(folders.split())}


def _mlflow_left():
    """What of MLflow is on the server host: account, virtualenv, configuration, data."""
    paths = "/opt/mlflow /etc/mlflow /var/lib/mlflow /var/lib/mlflow/mlflow.db"
    account = subprocess.run(["docker", "exec", "server", "getent", "passwd", "mlflow"], capture_output=True)
    found = _in("server", "sh", "-c", f"ls -d {paths} 2>/dev/null || true").split()
    return sorted(found + (["account"] if account.returncode == 0 else []))


def test_uninstall_removes_the_federation_and_keeps_the_data_unless_purged():
    changed = _recap(_playbook("uninstall.yml"))
    assert all(changed[c] > 0 for c in UNITS), changed
    kept = {
        "server": ["/var/lib/nvflare", "/var/lib/nvflare/admin-results", "/var/lib/nvflare/server-data"],
        "site-1": ["/var/lib/nvflare", "/var/lib/nvflare/site-1-data"],
        "site-2": ["/var/lib/nvflare", "/var/lib/nvflare/site-2-data"],
    }
    for container in UNITS:
        assert _left(container) == {"units": [], "account": False, "folders": kept[container]}, container
    # The job store and the results are kept as they were.
    assert _in("server", "sh", "-c", "ls /var/lib/nvflare/admin-results | wc -l").strip() != "0"
    assert _in("server", "sh", "-c", "ls /var/lib/nvflare/server-data | wc -l").strip() != "0"

    # MLflow (nvflare_mlflow) on the server host: its unit, virtualenv and account go, its runs stay.
    assert _in("server", "systemctl", "list-unit-files", "mlflow.service", "--no-legend", check=False).strip() == ""
    assert _mlflow_left() == ["/etc/mlflow", "/var/lib/mlflow", "/var/lib/mlflow/mlflow.db"]

    assert set(_recap(_playbook("uninstall.yml")).values()) == {0}
    purged = _recap(_playbook("uninstall.yml", "-e", "nvflare_purge_data=true"))
    assert all(purged[c] > 0 for c in UNITS), purged
    for container in UNITS:
        assert _left(container) == {"units": [], "account": False, "folders": []}, container
    assert _mlflow_left() == []
