"""federated.nvflare.python_venv and its module_utils (_venv): the quick look that decides whether
pip runs at all (a wrong "all installed" would leave a host without a package), the install from
a wheelhouse, check mode, the lock and the error messages.

Virtualenvs here are real but made without pip (fast); pip comes from the test's own interpreter
through a .pth file, and the one package installed is a tiny wheel built by the test."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import sys
import threading
import time
import venv
import zipfile
from importlib import metadata
from pathlib import Path

import pip
import pytest

from ansible_collections.federated.nvflare.plugins.module_utils import _venv

PYYAML = metadata.version("PyYAML")
PIP_SITE = str(Path(pip.__file__).resolve().parents[1])


def _site_packages(path: Path) -> Path:
    return next(path.glob("lib/python*/site-packages"))


def make_venv(path: Path, system_site_packages: bool = False) -> Path:
    """A real virtualenv without its own pip; the test interpreter's pip is reachable."""
    venv.EnvBuilder(with_pip=False, symlinks=True, system_site_packages=system_site_packages).create(path)
    (_site_packages(path) / "_test_pip.pth").write_text(PIP_SITE + "\n")
    return path


def fake_dist(venv_path: Path, name: str, version: str) -> None:
    dist = _site_packages(venv_path) / f"{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def build_wheel(folder: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def digest(text: str) -> str:
        raw = hashlib.sha256(text.encode()).digest()
        return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    record = "".join(f"{p},{digest(t)},{len(t.encode())}\n" for p, t in files.items()) + f"{info}/RECORD,,\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for p, t in {**files, f"{info}/RECORD": record}.items():
            zf.writestr(p, t)
    return wheel


@pytest.fixture
def interpreter(tmp_path):
    """Stands in for /usr/bin/python3: `INTERPRETER -m venv [--system-site-packages] PATH` makes
    a pip-less virtualenv (as make_venv does) and records its arguments."""
    script = tmp_path / "python3"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, venv\n"
        "from pathlib import Path\n"
        "Path(sys.argv[0] + '.args').write_text(' '.join(sys.argv[1:]))\n"
        "path = Path(sys.argv[-1])\n"
        "system = '--system-site-packages' in sys.argv\n"
        "venv.EnvBuilder(with_pip=False, symlinks=True, system_site_packages=system).create(path)\n"
        f"next(path.glob('lib/python*/site-packages')).joinpath('_test_pip.pth').write_text({PIP_SITE!r})\n"
    )
    script.chmod(0o755)
    return script


# The quick look (module_utils/_venv): plain pins against what an interpreter has installed.


def controller_versions(*names: str) -> dict:
    # The test's own interpreter stands in for a virtualenv: what it has installed is real
    # (PyYAML, pytest), and what it lacks is really missing.
    env = _venv.VirtualEnv("/nonexistent", lambda argv, env: _run(argv))
    env.python = sys.executable
    return env.versions(list(names))


def _run(argv):
    import subprocess

    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def _check(*specs: str) -> list[str] | None:
    names = [_venv.requirement_name(s) for s in specs]
    return _venv.unmet(list(specs), controller_versions(*[n for n in names if n]))


def test_all_pinned_and_installed():
    assert _check(f"PyYAML=={PYYAML}", f"pytest=={metadata.version('pytest')}") == []


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("PyYAML==0.0.1", f"PyYAML: {PYYAML} installed, 0.0.1 wanted"),
        ("no-such-package-here==1.0", "missing: no-such-package-here"),
        (f"PyYAML=={PYYAML}+cu121", "wanted"),  # another local build is another package
    ],
)
def test_missing_or_other_version_means_install(spec, says):
    unmet = _check(f"pytest=={metadata.version('pytest')}", spec)
    assert len(unmet) == 1
    assert says in unmet[0]


@pytest.mark.parametrize("spec", ["PyYAML>=5", "PyYAML", "PyYAML[extra]==6.0", "PyYAML==6.*; python_version>'3'"])
def test_anything_but_a_plain_pin_leaves_it_to_pip(spec):
    assert _check(spec) is None


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("monai>=1.6", "monai"),
        ("certbot-dns-route53==5.8.0", "certbot-dns-route53"),
        ("PyYAML[extra]==6.0", "PyYAML"),
        ("pkg @ https://example.org/pkg.whl", "pkg"),
        ("https://example.org/pkg.whl", None),
        ("./local/folder", None),
    ],
)
def test_requirement_names(spec, name):
    assert _venv.requirement_name(spec) == name


