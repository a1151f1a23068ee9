#!/usr/bin/python
# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: state_archive
short_description: Archive the state folders of a federation and put them back
version_added: 0.3.0
author:
  - federated.nvflare contributors (@federated-nvflare)
description:
  - With O(state=archived), writes O(paths) (folders) into one gzip-compressed tar file, mode 0600.
    SQLite databases in them are copied with SQLite's online backup, so a database in use (the
    dashboard's) is archived consistently; their C(-wal), C(-shm) and C(-journal) files are left out.
  - With O(state=restored), puts the folders of such an archive back at O(paths), which may differ
    from where they were archived (another host, another checkout on the controller). A folder
    that is missing or holds no file is filled; one restored from the same archive before is left
    alone (a marker file, C(.nvflare-restored), names the archive's SHA-256); one holding other data
    stops the module unless O(force), which moves it aside first.
  - C(playbooks/backup.yml) and C(playbooks/restore.yml) use it for the provisioning workspace (the
    project's root CA), the dashboard's database and secrets, and the server's job store.
  - Needs only Python's standard library. Never prints what the files contain.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what it would archive or restore and writes nothing.
  diff_mode:
    support: none
  idempotent:
    description:
      - V(restored) is idempotent. V(archived) writes a new archive on every run, as a backup does.
    support: partial
  platform:
    platforms: posix
options:
  state:
    description: V(archived) writes O(archive) from O(paths); V(restored) puts O(archive) back at O(paths).
    type: str
    choices: [archived, restored]
    required: true
  paths:
    description:
      - The folders, as absolute paths, in a fixed order - a restore maps the archive's folders to
        these by position, so it needs as many as were archived.
      - V(archived) records a missing folder as missing (nothing is restored for it).
    type: list
    elements: path
    required: true
  archive:
    description: The archive written (O(state=archived)) or read (O(state=restored)).
    type: path
    required: true
  force:
    description:
      - With O(state=restored), move a folder that holds other data aside to
        C(<folder>.replaced-<UTC time>) and restore in its place, instead of failing.
    type: bool
    default: false
notes:
  - On restore, files get the owner and group names they had when archived where those exist on
    the host, else the user running the module; the roles give their folders back to their service
    users on the next deployment.
  - An archive holds regular files, folders and symbolic links that stay inside their folder.
"""

EXAMPLES = r"""
- name: Archive the server's job store
  federated.nvflare.state_archive:
    state: archived
    paths: [/var/lib/nvflare/server1-data]
    archive: /var/tmp/nvflare-backup/server.tar.gz

- name: Put it back on a new host
  federated.nvflare.state_archive:
    state: restored
    paths: [/var/lib/nvflare/server1-data]
    archive: /var/tmp/nvflare-restore/server.tar.gz
"""

RETURN = r"""
sha256:
  description: The archive's SHA-256 (after writing it, or as read). Not returned by V(archived) in check mode.
  returned: success
  type: str
files:
  description: How many regular files the archive holds (or would hold).
  returned: success
  type: int
folders:
  description: One entry per O(paths) element.
  returned: success
  type: list
  elements: dict
  contains:
    path:
      description: The folder.
      type: str
    state:
      description:
        - V(archived) - V(archived) or V(missing) (not on the host).
        - V(restored) - V(restored), V(current) (already restored from this archive), V(replaced)
          (the old content moved aside, O(force)) or V(missing) (not in the archive).
      type: str
    moved_to:
      description: Where the old content went (V(replaced) only).
      type: str
"""

import grp
import hashlib
import io
import json
import os
import posixpath
import pwd
import shutil
import sqlite3
import tarfile
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

MANIFEST = "nvflare-archive.json"
MARKER = ".nvflare-restored"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class ArchiveError(Exception):
    """A problem the user has to fix, in words."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_sqlite(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _walk(root):
    """(relative path, absolute path) of everything under ROOT, folders before their content."""
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        rel_dir = os.path.relpath(current, root)
        for name in sorted(dirs) + sorted(files):
            full = os.path.join(current, name)
            yield (name if rel_dir == "." else os.path.join(rel_dir, name)), full


def _sqlite_copy(source, scratch):
    """A consistent copy of the SQLite database SOURCE (online backup), in SCRATCH."""
    fd, copy = tempfile.mkstemp(dir=scratch, suffix=".sqlite")
    os.close(fd)
    src = sqlite3.connect("file:" + source + "?mode=ro", uri=True)
    dst = sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return copy


def plan_archive(paths):
    """What archiving PATHS would write: the members (name, absolute path, kind) and the folders."""
    members, folders = [], []
    for index, root in enumerate(paths):
        if not os.path.exists(root):
            folders.append({"path": root, "state": "missing"})
            continue
        if not os.path.isdir(root) or os.path.islink(root):
            raise ArchiveError(f"{root} is not a folder: only folders are archived")
        folders.append({"path": root, "state": "archived"})
        members.append((str(index), root, "dir"))
        entries = list(_walk(root))
        databases = {full for _rel, full in entries if os.path.isfile(full) and is_sqlite(full)}
        for rel, full in entries:
            if rel == MARKER:
                continue
            name = f"{index}/{rel}"
            if os.path.islink(full):
                members.append((name, full, "link"))
            elif os.path.isdir(full):
                members.append((name, full, "dir"))
            elif os.path.isfile(full):
                if any(full.endswith(side) and full[: -len(side)] in databases for side in SQLITE_SIDE_FILES):
                    continue
                members.append((name, full, "sqlite" if full in databases else "file"))
            # sockets, fifos and devices are not state
    return members, folders


def write_archive(paths, archive, members):
    target_dir = os.path.dirname(archive) or "."
    if not os.path.isdir(target_dir):
        raise ArchiveError(f"the folder of {archive} does not exist")
    fd, partial = tempfile.mkstemp(dir=target_dir, prefix=".state-archive-", suffix=".partial")
    os.fchmod(fd, 0o600)
    scratch = tempfile.mkdtemp(prefix="state-archive-")
    files = 0
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            manifest = {
                "format": 1,
                "paths": list(paths),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
            for name, full, kind in members:
                if kind == "sqlite":
                    copy = _sqlite_copy(full, scratch)
                    info = tar.gettarinfo(full, arcname=name)
                    info.size = os.path.getsize(copy)
                    with open(copy, "rb") as handle:
                        tar.addfile(info, handle)
                    os.unlink(copy)
                    files += 1
                else:
                    tar.add(full, arcname=name, recursive=False)
                    files += kind == "file"
        os.replace(partial, archive)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return files


def _safe_members(tar, count):
    """The archive's members by folder index, refusing anything that would land outside its folder."""
    by_index = {}
    for member in tar.getmembers():
        if member.name == MANIFEST:
            continue
        name = member.name
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or not parts[0].isdigit() or int(parts[0]) >= count:
            raise ArchiveError(f"the archive holds {name!r}, outside the folders it names: not restoring it")
        if member.issym():
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            if member.linkname.startswith("/") or target.split("/")[0] != parts[0] or target == parts[0]:
                raise ArchiveError(f"the archive's link {name!r} points outside its folder: not restoring it")
        elif not (member.isdir() or member.isfile()):
            raise ArchiveError(f"the archive holds {name!r}, neither a file, a folder nor a link: not restoring it")
        by_index.setdefault(int(parts[0]), []).append(member)
    return by_index


def _holds_files(root):
    for current, dirs, files in os.walk(root):
        if files or any(os.path.islink(os.path.join(current, d)) for d in dirs):
            return True
    return False


def folder_state(root, digest):
    """current (restored from this archive), empty (missing or no file in it) or occupied."""
    marker = os.path.join(root, MARKER)
    try:
        with open(marker, encoding="utf-8") as handle:
            if handle.read().strip() == digest:
                return "current"
    except OSError:
        pass
    if not os.path.exists(root) or (os.path.isdir(root) and not _holds_files(root)):
        return "empty"
    return "occupied"


def _owner(member):
    uid = gid = -1
    try:
        uid = pwd.getpwnam(member.uname).pw_uid if member.uname else -1
    except KeyError:
        pass
    try:
        gid = grp.getgrnam(member.gname).gr_gid if member.gname else -1
    except KeyError:
        pass
    return uid, gid


def extract_folder(tar, members, index, root):
    """Write the members of folder INDEX under ROOT; returns the number of files."""
    files = 0
    as_root = os.geteuid() == 0
    folders = []
    for member in members:
        rel = member.name[len(str(index)) :].lstrip("/")
        target = os.path.join(root, rel) if rel else root
        if member.isdir():
            os.makedirs(target, exist_ok=True)
            folders.append((target, member))
        elif member.issym():
            if os.path.lexists(target):
                os.unlink(target)
            os.symlink(member.linkname, target)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            partial = target + ".restoring"
            source = tar.extractfile(member)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                shutil.copyfileobj(source, handle)
            os.chmod(partial, member.mode & 0o7777)
            os.utime(partial, (member.mtime, member.mtime))
            if as_root:
                os.chown(partial, *_owner(member))
            os.replace(partial, target)
            files += 1
    # Folders last: their modes may forbid writing into them.
    for target, member in reversed(folders):
        if as_root:
            os.chown(target, *_owner(member))
        os.chmod(target, member.mode & 0o7777)
    return files


def archive_main(module, paths, archive):
    members, folders = plan_archive(paths)
    files = sum(kind in ("file", "sqlite") for _name, _full, kind in members)
    if module.check_mode:
        module.exit_json(changed=True, files=files, folders=folders)
    files = write_archive(paths, archive, members)
    module.exit_json(changed=True, files=files, folders=folders, sha256=sha256_of(archive))


def restore_main(module, paths, archive, force):
    if not os.path.isfile(archive):
        raise ArchiveError(f"no archive at {archive}")
    digest = sha256_of(archive)
    try:
        tar = tarfile.open(archive, mode="r:gz")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{archive} is not a readable archive: {exc}") from exc
    with tar:
        try:
            manifest = json.load(tar.extractfile(MANIFEST))
        except (KeyError, ValueError, TypeError) as exc:
            raise ArchiveError(f"{archive} was not written by state_archive (no {MANIFEST} in it)") from exc
        if len(manifest.get("paths", [])) != len(paths):
            raise ArchiveError(
                f"{archive} holds {len(manifest.get('paths', []))} folder(s) "
                f"({', '.join(manifest.get('paths', []))}); {len(paths)} were given to restore them to"
            )
        by_index = _safe_members(tar, len(paths))
        files = sum(m.isfile() for ms in by_index.values() for m in ms)
        folders = [{"path": root, "state": "missing"} for root in paths]
        todo, occupied = [], []
        for index, root in enumerate(paths):
            if index not in by_index:
                continue
            state = folder_state(root, digest)
            if state == "current":
                folders[index]["state"] = "current"
                continue
            if state == "occupied":
                occupied.append(root)
            todo.append((index, root, state))
        if occupied and not force:
            raise ArchiveError(
                f"{', '.join(occupied)} already hold(s) data that does not come from this backup: "
                "not overwriting it. Move it away yourself, or restore with force "
                "(playbooks/restore.yml: -e nvflare_restore_force=true), which moves it aside"
            )
        if not todo or module.check_mode:
            for index, _root, state in todo:
                folders[index]["state"] = "replaced" if state == "occupied" else "restored"
            module.exit_json(changed=bool(todo), sha256=digest, files=files, folders=folders)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for index, root, state in todo:
            entry = folders[index]
            entry["state"] = "restored"
            if state == "occupied":
                aside = f"{root}.replaced-{stamp}"
                try:
                    os.rename(root, aside)
                except OSError as exc:
                    raise ArchiveError(f"cannot move {root} aside to {aside}: {exc}") from exc
                entry.update(state="replaced", moved_to=aside)
            extract_folder(tar, by_index[index], index, root)
            marker = os.path.join(root, MARKER)
            with open(marker, "w", encoding="utf-8") as handle:
                handle.write(digest + "\n")
            os.chmod(marker, 0o600)
    module.exit_json(changed=True, sha256=digest, files=files, folders=folders)


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["archived", "restored"], "required": True},
            "paths": {"type": "list", "elements": "path", "required": True},
            "archive": {"type": "path", "required": True},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    paths = [os.path.normpath(path) for path in p["paths"]]
    relative = [path for path in paths if not os.path.isabs(path)]
    if relative or not paths:
        module.fail_json(msg=f"paths must be absolute folders (found: {relative or 'none'})")
    if len(set(paths)) != len(paths):
        module.fail_json(msg="paths must be distinct")
    try:
        if p["state"] == "archived":
            archive_main(module, paths, p["archive"])
        else:
            restore_main(module, paths, p["archive"], p["force"])
    except ArchiveError as exc:
        module.fail_json(msg=str(exc))
    except (OSError, sqlite3.Error, tarfile.TarError) as exc:
        module.fail_json(msg=f"{p['state']} {p['archive']}: {exc}")


if __name__ == "__main__":
    main()
