"""The tls_certbot role's retry program (roles/tls_certbot/files/nvflare_certbot.py): which
failures of certbot are worth another run, the bounded retry loop, the badNonce retry of one
ACME request, and the whole program run against a stand-in certbot."""

from __future__ import annotations

import datetime
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROGRAM = ROOT / "roles" / "tls_certbot" / "files" / "nvflare_certbot.py"
_spec = importlib.util.spec_from_file_location("nvflare_certbot", PROGRAM)
nc = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = nc  # dataclasses look their module up
_spec.loader.exec_module(nc)

NOW = datetime.datetime(2026, 12, 1, 10, 0, 0, tzinfo=datetime.timezone.utc)
HELP = (
    "Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile "
    "/var/log/letsencrypt/letsencrypt.log or re-run Certbot with -v for more details."
)

# Failed runs as certbot (5.8, with this program's "attempt failed" line) prints them.
BAD_NONCE = f"""Saving debug log to /var/log/letsencrypt/letsencrypt.log
Requesting a certificate for dashboard.example.org
nvflare-certbot: attempt failed: urn:ietf:params:acme:error:badNonce :: The client sent an unacceptable anti-replay nonce :: JWS has an invalid anti-replay nonce: hWPGEqU1CYC61Q_Q2RYkNQ
An unexpected error occurred:
JWS has an invalid anti-replay nonce: hWPGEqU1CYC61Q_Q2RYkNQ
{HELP}
"""  # noqa: E501
# At account registration certbot keeps only the detail (no type), without this program's line.
BAD_NONCE_REGISTRATION = f"""Saving debug log to /var/log/letsencrypt/letsencrypt.log
Unable to register an account with ACME server. Error returned by the ACME server: JWS has an invalid anti-replay nonce: cZ5cP9BGmJhlLWsXBat0Ig
{HELP}
"""  # noqa: E501
RENEW_BAD_NONCE = f"""Processing /etc/letsencrypt/renewal/dashboard.example.org.conf
Renewing an existing certificate for dashboard.example.org
Failed to renew certificate dashboard.example.org with error: urn:ietf:params:acme:error:badNonce :: The client sent an unacceptable anti-replay nonce :: JWS has an invalid anti-replay nonce: Hu8bdkVbqWs3gBf6zke6RA
All renewals failed. The following certificates could not be renewed:
  /etc/letsencrypt/live/dashboard.example.org/fullchain.pem (failure)
nvflare-certbot: attempt failed: 1 renew failure(s), 0 parse failure(s)
1 renew failure(s), 0 parse failure(s)
{HELP}
"""  # noqa: E501
CONNECTION_RESET = f"""nvflare-certbot: attempt failed: requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))
An unexpected error occurred:
requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))
{HELP}
"""  # noqa: E501
CONNECTION_ABORTED = """nvflare-certbot: attempt failed: requests.exceptions.ConnectionError: ('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))
"""  # noqa: E501
CONNECTION_REFUSED = """nvflare-certbot: attempt failed: requests.exceptions.ConnectionError: HTTPSConnectionPool(host='10.0.0.1', port=14000): Max retries exceeded with url: /dir (Caused by NewConnectionError("HTTPSConnection(host='10.0.0.1', port=14000): Failed to establish a new connection: [Errno 111] Connection refused"))
"""  # noqa: E501
RENEW_REFUSED = """Failed to renew certificate dashboard.example.org with error: HTTPSConnectionPool(host='10.0.0.1', port=14000): Max retries exceeded with url: /dir (Caused by NewConnectionError("HTTPSConnection(host='10.0.0.1', port=14000): Failed to establish a new connection: [Errno 111] Connection refused"))
nvflare-certbot: attempt failed: 1 renew failure(s), 0 parse failure(s)
"""  # noqa: E501
TIMEOUT = """nvflare-certbot: attempt failed: requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='acme-v02.api.letsencrypt.org', port=443): Read timed out. (read timeout=45)
"""  # noqa: E501
SERVER_INTERNAL = """nvflare-certbot: attempt failed: urn:ietf:params:acme:error:serverInternal :: The server experienced an internal error :: Error creating new order
An unexpected error occurred:
Error creating new order
"""  # noqa: E501
HTTP_503 = """nvflare-certbot: attempt failed: acme.errors.ClientError: <Response [503]>
An unexpected error occurred:
acme.errors.ClientError: <Response [503]>
"""
LOCKED = """Another instance of Certbot is already running.
nvflare-certbot: attempt failed: Another instance of Certbot is already running.
"""
UNAUTHORIZED = f"""Requesting a certificate for dashboard.example.org

Certbot failed to authenticate some domains (authenticator: dns-route53). The Certificate Authority reported these problems:
  Identifier: dashboard.example.org
  Type:   unauthorized
  Detail: Incorrect TXT record "x3Zq" found at _acme-challenge.dashboard.example.org

Hint: The Certificate Authority failed to verify the DNS TXT records created by --dns-route53.

nvflare-certbot: attempt failed: Some challenges have failed.
Some challenges have failed.
{HELP}
"""  # noqa: E501
ACCESS_DENIED = f"""Requesting a certificate for dashboard.example.org
Encountered exception during recovery: certbot.errors.PluginError: An error occurred (AccessDenied) when calling the ChangeResourceRecordSets operation: User: arn:aws:iam::123456789012:user/certbot is not authorized to perform: route53:ChangeResourceRecordSets
nvflare-certbot: attempt failed: An error occurred (AccessDenied) when calling the ChangeResourceRecordSets operation: User: arn:aws:iam::123456789012:user/certbot is not authorized to perform: route53:ChangeResourceRecordSets
To use certbot-dns-route53, configure credentials as described at https://boto3.readthedocs.io/ and add the necessary permissions for Route53 access.
{HELP}
"""  # noqa: E501
INVALID_CHANGE_BATCH = """nvflare-certbot: attempt failed: An error occurred (InvalidChangeBatch) when calling the ChangeResourceRecordSets operation: [RRSet of type TXT with DNS name _acme-challenge.dashboard.example.org. is not permitted in zone example.com.]
"""  # noqa: E501
REJECTED_IDENTIFIER = f"""Requesting a certificate for blocked.example.org
nvflare-certbot: attempt failed: urn:ietf:params:acme:error:rejectedIdentifier :: The server will not issue certificates for the identifier :: Order included an identifier for which issuance is forbidden by policy: "blocked.example.org"
An unexpected error occurred:
Order included an identifier for which issuance is forbidden by policy: "blocked.example.org"
{HELP}
"""  # noqa: E501
MALFORMED = """nvflare-certbot: attempt failed: urn:ietf:params:acme:error:malformed :: The request message was malformed :: Invalid identifiers requested :: Cannot issue for "bad_name.example.org": Domain name contains an invalid character
"""  # noqa: E501
NO_ZONE = """Encountered exception during recovery: certbot.errors.PluginError: Unable to find a Route53 hosted zone for _acme-challenge.n3.other.test
nvflare-certbot: attempt failed: Unable to find a Route53 hosted zone for _acme-challenge.n3.other.test
"""  # noqa: E501
UNKNOWN = f"""Saving debug log to /var/log/letsencrypt/letsencrypt.log
nvflare-certbot: attempt failed: The requested dns-route53 plugin does not appear to be installed
The requested dns-route53 plugin does not appear to be installed
{HELP}
"""


