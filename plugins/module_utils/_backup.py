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
from ansible_collections.runbook.ops.plugins.module_utils import _store as stores
from ansible_collections.runbook.ops.plugins.module_utils import _streams as streams
from ansible_collections.runbook.ops.plugins.module_utils._errors import (
    BackupError, DatabaseError, IntegrityError, MissingLibraryError, ParameterError, RestoreError, StoreError)
from ansible_collections.runbook.ops.plugins.module_utils._streams import (
    DEFAULT_LEVELS, EXTENSIONS, HashingReader, ProcessOutput, compressing_reader, exit_status, stderr_tail)

# The collection's version, recorded in every manifest.  Modules run on the managed host from a
# payload without galaxy.yml, so it is a literal; a unit test keeps it equal to galaxy.yml's.
COLLECTION_VERSION = "0.1.0"

# Compression levels the libraries accept (zstandard also has negative "fast" levels, which are
# refused here: they trade ratio away for speed the stream does not need).
LEVEL_RANGES = {"zstd": (1, 22), "gzip": (1, 9)}

# pg_dump -j N opens N + 1 connections.  A bound that no real machine needs more than; the
# server's free connections are checked as well before a parallel dump or restore starts.
MAX_JOBS = 64

# Options that would change what pg_dump writes where; the module owns those.
FORBIDDEN_PG_DUMP_OPTIONS = ("-f", "--file", "-F", "--format", "-Z", "--compress", "-j", "--jobs", "--snapshot",
                             "-d", "--dbname", "-h", "--host", "-p", "--port", "-U", "--username", "-W", "--password",
                             "-s", "--schema-only")

# Options that choose which tables (and which tables' data) a dump holds: the manifest records
# their effect, so that verification and restore compare only what the dump contains.
SELECTION_OPTIONS = {"-t": "table", "--table": "table", "-T": "exclude_table", "--exclude-table": "exclude_table",
                     "--exclude-table-data": "exclude_data", "-n": "schema", "--schema": "schema",
                     "-N": "exclude_schema", "--exclude-schema": "exclude_schema"}


def missing_libraries(engine=None, store_type=None, compression=None):
    """Names of the optional Python libraries a task with these settings needs and lacks."""
    missing = []
    if engine == "postgresql" and postgres.psycopg2 is None:
        missing.append("psycopg2")
    if store_type == "s3" and stores.boto3 is None:
        missing.append("boto3")
    if compression == "zstd" and streams.zstandard is None:
        missing.append("zstandard")
    return missing


def require_libraries(engine=None, store_type=None, compression=None):
    missing = missing_libraries(engine, store_type, compression)
    if missing:
        raise MissingLibraryError(missing[0])


class BackupIdentity:
    """Which backups: a service's backups of one engine and database.  All that restore,
    verification and listing need to find a backup."""

    def __init__(self, service, engine, database=None, path=None):
        self.service = manifests.check_service(service)
        if engine not in manifests.ENGINES:
            raise ParameterError("engine must be one of %s, got %r" % (", ".join(manifests.ENGINES), engine))
        self.engine = engine
        if path and not os.path.isabs(path):
            raise ParameterError("path must be absolute, got %r" % path)
        self.path = path
        self.database = self.database_name(database, path)
        self.label = manifests.database_label(self.database)

    def database_name(self, database, path):
        """The name the catalog files this engine's backups under.  An engine backed up by a
        module of its own names its data in a subclass."""
        if self.engine == "postgresql":
            if not database:
                raise ParameterError("database is required for engine postgresql")
            return postgres.check_database_name(database)
        if self.engine == "sqlite":
            if not path and not database:
                raise ParameterError("path (the SQLite database file) is required for engine sqlite")
            return database or manifests.sqlite_database_name(path)
        raise ParameterError("engine %s is backed up by its own module, not with database options" % self.engine)

    @property
    def folder(self):
        return self.service + "/"


