# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A directory of uploaded files kept in step with an S3 prefix (BK8), in either direction.

What is compared: a file is copied when the other side lacks it, its size differs, or, sizes
being equal, its sha256 differs.  The sha256 of an object travels in its own metadata
(``x-amz-meta-sha256``; a multipart ETag is not an MD5 of the content), with its mode and mtime,
so a download restores permissions.  Reading metadata costs one request per object, so a manifest
(JSON) written at the end of each upload beside the objects records every object's sha256 under
its ETag: an object whose listed ETag matches its manifest entry needs no request, others are
asked (HEAD).  A local manifest (0600, written atomically) records what each local file hashed
to under (size, mtime_ns): unchanged files are not read again.

Copies are atomic on both sides: an upload is a single PUT or a multipart upload completed only
after the whole file was read; a download goes to a hidden temp file, its sha256 is checked
against the object's, and only then is it renamed into place.  An interrupted run leaves no half
file, and the next run copies only what is missing or different.

Memory is bounded by ``workers`` x (one part of S3_PART_SIZE, a few in flight) and the listings;
files are streamed.  Symlinks and special files are never followed nor copied: they are reported.
Plain Python; the module is files_sync.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import fnmatch
import hashlib
import json
import os
import re
import io
import stat
import threading
import time
from dataclasses import dataclass, field

from ansible_collections.runbook.ops.plugins.module_utils._errors import (
    IntegrityError, ParameterError, RunbookError, StoreError)
from ansible_collections.runbook.ops.plugins.module_utils._files import (
    PRIVATE_FILE, atomic_write, is_partial, sweep_partials)
from ansible_collections.runbook.ops.plugins.module_utils._store import S3_PART_SIZE, check_key
from ansible_collections.runbook.ops.plugins.module_utils._streams import CHUNK_SIZE

FORMAT_VERSION = 1
MANIFEST_NAME = ".files_sync.manifest.json"  # beside the objects, and the default local one
DIRECTIONS = ("upload", "download")
DEFAULT_WORKERS = 8
MAX_WORKERS = 64
DEFAULT_LIST_LIMIT = 100
# Snapshot folders (versioned prefixes) are named by their UTC date or time; retention reads the
# age from the name, which never changes, not from object times, which a copy would reset.
SNAPSHOT_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})|(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")


# --- what to sync ------------------------------------------------------------------------------

class PathFilter:
    """Include/exclude globs (fnmatch) on '/'-separated paths relative to the tree's root.

    A file is synced when it matches no ``exclude`` pattern and, if ``include`` is given, at least
    one ``include`` pattern.  An excluded directory is not entered.  ``*`` also matches '/', so
    ``*.tmp`` excludes such files at any depth and ``cache/*`` everything below ``cache``.
    """

    def __init__(self, include=None, exclude=None):
        self.include = list(include or [])
        self.exclude = list(exclude or [])
        for pattern in self.include + self.exclude:
            if not pattern or pattern.startswith("/"):
                raise ParameterError("include/exclude patterns are relative paths such as '*.tmp' or "
                                     "'cache/*', got %r" % (pattern,))

    def wants_dir(self, key):
        return not any(fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(key + "/", p) for p in self.exclude)

    def wants_file(self, key):
        if key == MANIFEST_NAME or key.endswith("/" + MANIFEST_NAME):
            return False  # our own bookkeeping, on either side
        if any(fnmatch.fnmatchcase(key, p) for p in self.exclude):
            return False
        return not self.include or any(fnmatch.fnmatchcase(key, p) for p in self.include)


@dataclass
class LocalFile:
    key: str
    size: int
    mtime_ns: int
    mode: int
    sha256: str = None


@dataclass
class RemoteFile:
    key: str
    size: int
    etag: str
    sha256: str = None
    mode: int = None
    mtime_ns: int = None


@dataclass
class Skipped:
    key: str
    reason: str


def _key_of(relative_parts):
    return "/".join(relative_parts)


def scan_tree(root, path_filter):
    """Regular files below ``root`` as {key: LocalFile}, and the entries left out (symlinks,
    special files, names S3 cannot hold) as a list of Skipped.  Never follows a symlink;
    atomic-write leftovers (hidden ``.*.partial-*``) are neither listed nor reported."""
    files, skipped = {}, []
    if not os.path.isdir(root):
        return files, skipped
    pending = [(root, [])]
    while pending:
        directory, parts = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skipped(_key_of(parts) or ".", "cannot list: %s" % (exc.strerror or exc)))
            continue
        for entry in entries:
            key = _key_of(parts + [entry.name])
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                skipped.append(Skipped(key.encode("utf-8", "replace").decode("utf-8"),
                                       "name is not valid UTF-8 (an S3 key must be)"))
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as exc:
                skipped.append(Skipped(key, "cannot stat: %s" % (exc.strerror or exc)))
                continue
            if stat.S_ISLNK(info.st_mode):
                skipped.append(Skipped(key, "symlink (not followed)"))
            elif stat.S_ISDIR(info.st_mode):
                if path_filter.wants_dir(key):
                    pending.append((entry.path, parts + [entry.name]))
            elif not stat.S_ISREG(info.st_mode):
                skipped.append(Skipped(key, "not a regular file"))
            elif is_partial(entry.name):
                continue
            elif path_filter.wants_file(key):
                files[key] = LocalFile(key, info.st_size, info.st_mtime_ns, stat.S_IMODE(info.st_mode))
    return files, skipped