def rate_limited(retry_after: datetime.datetime) -> str:
    return (
        "nvflare-certbot: attempt failed: urn:ietf:params:acme:error:rateLimited :: There were too many requests of "
        "a given type :: too many certificates (5) already issued for this exact set of identifiers in the last "
        f"168h0m0s, retry after {retry_after:%Y-%m-%d %H:%M:%S} UTC: see https://letsencrypt.org/docs/rate-limits/\n"
        f"{HELP}\n"
    )


# -- classification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "kind", "says"),
    [
        (BAD_NONCE, "badNonce", "JWS has an invalid anti-replay nonce: hWPGEqU1CYC61Q_Q2RYkNQ"),
        (BAD_NONCE_REGISTRATION, "badNonce", "invalid anti-replay nonce: cZ5cP9BGmJhlLWsXBat0Ig"),
        (RENEW_BAD_NONCE, "badNonce", "Failed to renew certificate dashboard.example.org with error: JWS has"),
        (CONNECTION_RESET, "connection reset", "Connection reset by peer"),
        (CONNECTION_ABORTED, "connection aborted", "Remote end closed connection"),
        (CONNECTION_REFUSED, "connection refused", "[Errno 111] Connection refused"),
        (RENEW_REFUSED, "connection refused", "Failed to renew certificate dashboard.example.org"),
        (TIMEOUT, "timeout", "Read timed out"),
        (SERVER_INTERNAL, "serverInternal", "Error creating new order"),
        (HTTP_503, "HTTP 5xx", "<Response [503]>"),
        (LOCKED, "locked", "Another instance of Certbot is already running"),
    ],
)
def test_transient(output, kind, says):
    verdict = nc.classify(output, NOW)
    assert (verdict.transient, verdict.kind) == (True, kind)
    assert says in verdict.reason
    assert "\n" not in verdict.reason and "urn:ietf" not in verdict.reason


