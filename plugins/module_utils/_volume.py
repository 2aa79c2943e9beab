# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups of a data directory as a tarball: a Docker named volume or a host directory (BK9).

A database data directory is only consistent when its server is stopped, so both directions
refuse while a running container mounts the directory, unless told otherwise.

Backup: ``tar --numeric-owner -cf - .`` -> a tar header counter -> the db_backup stream
(compression, sha256, store) -> the manifest, written last, with the same fields as a database
backup plus ``files`` (entries and bytes, counted from the tar stream itself).

Restore: the object streams (sha256 and size checked by the db_restore feed) into
``tar -x`` in a new directory beside the target; only when the checksum matched, tar exited 0
and the unpacked tree has the manifest's entry and byte counts is the target renamed aside
(kept as ``<dir>.pre-restore-<stamp>``) and the new directory renamed into its place.

Docker is asked through its CLI (argument lists, no shell): it is installed wherever the engine
is, honours DOCKER_HOST and contexts like the operator's own commands, and two read-only queries
do not justify a Python library on every managed host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import time

from ansible_collections.runbook.ops.plugins.module_utils import _backup as backups
from ansible_collections.runbook.ops.plugins.module_utils import _manifest as manifests
from ansible_collections.runbook.ops.plugins.module_utils import _restore as restores
from ansible_collections.runbook.ops.plugins.module_utils._errors import (
    BackupError, IntegrityError, LockError, ParameterError, RestoreError)
from ansible_collections.runbook.ops.plugins.module_utils._streams import (
    CHUNK_SIZE, ProcessOutput)

ENGINE = "volume"
DUMP_FORMAT = "tar"
TAR_BLOCK = 512
_VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# GNU tar member types that describe the next member instead of being one.
_META_TYPES = frozenset(b"LKxgXV")
# Member types whose payload is file content.
_DATA_TYPES = frozenset(b"07\0")
_TAR_ENV_OVERRIDES = {"LC_ALL": "C"}  # tar's messages end up in ours: keep them in English


# --- what to back up ----------------------------------------------------------------------------

class VolumeSource:
    """A Docker named volume or a host directory, named for the catalog by ``label``."""

    def __init__(self, volume=None, path=None, label=None, docker_cli="docker"):
        if bool(volume) == bool(path):
            raise ParameterError("give exactly one of volume (a Docker named volume) or path (a host directory)%s"
                                 % (", not both" if volume else ""))
        if volume and not _VOLUME_NAME_RE.match(volume):
            raise ParameterError("volume %r is not a Docker volume name (letters, digits, '_', '.', '-')" % volume)
        if path:
            if not os.path.isabs(path):
                raise ParameterError("path must be an absolute directory path, got %r" % path)
            path = os.path.normpath(path)
            if path == "/":
                raise ParameterError("path / cannot be backed up or replaced as a volume")
        self.volume = volume
        self.path = path
        self.docker_cli = docker_cli or "docker"
        name = label or volume or os.path.basename(path)
        self.label = manifests.legacy_label(name)  # the label is the catalog's database name of a volume
        self._directory = path

    @property
    def kind(self):
        return "volume" if self.volume else "path"

    def describe(self):
        return "Docker volume %s" % self.volume if self.volume else self.path

    def directory(self, error_cls):
        """The host directory holding the data (a volume's Mountpoint); ``error_cls`` on failure."""
        if self._directory is None:
            self._directory = os.path.normpath(volume_mountpoint(self.volume, self.docker_cli, error_cls))
        return self._directory

    def running_users(self, error_cls):
        """Names of the running containers that mount this directory, or None when Docker cannot be
        asked (no CLI or no engine), which only a host directory tolerates."""
        try:
            ids = _docker(self.docker_cli, ["ps", "--quiet", "--no-trunc"], error_cls).split()
            if not ids:
                return []
            inspected = json.loads(_docker(self.docker_cli, ["inspect", "--type", "container"] + ids, error_cls))
        except _DockerUnavailable as exc:
            if self.volume:
                raise error_cls("cannot ask Docker about volume %s: %s" % (self.volume, exc)) from None
            return None
        except ValueError as exc:
            raise error_cls("docker inspect returned something that is not JSON: %s" % exc) from None
        return containers_using(inspected, self.directory(error_cls), self.volume)

    def spec(self, service, compression="zstd", compression_level=None, tmp_dir=None):
        """A BackupSpec for the catalog and the stream code of db_backup."""
        return backups.BackupSpec(service, ENGINE, database=self.label, compression=compression,
                                  compression_level=compression_level, tmp_dir=tmp_dir)


