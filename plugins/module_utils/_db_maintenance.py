# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database maintenance for a scheduled window, as a list of steps run in order.

PostgreSQL: VACUUM (ANALYZE), REINDEX CONCURRENTLY of named or bloated indexes after a free-space check,
and a sweep of INVALID indexes (the leftovers ``<index>_ccnew`` / ``_ccold`` of an interrupted REINDEX
CONCURRENTLY are dropped; an interrupted CREATE INDEX CONCURRENTLY is rebuilt).  Every statement runs with
a ``lock_timeout`` and is retried, so maintenance waits behind the service's locks briefly instead of
queueing the service behind it.  SQLite: ``PRAGMA integrity_check`` first (a damaged file is never
vacuumed), then VACUUM and ``PRAGMA optimize`` under the service's writer lock.

A time budget is checked between steps: a step that started finishes, the rest are reported as not run.
Plain Python, no Ansible imports.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time

from ansible_collections.runbook.ops.plugins.module_utils import _sqlite
from ansible_collections.runbook.ops.plugins.module_utils._errors import DatabaseError, MaintenanceError, ParameterError

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # the module reports missing_required_lib before any work
    psycopg2 = None
    sql = None

# The leftovers of an interrupted REINDEX CONCURRENTLY: the new copy being built, or the old one.
LEFTOVER_RE = re.compile(r".+_cc(new|old)\d*")
LOCK_NOT_AVAILABLE = "55P03"

INVALID_INDEXES_SQL = """
SELECT n.nspname AS schema, c.relname AS index, t.relname AS "table", pg_relation_size(c.oid) AS bytes,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = c.oid) AS building
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
ORDER BY 1, 2
"""

INDEX_SQL = """
SELECT n.nspname AS schema, c.relname AS index, t.relname AS "table", pg_relation_size(c.oid) AS bytes,
       i.indisvalid AS valid, am.amname AS method
FROM pg_class c
JOIN pg_index i ON i.indexrelid = c.oid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
WHERE c.relkind = 'i' AND n.nspname = %s AND c.relname = %s
"""

# B-tree indexes over a minimum size with their leaf density (pgstattuple's pgstatindex): a fresh
# index is packed to its fillfactor (90 %), so the bloat estimate is how far the density fell below it.
BLOATED_INDEXES_SQL = """
SELECT n.nspname AS schema, c.relname AS index, t.relname AS "table", pg_relation_size(c.oid) AS bytes,
       (pgstatindex(c.oid::regclass)).avg_leaf_density AS density
FROM pg_class c
JOIN pg_index i ON i.indexrelid = c.oid AND i.indisvalid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  AND pg_relation_size(c.oid) >= %s
ORDER BY pg_relation_size(c.oid) DESC
"""


class Step:
    """One maintenance action on one target and, once run, how it went."""

    def __init__(self, action, target, reason="", bytes_before=None):
        self.action = action
        self.target = target
        self.reason = reason
        self.outcome = "planned"
        self.detail = ""
        self.seconds = None
        self.attempts = 0
        self.bytes_before = bytes_before
        self.bytes_after = None

    def as_dict(self):
        out = {"action": self.action, "target": self.target, "reason": self.reason, "outcome": self.outcome,
               "detail": self.detail, "seconds": self.seconds, "attempts": self.attempts}
        if self.bytes_before is not None:
            out["bytes_before"] = self.bytes_before
            out["bytes_after"] = self.bytes_after
        return out


class Budget:
    """The time budget (0: none), checked between steps."""

    def __init__(self, seconds, clock=time.monotonic):
        if seconds < 0:
            raise ParameterError("time_budget must be 0 (no limit) or more seconds, got %r" % seconds)
        self.seconds = seconds
        self.clock = clock
        self.started = clock()

    def spent(self):
        return bool(self.seconds) and self.clock() - self.started >= self.seconds


def bloat_percent(density, fillfactor=90.0):
    """The share of a b-tree's leaf space that a rebuild would give back (0 for a packed index)."""
    if density is None or density <= 0:
        return 0.0
    return round(max(0.0, 100.0 - float(density) * 100.0 / fillfactor), 1)


def split_name(name):
    """'schema.index' or 'index' (schema public) -> (schema, index)."""
    if not name or name.count(".") > 1:
        raise ParameterError("an index is named 'index' or 'schema.index', got %r" % (name,))
    return tuple(name.split(".")) if "." in name else ("public", name)


