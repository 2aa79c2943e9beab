# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restoring and verifying backups.

Nothing is changed before the backup object has matched its manifest:
- SQLite: the object is decompressed into a temporary file beside the target, checked (sha256,
  size, SQLite integrity, row counts) and only then swapped in.
- PostgreSQL custom format in one transaction: the object streams into pg_restore, but the last
  bytes are held back until the sha256 and size have matched, so a corrupt or truncated object
  makes pg_restore die before COMMIT and the transaction changes nothing.
- PostgreSQL otherwise: the object is checked in a full pass first, then restored.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time

from ansible_collections.runbook.ops.plugins.module_utils import _manifest as manifests
from ansible_collections.runbook.ops.plugins.module_utils import _pg_dump as pg_dump
from ansible_collections.runbook.ops.plugins.module_utils import _postgres as postgres
from ansible_collections.runbook.ops.plugins.module_utils import _sqlite as sqlite
from ansible_collections.runbook.ops.plugins.module_utils._backup import check_free_connections, resolve_backup
from ansible_collections.runbook.ops.plugins.module_utils._errors import (
    DatabaseError, IntegrityError, LockError, ParameterError, RestoreError, RunbookError, VerificationError)
from ansible_collections.runbook.ops.plugins.module_utils._streams import (
    CHUNK_SIZE, VerifyingReader, decompressing_reader, exit_status, stderr_tail)

# pg_restore cannot finish without the final bytes of an archive: holding this much back
# until the checksum matched keeps a bad object from ever reaching COMMIT.
HOLDBACK_BYTES = 256 << 10


def _open_verified(store, manifest):
    return VerifyingReader(store.open(manifest["object"]), manifest["size"], manifest["sha256"],
                           store.location(manifest["object"]))


def check_object(store, manifest):
    """Read the whole object once and check its size and sha256."""
    reader = _open_verified(store, manifest)
    try:
        reader.finish()
    finally:
        reader._source.close()  # pylint: disable=protected-access


def _feed(store, manifest, write, holdback):
    """Decompress the verified object into ``write``; the last ``holdback`` bytes are written
    only after size and sha256 matched the manifest."""
    verified = _open_verified(store, manifest)
    try:
        plain = decompressing_reader(verified, manifest["compression"])
        pending = bytearray()
        while True:
            try:
                data = plain.read(CHUNK_SIZE)
            except IntegrityError:
                # The decompressor noticed first; the sha256 against the manifest is the finding that
                # names the object and says what is wrong with it, so report that when it fails too.
                verified.finish()
                raise
            if not data:
                break
            pending += data
            if len(pending) >= holdback + CHUNK_SIZE:
                cut = len(pending) - holdback
                write(bytes(pending[:cut]))
                del pending[:cut]
        verified.finish()
        if pending:
            write(bytes(pending))
    finally:
        verified._source.close()  # pylint: disable=protected-access


