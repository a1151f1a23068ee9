"""certbot with retries of what an ACME server or the network gets wrong now and then.

The tls_certbot role installs this file and runs it with certbot's virtualenv Python from its
wrapper (/usr/local/sbin/nvflare-certbot), for the first issuance and for the renewal timer:

    python nvflare_certbot.py [--retries N] [--retry-delay S] [--retry-max-wait S]
                              [--nonce-retries N] -- CERTBOT_ARGUMENTS...

Two levels of retry:

- Each ACME request that the server answers with badNonce is sent again with a fresh nonce, up
  to --nonce-retries times (RFC 8555, section 6.5: clients should retry it). The acme library
  itself retries such a request once only; a CA rejects a share of good nonces on purpose.
- A certbot run (`certonly`, `renew`) that fails for a transient reason (badNonce still,
  serverInternal or another HTTP 5xx answer, a connection reset, aborted or refused, a timeout,
  Route53 throttling, another certbot holding the lock, or a rate limit whose retry time is at
  most --retry-max-wait seconds away) is started again, at most --retries times, after a pause
  of --retry-delay seconds that doubles each time (at most --retry-max-wait). Anything else
  (unauthorized, a DNS change refused, rejectedIdentifier, malformed, a rate limit too far
  away, an error it does not know) fails at once.

Each run is a subprocess (`--attempt`) whose output is shown as it comes and kept to classify
a failure. When the command fails, the last line on stderr says why in one line:

    certbot failed (permanent, unauthorized): <certbot's reason>
    certbot failed (transient, connection refused, 4 attempts): <certbot's reason>

A forced renewal of every certificate (`renew --force-renewal` without `--cert-name`) is not
started again: the certificates renewed before the failure would be renewed twice.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

PREFIX = "nvflare-certbot: "
MARK = PREFIX + "attempt failed: "
FAILED = "certbot failed"

# certbot's subcommands (certbot/_internal/cli/helpful.py); the first argument that is one of
# them is the subcommand, as certbot decides it.
VERBS = frozenset(
    "auth certonly run install plugins register update_account show_account unregister renew revoke "
    "rollback everything certificates delete enhance reconfigure".split()
)
RETRIED_VERBS = frozenset(["auth", "certonly", "renew"])

ACME_URN = "urn:ietf:params:acme:error:"
# ACME error types worth another try; every other type is permanent (rateLimited: see below).
TRANSIENT_ACME = {"badNonce": "badNonce", "serverInternal": "serverInternal"}
_ACME_TYPE = re.compile(re.escape(ACME_URN) + r"(\w+)")
# certbot's report of failed challenges: "  Identifier: x\n  Type:   unauthorized\n  Detail: ..."
_CHALLENGE_TYPE = re.compile(r"^\s*Type:\s+(\S+)\s*$")
_CHALLENGE_DETAIL = re.compile(r"^\s*Detail:\s*(.*)$")
_CHALLENGE_IDENTIFIER = re.compile(r"^\s*(?:Identifier|Domain):\s*(\S+)")
# certbot prints only the detail of some ACME errors (e.g. at account registration).
_BAD_NONCE_TEXT = re.compile(r"invalid anti-replay nonce")
_AWS_ERROR = re.compile(r"An error occurred \((\w+)\)")
_AWS_TRANSIENT = frozenset(["Throttling", "ThrottlingException", "PriorRequestNotComplete", "ServiceUnavailable"])
# Let's Encrypt: "... retry after 2025-01-01 12:00:00 UTC"; this program's own report of a
# Retry-After header uses the same form.
_RETRY_AFTER = re.compile(r"retry after (\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\s*UTC|Z)?", re.IGNORECASE)
_TRANSIENT_TEXT = [
    ("connection reset", re.compile(r"Connection reset|ConnectionResetError")),
    ("connection aborted", re.compile(r"Connection aborted|ConnectionAbortedError|RemoteDisconnected|BrokenPipeError")),
    ("connection refused", re.compile(r"Connection refused|ConnectionRefusedError")),
    ("timeout", re.compile(r"[Tt]imed out|TimeoutError|ReadTimeout|ConnectTimeout")),
    ("name resolution", re.compile(r"Temporary failure in name resolution")),
    ("HTTP 5xx", re.compile(r"<Response \[5\d\d\]>|\b5\d\d Server Error\b|too many 5\d\d error responses")),
    ("locked", re.compile(r"Another instance of Certbot is already running")),
]
_PERMANENT_TEXT = [
    ("no AWS credentials", re.compile(r"Unable to locate credentials")),
    ("no hosted zone", re.compile(r"Unable to find a Route53 hosted zone")),
    ("TLS verification", re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed")),
]
# Lines that say nothing about the failure.
_NOISE = re.compile(
    r"^(Saving debug log to|Ask for help or search for solutions|An unexpected error occurred:|"
    r"Requesting a certificate for|Account registered|Hint:|Simulating renewal|Processing /|"
    r"- - - -|To use certbot-dns-route53, configure credentials)"
)
REASON_LENGTH = 400


@dataclass(frozen=True)
class Verdict:
    """What a failed certbot run says: worth another try or not, the kind, the reason (one
    line), and for a rate limit the seconds to wait before the next try."""

    transient: bool
    kind: str
    reason: str
    wait: float = 0.0


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_LENGTH else text[: REASON_LENGTH - 3] + "..."


def _clean(line: str) -> str:
    """A line of certbot's output as a reason: without this program's prefix, and an ACME error
    without its type URN and generic description (the detail is what says what happened)."""
    line = line.strip()
    line = line[len(MARK) :] if line.startswith(MARK) else line
    line = re.sub(re.escape(ACME_URN) + r"\w+ :: (?:[^:]+ :: )?", "", line)
    return _one_line(line)


def _challenge_reason(lines: list[str], index: int) -> str:
    """ "<identifier>: <detail>" from certbot's report of a failed challenge around line `index`."""
    ident = next(
        (m.group(1) for line in lines[max(0, index - 2) : index] if (m := _CHALLENGE_IDENTIFIER.match(line))), ""
    )
    detail = next((m.group(1) for line in lines[index + 1 : index + 3] if (m := _CHALLENGE_DETAIL.match(line))), "")
    return _one_line(f"{ident}: {detail}" if ident else detail or lines[index])


