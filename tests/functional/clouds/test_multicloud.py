# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One federation across two clouds (docs/multi-cloud.md): server and site1 on Azure, site2 on AWS.

The AWS half is real against moto (project bravo, built by the bravo fixture with
playbooks/aws_infra.yml); the Azure half is sample VMs read by the real azure_rm plugin code.
Both inventory files are loaded together, as the documented commands do with two -i.
"""

from __future__ import annotations

import json

import pytest
from cloudlib import (
    ADMIN_CIDR,
    AWS_INVENTORY,
    ansible_inventory,
    azure_plan,
    group_hosts,
    project_env,
    sample_azure_inventory,
    unwrap,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def both_env(aws_env, azure_env) -> dict[str, str]:
    env = dict(azure_env)
    env.update({k: v for k, v in aws_env.items() if k.startswith("AWS_")})
    return project_env(env, "bravo")


def test_both_inventories_form_one_federation(both_env, bravo, tmp_path):
    proc = ansible_inventory(both_env, [AWS_INVENTORY, sample_azure_inventory(tmp_path)], "--list")
    assert proc.returncode == 0, proc.stderr
    inv = unwrap(json.loads(proc.stdout))
    assert group_hosts(inv, "nvflare_server") == ["server"]
    assert group_hosts(inv, "nvflare_clients") == ["site1", "site2"]
    hostvars = inv["_meta"]["hostvars"]
    assert {h: hostvars[h]["nvflare_cloud"] for h in ("server", "site1", "site2")} == {
        "server": "azure",
        "site1": "azure",
        "site2": "aws",
    }
    assert hostvars["site2"]["ansible_host"] == bravo["site2"]["PublicIpAddress"]
    assert hostvars["site2"]["ansible_user"] == "ubuntu" and hostvars["site1"]["ansible_user"] == "azureuser"


def test_azure_server_admits_the_aws_site(both_env, bravo, ssh_public_key, tmp_path):
    extra = {
        "azure_infra_project": "bravo",
        "azure_infra_location": "westeurope",
        "azure_infra_admin_cidrs": [ADMIN_CIDR],
        "azure_infra_ssh_public_key": ssh_public_key,
        "azure_infra_vms": [{"name": "server", "role": "server"}, {"name": "site1", "role": "client"}],
    }
    inventories = [AWS_INVENTORY, sample_azure_inventory(tmp_path)]
    run, plan = azure_plan(both_env, extra, tmp_path / "plan.json", inventory=inventories)
    assert run.rc == 0, run.explain()
    fl = next(r for r in plan["nsg_rules"]["server"] if r["destination_port_range"] == "8002")
    # site2's AWS address (from aws_ec2.yml) and site1's Azure address (from azure_rm.yml).
    assert fl["source_address_prefix"] == sorted([bravo["site2"]["PublicIpAddress"] + "/32", "20.61.1.11/32"])
    assert all(r["source_address_prefix"] == [ADMIN_CIDR] for r in plan["nsg_rules"]["server"] if r is not fl)
