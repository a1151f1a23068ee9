# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection options and attributes shared by the modules that talk to an NVFlare server
    # through an admin startup kit (federated.nvflare.job, federated.nvflare.federation_info).
    DOCUMENTATION = r"""
options:
  admin_kit:
    description:
      - Folder of an admin startup kit on the host that runs the module (the folder that holds
        C(startup/fed_admin.json)).
      - The FLARE API writes into the kit's C(transfer/) folder, so it must be writable.
    type: path
    required: true
  username:
    description:
      - Admin user (an email) to log in as. Submitting or aborting a job needs one allowed to
        (for example the C(project_admin) or C(lead) role).
      - Defaults to the admin the kit was provisioned for (C(admin.username) in C(startup/fed_admin.json)).
    type: str
  connect_timeout:
    description:
      - Seconds to try to connect to the server before giving up on one attempt.
    type: float
    default: 10.0
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    description: Run again with the same options right after a run, the module reports no change
      and submits, aborts or downloads nothing.
    support: full
  action_group:
    description: Part of the action group C(federated.nvflare.flare), so C(module_defaults) can set
      O(admin_kit), O(username) and O(connect_timeout) once for every such task.
    support: N/A
    membership:
      - federated.nvflare.flare
requirements:
  - nvflare (2.9) in the Python that runs the module on the target host
"""
