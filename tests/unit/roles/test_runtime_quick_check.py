"""The _runtime role's quick look at the virtualenv (roles/_runtime/vars/main.yml): it decides
whether pip runs at all, so a wrong "all installed" would leave a host without a package."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = yaml.safe_load((ROOT / "roles" / "_runtime" / "vars" / "main.yml").read_text())["_runtime_check_script"]
PYYAML = metadata.version("PyYAML")


def check(*specs: str) -> subprocess.CompletedProcess:
    # The controller's own interpreter stands in for the host's virtualenv: what it has installed
    # is real (PyYAML, pytest), and what it lacks is really missing.
    return subprocess.run([sys.executable, "-c", SCRIPT, *specs], capture_output=True, text=True, check=False)


def test_all_pinned_and_installed():
    res = check(f"PyYAML=={PYYAML}", f"pytest=={metadata.version('pytest')}")
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("PyYAML==0.0.1", f"PyYAML: {PYYAML} installed, 0.0.1 wanted"),
        ("no-such-package-here==1.0", "missing: no-such-package-here"),
        (f"PyYAML=={PYYAML}+cu121", "wanted"),  # another local build is another package
    ],
)
def test_missing_or_other_version_means_install(spec, says):
    res = check(f"pytest=={metadata.version('pytest')}", spec)
    assert res.returncode == 1
    assert says in res.stdout


@pytest.mark.parametrize("spec", ["PyYAML>=5", "PyYAML", "PyYAML[extra]==6.0", "PyYAML==6.*; python_version>'3'"])
def test_anything_but_a_plain_pin_leaves_it_to_pip(spec):
    assert check(spec).returncode == 2


def test_local_label_counts_as_the_version(tmp_path):
    """torch==2.13.0 is satisfied by 2.13.0+cpu, as pip sees it."""
    dist = tmp_path / "fakepkg-2.13.0+cpu.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 2.13.0+cpu\n")
    env = {"PYTHONPATH": str(tmp_path)}

    def run(spec: str) -> int:
        return subprocess.run(
            [sys.executable, "-c", SCRIPT, spec], capture_output=True, text=True, check=False, env=env
        ).returncode

    assert run("fakepkg==2.13.0") == 0
    assert run("fakepkg==2.13.0+cpu") == 0
    assert run("fakepkg==2.13.1") == 1