def pipe_into(argv, env, store, manifest, holdback, what):
    """Run ``argv`` and stream the backup into its stdin; RestoreError if it fails."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        try:
            _feed(store, manifest, proc.stdin.write, holdback)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the process stopped reading: its exit status and stderr say why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
        if code != 0:
            raise RestoreError("%s failed (%s): %s" % (what, exit_status(code), stderr_tail(errors)))


def _checked_plan(store, manifest, result, read_object):
    """Check mode: with ``read_object``, read the whole backup and check its sha256, so that a
    corrupt backup is refused before anyone stops a writer for it."""
    if read_object:
        check_object(store, manifest)
    result["checksum"] = "ok" if read_object else "unchecked"
    return result


def _row_mismatches(expected, actual):
    problems = []
    for table, count in sorted(expected.items()):
        if table not in actual:
            problems.append("table %s is missing (manifest: %d rows)" % (table, count))
        elif actual[table] != count:
            problems.append("table %s has %d rows, manifest says %d" % (table, actual[table], count))
    return problems


# --- PostgreSQL -----------------------------------------------------------------------------

def restore_postgres(store, manifest, server, database, clean=True, single_transaction=True, no_owner=False,
                     jobs=1, tmp_dir=None):
    """Restore a checked PostgreSQL backup into an existing database."""
    where = server.describe(database)
    with pg_dump.tool_env(server) as env:
        if manifest["dump_format"] == "directory":
            workdir = tempfile.mkdtemp(prefix="rbops-restore-", dir=tmp_dir)
            try:
                target = os.path.join(workdir, "dump")
                os.mkdir(target, 0o700)
                pipe_into(["tar", "-C", target, "-xf", "-"], None, store, manifest, 0, "unpacking the backup")
                argv = pg_dump.restore_argv(server, database, clean, single_transaction, no_owner, jobs, target)
                with tempfile.TemporaryFile() as errors:
                    code = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors,
                                          check=False).returncode
                    if code != 0:
                        raise RestoreError("pg_restore into %s failed (%s): %s" % (where, exit_status(code), stderr_tail(errors)))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            return
        if not single_transaction:
            check_object(store, manifest)  # pg_restore commits as it goes: check everything first
        argv = pg_dump.restore_argv(server, database, clean, single_transaction, no_owner)
        pipe_into(argv, env, store, manifest, HOLDBACK_BYTES, "pg_restore into %s" % where)


REPLACE_MODES = ("swap", "clean")


def restore_postgres_database(store, identity, server, database, backup_id=None, create_database=False, force=False,
                              replace="swap", drop_previous=False, single_transaction=True, no_owner=False, jobs=1,
                              tmp_dir=None, check_mode=False, check_mode_checksum=True):
    """The db_restore flow for PostgreSQL; returns what was (or would be) done.

    An empty or new target is restored into directly.  A non-empty one (with ``force``) is
    replaced by ``replace``: ``swap`` restores into a new database, checks its row counts, then
    renames the live one to ``<db>_pre_restore_<stamp>`` and the new one into its place;
    ``clean`` runs pg_restore --clean --if-exists over the live database, which drops only
    the objects the backup holds.
    """
    entry, manifest = resolve_backup(store, identity, backup_id, RestoreError)
    if manifest["engine"] != "postgresql":
        raise RestoreError("backup %s is a %s backup, not postgresql" % (entry.backup_id, manifest["engine"]))
    if replace not in REPLACE_MODES:
        raise ParameterError("replace must be one of %s, got %r" % (", ".join(REPLACE_MODES), replace))
    if jobs > 1 and manifest["dump_format"] != "directory":
        raise ParameterError("jobs %d needs a directory-format backup; %s is %s (pg_restore reads it as a stream, "
                             "with one job)" % (jobs, entry.backup_id, manifest["dump_format"]))
    postgres.check_database_name(database)
    check_free_connections(server, "postgres", jobs, RestoreError)
    exists = server.database_exists(database)
    if not exists and not create_database:
        raise RestoreError("database %s does not exist: create it or set create_database: true"
                           % server.describe(database))
    relations = server.relation_count(database) if exists else 0
    if relations and not force:
        raise RestoreError("database %s is not empty (%d tables, views or sequences): refusing to restore over it; "
                           "set force: true to replace its contents with backup %s"
                           % (server.describe(database), relations, entry.backup_id))
    mode = replace if relations else ("into_empty" if exists else "create")
    result = {"backup": summary(store, manifest), "target": server.describe(database), "mode": mode,
              "created_database": not exists, "replaced_relations": relations, "previous_database": None,
              "not_removed": [], "data_excluded": manifest.get("data_excluded", [])}
    if mode == "swap":
        swap = DatabaseSwap(server, database)
        swap.check()
        result["previous_database"] = swap.previous
    if check_mode:
        if mode == "swap" and drop_previous:
            result["previous_database"] = None
        return _checked_plan(store, manifest, result, check_mode_checksum)
    clock = time.monotonic()
    if mode == "swap":
        _restore_swap(store, manifest, server, swap, result, drop_previous, single_transaction, no_owner, jobs, tmp_dir)
    else:
        _restore_in_place(store, manifest, server, database, exists, result, single_transaction, no_owner, jobs,
                          tmp_dir)
    result["duration_seconds"] = round(time.monotonic() - clock, 3)
    return result


def _compare_counts(manifest, actual):
    """Row-count mismatches, and the tables the restored database holds that the backup does not."""
    excluded = set(manifest.get("data_excluded") or ())
    expected = {table: count for table, count in manifest["row_counts"].items() if table not in excluded}
    extra = sorted(set(actual) - set(expected) - excluded)
    return _row_mismatches(expected, actual), extra


def _restore_in_place(store, manifest, server, database, exists, result, single_transaction, no_owner, jobs, tmp_dir):
    """pg_restore into the target itself (--clean over a non-empty one)."""
    where = server.describe(database)
    atomic = single_transaction and jobs == 1
    if not exists:
        server.create_database(database)
    try:
        try:
            restore_postgres(store, manifest, server, database, clean=exists and result["replaced_relations"] > 0,
                             single_transaction=single_transaction, no_owner=no_owner, jobs=jobs, tmp_dir=tmp_dir)
        except RestoreError as exc:
            if exists and not atomic:
                raise RestoreError("%s; the restore did not run in a single transaction, so what it restored before the "
                                   "failure is committed: database %s WAS CHANGED and is incomplete" % (exc, where),
                                   changed=True, **result) from None
            raise
        result["row_counts"] = server.row_counts(database)
        mismatches, extra = _compare_counts(manifest, result["row_counts"])
        result["not_removed"] = extra
        if mismatches:
            if exists:
                raise RestoreError("backup %s was restored into %s (committed: the database WAS CHANGED) but the row "
                                   "counts differ from the manifest: %s"
                                   % (manifest["id"], where, "; ".join(mismatches)), changed=True, **result)
            raise RestoreError("backup %s restored into %s but the row counts differ from the manifest: %s (the "
                               "database this restore created was dropped again)"
                               % (manifest["id"], where, "; ".join(mismatches)), **result)
    except BaseException:
        if not exists:
            server.drop_database(database)  # leave nothing half-made behind
        raise


def _restore_swap(store, manifest, server, swap, result, drop_previous, single_transaction, no_owner, jobs, tmp_dir):
    """Restore into a new database, check it, then swap it in by renaming."""
    server.create_database(swap.new, owner=swap.owner_for_new())
    try:
        restore_postgres(store, manifest, server, swap.new, clean=False, single_transaction=single_transaction,
                         no_owner=no_owner, jobs=jobs, tmp_dir=tmp_dir)
        counts = server.row_counts(swap.new)
        mismatches, _extra = _compare_counts(manifest, counts)
        if mismatches:
            raise RestoreError("backup %s restored into the new database %s but the row counts differ from the "
                               "manifest: %s; the live database %s was not touched"
                               % (manifest["id"], swap.new, "; ".join(mismatches), result["target"]), **result)
        swap.swap()
    except RestoreError as exc:
        server.drop_database(swap.new)
        if "was not touched" in str(exc) or "nothing was changed" in str(exc):
            raise
        raise RestoreError("%s; the restore ran into the new database %s, which was dropped: the live database %s "
                           "was not touched" % (exc, swap.new, result["target"]), **exc.details) from None
    except BaseException:
        server.drop_database(swap.new)
        raise
    result["row_counts"] = counts
    if drop_previous:
        server.drop_database(swap.previous)
        result["previous_database"] = None
    result["not_carried_over"] = swap.not_carried_over


class DatabaseSwap:
    """Replace a database by another one by renaming: the live one becomes ``previous``.

    Needs: CREATEDB and ownership of the live database (or superuser); terminating other
    sessions needs the same role, pg_signal_backend or superuser."""

    def __init__(self, server, database, now=None):
        self.server = server
        self.database = database
        stamp = (now or manifests.utcnow()).strftime(manifests.STAMP_FORMAT)
        self.previous = _derived_name(database, "_pre_restore_" + stamp)
        self.new = _derived_name(database, "_rbops_new_" + secrets.token_hex(4))
        self.owner = None
        self.current_user = None
        self.not_carried_over = []

    def _rows(self, query, params=None):
        return self.server.query_rows("postgres", query, params)

    def check(self):
        """Refuse before anything changes when the swap cannot work."""
        rows = self._rows("SELECT pg_catalog.pg_get_userbyid(d.datdba) AS owner, current_user AS me, r.rolsuper AS super, "
                          "r.rolcreatedb AS createdb, pg_catalog.pg_has_role(current_user, d.datdba, 'MEMBER') AS owns, "
                          "d.datacl IS NOT NULL AS acl, EXISTS (SELECT 1 FROM pg_catalog.pg_db_role_setting s "
                          "WHERE s.setdatabase = d.oid) AS settings "
                          "FROM pg_catalog.pg_database d, pg_catalog.pg_roles r "
                          "WHERE d.datname = %s AND r.rolname = current_user", (self.database,))
        if not rows:
            raise RestoreError("database %s does not exist" % self.server.describe(self.database))
        row = rows[0]
        if not (row["super"] or (row["createdb"] and row["owns"])):
            raise RestoreError("replace: swap needs CREATEDB and ownership of %s (owner %s) for user %s, or a superuser; "
                               "grant them, or use replace: clean (pg_restore --clean over the live database, which "
                               "leaves objects that are not in the backup)"
                               % (self.server.describe(self.database), row["owner"], row["me"]))
        if self._rows("SELECT 1 AS taken FROM pg_catalog.pg_database WHERE datname = %s", (self.previous,)):
            raise RestoreError("database %s already exists: a restore in this second kept it; try again"
                               % self.previous)
        self.owner, self.current_user = row["owner"], row["me"]
        if row["acl"]:
            self.not_carried_over.append("privileges granted on database %s (GRANT ... ON DATABASE)" % self.database)
        if row["settings"]:
            self.not_carried_over.append("settings of database %s (ALTER DATABASE ... SET)" % self.database)

    def owner_for_new(self):
        return self.owner if self.owner and self.owner != self.current_user else None

    def _execute(self, cur, statement, what):
        try:
            cur.execute(statement)
        except postgres.psycopg2.Error as exc:
            raise RestoreError("%s failed: %s" % (what, " ".join(str(exc).split()))) from None

    def _identifier(self, name):
        return postgres.sql.Identifier(name)

    def swap(self, attempts=10):
        """Block new connections to the live database, end its sessions, rename it to
        ``previous`` and the new one to its name; on failure put everything back."""
        sql = postgres.sql
        live, previous, new = (self._identifier(n) for n in (self.database, self.previous, self.new))
        with contextlib.closing(self.server.connect("postgres")) as conn, conn.cursor() as cur:
            self._execute(cur, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(live),
                          "blocking new connections to %s" % self.database)
            renamed = False
            try:
                for attempt in range(attempts):
                    cur.execute("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                                "WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()", (self.database,))
                    try:
                        cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(live, previous))
                        renamed = True
                        break
                    except postgres.psycopg2.Error as exc:
                        if attempt == attempts - 1:
                            raise RestoreError("renaming %s to %s failed: %s; nothing was changed"
                                               % (self.database, self.previous, " ".join(str(exc).split()))) from None
                        time.sleep(0.5)
                self._execute(cur, sql.SQL("ALTER DATABASE {} RENAME TO {}").format(new, live),
                              "renaming the restored database %s to %s" % (self.new, self.database))
            except BaseException:
                if renamed:
                    cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(previous, live))
                cur.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(live))
                raise
            self._execute(cur, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(previous),
                          "allowing connections to %s again" % self.previous)


def _derived_name(database, suffix):
    """``database`` + ``suffix``, the database part shortened to fit PostgreSQL's 63 bytes."""
    room = 63 - len(suffix.encode("utf-8"))
    head = database.encode("utf-8")[:room].decode("utf-8", "ignore")
    return head + suffix


