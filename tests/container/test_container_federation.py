"""The container service manager on this machine's real Docker engine: inventories/container.

The README's `make demo RUNTIME=container` deployment, as a test: the server and both sites in
containers (community.docker's modules), from an image that site.yml builds from the Debian 12
base image (`scripts/base-image.sh`) and the wheelhouse, the admin on this machine. Test hosts
cannot run a Docker engine of their own here, so this layer runs on the controller's engine, in
the demo's places (/var/lib/nvflare, /opt/nvflare/venv): it removes whatever a demo left there
first, and everything it made at the end.

What runs for real: the image build (offline, pip --no-index), the check of the image, the
containers with restart policy unless-stopped, the synthetic spleen job (2 sites, cross-site
validation), Docker's restart after a crash and after a restart of dockerd, NVFlare's admin
`restart` and `shutdown`, stop.yml and uninstall.yml. Not run: GPUs (no GPU here; the device
request is passed only when the host has GPUs, as detected by nvidia-smi).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import flare_admin
from tests.helpers.playbooks import ROOT, Run, run
from tests.helpers.polling import wait_until
from tests.helpers.skip_policy import in_ci

INVENTORY = ROOT / "inventories" / "container" / "hosts.yml"
HOSTS = ("server", "site-1", "site-2", "admin")
CONTAINERS = {"server": "nvflare-localhost", "site-1": "nvflare-site-1", "site-2": "nvflare-site-2"}
SITES = ("site-1", "site-2")
ADMIN = "admin@example.com"
ADMIN_KIT = "/var/lib/nvflare/admin@example.com"
VENV_PYTHON = "/opt/nvflare/venv/bin/python"
RESULTS = Path("/var/lib/nvflare/admin-results")
FIGURES = ROOT / "tests" / "output" / "container-figures.json"
# Wait for sites to (re)register: a container start, NVFlare's start-up, the registration.
REGISTER_TIMEOUT = 150


# Under homomorphic encryption (nvflare_he): HE kits, TenSEAL in the image, the HE job. Its cost
# goes with the number of tensors (one CKKS ciphertext at least each, about 1 MB on the wire), so
# the job's UNet is a smaller one here: 34 tensors instead of 82 (bench/he_vs_plain.py measures
# the reference one).
HE = json.dumps({"nvflare_he": True, "admin_spleen_network_channels": [8, 16, 32], "admin_spleen_num_res_units": 0})
HE_TENSORS = 34


def playbook(name: str, *args: str, rc: int | None = 0, timeout: float = 1500) -> Run:
    return run(name, "-e", HE, *args, rc=rc, timeout=timeout, inventory=INVENTORY)


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def inspect(container: str, fmt: str) -> str:
    return docker("inspect", "--type=container", f"--format={fmt}", container, check=False)


def logs(container: str) -> str:
    """The container's output over all its starts (stdout and stderr: NVFlare logs to stderr)."""
    proc = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=120, check=False)
    return proc.stdout + proc.stderr


def registrations(site: str) -> int:
    """How often the client in SITE's container registered with the server, over all its starts."""
    return logs(CONTAINERS[site]).count(f"Successfully registered client:{site} ")


def registered() -> list[str]:
    try:
        return flare_admin.run([], VENV_PYTHON, ADMIN, ADMIN_KIT, "registered", timeout=60)
    except AssertionError:
        return []  # the server is (re)starting


def wait_registered(sites=SITES, timeout: float = REGISTER_TIMEOUT) -> bool:
    return wait_until(lambda: registered() == sorted(sites), timeout, 3)


def ours() -> list[str]:
    """The names of every container of the collection on this engine, running or not."""
    out = docker("ps", "-a", "--filter", "label=org.federated-nvflare.participant", "--format", "{{.Names}}")
    return sorted(out.split())


