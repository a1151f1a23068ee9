"""MLflow (nvflare_mlflow) in the federation scenario: the tracking server on the server host,
listening beyond loopback with HTTPS (the scenario's own CA, made by prepare.yml) and sign-in; the
converge's spleen job streamed every site's metrics to it through the FL server's MLflowReceiver.

The REST API is read from inside the server container (Python's urllib, the CA file, the FL server's
account); Chromium on the controller opens the UI by the container's address under its name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.helpers import browser, mlflow_rest  # noqa: E402  (the repository root, as the other verifiers do)
from tests.helpers.polling import wait_until  # noqa: E402

HOST = "server"
URL = "https://server:5443"
UNIT = "mlflow.service"
CA = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "mlflow-tls" / "ca.pem"
CA_ON_HOST = "/var/lib/nvflare/server/.mlflow/ca.pem"  # the server's workspace, its HOME
ACCOUNT = ("nvflare-server", "Molecule-FL-Server-Mlflow-2026")
ADMIN = ("admin", "Molecule-Mlflow-Admin-2026")
SUMMARY = "/var/lib/nvflare/admin-results/spleen_ct_segmentation.json"
SITES = ["site-1", "site-2"]
ROUNDS, LOCAL_EPOCHS = 2, 3  # the reference job's synthetic defaults
ARTIFACTS = Path(__file__).resolve().parents[3] / "tests" / "output" / "molecule-default"


def sh(command: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", "exec", HOST, "bash", "-c", command], capture_output=True, text=True, timeout=120)
    if check and proc.returncode:
        raise AssertionError(f"{command!r} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def rest(method: str, path: str, body: dict | None = None, account=ACCOUNT, url: str = URL) -> tuple[int, dict]:
    return mlflow_rest.rest(HOST, method, url + path, body, account, CA_ON_HOST)


def job_id() -> str:
    return json.loads(sh(f"cat {SUMMARY}"))["job_id"]


def runs_of_the_job() -> tuple[str, list[dict]]:
    status, found = rest("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=spleen_ct_segmentation")
    assert status == 200, found
    experiment = found["experiment"]["experiment_id"]
    status, runs = rest(
        "POST",
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment], "filter": f"tags.job_id = '{job_id()}'", "max_results": 50},
    )
    assert status == 200, runs
    return experiment, runs.get("runs", [])


def active() -> bool:
    return sh(f"systemctl is-active {UNIT}", check=False) == "active"


def main_pid() -> str:
    return sh(f"systemctl show -p MainPID --value {UNIT}")


def test_tracking_server_is_an_unprivileged_unit_with_private_secrets():
    assert sh(f"systemctl is-enabled {UNIT}") == "enabled"
    assert sh(f"systemctl is-active {UNIT}") == "active"
    assert sh(f"ps -o user= -p {main_pid()}") == "mlflow"
    # A tracking server only: MLflow's job runner (Huey consumers, ~230 MB each) is not started.
    assert sh("pgrep -u mlflow -fc huey", check=False) == "0"
    assert sh("stat -c '%a %U' /etc/mlflow/mlflow.env /etc/mlflow/secret-key.env").splitlines() == ["600 root"] * 2
    modes = sh("stat -c '%a %U' /etc/mlflow/tls/privkey.pem /var/lib/mlflow").splitlines()
    assert modes == ["600 mlflow", "750 mlflow"]
    # The FL server's account for MLflow: only its service user may read it.
    assert sh("stat -c '%a %U' /var/lib/nvflare/server/.mlflow/credentials") == "600 nvflare"


def test_anonymous_wrong_and_plain_http_requests_are_refused():
    path = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=spleen_ct_segmentation"
    assert rest("GET", path, account=None)[0] == 401
    assert rest("GET", path, account=(ACCOUNT[0], "not-the-password"))[0] == 401
    plain = mlflow_rest.call(HOST, "GET", "http://server:5443" + path, None, None, CA_ON_HOST)
    assert plain.returncode != 0 or json.loads(plain.stdout)["status"] >= 400, plain.stdout


def test_the_jobs_metrics_arrived_one_run_per_site_with_every_round():
    experiment, runs = runs_of_the_job()
    assert sorted({t["key"]: t["value"] for t in r["data"]["tags"]}["site"] for r in runs) == SITES, runs
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert "spleen_ct_segmentation" in run["info"]["run_name"], run["info"]["run_name"]
        assert run["info"]["run_name"].startswith(tags["site"] + "-")
        assert run["info"]["status"] == "FINISHED"
        histories = {}
        for key in ("val_dice", "train_loss"):
            status, history = rest(
                "GET", f"/api/2.0/mlflow/metrics/get-history?run_id={run['info']['run_id']}&metric_key={key}"
            )
            assert status == 200, history
            histories[key] = sorted(m["step"] for m in history.get("metrics", []))
        # One global Dice per round, one training loss per local epoch of every round.
        assert histories == {"val_dice": list(range(ROUNDS)), "train_loss": list(range(ROUNDS * LOCAL_EPOCHS))}, (
            tags["site"],
            histories,
        )
    print(f"experiment {experiment}: {[r['info']['run_name'] for r in runs]}")


def test_training_curves_png_is_a_valid_image_in_the_results():
    result_dir = json.loads(sh(f"cat {SUMMARY}"))["result_dir"]
    header = sh(
        "/usr/bin/python3 -c \"import struct,sys; d=open(sys.argv[1],'rb').read(24); "
        "print(d[:8].hex(), *struct.unpack('>II', d[16:24]))\" " + f"{result_dir}/training_curves.png"
    ).split()
    assert header[0] == "89504e470d0a1a0a", header  # PNG signature
    assert int(header[1]) > 100 and int(header[2]) > 100, header
    assert sh(f"stat -c '%a' {result_dir}/training_curves.png") == "644"


def test_browser_opens_the_ui_over_tls_and_shows_the_runs():
    missing = browser.missing_requirements()
    assert not missing, missing
    experiment, runs = runs_of_the_job()
    address = subprocess.run(
        ["docker", "inspect", HOST, "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    text = browser.mlflow_page_shows(
        # The experiment's runs table (MLflow 3 opens an experiment on its traces otherwise).
        f"{URL}/#/experiments/{experiment}/runs",
        ca_pem=CA,
        expect=["spleen_ct_segmentation", "Training runs", "2 matching runs", *SITES],
        resolve={"server": address},
        username=ADMIN[0],
        password=ADMIN[1],
        screenshot=ARTIFACTS / "mlflow-runs.png",
    )
    assert text
    assert (ARTIFACTS / "mlflow-runs.png").stat().st_size > 0


def test_restarted_after_a_crash():
    pid = main_pid()
    sh(f"kill -9 {pid}")
    assert wait_until(lambda: main_pid() not in ("0", pid) and active(), 60)
    assert wait_until(lambda: rest("GET", "/health", account=None)[0] in (200, 401), 90, 3)
