"""federated.nvflare.controller_state: the controller's private state folder, and old state moved into it.

Runs the module in-process on real folders: a provisioning workspace left at an earlier
release's default (beside the playbooks folder) is moved once, never re-created or overwritten."""

from __future__ import annotations

import json
import stat
from pathlib import Path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _old_workspace(root: Path) -> Path:
    old = root / "collection" / ".nvflare-workspace"
    (old / "spleen" / "state").mkdir(parents=True)
    (old / "spleen" / "state" / "cert.json").write_text('{"root_cert": "the project root CA"}')
    return old


def test_creates_the_folder_0700_check_mode_first(run_module, tmp_path):
    state = tmp_path / "xdg" / "federated.nvflare" / "spleen"
    res = run_module("controller_state", {"path": str(state)}, check_mode=True)
    assert res["changed"] and not state.exists()
    res = run_module("controller_state", {"path": str(state)})
    assert res["changed"] and _mode(state) == 0o700
    assert run_module("controller_state", {"path": str(state)})["changed"] is False


def test_narrows_a_folder_others_can_read(run_module, tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    res = run_module("controller_state", {"path": str(state)})
    assert res["changed"] and _mode(state) == 0o700
    assert "narrowed" in res["messages"][0]


def test_moves_an_old_default_workspace_once_with_its_root_ca(run_module, tmp_path):
    old = _old_workspace(tmp_path)
    state = tmp_path / "state"
    moves = [{"src": str(old), "dest": str(state / "workspace")}]
    preview = run_module("controller_state", {"path": str(state), "moves": moves}, check_mode=True)
    assert preview["changed"] and preview["moved"] == moves and old.exists() and not state.exists()

    res = run_module("controller_state", {"path": str(state), "moves": moves})
    assert res["changed"] and res["moved"] == moves
    assert not old.exists()
    cert = state / "workspace" / "spleen" / "state" / "cert.json"
    assert cert.read_text() == '{"root_cert": "the project root CA"}'
    assert any("moved" in line for line in res["messages"])
    again = run_module("controller_state", {"path": str(state), "moves": moves})
    assert again["changed"] is False and again["moved"] == []


def test_an_empty_destination_is_filled_but_a_used_one_is_never_overwritten(run_module, tmp_path):
    old = _old_workspace(tmp_path)
    state = tmp_path / "state"
    (state / "workspace").mkdir(parents=True)
    moves = [{"src": str(old), "dest": str(state / "workspace")}]
    assert run_module("controller_state", {"path": str(state), "moves": moves})["moved"] == moves
    assert (state / "workspace" / "spleen" / "state" / "cert.json").is_file()

    # Both exist with content: the destination is the one in use, the source stays, a warning says so.
    old = _old_workspace(tmp_path)
    res = run_module("controller_state", {"path": str(state), "moves": moves})
    assert res["changed"] is False and res["moved"] == []
    assert old.exists()
    # Warnings are structured since ansible-core 2.19: look for the path in the whole of them.
    assert str(old) in json.dumps(res.get("warnings", [])), res


def test_refuses_a_relative_path_or_a_file(run_module, tmp_path):
    res = run_module("controller_state", {"path": "relative/state"})
    assert res.failed and "absolute path" in res["msg"] and "nvflare_state_dir" in res["msg"]
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    res = run_module("controller_state", {"path": str(blocker)})
    assert res.failed and "is not a folder" in res["msg"]