@pytest.fixture(scope="module")
def deployed():
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode != 0:
        pytest.skip("no Docker engine answers (scripts/docker.sh start)")
    # Whatever an earlier demo or run left, away first (containers included).
    playbook("uninstall.yml", "-e", "nvflare_purge_data=true")
    assert ours() == [], ours()
    t0 = time.monotonic()
    result = playbook("site.yml", "-e", "nvflare_submit_job=true")
    figures = {"site_yml_with_build_and_job_s": round(time.monotonic() - t0)}
    image = inspect(CONTAINERS["site-1"], "{{.Config.Image}}")
    figures["image"] = image
    figures["image_size_mb"] = round(int(docker("image", "inspect", "--format={{.Size}}", image)) / 1e6)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=1))
    try:
        yield result
    finally:
        playbook("uninstall.yml", "-e", "nvflare_purge_data=true", rc=None)


def test_the_job_trains_in_the_containers(deployed):
    summary = json.loads((RESULTS / "spleen_ct_segmentation.json").read_text())
    assert summary["status"] == "FINISHED:COMPLETED", summary
    matrix = summary["cross_site_validation"]
    assert {"site-1", "site-2"} <= set(matrix), matrix
    assert all(set(per_site) == set(SITES) for per_site in matrix.values()), matrix
    # The HE variant: the kits carry TenSEAL contexts, the server aggregated ciphertexts only.
    assert Path("/var/lib/nvflare/localhost/startup/server_context.tenseal").is_file()
    for site in SITES:
        assert Path(f"/var/lib/nvflare/{site}/startup/client_context.tenseal").is_file()
    assert_the_server_held_only_ciphertexts(Path(summary["result_dir"]) / "workspace")
    # The clients' processes are in their containers, not on this machine.
    for site in SITES:
        pids = docker("top", CONTAINERS[site], "-o", "pid").split()[1:]
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in pids]
        assert any(f"client_train -m /var/lib/nvflare/{site}" in c for c in commands), commands
    assert registered() == list(SITES)


def assert_the_server_held_only_ciphertexts(workspace: Path) -> None:
    """What the server aggregated and kept: CKKS ciphertexts, never a float tensor. Its own TenSEAL
    context is public (no secret key): it cannot decrypt the global model it persisted, which a
    site's context decrypts to finite weights; the sites encrypted every layer in every round."""
    import math

    import tenseal as ts
    import torch

    log = (workspace / "log.txt").read_text(errors="replace")
    assert "HEModelShareableGenerator" in log and "SerializedHECrossSiteModelEval" in log
    weights = torch.load(workspace / "app_server" / "FL_global_model.pt", map_location="cpu", weights_only=False)
    weights = weights["model"]
    assert weights and all(isinstance(v, bytes) for v in weights.values()), {type(v) for v in weights.values()}
    assert len(weights) == HE_TENSORS, len(weights)
    server_ctx = ts.context_from(Path("/var/lib/nvflare/localhost/startup/server_context.tenseal").read_bytes())
    site_ctx = ts.context_from(Path("/var/lib/nvflare/site-1/startup/client_context.tenseal").read_bytes())
    assert not server_ctx.has_secret_key() and site_ctx.has_secret_key()
    name, blob = next((k, v) for k, v in weights.items() if k.endswith("conv.weight"))
    with pytest.raises(ValueError, match="secret"):
        ts.ckks_vector_from(server_ctx, blob).decrypt()
    values = ts.ckks_vector_from(site_ctx, blob).decrypt()
    assert values and all(math.isfinite(v) for v in values), name
    job_log = next(Path("/var/lib/nvflare/site-1").glob(f"{workspace.parent.name}/log.txt")).read_text(errors="replace")
    assert job_log.count(f"{len(weights)} of {len(weights)} layers encrypted") >= 2, job_log[-2000:]


