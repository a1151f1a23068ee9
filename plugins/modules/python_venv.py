#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: python_venv
short_description: A Python virtualenv holding pinned packages, installed with pip under a lock
version_added: 0.1.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - Makes sure the virtualenv O(path) exists and holds O(requirements), installing from a
    wheelhouse (C(pip --no-index --find-links)) or from a package index.
  - A quick look first. When every requirement is a plain pin (C(name==version)) that is
    installed at that version, the module reports no change without running pip, which would
    spend seconds resolving. A local version label counts as that version
    (C(torch==2.13.0) is satisfied by C(2.13.0+cpu)); a pin with a label wants exactly that build.
  - Otherwise it creates the virtualenv with O(python) when it does not exist, then runs
    C(pip install) with every requirement; pip decides what is missing, and the module reports a
    change when pip installed something.
  - Creating and filling happen under an exclusive C(flock) on the folder that holds the
    virtualenv (the same lock as C(flock(1)) on that folder), so inventory hosts that are one
    machine and share a virtualenv (a one-machine demo) do not run pip on it at the same moment.
    Whoever waited looks again first and finds the work done.
  - With O(wheelhouse), each project that must be installed needs a wheel (or source archive)
    there; the module says which are missing before pip runs.
  - Needs only the host's Python standard library (the virtualenv's interpreter reads the
    installed versions), not C(packaging) or C(setuptools) as M(ansible.builtin.pip) does.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Nothing is written. Without a virtualenv it reports that one would be created and
        O(requirements) installed. With one, C(pip install --dry-run) tells what would be
        installed (pip 22.2 or newer).
      - With O(check_with_pip=false), or when the wheelhouse is missing or incomplete (an earlier
        task that would copy it did not run in check mode), it reports a change instead of running pip.
  diff_mode:
    support: full
    details: The diff lists the installed version of every project that O(requirements) names.
  idempotent:
    description: Run again with the same options right after a run, the module reports no change
      and installs nothing.
    support: full
    details: Pin every requirement for a quick, pip-free re-run.
  platform:
    platforms: posix
options:
  path:
    description: Path of the virtualenv. Missing parent folders are created (mode 0755).
    type: path
    required: true
  requirements:
    description:
      - pip requirement specifiers to install, for example C(nvflare==2.9.0) or C(monai>=1.6).
      - Plain pins (C(name==version)) let a re-run skip pip; with anything else in the list pip
        runs every time and decides.
      - Leave empty to only create the virtualenv.
    type: list
    elements: str
    default: []
  python:
    description:
      - Interpreter that creates the virtualenv (when it does not exist yet). An existing
        virtualenv keeps the interpreter it was made with.
      - Pick one the users of the virtualenv can run; an interpreter under another user's home
        is not readable by a service user.
    type: str
    default: /usr/bin/python3
  system_site_packages:
    description: Give the virtualenv access to the system's site-packages. Applies when it is created.
    type: bool
    default: false
  wheelhouse:
    description:
      - Folder on the host holding wheels for every package to install. When set, pip runs with
        C(--no-index --find-links) and nothing is fetched from the network.
    type: path
  index_url:
    description: Package index to use instead of pip's default when O(wheelhouse) is not set.
    type: str
  check_with_pip:
    description:
      - In check mode, when the quick look finds something to do in an existing virtualenv, ask
        pip (C(--dry-run)) what it would install.
      - V(false) reports a change without running pip, which is quicker (a look before the tasks
        that prepare an install) but less exact.
    type: bool
    default: true
  constraints:
    description: A pip constraints file on the host (C(--constraint)), to pin what the requirements pull in.
    type: path
notes:
  - pip runs with C(PIP_NO_CACHE_DIR=1), C(--no-input) and C(--disable-pip-version-check).
  - The virtualenv belongs to the user the task runs as (root with C(become)); give other users
    read access through the folders above it.
seealso:
  - module: ansible.builtin.pip
"""

EXAMPLES = r"""
- name: NVIDIA FLARE in its own virtualenv, offline from a wheelhouse
  federated.nvflare.python_venv:
    path: /opt/nvflare/venv
    requirements:
      - nvflare==2.9.0
      - torch==2.13.0
    wheelhouse: /opt/wheelhouse

- name: Certbot from a package index
  federated.nvflare.python_venv:
    path: /opt/certbot/venv
    requirements: [certbot==5.8.0, certbot-dns-route53==5.8.0]
    index_url: https://pypi.example.org/simple

- name: Look without changing anything (does the virtualenv need work?)
  federated.nvflare.python_venv:
    path: /opt/nvflare/venv
    requirements: [nvflare==2.9.0]
  check_mode: true
  register: nvflare_venv

- name: Install the packages a new virtualenv needs only when there is none yet
  ansible.builtin.package:
    name: python3-venv
  when: nvflare_venv.created
"""

RETURN = r"""
created:
  description: Whether the virtualenv was created (in check mode, would be).
  returned: always
  type: bool
  sample: false
installed:
  description:
    - What pip installed, as C(name==version) (in check mode, what it would install; before the
      virtualenv exists, O(requirements) as given). Empty when nothing was installed.
  returned: always
  type: list
  elements: str
  sample: [nvflare==2.9.0, grpcio==1.76.0]
versions:
  description: Installed version of every project O(requirements) names, null for one that is missing.
  returned: always
  type: dict
  sample: {"nvflare": "2.9.0", "torch": "2.13.0+cpu"}
