#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: controller_state
short_description: Keep the controller's private state folder of a project, and move old state into it
version_added: 0.3.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Makes sure O(path) exists as a folder of the user running the module with mode 0700 (a wider
    mode is narrowed), for the project's root CA workspace, downloaded kits and backups.
  - Moves each O(moves[].src) that exists to its O(moves[].dest) when that does not exist yet - a
    provisioning workspace left at an earlier release's default inside the collection's own
    folder is moved, never provisioned anew (a new root CA would orphan every running site).
    The move keeps the folder's files as they are (a rename on one file system, a copy then a
    removal across file systems).
  - When both a source and its destination exist, nothing is moved and a warning names both; the
    destination is the one in use.
  - Needs only Python's standard library.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what it would create, narrow or move, and changes nothing.
  diff_mode:
    support: none
  idempotent:
    description: A second run with the same folders changes nothing.
    support: full
  platform:
    platforms: posix
options:
  path:
    description: The state folder, an absolute path.
    type: path
    required: true
  moves:
    description: Folders to move into their new places, in order.
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description: Where the folder was (an earlier default).
        type: path
        required: true
      dest:
        description: Where it belongs now (normally inside O(path)).
        type: path
        required: true
notes:
  - Run it on the controller (a local connection); the roles do so before provisioning.
"""

EXAMPLES = r"""
- name: Keep the project's state outside the collection
  federated.nvflare.controller_state:
    path: "{{ lookup('ansible.builtin.env', 'HOME') }}/.local/share/federated.nvflare/spleen"
    moves:
      - src: "{{ playbook_dir }}/../.nvflare-workspace"
        dest: "{{ lookup('ansible.builtin.env', 'HOME') }}/.local/share/federated.nvflare/spleen/workspace"
"""

RETURN = r"""
path:
  description: The state folder.
  returned: always
  type: str
moved:
  description: The folders moved (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - src: /home/me/federated.nvflare/.nvflare-workspace
      dest: /home/me/.local/share/federated.nvflare/spleen/workspace
messages:
  description: One line per thing done, for the play's output.
  returned: always
  type: list
  elements: str
"""

import os
import shutil
import stat
import traceback

from ansible.module_utils.basic import AnsibleModule


def _has_content(path: str) -> bool:
    """A folder with anything in it (an empty folder is as good as none)."""
    try:
        return os.path.isdir(path) and any(os.scandir(path))
    except OSError:
        return False


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            moves=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(src=dict(type="path", required=True), dest=dict(type="path", required=True)),
            ),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    if not os.path.isabs(path):
        module.fail_json(
            msg=f"The controller's state folder must be an absolute path, not '{path}': set nvflare_state_dir."
        )
    changed, moved, messages = False, [], []
    try:
        if os.path.lexists(path) and not os.path.isdir(path):
            module.fail_json(
                msg=f"{path} exists and is not a folder: move it away or set nvflare_state_dir to another folder."
            )
        if not os.path.isdir(path):
            changed = True
            messages.append(f"created the controller's state folder {path} (mode 0700)")
            if not module.check_mode:
                os.makedirs(path, mode=0o700, exist_ok=True)
                os.chmod(path, 0o700)
        else:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                changed = True
                messages.append(f"narrowed {path} from {mode:04o} to 0700 (it holds the project's root CA key)")
                if not module.check_mode:
                    os.chmod(path, 0o700)
        for move in module.params["moves"]:
            src, dest = move["src"], move["dest"]
            if os.path.realpath(src) == os.path.realpath(dest) or not _has_content(src):
                continue
            if os.path.lexists(dest) and (_has_content(dest) or not os.path.isdir(dest)):
                module.warn(
                    f"{src} (an earlier release's default) and {dest} both exist: {dest} is the one in use; "
                    f"remove {src} once you have checked that it is not needed"
                )
                continue
            changed = True
            moved.append({"src": src, "dest": dest})
            messages.append(f"moved {src} to {dest} (once; the state now lives outside the collection)")
            if not module.check_mode:
                os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
                if os.path.isdir(dest):
                    os.rmdir(dest)  # empty: checked above
                shutil.move(src, dest)
    except OSError as exc:
        module.fail_json(
            msg=f"Could not prepare the controller's state folder {path}: {exc}", exception=traceback.format_exc()
        )
    module.exit_json(changed=changed, path=path, moved=moved, messages=messages)


if __name__ == "__main__":
    main()
