# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups of a data directory as a tarball: a Docker named volume or a host directory (BK9).

A volume of a Compose project is found by the labels Compose puts on it
(com.docker.compose.project and com.docker.compose.volume), whatever name Compose gave it.

A database data directory is only consistent when its server is stopped, so both directions
refuse while a running container mounts the directory. A backup may be told to copy anyway
(allow_running), or to stop those containers for the copy and start them again (stop_containers).
A restore never swaps a directory under a running container, which would keep
the directory it was started with: it stops those containers for the swap and starts them again
(stop_containers), or refuses.

Backup: ``tar --numeric-owner -cf - .`` -> a tar header counter -> the db_backup stream
(compression, sha256, store) -> the manifest, written last, with the same fields as a database
backup plus ``files`` (entries and bytes, counted from the tar stream itself).

Restore: the object streams (sha256 and size checked by the db_restore feed) into
``tar -x`` in a new directory beside the target; only when the checksum matched, tar exited 0
and the unpacked tree has the manifest's entry and byte counts is the target renamed aside
(kept as ``<dir>.pre-restore-<stamp>``) and the new directory renamed into its place.
Sparse files travel as data and a hole map (``tar --sparse``); Unix sockets are left out by tar
and named in a warning.

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
import signal
import stat
import subprocess
import time

from ansible_collections.runbook.ops.plugins.module_utils import _backup as backups
from ansible_collections.runbook.ops.plugins.module_utils import _manifest as manifests
from ansible_collections.runbook.ops.plugins.module_utils import _restore as restores
from ansible_collections.runbook.ops.plugins.module_utils._errors import (
    BackupError, IntegrityError, LockError, ParameterError, RestoreError, RunbookError)
from ansible_collections.runbook.ops.plugins.module_utils._files import sweep_stale
from ansible_collections.runbook.ops.plugins.module_utils._streams import (
    CHUNK_SIZE, ProcessOutput, exit_status)

ENGINE = "volume"
DUMP_FORMAT = "tar"
TAR_BLOCK = 512
_VOLUME_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # always with fullmatch: "$" accepts a trailing "\n"
_COMPOSE_PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")  # Compose's rule for project names
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_VOLUME_LABEL = "com.docker.compose.volume"
# GNU tar member types that describe the next member instead of being one.
_META_TYPES = frozenset(b"LKxgXV")
# Member types whose payload is file content.
_DATA_TYPES = frozenset(b"07\0")
# An old-GNU sparse member (tar --sparse): its size field is the data stored, its real size is
# at 483; a set byte at 482 means extension blocks of the sparse map follow the header (each with
# its own flag at 504) before the data.
_SPARSE_TYPE = ord("S")
_TAR_ENV_OVERRIDES = {"LC_ALL": "C"}  # tar's messages end up in ours: keep them in English


# --- what to back up ----------------------------------------------------------------------------

