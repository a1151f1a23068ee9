# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Installing a startup kit into its folder: what must change (Plan) and the change itself.

Used by the startup_kit module, which installs, and by participant_info, which only looks.
Nothing here needs `cryptography`: the identity checks are the caller's (see _kit)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile

from ansible_collections.federated.nvflare.plugins.module_utils import _files, _kit, _resources

# The settings of local/resources.json, as the modules that install or compare kits take them.
RESOURCES_OPTIONS = dict(
    data_dir=dict(type="path"),
    max_jobs=dict(type="int"),
    num_of_gpus=dict(type="int"),
    mem_per_gpu_in_GiB=dict(type="float"),
    class_allow_list=dict(type="list", elements="str", default=[]),
)


def resolve(value, lookup, kind):
    if value is None:
        return None
    if str(value).isdigit():
        return int(value)
    try:
        return lookup(value)
    except KeyError:
        raise _kit.KitError(f"unknown {kind} {value!r} on this host: create it before installing the kit") from None


class Plan:
    """What must change in DEST for it to hold KIT."""

    def __init__(self, kit, dest, uid, gid, resources=None):
        self.kit = kit
        # local/resources.json's wanted bytes, or None to leave it alone.
        self.resources = resources
        self.resources_changed = False
        self.dest = dest
        self.uid = uid
        self.gid = gid
        self.exists = os.path.isdir(dest)
        self.added: list[str] = []
        self.modified: list[str] = []
        self.removed: list[str] = []
        self.writes: list[str] = []  # files outside startup/ to (re)write
        self.attr_fixes: list[str] = []  # existing paths whose mode/owner only must change
        self.missing_dirs: list[str] = []  # kit folders dest lacks that no write creates
        self.startup_content_changed = False
        self.before_lines: list[str] = []
        self.after_lines: list[str] = []
        self._compute()

    @property
    def changed(self):
        return bool(self.added or self.modified or self.removed or self.attr_fixes or self.resources_changed)

    def _owner_differs(self, st):
        return (self.uid is not None and st.st_uid != self.uid) or (self.gid is not None and st.st_gid != self.gid)

    def _line(self, rel, data, mode, st=None):
        owner = ""
        if self.uid is not None or self.gid is not None:
            uid = st.st_uid if st is not None else self.uid if self.uid is not None else os.getuid()
            gid = st.st_gid if st is not None else self.gid if self.gid is not None else os.getgid()
            owner = f" owner {uid}:{gid}"
        return f"{rel} sha256:{hashlib.sha256(data).hexdigest()[:16]} mode {mode:04o}{owner}"

    def _compute(self):
        if os.path.lexists(self.dest) and not self.exists:
            raise _kit.KitError(f"dest {self.dest} exists and is not a folder: remove it or choose another dest")
        for rel in sorted(self.kit.files):
            self._compare_file(rel)
        self._compare_startup_leftovers()
        if self.startup_content_changed:
            # startup/ is swapped as a whole: the attribute fixes inside it come with it.
            self.attr_fixes = [r for r in self.attr_fixes if not r.startswith("startup/")]
        self._compare_dirs()
        if self.resources is not None:
            self._compute_resources()

    def _content_changes(self, rel):
        """Record that REL's content changes: startup/ is rebuilt, other files are (re)written."""
        if rel.startswith("startup/"):
            self.startup_content_changed = True
        else:
            self.writes.append(rel)

    def _compare_file(self, rel):
        data = self.kit.files[rel]
        mode = _kit.file_mode(rel)
        want_line = self._line(rel, data, mode)
        path = os.path.join(self.dest, rel)
        st = os.lstat(path) if self.exists and os.path.lexists(path) else None
        if st is None:
            self.added.append(rel)
            self.after_lines.append(want_line)
            self._content_changes(rel)
            return
        if not stat.S_ISREG(st.st_mode):
            if not rel.startswith("startup/"):
                raise _kit.KitError(f"{path} is not a regular file where the kit has one: move it away and run again")
            self.modified.append(rel)
            self.startup_content_changed = True
            self.before_lines.append(f"{rel} (not a regular file)")
            self.after_lines.append(want_line)
            return
        if _kit.install_policy(rel) == "keep":
            return  # The host's own copy wins; it is not the module's to compare.
        with open(path, "rb") as f:
            have = f.read()
        self.before_lines.append(self._line(rel, have, stat.S_IMODE(st.st_mode), st))
        self.after_lines.append(want_line)
        if have != data:
            self.modified.append(rel)
            self._content_changes(rel)
        elif stat.S_IMODE(st.st_mode) != mode or self._owner_differs(st):
            self.modified.append(rel)
            self.attr_fixes.append(rel)

    def _compare_startup_leftovers(self):
        """Files in dest's startup/ that the kit does not have: startup/ is replaced as a whole."""
        startup = os.path.join(self.dest, "startup")
        if self.exists and os.path.isdir(startup) and not os.path.islink(startup):
            for rel, (data, mode) in sorted(_kit.read_tree(startup).items()):
                full = "startup/" + rel
                if full not in self.kit.files:
                    self.removed.append(full)
                    self.startup_content_changed = True
                    self.before_lines.append(self._line(full, data, mode))
        elif self.exists and os.path.lexists(startup):
            self.startup_content_changed = True

    def _compare_dirs(self):
        """Dest and the kit's folders must exist and, when owner/group are set, be owned."""
        if not self.exists:
            return
        for rel in [""] + sorted(self.kit.dirs):
            path = os.path.join(self.dest, rel) if rel else self.dest
            if not os.path.lexists(path):
                if rel and rel != "startup" and not any(w.startswith(rel + "/") for w in self.writes):
                    self.missing_dirs.append(rel + "/")
                continue
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                if rel == "startup":
                    continue
                raise _kit.KitError(f"{path} is not a folder where the kit has one: move it away and run again")
            if self._owner_differs(st) and not (rel == "startup" and self.startup_content_changed):
                self.attr_fixes.append(rel)
                self.modified.append(rel + "/" if rel else "./")
        self.added.extend(self.missing_dirs)

    def _compute_resources(self):
        rel = _resources.RESOURCES
        mode = _resources.RESOURCES_MODE
        path = os.path.join(self.dest, rel)
        want_line = self._line(rel, self.resources, mode)
        self.after_lines.append(want_line)
        if not os.path.lexists(path):
            self.added.append(rel)
            self.resources_changed = True
            return
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _kit.KitError(f"{path} is not a regular file: move it away and run again")
        with open(path, "rb") as f:
            have = f.read()
        self.before_lines.append(self._line(rel, have, stat.S_IMODE(st.st_mode), st))
        if have != self.resources or stat.S_IMODE(st.st_mode) != mode or self._owner_differs(st):
            self.modified.append(rel)
            self.resources_changed = True

    # -- applying --------------------------------------------------------------------------

    def _own(self, path):
        if self.uid is not None or self.gid is not None:
            os.lchown(path, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)

    def _write_file(self, path, rel):
        self._write_bytes(path, self.kit.files[rel], _kit.file_mode(rel))

    def _write_bytes(self, path, data, mode):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        self._own(path)

    def _stage_resources(self, root):
        """local/resources.json into ROOT (a staged tree, or a temporary name); its path."""
        path = os.path.join(root, "resources.json.new")
        self._write_bytes(path, self.resources, _resources.RESOURCES_MODE)
        return path

    def _mkdir(self, path):
        os.mkdir(path, _kit.DIR_MODE)
        os.chmod(path, _kit.DIR_MODE)
        self._own(path)

    def _build_tree(self, root, prefix=""):
        """Write the kit's files and folders under PREFIX ('' = all) into ROOT."""
        for d in sorted(self.kit.dirs):
            if prefix and not (d == prefix or d.startswith(prefix + "/")):
                continue
            self._mkdir(os.path.join(root, d))
        for rel in sorted(self.kit.files):
            if prefix and not rel.startswith(prefix + "/"):
                continue
            self._write_file(os.path.join(root, rel), rel)

    def _makedirs_in_dest(self, rel_dir):
        self._makedirs_in_tree(self.dest, rel_dir)

    def _makedirs_in_tree(self, root, rel_dir):
        parts = rel_dir.split("/") if rel_dir else []
        for i in range(1, len(parts) + 1):
            path = os.path.join(root, *parts[:i])
            if not os.path.isdir(path):
                self._mkdir(path)

    def apply(self):
        dest = self.dest.rstrip("/") or self.dest
        parent = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        stage_parent = parent
        if self.exists and os.stat(dest).st_dev != os.stat(parent).st_dev:
            stage_parent = dest  # dest is a mount point: renames must stay inside it
        stage = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.kit-", dir=stage_parent)
        try:
            if self.exists:
                self._update(stage, dest)
            else:
                self._install_new(stage, dest)
        finally:
            if os.path.lexists(stage):
                shutil.rmtree(stage, ignore_errors=True)

    def _install_new(self, stage, dest):
        """Build the whole kit in STAGE and rename it to DEST."""
        self._build_tree(stage)
        if self.resources_changed:
            tmp = self._stage_resources(stage)
            self._makedirs_in_tree(stage, os.path.dirname(_resources.RESOURCES))
            os.rename(tmp, os.path.join(stage, _resources.RESOURCES))
        os.chmod(stage, _kit.DIR_MODE)
        self._own(stage)
        os.rename(stage, dest)

    def _update(self, stage, dest):
        """Write everything new into STAGE (DEST is not touched yet), then move it in with renames."""
        if self.startup_content_changed:
            self._build_tree(stage, "startup")
        staged = []
        for i, rel in enumerate(self.writes):
            tmp = os.path.join(stage, f"f{i}")
            self._write_file(tmp, rel)
            staged.append((tmp, rel))
        if self.resources_changed:
            staged.append((self._stage_resources(stage), _resources.RESOURCES))
        if self.startup_content_changed:
            _files.replace_dir(os.path.join(stage, "startup"), os.path.join(dest, "startup"), stage)
        for d in sorted(self.kit.dirs):
            self._makedirs_in_dest(d)
        for tmp, rel in staged:
            self._makedirs_in_dest(os.path.dirname(rel))
            os.replace(tmp, os.path.join(dest, rel))
        for rel in self.attr_fixes:
            path = os.path.join(dest, rel) if rel else dest
            if rel in self.kit.files:
                os.chmod(path, _kit.file_mode(rel))
            self._own(path)


def wanted_resources(kit, settings):
    """local/resources.json's bytes for KIT with SETTINGS applied; None when not asked for."""
    if settings is None:
        return None
    default = kit.files.get(_resources.RESOURCES_DEFAULT)
    if default is None:
        raise _kit.KitError(
            f"the kit has no {_resources.RESOURCES_DEFAULT} to write local/resources.json from: "
            "use a kit from NVFlare's provisioning or the dashboard, or leave resources unset"
        )
    try:
        parsed = json.loads(default)
    except ValueError as e:
        raise _kit.KitError(
            f"the kit's {_resources.RESOURCES_DEFAULT} is not valid JSON ({e}): provision the kit again"
        ) from None
    return _resources.render(_resources.local_resources(parsed, **settings))
