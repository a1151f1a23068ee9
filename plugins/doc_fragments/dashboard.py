# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection options and attributes shared by every federated.nvflare.dashboard_* module.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the NVIDIA FLARE dashboard, for example V(https://dashboard.example.org).
      - A trailing C(/nvflare-dashboard) is accepted and ignored; the REST API lives under
        C(/nvflare-dashboard/api/v1).
    type: str
    required: true
  username:
    description:
      - Email address of the dashboard account the module logs in as.
      - Most changes (project settings, approvals, the server kit) need the project admin, the
        account seeded from C(NVFL_CREDENTIAL) when the dashboard first started.
    type: str
    required: true
  password:
    description:
      - Password of O(username).
    type: str
    required: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) that signed the dashboard's TLS certificate, when it
        is not signed by a CA the host already trusts (a private CA, or a test ACME server).
    type: path
  validate_certs:
    description:
      - Whether to verify the dashboard's TLS certificate.
      - Set to V(false) only for throwaway tests; prefer O(ca_path).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each answer of the dashboard. Building a kit takes about a second.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
  idempotent:
    description: Run again with the same options right after a run, the module reports no change
      and sends no change to the dashboard.
    support: full
  action_group:
    description: Part of the action group C(federated.nvflare.dashboard), so C(module_defaults) can set
      the connection options (O(url), O(username), O(password), O(ca_path), O(validate_certs), O(timeout))
      once for every such task.
    support: N/A
    membership:
      - federated.nvflare.dashboard
notes:
  - The module logs in once per run. The dashboard reads an account's approval and role when
    it logs in, so a change of approval or role takes effect for that account from the next
    task on, which logs in again.
"""