class VolumeSource:
    """A Docker named volume or a host directory, named for the catalog by ``label``."""

    def __init__(self, volume=None, path=None, label=None, docker_cli="docker", compose_project=None):
        if compose_project is not None:
            if not _COMPOSE_PROJECT_RE.fullmatch(compose_project):
                raise ParameterError("compose_project %r is not a Compose project name (lowercase letters, digits, '_' "
                                     "and '-', starting with a letter or digit)" % compose_project)
            if not volume or path:
                raise ParameterError("compose_project needs volume (the volume's name in the Compose file) and no path")
        if bool(volume) == bool(path):
            raise ParameterError("give exactly one of volume (a Docker named volume) or path (a host directory)%s"
                                 % (", not both" if volume else ""))
        if volume and not _VOLUME_NAME_RE.fullmatch(volume):
            raise ParameterError("volume %r is not a Docker volume name (letters, digits, '_', '.', '-')" % volume)
        if path:
            if not os.path.isabs(path):
                raise ParameterError("path must be an absolute directory path, got %r" % path)
            path = os.path.normpath(path)
            if path == "/":
                raise ParameterError("path / cannot be backed up or replaced as a volume")
        self.compose_project = compose_project
        self.compose_volume = volume if compose_project else None
        self.volume = None if compose_project else volume  # a Compose volume's Docker name is looked up
        self.path = path
        self.docker_cli = docker_cli or "docker"
        name = label or ("%s_%s" % (compose_project, volume) if compose_project else volume) or os.path.basename(path)
        self.label = manifests.legacy_label(name)  # the label is the catalog's database name of a volume
        self._directory = path

    @property
    def kind(self):
        return "path" if self.path else "volume"

    def describe(self):
        if self.compose_project:
            return "volume %s of Compose project %s%s" % (self.compose_volume, self.compose_project,
                                                          " (Docker volume %s)" % self.volume if self.volume else "")
        return "Docker volume %s" % self.volume if self.volume else self.path

    def resolve(self, error_cls):
        """The Docker name of a Compose project's volume, found by its labels; error_cls unless exactly one."""
        if self.volume or not self.compose_project:
            return self.volume
        try:
            names = _docker(self.docker_cli, ["volume", "ls", "--quiet",
                                              "--filter", "label=%s=%s" % (COMPOSE_PROJECT_LABEL, self.compose_project),
                                              "--filter", "label=%s=%s" % (COMPOSE_VOLUME_LABEL, self.compose_volume)],
                            error_cls).split()
        except _DockerUnavailable as exc:
            raise error_cls("cannot ask Docker about %s: %s" % (self.describe(), exc)) from None
        if not names:
            raise error_cls("Compose project %s has no volume %s (no Docker volume labelled %s=%s and %s=%s): is the "
                            "project up, and is %s a volume of its Compose file?"
                            % (self.compose_project, self.compose_volume, COMPOSE_PROJECT_LABEL, self.compose_project,
                               COMPOSE_VOLUME_LABEL, self.compose_volume, self.compose_volume))
        if len(names) > 1:
            raise error_cls("%d Docker volumes are labelled as volume %s of Compose project %s (%s): give the one "
                            "meant as volume, without compose_project" % (len(names), self.compose_volume,
                                                                          self.compose_project, ", ".join(sorted(names))))
        self.volume = names[0]
        return self.volume

    def directory(self, error_cls):
        """The host directory holding the data (a volume's Mountpoint); ``error_cls`` on failure."""
        if self._directory is None:
            self._directory = os.path.normpath(volume_mountpoint(self.resolve(error_cls), self.docker_cli, error_cls))
        return self._directory

    def running_users(self, error_cls):
        """Names of the running containers that mount this directory, or None when Docker cannot be
        asked (no CLI or no engine), which only a host directory tolerates."""
        found = self.running_containers(error_cls)
        return None if found is None else sorted({container["name"] for container in found})

    def running_containers(self, error_cls):
        """The running containers that mount this directory ({name, id, auto_remove}, by name), or
        None when Docker cannot be asked."""
        try:
            inspected = self._inspect_running(error_cls)
        except _DockerUnavailable as exc:
            if not self.path:
                raise error_cls("cannot ask Docker about volume %s: %s" % (self.volume, exc)) from None
            return None
        except ValueError as exc:
            raise error_cls("docker inspect returned something that is not JSON: %s" % exc) from None
        return matching_containers(inspected, self.directory(error_cls), self.volume)

    def _inspect_running(self, error_cls, attempts=3):
        """``docker inspect`` of every running container.  A container that goes away between ``docker ps``
        and ``docker inspect`` (a busy engine) makes inspect fail: ask again."""
        for attempt in range(attempts):
            ids = _docker(self.docker_cli, ["ps", "--quiet", "--no-trunc"], error_cls).split()
            if not ids:
                return []
            try:
                return json.loads(_docker(self.docker_cli, ["inspect", "--type", "container"] + ids, error_cls))
            except error_cls as exc:
                if "no such container" not in str(exc).lower() or attempt == attempts - 1:
                    raise
        return []

    def spec(self, service, compression="zstd", compression_level=None, tmp_dir=None):
        """A VolumeSpec for the catalog and the stream code of db_backup."""
        return VolumeSpec(service, database=self.label, compression=compression,
                          compression_level=compression_level, tmp_dir=tmp_dir)


