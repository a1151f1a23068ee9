"""Did the federation learn? The final global model against the initial one, on every site.

The reference spleen job evaluates each model it receives before training on it, so the
first line ``<site>: round 0: global val_dice=D`` of a site's job log is the initial global
model's Dice on that site's validation cases; the cross-site validation matrix of the job's
summary holds the final global model's Dice on every site.

The margin comes from measured runs of the synthetic job (2 rounds, 2 sites, seed 0, CPU):
initial Dice 0.03-0.07, final 0.75-0.79, a gain of 0.69-0.74 on each site of the default and
slurm scenarios, the same to the fourth decimal in every run; docs/testing.md lists them.
A federation that does not learn (a broken aggregation, weights that do not reach the sites,
a model that is not trained) stays near its initial Dice and fails here.
"""

from __future__ import annotations

import json
import os
import re

# The final global model must beat the initial one by at least this much Dice on every site.
MARGIN = 0.3
FINAL_MODEL = "SRV_FL_global_model.pt"
_ROUND0 = re.compile(r"(?P<site>[A-Za-z0-9_.@-]+): round 0: global val_dice=(?P<dice>[0-9.]+)")


def initial_dice(log_text: str, site: str) -> float:
    """The initial global model's Dice on SITE, from that site's job log."""
    for match in _ROUND0.finditer(log_text):
        if match.group("site") == site:
            return float(match.group("dice"))
    raise AssertionError(f"no 'round 0: global val_dice' line for {site} in its job log")


def check_learned(summary: dict, initial: dict[str, float], scenario: str) -> dict[str, dict[str, float]]:
    """Assert the final global model beats the initial one by MARGIN on every site; return the figures."""
    final_by_site = summary["cross_site_validation"][FINAL_MODEL]
    figures = {}
    for site, start in sorted(initial.items()):
        final = final_by_site[site]["val_dice"]
        figures[site] = {"initial": round(start, 4), "final": round(final, 4), "gain": round(final - start, 4)}
    line = {"scenario": scenario, "job_id": summary.get("job_id"), "sites": figures}
    print("learning:", json.dumps(line))
    report = os.environ.get("NVFLARE_TEST_REPORT_DIR")
    if report and os.path.isdir(report):
        with open(os.path.join(report, "learning.json"), "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    short = {site: f["gain"] for site, f in figures.items() if f["gain"] < MARGIN}
    assert not short, f"the final global model beats the initial one by less than {MARGIN} Dice on {short}: {figures}"
    return figures