@pytest.mark.parametrize(
    ("output", "kind", "reason"),
    [
        (UNAUTHORIZED, "unauthorized", 'dashboard.example.org: Incorrect TXT record "x3Zq" found at _acme-challenge.'),
        (ACCESS_DENIED, "AccessDenied", "An error occurred (AccessDenied) when calling the ChangeResourceRecordSets"),
        (INVALID_CHANGE_BATCH, "InvalidChangeBatch", "An error occurred (InvalidChangeBatch) when calling"),
        (REJECTED_IDENTIFIER, "rejectedIdentifier", "Order included an identifier for which issuance is forbidden"),
        (MALFORMED, "malformed", "Invalid identifiers requested :: Cannot issue for"),
        (NO_ZONE, "no hosted zone", "Unable to find a Route53 hosted zone for _acme-challenge.n3.other.test"),
        (UNKNOWN, "unknown", "The requested dns-route53 plugin does not appear to be installed"),
        ("", "unknown", "certbot said nothing"),
    ],
)
def test_permanent(output, kind, reason):
    verdict = nc.classify(output, NOW)
    assert (verdict.transient, verdict.kind) == (False, kind)
    assert verdict.reason.startswith(reason), verdict.reason
    assert "\n" not in verdict.reason and "nvflare-certbot:" not in verdict.reason


def test_a_permanent_error_beside_a_transient_one_decides():
    """Two certificates renewed, one refused for good: another run would not help that one."""
    verdict = nc.classify(RENEW_BAD_NONCE + UNAUTHORIZED, NOW)
    assert (verdict.transient, verdict.kind) == (False, "unauthorized")


def test_rate_limit_near_is_transient_with_its_wait():
    verdict = nc.classify(rate_limited(NOW + datetime.timedelta(seconds=90)), NOW, max_wait=300)
    assert (verdict.transient, verdict.kind, verdict.wait) == (True, "rateLimited", 90)
    assert verdict.reason.startswith("too many certificates (5) already issued")


def test_rate_limit_far_is_permanent():
    verdict = nc.classify(rate_limited(NOW + datetime.timedelta(hours=20)), NOW, max_wait=300)
    assert (verdict.transient, verdict.kind) == (False, "rateLimited")
    assert "more than 300 s away" in verdict.reason


def test_rate_limit_without_a_retry_time_is_permanent():
    output = "nvflare-certbot: attempt failed: urn:ietf:params:acme:error:rateLimited :: There were too many :: slow"
    assert not nc.classify(output, NOW).transient


