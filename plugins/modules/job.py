#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: job
short_description: Submit an NVIDIA FLARE job once, wait for it, fetch its results, or abort it
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Talks to the NVFlare server through a FLARE API secure session opened with an admin
    startup kit; the session is always closed, also when a step fails.
  - O(state=submitted) submits the job folder O(job_dir) unless this admin already submitted
    the same content, optionally waits until the job finishes, downloads its server-side
    result and returns the cross-site validation matrix.
  - "Idempotence: the job is submitted with an NVFlare submit token derived from the folder's
    content, C(ansible:<job name>:<first 40 hex digits of SHA-256>). The digest covers every
    file's relative path and bytes (NVFlare's signature files, C(__pycache__) folders and
    C(*.pyc) files left out); the job name is C(name) in C(meta.json), else the folder name.
    Submitting the same content again, for example when a task is retried, finds the job
    by its token on the server and starts no second run, whatever that job's status
    (also after a server restart). Changed content gives a new token and a new run. Tokens
    are scoped by NVFlare to the study and the submitting admin: another admin submitting
    the same folder starts another run."
  - NVFlare writes signature files into a folder it submits, so the module submits a private
    temporary copy; O(job_dir) is never modified.
  - O(state=aborted) aborts the job given by O(job_id), or the job submitted from O(job_dir)
    (found by its token). A job that is finished, or was never submitted, is left alone
    (not changed).
  - With O(wait=true) a job that does not end C(FINISHED:COMPLETED) (for example
    C(FINISHED:EXECUTION_EXCEPTION), C(FINISHED:ABNORMAL), C(FINISHED:ABORTED)), a job still
    running at O(timeout), and an unreachable server are failures whose message says what
    happened and where the logs are.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - federated.nvflare.flare
attributes:
  check_mode:
    support: full
    details: Looks the submit token up and reports whether a submission or an abort would happen; submits,
      aborts, waits for and downloads nothing.
options:
  job_dir:
    description:
      - Job folder on the host that runs the module (C(meta.json), C(app*/config/), C(app*/custom/)).
      - Its name may hold only letters, digits, dots, underscores and hyphens (an NVFlare rule).
      - Required with O(state=submitted). With O(state=aborted) it names the job to abort by its content.
      - Mutually exclusive with O(job_id).
    type: path
  job_id:
    description:
      - ID of the job to abort (O(state=aborted) only).
      - Mutually exclusive with O(job_dir).
    type: str
  state:
    description:
      - V(submitted) makes sure the job of O(job_dir) was submitted (and with O(wait) that it completed).
      - V(aborted) makes sure the job is not running any more.
    type: str
    choices: [submitted, aborted]
    default: submitted
  wait:
    description:
      - Wait until the job is finished (O(state=submitted)) or has stopped after the abort
        (O(state=aborted)), at most O(timeout) seconds.
      - With O(wait=false) the module returns once the job is submitted or the abort is sent,
        and never fails because of the job's status.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the job when O(wait=true). When they pass, the module fails and the
        job keeps running on the federation; run the task again to wait again, or abort it.
    type: float
    default: 3600.0
  poll_interval:
    description:
      - Seconds between two status polls while waiting.
    type: float
    default: 5.0
  download_dir:
    description:
      - Folder on the host that runs the module to download the finished job's server-side
        result into (with O(wait=true)), as C(<download_dir>/<job id>/) (C(workspace/log.txt),
        C(workspace/error_log.txt), models, C(workspace/cross_site_val/)). A result already there is kept.
      - Without it the result is read from a temporary folder (for RV(cross_site_validation))
        and deleted.
    type: path
seealso:
  - module: federated.nvflare.federation_info
notes:
  - Client-side logs stay on each client site, in C(<client workspace>/<job id>/log.txt)
    and C(error_log.txt); the server-side logs are in the downloaded result.
  - A job that was running when the server was killed stays C(RUNNING) for ever and refuses
    an abort (an NVFlare limitation).