def test_pip_summary_lines_are_read():
    out = "Collecting x\nSuccessfully installed certbot-dns-route53-5.8.0 nvflare-2.9.0\n"
    assert _venv.parse_pip_list(out, "Successfully installed ") == ["certbot-dns-route53==5.8.0", "nvflare==2.9.0"]
    assert _venv.parse_pip_list("Would install a-1.0\n", "Would install ") == ["a==1.0"]
    assert _venv.parse_pip_list("Requirement already satisfied: a\n", "Successfully installed ") == []


# The module on real virtualenvs.


def test_local_label_counts_as_the_version(tmp_path, run_module):
    """torch==2.13.0 is satisfied by 2.13.0+cpu, as pip sees it; no pip runs for a met pin."""
    path = make_venv(tmp_path / "venv")
    fake_dist(path, "fakepkg", "2.13.0+cpu")
    for spec in ("fakepkg==2.13.0", "fakepkg==2.13.0+cpu"):
        res = run_module("python_venv", {"path": str(path), "requirements": [spec]})
        assert not res.failed and not res["changed"], res
        assert res["versions"] == {"fakepkg": "2.13.0+cpu"} and res["unmet"] == []
    # Check mode, the wheelhouse not there yet: a change, without pip.
    args = {"path": str(path), "requirements": ["fakepkg==2.13.1"], "wheelhouse": str(tmp_path / "absent")}
    res = run_module("python_venv", args, check_mode=True)
    assert res["changed"] and res["unmet"] == ["fakepkg: 2.13.0+cpu installed, 2.13.1 wanted"]


def test_creates_installs_then_leaves_pip_alone(tmp_path, run_module, interpreter):
    wheelhouse = tmp_path / "wheels"
    build_wheel(wheelhouse)
    path = tmp_path / "opt" / "venv"
    args = {
        "path": str(path),
        "python": str(interpreter),
        "requirements": ["tinypkg==1.0"],
        "wheelhouse": str(wheelhouse),
    }
    res = run_module("python_venv", args, diff=True)
    assert not res.failed, res
    assert res["changed"] and res["created"] and res["installed"] == ["tinypkg==1.0"]
    assert res["versions"] == {"tinypkg": "1.0"}
    assert res["diff"]["before"] == "tinypkg (not installed)\n" and res["diff"]["after"] == "tinypkg==1.0\n"
    assert (path.parent.stat().st_mode & 0o777) == 0o755
    assert Path(str(interpreter) + ".args").read_text() == f"-m venv {path}"
    # A re-run must not need pip or the wheelhouse at all.
    for wheel in wheelhouse.iterdir():
        wheel.unlink()
    wheelhouse.rmdir()
    again = run_module("python_venv", args)
    assert not again.failed and not again["changed"] and again["installed"] == [], again
    assert not again["created"]


def test_system_site_packages_reach_the_interpreter(tmp_path, run_module, interpreter):
    path = tmp_path / "venv"
    res = run_module("python_venv", {"path": str(path), "python": str(interpreter), "system_site_packages": True})
    assert res["changed"] and res["created"] and res["installed"] == []
    assert Path(str(interpreter) + ".args").read_text() == f"-m venv --system-site-packages {path}"


def test_check_mode_without_a_virtualenv_writes_nothing(tmp_path, run_module, interpreter):
    path = tmp_path / "opt" / "venv"
    args = {"path": str(path), "python": str(interpreter), "requirements": ["tinypkg==1.0"], "wheelhouse": "/nowhere"}
    res = run_module("python_venv", args, check_mode=True)
    assert not res.failed, res
    assert res["changed"] and res["created"] and res["installed"] == ["tinypkg==1.0"]
    assert not path.parent.exists()