def test_rate_limit_retry_time_from_the_retry_after_header():
    output = (
        "nvflare-certbot: attempt failed: urn:ietf:params:acme:error:rateLimited :: There were too many :: slow down\n"
        "nvflare-certbot: the ACME server asked to retry after "
        f"{NOW + datetime.timedelta(seconds=30):%Y-%m-%d %H:%M:%S} UTC\n"
    )
    verdict = nc.classify(output, NOW)
    assert (verdict.transient, verdict.wait) == (True, 30)


def test_route53_throttling_is_transient():
    output = (
        "nvflare-certbot: attempt failed: An error occurred (Throttling) when calling the GetChange operation: "
        "Rate exceeded"
    )
    verdict = nc.classify(output, NOW)
    assert (verdict.transient, verdict.kind) == (True, "Route53 Throttling")


def test_long_reasons_are_cut():
    verdict = nc.classify("nvflare-certbot: attempt failed: " + "x" * 5000, NOW)
    assert len(verdict.reason) == nc.REASON_LENGTH


# -- the retry loop ------------------------------------------------------------------------------


class Attempts:
    """Stand-in for one certbot run: answers from a list, counts the runs."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.numbers = []

    def __call__(self, number):
        self.numbers.append(number)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def loop(attempt, retries=3, delay=10, max_wait=300):
    sleeps, logged = [], []
    status = nc.run_with_retries(
        attempt, retries, delay, max_wait, sleep=sleeps.append, now=lambda: NOW, log=logged.append
    )
    return status, sleeps, logged


def test_transient_then_success():
    attempt = Attempts((1, BAD_NONCE), (1, CONNECTION_RESET), (0, "Successfully received certificate."))
    status, sleeps, logged = loop(attempt)
    assert status == 0
    assert attempt.numbers == [1, 2, 3]
    assert sleeps == [10, 20]
    assert logged[0].startswith("nvflare-certbot: attempt 1 of 4 failed (transient, badNonce): JWS has an invalid")
    assert logged[0].endswith("next attempt in 10 s")
    assert "(transient, connection reset)" in logged[1]
    assert logged[-1] == "nvflare-certbot: certbot succeeded on attempt 3 of 4"


def test_success_at_once_says_nothing():
    status, sleeps, logged = loop(Attempts((0, "")))
    assert (status, sleeps, logged) == (0, [], [])


def test_permanent_fails_at_once_with_one_line():
    attempt = Attempts((1, UNAUTHORIZED), (0, ""))
    status, sleeps, logged = loop(attempt)
    assert status == 1
    assert attempt.numbers == [1]
    assert sleeps == []
    assert logged == [
        "certbot failed (permanent, unauthorized): dashboard.example.org: "
        'Incorrect TXT record "x3Zq" found at _acme-challenge.dashboard.example.org'
    ]


def test_attempts_are_bounded():
    attempt = Attempts((1, CONNECTION_REFUSED))
    status, sleeps, logged = loop(attempt, retries=3, delay=10)
    assert status == 1
    assert attempt.numbers == [1, 2, 3, 4]
    assert sleeps == [10, 20, 40]  # doubling
    assert logged[-1].startswith("certbot failed (transient, connection refused, 4 attempts): requests.exceptions.")
    assert len(logged) == 4 and all("\n" not in line for line in logged)


def test_pauses_stop_growing_at_the_max_wait():
    status, sleeps, logged = loop(Attempts((1, TIMEOUT)), retries=5, delay=50, max_wait=120)
    assert status == 1 and len(logged) == 6
    assert sleeps == [50, 100, 120, 120, 120]


def test_no_retries():
    attempt = Attempts((1, BAD_NONCE))
    status, sleeps, logged = loop(attempt, retries=0)
    assert (status, attempt.numbers, sleeps) == (1, [1], [])
    assert logged == [
        "certbot failed (transient, badNonce, 1 attempt): JWS has an invalid anti-replay nonce: hWPGEqU1CYC61Q_Q2RYkNQ"
    ]


def test_rate_limit_near_waits_until_its_retry_time():
    attempt = Attempts((1, rate_limited(NOW + datetime.timedelta(seconds=200))), (0, ""))
    status, sleeps, logged = loop(attempt)
    assert (status, attempt.numbers, sleeps) == (0, [1, 2], [200])
    assert "(transient, rateLimited)" in logged[0]


def test_rate_limit_far_fails_at_once():
    attempt = Attempts((1, rate_limited(NOW + datetime.timedelta(days=3))), (0, ""))
    status, sleeps, logged = loop(attempt)
    assert (status, attempt.numbers, sleeps) == (1, [1], [])
    assert logged[-1].startswith("certbot failed (permanent, rateLimited): too many certificates (5)")


def test_exit_status_of_certbot_is_kept():
    status, sleeps, logged = loop(Attempts((2, "certbot: error: unrecognized arguments: --bogus")))
    assert (status, sleeps) == (2, [])
    assert logged == ["certbot failed (permanent, unknown): certbot: error: unrecognized arguments: --bogus"]


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (["--config-dir", "/etc/letsencrypt", "certonly", "--dns-route53"], True),
        (["renew", "--no-random-sleep-on-renew"], True),
        (["renew", "--force-renewal", "--cert-name", "dash"], True),
        (["renew", "--force-renewal", "--cert-name=dash"], True),
        (["renew", "--force-renewal"], False),  # every certificate: those renewed would be renewed twice
        (["certificates"], False),
        (["delete", "--cert-name", "dash"], False),
        (["certonly", "--help"], False),
    ],
)
def test_which_commands_are_retried(args, allowed):
    assert nc.retries_allowed(args) is allowed


# -- the badNonce retry of one request -----------------------------------------------------------


class Problem(Exception):
    """Stand-in for acme.messages.Error."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def network_class():
    """A stand-in of acme.client.ClientNetwork: `_post_once` answers from a list."""

    class Network:
        def __init__(self, *answers):
            self.answers = list(answers)
            self.sent = 0

        def _post_once(self, url, obj, **kwargs):
            self.sent += 1
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        def post(self, *args, **kwargs):  # acme's: one more try only
            raise AssertionError("replaced")

    return Network


