"""A real NVFlare federation on loopback for the job and federation_info modules.

One session-scoped federation: `nvflare provision` (server named localhost, free ports,
2 sites, 1 admin), then the server and both clients started as real processes from their
kits (`startup/sub_start.sh --once`, each in its own process group), stopped at the end
with their process groups, and anything left under the test folder killed by PID.

Modules run as separate processes, the way Ansible runs them (an args file on argv), so a
module that hangs at interpreter exit fails its test instead of going unnoticed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import jobs
from tests.helpers.modules import ModuleResult
from tests.helpers.modules import run_module as _run_module

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
VENV_BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "python").exists() else Path(sys.executable).parent
PYTHON = str(VENV_BIN / "python")
COLLECTIONS = ROOT / ".venv" / "collections"
PROJECT = "fedtest"
SITES = ("site-1", "site-2")
ADMIN = "admin@nvidia.com"
# The reference job the admin role submits by default (its admin_job_src).
SPLEEN_JOB_SRC = ROOT / "examples" / "jobs" / "spleen_ct_segmentation"
START_TIMEOUT = 90
MODULE_TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env() -> dict:
    env = dict(os.environ)
    # sub_start.sh runs `python3` from PATH: the venv's python must come first.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    # Two clients and a server share 2 cores: one math thread each keeps them from fighting.
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env.pop("NVFLARE_DATA_DIR", None)
    env.pop("NVFL_WORKSPACE", None)
    return env


def run_module(name: str, args: dict, workdir: Path, check_mode: bool = False, timeout: float = MODULE_TIMEOUT):
    """Run federated.nvflare.NAME with ARGS in a fresh Python process (tests/helpers/modules.py)."""
    return _run_module(
        name, args, check_mode=check_mode, process=True, workdir=workdir, env=base_env(), timeout=timeout
    )


def render_spleen_jobs(jobs: dict, workdir: Path) -> dict:
    """Lay out the MONAI spleen job the way the admin role does: the job's files, its rendered templates.

    JOBS maps a destination folder to the template variables for it; one ansible-playbook run
    renders them all (Ansible's start-up is the slow part). Returns {destination: Path}.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    source = SPLEEN_JOB_SRC
    rendered = sorted(str(p.relative_to(source))[: -len(".j2")] for p in source.rglob("*.j2"))
    plays = []
    for dest, variables in jobs.items():
        # The role copies the other files and creates the folders; plain Python does the same
        # here, faster. The templates go through ansible.builtin.template, as in the role.
        shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.j2", "__pycache__", ".*"))
        for folder in {Path(dest, r).parent for r in rendered}:
            folder.mkdir(parents=True, exist_ok=True)
        plays.append(
            {
                "name": f"Render the spleen job in {dest}",
                "hosts": "localhost",
                "gather_facts": False,
                "vars": dict(variables, ansible_python_interpreter=PYTHON),
                "tasks": [
                    {
                        "name": "Render the configs",
                        "ansible.builtin.template": {
                            "src": f"{source}/{{{{ item }}}}.j2",
                            "dest": f"{dest}/{{{{ item }}}}",
                            "mode": "0644",
                        },
                        "loop": rendered,
                    },
                ],
            }
        )
    (workdir / "render.yml").write_text(json.dumps(plays))
    env = base_env()
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_HOME"] = str(workdir / "ansible-home")
    env["ANSIBLE_LOCAL_TEMP"] = str(workdir / "ansible-tmp")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "render.yml"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"rendering the spleen job failed:\n{proc.stdout}\n{proc.stderr}"
    return {dest: Path(dest) for dest in jobs}


class Federation:
    def __init__(self, root: Path, he: bool = False):
        self.root = root
        # Provisioned with NVFlare's HEBuilder: TenSEAL contexts in the server's and sites' kits.
        self.he = he
        self.workspace = root / "provision"
        self.store = root / "store"
        self.data_dir = root / "data" / "site-1"
        self.fed_port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.fed_port:
            self.admin_port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    @property
    def kits(self) -> Path:
        return self.workspace / PROJECT / "prod_00"

    def kit(self, name: str) -> Path:
        return self.kits / name

    @property
    def admin_kit(self) -> Path:
        return self.kit(ADMIN)

    def provision(self) -> None:
        project = {
            "api_version": 3,
            "name": PROJECT,
            "description": "federated.nvflare functional tests",
            "participants": [
                {
                    "name": "localhost",
                    "type": "server",
                    "org": "nvidia",
                    "fed_learn_port": self.fed_port,
                    "admin_port": self.admin_port,
                },
                *({"name": s, "type": "client", "org": "nvidia"} for s in SITES),
                {"name": ADMIN, "type": "admin", "org": "nvidia", "role": "project_admin"},
            ],
            "builders": [
                {"path": "nvflare.lighter.impl.workspace.WorkspaceBuilder"},
                {"path": "nvflare.lighter.impl.static_file.StaticFileBuilder", "args": {"config_folder": "config"}},
                {"path": "nvflare.lighter.impl.cert.CertBuilder"},
                # Before the signature: NVFlare loads only signed HE contexts (secure mode).
                *([{"path": "nvflare.lighter.impl.he.HEBuilder"}] if self.he else []),
                {"path": "nvflare.lighter.impl.signature.SignatureBuilder"},
            ],
        }
        # JSON is YAML: no YAML library needed to write project.yml.
        (self.root / "project.yml").write_text(json.dumps(project, indent=1))
        proc = subprocess.run(
            [str(VENV_BIN / "nvflare"), "provision", "-p", "project.yml", "-w", str(self.workspace), "--force"],
            cwd=self.root,
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"nvflare provision failed:\n{proc.stdout}\n{proc.stderr}"
        # Job and snapshot storage default to /tmp/nvflare, shared by everything on the host.
        local = self.kit("localhost") / "local"
        text = (local / "resources.json.default").read_text().replace("/tmp/nvflare/", f"{self.store}/")
        (local / "resources.json").write_text(text)

    def start(self, name: str, env: dict | None = None) -> None:
        log = self.root / f"{name}.out"
        with open(log, "ab") as out:
            self.procs[name] = subprocess.Popen(
                ["bash", "startup/sub_start.sh", "--once"],
                cwd=self.kit(name),
                env=env or base_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.logs[name] = log

    def start_all(self) -> None:
        self.start("localhost")
        for site in SITES:
            env = base_env()
            if site == "site-1":
                # site-1 reads NVFLARE_DATA_DIR; site-2 falls back to <its workspace>/data.
                self.data_dir.mkdir(parents=True, exist_ok=True)
                env["NVFLARE_DATA_DIR"] = str(self.data_dir)
            self.start(site, env)

    def wait_registered(self, timeout: float = START_TIMEOUT) -> float:
        started = time.monotonic()
        deadline = started + timeout
        pending = set(SITES)
        while pending and time.monotonic() < deadline:
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.tail(name)}"
            for site in list(pending):
                if f"Successfully registered client:{site}" in self.logs[site].read_text(errors="replace"):
                    pending.discard(site)
            time.sleep(0.5)
        assert not pending, f"sites not registered after {timeout} s: {pending}\n{self.tail('localhost')}"
        return time.monotonic() - started

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])
        except (KeyError, OSError):
            return ""

    def pids(self) -> list[int]:
        """Every process whose command line or working folder lies in this federation's folder."""
        found = []
        marker = str(self.root)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if marker in cmdline or cwd.startswith(marker):
                found.append(int(entry.name))
        return found

    def stop(self, name: str, grace: float = 15.0) -> None:
        proc = self.procs.get(name)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        # Job processes live in the same process group: end what is left of it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for name in (*SITES, "localhost"):
            self.stop(name)
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def federation(tmp_path_factory, _spleen_render):
    pytest.importorskip("nvflare")
    fed = Federation(tmp_path_factory.mktemp("federation"))
    fed.provision()
    fed.start_all()
    try:
        fed.startup_seconds = fed.wait_registered()
        yield fed
    finally:
        fed.stop_all()
        leftovers = fed.pids()
        assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="session")