class VolumeSpec(backups.BackupSpec):
    """A BackupSpec of a volume: its label is the catalog's database name, its format a tar stream."""

    own_format = "tar"

    def __init__(self, service, database=None, compression="zstd", compression_level=None, tmp_dir=None):
        super().__init__(service, ENGINE, database=database, compression=compression,
                         compression_level=compression_level, tmp_dir=tmp_dir)

    def database_name(self, database, path):
        if not database:
            raise ParameterError("a volume backup needs a label")
        return database


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
        message = proc.stderr.decode("utf-8", "replace").strip() or exit_status(proc.returncode)
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


def matching_containers(inspected, directory, volume=None):
    """The containers (``docker inspect`` output) that mount ``volume`` or a path overlapping
    ``directory``, as {name, id, auto_remove} sorted by name."""
    directory = os.path.normpath(directory)
    found = {}
    for container in inspected:
        for mount in container.get("Mounts") or []:
            source = mount.get("Source") or ""
            if (volume and mount.get("Type") == "volume" and mount.get("Name") == volume) or \
                    (source and _overlaps(os.path.normpath(source), directory)):
                ident = container.get("Id") or "?"
                found[ident] = {"name": (container.get("Name") or ident[:12]).lstrip("/"), "id": ident,
                                "auto_remove": bool((container.get("HostConfig") or {}).get("AutoRemove"))}
    return sorted(found.values(), key=lambda container: container["name"])


def containers_using(inspected, directory, volume=None):
    """Names of the containers (``docker inspect`` output) that mount ``volume`` or a path
    overlapping ``directory``, sorted."""
    return sorted({container["name"] for container in matching_containers(inspected, directory, volume)})


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
        self._extensions = False  # sparse map extension blocks follow before the data
        self._pending_skip = 0  # the data to skip once the extension blocks are read
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
                if self._extensions:
                    self._extension(header)
                else:
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
        elif kind == _SPARSE_TYPE:
            self.bytes += tar_number(header[483:495])
            if header[482]:
                self._extensions, self._pending_skip, self._skip = True, self._skip, 0

    def _extension(self, block):
        """A sparse map extension block: another follows while its byte 504 is set."""
        if not block[504]:
            self._extensions, self._skip, self._pending_skip = False, self._pending_skip, 0

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


def unix_sockets(directory, limit=1000):
    """Relative paths of the Unix sockets below ``directory`` (tar leaves them out: a socket is
    created by the process that listens on it, not restored), at most ``limit``."""
    found = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    found.append(os.path.relpath(path, directory))
            except FileNotFoundError:
                continue
            if len(found) >= limit:
                return sorted(found)
    return sorted(found)


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


def _containers_to_stop(source, allow_running, stop_containers):
    """The running containers a backup stops (stop_containers) or the names it copies under (allow_running);
    LockError when it may do neither.  Returns (containers to stop, user names, whether Docker was asked)."""
    if allow_running and stop_containers:
        raise ParameterError("allow_running and stop_containers exclude each other: copy live, or stop the containers")
    containers = source.running_containers(BackupError)
    users = None if containers is None else sorted({container["name"] for container in containers})
    if stop_containers and containers:
        refuse_auto_removed(containers, "backing up")
        return containers, users, True
    refuse_running(source, users, "copied", allow_running)
    return [], users, users is not None


def plan_volume_backup(store, source, spec, allow_running=False, stop_containers=False):
    """Check mode: the checks of a real backup, and the object it would write."""
    directory = source.directory(BackupError)
    _check_readable_directory(directory, BackupError)
    to_stop, users, checked = _containers_to_stop(source, allow_running, stop_containers)
    store.check_access(write=True)
    backup_id, key = backups.new_object(spec)
    stopping = [container["name"] for container in to_stop]
    return {"id": backup_id, "object": key, "location": store.location(key), "directory": directory,
            "volume": source.volume, "running_containers": [] if stopping else users or [], "containers_checked": checked,
            "stopped_containers": stopping, "started_containers": stopping, "skipped_sockets": unix_sockets(directory)}


