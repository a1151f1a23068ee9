# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Draw a job's training curves from its downloaded result (federated.nvflare admin role).

    training_curves.py RESULT_DIR OUTPUT_PNG [METRIC]

RESULT_DIR is a job result as the job module downloads it; NVFlare's MetricsArtifactWriter (in
the server's job configuration) wrote ``workspace/metrics/round_metrics.jsonl`` there: one line
per FedAvg round with the aggregated value of each metric and the value every site reported. The
PNG shows METRIC (default ``val_dice``) per round: the aggregated (global) value as a thick line,
each site as a thin one. In the reference job a site reports, in round N, the METRIC of the global
model it received in round N, so the rounds end before the last aggregation. When the result also
holds NVFlare's cross-site validation (``workspace/cross_site_val/cross_val_results.json``, which
the job module's ``cross_site_validation`` and the demo's table come from), each site's curve ends
with the final global model's METRIC on that site (model ``SRV_FL_global_model.pt``), one step
after the last round on the axis labelled ``final``, drawn as a star, dashed from the last round,
and with its value in the legend; the JSON printed on success then has ``final_global_model``,
``{site: value}``. Without cross-site results the curves end at the last round.

Exit status 0 with a PNG written and one JSON line printed; 3 when the result has no round
metrics for METRIC (nothing is written); 1 on any other error. The PNG is written to a temporary
file next to OUTPUT_PNG and renamed, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile

NO_METRICS = 3
ROUND_METRICS = os.path.join("workspace", "metrics", "round_metrics.jsonl")
CROSS_VAL_RESULTS = os.path.join("workspace", "cross_site_val", "cross_val_results.json")
# The model the server holds after the last round, as NVFlare names it in the cross-site results
# (SRV_best_FL_global_model.pt is the best one by the key metric, not necessarily the last).
FINAL_MODEL = "SRV_FL_global_model.pt"
FINAL_LABEL = "final global model (cross-site validation)"


def read_rounds(result_dir: str, metric: str) -> tuple[list[int], list[float], dict[str, list[tuple[int, float]]]]:
    """(rounds, global values, {site: [(round, value), ...]}) for METRIC from round_metrics.jsonl."""
    path = os.path.join(result_dir, ROUND_METRICS)
    rounds, values, sites = [], [], {}
    if not os.path.isfile(path):
        return rounds, values, sites
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            record = json.loads(line)
            number = int(record.get("round", len(rounds)))
            found = [m["value"] for m in record.get("aggregated_metrics", []) if m.get("name") == metric]
            if found:
                rounds.append(number)
                values.append(float(found[0]))
            for site in record.get("sites", []):
                for m in site.get("metrics", []):
                    if m.get("name") == metric:
                        sites.setdefault(site["name"], []).append((number, float(m["value"])))
    return rounds, values, sites


def read_final(result_dir: str, metric: str) -> dict[str, float]:
    """{site: METRIC of the final global model on that site} from the cross-site results.

    NVFlare writes the file as {validating site: {model owner: {metric: value}}}. {} when the file
    is missing or unreadable (a warning on stderr) or holds no METRIC for FINAL_MODEL.
    """
    path = os.path.join(result_dir, CROSS_VAL_RESULTS)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            results = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"cannot read {path}, drawing without the final global model: {exc}", file=sys.stderr)
        return {}
    final = {}
    for site, by_owner in (results if isinstance(results, dict) else {}).items():
        metrics = by_owner.get(FINAL_MODEL) if isinstance(by_owner, dict) else None
        value = metrics.get(metric) if isinstance(metrics, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            final[site] = float(value)
    return final


def site_curves(sites, final: dict[str, float], final_round: int) -> dict[str, list[tuple[int, float]]]:
    """Each site's points in round order, ending with (FINAL_ROUND, its final value) where it has one."""
    curves = {name: sorted(points) for name, points in sites.items()}
    for name, value in final.items():
        curves.setdefault(name, []).append((final_round, value))
    return curves


def plot(ax, rounds, values, sites, final: dict[str, float], metric: str, title: str) -> None:
    """Draw the curves on the matplotlib Axes AX (site curves end with FINAL's values, if any)."""
    steps = sorted(set(rounds) | {p[0] for points in sites.values() for p in points})
    final_round = (steps[-1] + 1) if steps else 0
    curves = site_curves(sites, final, final_round)
    for name in sorted(curves):
        points = curves[name]
        label = f"{name} (final {final[name]:.4f})" if name in final else name
        trained = points[:-1] if name in final else points
        (line,) = ax.plot(
            [p[0] for p in trained], [p[1] for p in trained], marker="o", linewidth=1, alpha=0.8, label=label
        )
        if name in final:
            tail = points[-2:]
            ax.plot(
                [p[0] for p in tail],
                [p[1] for p in tail],
                linestyle="--",
                linewidth=1,
                alpha=0.8,
                color=line.get_color(),
                label="_nolegend_",
            )
            ax.plot(
                [final_round],
                [final[name]],
                marker="*",
                markersize=13,
                linestyle="none",
                color=line.get_color(),
                label="_nolegend_",
            )
    if rounds:
        ax.plot(rounds, values, marker="s", linewidth=2.5, color="black", label="global (weighted mean)")
    if final:
        # The legend's entry for the stars; drawn with no point.
        ax.plot([], [], marker="*", markersize=11, linestyle="none", color="grey", label=FINAL_LABEL)
    ax.set_xlabel("FedAvg round")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if final:
        ax.set_xticks(steps + [final_round], [str(s) for s in steps] + ["final"])
    elif rounds:
        ax.set_xticks(sorted(set(rounds)))


def draw(rounds, values, sites, final: dict[str, float], metric: str, title: str, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    plot(ax, rounds, values, sites, final, metric, title)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".training_curves.", suffix=".png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 1
    result_dir, output = argv[0], argv[1]
    metric = argv[2] if len(argv) == 3 else "val_dice"
    rounds, values, sites = read_rounds(result_dir, metric)
    if not rounds and not sites:
        print(f"no round metrics named {metric} in {os.path.join(result_dir, ROUND_METRICS)}", file=sys.stderr)
        return NO_METRICS
    final = read_final(result_dir, metric)
    job = os.path.basename(os.path.normpath(result_dir))
    draw(rounds, values, sites, final, metric, f"{metric} per round, job {job[:8]}", output)
    summary = {"png": output, "rounds": len(rounds), "sites": sorted(set(sites) | set(final))}
    if final:
        summary["final_global_model"] = {name: final[name] for name in sorted(final)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
