"""Running the collection's playbooks on a Molecule scenario's inventory (as the verifiers do) or another."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    returncode: int
    output: str

    @property
    def recap(self) -> dict[str, int]:
        """{host: changed} from the play recap."""
        return {h: int(n) for h, n in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", self.output, re.M)}

    def changed_tasks(self, host: str) -> list[str]:
        """The names of the tasks that reported HOST changed, in order (for a failure's message)."""
        tasks, current = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line[line.index("[") + 1 : line.rindex("]")]
            elif re.match(rf"changed: \[{re.escape(host)}\]", line):
                tasks.append(current)
        return tasks


def run(
    playbook: str | Path, *args: str, rc: int | None = 0, timeout: float = 900, inventory: Path | None = None
) -> Run:
    """ansible-playbook PLAYBOOK (a name under playbooks/, or a path) with ARGS on INVENTORY (by
    default the Molecule scenario's), from the repository root. Asserts the exit status RC (None:
    any) with the output's end."""
    path = Path(playbook) if os.path.sep in str(playbook) else ROOT / "playbooks" / playbook
    if inventory is None:
        inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    result = Run(proc.returncode, proc.stdout + proc.stderr)
    if rc is not None:
        assert proc.returncode == rc, result.output[-4000:]
    return result
