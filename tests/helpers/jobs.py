"""The small numpy job of the functional tests, copied with script arguments of its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

NUMPY_JOB = Path(__file__).resolve().parents[1] / "functional" / "federation" / "jobs" / "numpy_job"


def numpy_job(dest: Path, script_args: str) -> Path:
    """A fresh copy of the numpy job in DEST whose train script gets SCRIPT_ARGS (np_train.py's options)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(NUMPY_JOB, dest)
    config = dest / "app" / "config" / "config_fed_client.json"
    data = json.loads(config.read_text())
    data["executors"][0]["executor"]["args"]["task_script_args"] = script_args
    config.write_text(json.dumps(data, indent=2))
    return dest