class _DockerUnavailable(Exception):
    pass


def _docker(cli, args, error_cls):
    try:
        proc = subprocess.run([cli] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, check=False, timeout=60)
    except FileNotFoundError:
        raise _DockerUnavailable("the docker CLI (%s) is not installed" % cli) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error_cls("docker %s failed: %s" % (args[0], exc)) from None
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip() or "exit %s" % proc.returncode
        if "Cannot connect to the Docker daemon" in message or "error during connect" in message:
            raise _DockerUnavailable(message)
        raise error_cls("docker %s failed: %s" % (" ".join(args[:2]), message))
    return proc.stdout.decode("utf-8", "replace")


def volume_mountpoint(volume, docker_cli, error_cls):
    try:
        out = _docker(docker_cli, ["volume", "inspect", volume], error_cls)
    except _DockerUnavailable as exc:
        raise error_cls("cannot ask Docker about volume %s: %s" % (volume, exc)) from None
    except error_cls as exc:
        if "no such volume" in str(exc).lower():
            raise error_cls("Docker volume %s does not exist" % volume) from None
        raise
    try:
        info = json.loads(out)[0]
    except (ValueError, IndexError, KeyError) as exc:
        raise error_cls("docker volume inspect %s returned no description: %s" % (volume, exc)) from None
    mountpoint = info.get("Mountpoint")
    if not mountpoint or not os.path.isabs(mountpoint):
        raise error_cls("Docker volume %s (driver %s) has no local Mountpoint: only local volumes can be "
                        "copied as a directory" % (volume, info.get("Driver")))
    return mountpoint


def _overlaps(first, second):
    """Whether one of two normalised absolute paths is the other or lies inside it."""
    return first == second or first.startswith(second.rstrip("/") + "/") or second.startswith(first.rstrip("/") + "/")


def containers_using(inspected, directory, volume=None):
    """Names of the containers (``docker inspect`` output) that mount ``volume`` or a path
    overlapping ``directory``, sorted."""
    directory = os.path.normpath(directory)
    names = set()
    for container in inspected:
        for mount in container.get("Mounts") or []:
            source = mount.get("Source") or ""
            if (volume and mount.get("Type") == "volume" and mount.get("Name") == volume) or \
                    (source and _overlaps(os.path.normpath(source), directory)):
                names.add((container.get("Name") or container.get("Id", "?")[:12]).lstrip("/"))
    return sorted(names)


def refuse_running(source, users, action, allow_running):
    """LockError unless no running container uses the source (or the caller accepts that)."""
    if users and not allow_running:
        raise LockError("%s is in use by running container%s %s: a database data directory must be %s with its "
                        "server stopped; stop %s first (or set allow_running: true to accept an inconsistent copy)"
                        % (source.describe(), "s" if len(users) > 1 else "", ", ".join(users), action,
                           "them" if len(users) > 1 else "it"))


# --- counting what a tarball holds ---------------------------------------------------------------

class TarCounter:
    """Passes a tar stream through and counts its members: ``count`` entries (files, directories,
    links, ...; not the archive's root ``./``) and ``bytes`` of file content."""

    def __init__(self, source):
        self._source = source
        self._buffer = bytearray()
        self._skip = 0  # bytes of member data (with padding) before the next header
        self._ended = False
        self.count = 0
        self.bytes = 0
        self.size = 0

    def read(self, size=CHUNK_SIZE):
        data = self._source.read(size)
        if data:
            self.size += len(data)
            self._scan(data)
        return data

    def _scan(self, data):
        view = memoryview(data)
        while view and not self._ended:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = TAR_BLOCK - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) == TAR_BLOCK:
                header, self._buffer = bytes(self._buffer), bytearray()
                self._header(header)

    def _header(self, header):
        if header == b"\0" * TAR_BLOCK:
            self._ended = True  # end-of-archive blocks; what follows is padding
            return
        size = tar_number(header[124:136])
        kind = header[156]
        self._skip = (size + TAR_BLOCK - 1) // TAR_BLOCK * TAR_BLOCK
        if kind in _META_TYPES:
            return
        name = header[:100].split(b"\0", 1)[0]
        if name in (b"./", b"."):  # the archive's root: the directory itself, not an entry in it
            return
        self.count += 1
        if kind in _DATA_TYPES:
            self.bytes += size

    def files(self):
        return {"count": self.count, "bytes": self.bytes}


