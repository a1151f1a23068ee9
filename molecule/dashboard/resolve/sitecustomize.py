"""Name resolution for the dashboard scenario's controller-side Python (Ansible modules on
localhost, the verifier): the names listed in $DASH_SCENARIO_HOSTS ("address name" lines, like
/etc/hosts) resolve to the test containers' addresses, as a DNS record would for real hosts.
TLS is untouched: certificates are still checked against the name. Only on PYTHONPATH in the
scenario's runs; the file is written by prepare.yml.
"""

from __future__ import annotations

import os
import socket

_path = os.environ.get("DASH_SCENARIO_HOSTS", "")
_real_getaddrinfo = socket.getaddrinfo


def _hosts() -> dict[str, str]:
    try:
        with open(_path, encoding="utf-8") as handle:
            pairs = (line.split() for line in handle if line.strip() and not line.startswith("#"))
            return {name: address for address, *names in pairs for name in names}
    except OSError:
        return {}


def _getaddrinfo(host, *args, **kwargs):
    address = _hosts().get(host) if isinstance(host, str) else None
    return _real_getaddrinfo(address or host, *args, **kwargs)


if _path:
    socket.getaddrinfo = _getaddrinfo