def test_bad_nonce_is_sent_again_until_accepted():
    cls, stats = network_class(), nc.NonceStats()
    assert nc.retry_bad_nonces(cls, Problem, 10, stats)
    net = cls(*[Problem("badNonce")] * 6, "ok")
    assert net.post("https://ca/new-order", {"x": 1}, new_nonce_url="https://ca/nonce") == "ok"
    assert (net.sent, stats.bad_nonces) == (7, 6)


def test_bad_nonce_retries_are_bounded():
    cls, stats = network_class(), nc.NonceStats()
    nc.retry_bad_nonces(cls, Problem, 3, stats)
    net = cls(*[Problem("badNonce")] * 10)
    with pytest.raises(Problem):
        net.post("https://ca/new-order", {})
    assert (net.sent, stats.bad_nonces) == (4, 3)


def test_other_problems_are_not_sent_again():
    cls, stats = network_class(), nc.NonceStats()
    nc.retry_bad_nonces(cls, Problem, 10, stats)
    net = cls(Problem("unauthorized"), "ok")
    with pytest.raises(Problem):
        net.post("https://ca/new-order", {})
    assert (net.sent, stats.bad_nonces) == (1, 0)


def test_an_acme_without_post_once_is_left_alone():
    class Other:
        def post(self):
            return "acme's own"

    assert not nc.retry_bad_nonces(Other, Problem, 10, nc.NonceStats())
    assert Other().post() == "acme's own"


# -- the whole program, against a stand-in certbot -----------------------------------------------