def qualified(schema, name):
    return "%s.%s" % (schema, name)


def free_bytes(path):
    return shutil.disk_usage(path).free


def run_steps(steps, budget, runner):
    """Run each step with ``runner(step)`` until the budget is spent; a failed step does not stop the rest.

    Returns whether the budget stopped the run."""
    for index, step in enumerate(steps):
        if budget.spent():
            for rest in steps[index:]:
                rest.outcome = "not_run"
                rest.detail = "the time budget of %d s was spent" % budget.seconds
            return True
        started = time.monotonic()
        try:
            runner(step)
            if step.outcome == "planned":
                step.outcome = "done"
        except (MaintenanceError, DatabaseError) as exc:
            step.outcome = "failed"
            step.detail = str(exc)
        step.seconds = round(time.monotonic() - started, 2)
    return False


class PgMaintenance:
    """Plans and runs the PostgreSQL steps on one database over one autocommit connection."""

    def __init__(self, server, database, lock_timeout=5, retries=3, retry_delay=5.0, disk_headroom=1.2,
                 disk_check=True, sleep=time.sleep):
        if lock_timeout < 0 or retries < 0 or retry_delay < 0:
            raise ParameterError("lock_timeout, retries and retry_delay must be 0 or more")
        if disk_headroom < 1:
            raise ParameterError("disk_headroom must be 1 or more (free space as a multiple of the index size), got %r"
                                 % disk_headroom)
        self.server = server
        self.database = database
        self.lock_timeout = lock_timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.disk_headroom = disk_headroom
        self.disk_check = disk_check
        self.sleep = sleep
        self.conn = None

    def __enter__(self):
        self.conn = self.server.connect(self.database, autocommit=True)
        with self.conn.cursor() as cur:
            cur.execute("SET lock_timeout = %s", ("%ds" % self.lock_timeout,))
            cur.execute("SET application_name = 'runbook.ops db_maintenance'")
        return self

    def __exit__(self, *exc_info):
        if self.conn is not None:
            self.conn.close()

    def rows(self, query, params=None):
        with self.conn.cursor() as cur:
            try:
                cur.execute(query, params)
            except psycopg2.Error as exc:
                raise DatabaseError(_message(exc)) from None
            names = [column.name for column in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def scalar(self, query, params=None):
        rows = self.rows(query, params)
        return next(iter(rows[0].values())) if rows else None

    def database_bytes(self):
        return self.scalar("SELECT pg_database_size(current_database())")

    def has_pgstattuple(self):
        return bool(self.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pgstattuple'"))

    # -- planning -------------------------------------------------------------------------------------

    def invalid_indexes(self):
        return self.rows(INVALID_INDEXES_SQL)

    def index(self, name):
        schema, index = split_name(name)
        rows = self.rows(INDEX_SQL, (schema, index))
        if not rows:
            raise MaintenanceError("index %s does not exist in database %s" % (qualified(schema, index), self.database))
        return rows[0]

    def plan(self, vacuum=True, analyze=True, tables=(), reindex=(), bloated_percent=0, min_bytes=0,
             invalid="rebuild"):
        """The steps, in order: the invalid-index sweep first (a rebuild must not copy a broken index's
        table twice), then reindexing, then VACUUM/ANALYZE so statistics describe the rebuilt indexes."""
        steps, notes = [], []
        if invalid != "ignore":
            for row in self.invalid_indexes():
                target = qualified(row["schema"], row["index"])
                if row["building"]:
                    notes.append("%s is INVALID because CREATE INDEX CONCURRENTLY is building it now: left alone" % target)
                    continue
                if invalid == "report":
                    notes.append("%s on %s is INVALID (report only)" % (target, row["table"]))
                    continue
                if LEFTOVER_RE.fullmatch(row["index"]):
                    steps.append(Step("drop_invalid", target, "left by an interrupted REINDEX CONCURRENTLY",
                                      row["bytes"]))
                else:
                    steps.append(Step("rebuild_invalid", target, "INVALID, left by an interrupted CREATE INDEX "
                                                                 "CONCURRENTLY", row["bytes"]))
        chosen = {step.target for step in steps}
        for name in reindex:
            row = self.index(name)
            target = qualified(row["schema"], row["index"])
            if target not in chosen:
                steps.append(Step("reindex", target, "named", row["bytes"]))
                chosen.add(target)
        if bloated_percent:
            if not self.has_pgstattuple():
                notes.append("bloated indexes are not looked for: the pgstattuple extension is not installed in %s "
                             "(CREATE EXTENSION pgstattuple)" % self.database)
            else:
                for row in self.rows(BLOATED_INDEXES_SQL, (int(min_bytes),)):
                    target = qualified(row["schema"], row["index"])
                    percent = bloat_percent(row["density"])
                    if percent >= bloated_percent and target not in chosen:
                        steps.append(Step("reindex", target, "estimated %.0f%% bloat (leaf density %.0f%%)"
                                          % (percent, row["density"]), row["bytes"]))
                        chosen.add(target)
        if vacuum or analyze:
            action = "vacuum_analyze" if vacuum and analyze else ("vacuum" if vacuum else "analyze")
            for table in tables or [None]:
                steps.append(Step(action, table or "database %s" % self.database,
                                  "named" if table else "every table"))
        return steps, notes

    # -- running --------------------------------------------------------------------------------------

    def run(self, step):
        if step.action == "drop_invalid":
            self._statement(step, "DROP INDEX CONCURRENTLY IF EXISTS {}", step.target)
            step.bytes_after = 0
        elif step.action in ("reindex", "rebuild_invalid"):
            self._check_space(step)
            try:
                self._statement(step, "REINDEX INDEX CONCURRENTLY {}", step.target)
            finally:
                self._drop_leftovers(step)
            step.bytes_after = self.scalar("SELECT pg_relation_size(%s::regclass)", (_regclass(step.target),))
        else:
            options = {"vacuum_analyze": "VACUUM (ANALYZE)", "vacuum": "VACUUM", "analyze": "ANALYZE"}[step.action]
            if step.target.startswith("database "):
                self._statement(step, options)
            else:
                self._statement(step, options + " {}", step.target)

    def _statement(self, step, template, target=None):
        if target is not None:
            schema, name = split_name(target)
            statement = sql.SQL(template).format(sql.Identifier(schema, name))
        else:
            statement = sql.SQL(template)
        while True:
            step.attempts += 1
            try:
                with self.conn.cursor() as cur:
                    cur.execute(statement)
                return
            except psycopg2.Error as exc:
                if exc.pgcode == LOCK_NOT_AVAILABLE and step.attempts <= self.retries:
                    self.sleep(self.retry_delay)
                    continue
                if exc.pgcode == LOCK_NOT_AVAILABLE:
                    raise MaintenanceError("%s: the lock was not granted within lock_timeout %d s in %d attempts (a "
                                           "long transaction holds it; see pg_activity's lock tree)"
                                           % (step.target, self.lock_timeout, step.attempts)) from None
                raise MaintenanceError("%s: %s" % (step.target, _message(exc))) from None

    def _drop_leftovers(self, step):
        # A REINDEX CONCURRENTLY that failed (lock timeout, cancel) leaves <index>_ccnew INVALID: drop it
        # now rather than leave a second, useless copy of the index for the next run to find.
        schema, name = split_name(step.target)
        for row in self.invalid_indexes():
            if row["schema"] == schema and LEFTOVER_RE.fullmatch(row["index"]) and row["index"].startswith(name[:55]) \
                    and not row["building"]:
                with contextlib.suppress(MaintenanceError):
                    self._statement(Step("drop_invalid", qualified(schema, row["index"])),
                                    "DROP INDEX CONCURRENTLY IF EXISTS {}", qualified(schema, row["index"]))

    def _check_space(self, step):
        if not self.disk_check:
            return
        directory = self.scalar("SELECT current_setting('data_directory', true)")
        if not directory or not os.path.isdir(directory):
            raise MaintenanceError("%s: cannot check the free space: the server's data directory (%s) is not visible "
                                   "from this host; run on the database host or set disk_check false"
                                   % (step.target, directory or "hidden from this role"))
        needed = int((step.bytes_before or 0) * self.disk_headroom)
        free = free_bytes(directory)
        if free < needed:
            raise MaintenanceError("%s: not rebuilt: %d bytes free in %s, the rebuild needs about %d (%.1f x the index)"
                                   % (step.target, free, directory, needed, self.disk_headroom))


def _regclass(target):
    schema, name = split_name(target)
    return '"%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""'))


