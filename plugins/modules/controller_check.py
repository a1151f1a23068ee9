#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done by the action plugin of the same name (plugins/action/controller_check.py),
# on the controller, in the Python and with the collection paths that ansible-playbook itself uses.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: controller_check
short_description: Check that the controller has what a play needs, before any change
version_added: 0.3.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Runs on the controller, inside ansible-playbook itself, and checks what the collection's
    plays need there - NVFlare importable by the Python that ansible-playbook runs (provisioning
    and the admin side run there) at the release series of O(nvflare_version); the collections in
    O(collections) on Ansible's collections path; the Python modules in O(python_modules); and,
    with O(inventory), what the play's inventory sources need (boto3, botocore and amazon.aws for
    an C(aws_ec2) inventory; azure.azcollection and its SDK for an C(azure_rm) one).
  - Fails once, with one message naming each missing thing and the command that installs it
    (C(make controller) in a clone; C(pip install) and C(ansible-galaxy collection install) for
    an installed collection). Changes nothing.
  - C(playbooks/site.yml) runs it first (the C(federated.nvflare.nvflare) role), and so do the
    other playbooks that work on the controller.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Only reads.
  diff_mode:
    support: none
  idempotent:
    description: It only reads.
    support: full
  platform:
    platforms: posix
options:
  nvflare_version:
    description:
      - The project's NVFlare release (C(nvflare_version)). The controller's NVFlare must be of the
        same major.minor series (kits and jobs are made there); V('') skips the NVFlare check.
    type: str
    default: ""
  collections:
    description: Collections (C(namespace.name)) the play uses on the controller.
    type: list
    elements: str
    default: []
  python_modules:
    description: Python modules (import names) the play imports on the controller.
    type: list
    elements: str
    default: []
  inventory:
    description:
      - Also check what the play's inventory sources (C(ansible_inventory_sources)) need - an
        C(aws_ec2) inventory file (C(*aws_ec2.yml)) needs amazon.aws, boto3 and botocore; an
        C(azure_rm) one (C(*azure_rm.yml)) azure.azcollection and the Azure SDK. Without them
        Ansible only warns that the inventory could not be parsed and then finds no hosts.
      - Sources are recognised by their file names, as those plugins require them; for an
        inventory folder, by the names of the files in it.
    type: bool
    default: true
notes:
  - The Python checked is the one running ansible-playbook (C(ansible_playbook_python)); the
    collection's plays run their controller-side modules with it.
"""

EXAMPLES = r"""
- name: Check the controller before any change
  federated.nvflare.controller_check:
    nvflare_version: "{{ nvflare_version }}"
    collections: [ansible.utils, community.docker]
"""

RETURN = r"""
python:
  description: The Python checked (ansible-playbook's own).
  returned: always
  type: str
  sample: /home/me/federated.nvflare/.venv/bin/python
nvflare:
  description: The NVFlare release found there, V('') if none.
  returned: always
  type: str
  sample: 2.9.0
collections:
  description: The collections checked, with the version found (V('') when missing).
  returned: always
  type: dict
  sample: {"amazon.aws": "10.1.2"}
missing:
  description: One line per missing thing (the module fails when there is any).
  returned: always
  type: list
  elements: str
"""