STAND_IN = {
    "acme/__init__.py": "",
    "acme/messages.py": """
        class Error(Exception):
            def __init__(self, code, detail):
                super().__init__(code, detail)
                self.code, self.detail = code, detail
            def __str__(self):
                return f"urn:ietf:params:acme:error:{self.code} :: The ACME problem :: {self.detail}"
    """,
    "acme/client.py": """
        class ClientNetwork:
            @classmethod
            def _check_response(cls, response, content_type=None):
                return response
            def _post_once(self, url, obj, **kwargs):
                raise AssertionError("set by certbot/main.py")
            def post(self, *args, **kwargs):
                return self._post_once(*args, **kwargs)
    """,
    "certbot/__init__.py": "",
    "certbot/errors.py": """
        class Error(Exception):
            pass
    """,
    # A run reads its answers from $PLAN (one list of ACME answers per run, the last one repeated)
    # and counts its runs in $PLAN.runs: the ACME error ends it as certbot's would.
    "certbot/main.py": """
        import json, os, sys
        from acme import client, messages

        def main(args):
            plan = json.load(open(os.environ["PLAN"]))
            runs = os.environ["PLAN"] + ".runs"
            number = len(open(runs).read()) if os.path.exists(runs) else 0
            open(runs, "a").write("x")
            answers = list(plan[min(number, len(plan) - 1)])

            def post_once(self, url, obj, **kwargs):
                code = answers.pop(0)
                if code != "ok":
                    raise messages.Error(code, f"{code} answer to {url}")
                return "ok"

            client.ClientNetwork._post_once = post_once
            net = client.ClientNetwork()
            while answers:
                net.post("https://ca/acme/order", {})
            print(f"certbot {' '.join(args)}: done")
            return 0
    """,
}


@pytest.fixture
def program(tmp_path):
    for name, text in STAND_IN.items():
        path = tmp_path / "site" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    def run(plan, *options):
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        env = {"PYTHONPATH": str(tmp_path / "site"), "PLAN": str(tmp_path / "plan.json"), "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(
            [sys.executable, str(PROGRAM), "--retry-delay", "0", *options, "--", "certonly", "-d", "x.example.org"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        runs = tmp_path / "plan.json.runs"
        return proc, len(runs.read_text()) if runs.exists() else 0

    return run


def test_program_sends_bad_nonces_again_within_one_run(program):
    proc, runs = program([["badNonce"] * 5 + ["ok", "badNonce", "ok"]], "--nonce-retries", "5")
    assert proc.returncode == 0, proc.stderr
    assert runs == 1
    assert "certbot --config-dir" not in proc.stdout and "certbot certonly -d x.example.org: done" in proc.stdout
    assert "nvflare-certbot: 6 badNonce answer(s) from the ACME server" in proc.stderr


def test_program_runs_certbot_again_after_a_transient_failure(program):
    proc, runs = program([["badNonce"] * 3, ["ok"]], "--nonce-retries", "2", "--retries", "2")
    assert proc.returncode == 0, proc.stderr
    assert runs == 2
    assert (
        "nvflare-certbot: attempt 1 of 3 failed (transient, badNonce): badNonce answer to https://ca/acme/order"
        in proc.stderr
    )
    assert proc.stderr.splitlines()[-1] == "nvflare-certbot: certbot succeeded on attempt 2 of 3"


def test_program_stops_at_a_permanent_failure_with_one_line(program):
    proc, runs = program([["unauthorized"], ["ok"]], "--retries", "3")
    assert proc.returncode == 1
    assert runs == 1
    assert proc.stderr.splitlines()[-1] == (
        "certbot failed (permanent, unauthorized): unauthorized answer to https://ca/acme/order"
    )


def test_program_gives_up_after_its_retries(program):
    proc, runs = program([["serverInternal"]], "--retries", "2")
    assert proc.returncode == 1
    assert runs == 3
    assert proc.stderr.splitlines()[-1].startswith("certbot failed (transient, serverInternal, 3 attempts): ")