def remote_files(objects, path_filter):
    """{key: RemoteFile} of a store listing (StoredObjects relative to the sync prefix), and the
    keys left out because they cannot be a local path (Skipped)."""
    files, skipped = {}, []
    for obj in objects:
        if obj.key.endswith("/"):
            continue  # a "folder" marker some tools create
        try:
            check_key(obj.key)
        except ParameterError:
            skipped.append(Skipped(obj.key, "object name is not a safe relative path"))
            continue
        if path_filter.wants_file(obj.key):
            files[obj.key] = RemoteFile(obj.key, obj.size, obj.etag)
    return files, skipped


# --- manifests and the hash cache --------------------------------------------------------------

def load_manifest(data):
    """The ``files`` of a manifest (bytes or None); {} when absent or unreadable: a manifest only
    saves work, it is never trusted over the objects themselves."""
    if not data:
        return {}
    try:
        document = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except ValueError:
        return {}
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        return {}
    files = document.get("files")
    return files if isinstance(files, dict) else {}


def manifest_finished(data):
    """When the sync that wrote a manifest finished (a datetime), or None."""
    try:
        document = json.loads(data.decode("utf-8"))
        return datetime.datetime.strptime(document["finished"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def cached_local_sha(entry, cache):
    """The sha256 a local manifest recorded for this file, if size and mtime_ns still match."""
    known = cache.get(entry.key)
    if isinstance(known, dict) and known.get("size") == entry.size and known.get("mtime_ns") == entry.mtime_ns:
        return known.get("sha256")
    return None


def known_remote(entry, remote_manifest):
    """Fill sha256/mode/mtime of ``entry`` from the remote manifest when its ETag and size match;
    True when it did."""
    known = remote_manifest.get(entry.key)
    if isinstance(known, dict) and entry.etag and known.get("etag") == entry.etag and known.get("size") == entry.size:
        entry.sha256 = known.get("sha256")
        entry.mode = known.get("mode")
        entry.mtime_ns = known.get("mtime_ns")
        return bool(entry.sha256)
    return False


def object_metadata(local):
    """The user metadata an uploaded file carries."""
    return {"sha256": local.sha256, "mode": "%o" % local.mode, "mtime-ns": str(local.mtime_ns)}


def apply_metadata(entry, metadata):
    """Fill a RemoteFile from ``x-amz-meta-*`` values; malformed values are ignored."""
    sha = (metadata or {}).get("sha256")
    entry.sha256 = sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) else None
    try:
        entry.mode = int(metadata.get("mode"), 8) & 0o7777
    except (TypeError, ValueError, AttributeError):
        entry.mode = None
    try:
        entry.mtime_ns = int(metadata.get("mtime-ns"))
    except (TypeError, ValueError, AttributeError):
        entry.mtime_ns = None
    return entry


def manifest_document(files, direction, location, started, finished, counts):
    return {
        "format_version": FORMAT_VERSION,
        "direction": direction,
        "location": location,
        "started": started,
        "finished": finished,
        "counts": counts,
        "files": files,
    }


# --- hashing ------------------------------------------------------------------------------------

def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK_SIZE)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)