# --- SQLite ---------------------------------------------------------------------------------

def unpack_sqlite(store, manifest, directory, check_counts=True):
    """Decompress a SQLite backup into a new 0600 file in ``directory`` and check it fully
    (sha256, size, SQLite integrity and, unless the caller reports them itself, row counts);
    returns the file's path."""
    path = os.path.join(directory, ".rbops-restore-%s.sqlite3" % secrets.token_hex(4))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            _feed(store, manifest, handle.write, 0)
            handle.flush()
            os.fsync(handle.fileno())
        problems = sqlite.integrity_problems(path, thorough=True)
        if problems:
            raise IntegrityError("backup %s fails SQLite's integrity_check: %s"
                                 % (manifest["id"], "; ".join(problems[:5])))
        mismatches = _row_mismatches(manifest["row_counts"], sqlite.row_counts(path)) if check_counts else []
        if mismatches:
            raise IntegrityError("backup %s does not hold what its manifest says: %s"
                                 % (manifest["id"], "; ".join(mismatches)))
    except BaseException:
        os.unlink(path)
        raise
    finally:
        # Read-only connections to a WAL-mode file leave empty -wal/-shm files named after it.
        sqlite.remove_side_files(path)
    return path


def restore_sqlite_file(store, identity, target, backup_id=None, force=False, keep_previous=True, lock_path=None,
                        stop_command=None, start_command=None, stop_timeout=30, check_mode=False,
                        check_mode_checksum=True):
    """The db_restore flow for SQLite; returns what was (or would be) done."""
    if stop_timeout is None or stop_timeout < 0:
        raise ParameterError("stop_timeout must be 0 or more seconds, got %r" % (stop_timeout,))
    if os.path.isdir(target):
        raise RestoreError("%s is a directory, not a SQLite database file: give the database file as path" % target)
    entry, manifest = resolve_backup(store, identity, backup_id, RestoreError)
    if manifest["engine"] != "sqlite":
        raise RestoreError("backup %s is a %s backup, not sqlite" % (entry.backup_id, manifest["engine"]))
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise RestoreError("directory %s of the restore target does not exist" % directory)
    tables = sqlite.table_count(target)
    if tables and not force:
        what = "is not a readable SQLite database" if tables < 0 else "is not empty (%d tables)" % tables
        raise RestoreError("%s %s: refusing to restore over it; set force: true to replace it with backup %s "
                           "(the current file is kept beside it)" % (target, what, entry.backup_id))
    lock_path = lock_path or sqlite.default_lock_path(target)
    holder = sqlite.lock_holder(lock_path)
    if holder is not None and not stop_command:
        raise LockError("%s is in use: the writer lock %s is held by pid %s; stop the service first (the restore role "
                        "does) or give stop_command" % (target, lock_path, holder if holder > 0 else "unknown"))
    stamp = manifests.utcnow().strftime(manifests.STAMP_FORMAT)
    previous = "%s.pre-restore-%s" % (target, stamp) if keep_previous and os.path.exists(target) else None
    result = {"backup": summary(store, manifest), "target": target, "previous": previous, "lock_file": lock_path,
              "writer_pid": holder, "writer_stopped": False}
    if check_mode:
        return _checked_plan(store, manifest, result, check_mode_checksum)
    clock = time.monotonic()
    unpacked = unpack_sqlite(store, manifest, directory)
    try:
        if holder is not None:
            _run_command(stop_command, "stop_command")
            result["writer_stopped"] = True
            sqlite.wait_for_release(lock_path, stop_timeout)
        with sqlite.WriterLock(lock_path):
            result["previous"] = sqlite.replace_database(unpacked, target, previous)
            # Counted before the service starts writing again: what was restored, not what it did since.
            result["row_counts"] = sqlite.row_counts(target)
    finally:
        if os.path.exists(unpacked):
            os.unlink(unpacked)
        if start_command:
            _run_command(start_command, "start_command")
    result["duration_seconds"] = round(time.monotonic() - clock, 3)
    return result