def _retry_after(text: str) -> datetime.datetime | None:
    match = _RETRY_AFTER.search(text)
    if not match:
        return None
    try:
        return datetime.datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}+00:00")
    except ValueError:
        return None


def _rate_limit(output: str, line: str, now: datetime.datetime, max_wait: float) -> tuple[bool, float, str]:
    """(transient, seconds to wait, note) of a rateLimited answer: the retry time is read from
    the line itself or, failing that, from anywhere in the output."""
    when = _retry_after(line) or _retry_after(output)
    if when is None:
        return False, 0.0, "no retry time given"
    wait = max(0.0, (when - _utc(now)).total_seconds())
    if wait > max_wait:
        return False, wait, f"retry after {when:%Y-%m-%d %H:%M:%S} UTC, more than {max_wait:g} s away"
    return True, wait, ""


def classify(output: str, now: datetime.datetime | None = None, max_wait: float = 300) -> Verdict:
    """Classify the output (stdout and stderr) of a failed certbot run.

    Any sign of a permanent error decides (a run that failed for two reasons fails for good);
    else any sign of a transient one; an output with neither is an unknown, permanent error.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    lines = output.splitlines()
    permanent: list[Verdict] = []
    transient: list[Verdict] = []
    # This program's own report of the error that ended the run comes first, then the output's order.
    order = sorted(range(len(lines)), key=lambda index: not lines[index].startswith(MARK))
    for index in order:
        line = lines[index]
        found = [(m.group(1), _clean(line)) for m in _ACME_TYPE.finditer(line)]
        challenge = _CHALLENGE_TYPE.match(line)
        if challenge:
            found.append((challenge.group(1).rsplit(":", 1)[-1], _challenge_reason(lines, index)))
        if not found and _BAD_NONCE_TEXT.search(line):
            found.append(("badNonce", _clean(line)))
        for acme_type, reason in found:
            if acme_type in TRANSIENT_ACME:
                transient.append(Verdict(True, TRANSIENT_ACME[acme_type], reason))
            elif acme_type == "rateLimited":
                ok, wait, note = _rate_limit(output, line, now, max_wait)
                verdict = Verdict(ok, "rateLimited", reason if ok else _one_line(f"{reason} ({note})"), wait)
                (transient if ok else permanent).append(verdict)
            else:
                permanent.append(Verdict(False, acme_type, reason))
        for code in _AWS_ERROR.findall(line):
            if code in _AWS_TRANSIENT:
                transient.append(Verdict(True, f"Route53 {code}", _clean(line)))
            else:
                permanent.append(Verdict(False, code, _clean(line)))
        for kind, pattern in _PERMANENT_TEXT:
            if pattern.search(line):
                permanent.append(Verdict(False, kind, _clean(line)))
        for kind, pattern in _TRANSIENT_TEXT:
            if pattern.search(line):
                transient.append(Verdict(True, kind, _clean(line)))
                break
    if permanent:
        return permanent[0]
    if transient:
        return Verdict(True, transient[0].kind, transient[0].reason, max(v.wait for v in transient))
    return Verdict(False, "unknown", _last_words(lines))


def _last_words(lines: list[str]) -> str:
    """The reason of an unknown failure: this program's report of it, else certbot's last line
    that says something."""
    marked = [line for line in lines if line.startswith(MARK)]
    if marked:
        return _clean(marked[-1])
    meaningful = [line for line in lines if line.strip() and not _NOISE.match(line.strip())]
    return _clean(meaningful[-1]) if meaningful else "certbot said nothing"


def retries_allowed(certbot_args: list[str]) -> bool:
    """Whether a failed run of these certbot arguments may be started again."""
    verb = next((arg for arg in certbot_args if arg in VERBS), "run")
    if verb not in RETRIED_VERBS or "-h" in certbot_args or "--help" in certbot_args:
        return False
    if verb == "renew":
        forced = any(arg in ("--force-renewal", "--renew-by-default") for arg in certbot_args)
        named = any(arg == "--cert-name" or arg.startswith("--cert-name=") for arg in certbot_args)
        return named or not forced
    return True


def run_with_retries(attempt, retries: int, delay: float, max_wait: float, sleep=time.sleep, now=None, log=None) -> int:
    """Run `attempt(n)` -> (exit status, output) until it succeeds, fails for a permanent reason,
    or `retries` more runs failed; return the last exit status. Pauses double from `delay`,
    at most `max_wait` (a rate limit's retry time when that is later). The last line logged
    for a failure says why, in one line."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
    total = retries + 1
    for number in range(1, total + 1):
        status, output = attempt(number)
        if status == 0:
            if number > 1:
                log(f"{PREFIX}certbot succeeded on attempt {number} of {total}")
            return 0
        verdict = classify(output, now(), max_wait)
        if not verdict.transient:
            log(f"{FAILED} (permanent, {verdict.kind}): {verdict.reason}")
            return status
        if number == total:
            attempts = f"{number} attempts" if number > 1 else "1 attempt"
            log(f"{FAILED} (transient, {verdict.kind}, {attempts}): {verdict.reason}")
            return status
        pause = max(min(delay * 2 ** (number - 1), max_wait), verdict.wait)
        log(
            f"{PREFIX}attempt {number} of {total} failed (transient, {verdict.kind}): {verdict.reason}; "
            f"next attempt in {pause:g} s"
        )
        sleep(pause)
    return 1  # not reached: the loop returns on its last attempt


# -- one certbot run (the subprocess) ------------------------------------------------------------


class NonceStats:
    """What the patched acme client saw in this run."""

    def __init__(self) -> None:
        self.bad_nonces = 0
        self.retry_after: datetime.datetime | None = None


def retry_bad_nonces(network_class, error_class, nonce_retries: int, stats: NonceStats, logger=None) -> bool:
    """Make `network_class.post` (acme.client.ClientNetwork) send a request that the server
    answered with badNonce again, with a fresh nonce, up to `nonce_retries` times.

    acme's own `post` calls `_post_once` twice at most; `_post_once` takes a nonce (a HEAD to
    newNonce when none is left: an error answer's nonce is not kept), signs, sends and raises
    `error_class` (acme.messages.Error) for a problem document. Returns False, and changes
    nothing, for an acme version without `_post_once`."""
    if not callable(getattr(network_class, "_post_once", None)):
        return False
    logger = logger or logging.getLogger(__name__)

    def post(self, *args, **kwargs):
        tries = 0
        while True:
            try:
                return self._post_once(*args, **kwargs)
            except error_class as error:
                if getattr(error, "code", None) != "badNonce" or tries >= nonce_retries:
                    raise
                tries += 1
                stats.bad_nonces += 1
                logger.debug("badNonce answer %d for this request, sending it again: %s", tries, error)

    network_class.post = post
    return True


def keep_retry_after(network_class, error_class, stats: NonceStats) -> bool:
    """Remember the Retry-After header of a rateLimited answer (certbot does not show it)."""
    check = network_class.__dict__.get("_check_response")
    if not isinstance(check, classmethod):
        return False
    original = check.__func__

    def _check_response(cls, response, *args, **kwargs):
        try:
            return original(cls, response, *args, **kwargs)
        except error_class as error:
            header = response.headers.get("Retry-After") if getattr(error, "code", None) == "rateLimited" else None
            if header:
                stats.retry_after = _parse_retry_after(header)
            raise

    network_class._check_response = classmethod(_check_response)
    return True


def _parse_retry_after(header: str) -> datetime.datetime | None:
    now = datetime.datetime.now(datetime.timezone.utc)
    if header.strip().isdigit():
        return now + datetime.timedelta(seconds=int(header.strip()))
    try:
        return _utc(email.utils.parsedate_to_datetime(header))
    except (TypeError, ValueError):
        return None


def _acme_error_in(exc: BaseException, error_class) -> BaseException | None:
    """The ACME error behind `exc`: itself, its `error` attribute (certbot's), its causes."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for candidate in (exc, getattr(exc, "error", None)):
            if isinstance(candidate, error_class):
                return candidate
        exc = exc.__cause__ or exc.__context__
    return None


def attempt_main(nonce_retries: int, certbot_args: list[str]) -> int | str | None:
    """One certbot run in this process, with the badNonce retry; on failure one line that
    names the error (with its ACME type, which certbot's own message leaves out)."""
    from acme import client, messages  # certbot's virtualenv

    stats = NonceStats()
    if not retry_bad_nonces(client.ClientNetwork, messages.Error, nonce_retries, stats):
        print(f"{PREFIX}this acme version has no ClientNetwork._post_once: badNonce retried once only", file=sys.stderr)
    keep_retry_after(client.ClientNetwork, messages.Error, stats)
    from certbot import main as certbot_main

    try:
        result = certbot_main.main(certbot_args)
    except BaseException as exc:
        if not (isinstance(exc, SystemExit) and exc.code in (0, None)):
            error = _acme_error_in(exc, messages.Error)
            if error is not None:  # with its subproblems, one a line
                text = " / ".join(part.strip() for part in str(error).splitlines() if part.strip())
            else:  # the first line (certbot's own errors as certbot shows them, others with their type)
                text = (
                    str(exc)
                    if type(exc).__module__.startswith("certbot")
                    else f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
                )
                text = next((part.strip() for part in text.splitlines() if part.strip()), text)
            print(MARK + text, file=sys.stderr)
        raise
    finally:
        if stats.bad_nonces:
            print(
                f"{PREFIX}{stats.bad_nonces} badNonce answer(s) from the ACME server, each request sent again "
                "with a fresh nonce",
                file=sys.stderr,
            )
        if stats.retry_after:
            print(
                f"{PREFIX}the ACME server asked to retry after {stats.retry_after:%Y-%m-%d %H:%M:%S} UTC",
                file=sys.stderr,
            )
    if result not in (None, 0):
        print(f"{MARK}{result}", file=sys.stderr)
    return result


# -- the command ---------------------------------------------------------------------------------


def _spawn_attempt(nonce_retries: int, certbot_args: list[str], children: list) -> tuple[int, str]:
    """One certbot run as a subprocess: its output goes on to ours as it comes, and is kept."""
    command = [sys.executable, "-u", os.path.abspath(__file__), "--attempt", "--nonce-retries", str(nonce_retries)]
    proc = subprocess.Popen([*command, "--", *certbot_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children[:] = [proc]
    kept: list[bytes] = []
    lock = threading.Lock()

    def pump(source, target) -> None:
        for chunk in iter(source.readline, b""):
            target.buffer.write(chunk)
            target.flush()
            with lock:
                kept.append(chunk)

    pumps = [
        threading.Thread(target=pump, args=pair) for pair in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr))
    ]
    for thread in pumps:
        thread.start()
    status = proc.wait()
    for thread in pumps:
        thread.join()
    children[:] = []
    return status, b"".join(kept).decode("utf-8", "replace")


def _options(argv: list[str]) -> tuple[dict, list[str]]:
    """This program's options (before `--`) and certbot's arguments (after it)."""
    if "--" not in argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    mine, certbot_args = argv[:split], argv[split + 1 :]
    options = {"attempt": False, "retries": 3, "retry_delay": 10.0, "retry_max_wait": 300.0, "nonce_retries": 10}
    names = iter(mine)
    for name in names:
        key = name.lstrip("-").replace("-", "_")
        if name == "--attempt":
            options["attempt"] = True
        elif key in options:
            try:
                options[key] = type(options[key])(next(names))
            except (StopIteration, ValueError):
                raise SystemExit(f"{PREFIX}{name} needs a number") from None
        else:
            raise SystemExit(f"{PREFIX}unknown option {name}\n{__doc__}")
    return options, certbot_args


def main(argv: list[str]) -> int | str | None:
    options, certbot_args = _options(argv)
    if options["attempt"]:
        return attempt_main(options["nonce_retries"], certbot_args)
    children: list = []

    def stop(signum, _frame):
        for child in children:
            child.send_signal(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    retries = options["retries"] if retries_allowed(certbot_args) else 0
    if retries == 0 and options["retries"] > 0 and "renew" in certbot_args:
        print(
            f"{PREFIX}a forced renewal of every certificate runs once; name one (--cert-name) to have it retried",
            file=sys.stderr,
        )
    return run_with_retries(
        lambda _number: _spawn_attempt(options["nonce_retries"], certbot_args, children),
        retries,
        options["retry_delay"],
        options["retry_max_wait"],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