class VerifyingReader:
    """Passes a download through sha256 and size; at the end of the stream it raises
    IntegrityError when they differ from what the object's metadata says, so atomic_write removes
    its temp file and the local file stays as it was."""

    def __init__(self, reader, key, size, sha256):
        self._reader = reader
        self._key = key
        self._size = size
        self._expected = sha256
        self._digest = hashlib.sha256()
        self.read_bytes = 0

    def read(self, size=CHUNK_SIZE):
        data = self._reader.read(size)
        if data:
            self._digest.update(data)
            self.read_bytes += len(data)
            return data
        if self._size is not None and self.read_bytes != self._size:
            raise IntegrityError("download of %s ended after %d of %d bytes" % (self._key, self.read_bytes, self._size))
        if self._expected and self._digest.hexdigest() != self._expected:
            raise IntegrityError("download of %s does not match the sha256 in its metadata" % self._key)
        return data

    @property
    def sha256(self):
        return self._digest.hexdigest()


# --- the plan ---------------------------------------------------------------------------------

@dataclass
class Plan:
    """What a sync will do.  ``copy`` and ``delete`` are keys; ``chmod`` are downloads whose
    content matches but whose mode does not."""
    copy: list = field(default_factory=list)
    delete: list = field(default_factory=list)
    chmod: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    reasons: dict = field(default_factory=dict)


def first_pass(direction, local, remote, delete):
    """Decide what presence and size decide; return (plan, keys whose sha256 must be compared)."""
    plan = Plan()
    source, target = (local, remote) if direction == "upload" else (remote, local)
    compare = []
    for key in sorted(source):
        other = target.get(key)
        if other is None:
            plan.copy.append(key)
            plan.reasons[key] = "new"
        elif other.size != source[key].size:
            plan.copy.append(key)
            plan.reasons[key] = "size differs"
        else:
            compare.append(key)
    if delete:
        plan.delete = sorted(key for key in target if key not in source)
    return plan, compare


def second_pass(plan, direction, local, remote, compare):
    """Finish the plan once both sides of each ``compare`` key have their sha256 (None: unknown)."""
    for key in compare:
        mine, theirs = local[key], remote[key]
        if not theirs.sha256 or mine.sha256 != theirs.sha256:
            plan.copy.append(key)
            plan.reasons[key] = "content differs" if theirs.sha256 else "no sha256 in the object's metadata"
        elif theirs.mode is not None and theirs.mode != mine.mode:
            if direction == "upload":
                plan.copy.append(key)  # the mode lives in the object's metadata: write it again
                plan.reasons[key] = "mode differs"
            else:
                plan.chmod.append(key)
        else:
            plan.unchanged.append(key)
    plan.copy.sort()
    return plan


# --- snapshots and retention -------------------------------------------------------------------