def _run_command(argv, what):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          check=False, timeout=600)
    if proc.returncode != 0:
        output = proc.stdout.decode("utf-8", "replace").strip()[-1000:]
        raise RestoreError("%s %s failed (%s): %s" % (what, argv[0], exit_status(proc.returncode), output))


# --- verification ---------------------------------------------------------------------------

def values_match(actual, expected):
    """Assertion results compare as numbers when both sides are numbers, else as text."""
    if expected is None or actual is None:
        return actual is expected
    if isinstance(expected, bool) or isinstance(actual, bool):
        return str(actual).lower() in (str(expected).lower(), "t" if expected is True else "f")
    try:
        return float(actual) == float(expected)
    except (TypeError, ValueError):
        return str(actual) == str(expected)


def verify_backup(store, identity, server=None, backup_id=None, assertions=(), max_age=None, max_restore_seconds=None,
                  jobs=1, tmp_dir=None):
    """Restore a backup into scratch space, compare it with its manifest and the assertions,
    measure RPO and RTO, and always remove the scratch space.  Returns the report; raises
    VerificationError (with the report) when any check fails."""
    try:
        entry, manifest = resolve_backup(store, identity, backup_id, VerificationError)
    except IntegrityError as exc:  # incomplete, truncated or unreadable: a failed check, with a report
        report = {"backup_id": backup_id, "checksum": "failed", "tables": [], "assertions": [],
                  "failures": [str(exc)], "passed": False}
        raise VerificationError("%s failed verification: %s" % ("backup %s" % backup_id if backup_id else
                                                                "the latest backup", exc), report=report) from None
    report = {"backup_id": entry.backup_id, "engine": manifest["engine"], "database": manifest["database"],
              "object": store.location(manifest["object"]), "size": manifest["size"], "sha256": manifest["sha256"],
              "checksum": "unchecked", "tables": [], "assertions": [], "failures": [], "notes": [],
              "data_excluded": manifest.get("data_excluded", [])}
    if report["data_excluded"]:
        report["notes"].append("tables dumped without their rows (pg_dump_options), not compared: %s"
                               % ", ".join(report["data_excluded"]))
    if jobs > 1 and manifest["dump_format"] != "directory":
        report["notes"].append("jobs %d not used: backup %s is %s format, which pg_restore reads as a stream with one "
                               "job" % (jobs, entry.backup_id, manifest["dump_format"]))
        jobs = 1
    age = (manifests.utcnow() - manifests.parse_iso(manifest["started"])).total_seconds()
    report["age_seconds"] = int(age)
    clock = time.monotonic()
    try:
        if manifest["engine"] == "postgresql":
            actual, answers = _verify_in_postgres(store, manifest, server, assertions, report, jobs, tmp_dir)
        else:
            actual, answers = _verify_in_sqlite(store, manifest, assertions, report, tmp_dir)
    except IntegrityError as exc:
        report["checksum"] = "failed"
        report["failures"].append(str(exc))
        raise VerificationError("backup %s failed verification: %s" % (entry.backup_id, exc), report=report) from None
    except RunbookError as exc:
        report["failures"].append(str(exc))
        raise VerificationError("backup %s could not be verified: %s" % (entry.backup_id, exc), report=report) from None
    report["checksum"] = "ok"
    report["restore_seconds"] = round(time.monotonic() - clock, 3)

    check_contents(report, manifest["row_counts"], actual, assertions, answers, set(report["data_excluded"]))
    report["rpo"] = {"max_age_seconds": max_age, "age_seconds": int(age), "ok": max_age is None or age <= max_age}
    if not report["rpo"]["ok"]:
        report["failures"].append("backup is %s old, over the RPO of %s"
                                  % (manifests.human_duration(age), manifests.human_duration(max_age)))
    report["rto"] = {"max_restore_seconds": max_restore_seconds, "restore_seconds": report["restore_seconds"],
                     "ok": max_restore_seconds is None or report["restore_seconds"] <= max_restore_seconds}
    if not report["rto"]["ok"]:
        report["failures"].append("restore took %.1fs, over the RTO of %ss"
                                  % (report["restore_seconds"], max_restore_seconds))
    report["passed"] = not report["failures"]
    if report["failures"]:
        raise VerificationError("backup %s failed verification: %s" % (entry.backup_id, "; ".join(report["failures"])),
                                report=report)
    return report


