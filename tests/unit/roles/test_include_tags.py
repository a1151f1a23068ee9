"""A dynamic include that carries tags must hand them to the tasks it includes.

`include_tasks` with `tags:` tags only the include itself: `--tags X` then runs the include
and skips every task in the file, silently. `apply: {tags: ...}` gives the included tasks the
same tags. (`import_tasks` is static and passes its tags on by itself.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
INCLUDES = ("ansible.builtin.include_tasks", "include_tasks")


def _tasks(items):
    for task in items or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key))


def _includes():
    for path in sorted(ROLES.glob("*/tasks/*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text())):
            for key in INCLUDES:
                if key in task:
                    yield pytest.param(task, key, id=f"{path.relative_to(ROLES)}: {task.get('name', key)}")


def test_there_are_includes_to_check():
    assert list(_includes())


@pytest.mark.parametrize("task, key", list(_includes()))
def test_tagged_include_applies_its_tags(task, key):
    tags = task.get("tags") or []
    tags = [tags] if isinstance(tags, str) else tags
    if not tags:
        return
    spec = task[key]
    applied = (spec.get("apply") or {}).get("tags", []) if isinstance(spec, dict) else []
    applied = [applied] if isinstance(applied, str) else applied
    # Tasks tagged `always` run whatever --tags selects.
    missing = [] if "always" in applied else sorted(set(tags) - set(applied))
    assert not missing, f"include with tags {tags} does not apply {missing} to the included tasks"