class BackupSpec(BackupIdentity):
    """What to back up and how; built once from module options (db_backup; an engine with a module of
    its own subclasses it)."""

    # The one dump format of an engine other than PostgreSQL; a subclass for another engine sets its own.
    own_format = "sqlite"

    def __init__(self, service, engine, database=None, path=None, server=None, compression="zstd",
                 compression_level=None, dump_format=None, jobs=1, tmp_dir=None, extra_args=()):
        super().__init__(service, engine, database, path)
        if engine == "postgresql":
            self.dump_format = dump_format or "custom"
            if self.dump_format not in ("custom", "directory"):
                raise ParameterError("format must be custom or directory for engine postgresql")
            if server is None:
                raise ParameterError("PostgreSQL connection options are required for engine postgresql")
        else:
            if dump_format not in (None, self.own_format):
                raise ParameterError("format does not apply to engine %s" % engine)
            self.dump_format = self.own_format
        check_jobs(jobs)
        if jobs > 1 and self.dump_format != "directory":
            raise ParameterError("jobs %d needs format: directory (pg_dump runs a custom-format stream with one job)"
                                 % jobs)
        self.server = server
        self.compression = compression
        self.compression_level = check_compression_level(compression, compression_level)
        self.jobs = jobs
        self.tmp_dir = tmp_dir
        self.extra_args, self.selection = parse_pg_dump_options(extra_args)
        if (self.extra_args and engine != "postgresql"):
            raise ParameterError("pg_dump_options apply to engine postgresql only")

    def require_path(self):
        if self.engine == "sqlite" and not self.path:
            raise ParameterError("path (the SQLite database file) is required for engine sqlite")
        return self.path

    def source(self):
        """Where the data comes from, as recorded in the manifest: the PostgreSQL server and
        database, or the SQLite file (None for other engines)."""
        return self.server.describe(self.database) if self.engine == "postgresql" else self.path


def check_compression_level(compression, level):
    """The level to use; ParameterError for a level the compressor does not have."""
    if compression not in DEFAULT_LEVELS:
        raise ParameterError("compression must be one of %s, got %r" % (", ".join(DEFAULT_LEVELS), compression))
    if level is None:
        return DEFAULT_LEVELS[compression]
    if compression == "none":
        raise ParameterError("compression_level %s has no effect with compression: none; leave it unset" % level)
    low, high = LEVEL_RANGES[compression]
    if isinstance(level, bool) or not isinstance(level, int) or not low <= level <= high:
        raise ParameterError("compression_level must be %d to %d for %s, got %r" % (low, high, compression, level))
    return level


def check_jobs(jobs, what="jobs"):
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ParameterError("%s must be at least 1 (1: no parallelism), got %r" % (what, jobs))
    limit = min(MAX_JOBS, 4 * (os.cpu_count() or 1))
    if jobs > limit:
        raise ParameterError("%s %d is more than this host can use (at most %d: four per CPU, %d CPUs, and never "
                             "more than %d)" % (what, jobs, limit, os.cpu_count() or 1, MAX_JOBS))
    return jobs