unmet:
  description:
    - What the quick look found missing or at another version before anything was done, one line
      each. Empty when every pin was met; null when a requirement is not a plain pin.
  returned: always
  type: list
  elements: str
  sample: ["missing: nvflare", "torch: 2.12.0 installed, 2.13.0 wanted"]
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.federated.nvflare.plugins.module_utils import _venv


class Installer:
    """Brings one virtualenv to the wanted state (module options P, run through RUN)."""

    def __init__(self, p: dict, run, check_mode: bool):
        self.p = p
        self.venv = _venv.VirtualEnv(p["path"], run)
        self.check_mode = check_mode
        self.requirements = list(p["requirements"])
        names = [_venv.requirement_name(spec) for spec in self.requirements]
        self.names = list(dict.fromkeys(name for name in names if name))
        self.result = {"changed": False, "created": False, "installed": [], "versions": {}}

    def source_args(self) -> list[str]:
        p = self.p
        args = ["--no-index", "--find-links", p["wheelhouse"]] if p["wheelhouse"] else []
        if not args and p["index_url"]:
            args = ["--index-url", p["index_url"]]
        return args + (["--constraint", p["constraints"]] if p["constraints"] else [])

    def satisfied(self, versions: dict) -> bool:
        return self.venv.exists and _venv.unmet(self.requirements, versions) == []

    def run(self) -> dict:
        before = self.venv.versions(self.names)
        self.result["unmet"] = _venv.unmet(self.requirements, before) if self.venv.exists else ["no virtualenv"]
        self.before = before
        if self.satisfied(before):
            after = before
        elif self.check_mode:
            self.plan(before)
            after = self.predicted(before)
        else:
            parent = os.path.dirname(os.path.abspath(self.p["path"]))
            os.makedirs(parent, mode=0o755, exist_ok=True)
            with _venv.locked(parent):
                self.apply()
            after = self.venv.versions(self.names)
        self.result["versions"] = after
        self.result["changed"] = self.result["created"] or bool(self.result["installed"])
        return self.result

    def plan(self, versions: dict) -> None:
        """Check mode: what a real run would do, with nothing written."""
        if not self.venv.exists:
            self.result["created"] = True
            self.result["installed"] = list(self.requirements)
            return
        if not self.requirements:
            return
        wheelhouse = self.p["wheelhouse"]
        if not self.p["check_with_pip"] or (wheelhouse and not self.wheelhouse_ready(wheelhouse, versions)):
            self.result["installed"] = _venv.names_to_install(self.requirements, versions) or self.requirements
            return
        self.result["installed"] = self.venv.pip_install(self.source_args(), self.requirements, dry_run=True)

    def wheelhouse_ready(self, wheelhouse: str, versions: dict) -> bool:
        try:
            return not _venv.wheelhouse_lacks(wheelhouse, _venv.names_to_install(self.requirements, versions))
        except _venv.VenvError:
            return False

    def apply(self) -> None:
        """Under the lock: look again (another host may have done the work), create, install."""
        versions = self.venv.versions(self.names)
        if self.satisfied(versions):
            return
        if not self.venv.exists:
            self.venv.create(self.p["python"], self.p["system_site_packages"])
            self.result["created"] = True
        if not self.requirements:
            return
        wheelhouse = self.p["wheelhouse"]
        if wheelhouse:
            lacking = _venv.wheelhouse_lacks(wheelhouse, _venv.names_to_install(self.requirements, versions))
            if lacking:
                raise _venv.VenvError(
                    f"no wheel for {', '.join(lacking)} in the wheelhouse {wheelhouse} on this host: "
                    f"{_venv.WHEELHOUSE_HINT}"
                )
        try:
            self.result["installed"] = self.venv.pip_install(self.source_args(), self.requirements, dry_run=False)
        except _venv.VenvError as e:
            hint = f"\nIs every package in the wheelhouse {wheelhouse}? {_venv.WHEELHOUSE_HINT}" if wheelhouse else ""
            raise _venv.VenvError(f"{e}{hint}") from e

    def predicted(self, before: dict) -> dict:
        """Check mode: the versions after a real run, as far as pip's plan tells."""
        after = dict(before)
        planned = dict(item.split("==", 1) for item in self.result["installed"] if "==" in item)
        by_norm = {_venv.normalize(name): version for name, version in planned.items()}
        for name in after:
            after[name] = by_norm.get(_venv.normalize(name), after[name])
        return after

    def diff(self) -> dict:
        def lines(versions: dict) -> str:
            return "".join(
                f"{name}=={version}\n" if version else f"{name} (not installed)\n"
                for name, version in sorted(versions.items())
            )

        return {
            "before_header": self.p["path"],
            "after_header": self.p["path"],
            "before": lines(self.before),
            "after": lines(self.result["versions"]),
        }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            requirements=dict(type="list", elements="str", default=[]),
            python=dict(type="str", default="/usr/bin/python3"),
            system_site_packages=dict(type="bool", default=False),
            wheelhouse=dict(type="path"),
            index_url=dict(type="str"),
            constraints=dict(type="path"),
            check_with_pip=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )

    def run(argv, env):
        return module.run_command(argv, environ_update=env or {}, expand_user_and_vars=False, handle_exceptions=False)

    installer = Installer(module.params, run, module.check_mode)
    try:
        result = installer.run()
    except _venv.VenvError as e:
        module.fail_json(msg=str(e))
    except OSError as e:
        module.fail_json(
            msg=f"cannot prepare virtualenv {module.params['path']}: {e}",
            exception=traceback.format_exc(),
        )
    if module._diff:
        result["diff"] = installer.diff()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