def check_contents(report, expected_counts, actual, assertions, answers, excluded=(), source="manifest"):
    """Compare restored row counts with the expected ones and the assertions' answers with their
    expected values; fills ``report["tables"]``, ``["assertions"]`` and ``["failures"]``.
    Shared by backup verification and point-in-time recovery (_pgbackrest)."""
    for table, expected in sorted(expected_counts.items()):
        if table in excluded:
            continue
        got = actual.get(table)
        ok = got == expected
        report["tables"].append({"table": table, "expected": expected, "actual": got, "ok": ok})
        if not ok:
            report["failures"].append("table %s has %s rows after restore, %s says %d"
                                      % (table, "no" if got is None else got, source, expected))
    for assertion, answer in zip(assertions, answers):
        name = assertion.get("name") or assertion["query"]
        if isinstance(answer, DatabaseError):
            ok, shown = False, "error: %s" % answer
        else:
            ok, shown = values_match(answer, assertion.get("expected")), answer
        report["assertions"].append({"name": name, "query": assertion["query"],
                                     "expected": assertion.get("expected"), "actual": shown, "ok": ok})
        if not ok:
            report["failures"].append("assertion %r returned %r, expected %r" % (name, shown, assertion.get("expected")))


def ask(run_scalar, assertions):
    """Each assertion's answer, or the DatabaseError its query raised."""
    answers = []
    for assertion in assertions:
        try:
            answers.append(run_scalar(assertion["query"]))
        except DatabaseError as exc:
            answers.append(exc)
    return answers


