# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""FLARE API sessions from an admin startup kit, and the job helpers the modules share.

This is a private module_utils file of federated.nvflare: its interface may change at any
time and it must not be used by other collections.

Every session is opened through `session()`, which always closes it: an unclosed FLARE API
session keeps threads alive and hangs the interpreter at exit.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from nvflare.fuel.flare_api import api_spec
    from nvflare.fuel.flare_api.flare_api import new_secure_session as _new_secure_session
except ImportError:  # the modules fail with missing_required_lib()
    api_spec = None
    _new_secure_session = None
    NVFLARE_IMPORT_ERROR = traceback.format_exc()
else:
    NVFLARE_IMPORT_ERROR = None

HAS_NVFLARE = NVFLARE_IMPORT_ERROR is None

# Files NVFlare writes into a job folder when it signs a submission; the server leaves them
# out of its content hash, and so do we.
SIGNATURE_FILES = frozenset((".__nvfl_sig.json", ".__nvfl_submitter.crt"))
# Byte-code caches appear when someone runs a job's script locally; they are not job content.
IGNORED_DIRS = frozenset(("__pycache__",))
IGNORED_SUFFIXES = (".pyc", ".pyo")
TOKEN_PREFIX = "ansible"
TOKEN_MAX = 128
DIGEST_LEN = 40
TERMINAL_PREFIX = "FINISHED"
COMPLETED = "FINISHED:COMPLETED"
CROSS_VAL_RESULTS = os.path.join("workspace", "cross_site_val", "cross_val_results.json")


def flare_argument_spec(**options) -> dict:
    """The connection options every FLARE module takes (doc fragment federated.nvflare.flare), plus OPTIONS."""
    spec = dict(
        admin_kit=dict(type="path", required=True),
        username=dict(type="str"),
        connect_timeout=dict(type="float", default=10.0),
    )
    spec.update(options)
    return spec


class FlareError(Exception):
    """A failure to report with fail_json once the session is closed."""

    def __init__(self, msg: str, retryable: bool = False, **result):
        super().__init__(msg)
        self.msg = msg
        # True when trying again later may succeed (the server did not answer).
        self.retryable = retryable
        self.result = result


class AdminKit:
    """What the modules need from an admin startup kit folder."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        config_path = os.path.join(self.path, "startup", "fed_admin.json")
        if not os.path.isfile(config_path):
            raise FlareError(
                f"invalid admin kit {self.path}: {config_path} not found; admin_kit must be the folder of an "
                "admin startup kit (the one holding startup/fed_admin.json)"
            )
        try:
            with open(config_path, encoding="utf-8") as f:
                admin = json.load(f).get("admin", {})
        except (OSError, ValueError) as exc:
            raise FlareError(f"invalid admin kit {self.path}: cannot read {config_path}: {exc}") from exc
        self.username = admin.get("username") or ""
        self.endpoint = f"{admin.get('host', '?')}:{admin.get('port', '?')}"
        self.project = admin.get("project_name") or ""


def flare_module(options: dict, seconds: tuple[str, ...], **kwargs) -> AnsibleModule:
    """The AnsibleModule of a FLARE module, once nvflare imports and every option in SECONDS is positive.

    OPTIONS are the module's own options, next to the shared connection options; KWARGS go to
    AnsibleModule (required_if, mutually_exclusive, ...). Every FLARE module supports check mode.
    """
    module = AnsibleModule(argument_spec=flare_argument_spec(**options), supports_check_mode=True, **kwargs)
    if not HAS_NVFLARE:
        module.fail_json(
            msg=missing_required_lib("nvflare", reason="to talk to an NVFlare server (FLARE API)"),
            exception=NVFLARE_IMPORT_ERROR,
        )
    for name in seconds:
        if module.params[name] <= 0:
            module.fail_json(msg=f"invalid {name} {module.params[name]:g}: it must be a positive number of seconds")
    return module


def error_name(exc: BaseException) -> str:
    return type(exc).__name__


@contextlib.contextmanager
def session(kit: AdminKit, username: str, connect_timeout: float):
    """Yield a logged-in FLARE API session and close it whatever happens.

    NVFlare prints progress lines on stdout, which would corrupt the module's JSON: stdout is
    captured while the session is open (and given back should the module exit inside it).
    FLARE API errors become FlareError with a message that says what to check.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            sess = _connect(kit, username, connect_timeout)
            try:
                yield sess
            except api_spec.NoConnection as exc:
                raise FlareError(
                    f"lost the connection to the NVFlare server {kit.endpoint}: {exc}", retryable=True
                ) from exc
            except (api_spec.SessionClosed, api_spec.AuthorizationError) as exc:
                raise FlareError(
                    f"the NVFlare server {kit.endpoint} refused the request: {error_name(exc)}: {exc}"
                ) from exc
            finally:
                try:
                    sess.close()
                except Exception:  # closing a broken session must not hide the real error
                    pass
    except SystemExit:
        sys.stdout.write(captured.getvalue())
        raise


