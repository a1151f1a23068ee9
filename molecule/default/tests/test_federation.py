"""Verify the federation that site.yml converged (testinfra, run by `molecule verify`).

The admin kit sits on the server host; checks that need the FLARE API run a short
Python program there with the admin kit, through the service virtualenv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.helpers import flare_admin, learning  # noqa: E402  (the repository root, as the dashboard verifier does)

VENV = "/opt/nvflare/venv"
ADMIN = "admin@example.com"
ADMIN_KIT = f"/var/lib/nvflare/{ADMIN}"
SITES = ["site-1", "site-2"]
SUMMARY = "/var/lib/nvflare/admin-results/spleen_ct_segmentation.json"


def _participant(host):
    groups = host.ansible.get_variables()["group_names"]
    return ("server", "localhost") if "nvflare_server" in groups else ("client", host.backend.get_hostname())


def _unit(host):
    kind, _ = _participant(host)
    return "nvflare-server.service" if kind == "server" else f"nvflare-{host.backend.get_hostname()}.service"


def _admin(action, *args):
    """NVFlare's own admin command, through the admin kit on the server container."""
    return flare_admin.run(["docker", "exec", "server"], f"{VENV}/bin/python", ADMIN, ADMIN_KIT, action, *args)


def _registered():
    """Sites the server lists."""
    return _admin("registered")