# A scratch database older than this, with nobody connected, is left over from a verification
# that was killed; the next verification on the server drops it.
STALE_SCRATCH_SECONDS = 24 * 3600
_SCRATCH_STAMP = "%Y%m%dt%H%M%Sz"
_SCRATCH_RE = re.compile(re.escape(postgres.SCRATCH_PREFIX) + r"(?:[a-z0-9_]*_)?(?P<stamp>\d{8}t\d{6}z)_[0-9a-f]{8}")


def scratch_name(database, now=None):
    """``rbops_verify_<label>_<UTC stamp>_<8 hex>``: the stamp lets a later run tell a leftover."""
    stamp = (now or manifests.utcnow()).strftime(_SCRATCH_STAMP)
    label = manifests.legacy_label(database)[:24].lower()  # 13 + 24 + 1 + 16 + 1 + 8 = 63 bytes
    return "%s%s_%s_%s" % (postgres.SCRATCH_PREFIX, label, stamp, secrets.token_hex(4))


def stale_scratch_databases(names, connected, now=None, max_age=STALE_SCRATCH_SECONDS):
    """The scratch databases among ``names`` that a killed verification left: named as
    scratch_name names them, older than ``max_age`` seconds, and with no session (``connected``)."""
    now = now or manifests.utcnow()
    stale = []
    for name in names:
        match = _SCRATCH_RE.fullmatch(name)
        if not match or name in connected:
            continue
        try:
            created = datetime.datetime.strptime(match.group("stamp"), _SCRATCH_STAMP)
        except ValueError:
            continue
        if (now - created.replace(tzinfo=datetime.timezone.utc)).total_seconds() > max_age:
            stale.append(name)
    return sorted(stale)