def take_volume_backup(store, source, spec, allow_running=False, stop_containers=False, stop_timeout=30):
    """tar -> count -> compress -> sha256 -> store, then the manifest; returns the manifest.

    stop_containers: the running containers that mount the directory are stopped (``docker stop``) for
    the copy and started again afterwards, whatever happens; the manifest names them."""
    if stop_timeout is None or stop_timeout < 0:
        raise ParameterError("stop_timeout must be 0 or more seconds, got %s" % stop_timeout)
    directory = source.directory(BackupError)
    _check_readable_directory(directory, BackupError)
    to_stop, users, checked = _containers_to_stop(source, allow_running, stop_containers)
    with StoppedContainers(source.docker_cli, to_stop, stop_timeout, error_cls=BackupError,
                           undone="nothing was backed up") as paused:
        if to_stop:
            # One started meanwhile (or brought back by a restart policy) would write during the copy.
            again = source.running_containers(BackupError)
            if again:
                raise BackupError("container%s %s started using %s while the others were stopped for the copy; nothing "
                                  "was backed up" % ("s" if len(again) > 1 else "", ", ".join(c["name"] for c in again),
                                                     source.describe()))
        manifest = _copy_volume(store, source, spec, directory, [] if to_stop else users, checked,
                                [container["name"] for container in to_stop])
    manifest.update(paused.result())
    if paused.start_failures:
        raise BackupError("backed up %s as %s, but %s" % (source.describe(), manifest["id"], paused.describe()),
                          changed=True, backup=manifest, **paused.result())
    return manifest


def _copy_volume(store, source, spec, directory, users, checked, stopped):
    started = manifests.utcnow()
    clock = time.monotonic()
    backup_id, key = backups.new_object(spec, started)
    sockets = unix_sockets(directory)
    # --sparse: holes are found with SEEK_HOLE and stored as a map, not read as zeros, and come
    # back as holes (a 1 GiB sparse file is a few KiB of tarball and stays sparse when restored).
    tar = ProcessOutput(["tar", "--sparse", "--numeric-owner", "-C", directory, "-cf", "-", "."], _tar_env(),
                        BackupError, "tar of %s" % directory)
    counter = TarCounter(tar)
    size, sha256 = backups.stream_process_to_store(store, key, tar, spec, reader=counter)
    stored = {"size": size, "sha256": sha256, "raw_size": counter.size, "row_counts": {},
              "server_version": _docker_version(source.docker_cli) if source.volume else None,
              "tool_versions": {"tar": tar_version()}}
    manifest = backups.write_manifest(
        store, spec, backup_id, key, stored, started, clock, "runbook.ops.volume_backup",
        extra={"files": counter.files(), "source": {"kind": source.kind, "volume": source.volume, "directory": directory,
                                                    "compose_project": source.compose_project,
                                                    "compose_volume": source.compose_volume},
               "running_containers": users or [], "containers_checked": checked, "stopped_containers": stopped,
               "skipped_sockets": sockets})
    manifest["location"] = store.location(key)
    manifest["directory"] = directory
    manifest["volume"] = source.volume
    return manifest


def _docker_version(cli):
    try:
        return _docker(cli, ["version", "--format", "{{.Server.Version}}"], BackupError).strip() or None
    except (_DockerUnavailable, BackupError):
        return None


# --- restore -------------------------------------------------------------------------------------

# Work directories of a restore beside the target: the unpacked backup before the swap, and the
# replaced directory while it is deleted (keep_previous: false). A run that ends normally, fails
# or gets SIGTERM removes its own; what a SIGKILL or a power cut leaves is swept by a later
# restore into the same directory once older than this (a restore still running is younger).
WORKDIR_RE = re.compile(r"\.rbops-(restore|replaced)-[0-9a-f]{8}")
STALE_WORKDIR_SECONDS = 24 * 3600


def _workdir(parent, kind):
    return os.path.join(parent, ".rbops-%s-%s" % (kind, secrets.token_hex(4)))


