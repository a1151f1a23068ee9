# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Draw a job's training curves from its downloaded result (federated.nvflare admin role).

    training_curves.py RESULT_DIR OUTPUT_PNG [METRIC]

RESULT_DIR is a job result as the job module downloads it; NVFlare's MetricsArtifactWriter (in
the server's job configuration) wrote ``workspace/metrics/round_metrics.jsonl`` there: one line
per FedAvg round with the aggregated value of each metric and the value every site reported. The
PNG shows METRIC (default ``val_dice``) per round: the aggregated (global) value as a thick line,
each site as a thin one. Exit status 0 with a PNG written; 3 when the result has no round
metrics for METRIC (nothing is written); 1 on any other error. The PNG is written to a temporary
file next to OUTPUT_PNG and renamed, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

NO_METRICS = 3


def read_rounds(result_dir: str, metric: str) -> tuple[list[int], list[float], dict[str, list[tuple[int, float]]]]:
    """(rounds, global values, {site: [(round, value), ...]}) for METRIC from round_metrics.jsonl."""
    path = os.path.join(result_dir, "workspace", "metrics", "round_metrics.jsonl")
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


def draw(rounds, values, sites, metric: str, title: str, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name in sorted(sites):
        points = sorted(sites[name])
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", linewidth=1, alpha=0.8, label=name)
    if rounds:
        ax.plot(rounds, values, marker="s", linewidth=2.5, color="black", label="global (weighted mean)")
    ax.set_xlabel("FedAvg round")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if rounds:
        ax.set_xticks(sorted(set(rounds)))
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
        print(f"no round metrics named {metric} in {result_dir}/workspace/metrics/round_metrics.jsonl", file=sys.stderr)
        return NO_METRICS
    job = os.path.basename(os.path.normpath(result_dir))
    draw(rounds, values, sites, metric, f"{metric} per round, job {job[:8]}", output)
    print(json.dumps({"png": output, "rounds": len(rounds), "sites": sorted(sites)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