def _connect(kit: AdminKit, username: str, connect_timeout: float):
    try:
        return _new_secure_session(username, kit.path, timeout=connect_timeout)
    except api_spec.NoConnection as exc:
        raise FlareError(
            f"cannot connect to the NVFlare server {kit.endpoint} (admin kit {kit.path}) within "
            f"{connect_timeout} s: is the server running and reachable from this host? ({exc})",
            retryable=True,
        ) from exc
    except api_spec.AuthenticationError as exc:
        raise FlareError(
            f"the NVFlare server {kit.endpoint} refused the login of {username!r} with admin kit {kit.path}: "
            f"the username must be the admin the kit was provisioned for ({exc})"
        ) from exc
    except Exception as exc:
        raise FlareError(
            f"cannot open a FLARE API session to {kit.endpoint} as {username!r} with admin kit {kit.path}: "
            f"{error_name(exc)}: {exc}; check that the username is the admin the kit was provisioned for"
        ) from exc


def open_kit(module) -> tuple[AdminKit, str]:
    """The admin kit and the user name to log in with (default: the kit's own admin)."""
    kit = AdminKit(module.params["admin_kit"])
    username = module.params.get("username") or kit.username
    if not username:
        raise FlareError(f"no username given and admin kit {kit.path} names none in startup/fed_admin.json")
    return kit, username


def iso_time(epoch) -> str | None:
    try:
        return datetime.datetime.fromtimestamp(float(epoch), tz=datetime.timezone.utc).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


# ----------------------------------------------------------------------------- job folders


def _job_files(job_dir: str):
    """(relative posix path, absolute path) of every file that is job content, sorted."""
    files = []
    for root, dirs, names in os.walk(job_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS)
        for name in names:
            if name in SIGNATURE_FILES or name.endswith(IGNORED_SUFFIXES):
                continue
            full = os.path.join(root, name)
            if not os.path.isfile(full):
                continue
            rel = os.path.relpath(full, job_dir).replace(os.sep, "/")
            files.append((rel, full))
    return sorted(files)


def job_digest(job_dir: str) -> str:
    """SHA-256 over the job's relative file names and contents (signatures and caches left out)."""
    digest = hashlib.sha256()
    for rel, full in _job_files(job_dir):
        with open(full, "rb") as f:
            data = f.read()
        for part in (rel.encode("utf-8"), data):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def submit_token(job_name: str, digest: str) -> str:
    """``ansible:<job name>:<first 40 hex digits of the content digest>``, within NVFlare's 128 characters."""
    room = TOKEN_MAX - len(TOKEN_PREFIX) - DIGEST_LEN - 2
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in job_name)[:room] or "job"
    return f"{TOKEN_PREFIX}:{safe}:{digest[:DIGEST_LEN]}"