def _wait(predicate, timeout, step=3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the service is coming back
            pass
        time.sleep(step)
    return False


def test_service_active_enabled_and_unprivileged(host):
    svc = host.service(_unit(host))
    assert svc.is_running and svc.is_enabled
    pid = host.check_output(f"systemctl show -p MainPID --value {_unit(host)}")
    user = host.check_output(f"ps -o user= -p {pid}")
    assert user.strip() == "nvflare"


def test_private_keys_are_0600_and_owned_by_the_service_user(host):
    keys = host.check_output("find /var/lib/nvflare -name '*.key'").split()
    assert keys
    for key in keys:
        f = host.file(key)
        assert f.mode == 0o600, key
        assert f.user == "nvflare", key


def test_job_storage_is_not_under_tmp(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: server only")
    res = json.loads(host.file("/var/lib/nvflare/server/local/resources.json").content_string)
    assert "/tmp/nvflare" not in json.dumps(res)


def test_both_sites_registered(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: checked from the admin kit on the server host")
    assert _registered() == SITES


def test_spleen_job_finished_with_cross_site_dice(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: the admin kit lives on the server host")
    summary = json.loads(host.file(SUMMARY).content_string)
    assert summary["status"] == "FINISHED:COMPLETED"
    matrix = summary["cross_site_validation"]
    assert matrix, "no cross-site validation results"
    values = [v for per_site in matrix.values() for metrics in per_site.values() for v in metrics.values()]
    sites_seen = {site for per_site in matrix.values() for site in per_site}
    assert sites_seen == set(SITES)
    assert values and all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values)


def test_the_federation_learned_on_every_site(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: the admin kit lives on the server host")
    summary = json.loads(host.file(SUMMARY).content_string)
    initial = {}
    for site in SITES:
        log = subprocess.run(
            ["docker", "exec", site, "cat", f"/var/lib/nvflare/{site}/{summary['job_id']}/log.txt"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        initial[site] = learning.initial_dice(log, site)
    learning.check_learned(summary, initial, "default")


def test_site_container_restart_comes_back_and_reregisters(host):
    if host.backend.get_hostname() != "site-1":
        pytest.skip("not applicable: one site is enough")
    subprocess.run(["docker", "restart", "site-1"], check=True, capture_output=True)
    assert _wait(lambda: host.service("nvflare-site-1.service").is_running, 120)
    assert _wait(lambda: "site-1" in _registered(), 180), "site-1 did not re-register"


def test_killed_server_is_restarted(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: server only")
    unit = "nvflare-server.service"
    before = host.check_output(f"systemctl show -p MainPID --value {unit}").strip()
    host.run(f"kill -9 {before}")
    assert _wait(
        lambda: host.check_output(f"systemctl show -p MainPID --value {unit}").strip() not in ("0", before), 60
    ), "systemd did not restart the server"
    assert _wait(lambda: host.socket("tcp://0.0.0.0:8002").is_listening, 120)
    assert _wait(lambda: _registered() == SITES, 180), "sites did not come back after the server restart"


def _playbook(name, *args, rc=0):
    inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(root / "playbooks" / name), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=root,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == rc, output[-4000:]
    return output


def _scratch(name):
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / name


def _site_yml(*args):
    return _playbook("site.yml", *args)


def test_status_of_the_healthy_federation(host):
    """status.yml: one row per participant, nothing wrong; the fact's data in the JSON file."""
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: run once")
    out = _playbook("status.yml", "--check", "-e", f"nvflare_status_file={_scratch('status.json')}")
    assert "problems: none" in out, out[-3000:]
    report = json.loads(_scratch("status.json").read_text())
    assert report["ok"] is True and report["problems"] == []
    rows = {r["name"]: r for r in report["participants"]}
    assert set(rows) == {"server", "site-1", "site-2", ADMIN}
    for name in ("server", "site-1", "site-2"):
        assert rows[name]["state"] == "running" and rows[name]["restarts"] is not None, rows[name]
        assert 300 < rows[name]["cert_days_left"] <= 366 and 300 < rows[name]["root_ca_days_left"] <= 366
    assert rows["site-1"]["registered"] is True and rows["site-2"]["registered"] is True
    assert report["nvflare_versions"] == {"2.9.0": sorted(rows)}
    # The killed server of the test above was restarted by systemd: counted.
    assert rows["server"]["restarts"] >= 1


# -- NVFlare's own admin commands on the systemd units ---------------------------------------


def _main_pid(host, unit):
    return host.check_output(f"systemctl show -p MainPID --value {unit}").strip()


def test_admin_restart_of_a_site_brings_it_back_registered(host):
    if host.backend.get_hostname() != "site-1":
        pytest.skip("not applicable: one site is enough")
    unit = "nvflare-site-1.service"
    before = _main_pid(host, unit)
    start = time.monotonic()
    _admin("restart", "client", "site-1")
    # The client exits 0 with restart.fl; systemd starts it again, sub_start.sh removes the file.
    assert _wait(lambda: _main_pid(host, unit) not in ("0", before), 90), host.run(f"systemctl status {unit}").stdout
    assert _wait(lambda: "site-1" in _registered(), 180), "site-1 did not re-register after the admin's restart"
    print(f"site-1 registered again {time.monotonic() - start:.0f} s after the admin's restart")
    assert not host.file("/var/lib/nvflare/site-1/restart.fl").exists
    assert host.service(unit).is_running


def test_admin_restart_of_the_server_brings_it_back_and_the_sites_reconnect(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: server only")
    unit = "nvflare-server.service"
    before = _main_pid(host, unit)
    start = time.monotonic()
    _admin("restart", "server")
    assert _wait(lambda: _main_pid(host, unit) not in ("0", before), 90), host.run(f"systemctl status {unit}").stdout
    assert _wait(lambda: _registered() == SITES, 240), "the sites did not reconnect after the admin's server restart"
    print(f"server back with both sites {time.monotonic() - start:.0f} s after the admin's restart")
    assert not host.file("/var/lib/nvflare/server/restart.fl").exists


def test_admin_shutdown_keeps_a_site_down_until_site_yml_runs(host):
    if host.backend.get_hostname() != "site-2":
        pytest.skip("not applicable: one site is enough")
    unit = "nvflare-site-2.service"
    _admin("shutdown", "client", "site-2")
    assert _wait(lambda: not host.service(unit).is_running, 90), host.run(f"systemctl status {unit}").stdout
    assert host.file("/var/lib/nvflare/site-2/shutdown.fl").exists
    # It stays down, across a restart of the host too (the unit's condition), until a playbook run.
    time.sleep(15)
    assert not host.service(unit).is_running
    subprocess.run(["docker", "restart", "site-2"], check=True, capture_output=True, timeout=120)
    assert _wait(lambda: host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded"), 120)
    assert not host.service(unit).is_running and host.service(unit).is_enabled
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

    proc = _site_yml("--limit", "localhost,site-2")
    recap = dict(re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", proc, re.M))
    assert int(recap["site-2"]) > 0, proc[-3000:]
    assert host.service(unit).is_running
    assert not host.file("/var/lib/nvflare/site-2/shutdown.fl").exists
    assert _wait(lambda: _registered() == SITES, 180), "site-2 did not register after site.yml"


def test_check_diff_on_the_converged_federation_changes_nothing():
    """site.yml --check --diff on the converged hosts: no failed task, nothing to change."""
    output = _site_yml("--check", "--diff")
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+).*failed=(\d+)", output, re.M)
    assert {host for host, _, _ in recap} >= {"server", "site-1", "site-2", "localhost"}, output[-3000:]
    assert all(changed == "0" and failed == "0" for _, changed, failed in recap), output[-4000:]


# -- playbooks/job.yml: any job folder, its sites' logs, list and abort (last: they add jobs) -------

NUMPY_JOB = Path(__file__).resolve().parents[3] / "tests" / "functional" / "federation" / "jobs" / "numpy_job"


def _numpy_job(folder, script_args):
    """A copy of the small numpy test job on the controller, with its own script arguments."""
    dest = _scratch("jobs") / folder
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(NUMPY_JOB, dest)
    config = dest / "app" / "config" / "config_fed_client.json"
    data = json.loads(config.read_text())
    data["executors"][0]["executor"]["args"]["task_script_args"] = script_args
    config.write_text(json.dumps(data, indent=2))
    return dest


def test_job_yml_failing_job_names_the_site_and_collects_the_logs(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: the admin kit and the results live on the server host")
    job = _numpy_job("numpy_fail", "--fail-on site-2")
    out = _playbook("job.yml", "-e", f"job_dir={job}", "-e", "admin_job_timeout=300", rc=2)
    text = " ".join(out.split())
    assert "ended with status FINISHED:EXECUTION_EXCEPTION" in text, out[-4000:]
    assert "failing site(s): site-2" in text, out[-4000:]
    assert "last lines of site-2's job log" in text and "np_train.py failed on purpose on site-2" in text
    job_id = re.search(r"NVFlare job numpy_job \(([0-9a-f-]{36})\)", text).group(1)
    results = f"/var/lib/nvflare/admin-results/{job_id}"
    failing = host.file(f"{results}/sites/site-2/log.txt")
    assert failing.exists and "np_train.py failed on purpose on site-2" in failing.content_string
    # Owned like the downloaded result around it (the installing account's), readable by all.
    assert failing.user == host.file(results).user and failing.mode == 0o644
    assert host.file(f"{results}/sites/site-1/log.txt").exists
    assert host.file(f"{results}/workspace/log.txt").exists  # the server's side, downloaded
    # Nothing of it is left on the controller.
    assert not [p for p in Path(tempfile.gettempdir()).glob("nvflare-job-logs-*")]


def test_job_yml_submits_without_waiting_lists_and_aborts_by_folder(host):
    if _participant(host)[0] != "server":
        pytest.skip("not applicable: the admin kit lives on the server host")
    job = _numpy_job("numpy_sleep", "--sleep 600")
    _playbook("job.yml", "-e", f"job_dir={job}", "-e", "job_wait=false")
    listed = _playbook("job.yml", "-e", "job_action=list")
    line = next(x for x in listed.splitlines() if "numpy_job" in x and ("RUNNING" in x or "SUBMITTED" in x))
    job_id = re.search(r"[0-9a-f-]{36}", line).group(0)

    aborted = _playbook("job.yml", "-e", "job_action=abort", "-e", f"job_dir={job}")
    assert re.search(r"^server\s+: ok=\d+\s+changed=[1-9]", aborted, re.M), aborted[-3000:]
    listed = _playbook("job.yml", "-e", "job_action=list")
    assert re.search(rf"{job_id}\s+FINISHED:ABORTED", listed), listed[-3000:]
    # By its id, again: nothing left to abort.
    again = _playbook("job.yml", "-e", "job_action=abort", "-e", f"job_id={job_id}")
    assert re.search(r"^server\s+: ok=\d+\s+changed=0", again, re.M), again[-3000:]


def test_job_yml_refuses_an_unclear_request():
    out = _playbook("job.yml", "-e", "job_action=abort", rc=2)
    assert "Ask for one of: submit" in " ".join(out.split())