"""

EXAMPLES = r"""
- name: Run the spleen segmentation job and collect the cross-site validation results
  federated.nvflare.job:
    admin_kit: /opt/nvflare/admin/admin@example.org
    job_dir: /opt/nvflare/jobs/spleen_ct_segmentation
    timeout: 7200
    download_dir: /opt/nvflare/results
  register: spleen

- name: Show the mean Dice of the best global model on every site
  ansible.builtin.debug:
    msg: "{{ spleen.cross_site_validation['SRV_best_FL_global_model.pt'] }}"

- name: Name the admin kit once for every FLARE task of the block
  module_defaults:
    group/federated.nvflare.flare:
      admin_kit: /opt/nvflare/admin/admin@example.org
  block:
    - name: Submit without waiting
      federated.nvflare.job:
        job_dir: /opt/nvflare/jobs/spleen_ct_segmentation
        wait: false

    - name: Abort the job submitted from that folder
      federated.nvflare.job:
        job_dir: /opt/nvflare/jobs/spleen_ct_segmentation
        state: aborted
"""

RETURN = r"""
job_id:
  description: ID of the job (null when there is none, for example in check mode before the first submission).
  returned: always
  type: str
  sample: 7f8d874f-d2d4-4210-b7dd-5a519e3b1eb9
job_name:
  description: Name of the job (C(name) in C(meta.json), else the folder name).
  returned: when O(job_dir) is given
  type: str
  sample: spleen_ct_segmentation
submit_token:
  description: NVFlare submit token derived from the job folder's content.
  returned: when O(job_dir) is given
  type: str
  sample: "ansible:spleen_ct_segmentation:3f1c0b9d2e5a4c7781f0e6d9a2b4c8e1f3a5d7b9"
submitted:
  description: Whether this run of the module submitted the job (or would have, in check mode).
  returned: always
  type: bool
status:
  description: Job status, for example C(SUBMITTED), C(RUNNING), C(FINISHED:COMPLETED), C(FINISHED:ABORTED).
  returned: when a job exists
  type: str
  sample: "FINISHED:COMPLETED"
duration:
  description: Run time of the job as NVFlare reports it (H:MM:SS.ffffff).
  returned: when a job exists
  type: str
  sample: "0:00:45.212130"
start_time:
  description: When the job started (ISO 8601).
  returned: when the job started
  type: str
submit_time:
  description: When the job was submitted (ISO 8601).
  returned: when a job exists
  type: str
deploy_detail:
  description: Deployment outcome per participant, as NVFlare reports it.
  returned: when the job was deployed
  type: list
  elements: str
  sample: ["server: OK", "site-1: OK", "site-2: OK"]
result_dir:
  description: Downloaded server-side result, C(<download_dir>/<job id>) (null without O(download_dir)).
  returned: always
  type: str
  sample: /opt/nvflare/results/7f8d874f-d2d4-4210-b7dd-5a519e3b1eb9
server_log:
  description: Server log of the job inside RV(result_dir) (null without O(download_dir)).
  returned: always
  type: str
