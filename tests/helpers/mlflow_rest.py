"""MLflow's REST API, called from inside a test container (`docker exec`), as a client on that
host would call it: over HTTPS checked against a CA file on the host, with basic auth or none."""

from __future__ import annotations

import json
import subprocess

# Runs in the container with its system Python: one call, printed as {"status": ..., "body": ...}.
CALL = r"""
import base64, json, ssl, sys, urllib.error, urllib.request
method, url, body, user, password, cafile = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)
req = urllib.request.Request(url, method=method, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"})
if user:
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
try:
    with urllib.request.urlopen(req, context=ctx, timeout=30) as answer:
        print(json.dumps({"status": answer.status, "body": answer.read().decode()}))
except urllib.error.HTTPError as exc:
    print(json.dumps({"status": exc.code, "body": exc.read().decode()}))
"""


def call(container: str, method: str, url: str, body: dict | None, account, cafile: str) -> subprocess.CompletedProcess:
    """The raw call: a non-zero exit status when no HTTP answer came (refused, TLS failed)."""
    args = [method, url, json.dumps(body) if body is not None else "", *(account or ("", "")), cafile]
    return subprocess.run(
        ["docker", "exec", container, "/usr/bin/python3", "-c", CALL, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rest(
    container: str, method: str, url: str, body: dict | None = None, account=None, cafile: str = ""
) -> tuple[int, dict]:
    """(HTTP status, decoded JSON body, or {"text": body} when it is not JSON)."""
    proc = call(container, method, url, body, account, cafile)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout)
    try:
        return answer["status"], json.loads(answer["body"] or "{}")
    except json.JSONDecodeError:
        return answer["status"], {"text": answer["body"]}
