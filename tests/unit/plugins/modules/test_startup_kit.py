"""federated.nvflare.startup_kit against real NVFlare kits and real `zip -P` archives."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes


def root_sha(kit_dir: Path) -> str:
    cert = x509.load_pem_x509_certificate((kit_dir / "startup" / "rootCA.pem").read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex()


def args(src, dest, **kw):
    base = {"src": str(src), "dest": str(dest), "participant": "site-1", "type": "client"}
    base.update(kw)
    return base


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_installs_dashboard_zip_with_modes_and_facts(run_module, kits, tmp_path):
    dest = tmp_path / "opt" / "site-1"
    res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    assert not res.failed, res
    assert res["changed"] is True
    assert res["participant"] == "site-1"
    assert res["org"] == "org_a"
    assert res["type"] == "client"
    assert res["role"] is None
    assert 355 <= res["days_left"] <= 360
    assert res["not_after"].endswith("+00:00")
    assert res["root_ca_sha256"] == root_sha(kits.site1_dir)
    assert len(res["digest"]) == 64
    # Same content as NVFlare wrote, modes restored whatever the zip said.
    for rel in ("startup/fed_client.json", "startup/client.crt", "local/resources.json.default", "readme.txt"):
        assert (dest / rel).read_bytes() == (kits.site1_dir / rel).read_bytes()
        assert mode(dest / rel) == 0o644
    assert mode(dest / "startup" / "client.key") == 0o600
    for script in ("start.sh", "sub_start.sh", "stop_fl.sh"):
        assert mode(dest / "startup" / script) == 0o755
    assert (dest / "transfer").is_dir()
    assert mode(dest) == 0o755
    # Nothing left behind beside dest.
    assert sorted(p.name for p in dest.parent.iterdir()) == ["site-1"]


def test_same_kit_is_not_a_change_even_from_a_new_download(run_module, kits, tmp_path):
    dest = tmp_path / "site-1"
    first = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    assert first["changed"] is True
    assert kits.site1_zip.read_bytes() != kits.site1_zip_again.read_bytes()  # other timestamps, other salt
    for src in (kits.site1_zip, kits.site1_zip_again, kits.site1_folder_zip, kits.site1_plain_zip, kits.site1_dir):
        res = run_module("startup_kit", args(src, dest, pin=kits.pin))
        assert not res.failed, res
        assert res["changed"] is False, (src, res["changes"])
        assert res["digest"] == first["digest"]


def test_folder_and_participant_folder_zip_install_the_same(run_module, kits, tmp_path):
    a = run_module("startup_kit", args(kits.site1_dir, tmp_path / "a"))
    b = run_module("startup_kit", args(kits.site1_folder_zip, tmp_path / "b", pin=kits.pin))
    assert a["changed"] and b["changed"]
    assert a["digest"] == b["digest"]
    assert (tmp_path / "b" / "startup" / "client.crt").read_bytes() == (
        tmp_path / "a" / "startup" / "client.crt"
    ).read_bytes()
    assert not (tmp_path / "b" / "site-1").exists()


@pytest.mark.parametrize(
    "ktype, attr, participant",
    [("server", "server_zip", "fl.example.org"), ("admin", "admin_zip", "admin@example.org")],
)
def test_server_and_admin_kits(run_module, kits, tmp_path, ktype, attr, participant):
    dest = tmp_path / ktype
    res = run_module("startup_kit", args(getattr(kits, attr), dest, pin=kits.pin, participant=participant, type=ktype))
    assert not res.failed, res
    assert res["type"] == ktype and res["participant"] == participant
    assert res["root_ca_sha256"] == root_sha(kits.site1_dir)
    if ktype == "admin":
        assert res["role"] == "project_admin"
        assert mode(dest / "startup" / "fl_admin.sh") == 0o755
    else:
        assert mode(dest / "startup" / "server.key") == 0o600


def test_check_mode_writes_nothing_and_diff_lists_files(run_module, kits, tmp_path):
    dest = tmp_path / "site-1"
    res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin), check_mode=True, diff=True)
    assert res["changed"] is True
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []
    assert "startup/client.crt" in res["changes"]["added"]
    assert "startup/client.crt sha256:" in res["diff"]["after"]
    assert res["diff"]["before"] == ""

    run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    (dest / "startup" / "fed_client.json").write_text("{}")
    (dest / "startup" / "stale.pem").write_text("old")
    os.chmod(dest / "startup" / "client.key", 0o644)
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin), check_mode=True, diff=True)
    assert res["changed"] is True
    assert res["changes"] == {
        "added": [],
        "modified": ["startup/client.key", "startup/fed_client.json"],
        "removed": ["startup/stale.pem"],
    }
    assert "startup/stale.pem" in res["diff"]["before"] and "startup/stale.pem" not in res["diff"]["after"]
    assert "startup/client.key sha256:" in res["diff"]["after"] and "mode 0600" in res["diff"]["after"]
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    assert mode(dest / "startup" / "client.key") == 0o644


def test_reapply_keeps_host_settings_and_runtime_files(run_module, kits, tmp_path):
    dest = tmp_path / "site-1"
    run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    # What a role and a running client leave in the kit folder.
    (dest / "local" / "resources.json").write_text('{"host": "own"}')
    (dest / "local" / "resources.json.default").write_text("edited by hand")
    (dest / "startup" / "leftover.txt").write_text("not from the kit")
    (dest / "transfer" / "job.zip").write_bytes(b"job")
    job = dest / "0f4c2b5e-job"
    job.mkdir()
    (job / "log.txt").write_text("round 1")
    (dest / "log.txt").write_text("client log")

    res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    assert res["changed"] is True
    assert res["changes"]["modified"] == ["local/resources.json.default"]
    assert res["changes"]["removed"] == ["startup/leftover.txt"]
    assert (dest / "local" / "resources.json").read_text() == '{"host": "own"}'
    assert (dest / "local" / "resources.json.default").read_bytes() == (
        kits.site1_dir / "local" / "resources.json.default"
    ).read_bytes()
    assert not (dest / "startup" / "leftover.txt").exists()
    assert (dest / "transfer" / "job.zip").read_bytes() == b"job"
    assert (job / "log.txt").read_text() == "round 1"
    assert (dest / "log.txt").read_text() == "client log"
    again = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    assert again["changed"] is False


def test_kit_of_the_same_site_replaces_startup_as_a_whole(run_module, kits, tmp_path):
    """A kit re-provisioned with another server name: startup/ follows the new kit."""
    dest = tmp_path / "site-1"
    run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    newer = tmp_path / "newer"
    shutil.copytree(kits.site1_dir, newer)
    cfg = newer / "startup" / "fed_client.json"
    cfg.write_text(cfg.read_text().replace("fl.example.org", "fl2.example.org"))
    res = run_module("startup_kit", args(newer, dest), diff=True)
    assert res["changed"] is True
    assert res["changes"]["modified"] == ["startup/fed_client.json"]
    assert "fl2.example.org" in (dest / "startup" / "fed_client.json").read_text()
    assert mode(dest / "startup" / "client.key") == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_owner_and_group(run_module, kits, tmp_path):
    dest = tmp_path / "site-1"
    res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin, owner="nobody", group="nogroup"))
    assert res["changed"] is True
    import grp
    import pwd

    uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    for path in [dest] + list(dest.rglob("*")):
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (uid, gid), path
    assert (
        run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin, owner="nobody", group="nogroup"))["changed"]
        is False
    )
    os.chown(dest / "startup" / "client.key", 0, 0)
    res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin, owner="nobody", group="nogroup"))
    assert res["changed"] is True and res["changes"]["modified"] == ["startup/client.key"]
    assert (dest / "startup" / "client.key").stat().st_uid == uid
    bad = run_module("startup_kit", args(kits.site1_zip, tmp_path / "x", pin=kits.pin, owner="no_such_user_here"))
    assert bad.failed and "unknown owner 'no_such_user_here'" in bad["msg"]
    assert not (tmp_path / "x").exists()


def test_warns_when_certificate_expires_soon(run_module, kits, tmp_path):
    # Warnings pile up in-process across runs: the run without one goes first.
    fine = run_module("startup_kit", args(kits.site1_zip, tmp_path / "other", pin=kits.pin))
    assert "expires on" not in json.dumps(fine.get("warnings", []))
    res = run_module("startup_kit", args(kits.expiring_zip, tmp_path / "site-1", pin=kits.pin))
    assert not res.failed, res
    assert res["days_left"] in (9, 10)
    warnings = json.dumps(res.get("warnings", []))  # 2.19 returns structured warnings
    assert "certificate of site-1 expires on" in warnings, res


FAILURES = [
    # (kit attribute, extra args, expected message part)
    ("site1_zip", {"pin": "wrongPin123"}, "wrong PIN for"),
    ("site1_zip", {"pin": None}, "is encrypted: set pin"),
    ("truncated_zip", {}, "not a valid zip file (truncated or corrupted)"),
    ("not_a_zip", {}, "not a valid zip file"),
    ("corrupted_zip", {}, "is corrupted"),
    ("slip_zip", {}, "unsafe entry '../evil.sh'"),
    ("slip_nested_zip", {}, "'..' leads out of the kit folder"),
    ("absolute_zip", {}, "unsafe entry '/tmp/evil.sh'"),
    ("symlink_zip", {}, "symbolic link"),
    ("symlink_dir", {}, "symbolic link"),
    ("device_zip", {}, "device or special file"),
    ("site2_zip", {}, "is the kit of site-2, not of site-1"),
    ("other_ca_zip", {}, "is not signed by the kit's startup/rootCA.pem"),
    ("expired_zip", {}, "expired on"),
    ("incomplete_zip", {}, "missing"),
    ("wrong_key_zip", {}, "does not belong to startup/client.crt"),
    ("server_zip", {"participant": "fl.example.org"}, "holds a server kit, not a client kit: set type: server"),
]


@pytest.mark.parametrize("attr, extra, message", FAILURES, ids=[f"{f[0]}-{f[2][:20]}" for f in FAILURES])
def test_failures_leave_dest_alone(run_module, kits, tmp_path, snapshot, attr, extra, message):
    src = getattr(kits, attr)
    base = {k: v for k, v in {"pin": kits.pin, **extra}.items() if v is not None}
    # 1. A fresh dest is not created.
    fresh = tmp_path / "fresh"
    res = run_module("startup_kit", args(src, fresh, **base))
    assert res.failed, res
    assert message in res["msg"], res["msg"]
    assert "\n" not in res["msg"]
    assert kits.pin not in res["msg"]
    assert not fresh.exists() and list(tmp_path.iterdir()) == []
    # 2. An installed kit, with host files, stays exactly as it was.
    dest = tmp_path / "site-1"
    ok = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    assert ok["changed"] is True
    (dest / "local" / "resources.json").write_text("{}")
    before = snapshot(dest)
    res = run_module("startup_kit", args(src, dest, **base), check_mode=False)
    assert res.failed and message in res["msg"]
    assert snapshot(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site-1"]


def test_wrong_pin_message_names_the_zip(run_module, kits, tmp_path):
    res = run_module("startup_kit", args(kits.site1_zip, tmp_path / "d", pin="nope42"))
    assert res["msg"].startswith(f"wrong PIN for {kits.site1_zip}:")


def test_missing_src(run_module, tmp_path):
    res = run_module("startup_kit", args(tmp_path / "nothing.zip", tmp_path / "d"))
    assert res.failed and "does not exist on this host" in res["msg"]


def test_unwritable_dest_parent_is_a_file(run_module, kits, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    res = run_module("startup_kit", args(kits.site1_zip, blocker / "site-1", pin=kits.pin))
    assert res.failed
    assert res["msg"].startswith(f"cannot write kit to {blocker / 'site-1'}:")
    assert blocker.read_text() == "a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_dest_that_is_a_file(run_module, kits, tmp_path):
    dest = tmp_path / "site-1"
    dest.write_text("x")
    res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    assert res.failed and "exists and is not a folder" in res["msg"]
    assert dest.read_text() == "x"


def _chattr(flag, path) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False).returncode == 0


def test_unwritable_dest_immutable_folder(run_module, kits, tmp_path, snapshot):
    """Root ignores modes, not the immutable attribute: a real write failure after all checks passed."""
    dest = tmp_path / "site-1"
    assert run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))["changed"]
    (dest / "startup" / "fed_client.json").write_text("{}")
    if not _chattr("+i", dest / "startup") or not _chattr("+i", tmp_path):
        _chattr("-i", dest / "startup")
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        before = snapshot(dest)
        res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
        assert res.failed
        assert res["msg"].startswith(f"cannot write kit to {dest}:")
        assert snapshot(dest) == before
    finally:
        _chattr("-i", tmp_path)
        _chattr("-i", dest / "startup")
    assert [p.name for p in tmp_path.iterdir()] == ["site-1"]


def test_absent(run_module, kits, tmp_path):
    dest = tmp_path / "site-1"
    run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin))
    res = run_module("startup_kit", {"dest": str(dest), "state": "absent"}, check_mode=True, diff=True)
    assert res["changed"] is True and dest.is_dir()
    assert res["diff"]["after"]["state"] == "absent"
    res = run_module("startup_kit", {"dest": str(dest), "state": "absent"})
    assert res["changed"] is True and not dest.exists()
    assert run_module("startup_kit", {"dest": str(dest), "state": "absent"})["changed"] is False


def test_present_needs_src_participant_and_type(run_module, tmp_path):
    res = run_module("startup_kit", {"dest": str(tmp_path / "d")})
    assert res.failed and "src" in res["msg"] and "participant" in res["msg"]


def test_pin_never_in_result(run_module, kits, tmp_path):
    res = run_module("startup_kit", args(kits.site1_zip, tmp_path / "d", pin=kits.pin), diff=True)
    assert kits.pin not in repr({k: v for k, v in res.items() if k != "invocation"})
    assert res["invocation"]["module_args"]["pin"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def _comp(res: dict, cid: str) -> dict:
    return next(c for c in res["components"] if c["id"] == cid)


def test_resources_written_with_the_kit(run_module, kits, tmp_path):
    dest = tmp_path / "site-1"
    settings = {"num_of_gpus": 0, "mem_per_gpu_in_GiB": 0, "class_allow_list": ["my.pkg.Thing"]}
    res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin, resources=settings))
    assert not res.failed, res
    assert "local/resources.json" in res["changes"]["added"]
    path = dest / "local" / "resources.json"
    assert mode(path) == 0o640
    written = json.loads(path.read_text())
    default = json.loads((kits.site1_dir / "local" / "resources.json.default").read_text())
    assert _comp(written, "resource_manager")["args"]["num_of_gpus"] == 0
    assert written["class_allow_list"] == default["class_allow_list"] + ["my.pkg.Thing"]
    # Everything else as the kit has it; the same bytes the filter + to_nice_json(indent=2) gave.
    assert _comp(written, "resource_consumer") == _comp(default, "resource_consumer")
    assert path.read_text() == json.dumps(written, indent=2, sort_keys=True, separators=(",", ": "))
    # No temporary file left in the kit.
    assert sorted(p.name for p in (dest / "local").iterdir() if not p.name.endswith((".default", ".sample"))) == [
        "resources.json"
    ]

    again = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin, resources=settings))
    assert again["changed"] is False, again

    # Other settings: only resources.json changes; check mode says so and writes nothing.
    before = path.read_bytes()
    other = dict(settings, num_of_gpus=2)
    check = run_module(
        "startup_kit", args(kits.site1_zip, dest, pin=kits.pin, resources=other), check_mode=True, diff=True
    )
    assert check["changed"] is True
    assert check["changes"] == {"added": [], "modified": ["local/resources.json"], "removed": []}
    assert "local/resources.json sha256:" in check["diff"]["before"]
    assert path.read_bytes() == before
    res = run_module("startup_kit", args(kits.site1_zip, dest, pin=kits.pin, resources=other))
    assert res["changed"] is True
    assert _comp(json.loads(path.read_text()), "resource_manager")["args"]["num_of_gpus"] == 2


def test_resources_mode_drift_is_repaired_and_absent_option_leaves_the_file(run_module, kits, tmp_path):
    dest = tmp_path / "srv"
    settings = {"data_dir": str(tmp_path / "data"), "max_jobs": 3}
    kw = {"pin": kits.pin, "participant": kits.server, "type": "server"}
    assert not run_module("startup_kit", args(kits.server_zip, dest, resources=settings, **kw)).failed
    path = dest / "local" / "resources.json"
    written = json.loads(path.read_text())
    assert _comp(written, "job_manager")["args"]["uri_root"] == str(tmp_path / "data" / "jobs-storage")
    assert _comp(written, "job_scheduler")["args"]["max_jobs"] == 3
    os.chmod(path, 0o666)
    res = run_module("startup_kit", args(kits.server_zip, dest, resources=settings, **kw))
    assert res["changes"]["modified"] == ["local/resources.json"]
    assert mode(path) == 0o640
    # Without the option the host's file is left as it is.
    path.write_text('{"host": "own"}')
    res = run_module("startup_kit", args(kits.server_zip, dest, **kw))
    assert res["changed"] is False
    assert path.read_text() == '{"host": "own"}'


def test_resources_need_the_kits_default(run_module, kits, tmp_path):
    src = tmp_path / "kit"
    shutil.copytree(kits.site1_dir, src)
    (src / "local" / "resources.json.default").unlink()
    dest = tmp_path / "site-1"
    res = run_module("startup_kit", args(src, dest, resources={"num_of_gpus": 0}))
    assert res.failed
    assert "no local/resources.json.default" in res["msg"]
    assert not dest.exists()
