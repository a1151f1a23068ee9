"""plugins/module_utils/_files.py: atomic writes and folder swaps leave no half-made state."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.federated.nvflare.plugins.module_utils import _files


def test_write_atomic_sets_the_mode_whatever_the_umask_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "kit.zip"
    old = os.umask(0o077)
    try:
        _files.write_atomic(str(path), b"one", 0o644)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"one" and stat.S_IMODE(path.stat().st_mode) == 0o644
    _files.write_atomic(str(path), b"two", 0o600)
    assert path.read_bytes() == b"two" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["kit.zip"]


def test_write_atomic_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "state"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        _files.write_atomic(str(path), "not bytes", 0o600)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


def test_read_bytes_and_digests(tmp_path):
    assert _files.read_bytes(str(tmp_path / "none")) is None
    assert _files.read_bytes(str(tmp_path)) is None
    (tmp_path / "f").write_bytes(b"abc")
    assert _files.read_bytes(str(tmp_path / "f")) == b"abc"
    assert _files.sha256(None) is None
    assert _files.sha256(b"abc") == _files.file_sha256(str(tmp_path / "f"))
    assert _files.file_sha256(str(tmp_path / "none")) is None


def test_replace_dir_swaps_and_cleans_up(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    new = scratch / "new"
    new.mkdir()
    (new / "a").write_text("new")
    dest = tmp_path / "kit"
    _files.replace_dir(str(new), str(dest), str(scratch))
    assert (dest / "a").read_text() == "new"
    newer = scratch / "newer"
    newer.mkdir()
    (newer / "b").write_text("newer")
    _files.replace_dir(str(newer), str(dest), str(scratch))
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
    assert list(scratch.iterdir()) == []


def test_replace_dir_restores_the_old_folder_when_the_new_one_cannot_move(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    dest = tmp_path / "kit"
    dest.mkdir()
    (dest / "a").write_text("old")
    with pytest.raises(OSError):
        _files.replace_dir(str(scratch / "missing"), str(dest), str(scratch))
    assert (dest / "a").read_text() == "old"