def tar_number(field):
    """A numeric tar header field: octal text, or GNU base-256 when the high bit is set."""
    if field[0] & 0x80:
        value = field[0] & 0x3F
        for byte in field[1:]:
            value = (value << 8) | byte
        return value
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def tree_files(directory):
    """The ``files`` figure of a directory as tar would count it: every entry below it, and the
    bytes of regular files, each inode once (tar stores further hard links without data)."""
    count, total, seen = 0, 0, set()
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            count += 1
            info = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
        # os.walk does not descend into symlinked directories: neither does tar.
    return {"count": count, "bytes": total}


def tar_version():
    try:
        out = subprocess.run(["tar", "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             check=False, timeout=30).stdout.decode("utf-8", "replace")
    except OSError:
        return None
    return out.splitlines()[0].strip() if out else None


def _tar_env():
    env = dict(os.environ)
    env.update(_TAR_ENV_OVERRIDES)
    return env


# --- backup --------------------------------------------------------------------------------------

def _check_readable_directory(directory, error_cls):
    if not os.path.isdir(directory):
        raise error_cls("%s is not a directory" % directory)
    if not os.access(directory, os.R_OK | os.X_OK):
        raise error_cls("directory %s is not readable" % directory)


def plan_volume_backup(store, source, spec, allow_running=False):
    """Check mode: the checks of a real backup, and the object it would write."""
    directory = source.directory(BackupError)
    _check_readable_directory(directory, BackupError)
    users = source.running_users(BackupError)
    refuse_running(source, users, "copied", allow_running)
    store.check_access(write=True)
    backup_id, key = backups.new_object(spec)
    return {"id": backup_id, "object": key, "location": store.location(key), "directory": directory,
            "running_containers": users or [], "containers_checked": users is not None}


def take_volume_backup(store, source, spec, allow_running=False):
    """tar -> count -> compress -> sha256 -> store, then the manifest; returns the manifest."""
    directory = source.directory(BackupError)
    _check_readable_directory(directory, BackupError)
    users = source.running_users(BackupError)
    refuse_running(source, users, "copied", allow_running)
    started = manifests.utcnow()
    clock = time.monotonic()
    backup_id, key = backups.new_object(spec, started)
    tar = ProcessOutput(["tar", "--numeric-owner", "-C", directory, "-cf", "-", "."], _tar_env(), BackupError,
                        "tar of %s" % directory)
    counter = TarCounter(tar)
    size, sha256 = backups.stream_process_to_store(store, key, tar, spec, reader=counter)
    stored = {"size": size, "sha256": sha256, "raw_size": counter.size, "row_counts": {},
              "server_version": _docker_version(source.docker_cli) if source.volume else None,
              "tool_versions": {"tar": tar_version()}}
    manifest = backups.write_manifest(
        store, spec, backup_id, key, stored, started, clock, "runbook.ops.volume_backup",
        extra={"files": counter.files(), "source": {"kind": source.kind, "volume": source.volume, "directory": directory},
               "running_containers": users or [], "containers_checked": users is not None})
    manifest["location"] = store.location(key)
    manifest["directory"] = directory
    return manifest


def _docker_version(cli):
    try:
        return _docker(cli, ["version", "--format", "{{.Server.Version}}"], BackupError).strip() or None
    except (_DockerUnavailable, BackupError):
        return None


# --- restore -------------------------------------------------------------------------------------

def previous_name(target, now=None):
    """Where the replaced directory is kept: ``<dir>.pre-restore-<stamp>``, unique."""
    name = "%s.pre-restore-%s" % (target, (now or manifests.utcnow()).strftime(manifests.STAMP_FORMAT))
    return name if not os.path.lexists(name) else "%s-%s" % (name, secrets.token_hex(3))


def _is_empty(directory):
    with os.scandir(directory) as entries:
        return next(entries, None) is None


def _check_target(target):
    """Whether the target exists; RestoreError when it cannot be swapped by renames."""
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise RestoreError("directory %s of the restore target does not exist" % parent)
    if not os.path.lexists(target):
        return False
    if os.path.islink(target) or not os.path.isdir(target):
        raise RestoreError("restore target %s is not a directory" % target)
    if os.path.ismount(target):
        raise RestoreError("restore target %s is a mount point: it cannot be swapped by a rename; restore into "
                           "the directory that holds the data inside it" % target)
    return True


def unpack(store, manifest, directory):
    """Stream a checked backup into ``tar -x`` in a new private directory inside ``directory``
    and compare the tree with the manifest's ``files``; returns the new directory's path and
    its ``files`` figure.
    Nothing outside the new directory is touched; it is removed on any failure."""
    workdir = os.path.join(directory, ".rbops-restore-%s" % secrets.token_hex(4))
    os.mkdir(workdir, 0o700)
    try:
        restores.pipe_into(
            ["tar", "-xpf", "-", "--numeric-owner", "--same-owner", "-C", workdir], _tar_env(), store, manifest, 0,
            "tar -x of backup %s" % manifest["id"])
        expected = manifest.get("files")
        actual = tree_files(workdir)
        if expected is not None and actual != expected:
            raise IntegrityError("backup %s unpacked to %d entries and %d bytes but its manifest says %d entries and "
                                 "%d bytes: refusing it" % (manifest["id"], actual["count"], actual["bytes"],
                                                            expected["count"], expected["bytes"]))
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return workdir, actual


def restore_volume(store, source, spec, backup_id=None, force=False, keep_previous=True, allow_running=False,
                   verify_only=False, check_mode=False):
    """The volume_restore flow; returns what was (or would be) done."""
    target = source.directory(RestoreError)
    entry, manifest = backups.resolve_backup(store, spec, backup_id)
    if manifest["engine"] != ENGINE:
        raise RestoreError("backup %s is a %s backup, not a volume tarball" % (entry.backup_id, manifest["engine"]))
    exists = _check_target(target)
    users = [] if verify_only else source.running_users(RestoreError)
    result = {"backup": restores.summary(store, manifest), "target": target, "previous": None, "verified": False,
              "running_containers": users or [], "containers_checked": users is not None}
    if not verify_only:
        refuse_running(source, users, "replaced", allow_running)
        if exists and not _is_empty(target) and not force:
            where = "%s (%s)" % (source.describe(), target) if source.volume else target
            raise RestoreError("%s is not empty: refusing to restore over it; set force: true to replace it with "
                               "backup %s (the current directory is kept beside it)" % (where, entry.backup_id))
        if exists and keep_previous:
            result["previous"] = previous_name(target)
    if check_mode:
        return result
    clock = time.monotonic()
    workdir, actual = unpack(store, manifest, os.path.dirname(target))
    result["files"] = actual
    result["verified"] = True
    if verify_only:
        shutil.rmtree(workdir, ignore_errors=True)
        result["duration_seconds"] = round(time.monotonic() - clock, 3)
        return result
    try:
        result["previous"] = swap_in(workdir, target, exists, result["previous"])
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    result["duration_seconds"] = round(time.monotonic() - clock, 3)
    return result


def swap_in(workdir, target, exists, previous):
    """Rename ``target`` aside (to ``previous``, or delete it when None) and ``workdir`` into
    its place; returns where the old directory is kept, if anywhere."""
    aside = previous or "%s.rbops-replaced-%s" % (target, secrets.token_hex(4))
    try:
        if exists:
            os.rename(target, aside)
        try:
            os.rename(workdir, target)
        except OSError:
            if exists:
                os.rename(aside, target)  # put the original back: the target must never be missing
            raise
    except OSError as exc:
        raise RestoreError("cannot swap the restored directory into %s: %s; it was left as it was"
                           % (target, exc.strerror or exc)) from None
    if exists and previous is None:
        shutil.rmtree(aside, ignore_errors=True)
    return previous if exists else None