def snapshot_time(name):
    """The UTC time a snapshot folder's name says, or None when it is not a snapshot name."""
    match = SNAPSHOT_RE.fullmatch(name)
    if not match:
        return None
    try:
        if match.group(1):
            return datetime.datetime(int(match.group(1)), int(match.group(2)), int(match.group(3)),
                                     tzinfo=datetime.timezone.utc)
        return datetime.datetime(*(int(g) for g in match.groups()[3:]), tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def resolve_snapshot(snapshot, direction, existing, now):
    """The snapshot folder to sync with: a snapshot name as given, ``today`` (upload: the UTC date)
    or ``latest`` (download: the newest existing one).  None: no snapshots, the prefix itself."""
    if not snapshot:
        return None
    if snapshot == "today":
        if direction != "upload":
            raise ParameterError("snapshot 'today' is for uploads; a download takes 'latest' or a snapshot name")
        return now.strftime("%Y-%m-%d")
    if snapshot == "latest":
        if direction != "download":
            raise ParameterError("snapshot 'latest' is for downloads; an upload takes 'today' or a snapshot name")
        dated = sorted((snapshot_time(name), name) for name in existing if snapshot_time(name))
        if not dated:
            raise StoreError("there is no snapshot (a folder named YYYY-MM-DD or YYYYMMDDTHHMMSSZ) to download")
        return dated[-1][1]
    if snapshot_time(snapshot) is None:
        raise ParameterError("snapshot must be 'today', 'latest' or a name like 2026-11-30 or 20261130T091500Z, "
                             "got %r" % (snapshot,))
    return snapshot


def expired_snapshots(existing, retention_days, now, keep=()):
    """Snapshot folders older than ``retention_days`` (by their names), never one in ``keep`` nor
    the newest one."""
    if retention_days is None:
        return []
    dated = sorted((snapshot_time(name), name) for name in set(existing) | set(keep or ()) if snapshot_time(name))
    if not dated:
        return []
    newest = dated[-1][1]  # the one being written counts, even before it exists
    limit = now - datetime.timedelta(days=retention_days)
    return [name for when, name in dated if when < limit and name not in keep and name != newest]


# --- results ------------------------------------------------------------------------------------

def capped(items, limit):
    return list(items[:limit]) if limit >= 0 else list(items)


def utc_stamp(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the sync itself ---------------------------------------------------------------------------

class FilesSync:  # pylint: disable=too-many-instance-attributes
    """One sync of ``root`` with ``store`` (an S3Store whose prefix is the synced folder)."""

    def __init__(self, store, root, direction, delete=False, path_filter=None, workers=DEFAULT_WORKERS,
                 manifest_path=None, list_limit=DEFAULT_LIST_LIMIT, snapshot=None, retention_days=None,
                 now=None):
        if direction not in DIRECTIONS:
            raise ParameterError("direction must be upload or download, got %r" % (direction,))
        if not root or not os.path.isabs(root):
            raise ParameterError("path must be an absolute directory path, got %r" % (root,))
        if workers is None or not 1 <= workers <= MAX_WORKERS:
            raise ParameterError("workers must be between 1 and %d, got %r" % (MAX_WORKERS, workers))
        if retention_days is not None and retention_days < 1:
            raise ParameterError("retention_days must be at least 1")
        if retention_days is not None and (not snapshot or direction != "upload"):
            raise ParameterError("retention_days applies to uploads into snapshots (snapshot: today or a name)")
        if getattr(store, "kind", None) != "s3":
            raise ParameterError("files_sync needs an s3 store (store.type: s3)")
        self.store = store
        self.root = os.path.normpath(root)
        self.direction = direction
        self.delete = delete
        self.filter = path_filter or PathFilter()
        self.workers = workers
        self.manifest_path = manifest_path or os.path.join(self.root, MANIFEST_NAME)
        self.list_limit = list_limit
        self.snapshot = snapshot
        self.retention_days = retention_days
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self.folder = ""  # the snapshot folder inside the store's prefix, with a trailing '/'
        self.failed = []
        self.bytes = 0
        self.swept = []
        self._lock = threading.Lock()
        self.source_synced_at = None

    # -- names ---------------------------------------------------------------------------------

    def _object(self, key):
        return self.folder + key

    def _path(self, key):
        return os.path.join(self.root, *key.split("/"))

    def location(self):
        """The synced folder, as s3://bucket/prefix/[snapshot/]."""
        return self.store.location(self.folder + "x")[:-1]

    # -- the run -------------------------------------------------------------------------------

    def run(self, check_mode=False):
        started = time.time()
        if self.direction == "upload" and not os.path.isdir(self.root):
            raise ParameterError("path %s is not a directory" % self.root)
        if self.direction == "download" and os.path.lexists(self.root) and not os.path.isdir(self.root):
            raise ParameterError("path %s exists and is not a directory" % self.root)
        self.store.check_access(write=self.direction == "upload")
        existing_snapshots = self.store.folders("") if self.snapshot else []
        snapshot = resolve_snapshot(self.snapshot, self.direction, existing_snapshots, self.now)
        self.folder = snapshot + "/" if snapshot else ""

        local, local_skipped = scan_tree(self.root, self.filter)
        objects = self.store.list(self.folder)
        remote, remote_skipped = remote_files(
            [type(obj)(obj.key[len(self.folder):], obj.size, obj.modified, obj.etag) for obj in objects],
            self.filter)
        remote_manifest_data = self._read_remote_manifest(objects)
        remote_manifest = load_manifest(remote_manifest_data)
        self.source_synced_at = manifest_finished(remote_manifest_data) if self.direction == "download" else None
        local_cache = load_manifest(self._read_local_manifest())
        for entry in remote.values():  # sha256 and mode of unchanged objects, without a request each
            known_remote(entry, remote_manifest)

        plan, compare = first_pass(self.direction, local, remote, self.delete)
        self._resolve_hashes(compare, local, remote, local_cache)
        plan = second_pass(plan, self.direction, local, remote, compare)

        expired = []
        if self.retention_days is not None:
            expired = expired_snapshots(existing_snapshots, self.retention_days, self.now, keep={snapshot})
        if not check_mode:
            self._apply(plan, local, remote)
            if self.retention_days is not None:
                for name in expired:
                    self.store.delete_many(obj.key for obj in self.store.list(name + "/"))
            self._write_manifests(plan, local, remote, started)
        return self._result(plan, local, remote, local_skipped + remote_skipped, expired, snapshot, started,
                            check_mode)

    def _read_remote_manifest(self, objects):
        if not any(obj.key == self._object(MANIFEST_NAME) for obj in objects):
            return None
        try:
            return self.store.read_bytes(self._object(MANIFEST_NAME))
        except StoreError:
            return None  # deleted meanwhile: every object is asked instead

    def _read_local_manifest(self):
        try:
            with open(self.manifest_path, "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def _pool(self):
        return concurrent.futures.ThreadPoolExecutor(max_workers=self.workers)

    def _each(self, function, keys):
        """function(key) for every key on the pool; a RunbookError from S3 stops the run at once
        (queued work is cancelled, what runs finishes cleanly); OSErrors of single local files are
        collected in ``self.failed`` and the rest goes on.  SIGTERM cancels like an error."""
        pool = self._pool()
        try:
            futures = {pool.submit(function, key): key for key in keys}
            for future in concurrent.futures.as_completed(futures):
                try:
                    future.result()
                except OSError as exc:
                    self.failed.append({"key": futures[future], "error": exc.strerror or str(exc)})
                except IntegrityError as exc:
                    self.failed.append({"key": futures[future], "error": str(exc)})
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _resolve_hashes(self, compare, local, remote, local_cache):
        def resolve(key):
            mine, theirs = local[key], remote[key]
            if not theirs.sha256:
                info = self.store.head(self._object(key))
                if info is not None:
                    apply_metadata(theirs, info["metadata"])
            if theirs.sha256:  # no sha256 on the object: it is copied anyway, no need to read ours
                mine.sha256 = cached_local_sha(mine, local_cache) or file_sha256(self._path(key))
        self._each(resolve, compare)
        unreadable = {item["key"] for item in self.failed}  # left alone this time, reported as failed
        compare[:] = [key for key in compare if key not in unreadable]

    # -- changes -------------------------------------------------------------------------------

    def _apply(self, plan, local, remote):
        if self.direction == "upload":
            self._each(lambda key: self._upload(local[key], remote), plan.copy)
            if plan.delete:
                self.store.delete_many(self._object(key) for key in plan.delete)
                for key in plan.delete:
                    remote.pop(key, None)
            return
        if plan.copy or plan.chmod:
            os.makedirs(self.root, exist_ok=True)
        self._sweep()
        self._each(lambda key: self._download(remote[key], local), plan.copy)
        self._each(lambda key: self._chmod(remote[key], local), plan.chmod)
        self._each(lambda key: self._remove(key, local), plan.delete)
        self._prune_dirs(plan.delete)

    def _upload(self, entry, remote):
        path = self._path(entry.key)
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_size != entry.size or info.st_mtime_ns != entry.mtime_ns:
                entry.size, entry.mtime_ns, entry.sha256 = info.st_size, info.st_mtime_ns, None
            if entry.size < S3_PART_SIZE:
                # One PUT, read once: the sha256 (sent as metadata, before the body) comes from the bytes.
                data = handle.read(S3_PART_SIZE)
                entry.size, entry.sha256 = len(data), hashlib.sha256(data).hexdigest()
                reader = VerifyingReader(io.BytesIO(data), entry.key, len(data), entry.sha256)
            else:
                if not entry.sha256:
                    entry.sha256 = file_sha256(path)
                reader = VerifyingReader(handle, entry.key, None, entry.sha256)
            size, etag = self.store.upload(self._object(entry.key), reader, object_metadata(entry))
        if size != entry.size:
            raise IntegrityError("%s changed while it was uploaded; the next run copies it again" % entry.key)
        remote[entry.key] = RemoteFile(entry.key, size, etag, entry.sha256, entry.mode, entry.mtime_ns)
        with self._lock:
            self.bytes += size

    def _safe_parent(self, key):
        """Create the directories of ``key`` below the root; refuse a symlink or a file on the way."""
        directory = self.root
        for part in key.split("/")[:-1]:
            directory = os.path.join(directory, part)
            try:
                os.mkdir(directory)  # another worker may be creating it too: then it exists
            except FileExistsError:
                info = os.lstat(directory)
                if not stat.S_ISDIR(info.st_mode):
                    raise OSError(0, "%s is a %s, not a directory" % (
                        directory[len(self.root) + 1:], "symlink" if stat.S_ISLNK(info.st_mode) else "file")) from None
        return directory

    def _download(self, entry, local):
        self._safe_parent(entry.key)
        path = self._path(entry.key)
        if os.path.islink(path) or os.path.isdir(path):
            raise OSError(0, "a %s is in the way" % ("symlink" if os.path.islink(path) else "directory"))
        reader = self.store.open(self._object(entry.key))
        try:
            apply_metadata(entry, reader.info.get("metadata"))
            entry.etag = reader.info.get("etag") or entry.etag
            verifying = VerifyingReader(reader, entry.key, reader.info.get("size"), entry.sha256)
            mode = entry.mode if entry.mode is not None else 0o644
            size = atomic_write(path, reader=verifying, mode=mode, keep_attributes=False)
        finally:
            reader.close()
        if entry.mtime_ns:
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
        info = os.stat(path)
        entry.sha256 = verifying.sha256
        local[entry.key] = LocalFile(entry.key, info.st_size, info.st_mtime_ns, stat.S_IMODE(info.st_mode),
                                     entry.sha256)
        with self._lock:
            self.bytes += size

    def _chmod(self, entry, local):
        os.chmod(self._path(entry.key), entry.mode)
        local[entry.key].mode = entry.mode

    def _remove(self, key, local):
        os.unlink(self._path(key))
        local.pop(key, None)

    def _prune_dirs(self, deleted):
        """Remove directories that deleting files left empty (never the root)."""
        directories = sorted({os.path.dirname(self._path(key)) for key in deleted}, key=len, reverse=True)
        for directory in directories:
            while directory != self.root and directory.startswith(self.root + os.sep):
                try:
                    os.rmdir(directory)
                except OSError:
                    break
                directory = os.path.dirname(directory)

    def _sweep(self):
        """Temp files a killed download left (a clean interruption removes its own)."""
        if not os.path.isdir(self.root):
            return
        for directory, _dirs, _files in os.walk(self.root):
            self.swept += sweep_partials(directory, self.store.partial_max_age)

    # -- manifests -----------------------------------------------------------------------------

    def _write_manifests(self, plan, local, remote, started):
        finished = time.time()
        counts = {"copied": len(plan.copy) - len(self.failed), "deleted": len(plan.delete),
                  "unchanged": len(plan.unchanged), "bytes": self.bytes}
        if self.direction == "upload":
            files = {key: {"size": entry.size, "sha256": entry.sha256, "mode": entry.mode,
                           "mtime_ns": entry.mtime_ns, "etag": entry.etag}
                     for key, entry in sorted(remote.items()) if entry.sha256}
            document = manifest_document(files, self.direction, self.location(), utc_stamp(started),
                                         utc_stamp(finished), counts)
            self.store.put_bytes(self._object(MANIFEST_NAME), json.dumps(document, sort_keys=True).encode("utf-8"))
        cache = {key: {"size": entry.size, "mtime_ns": entry.mtime_ns, "sha256": entry.sha256, "mode": entry.mode,
                       "etag": remote[key].etag if key in remote else None}
                 for key, entry in sorted(local.items()) if entry.sha256}
        document = manifest_document(cache, self.direction, self.location(), utc_stamp(started),
                                     utc_stamp(finished), counts)
        directory = os.path.dirname(self.manifest_path)
        if os.path.isdir(directory):
            atomic_write(self.manifest_path, data=json.dumps(document, sort_keys=True).encode("utf-8"),
                         mode=PRIVATE_FILE, keep_attributes=False)

    # -- result --------------------------------------------------------------------------------

    def _result(self, plan, local, remote, skipped, expired, snapshot, started, check_mode):
        failed_keys = {item["key"] for item in self.failed}
        copied = [key for key in plan.copy if key not in failed_keys]
        sizes = local if self.direction == "upload" else remote
        planned_bytes = sum(sizes[key].size for key in copied if key in sizes)
        limit = self.list_limit
        result = {
            "direction": self.direction,
            "path": self.root,
            "location": self.location(),
            "snapshot": snapshot,
            "counts": {
                "copied": len(copied), "deleted": len(plan.delete), "unchanged": len(plan.unchanged),
                "mode_fixed": len(plan.chmod), "left_out": len(skipped), "failed": len(self.failed),
                "bytes": planned_bytes if check_mode else self.bytes,
                "local_files": len(local), "remote_objects": len(remote),
            },
            "copied": [{"path": key, "reason": plan.reasons.get(key, "")} for key in capped(copied, limit)],
            "deleted": capped(plan.delete, limit),
            "mode_fixed": capped(plan.chmod, limit),
            # Not "skipped"/"failed": Ansible reads those keys as the task's own status.
            "left_out": [{"path": item.key, "reason": item.reason} for item in capped(skipped, limit)],
            "failures": capped(sorted(self.failed, key=lambda item: item["key"]), limit),
            "expired_snapshots": expired,
            "truncated": any(len(items) > limit >= 0
                             for items in (copied, plan.delete, plan.chmod, skipped, self.failed)),
            "manifest": {"local": None if check_mode else self.manifest_path,
                         "remote": None if check_mode or self.direction != "upload"
                         else self.store.location(self._object(MANIFEST_NAME))},
            "swept": self.swept,
            # The age of what a download restores (its RPO): when the upload that wrote the manifest finished.
            "source_synced_at": self.source_synced_at.strftime("%Y-%m-%dT%H:%M:%SZ") if self.source_synced_at else None,
            "source_age_seconds": round((self.now - self.source_synced_at).total_seconds())
            if self.source_synced_at else None,
            "duration_seconds": round(time.time() - started, 3),
        }
        result["changed"] = bool(copied or plan.delete or plan.chmod or expired)
        return result


def failure_message(result):
    """The message of a sync in which single files failed (the others were synced)."""
    first = result["failures"][:5]
    return ("%d of %d file(s) could not be synced (the others were; a rerun retries them): %s"
            % (result["counts"]["failed"], result["counts"]["failed"] + result["counts"]["copied"],
               "; ".join("%s: %s" % (item["key"], item["error"]) for item in first)))


__all__ = ["FilesSync", "PathFilter", "RunbookError", "failure_message"]
