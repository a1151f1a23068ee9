"""The admin role's training curves (roles/admin/files/training_curves.py) on a job result as
NVFlare writes it (tests/unit/fixtures/job_result/, made by make_job_result.py).

With cross-site results, each site's curve must end at the final global model's Dice on that
site, the figure the job module's cross_site_validation (and the demo's table) gives for
SRV_FL_global_model.pt; without them, the curves end at the last round as before. The drawing
runs on a stand-in for matplotlib's Axes that records what is plotted, so no test needs
matplotlib (the admin's virtualenv has it, the project's does not).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from ansible_collections.federated.nvflare.plugins.module_utils import _flare as flare

ROOT = Path(__file__).resolve().parents[3]
PROGRAM = ROOT / "roles" / "admin" / "files" / "training_curves.py"
_spec = importlib.util.spec_from_file_location("training_curves", PROGRAM)
tc = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tc
_spec.loader.exec_module(tc)

FIXTURE = ROOT / "tests" / "unit" / "fixtures" / "job_result" / "0f3c2a1e-5b7d-4c8e-9a6f-2d1b4e8c7a90"
SITES = ["site-1", "site-2"]


class _Line:
    def __init__(self, color: str):
        self._color = color

    def get_color(self) -> str:
        return self._color


class RecordingAxes:
    """What plot() does to matplotlib's Axes: each ax.plot as a dict, every other call in order."""

    def __init__(self):
        self.lines: list[dict] = []
        self.calls: list[tuple] = []
        self._cycle = 0

    def plot(self, x, y, **kwargs):
        color = kwargs.get("color")
        if color is None:  # matplotlib's colour cycle
            color = f"C{self._cycle}"
            self._cycle += 1
        self.lines.append({"x": list(x), "y": list(y), **kwargs, "color": color})
        return (_Line(color),)

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))

        return record

    def call(self, name: str) -> tuple:
        found = [c for c in self.calls if c[0] == name]
        assert len(found) == 1, (name, self.calls)
        return found[0][1:]

    def site_curve(self, site: str) -> list[tuple[float, float]]:
        """All points drawn in SITE's colour (its line, and the final step if any), in x order."""
        color = next(line["color"] for line in self.lines if line.get("label", "").split(" ")[0] == site)
        points = [
            (x, y)
            for line in self.lines
            if line["color"] == color and line.get("label") != tc.FINAL_LABEL
            for x, y in zip(line["x"], line["y"], strict=True)
        ]
        return sorted(set(points))


def _result(tmp_path: Path, cross_site: bool = True) -> Path:
    """A copy of the fixture's result folder, without its cross-site results unless CROSS_SITE."""
    result = tmp_path / FIXTURE.name
    shutil.copytree(FIXTURE, result)
    if not cross_site:
        shutil.rmtree(result / "workspace" / "cross_site_val")
    return result


def _table(result: Path) -> dict[str, float]:
    """The final global model's val_dice per site as the job module reports it (the demo's table)."""
    matrix = flare.read_cross_site(str(result))
    return {site: metrics["val_dice"] for site, metrics in matrix["SRV_FL_global_model.pt"].items()}


def _plot(result: Path) -> RecordingAxes:
    ax = RecordingAxes()
    rounds, values, sites = tc.read_rounds(str(result), "val_dice")
    tc.plot(ax, rounds, values, sites, tc.read_final(str(result), "val_dice"), "val_dice", "title")
    return ax


def _rounds(result: Path, site: str) -> list[tuple[int, float]]:
    return sorted(tc.read_rounds(str(result), "val_dice")[2][site])


def _main(result: Path, monkeypatch, capsys) -> tuple[int, dict | None, RecordingAxes]:
    """main() with draw() drawing on a RecordingAxes: (exit status, its JSON line, the axes)."""
    ax = RecordingAxes()

    def draw(rounds, values, sites, final, metric, title, output):
        tc.plot(ax, rounds, values, sites, final, metric, title)
        Path(output).write_bytes(b"\x89PNG\r\n\x1a\n")

    monkeypatch.setattr(tc, "draw", draw)
    rc = tc.main([str(result), str(result / "training_curves.png")])
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip() else None), ax