def read_job_meta(job_dir: str) -> dict:
    path = os.path.join(job_dir, "meta.json")
    if not os.path.isfile(path):
        raise FlareError(f"invalid job folder {job_dir}: meta.json not found")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise FlareError(f"invalid job folder {job_dir}: cannot read meta.json: {exc}") from exc
    if not isinstance(meta, dict):
        raise FlareError(f"invalid job folder {job_dir}: meta.json must hold a JSON object")
    return meta


def copy_job(job_dir: str, parent: str) -> str:
    """Copy the job content into PARENT under the same folder name (submit_job signs the copy)."""
    dest = os.path.join(parent, os.path.basename(os.path.normpath(job_dir)))
    for rel, full in _job_files(job_dir):
        target = os.path.join(dest, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(full, target)
    return dest


def is_terminal(status) -> bool:
    return isinstance(status, str) and status.startswith(TERMINAL_PREFIX)


def wait_for_job(sess, job_id: str, timeout: float, poll_interval: float) -> tuple[dict, bool]:
    """Poll the job's meta until it is finished or TIMEOUT seconds passed: (meta, finished)."""
    deadline = time.monotonic() + timeout
    while True:
        meta = sess.get_job_meta(job_id)
        if is_terminal(meta.get("status")):
            return meta, True
        left = deadline - time.monotonic()
        if left <= 0:
            return meta, False
        time.sleep(min(poll_interval, left))


def cross_site_matrix(results: dict) -> dict:
    """``{validating site: {model owner: metrics}}`` turned into ``{model: {site: metrics}}``."""
    matrix: dict = {}
    for site, by_model in sorted((results or {}).items()):
        if not isinstance(by_model, dict):
            continue
        for model, metrics in sorted(by_model.items()):
            matrix.setdefault(model, {})[site] = metrics
    return matrix


def read_cross_site(result_dir: str) -> dict | None:
    path = os.path.join(result_dir, CROSS_VAL_RESULTS)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return cross_site_matrix(json.load(f))


_LOG_PREFIX = re.compile(r"^\S+ \S+ - (?P<logger>\w+) - \w+ - (\[[^\]]*\] - )?")


def last_lines(path: str, count: int = 3, width: int = 300) -> list[str]:
    """The last COUNT log records of a log file as "<logger>: <message>", each cut to WIDTH characters.

    A record that only announces a traceback ("Traceback (most recent call last):") stands for the
    exception that ends it ("<logger>: RuntimeError: ..."), which says what went wrong; that line
    may be twice as long.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.rstrip() for line in f if line.strip() and not line.startswith((" ", "\t"))]
    except OSError:
        return []
    records: list[str] = []
    pending = None  # the logger of a record that announced a traceback, until its exception line
    ended = False  # whether records[-1] is such an exception line (a chained one replaces it)
    for line in lines:
        match = _LOG_PREFIX.match(line)
        if match:
            message = line[match.end() :]
            ended = False
            if message.startswith("Traceback (most recent call last)"):
                pending = match.group("logger")
            else:
                pending = None
                records.append((match.group("logger") + ": " + message)[:width])
        elif pending is not None and not line.startswith(("Traceback", "During handling", "The above exception")):
            if ended:
                records.pop()
            records.append((pending + ": " + line)[: 2 * width])
            ended = True
    return records[-count:]


def download_result(sess, job_id: str, download_dir: str | None) -> tuple[str | None, bool, str | None]:
    """Download the job's server-side result.

    With DOWNLOAD_DIR the result lands in DOWNLOAD_DIR/<job id> (kept when already there):
    (result dir, downloaded now, None). Without it the result goes to a temporary folder the
    caller must remove: (result dir, False, temp folder).
    """
    if download_dir:
        target = os.path.join(os.path.abspath(download_dir), job_id)
        if os.path.isdir(os.path.join(target, "workspace")):
            return target, False, None
        os.makedirs(os.path.dirname(target), exist_ok=True)
        return sess.download_job_result(job_id, os.path.dirname(target)), True, None
    tmp = tempfile.mkdtemp(prefix="nvflare-result-")
    return sess.download_job_result(job_id, tmp), False, tmp