def modules_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("modules")


@pytest.fixture(scope="session")
def module(federation, modules_dir):
    """run(name, args, check_mode=False): a module against the federation's admin kit."""

    def _run(name: str, args: dict, check_mode: bool = False, timeout: float = MODULE_TIMEOUT) -> ModuleResult:
        full = {"admin_kit": str(federation.admin_kit)}
        full.update(args)
        return run_module(name, full, modules_dir, check_mode=check_mode, timeout=timeout)

    return _run


@pytest.fixture(scope="session")
def raw_module(modules_dir):
    """run(name, args, check_mode=False): a module with exactly ARGS (no admin kit added)."""

    def _run(name: str, args: dict, check_mode: bool = False, timeout: float = MODULE_TIMEOUT) -> ModuleResult:
        return run_module(name, args, modules_dir, check_mode=check_mode, timeout=timeout)

    return _run


@pytest.fixture
def closed_port_kit(federation, tmp_path):
    """A copy of the admin kit that points at a port nothing listens on: (kit, port)."""
    kit = tmp_path / "admin-kit"
    shutil.copytree(federation.admin_kit, kit)
    config = kit / "startup" / "fed_admin.json"
    data = json.loads(config.read_text())
    data["admin"]["port"] = free_port()
    config.write_text(json.dumps(data))
    return kit, data["admin"]["port"]


