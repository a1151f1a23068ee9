#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: slurm_job
short_description: Keep the Slurm batch job of a long-running NVIDIA FLARE client current
version_added: 0.2.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Manages the batch job of a participant that runs under Slurm for good, such as an NVIDIA
    FLARE client site on a cluster, from the cluster's login node. The site's jobs are the
    jobs of the user the module runs as that are named O(name); they are found with C(squeue).
  - The job script (O(script)) keeps the site online by itself. Every job uses
    C(--dependency=singleton), so at most one of them runs, and a job queues its successor when
    it starts; the module only has to make sure that a job of the current revision is queued
    and that no job of another revision stays.
  - The revision of a job is its C(--comment), which the module sets when it queues the job -
    C(nvflare-) and 12 hex digits of a SHA-256 over the job script and the digest of the
    installed kit in O(kit) (every file of its C(startup/) and C(local/) folders, so a new
    kit, a new certificate or a changed C(local/resources.json) make a new revision).
  - With O(state=started) the module cancels every waiting job but the oldest one of the
    current revision, queues a job with C(sbatch) when none of the current revision is waiting
    (it starts at once when no job of the site runs, otherwise when the running one ends), and
    then cancels a running job of another revision, so its successor takes over.
  - With O(state=started) and O(restart=true) the waiting and the running jobs are replaced
    even when their revision is current.
  - With O(state=stopped) every waiting and running job of the site is cancelled.
  - The module does not wait for a job to start; jobs that are ending (C(COMPLETING) and the
    like) are left alone.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Check mode runs C(squeue) and reports what would be queued and cancelled; it runs neither
        C(sbatch) nor C(scancel). When the kit or the job script is not in place yet (its
        installation was only checked too), the revision is unknown and every job counts as
        stale.
  diff_mode:
    support: none
  idempotent:
    description: Whether a second run with the same arguments changes nothing.
    support: full
    details: Once the jobs are current, a second run only reads C(squeue).
  platform:
    platforms: posix
requirements:
  - the Slurm commands C(squeue), C(sbatch) and C(scancel) on the C(PATH) of the managed host
options:
  name:
    description:
      - Name of the site's jobs (C(--job-name)). With the user the module runs as (use
        C(become_user) to act for another account), it identifies them.
    type: str
    required: true
  state:
    description:
      - V(started) keeps one job of the current revision queued and replaces jobs of another
        revision.
      - V(stopped) cancels the site's waiting and running jobs.
    type: str
    choices: [started, stopped]
    default: started
  script:
    description:
      - The job script, submitted with C(sbatch). It must read its own C(--comment) (with
        C(squeue --jobs=$SLURM_JOB_ID --format=%k)) and pass it to the successor it queues, or
        the successor is not of the current revision.
      - Required when O(state=started).
    type: path
  kit:
    description:
      - The folder the participant's startup kit is installed in (holding C(startup/) and
        C(local/)), part of the revision.
      - Required when O(state=started).
    type: path
  restart:
    description:
      - Replace the site's waiting and running jobs even when their revision is current.
    type: bool
    default: false
