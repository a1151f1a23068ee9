"""federated.nvflare.job against a real federation on loopback.

The MONAI spleen job (synthetic data, 2 rounds, cross-site validation) runs once per
session; the tests after it read its outcome. Failure, timeout and abort use the small
numpy job.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest

pytestmark = pytest.mark.slow

SITES = ["site-1", "site-2"]
SERVER_MODELS = ["SRV_FL_global_model.pt", "SRV_best_FL_global_model.pt"]


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _job_ids(module):
    return [j["job_id"] for j in module("federation_info", {})["jobs"]]


@pytest.fixture(scope="module")
def spleen_job(spleen_jobs):
    pytest.importorskip("monai")
    pytest.importorskip("nibabel")
    return spleen_jobs["synthetic"]


@pytest.fixture(scope="module")
def spleen_run(module, spleen_job, tmp_path_factory):
    """Run the spleen job once: (result, args, job folder content before the run)."""
    before = _snapshot(spleen_job)
    args = {
        "job_dir": str(spleen_job),
        "timeout": 600,
        "poll_interval": 1,
        "download_dir": str(tmp_path_factory.mktemp("results")),
    }
    result = module("job", args, timeout=700)
    print(f"spleen job: module wall {result.wall:.1f} s, job duration {result.get('duration')}")
    return result, args, before


def test_spleen_job_completes_with_cross_site_dice(spleen_run):
    result, args, _unused = spleen_run
    assert result.rc == 0, result.get("msg")
    assert result["changed"] is True and result["submitted"] is True
    assert result["status"] == "FINISHED:COMPLETED"
    assert result["job_name"] == "spleen_ct_segmentation"
    assert result["submit_token"].startswith("ansible:spleen_ct_segmentation:")
    assert result["result_dir"] == os.path.join(args["download_dir"], result["job_id"])
    assert os.path.isfile(result["server_log"])
    matrix = result["cross_site_validation"]
    assert sorted(matrix) == sorted(SERVER_MODELS + SITES)
    for model, by_site in matrix.items():
        assert sorted(by_site) == SITES, model
        for site, metrics in by_site.items():
            dice = metrics["val_dice"]
            assert isinstance(dice, float) and not math.isnan(dice), (model, site, dice)
            assert 0.0 <= dice <= 1.0, (model, site, dice)
    # The synthetic blobs are easy: the final global model has learned to find them.
    final = [matrix["SRV_FL_global_model.pt"][site]["val_dice"] for site in SITES]
    assert sum(final) / len(final) > 0.3, matrix


def test_spleen_job_folder_is_left_untouched(spleen_run, spleen_job):
    _result, _args, before = spleen_run
    assert _snapshot(spleen_job) == before


def test_spleen_data_comes_from_the_site_data_dir(spleen_run, federation):
    # site-1 runs with NVFLARE_DATA_DIR, site-2 falls back to <its workspace>/data.
    for folder in (
        federation.data_dir / "synthetic_spleen_site-1",
        federation.kit("site-2") / "data" / "synthetic_spleen_site-2",
    ):
        meta = json.loads((folder / "dataset.json").read_text())
        assert len(meta["training"]) == 8
        assert all((folder / item["image"]).is_file() for item in meta["training"])


def test_resubmitting_the_same_folder_starts_no_second_run(spleen_run, module):
    first, args, _unused = spleen_run
    jobs_before = _job_ids(module)
    again = module("job", args)
    assert again.rc == 0, again.get("msg")
    assert again["job_id"] == first["job_id"]
    assert again["changed"] is False and again["submitted"] is False
    assert again["status"] == "FINISHED:COMPLETED"
    assert again["cross_site_validation"] == first["cross_site_validation"]
    assert _job_ids(module) == jobs_before


def test_check_mode_on_a_submitted_folder_changes_nothing(spleen_run, module):
    first, args, _unused = spleen_run
    result = module("job", args, check_mode=True)
    assert result.rc == 0, result.get("msg")
    assert result["changed"] is False
    assert result["job_id"] == first["job_id"]


def test_check_mode_on_new_content_reports_a_submit_without_submitting(spleen_run, module, tmp_path):
    first, args, _unused = spleen_run
    changed_job = tmp_path / "spleen_ct_segmentation"
    shutil.copytree(args["job_dir"], changed_job)
    meta = json.loads((changed_job / "meta.json").read_text())
    meta["custom_props"]["note"] = "changed"
    (changed_job / "meta.json").write_text(json.dumps(meta))
    jobs_before = _job_ids(module)
    result = module("job", dict(args, job_dir=str(changed_job)), check_mode=True)
    assert result.rc == 0, result.get("msg")
    assert result["changed"] is True and result["submitted"] is True
    assert result["job_id"] is None
    assert result["submit_token"] != first["submit_token"]
    assert _job_ids(module) == jobs_before


def test_failing_train_script_fails_with_status_and_logs(module, numpy_job, federation, tmp_path):
    job = numpy_job("--fail")
    result = module("job", {"job_dir": str(job), "timeout": 300, "poll_interval": 1, "download_dir": str(tmp_path)})
    print(result["msg"])
    assert result.failed and result.rc != 0
    job_id = result["job_id"]
    assert job_id
    assert result["status"] == "FINISHED:EXECUTION_EXCEPTION"
    assert "ended with status FINISHED:EXECUTION_EXCEPTION" in result["msg"]
    assert os.path.join(str(tmp_path), job_id, "workspace", "log.txt") in result["msg"]
    assert f"<client workspace>/{job_id}/log.txt" in result["msg"]
    # ... and the client logs really are there, the failing site's with the script's error in it.
    logs = [(federation.kit(site) / job_id / "log.txt").read_text(errors="replace") for site in SITES]
    assert any("failed on purpose" in log for log in logs)


def test_timeout_then_abort(module, numpy_job):
    job = numpy_job("--sleep 120")
    args = {"job_dir": str(job), "timeout": 3, "poll_interval": 1}
    waited = module("job", args)
    print(waited["msg"])
    assert waited.failed
    assert "did not finish within 3 s" in waited["msg"]
    assert "state=aborted" in waited["msg"]
    job_id = waited["job_id"]
    assert job_id and not waited["status"].startswith("FINISHED")

    would = module("job", dict(args, state="aborted"), check_mode=True)
    assert would["changed"] is True and would["job_id"] == job_id
    assert not module("job", dict(args, wait=False), check_mode=True)["status"].startswith("FINISHED")

    aborted = module("job", dict(args, state="aborted", timeout=120))
    print(f"abort: module wall {aborted.wall:.1f} s; submit+timeout {waited.wall:.1f} s; check {would.wall:.1f} s")
    assert aborted.rc == 0, aborted.get("msg")
    assert aborted["changed"] is True and aborted["job_id"] == job_id
    assert aborted["status"] == "FINISHED:ABORTED"

    again = module("job", {"job_id": job_id, "state": "aborted"})
    assert again.rc == 0 and again["changed"] is False
    assert again["status"] == "FINISHED:ABORTED"


def test_abort_of_an_unknown_job_id_fails(module):
    result = module("job", {"job_id": "00000000-0000-0000-0000-000000000000", "state": "aborted"})
    assert result.failed
    assert "00000000-0000-0000-0000-000000000000" in result["msg"]


def test_abort_of_a_never_submitted_folder_changes_nothing(module, numpy_job):
    result = module("job", {"job_dir": str(numpy_job("--sleep 7")), "state": "aborted"})
    assert result.rc == 0, result.get("msg")
    assert result["changed"] is False and result["job_id"] is None


def test_folder_without_meta_json_fails_before_connecting(raw_module, tmp_path):
    job = tmp_path / "empty_job"
    job.mkdir()
    result = raw_module("job", {"admin_kit": str(tmp_path), "job_dir": str(job)}, timeout=60)
    assert result.failed
    assert "meta.json" in result["msg"]
