# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filter that turns a kit's local/resources.json.default into the host's resources.json."""

from __future__ import annotations

from ansible_collections.federated.nvflare.plugins.module_utils._resources import local_resources

DOCUMENTATION = r"""
name: local_resources
short_description: Adapt an NVFlare kit's default resources to this host
version_added: 0.1.0
author: federated.nvflare contributors (@federated-nvflare)
description:
  - Takes the parsed C(local/resources.json.default) of a startup kit and returns the content
    for C(local/resources.json) with the host's settings applied.
  - Server - job and snapshot storage under O(data_dir) instead of C(/tmp/nvflare), the job
    scheduler's C(max_jobs).
  - Client - the GPU resource manager's C(num_of_gpus) and C(mem_per_gpu_in_GiB).
  - Both - extra classes appended to C(class_allow_list), which NVFlare 2.9 enforces for jobs
    without custom code.
options:
  _input:
    description: The parsed C(resources.json.default).
    type: dict
    required: true
  data_dir:
    description: Server only. Folder for job and snapshot storage.
    type: path
  max_jobs:
    description: Server only. Jobs the server runs at the same time.
    type: int
  num_of_gpus:
    description: Client only. GPUs this site offers to jobs.
    type: int
  mem_per_gpu_in_GiB:
    description: Client only. Memory per GPU, in GiB.
    type: float
  class_allow_list:
    description: Classes to add to the allow-list.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Write the server's resources
  ansible.builtin.copy:
    content: >-
      {{ defaults | federated.nvflare.local_resources(data_dir='/var/lib/nvflare/data', max_jobs=2)
         | to_nice_json }}
    dest: /var/lib/nvflare/server/local/resources.json
    mode: "0640"
"""

RETURN = r"""
_value:
  description: The resources to write to C(local/resources.json).
  type: dict
"""


class FilterModule:
    def filters(self):
        return {"local_resources": local_resources}
