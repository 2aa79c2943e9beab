# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Taking a backup: dump -> compress -> sha256 -> store, then the manifest, then retention.

The data object becomes visible only once complete (the stores are atomic) and the manifest
is written after it, so a dump that dies half-way leaves no object and no "latest" backup.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import socket
import subprocess
import tempfile
import time

from ansible_collections.runbook.ops.plugins.module_utils import _manifest as manifests
from ansible_collections.runbook.ops.plugins.module_utils import _pg_dump as pg_dump
from ansible_collections.runbook.ops.plugins.module_utils import _postgres as postgres
from ansible_collections.runbook.ops.plugins.module_utils import _sqlite as sqlite
from ansible_collections.runbook.ops.plugins.module_utils._errors import (
    BackupError, IntegrityError, ParameterError, RestoreError, StoreError)
from ansible_collections.runbook.ops.plugins.module_utils._streams import (
    DEFAULT_LEVELS, EXTENSIONS, HashingReader, ProcessOutput, compressing_reader, exit_status, stderr_tail)

COLLECTION_VERSION = "0.1.0"


class BackupSpec:
    """What to back up and how; built once from module options and shared by the flows."""

    def __init__(self, service, engine, database=None, path=None, server=None, compression="zstd",
                 compression_level=None, dump_format=None, jobs=1, tmp_dir=None, extra_args=()):
        self.service = manifests.check_service(service)
        if engine not in manifests.ENGINES:
            raise ParameterError("engine must be one of %s, got %r" % (", ".join(manifests.ENGINES), engine))
        self.engine = engine
        if engine == "postgresql":
            if not database:
                raise ParameterError("database is required for engine postgresql")
            self.database = postgres.check_database_name(database)
            self.dump_format = dump_format or "custom"
            if self.dump_format not in ("custom", "directory"):
                raise ParameterError("format must be custom or directory for engine postgresql")
            if server is None:
                raise ParameterError("PostgreSQL connection options are required for engine postgresql")
        else:
            if not path and not database:
                raise ParameterError("path (the SQLite database file) is required for engine sqlite")
            if path and not os.path.isabs(path):
                raise ParameterError("path must be absolute, got %r" % path)
            self.database = database or os.path.basename(path).split(".", 1)[0]
            own_format = "tar" if engine == "volume" else "sqlite"
            if dump_format not in (None, own_format):
                raise ParameterError("format does not apply to engine %s" % engine)
            self.dump_format = own_format
        if jobs < 1 or (jobs > 1 and self.dump_format != "directory"):
            raise ParameterError("jobs > 1 needs format: directory (pg_dump and pg_restore only run a custom-format "
                                 "stream with one job)")
        self.path = path
        self.server = server
        self.compression = compression
        self.compression_level = DEFAULT_LEVELS[compression] if compression_level is None else compression_level
        self.jobs = jobs
        self.tmp_dir = tmp_dir
        self.extra_args = list(extra_args or ())
        self.label = manifests.database_label(self.database)

    def require_path(self):
        if self.engine == "sqlite" and not self.path:
            raise ParameterError("path (the SQLite database file) is required for engine sqlite")
        return self.path

    @property
    def folder(self):
        return self.service + "/"

    def source(self):
        """How the database is named in messages."""
        return self.server.describe(self.database) if self.engine == "postgresql" else self.path


def list_backups(store, spec):
    return manifests.catalog(store.list(spec.folder), spec.service, spec.engine, spec.database)


