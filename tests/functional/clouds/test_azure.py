# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What can be tested of the Azure side without Azure.

Nothing stands in for Azure's API here, so no test creates, changes or deletes an Azure
resource: the playbooks are syntax-checked with azure.azcollection on the collections path,
the role's checks and derivations run with --tags azure_infra_plan (no module that calls
Azure runs), and inventories/azure_rm.yml is evaluated by the real azure_rm plugin code on
sample VMs (inventory_plugins/azure_rm_sample.py).
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from cloudlib import (
    ADMIN_CIDR,
    AWS_INVENTORY,
    AZURE_INVENTORY,
    AZURE_PLAYBOOK,
    AZURE_TEARDOWN,
    ROOT,
    VENV,
    ansible_inventory,
    azure_plan,
    group_hosts,
    project_env,
    sample_azure_inventory,
    unwrap,
)

SITE_CIDR = "203.0.113.0/24"


def bravo_vars(ssh_public_key: str, **overrides) -> dict:
    extra = {
        "azure_infra_project": "bravo",
        "azure_infra_location": "westeurope",
        "azure_infra_admin_cidrs": [ADMIN_CIDR],
        "azure_infra_site_cidrs": [SITE_CIDR],
        "azure_infra_ssh_public_key": ssh_public_key,
        "azure_infra_vms": [
            {"name": "dashboard", "role": "dashboard"},
            {"name": "server", "role": "server"},
            {"name": "site_1", "role": "client", "size": "Standard_NC8as_T4_v3"},
        ],
    }
    extra.update(overrides)
    return extra


@pytest.mark.parametrize("playbook", [AZURE_PLAYBOOK, AZURE_TEARDOWN])
def test_playbooks_pass_syntax_check(azure_env, playbook):
    proc = subprocess.run(
        [str(VENV / "bin" / "ansible-playbook"), "--syntax-check", str(playbook)],
        env=azure_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"playbook: {playbook.relative_to(ROOT)}" in proc.stdout or str(playbook) in proc.stdout


def test_plan_derives_names_specs_and_tags(azure_env, ssh_public_key, tmp_path):
    run, plan = azure_plan(azure_env, bravo_vars(ssh_public_key), tmp_path / "plan.json")
    assert run.rc == 0, run.explain()
    # Only the checks and the derivation ran: not one task of the role that calls Azure.
    assert not [name for name, _h, _r in run.tasks() if "Converge" in name or "Delete" in name]
    vms = {vm["name"]: vm for vm in plan["vms"]}
    assert sorted(vms) == ["dashboard", "server", "site_1"]
    site = vms["site_1"]
    # Azure names allow no underscore: resource names and the host name are sanitised.
    assert site["vm_name"] == "nvflare-bravo-site-1"
    assert site["hostname"] == "site-1"
    assert site["fqdn"] == "nvflare-bravo-site-1.westeurope.cloudapp.azure.com"
    assert site["size"] == "Standard_NC8as_T4_v3"
    assert site["image"]["offer"] == "ubuntu-hpc"
    assert site["os_disk_size_gb"] == 150
    assert site["tags"] == {
        "nvflare_project": "bravo",
        "nvflare_role": "client",
        "Name": "site_1",
        "nvflare_ssh_user": "azureuser",
        "nvflare_fqdn": "nvflare-bravo-site-1.westeurope.cloudapp.azure.com",
    }
    assert vms["server"]["size"] == "Standard_D4s_v5"
    assert vms["server"]["nsg_name"] == "nvflare-bravo-server"
    assert vms["dashboard"]["image"]["publisher"] == "Canonical"
    assert (plan["vnet"], plan["subnet"]) == ("nvflare-bravo-vnet", "nvflare-bravo-subnet")


def rules_by_port(rules: list[dict]) -> dict[str, list[str]]:
    return {r["destination_port_range"]: sorted(r["source_address_prefix"]) for r in rules}


def test_plan_rules_are_least_privilege(azure_env, ssh_public_key, tmp_path):
    run, plan = azure_plan(azure_env, bravo_vars(ssh_public_key), tmp_path / "plan.json")
    assert run.rc == 0, run.explain()
    rules = plan["nsg_rules"]
    assert rules_by_port(rules["server"]) == {"22": [ADMIN_CIDR], "8002": [SITE_CIDR], "8003": [ADMIN_CIDR]}
    assert rules_by_port(rules["client"]) == {"22": [ADMIN_CIDR]}
    assert rules_by_port(rules["dashboard"]) == {"22": [ADMIN_CIDR], "443": sorted([ADMIN_CIDR, SITE_CIDR])}
    for role_rules in rules.values():
        assert all(
            r["access"] == "Allow" and r["direction"] == "Inbound" and r["protocol"] == "Tcp" for r in role_rules
        )
        assert len({r["priority"] for r in role_rules}) == len(role_rules)
        assert not any(
            src in ("*", "0.0.0.0/0", "::/0", "Internet") for r in role_rules for src in r["source_address_prefix"]
        )


def test_plan_with_the_same_admin_and_fl_port(azure_env, ssh_public_key, tmp_path):
    extra = bravo_vars(ssh_public_key, azure_infra_admin_port=8002, azure_infra_site_cidrs=["192.0.2.5"])
    run, plan = azure_plan(azure_env, extra, tmp_path / "plan.json")
    assert run.rc == 0, run.explain()
    sources = sorted(
        s
        for r in plan["nsg_rules"]["server"]
        if r["destination_port_range"] == "8002"
        for s in r["source_address_prefix"]
    )
    assert sources == sorted([ADMIN_CIDR, "192.0.2.5/32"])


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            {"azure_infra_admin_cidrs": ["198.51.100.300/32"]},
            'azure_infra_admin_cidrs: invalid CIDR(s) ["198.51.100.300/32"]',
        ),
        ({"azure_infra_site_cidrs": ["10.0.0.1/8"]}, 'azure_infra_site_cidrs: invalid CIDR(s) ["10.0.0.1/8"]'),
        ({"azure_infra_site_cidrs": ["0.0.0.0/0"]}, "set azure_infra_allow_any_source: true"),
        ({"azure_infra_admin_cidrs": []}, "azure_infra_admin_cidrs is empty"),
        ({"azure_infra_subnet_cidr": "10.99.0.0/24"}, "the subnet inside the virtual network"),
        ({"azure_infra_ssh_public_key": "-----BEGIN OPENSSH PRIVATE KEY-----"}, "never the private key"),
        ({"azure_infra_vms": [{"name": "a", "role": "server"}, {"name": "a", "role": "client"}]}, "unique names"),
        ({"azure_infra_vms": [{"name": "s", "role": "relay"}]}, "role"),
    ],
)
def test_preflight_refuses_bad_input(azure_env, ssh_public_key, tmp_path, overrides, expected):
    run, plan = azure_plan(azure_env, bravo_vars(ssh_public_key, **overrides), tmp_path / "plan.json")
    assert run.rc != 0 and plan is None
    assert any(expected in failure for failure in run.failures()), run.explain()