def check_free_connections(server, database, jobs, error_cls):
    """Refuse ``jobs`` parallel workers (jobs + 1 connections) that would take the server's last
    free connections from its other clients (a tenth of max_connections, at least 3, stays free)."""
    if jobs <= 1:
        return
    row = server.query_rows(database, "SELECT current_setting('max_connections')::int AS max, "
                                      "current_setting('superuser_reserved_connections')::int AS reserved, "
                                      "(SELECT count(*) FROM pg_stat_activity) AS used")[0]
    free = row["max"] - row["reserved"] - row["used"]
    keep = max(3, row["max"] // 10)
    if jobs + 1 > free - keep:
        raise error_cls("jobs %d would open %d connections to %s, which has %d free (max_connections %d, %d in use); "
                        "at most %d jobs leave %d for its other clients"
                        % (jobs, jobs + 1, server.describe(), free, row["max"], row["used"],
                           max(1, free - keep - 1), keep))


def parse_pg_dump_options(options):
    """(pg_dump arguments, selection) from pg_dump_options.  ``selection`` maps table, exclude_table,
    exclude_data, schema and exclude_schema to their patterns; ParameterError for options the
    module sets itself or that would make a backup without data."""
    args = list(options or ())
    selection = {}
    index = 0
    while index < len(args):
        option = args[index]
        name, value = (option.split("=", 1) + [None])[:2] if option.startswith("--") else (option, None)
        if not option.startswith("--") and len(option) > 2 and option.startswith("-"):
            name, value = option[:2], option[2:]
        if name in FORBIDDEN_PG_DUMP_OPTIONS:
            raise ParameterError("pg_dump_options may not contain %s: the module sets format, compression, output, "
                                 "connection and what a backup holds (data) itself" % name)
        if name in SELECTION_OPTIONS:
            if value is None:
                if index + 1 >= len(args):
                    raise ParameterError("pg_dump_options: %s needs a pattern" % name)
                index += 1
                value = args[index]
            selection.setdefault(SELECTION_OPTIONS[name], []).append(value)
        index += 1
    return args, selection


def name_pattern_regexes(pattern):
    """(schema regex or None, name regex) of a psql/pg_dump name pattern, as pg_dump builds them:
    '*' and '?' are wildcards, '.' separates schema and name, double quotes keep case and quote
    the wildcards, upper case folds to lower outside quotes."""
    parts, current, quoted = [], [], False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if quoted and char == '"' and pattern[index + 1:index + 2] == '"':
            current.append('"')
            index += 1
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "*":
            current.append(".*")
        elif not quoted and char == "?":
            current.append(".")
        elif not quoted and char == ".":
            parts.append("".join(current))
            current = []
        elif char == "$" or char in "[]" or (quoted and char in "|*+?()[]{}.^\\"):
            current.append("\\" + char)
        else:
            current.append(char.lower() if not quoted else char)
        index += 1
    parts.append("".join(current))
    name = "^(%s)$" % parts[-1]
    schema = "^(%s)$" % parts[-2] if len(parts) > 1 else None
    return schema, name


def _matching_tables(cur, patterns, schema_only=False):
    """(schema, table) of the user tables matching any of ``patterns`` (schema patterns with
    ``schema_only``), resolved by the server in the dump's snapshot, as pg_dump resolves them."""
    found = set()
    for pattern in patterns:
        schema, name = name_pattern_regexes(pattern)
        if schema_only:
            cur.execute(TABLES_SQL + " AND n.nspname ~ %s", (name,))
        elif schema is not None:
            cur.execute(TABLES_SQL + " AND n.nspname ~ %s AND c.relname ~ %s", (schema, name))
        else:
            cur.execute(TABLES_SQL + " AND pg_catalog.pg_table_is_visible(c.oid) AND c.relname ~ %s", (name,))
        found.update(tuple(row) for row in cur.fetchall())
    return found


TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'"""


def dump_contents(cur, selection):
    """What a dump with ``selection`` holds: (tables whose rows it holds, tables it holds without
    their rows), each a sorted list of (schema, table); (None, []) when it holds every table."""
    if not selection:
        return None, []
    every = _matching_tables(cur, ["*.*"])
    if selection.get("table"):
        # pg_dump: with -t, -n and -N have no effect.
        included = _matching_tables(cur, selection["table"])
    else:
        included = set(every)
        if selection.get("schema"):
            included &= _matching_tables(cur, selection["schema"], schema_only=True)
        if selection.get("exclude_schema"):
            included -= _matching_tables(cur, selection["exclude_schema"], schema_only=True)
    included -= _matching_tables(cur, selection.get("exclude_table", []))
    no_data = included & _matching_tables(cur, selection.get("exclude_data", []))
    return sorted(included - no_data), sorted(no_data)


def list_backups(store, identity):
    """Candidate catalog entries of an identity (label match; see manifest_matches)."""
    return manifests.catalog(store.list(identity.folder), identity.service, identity.engine, identity.database)


def entry_manifest(store, entry):
    """The checked manifest of a complete entry, read once."""
    if entry.manifest is None:
        entry.manifest = manifests.load_manifest(store.read_bytes(entry.manifest_key),
                                                 store.location(entry.manifest_key))
    return entry.manifest


def matching_backups(store, identity, source=None):
    """Complete backups of exactly this engine and database (and ``source``), newest first, with
    their manifests read; a manifest that cannot be read is not a match."""
    found = []
    for entry in list_backups(store, identity):
        if not entry.complete:
            continue
        try:
            manifest = entry_manifest(store, entry)
        except IntegrityError:
            continue
        if manifests.manifest_matches(manifest, identity.engine, identity.database, source):
            found.append(entry)
    return found


def catalog_entries(store, service, engine=None, database=None):
    """A service's backups for a listing, newest first; with ``database``, the complete ones are
    those whose manifest names exactly that database (and ``engine``), the incomplete ones those
    whose label may name it (they have no manifest to ask)."""
    entries = manifests.catalog(store.list(manifests.check_service(service) + "/"), service, engine, database)
    if not database:
        return entries
    kept = []
    for entry in entries:
        if entry.complete:
            try:
                manifest = entry_manifest(store, entry)
            except IntegrityError:
                continue
            if manifest.get("database") != database or (engine and manifest.get("engine") != engine):
                continue
        kept.append(entry)
    return kept


def resolve_backup(store, identity, backup_id=None, error_cls=RestoreError):
    """The catalog entry and checked manifest of the backup to restore or verify.

    Refuses an incomplete backup, one whose stored size already differs from its manifest, and
    one whose manifest names another engine or database.  ``error_cls`` is the caller's area.
    """
    where = store.location(identity.folder)
    if backup_id:
        manifests.parse_backup_id(backup_id)
        entries = manifests.catalog(store.list(identity.folder), identity.service)
        entry = manifests.find_entry(entries, backup_id)
        if entry is None:
            raise error_cls("backup %s not found in %s" % (backup_id, where))
    else:
        entry = None
        for candidate in list_backups(store, identity):
            if not candidate.complete:
                continue
            try:
                manifest = entry_manifest(store, candidate)
            except IntegrityError:
                manifest = None
            if manifest is None or manifests.manifest_matches(manifest, identity.engine, identity.database):
                entry = candidate  # an unreadable manifest is refused below, not skipped silently
                break
        if entry is None:
            raise error_cls("no complete %s backup of %s in %s" % (identity.engine, identity.database, where))
    if entry.manifest_key is None:
        raise IntegrityError("backup %s has no manifest: it is incomplete (interrupted, or still being written); "
                             "refusing it" % entry.backup_id)
    if entry.data_key is None:
        raise IntegrityError("backup %s has a manifest but its data object is missing; refusing it" % entry.backup_id)
    manifest = entry_manifest(store, entry)
    if manifest["id"] != entry.backup_id or manifest["object"] != entry.data_key:
        raise IntegrityError("manifest %s describes %s, not %s: refusing it"
                             % (store.location(entry.manifest_key), manifest["object"], entry.data_key))
    if not manifests.manifest_matches(manifest, identity.engine, identity.database):
        raise error_cls("backup %s is a %s backup of database %r, not of %s database %r: refusing it; to use it "
                        "anyway, name its database with source_database: %s"
                        % (entry.backup_id, manifest["engine"], manifest["database"], identity.engine,
                           identity.database, manifest["database"]))
    if manifest["size"] != entry.data_size:
        raise IntegrityError("backup object %s is %d bytes but its manifest says %d: it is truncated or was replaced; "
                             "refusing it" % (store.location(entry.data_key), entry.data_size, manifest["size"]))
    require_libraries(compression=manifest["compression"])  # before anything is read or changed
    return entry, manifest


def plan_backup(store, spec):
    """Check mode: what a backup would write, after checking the source and store are usable."""
    store.check_access(write=True)
    if spec.engine == "postgresql":
        spec.server.connect(spec.database).close()
        spec.server.tool("pg_dump")
        check_free_connections(spec.server, spec.database, spec.jobs, BackupError)
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
        check_free_connections(spec.server, spec.database, spec.jobs, BackupError)
        stored = _dump_postgres(store, spec, key)
    else:
        sqlite.check_database_file(spec.path)
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
        "source": spec.source(),
        "host": socket.gethostname(),
        "created_by": "%s %s" % (created_by, COLLECTION_VERSION),
    }
    if stored.get("data_excluded") is not None:
        # pg_dump_options chose the tables: row_counts holds the tables whose rows the dump holds;
        # these tables are in the dump without their rows and are not compared.
        manifest["data_excluded"] = stored["data_excluded"]
        manifest["pg_dump_selection"] = spec.selection
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
            counts = pool.submit(_snapshot_counts, snapshot, spec)
            if spec.dump_format == "directory":
                size, sha256, raw_size = _dump_postgres_directory(store, spec, key, env, snapshot.snapshot_id)
            else:
                dump = ProcessOutput(pg_dump.dump_argv(server, spec.database, snapshot.snapshot_id, "custom",
                                                       extra_args=spec.extra_args),
                                     env, BackupError, "pg_dump of %s" % server.describe(spec.database))
                size, sha256 = stream_process_to_store(store, key, dump, spec)
                raw_size = dump.size
            row_counts, data_excluded = counts.result()
    return {"size": size, "sha256": sha256, "raw_size": raw_size, "row_counts": row_counts,
            "data_excluded": data_excluded,
            "server_version": snapshot.server_version, "tool_versions": {"pg_dump": tool_version}}


def _snapshot_counts(snapshot, spec):
    """(row counts of the tables whose rows the dump holds, keys of the tables it holds without
    rows or None when pg_dump_options select nothing), counted in the dump's snapshot."""
    if not spec.selection:
        return snapshot.row_counts(), None
    try:
        with snapshot.conn.cursor() as cur:
            with_rows, without_rows = dump_contents(cur, spec.selection)
            counts = postgres.count_rows(cur, with_rows)
    except postgres.psycopg2.Error as exc:
        raise DatabaseError("counting rows in %s failed: %s"
                            % (spec.server.describe(spec.database), " ".join(str(exc).split()))) from None
    return counts, [manifests.table_key(schema, table) for schema, table in without_rows]


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
    """Backups retention deletes: only complete backups of exactly this engine, database and
    source (SQLite file, PostgreSQL server), as their manifests say."""
    if keep_last is None and keep_days is None:
        return []
    entries = matching_backups(store, spec, source=spec.source())
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