def resolve_backup(store, spec, backup_id=None):
    """The catalog entry and checked manifest of the backup to restore or verify.

    Refuses an incomplete backup and one whose stored size already differs from its manifest.
    """
    entries = list_backups(store, spec)
    entry = manifests.find_entry(entries, backup_id)
    where = store.location(spec.folder)
    if entry is None:
        if backup_id:
            raise RestoreError("backup %s not found in %s" % (backup_id, where))
        raise RestoreError("no complete %s backup of %s in %s" % (spec.engine, spec.database, where))
    if entry.manifest_key is None:
        raise IntegrityError("backup %s has no manifest: it is incomplete (interrupted, or still being written); "
                             "refusing it" % entry.backup_id)
    if entry.data_key is None:
        raise IntegrityError("backup %s has a manifest but its data object is missing; refusing it" % entry.backup_id)
    manifest = manifests.load_manifest(store.read_bytes(entry.manifest_key), store.location(entry.manifest_key))
    if manifest["id"] != entry.backup_id or manifest["object"] != entry.data_key:
        raise IntegrityError("manifest %s describes %s, not %s: refusing it"
                             % (store.location(entry.manifest_key), manifest["object"], entry.data_key))
    if manifest["size"] != entry.data_size:
        raise IntegrityError("backup object %s is %d bytes but its manifest says %d: it is truncated or was replaced; "
                             "refusing it" % (store.location(entry.data_key), entry.data_size, manifest["size"]))
    return entry, manifest


def plan_backup(store, spec):
    """Check mode: what a backup would write, after checking the source and store are usable."""
    store.check_access(write=True)
    if spec.engine == "postgresql":
        spec.server.connect(spec.database).close()
        spec.server.tool("pg_dump")
    else:
        sqlite.check_database_file(spec.path)
    backup_id, key = new_object(spec)
    return {"id": backup_id, "object": key, "location": store.location(key)}


def new_object(spec, now=None):
    """A new backup id and the store key of its data object."""
    backup_id = manifests.new_backup_id(spec.engine, spec.database, now)
    return backup_id, spec.folder + manifests.object_name(backup_id, spec.dump_format, EXTENSIONS[spec.compression])


def take_backup(store, spec):
    """Dump, store and describe one backup; returns its manifest."""
    started = manifests.utcnow()
    clock = time.monotonic()
    backup_id, key = new_object(spec, started)
    if spec.engine == "postgresql":
        stored = _dump_postgres(store, spec, key)
    else:
        stored = _dump_sqlite(store, spec, key)
    return write_manifest(store, spec, backup_id, key, stored, started, clock, "runbook.ops.db_backup")


def write_manifest(store, spec, backup_id, key, stored, started, clock, created_by, extra=None):
    """Describe a stored data object in its manifest, written last; returns the manifest.

    ``stored`` holds what the dump measured (size, sha256, raw_size, row_counts, versions);
    ``extra`` adds engine-specific fields.  If the manifest cannot be written, the data object
    is deleted: an object without a manifest is an incomplete backup.
    """
    finished = manifests.utcnow()
    manifest = {
        "format": manifests.MANIFEST_FORMAT,
        "version": manifests.MANIFEST_VERSION,
        "id": backup_id,
        "service": spec.service,
        "engine": spec.engine,
        "database": spec.database,
        "object": key,
        "size": stored["size"],
        "sha256": stored["sha256"],
        "raw_size": stored["raw_size"],
        "compression": spec.compression,
        "compression_level": spec.compression_level,
        "dump_format": spec.dump_format,
        "server_version": stored["server_version"],
        "tool_versions": stored["tool_versions"],
        "started": manifests.iso(started),
        "finished": manifests.iso(finished),
        "duration_seconds": round(time.monotonic() - clock, 3),
        "row_counts": stored["row_counts"],
        "tables": len(stored["row_counts"]),
        "host": socket.gethostname(),
        "created_by": "%s %s" % (created_by, COLLECTION_VERSION),
    }
    manifest.update(extra or {})
    manifest_key = key + manifests.MANIFEST_SUFFIX
    try:
        store.put_bytes(manifest_key, manifests.dump_manifest(manifest))
    except BaseException:
        delete_quietly(store, key)
        raise
    manifest["manifest"] = manifest_key
    return manifest


def stream_to_store(store, key, reader, compression, level):
    """reader -> compression -> sha256 -> store; returns (stored size, sha256)."""
    hasher = HashingReader(compressing_reader(reader, compression, level))
    size = store.put_stream(key, hasher)
    return size, hasher.sha256