def test_each_participant_has_a_long_running_unprivileged_container(deployed):
    uid, gid = (
        subprocess.run(
            ["id", "-u" if f == "u" else "-g", "nvflare"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for f in "ug"
    )
    for host, name in CONTAINERS.items():
        assert inspect(name, "{{.State.Status}}") == "running", host
        assert inspect(name, "{{.HostConfig.RestartPolicy.Name}}") == "unless-stopped"
        assert inspect(name, "{{.Config.User}}") == f"{uid}:{gid}", "runs as the service account, not root"
        assert inspect(name, "{{.HostConfig.Init}}") == "true"
        mounts = json.loads(inspect(name, "{{json .Mounts}}"))
        by_target = {m["Destination"]: m["RW"] for m in mounts}
        workspace = f"/var/lib/nvflare/{'localhost' if host == 'server' else host}"
        assert by_target[workspace] is True
        assert by_target[f"{workspace}/startup"] is False, "the kit's certificates and key are read-only"
        assert by_target[f"{workspace}-data"] is True
    assert int(inspect(CONTAINERS["site-1"], "{{.HostConfig.ShmSize}}")) == 2 * 1024**3


def test_a_second_run_and_a_check_run_change_nothing(deployed):
    ids = {h: inspect(n, "{{.Id}}") for h, n in CONTAINERS.items()}
    again = playbook("site.yml")
    assert set(again.recap.values()) == {0}, {h: again.changed_tasks(h) for h in HOSTS if again.recap.get(h)}
    check = playbook("site.yml", "--check")
    assert set(check.recap.values()) == {0}, {h: check.changed_tasks(h) for h in HOSTS if check.recap.get(h)}
    assert {h: inspect(n, "{{.Id}}") for h, n in CONTAINERS.items()} == ids, "no container was recreated"


def test_an_image_without_nvflare_is_refused_before_the_container_changes(deployed):
    """The base image has Python but not NVFlare: the check in the image stops the run."""
    site_id = inspect(CONTAINERS["site-1"], "{{.Id}}")
    base = os.environ.get("NVFLARE_TEST_IMAGE", "federated-nvflare/debian12-systemd:latest")
    bad = playbook("site.yml", "--limit", "localhost,site-1", "-e", f"client_gpu_container_image={base}", rc=2)
    assert f"The image {base} cannot run site-1" in bad.output, bad.output[-3000:]
    assert "nvflare is not installed" in bad.output
    assert inspect(CONTAINERS["site-1"], "{{.Id}}") == site_id
    assert inspect(CONTAINERS["site-1"], "{{.State.Status}}") == "running"
    assert docker("ps", "-a", "--filter", "name=nvflare-site-1-check", "--format", "{{.Names}}") == ""
    # An image that is not on the host: a clear error; in check mode, the change it would make.
    missing = playbook(
        "site.yml", "--limit", "localhost,site-1", "-e", "client_gpu_container_image=nvflare-none:1", rc=2
    )
    assert "The image nvflare-none:1 is not on site-1" in missing.output, missing.output[-3000:]
    preview = playbook(
        "site.yml", "--check", "--limit", "localhost,site-1", "-e", "client_gpu_container_image=nvflare-none:1"
    )
    assert "would be created from nvflare-none:1" in preview.output and preview.recap["site-1"] > 0, preview.output[
        -3000:
    ]
    assert inspect(CONTAINERS["site-1"], "{{.Id}}") == site_id


def test_a_crashed_site_is_restarted_by_docker(deployed):
    """The container's main process killed (a crash, an out-of-memory kill): Docker starts it again."""
    name = CONTAINERS["site-1"]
    before, joined = int(inspect(name, "{{.RestartCount}}")), registrations("site-1")
    assert joined >= 1
    os.kill(int(inspect(name, "{{.State.Pid}}")), 9)
    assert wait_until(lambda: int(inspect(name, "{{.RestartCount}}")) == before + 1, 60, 1)
    assert wait_until(lambda: inspect(name, "{{.State.Status}}") == "running", 60, 1)
    # The new client registered (the server may still list the old one for a while).
    assert wait_until(lambda: registrations("site-1") == joined + 1, REGISTER_TIMEOUT, 2), logs(name)[-3000:]
    assert wait_registered(), registered()


def test_admin_restart_and_shutdown_are_honoured(deployed):
    """NVFlare's admin `restart` brings site-1 back in the same container; `shutdown` keeps site-2
    down, its container idle, and status.yml says so (the next test's site.yml run starts it)."""
    site1 = inspect(CONTAINERS["site-1"], "{{.Id}}")
    flare_admin.run([], VENV_PYTHON, ADMIN, ADMIN_KIT, "restart", "client", "site-1")
    flare_admin.run([], VENV_PYTHON, ADMIN, ADMIN_KIT, "shutdown", "client", "site-2")
    assert wait_until(lambda: os.path.exists("/var/lib/nvflare/site-2/shutdown.fl"), 60, 1)
    assert wait_until(lambda: "restart.fl: starting again" in logs(CONTAINERS["site-1"]), 90, 2)
    assert wait_registered(["site-1"], 120), registered()
    time.sleep(10)
    assert registered() == ["site-1"], "site-2 stays down after its shutdown"
    assert "kept down after an NVFlare admin shutdown" in logs(CONTAINERS["site-2"])
    assert inspect(CONTAINERS["site-2"], "{{.State.Status}}") == "running", "the container idles"
    assert inspect(CONTAINERS["site-1"], "{{.Id}}") == site1
    # status.yml reads the containers: site-2's is up, its participant shut down by the admin.
    report_file = FIGURES.parent / "container-status.json"
    status = playbook("status.yml", "--check", "-e", f"nvflare_status_file={report_file}", rc=2)
    assert "site-2 is shut down by an NVFlare admin" in status.output, status.output[-3000:]
    rows = {r["name"]: r for r in json.loads(report_file.read_text())["participants"]}
    assert rows["site-2"]["state"] == "shut down", rows["site-2"]
    assert rows["site-1"]["state"] == rows["localhost"]["state"] == "running", rows
    # The crash test's restart, counted by Docker.
    assert rows["site-1"]["restarts"] >= 1, rows["site-1"]


def test_docker_kill_is_a_manual_stop_that_the_next_run_undoes(deployed):
    """By Docker's rules `docker kill` stops a container by hand: its restart policy leaves it
    down (as after `docker stop`). The next site.yml run starts it, and site-2 that an admin shut
    down (the test before), and nothing else."""
    name = CONTAINERS["site-1"]
    docker("kill", name)
    time.sleep(5)
    assert inspect(name, "{{.State.Status}}") == "exited"
    result = playbook("site.yml")
    assert result.recap["site-1"] > 0 and result.recap["site-2"] > 0 and result.recap["server"] == 0, result.recap
    assert inspect(name, "{{.State.Status}}") == "running"
    assert not os.path.exists("/var/lib/nvflare/site-2/shutdown.fl")
    assert wait_registered(), registered()


def test_a_restart_of_dockerd_brings_every_participant_back(deployed):
    if not (ROOT / ".cache" / "dockerd" / "dockerd.pid").exists():
        if in_ci():
            pytest.fail("dockerd was not started by scripts/docker.sh: this test cannot restart it")
        pytest.skip("dockerd was not started by scripts/docker.sh: this test restarts only its own")
    started = {n: inspect(n, "{{.State.StartedAt}}") for n in CONTAINERS.values()}
    joined = {site: registrations(site) for site in SITES}
    subprocess.run([str(ROOT / "scripts" / "docker.sh"), "stop"], check=True, timeout=120)
    subprocess.run([str(ROOT / "scripts" / "docker.sh"), "start"], check=True, timeout=120)
    assert wait_until(lambda: all(inspect(n, "{{.State.Status}}") == "running" for n in CONTAINERS.values()), 60, 1)
    assert all(inspect(n, "{{.State.StartedAt}}") != started[n] for n in CONTAINERS.values())
    for site in SITES:
        assert wait_until(lambda s=site: registrations(s) > joined[s], 240, 3), logs(CONTAINERS[site])[-3000:]
    assert wait_registered(timeout=240), registered()


def test_stopped_then_absent_remove_the_containers(deployed):
    stop = playbook("stop.yml", "--limit", "localhost,site-1")
    assert ours() == sorted([CONTAINERS["server"], CONTAINERS["site-2"]]), "state stopped removes the container"
    assert Path("/var/lib/nvflare/site-1/startup").is_dir(), "the kits stay"
    assert stop.recap["site-1"] > 0
    # state absent removes the running containers and the stopped site alike.
    gone = playbook("uninstall.yml")
    assert ours() == []
    assert not Path("/var/lib/nvflare/site-1").exists()
    assert Path("/var/lib/nvflare/site-1-data").is_dir(), "data stays without nvflare_purge_data"
    assert gone.recap["site-1"] > 0
    again = playbook("uninstall.yml")
    assert set(again.recap.values()) == {0}, {h: again.changed_tasks(h) for h in HOSTS if again.recap.get(h)}
