# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filter that digests a startup kit source on the controller, as participant_info digests its copy."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.federated.nvflare.plugins.module_utils._kit import source_digest

DOCUMENTATION = r"""
name: kit_source_digest
short_description: Digest of a startup kit zip or folder on the controller
version_added: 0.1.0
author: federated.nvflare contributors (@federated-nvflare)
description:
  - Returns C(sha256:HEX) for a kit zip (any file) and C(tree:HEX) for a kit folder (paths,
    permission bits and contents of its files).
  - M(federated.nvflare.participant_info) computes the same digest of the copy staged on a host
    and compares it with O(federated.nvflare.participant_info#module:kit.src_digest). Equal
    digests mean the copy is current, so the roles skip the copy task and its remote checksum.
options:
  _input:
    description: Path of the kit zip or folder on the controller.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Look at the participant, giving the digest of the kit it should have
  federated.nvflare.participant_info:
    user: nvflare
    kit:
      src: /var/lib/nvflare-kits/site-1.zip
      src_digest: "{{ 'workspace/zips/site-1.zip' | federated.nvflare.kit_source_digest }}"
      dest: /opt/nvflare/site-1
      participant: site-1
      type: client
"""

RETURN = r"""
_value:
  description: The digest, C(sha256:HEX) or C(tree:HEX).
  type: str
"""


def kit_source_digest(path):
    digest = source_digest(str(path))
    if digest is None:
        raise AnsibleFilterError(f"kit_source_digest: {path} is neither a file nor a folder on the controller")
    return digest


class FilterModule:
    def filters(self):
        return {"kit_source_digest": kit_source_digest}