notes:
  - Run it as the user that owns the jobs, which needs to read O(script) and O(kit).
  - The P(federated.nvflare.client_gpu#role) role runs it for a Slurm client site (C(docs/slurm.md)).
seealso:
  - module: federated.nvflare.startup_kit
"""

EXAMPLES = r"""
- name: Keep the site's client queued as a Slurm job
  federated.nvflare.slurm_job:
    name: nvflare-university-b
    script: /projects/flproject/nvflare/sites/university-b/slurm/nvflare-university-b.sbatch
    kit: /projects/flproject/nvflare/sites/university-b
  become: true
  become_user: flproject

- name: Cancel the site's jobs
  federated.nvflare.slurm_job:
    name: nvflare-university-b
    state: stopped
"""

RETURN = r"""
revision:
  description: The current revision, the C(--comment) of the jobs the module queues.
  returned: when O(state=started) and the kit and the script could be read
  type: str
  sample: nvflare-3f1c2a9b7e04
jobs:
  description: The site's jobs that C(squeue) listed before the module acted, oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The job id.
      type: str
    state:
      description: The job's state, as C(squeue --format=%T) prints it.
      type: str
    revision:
      description: The job's comment; C((null)) for a job without one.
      type: str
  sample: [{id: "812", state: RUNNING, revision: nvflare-3f1c2a9b7e04}]
submitted:
  description: Id of the job C(sbatch) queued; null when none was queued (or in check mode).
  returned: always
  type: str
  sample: "813"
cancelled:
  description: Ids of the jobs cancelled (or, in check mode, to be cancelled).
  returned: always
  type: list
  elements: str
  sample: ["811"]
job_id:
  description:
    - The job that keeps the site online after this run - the running job of the current
      revision, otherwise the waiting or the queued one; null when there is none (O(state=stopped),
      or the job to be queued in check mode).
  returned: always
  type: str
  sample: "812"
job_state:
  description: The state of RV(job_id) as C(squeue) printed it, V(PENDING) for a job just queued; null without a job.
  returned: always
  type: str
  sample: RUNNING
"""

import hashlib
import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.federated.nvflare.plugins.module_utils import _kit

# squeue's long state names: a job that waits, and jobs that run or are about to. Any other
# state (COMPLETING, ...) is a job that is ending: it is left alone.
PENDING = "PENDING"
RUNNING = ("RUNNING", "CONFIGURING", "SUSPENDED")
REVISION_PREFIX = "nvflare-"


class SlurmError(Exception):
    """A Slurm command failed, or the job's inputs cannot be read; the message says which and why."""


class Job:
    """One line of squeue: id, state and revision (the comment)."""

    def __init__(self, job_id: str, state: str, revision: str):
        self.id = job_id
        self.state = state
        self.revision = revision

    def as_dict(self) -> dict:
        return {"id": self.id, "state": self.state, "revision": self.revision}


def revision(script: str, kit: str) -> str:
    """The revision of a job that runs SCRIPT with the kit installed in KIT."""
    with open(script, "rb") as f:
        h = hashlib.sha256(f.read())
    h.update(b"\0" + _kit.kit_digest(kit).encode())
    return REVISION_PREFIX + h.hexdigest()[:12]


def wanted_revision(script: str, kit: str, check_mode: bool) -> str | None:
    """revision(), or None in check mode when the kit or the script is not in place yet."""
    try:
        return revision(script, kit)
    except (OSError, _kit.KitError) as e:
        if check_mode:
            return None
        raise SlurmError(
            f"cannot read the job script {script} or the kit in {kit}: {e}; install the kit and write the script first"
        ) from None


class Slurm:
    """The Slurm commands, for the jobs of one name and of the user the module runs as."""

    def __init__(self, module: AnsibleModule, name: str):
        self.module = module
        self.name = name

    def _run(self, argv: list[str], what: str) -> str:
        try:
            rc, out, err = self.module.run_command(argv, handle_exceptions=False)
        except OSError as e:
            rc, out, err = 127, "", str(e)
        if rc != 0:
            detail = (err or out).strip() or f"exit status {rc}"
            raise SlurmError(f"{argv[0]} could not {what}: {detail}")
        return out

    def jobs(self) -> list[Job]:
        out = self._run(
            ["squeue", "--me", "--noheader", f"--name={self.name}", "--format=%i|%T|%k"],
            f"list the jobs named {self.name} (is this host a Slurm login node?)",
        )
        jobs = [Job(*line.strip().split("|", 2)) for line in out.splitlines() if line.count("|") >= 2]
        return sorted(jobs, key=lambda job: (len(job.id), job.id))

    def submit(self, script: str, rev: str) -> str:
        out = self._run(
            ["sbatch", "--parsable", f"--comment={rev}", script],
            f"queue a job of {self.name} from {script}",
        )
        # --parsable prints "id" or "id;cluster".
        return out.strip().split(";", 1)[0]

    def cancel(self, ids: list[str]) -> None:
        if ids:
            self._run(["scancel", *ids], f"cancel the jobs {', '.join(ids)} of {self.name}")


class Plan:
    """What to do with the site's JOBS so that one job of revision WANTED is queued.

    Waiting jobs: the oldest one of the current revision stays, the others are cancelled. A job
    is queued when none of the current revision waits. A running job of another revision is
    cancelled after that, so the new job takes over as soon as it has ended. RESTART counts every
    job as stale; so does an unknown WANTED (None).
    """

    def __init__(self, jobs: list[Job], wanted: str | None, restart: bool = False):
        current = (lambda job: False) if restart or wanted is None else (lambda job: job.revision == wanted)
        pending = [job for job in jobs if job.state == PENDING]
        running = [job for job in jobs if job.state in RUNNING]
        kept = [job for job in pending if current(job)][:1]
        self.keep = kept[0] if kept else None
        self.cancel_pending = [job.id for job in pending if job is not self.keep]
        self.submit = self.keep is None
        self.cancel_running = [job.id for job in running if not current(job)]
        self.running = [job for job in running if current(job)]

    @property
    def changed(self) -> bool:
        return bool(self.submit or self.cancel_pending or self.cancel_running)


def stop(slurm: Slurm, check_mode: bool) -> dict:
    jobs = slurm.jobs()
    ids = [job.id for job in jobs if job.state == PENDING or job.state in RUNNING]
    if not check_mode:
        slurm.cancel(ids)
    return _result(jobs, bool(ids), cancelled=ids)


def start(slurm: Slurm, script: str, kit: str, restart: bool, check_mode: bool) -> dict:
    jobs = slurm.jobs()
    wanted = wanted_revision(script, kit, check_mode)
    plan = Plan(jobs, wanted, restart)
    submitted = None
    if not check_mode:
        slurm.cancel(plan.cancel_pending)
        if plan.submit:
            submitted = slurm.submit(script, wanted)
        slurm.cancel(plan.cancel_running)
    if plan.running:
        job_id, job_state = plan.running[0].id, plan.running[0].state
    elif plan.keep is not None:
        job_id, job_state = plan.keep.id, plan.keep.state
    else:
        job_id, job_state = submitted, PENDING if submitted else None
    result = _result(jobs, plan.changed, plan.cancel_pending + plan.cancel_running, submitted, job_id, job_state)
    if wanted is not None:
        result["revision"] = wanted
    return result


def _result(jobs, changed, cancelled, submitted=None, job_id=None, job_state=None) -> dict:
    return {
        "changed": changed,
        "jobs": [job.as_dict() for job in jobs],
        "cancelled": cancelled,
        "submitted": submitted,
        "job_id": job_id,
        "job_state": job_state,
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["started", "stopped"], default="started"),
            script=dict(type="path"),
            kit=dict(type="path"),
            restart=dict(type="bool", default=False),
        ),
        required_if=[("state", "started", ("script", "kit"))],
        supports_check_mode=True,
    )
    p = module.params
    slurm = Slurm(module, p["name"])
    try:
        if p["state"] == "stopped":
            result = stop(slurm, module.check_mode)
        else:
            result = start(slurm, os.path.abspath(p["script"]), p["kit"], p["restart"], module.check_mode)
    except SlurmError as e:
        module.fail_json(msg=str(e), exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