def _message(exc):
    text = (getattr(exc, "pgerror", None) or str(exc) or exc.__class__.__name__).strip()
    return " ".join(text.split())


# -- SQLite ----------------------------------------------------------------------------------------------

def sqlite_plan(path, vacuum=True, optimize=True):
    steps = [Step("integrity_check", path, "always first: a damaged file is not vacuumed")]
    if vacuum:
        steps.append(Step("vacuum", path, "rewrites the file without free pages", os.path.getsize(path)))
    if optimize:
        steps.append(Step("optimize", path, "PRAGMA optimize: refreshes the statistics the planner needs"))
    return steps


class SqliteMaintenance:
    """Runs the SQLite steps; VACUUM and optimize only while holding the service's writer lock."""

    def __init__(self, path, lock_path=None, timeout=30):
        if not os.path.isfile(path):
            raise MaintenanceError("%s is not a SQLite database file" % path)
        self.path = path
        self.lock_path = lock_path or _sqlite.default_lock_path(path)
        self.timeout = timeout
        self.failed_integrity = False

    def writers(self):
        """None when the writer lock is free, else the holder's pid (-1 unknown)."""
        return _sqlite.lock_holder(self.lock_path)

    def run(self, step):
        import sqlite3

        if step.action != "integrity_check" and self.failed_integrity:
            step.outcome = "skipped"
            step.detail = "the integrity check failed: restore a backup instead of vacuuming a damaged file"
            return
        if step.action == "vacuum":
            free = free_bytes(os.path.dirname(os.path.abspath(self.path)))
            if free < 2 * (step.bytes_before or 0):
                raise MaintenanceError("not vacuumed: VACUUM needs up to twice the file's size free (%d bytes), %d "
                                       "are free" % (2 * step.bytes_before, free))
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise MaintenanceError("cannot open %s: %s" % (self.path, exc)) from None
        with contextlib.closing(conn):
            try:
                step.attempts += 1
                if step.action == "integrity_check":
                    problems = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
                    if problems != ["ok"]:
                        self.failed_integrity = True
                        raise MaintenanceError("integrity check failed: %s" % "; ".join(problems[:5]))
                    step.detail = "ok"
                elif step.action == "vacuum":
                    conn.execute("VACUUM")
                    step.bytes_after = os.path.getsize(self.path)
                else:
                    conn.execute("PRAGMA optimize")
            except sqlite3.Error as exc:
                if step.action == "integrity_check":
                    self.failed_integrity = True
                raise MaintenanceError("%s on %s failed: %s" % (step.action, self.path, exc)) from None

    def held(self):
        """The service's writer lock, held while VACUUM and optimize run."""
        return _sqlite.WriterLock(self.lock_path)


