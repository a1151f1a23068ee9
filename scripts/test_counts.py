#!/usr/bin/env python3
"""Add up the test counts that tests/helpers/skip_policy.py appends (one JSON line per pytest run).

test_counts.py fields FILE...   "passed failed skipped not_applicable" (failed includes errors)
test_counts.py row FILE...      "P passed F failed S skipped (N n/a)", or nothing without counts
test_counts.py closing DIR      "tests: P passed, F failed, S skipped" over DIR/*.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def total(paths: list[Path]) -> tuple[dict[str, int], bool]:
    sums = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "not_applicable": 0}
    found = False
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            found = True
            for key, value in json.loads(line).items():
                sums[key] = sums.get(key, 0) + value
    sums["failed"] += sums.pop("errors")
    return sums, found


def main(argv: list[str]) -> int:
    mode, args = argv[0], [Path(a) for a in argv[1:]]
    if mode == "closing":
        sums, _found = total(sorted(args[0].glob("*.jsonl")))
        print(f"tests: {sums['passed']} passed, {sums['failed']} failed, {sums['skipped']} skipped")
        return 0
    sums, found = total(args)
    if mode == "fields":
        print(sums["passed"], sums["failed"], sums["skipped"], sums["not_applicable"])
    elif mode == "row" and found:
        print(
            f"{sums['passed']:4d} passed {sums['failed']:3d} failed {sums['skipped']:3d} skipped "
            f"({sums['not_applicable']} n/a)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
