# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the cloud infrastructure tests.

AWS: a real moto server on loopback stands in for EC2 and Route53; every AWS client (the
playbooks, the inventory plugin, boto3 in the tests) is pointed at it with dummy
credentials, and the fixture refuses to hand out an environment that could reach AWS.

Azure: nothing stands in for Azure's API, so only what runs without it is exercised:
syntax, preflight checks, derived values, and the inventory's group logic applied by the
real azure_rm plugin code to sample host data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cloudlib import (  # noqa: E402
    ADMIN_CIDR,
    AWS_PLAYBOOK,
    COLLECTIONS,
    HERE,
    MOTO_IMAGES,
    REGION,
    ROOT,
    VENV,
    ZONE,
    ansible_env,
    free_port,
    run_playbook,
)

ANSIBLE_WHEEL_GLOB = "ansible-*-py3-none-any.whl"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A moto server on a free loopback port, killed (by its own PID) at the end."""
    binary = VENV / "bin" / "moto_server"
    if not binary.exists():
        pytest.skip("moto not installed: no moto_server in .venv (moto[server] of requirements/dev.txt)")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start: " + log.read_text()[-2000:]) from None
                time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def aws_env(moto_server, tmp_path_factory) -> dict[str, str]:
    """Environment for every AWS client in these tests: moto on loopback, dummy credentials."""
    home = tmp_path_factory.mktemp("aws-home")
    env = ansible_env()
    env.update(
        AWS_ENDPOINT_URL=moto_server,
        AWS_ENDPOINT_URL_ROUTE_53=moto_server,
        AWS_ENDPOINT_URL_EC2=moto_server,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        # No profile or credentials file of the person running the tests may be read.
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    # Hard rule: nothing may reach a real AWS endpoint.
    for key, value in env.items():
        if key.startswith("AWS_ENDPOINT_URL"):
            assert value.startswith("http://127.0.0.1:"), (key, value)
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    return env


@pytest.fixture(scope="session")
def boto(aws_env):
    """boto3 clients bound to the moto server only."""
    import boto3

    endpoint = aws_env["AWS_ENDPOINT_URL"]
    assert endpoint.startswith("http://127.0.0.1:")
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)

    class Clients:
        ec2 = session.client("ec2", endpoint_url=endpoint)
        route53 = session.client("route53", endpoint_url=endpoint)

    return Clients


@pytest.fixture(scope="session")
def ssh_public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return (
        key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " operator@test"
    )


@pytest.fixture(scope="session")
def route53_zone(boto) -> str:
    zones = boto.route53.list_hosted_zones_by_name(DNSName=ZONE)["HostedZones"]
    if zones and zones[0]["Name"] == ZONE + ".":
        return zones[0]["Id"]
    return boto.route53.create_hosted_zone(Name=ZONE, CallerReference="nvflare-tests")["HostedZone"]["Id"]


@pytest.fixture(scope="session")
def bravo(aws_env, boto, ssh_public_key, route53_zone) -> dict:
    """Another federation in the same account: one AWS client site, site2, in the default VPC.

    test_aws.py checks that tearing down project alpha leaves it alone; test_multicloud.py
    uses it as the AWS half of a federation whose server and site1 are on Azure.
    """
    extra = {
        "aws_infra_project": "bravo",
        "aws_infra_admin_cidrs": [ADMIN_CIDR],
        "aws_infra_ssh_public_key": ssh_public_key,
        "aws_infra_instances": [{"name": "site2", "role": "client"}],
        "aws_infra_images": MOTO_IMAGES,
    }
    run = run_playbook(AWS_PLAYBOOK, aws_env, extra)
    assert run.rc == 0, run.explain()
    reservations = boto.ec2.describe_instances(
        Filters=[
            {"Name": "tag:nvflare_project", "Values": ["bravo"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 1
    return {"site2": instances[0]}


# ---------------------------------------------------------------- Azure (no API) helpers


@pytest.fixture(scope="session")
def azure_collections(tmp_path_factory) -> Path:
    """azure.azcollection unpacked from the cached ansible wheel into a throw-away path.

    Only the collection's files: its ~1.6 GB of Python requirements are not installed.
    """
    present = COLLECTIONS / "ansible_collections" / "azure" / "azcollection"
    if present.is_dir():
        return COLLECTIONS
    wheels = sorted((ROOT / ".cache" / "downloads").glob(ANSIBLE_WHEEL_GLOB))
    if not wheels:
        pytest.skip("the ansible wheel (for azure.azcollection) is not cached in .cache/downloads")
    dest = tmp_path_factory.mktemp("azure-collections")
    prefix = "ansible_collections/azure/azcollection/"
    with zipfile.ZipFile(wheels[-1]) as wheel:
        wheel.extractall(dest, [n for n in wheel.namelist() if n.startswith(prefix)])
    return dest


@pytest.fixture(scope="session")
def azure_env(azure_collections) -> dict[str, str]:
    env = ansible_env([azure_collections] if azure_collections != COLLECTIONS else None)
    # The sample inventory plugin (tests only) runs the real azure_rm code on sample hosts.
    env["ANSIBLE_INVENTORY_PLUGINS"] = str(HERE / "inventory_plugins")
    env["ANSIBLE_INVENTORY_ENABLED"] = "azure_rm_sample,amazon.aws.aws_ec2,yaml,ini,auto"
    env["NVFLARE_AZURE_SAMPLE_HOSTS"] = str(HERE / "data" / "azure_hosts.yml")
    return env
