"""module_utils/_flare.py without a server: job digest, token, copy, matrix, logs, admin kit, module base."""

from __future__ import annotations

import json
import re

import pytest

from ansible_collections.federated.nvflare.plugins.module_utils import _flare as flare

TOKEN_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # NVFlare's rule for submit tokens


@pytest.fixture
def job(tmp_path):
    root = tmp_path / "my_job"
    (root / "app" / "config").mkdir(parents=True)
    (root / "app" / "custom").mkdir()
    (root / "meta.json").write_text(json.dumps({"name": "my_job", "min_clients": 2}))
    (root / "app" / "config" / "config_fed_client.json").write_text("{}")
    (root / "app" / "custom" / "train.py").write_text("print('train')\n")
    return root


def test_digest_ignores_signatures_and_caches(job):
    before = flare.job_digest(str(job))
    (job / ".__nvfl_sig.json").write_text("{}")
    (job / "app" / ".__nvfl_submitter.crt").write_text("cert")
    (job / "app" / "custom" / "__pycache__").mkdir()
    (job / "app" / "custom" / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    assert flare.job_digest(str(job)) == before


@pytest.mark.parametrize(
    "change",
    [
        lambda j: (j / "app" / "custom" / "train.py").write_text("print('other')\n"),
        lambda j: (j / "app" / "custom" / "train.py").rename(j / "app" / "custom" / "main.py"),
        lambda j: (j / "app" / "custom" / "extra.txt").write_text(""),
    ],
    ids=["content", "rename", "new-file"],
)
def test_digest_follows_content_and_names(job, change):
    before = flare.job_digest(str(job))
    change(job)
    assert flare.job_digest(str(job)) != before


def test_token_is_valid_for_nvflare_and_names_the_job():
    digest = "ab" * 32
    token = flare.submit_token("spleen_ct_segmentation", digest)
    assert token == "ansible:spleen_ct_segmentation:" + digest[:40]
    assert TOKEN_RE.match(token)
    long = flare.submit_token("x" * 300 + " with spaces/and:colons", digest)
    assert TOKEN_RE.match(long) and len(long) <= 128 and long.endswith(digest[:40])


def test_copy_leaves_signatures_and_caches_behind(job, tmp_path):
    (job / ".__nvfl_sig.json").write_text("{}")
    (job / "app" / "custom" / "__pycache__").mkdir()
    (job / "app" / "custom" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    dest = tmp_path / "copies"
    dest.mkdir()
    copy = flare.copy_job(str(job), str(dest))
    assert copy == str(dest / "my_job")
    files = sorted(str(p.relative_to(copy)) for p in (dest / "my_job").rglob("*") if p.is_file())
    assert files == ["app/config/config_fed_client.json", "app/custom/train.py", "meta.json"]
    assert flare.job_digest(copy) == flare.job_digest(str(job))


def test_cross_site_matrix_turns_site_by_model_into_model_by_site():
    results = {
        "site-2": {"SRV_best_FL_global_model.pt": {"val_dice": 0.5}, "site-1": {"val_dice": 0.25}},
        "site-1": {"SRV_best_FL_global_model.pt": {"val_dice": 0.75}, "site-1": {"val_dice": 0.0}},
    }
    assert flare.cross_site_matrix(results) == {
        "SRV_best_FL_global_model.pt": {"site-1": {"val_dice": 0.75}, "site-2": {"val_dice": 0.5}},
        "site-1": {"site-1": {"val_dice": 0.0}, "site-2": {"val_dice": 0.25}},
    }
    assert flare.cross_site_matrix({}) == {}


def test_last_lines_keeps_log_records_without_their_prefix(tmp_path):
    log = tmp_path / "error_log.txt"
    log.write_text(
        "2026-11-23 18:22:29,311 - ServerRunner - ERROR - [identity=p, run=1] - Aborting current RUN\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1\n'
        "2026-11-23 18:22:30,000 - FedAvg - ERROR - round failed\n"
    )
    assert flare.last_lines(str(log)) == ["ServerRunner: Aborting current RUN", "FedAvg: round failed"]
    assert flare.last_lines(str(tmp_path / "missing.txt")) == []


def test_last_lines_names_the_exception_that_ends_a_logged_traceback(tmp_path):
    log = tmp_path / "error_log.txt"
    log.write_text(
        "2026-12-02 12:24:39,709 - JsonScanner - ERROR - Traceback (most recent call last):\n"
        '  File "he_support.py", line 70, in __init__\n'
        "    raise RuntimeError(reason)\n"
        "RuntimeError: no HE context here\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "json_scanner.py", line 121, in _do_scan\n'
        "nvflare.fuel.common.excepts.ConfigError: Error processing config: RuntimeError: no HE context here\n"
        "2026-12-02 12:24:39,796 - MPM - ERROR - Traceback (most recent call last):\n"
        '  File "mpm.py", line 1\n'
        "SystemExit: 1\n"
    )
    assert flare.last_lines(str(log)) == [
        "JsonScanner: nvflare.fuel.common.excepts.ConfigError: Error processing config: "
        "RuntimeError: no HE context here",
        "MPM: SystemExit: 1",
    ]


def test_admin_kit_reads_user_and_endpoint(tmp_path):
    (tmp_path / "startup").mkdir()
    (tmp_path / "startup" / "fed_admin.json").write_text(
        json.dumps({"admin": {"username": "a@b.org", "host": "fl.example.org", "port": 8003}})
    )
    kit = flare.AdminKit(str(tmp_path))
    assert (kit.username, kit.endpoint) == ("a@b.org", "fl.example.org:8003")
    with pytest.raises(flare.FlareError, match="startup/fed_admin.json"):
        flare.AdminKit(str(tmp_path / "nowhere"))


def test_argument_spec_adds_module_options_to_the_connection_options():
    spec = flare.flare_argument_spec(job_id=dict(type="str"))
    assert list(spec) == ["admin_kit", "username", "connect_timeout", "job_id"]
    assert spec["admin_kit"] == dict(type="path", required=True)
    # Every call builds a new spec: a module changing its copy changes no other module's.
    spec["admin_kit"]["required"] = False
    assert flare.flare_argument_spec()["admin_kit"]["required"] is True


@pytest.mark.parametrize("module", ["job", "federation_info"])
@pytest.mark.parametrize("option", ["connect_timeout", "timeout", "poll_interval"])
def test_seconds_must_be_positive(run_module, tmp_path, module, option):
    args = {"admin_kit": str(tmp_path), option: -2}
    if module == "job":
        args["job_dir"] = str(tmp_path)
    result = run_module(module, args)
    assert result.failed
    assert result["msg"] == f"invalid {option} -2: it must be a positive number of seconds"


def test_not_an_admin_kit_fails_before_any_connection(run_module, tmp_path):
    result = run_module("federation_info", {"admin_kit": str(tmp_path)})
    assert result.failed
    assert "startup/fed_admin.json" in result["msg"]
    assert result["missing_sites"] == []