def test_the_fixture_is_the_case_users_saw(tmp_path):
    # The last round's global Dice is far below the final global model's: a curve that stops at
    # the last round disagrees with the cross-site table.
    result = _result(tmp_path)
    rounds, values, _sites = tc.read_rounds(str(result), "val_dice")
    assert rounds == [0, 1] and values[-1] == pytest.approx(0.41)
    assert _table(result) == {"site-1": 0.7563, "site-2": 0.7834}


def test_each_site_curve_ends_at_the_final_global_model_of_the_table(tmp_path):
    result = _result(tmp_path)
    table = _table(result)
    ax = _plot(result)
    for site in SITES:
        curve = ax.site_curve(site)
        # the rounds' points first (what the sites reported), then the final model one step later
        assert curve[:-1] == _rounds(result, site)
        assert curve[-1] == (2, table[site])
        stars = [line for line in ax.lines if line.get("marker") == "*" and line["x"] == [2]]
        assert [line["y"] for line in stars if line["y"] == [table[site]]] == [[table[site]]], site
        assert any(line.get("label") == f"{site} (final {table[site]:.4f})" for line in ax.lines)
    assert any(line.get("label") == tc.FINAL_LABEL for line in ax.lines)
    ticks, labels = ax.call("set_xticks")[0]
    assert (ticks, labels) == ([0, 1, 2], ["0", "1", "final"])


def test_main_prints_the_final_global_model_of_the_table(tmp_path, monkeypatch, capsys):
    result = _result(tmp_path)
    rc, summary, ax = _main(result, monkeypatch, capsys)
    assert rc == 0
    assert summary == {
        "png": str(result / "training_curves.png"),
        "rounds": 2,
        "sites": SITES,
        "final_global_model": _table(result),
    }
    assert [ax.site_curve(site)[-1] for site in SITES] == [(2, 0.7563), (2, 0.7834)]


def test_the_final_model_is_not_the_best_one(tmp_path):
    # SRV_best_FL_global_model.pt is the best model by val_dice, which need not be the last.
    result = _result(tmp_path)
    path = result / "workspace" / "cross_site_val" / "cross_val_results.json"
    results = json.loads(path.read_text())
    results["site-1"]["SRV_best_FL_global_model.pt"] = {"val_dice": 0.8}
    del results["site-2"]["SRV_FL_global_model.pt"]["val_dice"]
    path.write_text(json.dumps(results))
    assert tc.read_final(str(result), "val_dice") == {"site-1": 0.7563}
    ax = _plot(result)
    assert ax.site_curve("site-1")[-1] == (2, 0.7563)
    assert ax.site_curve("site-2") == _rounds(result, "site-2")


def test_without_cross_site_results_the_curves_are_drawn_as_before(tmp_path, monkeypatch, capsys):
    result = _result(tmp_path, cross_site=False)
    rc, summary, ax = _main(result, monkeypatch, capsys)
    assert rc == 0
    assert summary == {"png": str(result / "training_curves.png"), "rounds": 2, "sites": SITES}
    rounds, values, sites = tc.read_rounds(str(result), "val_dice")
    expected = [
        {"x": [0, 1], "y": [v for _round, v in sorted(sites[site])], "marker": "o", "linewidth": 1, "alpha": 0.8}
        | {"label": site, "color": f"C{i}"}
        for i, site in enumerate(SITES)
    ]
    expected.append(
        {"x": rounds, "y": values, "marker": "s", "linewidth": 2.5, "color": "black", "label": "global (weighted mean)"}
    )
    assert ax.lines == expected
    assert ax.call("set_xticks") == (([0, 1],), {})


def test_unreadable_cross_site_results_leave_the_curves_as_before(tmp_path, capsys):
    result = _result(tmp_path)
    (result / "workspace" / "cross_site_val" / "cross_val_results.json").write_text("{not json")
    assert tc.read_final(str(result), "val_dice") == {}
    assert "drawing without the final global model" in capsys.readouterr().err
    assert not any(line.get("marker") == "*" for line in _plot(result).lines)


def test_no_round_metrics_is_exit_status_3(tmp_path, monkeypatch, capsys):
    result = _result(tmp_path)
    (result / "workspace" / "metrics" / "round_metrics.jsonl").unlink()
    rc, summary, ax = _main(result, monkeypatch, capsys)
    assert (rc, summary, ax.lines) == (tc.NO_METRICS, None, [])
    assert not (result / "training_curves.png").exists()