client_logs:
  description: Where each client site keeps its log of the job (a path on that site's host).
  returned: when a job exists
  type: str
  sample: <client workspace>/7f8d874f-d2d4-4210-b7dd-5a519e3b1eb9/log.txt
server_errors:
  description:
    - The last (at most 8) records of the job's server-side C(error_log.txt), when it has any; a logged
      traceback appears as the exception that ends it. The first exception among them is quoted in
      the failure message.
  returned: when the job finished
  type: list
  elements: str
cross_site_validation:
  description:
    - "Cross-site validation results as a matrix C({model: {site: {metric: value}}}), read from
      C(workspace/cross_site_val/cross_val_results.json) of the result. Server models are named
      C(SRV_<file>) (for example C(SRV_FL_global_model.pt), C(SRV_best_FL_global_model.pt)),
      site models by the site name."
    - Empty when the job ran no cross-site validation or has not finished.
  returned: always
  type: dict
  sample:
    SRV_best_FL_global_model.pt:
      site-1: {val_dice: 0.81}
      site-2: {val_dice: 0.78}
    site-1:
      site-1: {val_dice: 0.80}
      site-2: {val_dice: 0.74}
"""

import os
import re
import shutil
import tempfile
import traceback

from ansible_collections.federated.nvflare.plugins.module_utils import _flare
from ansible_collections.federated.nvflare.plugins.module_utils._flare import FlareError

# "<logger>: SomeError: ..." - a record that names an exception (see _flare.last_lines).
_EXCEPTION_RECORD = re.compile(r"^\w+: [\w.]*(Error|Exception|Exit)\b")


def _client_logs(job_id: str) -> str:
    return f"<client workspace>/{job_id}/log.txt"


def _describe(meta: dict) -> dict:
    return {
        "job_id": meta.get("job_id"),
        "status": meta.get("status"),
        "duration": meta.get("duration"),
        "start_time": meta.get("start_time"),
        "submit_time": meta.get("submit_time_iso"),
        "deploy_detail": meta.get("job_deploy_detail"),
        "client_logs": _client_logs(meta.get("job_id")),
    }


def _job_from_dir(module) -> tuple[str, str]:
    job_dir = module.params["job_dir"]
    if not os.path.isdir(job_dir):
        raise FlareError(f"job folder {job_dir} not found on this host")
    meta = _flare.read_job_meta(job_dir)
    folder = os.path.basename(os.path.normpath(job_dir))
    if not folder or any(not (c.isalnum() or c in "._-") for c in folder):
        raise FlareError(
            f"invalid job folder name {folder!r}: NVFlare accepts only letters, digits, dots, underscores and hyphens"
        )
    name = str(meta.get("name") or folder)
    return name, _flare.submit_token(name, _flare.job_digest(job_dir))


def _find(sess, token: str) -> str | None:
    jobs = sess.list_jobs(submit_token=token)
    return jobs[0].get("job_id") if jobs else None


def _submit(sess, job_dir: str, token: str) -> str:
    api = _flare.api_spec
    tmp = tempfile.mkdtemp(prefix="nvflare-job-")
    try:
        copy = _flare.copy_job(job_dir, tmp)
        try:
            return sess.submit_job(copy, submit_token=token)
        except api.SubmitTokenConflict as exc:
            # Cannot happen for content this module derived the token from, unless someone
            # reused the token by hand.
            raise FlareError(
                f"the server holds job {exc.existing_job_id} under submit token {token} with different content: "
                f"was the token used outside this module? ({exc})"
            ) from exc
        except api.SubmitTokenJobDeleted as exc:
            raise FlareError(
                f"job {exc.job_id}, submitted earlier from this content (token {token}), was deleted from the server; "
                "NVFlare does not reuse its token: change the job's content (for example a value in meta.json) "
                "to submit it again"
            ) from exc
        except api.InvalidJobDefinition as exc:
            raise FlareError(f"the NVFlare server rejected job folder {job_dir}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _collect(sess, result: dict, job_id: str, download_dir: str | None) -> bool:
    """Download the finished job's result; fill the result fields. Return whether files were written."""
    result_dir, downloaded, tmp = _flare.download_result(sess, job_id, download_dir)
    try:
        if result_dir:
            result["cross_site_validation"] = _flare.read_cross_site(result_dir) or {}
            result["server_errors"] = _flare.last_lines(os.path.join(result_dir, "workspace", "error_log.txt"), count=8)
        if not tmp:
            result["result_dir"] = result_dir
            result["server_log"] = os.path.join(result_dir, "workspace", "log.txt") if result_dir else None
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return downloaded


def _logs_hint(result: dict, finished: bool = True) -> str:
    if result.get("server_log"):
        server = result["server_log"]
    elif finished:
        server = "set download_dir to download it"
    else:
        server = f"<server workspace>/{result['job_id']}/log.txt while the job runs"
    return f"logs: server: {server}; client sites: {result['client_logs']}"


def _run_submitted(module, sess, result: dict) -> None:
    p = module.params
    job_id = _find(sess, result["submit_token"])
    if job_id is None:
        result["submitted"] = True
        result["changed"] = True
        if module.check_mode:
            return
        job_id = _submit(sess, p["job_dir"], result["submit_token"])
    result["job_id"] = job_id
    meta = sess.get_job_meta(job_id)
    result.update(_describe(meta))
    if module.check_mode or not p["wait"]:
        return
    meta, finished = _flare.wait_for_job(sess, job_id, p["timeout"], p["poll_interval"])
    result.update(_describe(meta))
    name = result["job_name"]
    if not finished:
        raise FlareError(
            f"NVFlare job {name} ({job_id}) did not finish within {p['timeout']:g} s (status {meta.get('status')}); "
            f"it keeps running: run this task again to wait again, or abort it with state=aborted; "
            + _logs_hint(result, finished=False),
            **result,
        )
    if _collect(sess, result, job_id, p["download_dir"]):
        result["changed"] = True
    if meta.get("status") != _flare.COMPLETED:
        errors = result.get("server_errors") or []
        # The first exception among the last errors is the cause; what follows reports it again.
        cause = next((e for e in errors if _EXCEPTION_RECORD.match(e)), errors[-1] if errors else None)
        detail = f" (server error: {cause})" if cause else ""
        raise FlareError(
            f"NVFlare job {name} ({job_id}) ended with status {meta.get('status')}{detail}; " + _logs_hint(result),
            **result,
        )


def _run_aborted(module, sess, result: dict) -> None:
    p = module.params
    job_id = p["job_id"] or _find(sess, result["submit_token"])
    if not job_id:
        return
    try:
        meta = sess.get_job_meta(job_id)
    except _flare.api_spec.JobNotFound as exc:
        raise FlareError(f"no NVFlare job {job_id} on the server: {exc}") from exc
    result["job_id"] = job_id
    result.update(_describe(meta))
    if _flare.is_terminal(meta.get("status")):
        return
    result["changed"] = True
    if module.check_mode:
        return
    try:
        sess.abort_job(job_id)
    except _flare.api_spec.JobNotRunning:
        result["changed"] = False  # it finished in the meantime
    if p["wait"]:
        meta, finished = _flare.wait_for_job(sess, job_id, p["timeout"], p["poll_interval"])
        result.update(_describe(meta))
        if not finished:
            raise FlareError(
                f"NVFlare job {job_id} was told to abort but is still {meta.get('status')} after {p['timeout']:g} s; "
                "a job that was running when the server restarted cannot be aborted (NVFlare limitation)",
                **result,
            )
    else:
        result.update(_describe(sess.get_job_meta(job_id)))


def main():
    module = _flare.flare_module(
        dict(
            job_dir=dict(type="path"),
            job_id=dict(type="str"),
            state=dict(type="str", choices=["submitted", "aborted"], default="submitted"),
            wait=dict(type="bool", default=True),
            timeout=dict(type="float", default=3600.0),
            poll_interval=dict(type="float", default=5.0),
            download_dir=dict(type="path"),
        ),
        seconds=("connect_timeout", "timeout", "poll_interval"),
        required_if=[("state", "submitted", ("job_dir",))],
        required_one_of=[("job_dir", "job_id")],
        mutually_exclusive=[("job_dir", "job_id")],
    )
    p = module.params

    result = dict(changed=False, submitted=False, job_id=None, result_dir=None, server_log=None)
    result["cross_site_validation"] = {}
    try:
        if p["job_dir"]:
            result["job_name"], result["submit_token"] = _job_from_dir(module)
        kit, username = _flare.open_kit(module)
        with _flare.session(kit, username, p["connect_timeout"]) as sess:
            if p["state"] == "submitted":
                _run_submitted(module, sess, result)
            else:
                _run_aborted(module, sess, result)
    except FlareError as exc:
        failed = dict(result)
        failed.update(exc.result)
        failed.pop("msg", None)
        module.fail_json(msg=exc.msg, **failed)
    except Exception as exc:  # an NVFlare API error the module has no better words for
        module.fail_json(
            msg=f"NVFlare job request failed: {type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
