"""federated.nvflare.state_archive: archive state folders (SQLite consistently) and put them back.

Runs the module in-process on real folders, a real SQLite database in WAL mode with a writer
connection open, and hand-made archives for the refusals."""

from __future__ import annotations

import io
import json
import sqlite3
import stat
import tarfile
from pathlib import Path

import pytest


def _tree(root: Path) -> Path:
    (root / "jobs" / "j1").mkdir(parents=True)
    (root / "jobs" / "j1" / "meta.json").write_text('{"status": "FINISHED_COMPLETED"}')
    secret = root / "secret.env"
    secret.write_text("SECRET_KEY=abc\n")
    secret.chmod(0o600)
    (root / "link").symlink_to("jobs/j1/meta.json")
    return root


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def database(tmp_path):
    """A WAL-mode database with a committed row still in the -wal file (the writer stays open)."""
    root = _tree(tmp_path / "web")
    conn = sqlite3.connect(root / "db.sqlite")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE users (email TEXT)")
    conn.execute("INSERT INTO users VALUES ('admin@example.org')")
    conn.commit()
    yield root, conn
    conn.close()


def test_archive_then_restore_elsewhere(run_module, tmp_path, database):
    root, conn = database
    assert (root / "db.sqlite-wal").stat().st_size > 0
    archive = tmp_path / "out" / "state.tar.gz"
    archive.parent.mkdir()
    missing = tmp_path / "not-there"

    res = run_module(
        "state_archive", {"state": "archived", "paths": [str(root), str(missing)], "archive": str(archive)}
    )
    assert res["changed"] and res["files"] == 3
    assert [f["state"] for f in res["folders"]] == ["archived", "missing"]
    assert _mode(archive) == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "0/db.sqlite" in names and not any(n.endswith(("-wal", "-shm")) for n in names)

    conn.execute("INSERT INTO users VALUES ('late@example.org')")  # after the backup: not in it
    conn.commit()

    target = tmp_path / "restored" / "web"
    args = {"state": "restored", "paths": [str(target), str(tmp_path / "other")], "archive": str(archive)}
    res = run_module("state_archive", args, check_mode=True)
    assert res["changed"] and not target.exists()

    res = run_module("state_archive", args)
    assert res["changed"] and res["sha256"] and res["files"] == 3
    assert [f["state"] for f in res["folders"]] == ["restored", "missing"]
    rows = sqlite3.connect(target / "db.sqlite").execute("SELECT email FROM users").fetchall()
    assert rows == [("admin@example.org",)]  # the committed row from the -wal file, consistently
    assert (target / "jobs" / "j1" / "meta.json").read_text() == '{"status": "FINISHED_COMPLETED"}'
    assert _mode(target / "secret.env") == 0o600
    assert (target / "link").is_symlink() and (target / "link").read_text().startswith("{")
    assert not (tmp_path / "other").exists()

    again = run_module("state_archive", args)
    assert not again["changed"] and again["folders"][0]["state"] == "current"


def test_check_mode_archives_nothing(run_module, tmp_path):
    root = _tree(tmp_path / "data")
    archive = tmp_path / "a.tar.gz"
    res = run_module(
        "state_archive", {"state": "archived", "paths": [str(root)], "archive": str(archive)}, check_mode=True
    )
    assert res["changed"] and res["files"] == 2 and not archive.exists()
    assert not list(tmp_path.glob(".state-archive-*"))


def test_occupied_folder_is_refused_then_moved_aside_with_force(run_module, tmp_path):
    root = _tree(tmp_path / "data")
    archive = tmp_path / "a.tar.gz"
    run_module("state_archive", {"state": "archived", "paths": [str(root)], "archive": str(archive)})

    target = tmp_path / "live"
    (target / "jobs").mkdir(parents=True)
    (target / "jobs" / "newer.json").write_text("{}")
    args = {"state": "restored", "paths": [str(target)], "archive": str(archive)}
    res = run_module("state_archive", args)
    assert res.get("failed") and "does not come from this backup" in res["msg"] and str(target) in res["msg"]
    assert sorted(p.name for p in target.rglob("*")) == ["jobs", "newer.json"]  # untouched

    res = run_module("state_archive", {**args, "force": True})
    assert res["changed"] and res["folders"][0]["state"] == "replaced"
    aside = Path(res["folders"][0]["moved_to"])
    assert (aside / "jobs" / "newer.json").exists()
    assert (target / "jobs" / "j1" / "meta.json").exists() and not (target / "jobs" / "newer.json").exists()


def test_empty_folders_are_filled(run_module, tmp_path):
    root = _tree(tmp_path / "data")
    archive = tmp_path / "a.tar.gz"
    run_module("state_archive", {"state": "archived", "paths": [str(root)], "archive": str(archive)})
    target = tmp_path / "fresh"
    (target / "jobs-storage").mkdir(parents=True)  # what a freshly started server leaves
    res = run_module("state_archive", {"state": "restored", "paths": [str(target)], "archive": str(archive)})
    assert res["changed"] and (target / "jobs" / "j1" / "meta.json").exists()


def _crafted(path: Path, name: str, kind=tarfile.REGTYPE, linkname: str = "") -> None:
    with tarfile.open(path, "w:gz") as tar:
        data = json.dumps({"format": 1, "paths": ["/x"]}).encode()
        info = tarfile.TarInfo("nvflare-archive.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        tar.addfile(info, io.BytesIO(b""))


@pytest.mark.parametrize(
    ("name", "kind", "linkname", "why"),
    [
        ("0/../../etc/evil", tarfile.REGTYPE, "", "outside the folders"),
        ("/etc/evil", tarfile.REGTYPE, "", "outside the folders"),
        ("0/link", tarfile.SYMTYPE, "/etc/shadow", "points outside"),
        ("0/link", tarfile.SYMTYPE, "../../etc", "points outside"),
        ("0/dev", tarfile.CHRTYPE, "", "neither a file"),
    ],
)
def test_unsafe_members_are_refused(run_module, tmp_path, name, kind, linkname, why):
    archive = tmp_path / "evil.tar.gz"
    _crafted(archive, name, kind, linkname)
    target = tmp_path / "target"
    res = run_module("state_archive", {"state": "restored", "paths": [str(target)], "archive": str(archive)})
    assert res.get("failed") and why in res["msg"]
    assert not target.exists()


def test_wrong_number_of_folders_and_foreign_archives(run_module, tmp_path):
    root = _tree(tmp_path / "data")
    archive = tmp_path / "a.tar.gz"
    run_module("state_archive", {"state": "archived", "paths": [str(root)], "archive": str(archive)})
    res = run_module("state_archive", {"state": "restored", "paths": ["/a", "/b"], "archive": str(archive)})
    assert res.get("failed") and "holds 1 folder(s)" in res["msg"]

    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        tar.add(root, arcname="data")
    res = run_module("state_archive", {"state": "restored", "paths": ["/a"], "archive": str(foreign)})
    assert res.get("failed") and "not written by state_archive" in res["msg"]

    res = run_module("state_archive", {"state": "restored", "paths": ["/a"], "archive": str(tmp_path / "none")})
    assert res.get("failed") and "no archive at" in res["msg"]

    res = run_module("state_archive", {"state": "archived", "paths": ["relative"], "archive": str(archive)})
    assert res.get("failed") and "absolute" in res["msg"]
