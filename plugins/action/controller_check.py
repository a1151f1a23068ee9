# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller's preflight (see plugins/modules/controller_check.py for the documentation).

An action plugin, because what it checks is the controller process itself: the Python running
ansible-playbook and the collections its collection loader can import.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import sys

from ansible.plugins.action import ActionBase

# What an inventory source of each plugin needs on the controller: collections, Python modules.
_INVENTORY_NEEDS = {
    "aws_ec2": (["amazon.aws"], ["boto3", "botocore"]),
    "azure_rm": (["azure.azcollection"], ["azure.mgmt.compute", "azure.identity"]),
}
_ARGS = {
    "nvflare_version": {"type": "str", "default": ""},
    "collections": {"type": "list", "elements": "str", "default": []},
    "python_modules": {"type": "list", "elements": "str", "default": []},
    "inventory": {"type": "bool", "default": True},
}


def _collection_version(fqcn: str) -> str | None:
    """The version of an importable collection ('' when it has no manifest), None when missing."""
    try:
        spec = importlib.util.find_spec(f"ansible_collections.{fqcn}")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for name in ("MANIFEST.json", "galaxy.yml"):
            path = os.path.join(location, name)
            if not os.path.exists(path):
                continue
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError:
                continue
            if name == "MANIFEST.json":
                return str(json.loads(text).get("collection_info", {}).get("version", ""))
            found = re.search(r"^version:\s*['\"]?([^'\"\s]+)", text, re.M)
            return found.group(1) if found else ""
    return ""


def _module_importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _inventory_plugins(sources) -> set[str]:
    """The inventory plugins of the play's sources, by the file names those plugins require."""
    found = set()
    names = []
    for source in sources or []:
        source = str(source)
        # An inventory folder (-i inventories/) holds its sources as files.
        if os.path.isdir(source):
            try:
                names += sorted(os.listdir(source))
            except OSError:
                pass
        else:
            names.append(os.path.basename(source))
    for base in names:
        for plugin in _INVENTORY_NEEDS:
            if re.search(rf"(^|[._-]){plugin}\.ya?ml$", base):
                found.add(plugin)
    return found


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=_ARGS)
        task_vars = task_vars or {}
        collections = list(dict.fromkeys(args["collections"]))
        modules = list(dict.fromkeys(args["python_modules"]))
        if args["inventory"]:
            for plugin in sorted(_inventory_plugins(task_vars.get("ansible_inventory_sources"))):
                extra_collections, extra_modules = _INVENTORY_NEEDS[plugin]
                collections += [c for c in extra_collections if c not in collections]
                modules += [m for m in extra_modules if m not in modules]

        missing, commands = [], []
        python = sys.executable
        nvflare = ""
        want = args["nvflare_version"]
        try:
            nvflare = importlib.metadata.version("nvflare")
        except importlib.metadata.PackageNotFoundError:
            pass
        if want:
            if not nvflare or not _module_importable("nvflare"):
                missing.append(
                    f"NVFlare {want} is not importable by {python} (provisioning and the admin side run there)"
                )
                commands.append(f"{python} -m pip install 'nvflare=={want}'")
            elif nvflare.split(".")[:2] != want.split(".")[:2]:
                missing.append(
                    f"NVFlare {nvflare} in {python}, but the project runs {want} (nvflare_version): "
                    "kits and jobs must come from the same release series"
                )
                commands.append(f"{python} -m pip install 'nvflare=={want}'")
        found_collections = {}
        absent_collections = []
        for fqcn in collections:
            version = _collection_version(fqcn)
            found_collections[fqcn] = version or ""
            if version is None:
                absent_collections.append(fqcn)
                missing.append(f"the collection {fqcn} is not on Ansible's collections path")
        if absent_collections:
            commands.append("ansible-galaxy collection install " + " ".join(absent_collections))
        absent_modules = [m for m in modules if not _module_importable(m)]
        for name in absent_modules:
            missing.append(f"the Python module {name} is not importable by {python}")
        if absent_modules:
            packages = {"botocore": "botocore", "boto3": "boto3"}
            names = sorted({packages.get(m, m.split(".")[0]) for m in absent_modules})
            if any(m.startswith("azure.") for m in absent_modules):
                commands.append(
                    f"{python} -m pip install -r <azure.azcollection>/requirements.txt"
                    " (make controller AZURE=1 in a clone)"
                )
                names = [n for n in names if n != "azure"]
            if names:
                commands.append(f"{python} -m pip install " + " ".join(names))

        result.update(python=python, nvflare=nvflare, collections=found_collections, missing=missing, changed=False)
        if missing:
            clone = "In a clone of federated.nvflare, `make controller` installs all of it (AZURE=1 adds Azure's)."
            result["failed"] = True
            result["msg"] = (
                "The controller lacks what this play needs:\n"
                + "".join(f"  - {line}\n" for line in missing)
                + "Install it, then run the play again:\n"
                + "".join(f"  {command}\n" for command in commands)
                + clone
            )
        else:
            result["msg"] = f"The controller is ready (Python {python}, NVFlare {nvflare or 'not checked'})."
        return result