def sweep_workdirs(parent, older_than_seconds=STALE_WORKDIR_SECONDS, now=None):
    """Remove the restore work directories of our own naming in ``parent`` older than the limit;
    returns their paths."""
    return sweep_stale(parent, lambda name, info: bool(WORKDIR_RE.fullmatch(name)) and stat.S_ISDIR(info.st_mode),
                       older_than_seconds, now)


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
    Nothing outside the new directory is touched; it is removed on any failure or interruption."""
    workdir = _workdir(directory, "restore")
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


def refuse_running_restore(source, containers, stop_containers):
    """LockError while running containers use the restore target and may not be stopped: a
    container's mount keeps the directory it was started with, so a directory swapped in by
    renames is not what it sees (and writes to) until it starts again."""
    if not containers:
        return
    names = ", ".join(container["name"] for container in containers)
    plural, them = ("s", "them") if len(containers) > 1 else ("", "it")
    if not stop_containers:
        raise LockError("%s is in use by running container%s %s: a running container keeps the directory it "
                        "was started with, so it would not see the restored data; stop %s first, or set "
                        "stop_containers: true to stop %s and start %s again around the swap"
                        % (source.describe(), plural, names, them, them, them))
    refuse_auto_removed(containers, "restore")


def refuse_auto_removed(containers, then):
    """LockError when one of the containers to stop was started with --rm: docker stop would remove it."""
    removed = [container["name"] for container in containers if container["auto_remove"]]
    if removed:
        plural, them = ("s", "them") if len(removed) > 1 else ("", "it")
        raise LockError("container%s %s (started with --rm) would be removed by docker stop and could not be "
                        "started again: stop %s yourself, then %s" % (plural, ", ".join(removed), them, then))


def _refuse_newly_running(source, containers):
    if containers:
        raise RestoreError("container%s %s started using %s while the others were stopped for the swap; nothing "
                           "was restored" % ("s" if len(containers) > 1 else "",
                                             ", ".join(container["name"] for container in containers),
                                             source.describe()))


class StoppedContainers:
    """``docker stop`` the given containers for a ``with`` block and ``docker start`` them again
    on the way out, whatever happens inside. ``stopped``, ``started`` and ``start_failures``
    ({name: message}) say what was done.

    SIGTERM and SIGINT are held from the first ``docker stop`` until every container was started
    again: a signal in between (a job cancel while ``docker stop`` waits) would otherwise leave a
    container stopped, or a swapped directory reported as a failure. A signal that arrived meanwhile
    is then discarded and ``deferred_signals`` names it, so the caller can report both what was
    done and that it was asked to stop."""

    _HELD = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, docker_cli, containers, timeout, error_cls=RestoreError, undone="nothing was restored"):
        self.error_cls = error_cls
        self.undone = undone
        self.docker_cli = docker_cli
        self.containers = list(containers)
        self.timeout = timeout
        self.stopped = []
        self.started = []
        self.start_failures = {}
        self.deferred_signals = []
        self._touched = []  # stop was asked for: start them again even when the stop failed half-way
        self._mask = None

    def _command(self, verb, container, *options):
        error_cls = self.error_cls
        try:
            _docker(self.docker_cli, [verb] + list(options) + [container["id"]], error_cls)
        except _DockerUnavailable as exc:
            raise error_cls("docker %s %s failed: %s" % (verb, container["name"], exc)) from None
        except error_cls as exc:
            raise error_cls("docker %s %s failed: %s" % (verb, container["name"], str(exc).split(": ", 1)[-1])) \
                from None

    def __enter__(self):
        if self.containers:
            self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, self._HELD)
        try:
            for container in self.containers:
                self._touched.append(container)
                self._command("stop", container, "--time", str(self.timeout))
                self.stopped.append(container)
        except self.error_cls as exc:
            self._start_again()
            self._release()
            text = "; %s" % self.describe() if self.started or self.start_failures else ""
            raise self.error_cls("%s; %s%s" % (exc, self.undone, text), **self.result()) from None
        except BaseException:
            self._start_again()
            self._release()
            raise
        return self

    def _start_again(self):
        for container in self._touched:
            try:
                self._command("start", container)
                self.started.append(container["name"])
            except self.error_cls as exc:
                self.start_failures[container["name"]] = str(exc)

    def _release(self):
        """Unblock the held signals, discarding (and recording) those that arrived meanwhile."""
        if self._mask is None:
            return
        pending = signal.sigpending()
        for signum in self._HELD:
            if signum in pending:
                self.deferred_signals.append(signal.Signals(signum).name)
                signal.signal(signum, signal.SIG_IGN)  # consumed when unblocked below, instead of raising
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        self._mask = None

    def __exit__(self, kind, exc, traceback):
        self._start_again()
        self._release()
        if isinstance(exc, RunbookError) and self._touched:
            exc.args = ("%s; %s" % (exc.args[0], self.describe()),) + exc.args[1:]
            exc.details.update(self.result())
        return False

    def result(self):
        return {"stopped_containers": [container["name"] for container in self.stopped],
                "started_containers": list(self.started), "deferred_signals": list(self.deferred_signals)}

    def describe(self):
        text = "stopped and started again: %s" % ", ".join(self.started) if self.started else ""
        if self.start_failures:
            text += "%sdid not start again: %s" % ("; " if text else "", "; ".join(
                "%s (%s)" % item for item in sorted(self.start_failures.items())))
        return text


def restore_volume(store, source, spec, backup_id=None, force=False, keep_previous=True, stop_containers=False,
                   stop_timeout=30, verify_only=False, check_mode=False):
    """The volume_restore flow; returns what was (or would be) done.  A backup compressed with a
    library this host lacks raises MissingLibraryError before anything is unpacked or changed."""
    if stop_timeout is None or stop_timeout < 0:
        raise ParameterError("stop_timeout must be 0 or more seconds, got %s" % stop_timeout)
    target = source.directory(RestoreError)
    entry, manifest = backups.resolve_backup(store, spec, backup_id)
    if manifest["engine"] != ENGINE:
        raise RestoreError("backup %s is a %s backup, not a volume tarball" % (entry.backup_id, manifest["engine"]))
    backups.require_libraries(compression=manifest.get("compression"))
    exists = _check_target(target)
    containers = [] if verify_only else source.running_containers(RestoreError)
    to_stop = containers or []
    result = {"backup": restores.summary(store, manifest), "target": target, "previous": None, "verified": False,
              "running_containers": [container["name"] for container in to_stop],
              "containers_checked": containers is not None, "stopped_containers": [], "started_containers": [],
              "deferred_signals": []}
    if not verify_only:
        refuse_running_restore(source, to_stop, stop_containers)
        if exists and not _is_empty(target) and not force:
            where = "%s (%s)" % (source.describe(), target) if source.volume else target
            raise RestoreError("%s is not empty: refusing to restore over it; set force: true to replace it with "
                               "backup %s (the current directory is kept beside it)" % (where, entry.backup_id))
        if exists and keep_previous:
            result["previous"] = previous_name(target)
    if check_mode:
        result["stopped_containers"] = result["running_containers"]  # would be stopped, then started again
        return result
    clock = time.monotonic()
    sweep_workdirs(os.path.dirname(target))
    # Unpacked and checked while the containers still run: they are stopped only for the renames.
    workdir, actual = unpack(store, manifest, os.path.dirname(target))
    result["files"] = actual
    result["verified"] = True
    try:
        if verify_only:
            return result
        # Without keep_previous the replaced directory is deleted after the containers run again.
        aside = result["previous"] or _workdir(os.path.dirname(target), "replaced")
        with StoppedContainers(source.docker_cli, to_stop, stop_timeout) as paused:
            if to_stop:
                # One started in the meantime (or brought back by a restart policy) would keep the old data.
                _refuse_newly_running(source, source.running_containers(RestoreError))
            swap_in(workdir, target, exists, aside)
        result.update(paused.result())
        if paused.start_failures:
            raise RestoreError("restored backup %s into %s, but %s" % (entry.backup_id, target, paused.describe()),
                               changed=True, **result)
        if exists and not keep_previous:
            try:
                shutil.rmtree(aside, ignore_errors=True)
            except KeyboardInterrupt:  # SIGTERM: the restore is done; a later restore sweeps the rest
                result["left_behind"] = aside
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # gone already unless the swap did not happen
        result["duration_seconds"] = round(time.monotonic() - clock, 3)
    return result


def swap_in(workdir, target, exists, previous):
    """Rename ``target`` aside (to ``previous``, or delete it when None) and ``workdir`` into
    its place; returns where the old directory is kept, if anywhere."""
    aside = previous or _workdir(os.path.dirname(target), "replaced")
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
