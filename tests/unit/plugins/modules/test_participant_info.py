"""federated.nvflare.participant_info: one read-only look at a participant's host.

The kit comparisons run against kits installed by federated.nvflare.startup_kit (the module the
roles run when the look reports a difference), so "current" means what startup_kit would not
change. The account checks use root with O(account=false), since unit tests create no users."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from ansible_collections.federated.nvflare.plugins.filter.kit_source_digest import kit_source_digest

RESOURCES = {"num_of_gpus": 0, "mem_per_gpu_in_GiB": 0, "class_allow_list": []}


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def host(tmp_path, kits):
    """A converged client host under TMP_PATH: home, virtualenv, staged and installed kit, data."""
    home = tmp_path / "home"
    home.mkdir(mode=0o750)
    home.chmod(0o750)
    venv = tmp_path / "venv"
    _executable(venv / "bin" / "python", f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    staging = tmp_path / "kits"
    staging.mkdir(mode=0o700)
    staged = staging / "site-1.zip"
    shutil.copyfile(kits.site1_zip, staged)
    staged.chmod(0o600)
    data = tmp_path / "data"
    data.mkdir(mode=0o750)
    data.chmod(0o750)
    dest = tmp_path / "site-1"
    args = {
        "user": "root",
        "home": str(home),
        "account": False,
        "venv": str(venv),
        "requirements": [f"nvflare=={metadata.version('nvflare')}"],
        "kit": {
            "src": str(staged),
            "src_digest": kit_source_digest(kits.site1_zip),
            "staging": str(staging),
            "dest": str(dest),
            "pin": kits.pin,
            "type": "client",
            "resources": dict(RESOURCES),
        },
        "data_dir": str(data),
    }
    return args


def _install(run_module, args):
    k = args["kit"]
    res = run_module(
        "startup_kit",
        {
            "src": k["src"],
            "dest": k["dest"],
            "pin": k["pin"],
            "participant": "site-1",
            "type": "client",
            "owner": "root",
            "group": "root",
            "resources": k["resources"],
        },
    )
    assert not res.failed, res


def test_converged_host_is_current_and_nothing_is_written(run_module, host, kits):
    _install(run_module, host)
    before = sorted(str(p) for p in Path(host["kit"]["dest"]).rglob("*"))
    res = run_module("participant_info", host, check_mode=True, secrets=[kits.pin])
    assert not res.failed, res
    assert res["changed"] is False
    assert res["runtime"] == {"current": True, "account": True, "home": True, "venv": True, "unmet": []}
    assert res["kit"] == {"current": True, "staged": True, "installed": True, "data_dir": True}
    assert sorted(str(p) for p in Path(host["kit"]["dest"]).rglob("*")) == before
    # The same in a normal run: an _info module never changes anything.
    assert run_module("participant_info", host)["kit"]["current"] is True


def test_fresh_host_is_not_current(run_module, host, tmp_path):
    shutil.rmtree(tmp_path / "venv")
    os.unlink(host["kit"]["src"])
    res = run_module("participant_info", host)
    assert not res.failed, res
    assert res["runtime"]["current"] is False
    assert res["runtime"]["venv"] is False
    assert res["runtime"]["unmet"] == ["no virtualenv"]
    assert res["kit"]["current"] is False
    assert res["kit"]["staged"] is False
    assert res["kit"]["installed"] is False


def test_missing_account_and_wrong_home(run_module, host, tmp_path):
    Path(host["home"]).chmod(0o755)
    res = run_module("participant_info", dict(host, account=True))
    assert res["runtime"]["home"] is False
    # root's passwd entry has another home and a login shell: not an account the roles made.
    assert res["runtime"]["account"] is False
    res = run_module("participant_info", dict(host, user="nvflare-no-such-user", account=True))
    assert res["runtime"]["account"] is False and res["runtime"]["current"] is False


def test_venv_with_another_version_lists_what_is_unmet(run_module, host):
    res = run_module("participant_info", dict(host, requirements=["nvflare==0.0.1", "no-such-project==1.0"]))
    assert res["runtime"]["venv"] is False
    assert res["runtime"]["unmet"] == [
        f"nvflare: {metadata.version('nvflare')} installed, 0.0.1 wanted",
        "missing: no-such-project",
    ]
    # Only pip can decide a requirement that is not a plain pin: not current.
    res = run_module("participant_info", dict(host, requirements=["nvflare>=2"]))
    assert res["runtime"]["venv"] is False and res["runtime"]["unmet"] is None


def test_staged_copy_must_be_the_controllers_kit_with_its_mode(run_module, host, kits):
    _install(run_module, host)
    other = dict(host, kit=dict(host["kit"], src_digest=kit_source_digest(kits.site1_zip_again)))
    assert run_module("participant_info", other)["kit"]["staged"] is False
    os.chmod(host["kit"]["src"], 0o644)
    res = run_module("participant_info", host)
    assert res["kit"]["staged"] is False and res["kit"]["current"] is False
    os.chmod(host["kit"]["src"], 0o600)
    os.chmod(host["kit"]["staging"], 0o755)
    assert run_module("participant_info", host)["kit"]["staged"] is False


def test_the_staged_copy_belongs_to_the_installing_account(run_module, host):
    """An unprivileged admin stages its kit as itself: a copy owned by anyone else is not current."""
    _install(run_module, host)
    assert run_module("participant_info", host)["kit"]["staged"] is True
    for owner, group in (("nobody", "root"), ("root", "nogroup"), ("no-such-user", "root")):
        other = dict(host, kit=dict(host["kit"], staging_owner=owner, staging_group=group))
        assert run_module("participant_info", other)["kit"]["staged"] is False, owner


def test_a_folder_source_is_compared_by_its_tree(run_module, host, kits, tmp_path):
    staged = Path(host["kit"]["staging"]) / "site-1"
    shutil.copytree(kits.site1_dir, staged)
    args = dict(host, kit=dict(host["kit"], src=str(staged), src_digest=kit_source_digest(kits.site1_dir), pin=None))
    assert run_module("participant_info", args)["kit"]["staged"] is True
    (staged / "readme.txt").write_text("changed\n")
    assert run_module("participant_info", args)["kit"]["staged"] is False


def test_changed_installed_kit_or_resources_is_not_current(run_module, host):
    _install(run_module, host)
    dest = Path(host["kit"]["dest"])
    changed = dict(host, kit=dict(host["kit"], resources=dict(RESOURCES, num_of_gpus=1)))
    assert run_module("participant_info", changed)["kit"]["installed"] is False
    (dest / "startup" / "fed_client.json").write_text("{}")
    res = run_module("participant_info", host)
    assert res["kit"] == {"current": False, "staged": True, "installed": False, "data_dir": True}
    shutil.rmtree(dest)
    assert run_module("participant_info", host)["kit"]["installed"] is False


def test_data_dir_needs_owner_and_mode(run_module, host):
    _install(run_module, host)
    Path(host["data_dir"]).chmod(0o755)
    res = run_module("participant_info", host)
    assert res["kit"]["data_dir"] is False and res["kit"]["current"] is False


def test_wrong_pin_is_reported_not_failed(run_module, host, kits):
    _install(run_module, host)
    res = run_module("participant_info", dict(host, kit=dict(host["kit"], pin="wrong-pin")), secrets=["wrong-pin"])
    assert not res.failed, res
    assert res["kit"]["installed"] is False
    assert res["kit"]["problem"]


def test_gpus_from_nvidia_smi_settle_the_offer_and_the_resources(run_module, host, tmp_path):
    _install(run_module, host)
    smi = _executable(tmp_path / "bin" / "nvidia-smi", "#!/bin/sh\nprintf '81559\\n40960\\n'\n").parent
    env = dict(os.environ, PATH=f"{smi}:/usr/bin:/bin")
    gpus = {"detect": True, "num_of_gpus": None, "mem_per_gpu_in_GiB": None}
    res = run_module("participant_info", dict(host, gpus=gpus), process=True, env=env)
    assert res["gpus"] == {"detected": 2, "offer": 2, "offer_mem": 40, "problem": ""}
    # The kit was installed for 0 GPUs: the detected ones make local/resources.json differ.
    assert res["kit"]["installed"] is False
    res = run_module(
        "participant_info", dict(host, gpus=dict(gpus, num_of_gpus=4, mem_per_gpu_in_GiB=7.5)), process=True, env=env
    )
    assert res["gpus"]["offer"] == 2 and res["gpus"]["offer_mem"] == 7.5


def test_no_nvidia_smi_offers_nothing_and_says_why(run_module, host):
    env = dict(os.environ, PATH="/usr/bin:/bin")
    res = run_module("participant_info", dict(host, gpus={"detect": True}), process=True, env=env)
    assert res["gpus"] == {"detected": 0, "offer": 0, "offer_mem": 0, "problem": "nvidia-smi is not installed"}
    # The kit's resources were written for 0 GPUs: still current.
    _install(run_module, host)
    res = run_module("participant_info", dict(host, gpus={"detect": True}), process=True, env=env)
    assert res["kit"]["current"] is True


def test_process_service_runs_while_its_process_group_lives(run_module, host, tmp_path):
    pidfile = tmp_path / "service.pid"
    service = {"manager": "process", "pidfile": str(pidfile)}
    stopped = {"running": False, "stale": False}
    assert run_module("participant_info", dict(host, service=service))["service"] == stopped
    # The supervising loop leads the group; the NVFlare process it started is a member.
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    info = Path(host["venv"], "lib", "python3.11", "site-packages", "nvflare-2.9.0.dist-info")
    info.mkdir(parents=True)
    try:
        pidfile.write_text(f"{proc.pid}\n")
        time.sleep(0.5)
        # NVFlare installed before it started: current.
        os.utime(info, (time.time() - 60, time.time() - 60))
        assert run_module("participant_info", dict(host, service=service))["service"] == {
            "running": True,
            "stale": False,
        }
        # Installed after it started (an upgrade whose restart did not happen): stale.
        os.utime(info, (time.time() + 5, time.time() + 5))
        assert run_module("participant_info", dict(host, service=service))["service"] == {
            "running": True,
            "stale": True,
        }
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    # The member is reaped by whoever adopted it, a moment later.
    for _attempt in range(50):
        if run_module("participant_info", dict(host, service=service))["service"] == stopped:
            break
        time.sleep(0.1)
    assert run_module("participant_info", dict(host, service=service))["service"] == stopped


def test_systemd_service_without_systemctl(run_module, host):
    env = dict(os.environ, PATH="/nonexistent")
    service = {"manager": "systemd", "unit": "nvflare-site-1.service"}
    res = run_module("participant_info", dict(host, service=service), process=True, env=env)
    assert res["service"] == {"running": False, "enabled": False, "stale": False}