def stream_process_to_store(store, key, process, spec, reader=None):
    """Stream a ProcessOutput (or ``reader``, a reader over it such as a counter) into the
    store; the process is killed when anything fails."""
    try:
        return stream_to_store(store, key, reader or process, spec.compression, spec.compression_level)
    except BaseException:
        process.kill()
        raise


def _dump_postgres(store, spec, key):
    server = spec.server
    tool_version = server.tool_version("pg_dump")
    with pg_dump.tool_env(server) as env, pg_dump.Snapshot(server, spec.database) as snapshot:
        # Count rows in the exported snapshot while pg_dump streams from the same snapshot.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            counts = pool.submit(snapshot.row_counts)
            if spec.dump_format == "directory":
                size, sha256, raw_size = _dump_postgres_directory(store, spec, key, env, snapshot.snapshot_id)
            else:
                dump = ProcessOutput(pg_dump.dump_argv(server, spec.database, snapshot.snapshot_id, "custom",
                                                       extra_args=spec.extra_args),
                                     env, BackupError, "pg_dump of %s" % server.describe(spec.database))
                size, sha256 = stream_process_to_store(store, key, dump, spec)
                raw_size = dump.size
            row_counts = counts.result()
    return {"size": size, "sha256": sha256, "raw_size": raw_size, "row_counts": row_counts,
            "server_version": snapshot.server_version, "tool_versions": {"pg_dump": tool_version}}


def _dump_postgres_directory(store, spec, key, env, snapshot_id):
    """Parallel pg_dump into a private temporary directory, then a tar stream of it into the store."""
    workdir = tempfile.mkdtemp(prefix="rbops-dump-", dir=spec.tmp_dir)
    try:
        target = os.path.join(workdir, "dump")
        argv = pg_dump.dump_argv(spec.server, spec.database, snapshot_id, "directory", spec.jobs, target,
                                 spec.extra_args)
        with tempfile.TemporaryFile() as errors:
            code = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors, check=False).returncode
            if code != 0:
                raise BackupError("pg_dump of %s failed (%s): %s"
                                  % (spec.server.describe(spec.database), exit_status(code), stderr_tail(errors)))
        tar = ProcessOutput(["tar", "-C", target, "-cf", "-", "."], None, BackupError, "tar of the dump directory")
        size, sha256 = stream_process_to_store(store, key, tar, spec)
        return size, sha256, tar.size
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _dump_sqlite(store, spec, key):
    """Online-backup copy (consistent while the service writes), checked and counted, then streamed."""
    workdir = tempfile.mkdtemp(prefix="rbops-sqlite-", dir=spec.tmp_dir)
    try:
        copy = os.path.join(workdir, "copy.sqlite3")
        sqlite.online_copy(spec.path, copy)
        problems = sqlite.integrity_problems(copy)
        if problems:
            raise BackupError("the copy of %s fails SQLite's quick_check (%s): the live database is damaged; "
                              "no backup was stored" % (spec.path, "; ".join(problems[:5])))
        row_counts = sqlite.row_counts(copy)
        with open(copy, "rb") as handle:
            size, sha256 = stream_to_store(store, key, handle, spec.compression, spec.compression_level)
        raw_size = os.path.getsize(copy)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"size": size, "sha256": sha256, "raw_size": raw_size, "row_counts": row_counts,
            "server_version": sqlite.version(), "tool_versions": {"sqlite": sqlite.version()}}


def expired_backups(store, spec, keep_last=None, keep_days=None, protect=()):
    entries = list_backups(store, spec)
    return manifests.select_expired(entries, keep_last, keep_days, protect=protect)


def delete_backups(store, entries):
    """Delete backups manifest first: an interrupted deletion leaves an incomplete backup,
    never a manifest that points at nothing."""
    deleted = []
    for entry in entries:
        store.delete(entry.manifest_key)
        store.delete(entry.data_key)
        for key in entry.extra_keys:
            store.delete(key)
        deleted.append(entry.backup_id)
    return deleted


def delete_quietly(store, key):
    try:
        store.delete(key)
    except StoreError:
        pass