def test_any_source_only_when_asked(azure_env, ssh_public_key, tmp_path):
    extra = bravo_vars(ssh_public_key, azure_infra_site_cidrs=["0.0.0.0/0"], azure_infra_allow_any_source=True)
    run, plan = azure_plan(azure_env, extra, tmp_path / "plan.json")
    assert run.rc == 0, run.explain()
    fl = next(r for r in plan["nsg_rules"]["server"] if r["destination_port_range"] == "8002")
    assert fl["source_address_prefix"] == ["0.0.0.0/0"]


def azure_only_inventory(env, project, tmp_path) -> dict:
    import json

    proc = ansible_inventory(project_env(env, project), [sample_azure_inventory(tmp_path)], "--list")
    assert proc.returncode == 0, proc.stderr
    return unwrap(json.loads(proc.stdout))


def test_inventory_groups_come_from_tags(azure_env, tmp_path):
    inv = azure_only_inventory(azure_env, "bravo", tmp_path)
    assert group_hosts(inv, "nvflare_server") == ["server"]
    assert group_hosts(inv, "nvflare_clients") == ["site1"]
    assert group_hosts(inv, "nvflare_dashboard") == []
    hostvars = inv["_meta"]["hostvars"]
    # The deallocated site9, the other federation's server and the untagged VM are left out.
    assert sorted(hostvars) == ["server", "site1"]
    assert hostvars["server"]["ansible_host"] == "20.61.1.10"
    assert hostvars["server"]["ansible_user"] == "azureuser"
    assert hostvars["server"]["nvflare_fqdn"] == "nvflare-bravo-server.westeurope.cloudapp.azure.com"
    assert hostvars["site1"]["nvflare_cloud"] == "azure"


def test_inventory_filters_on_the_project(azure_env, tmp_path):
    inv = azure_only_inventory(azure_env, "zulu", tmp_path)
    assert group_hosts(inv, "nvflare_server") == ["zulu-server"]
    assert group_hosts(inv, "nvflare_clients") == []


def test_group_expressions_are_the_same_in_both_clouds():
    aws = yaml.safe_load(AWS_INVENTORY.read_text())
    azure = yaml.safe_load(AZURE_INVENTORY.read_text())
    assert aws["groups"] == azure["conditional_groups"]
    assert sorted(aws["groups"]) == ["nvflare_clients", "nvflare_dashboard", "nvflare_server"]
    for key in ("ansible_user", "nvflare_role", "nvflare_cloud"):
        assert key in aws["compose"] and key in azure["hostvar_expressions"]
    assert aws["compose"]["ansible_user"] == azure["hostvar_expressions"]["ansible_user"]
    assert aws["compose"]["nvflare_role"] == azure["hostvar_expressions"]["nvflare_role"]