def summary(steps, stopped, budget_seconds):
    counts = {}
    for step in steps:
        counts[step.outcome] = counts.get(step.outcome, 0) + 1
    text = ", ".join("%d %s" % (counts[key], key.replace("_", " ")) for key in sorted(counts))
    failed = [step for step in steps if step.outcome == "failed"]
    line = "%d maintenance steps: %s" % (len(steps), text or "none")
    if stopped:
        line += "; stopped after the time budget of %d s" % budget_seconds
    if failed:
        line += " - " + "; ".join(step.detail for step in failed[:3])
    return line


# A step's outcome on the report's ok/warning/critical scale: a step that did not run is a warning (the
# window ended or the integrity check stopped the rest), a failed one critical.
OUTCOME_STATES = {"done": "ok", "planned": "ok", "skipped": "warning", "not_run": "warning", "failed": "critical"}


def findings(steps, notes, before, after, section="maintenance"):
    """The run as report findings (check_report's shape): one per step with its time, the database size
    before and after, and one per note (what was seen and left alone)."""
    out = []
    for step in steps:
        detail = step.reason
        if step.detail:
            detail += ": " + step.detail
        if step.bytes_before is not None and step.bytes_after is not None:
            detail += " (%d -> %d bytes)" % (step.bytes_before, step.bytes_after)
        out.append({"section": section, "check": "%s %s" % (step.action.replace("_", " "), step.target),
                    "state": OUTCOME_STATES.get(step.outcome, "warning"), "value": step.seconds, "unit": "s",
                    "detail": "%s - %s" % (step.outcome.replace("_", " "), detail)})
    if after is None:
        size = "%d bytes before (not run, no size after)" % before
    else:
        size = "%d bytes before, %d after (%+d)" % (before, after, after - before)
    out.append({"section": section, "check": "database size", "state": "ok",
                "value": before if after is None else after, "unit": "bytes", "detail": size})
    for note in notes:
        out.append({"section": section, "check": "note", "state": "ok", "value": None, "unit": None, "detail": note})
    return out
