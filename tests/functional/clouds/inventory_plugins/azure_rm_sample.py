# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-only inventory plugin: azure.azcollection.azure_rm fed with sample VMs instead of Azure.

Everything after the API calls is the real azure_rm code: host naming (hostnames),
exclude_host_filters, default_host_filters, hostvar_expressions, conditional_groups and
keyed_groups, read from a copy of inventories/azure_rm.yml whose `plugin:` names this
plugin. The sample VMs (a YAML list of {default_inventory_hostname, hostvars} as azure_rm
builds them) come from the file named by NVFLARE_AZURE_SAMPLE_HOSTS.
"""

from __future__ import annotations

DOCUMENTATION = r"""
    name: azure_rm_sample
    short_description: azure_rm over sample VMs (tests only)
    description:
        - Runs the azure_rm inventory plugin's filtering, naming and grouping on sample VMs.
    options:
        plugin:
            description: Token that marks the file as a source of this plugin.
            required: true
            choices: [azure_rm_sample]
        batch_fetch_interval:
            description: Unused; kept for option compatibility with azure_rm.
            default: 3
            type: int
        batch_fetch_timeout:
            description: Unused; kept for option compatibility with azure_rm.
            default: 5
            type: int
    extends_documentation_fragment:
      - azure.azcollection.azure
      - azure.azcollection.azure_rm
      - constructed
      - inventory_cache
"""

import os

import yaml

from ansible_collections.azure.azcollection.plugins.inventory.azure_rm import InventoryModule as AzureRMInventory


class InventoryModule(AzureRMInventory):
    NAME = "azure_rm_sample"

    def _credential_setup(self):
        """No Azure credentials: nothing is called."""

    def _get_hosts(self):
        """No Azure API: the hosts come from the sample file."""

    def _serialize(self, hosts):
        with open(os.environ["NVFLARE_AZURE_SAMPLE_HOSTS"], encoding="utf-8") as handle:
            return yaml.safe_load(handle)