# Template variables of the spleen job variants the tests use, rendered once per session.
SPLEEN_VARIANTS = {
    "synthetic": {"admin_spleen_data_mode": "synthetic"},
    "bundle": {"admin_spleen_data_mode": "bundle"},
    # The homomorphic-encryption variant (FedAvgRecipeWithHE's layout, HECrossSiteModelEval).
    "he": {"admin_spleen_data_mode": "synthetic", "admin_spleen_he": True, "admin_spleen_job_name": "spleen_he"},
    "overrides": {
        "admin_spleen_data_mode": "bundle",
        "admin_spleen_min_clients": 3,
        "admin_spleen_num_rounds": 7,
        "admin_spleen_network_channels": [4, 8, 16],
        "admin_spleen_num_res_units": 0,
        "admin_spleen_num_workers": 0,
        "admin_spleen_bundle_dir": "/srv/bundles/spleen_ct_segmentation",
        "admin_spleen_intensity_range": [-100, 200],
        "admin_spleen_job_name": "spleen_run_2",
        "admin_spleen_seed": 7,
    },
}


@pytest.fixture(scope="session")
def _spleen_render(tmp_path_factory):
    """Render SPLEEN_VARIANTS in a background thread.

    Ansible is slow to start on a busy 2-core machine: the federation fixture starts this
    first, so rendering runs while the federation comes up. spleen_jobs waits for the result.
    """
    root = tmp_path_factory.mktemp("spleen-jobs")
    dests = {name: str(root / name / "spleen_ct_segmentation") for name in SPLEEN_VARIANTS}
    outcome: dict = {}

    def work():
        try:
            render_spleen_jobs({dests[n]: v for n, v in SPLEEN_VARIANTS.items()}, root / "render")
            outcome["jobs"] = {name: Path(dest) for name, dest in dests.items()}
        except BaseException as exc:  # reported by spleen_jobs in the test that needs it
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="spleen-render", daemon=True)
    thread.start()
    yield thread, outcome
    thread.join(timeout=300)


@pytest.fixture(scope="session")
def spleen_jobs(_spleen_render) -> dict:
    """{variant: job folder} for SPLEEN_VARIANTS, laid out by the admin role's files and templates."""
    thread, outcome = _spleen_render
    thread.join(timeout=300)
    if "error" in outcome:
        raise outcome["error"]
    assert "jobs" in outcome, "rendering the spleen job did not finish within 300 s"
    return outcome["jobs"]


@pytest.fixture(scope="session")
def numpy_job_src() -> Path:
    return HERE / "jobs" / "numpy_job"


@pytest.fixture
def numpy_job(tmp_path, numpy_job_src):
    """make(script_args, name=None): a copy of the numpy test job with its own script arguments."""

    def _make(script_args: str, folder: str = "numpy_job") -> Path:
        return jobs.numpy_job(tmp_path / "jobs" / folder, script_args)

    return _make