def test_check_mode_asks_pip_for_a_dry_run(tmp_path, run_module):
    wheelhouse = tmp_path / "wheels"
    build_wheel(wheelhouse)
    path = make_venv(tmp_path / "venv")
    args = {"path": str(path), "requirements": ["tinypkg"], "wheelhouse": str(wheelhouse)}
    res = run_module("python_venv", args, check_mode=True, diff=True)
    assert not res.failed, res
    assert res["changed"] and res["installed"] == ["tinypkg==1.0"] and res["unmet"] is None
    assert res["diff"]["after"] == "tinypkg==1.0\n"
    assert not list(_site_packages(path).glob("tinypkg*"))


def test_check_mode_with_the_wheelhouse_not_there_yet_reports_a_change(tmp_path, run_module):
    path = make_venv(tmp_path / "venv")
    args = {"path": str(path), "requirements": ["tinypkg==1.0"], "wheelhouse": str(tmp_path / "not-copied")}
    res = run_module("python_venv", args, check_mode=True)
    assert not res.failed and res["changed"] and res["installed"] == ["tinypkg"], res


def test_a_wheel_missing_from_the_wheelhouse_says_make_wheelhouse(tmp_path, run_module):
    wheelhouse = tmp_path / "wheels"
    build_wheel(wheelhouse)
    path = make_venv(tmp_path / "venv")
    args = {"path": str(path), "requirements": ["tinypkg==1.0", "absentpkg==2.9.0"], "wheelhouse": str(wheelhouse)}
    res = run_module("python_venv", args)
    assert res.failed
    assert f"no wheel for absentpkg in the wheelhouse {wheelhouse}" in res["msg"]
    assert "make wheelhouse" in res["msg"]
    res = run_module("python_venv", {**args, "wheelhouse": str(tmp_path / "absent")})
    assert res.failed and "is not a folder on this host" in res["msg"] and "make wheelhouse" in res["msg"]


def test_a_pip_failure_shows_its_last_lines(tmp_path, run_module):
    wheelhouse = tmp_path / "wheels"
    build_wheel(wheelhouse)
    path = make_venv(tmp_path / "venv")
    res = run_module(
        "python_venv", {"path": str(path), "requirements": ["tinypkg==9.9"], "wheelhouse": str(wheelhouse)}
    )
    assert res.failed
    assert f"pip install into {path} failed" in res["msg"]
    assert "No matching distribution found for tinypkg==9.9" in res["msg"]
    assert "make wheelhouse" in res["msg"]


def test_an_interpreter_that_cannot_make_a_virtualenv(tmp_path, run_module):
    path = tmp_path / "venv"
    res = run_module("python_venv", {"path": str(path), "python": str(tmp_path / "no-python3")})
    assert res.failed
    assert f"cannot create virtualenv {path} with {tmp_path / 'no-python3'}" in res["msg"]
    assert "python3-venv" in res["msg"]
    assert not path.exists()


def test_hosts_sharing_a_virtualenv_wait_for_each_other(tmp_path, run_module, interpreter):
    """Another holder of the lock on the virtualenv's folder (flock(1), another host) delays the work."""
    folder = tmp_path / "opt"
    folder.mkdir()
    path = folder / "venv"
    results = []
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        worker = threading.Thread(
            target=lambda: results.append(
                run_module(
                    "python_venv", {"path": str(path), "python": str(interpreter)}, process=True, workdir=tmp_path
                )
            )
        )
        worker.start()
        time.sleep(1.5)
        assert worker.is_alive() and not path.exists()
    finally:
        os.close(fd)
    worker.join(60)
    assert results and results[0]["created"], results


def test_check_mode_without_pip_reports_what_the_quick_look_found(tmp_path, run_module):
    path = make_venv(tmp_path / "venv")
    fake_dist(path, "fakepkg", "1.0")
    args = {"path": str(path), "check_with_pip": False}
    res = run_module("python_venv", {**args, "requirements": ["fakepkg==1.1", "otherpkg"]}, check_mode=True)
    assert res["changed"] and res["installed"] == ["fakepkg", "otherpkg"] and res["unmet"] is None
    # An unpinned requirement already there: only pip can tell, so a change is reported.
    res = run_module("python_venv", {**args, "requirements": ["fakepkg"]}, check_mode=True)
    assert res["changed"] and res["installed"] == ["fakepkg"]
    res = run_module("python_venv", {**args, "requirements": ["fakepkg==1.0"]}, check_mode=True)
    assert not res["changed"] and res["installed"] == []