def drop_stale_scratch(server):
    """Drop the scratch databases killed verifications left on this server; returns their names."""
    like = postgres.SCRATCH_PREFIX.replace("_", "\\_") + "%"
    names = [row["datname"] for row in server.query_rows(
        "postgres", "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s", (like,))]
    connected = {row["datname"] for row in server.query_rows(
        "postgres", "SELECT DISTINCT datname FROM pg_catalog.pg_stat_activity WHERE datname LIKE %s", (like,))}
    dropped = []
    for name in stale_scratch_databases(names, connected):
        server.drop_database(name)
        dropped.append(name)
    return dropped


def _verify_in_postgres(store, manifest, server, assertions, report, jobs, tmp_dir):
    if server is None:
        raise ParameterError("verifying a postgresql backup needs PostgreSQL connection options (the scratch server)")
    check_free_connections(server, "postgres", jobs, VerificationError)
    report["stale_scratch_dropped"] = drop_stale_scratch(server)
    scratch = scratch_name(manifest["database"])
    report["scratch_database"] = scratch
    server.create_database(scratch)
    try:
        restore_postgres(store, manifest, server, scratch, clean=False, single_transaction=jobs == 1,
                         no_owner=True, jobs=jobs, tmp_dir=tmp_dir)
        actual = server.row_counts(scratch)
        answers = ask(lambda query: server.run_scalar(scratch, query), assertions)
    finally:
        server.drop_database(scratch)
        report["scratch_dropped"] = not server.database_exists(scratch)
    return actual, answers


def _verify_in_sqlite(store, manifest, assertions, report, tmp_dir):
    workdir = tempfile.mkdtemp(prefix="rbops-verify-", dir=tmp_dir)
    report["scratch_database"] = workdir
    try:
        path = unpack_sqlite(store, manifest, workdir, check_counts=False)
        actual = sqlite.row_counts(path)
        answers = ask(lambda query: sqlite.run_scalar(path, query), assertions)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        report["scratch_dropped"] = not os.path.exists(workdir)
    return actual, answers


def summary(store, manifest):
    """What a restore reports about the backup it used."""
    described = {"id": manifest["id"], "location": store.location(manifest["object"]), "size": manifest["size"],
                 "sha256": manifest["sha256"], "started": manifest["started"], "engine": manifest["engine"],
                 "database": manifest["database"], "row_counts": manifest["row_counts"]}
    if "files" in manifest:
        described["files"] = manifest["files"]
    return described
