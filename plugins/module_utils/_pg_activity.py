# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a PostgreSQL server is doing: connections, long queries, idle transactions, the lock
tree, replication and table sizes, rated ok/warning/critical as findings; and the opt-in
remediation of the incident runbooks (cancel, then terminate after a grace period).

Every finding has the one shape the daily check and incident reports consume::

    {"check": str, "state": "ok|warning|critical", "value": number|str|None, "unit": str|None, "detail": str}

The session doing the checking is never counted, listed or signalled.  Plain Python, no
Ansible imports; the SQL runs through ``PgServer`` (read-only through ``query_rows``).
"""

from __future__ import annotations

import contextlib
import re
import time

from ansible_collections.runbook.ops.plugins.module_utils._errors import DatabaseError, ParameterError
from ansible_collections.runbook.ops.plugins.module_utils._postgres import _pg_message
from ansible_collections.runbook.ops.plugins.module_utils._status import level, overview, rank, worst

try:
    import psycopg2
except ImportError:
    psycopg2 = None

CLIENT = "client backend"
# backend_type values of replication processes (physical and logical); never signalled by default.
REPLICATION_TYPES = ("walsender", "walreceiver", "logical replication launcher", "logical replication worker",
                     "logical replication apply worker", "logical replication tablesync worker",
                     "parallel apply worker")
IDLE_IN_TRANSACTION = ("idle in transaction", "idle in transaction (aborted)")
SESSION_STATES = ("active", "idle", "idle in transaction", "idle in transaction (aborted)",
                  "fastpath function call", "disabled")
DEFAULT_TARGET_STATES = ("active", "idle in transaction", "idle in transaction (aborted)")
# Backups and our own tooling: pg_dump's session holds the snapshot a backup depends on.
PROTECTED_APPLICATIONS = ("pg_dump", "pg_dumpall", "pg_basebackup", "pg_restore", "pgbackrest", "runbook.ops")
REMEDIATIONS = ("none", "cancel", "terminate")

# One session of pg_stat_activity (all but the one asking); ``age`` is seconds since the session
# entered its current state: for an active session, since its query started.
SESSION_COLUMNS = """
    a.pid, a.datname AS database, a.usename AS "user", a.application_name AS application,
    host(a.client_addr) AS client_addr, a.backend_type, a.state, a.wait_event_type, a.wait_event,
    a.backend_start::text AS backend_start, a.xact_start::text AS xact_start,
    a.query_start::text AS query_start, a.state_change::text AS state_change,
    round(greatest(0, extract(epoch FROM t.ts - coalesce(a.state_change, a.backend_start)))::numeric, 3) AS age,
    CASE WHEN a.xact_start IS NOT NULL
         THEN round(greatest(0, extract(epoch FROM t.ts - a.xact_start))::numeric, 3) END AS xact_age,
    round(greatest(0, extract(epoch FROM t.ts - a.backend_start))::numeric, 3) AS backend_age,
    pg_blocking_pids(a.pid) AS blocked_by,
    left(a.query, %(query_max_length)s) AS query,
    coalesce(length(a.query) > %(query_max_length)s, false) AS query_truncated,
    coalesce(r.rolsuper, false) AS superuser
"""

SESSIONS_FROM = """
FROM pg_stat_activity a CROSS JOIN (SELECT clock_timestamp() AS ts) t
LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.pid <> pg_backend_pid()
"""

SNAPSHOT_SQL = """
SELECT
  current_setting('server_version') AS server_version,
  pg_is_in_recovery() AS in_recovery,
  current_setting('max_connections')::int AS max_connections,
  current_setting('superuser_reserved_connections')::int AS superuser_reserved_connections,
  coalesce(current_setting('reserved_connections', true), '0')::int AS reserved_connections,
  (SELECT coalesce(json_agg(s ORDER BY s.pid), '[]') FROM (SELECT """ + SESSION_COLUMNS + SESSIONS_FROM + """) s)
    AS sessions,
  (SELECT coalesce(json_agg(w ORDER BY w.pid), '[]') FROM (
     SELECT l.pid, l.locktype, l.mode,
            CASE WHEN l.relation IS NULL THEN NULL
                 WHEN l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 THEN l.relation::regclass::text ELSE l.relation::text END AS relation,
            l.transactionid::text AS transactionid
     FROM pg_locks l WHERE NOT l.granted AND l.pid <> pg_backend_pid()) w) AS waiting_locks,
  (SELECT coalesce(json_agg(x ORDER BY x.application, x.pid), '[]') FROM (
     SELECT r.pid, r.usename AS "user", r.application_name AS application, host(r.client_addr) AS client_addr,
            r.state, r.sync_state, r.sent_lsn::text AS sent_lsn, r.replay_lsn::text AS replay_lsn,
            extract(epoch FROM r.write_lag) AS write_lag, extract(epoch FROM r.flush_lag) AS flush_lag,
            extract(epoch FROM r.replay_lag) AS replay_lag,
            CASE WHEN pg_is_in_recovery() OR r.replay_lsn IS NULL THEN NULL
                 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn) END AS replay_lag_bytes
     FROM pg_stat_replication r) x) AS replication,
  (SELECT coalesce(json_agg(x ORDER BY x.slot_name), '[]') FROM (
     SELECT s.slot_name, s.slot_type, s.database, s.active, s.active_pid, to_jsonb(s)->>'wal_status' AS wal_status,
            CASE WHEN pg_is_in_recovery() OR s.restart_lsn IS NULL THEN NULL
                 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn) END AS retained_bytes
     FROM pg_replication_slots s) x) AS slots,
  CASE WHEN pg_is_in_recovery() THEN json_build_object(
     'receive_lsn', pg_last_wal_receive_lsn()::text, 'replay_lsn', pg_last_wal_replay_lsn()::text,
     'replay_delay', extract(epoch FROM now() - pg_last_xact_replay_timestamp()),
     'unreplayed_bytes', pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),
     'receiver_status', (SELECT status FROM pg_stat_wal_receiver LIMIT 1)) END AS standby,
  (SELECT coalesce(json_agg(d ORDER BY d.name), '[]') FROM (
     SELECT datname AS name,
            CASE WHEN has_database_privilege(datname, 'CONNECT') THEN pg_database_size(datname) END AS size_bytes
     FROM pg_database WHERE datallowconn) d) AS databases
"""

TABLE_SIZES_SQL = """
SELECT n.nspname AS schema, c.relname AS "table", c.relkind::text AS kind,
       pg_total_relation_size(c.oid) AS total_bytes, pg_relation_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       CASE WHEN c.reltoastrelid = 0 THEN 0 ELSE pg_total_relation_size(c.reltoastrelid) END AS toast_bytes,
       greatest(c.reltuples, 0)::bigint AS estimated_rows,
       s.n_live_tup AS live_tuples, s.n_dead_tup AS dead_tuples, s.n_mod_since_analyze AS modified_since_analyze,
       greatest(s.last_analyze, s.last_autoanalyze)::text AS last_analyze,
       greatest(s.last_vacuum, s.last_autovacuum)::text AS last_vacuum,
       round(extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::numeric, 0)::float8 AS analyze_age,
       c.oid::bigint AS _oid, c.reltuples::float8 AS _reltuples,
       coalesce((SELECT substring(o FROM 'fillfactor=([0-9]+)')::int FROM unnest(c.reloptions) o
                 WHERE o LIKE 'fillfactor=%%' LIMIT 1), 100) AS _fillfactor,
       (SELECT sum(st.avg_width)::int FROM pg_stats st
        WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND NOT st.inherited) AS _row_width,
       (SELECT count(*)::int FROM pg_stats st
        WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND NOT st.inherited) AS _columns_with_stats,
       (SELECT count(*)::int FROM pg_attribute at
        WHERE at.attrelid = c.oid AND at.attnum > 0 AND NOT at.attisdropped) AS _columns,
       current_setting('block_size')::int AS _block_size
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'm', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
ORDER BY pg_total_relation_size(c.oid) DESC, 1, 2
LIMIT %(top)s
"""

BLOAT_METHODS = ("none", "statistics", "auto", "pgstattuple")
# The bytes of one heap tuple besides its data: a 23-byte header (24 with alignment) and a 4-byte line pointer.
TUPLE_OVERHEAD = 24
LINE_POINTER = 4
PAGE_HEADER = 24
MAXALIGN = 8

PGSTATTUPLE_SCHEMA_SQL = """
SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pgstattuple'
"""

PGSTATTUPLE_SQL = """
SELECT c.oid::bigint AS oid, t.table_len, t.tuple_percent, t.dead_tuple_len, t.dead_tuple_percent, t.free_space,
       t.free_percent
FROM pg_class c, LATERAL {function}(c.oid) t
WHERE c.oid = ANY(%(oids)s::oid[])
"""

# pg_relation_size and pgstattuple take a share lock on each table: behind an exclusive lock
# (VACUUM FULL, ALTER TABLE: often the very incident) they would wait for ever.  The activity
# snapshot takes no table lock; every read query is also bounded by the policy's query_timeout.
LOCK_TIMEOUT_SECONDS = 2.0
TIMEOUTS_SQL = "SET LOCAL statement_timeout = %(statement_timeout_ms)s; SET LOCAL lock_timeout = %(lock_timeout_ms)s; "

# Password literals in query texts (ALTER ROLE ... PASSWORD '...', connection strings of dblink and
# subscriptions) are masked before a query excerpt leaves the module, even when the excerpt cuts
# the literal short.
_SECRET_LITERALS = (re.compile(r"(?i)(\bpassword\s+)('(?:[^']|'')*(?:'|$))"),  # PASSWORD 'literal'
                    re.compile(r"(?i)(\bpassword\s*=\s*)(''(?:[^']|'(?!'))*(?:''|$)|'(?:[^']|'')*(?:'|$)|[^\s']+)"))  # password=value

# What a session is doing; if it is the same after the grace period, the cancel did not stop it.
WORK_KEY = ("backend_start", "xact_start", "query_start", "state")


class ActivityPolicy:
    """Thresholds of the read-only checks (seconds and percentages)."""

    def __init__(self, connections_warn_percent=80, connections_crit_percent=95,
                 long_query_warn_seconds=300, long_query_crit_seconds=1800,
                 idle_in_transaction_warn_seconds=60, idle_in_transaction_crit_seconds=600,
                 lock_wait_warn_seconds=30, lock_wait_crit_seconds=300,
                 replication_lag_warn_seconds=60, replication_lag_crit_seconds=600,
                 query_max_length=200, max_sessions=50, table_top=10, bloat="statistics",
                 bloat_warn_percent=30, bloat_crit_percent=60, bloat_min_bytes=10 * 1024 * 1024,
                 query_timeout=30):
        self.connections = (connections_warn_percent, connections_crit_percent)
        self.long_query = (long_query_warn_seconds, long_query_crit_seconds)
        self.idle_in_transaction = (idle_in_transaction_warn_seconds, idle_in_transaction_crit_seconds)
        self.lock_wait = (lock_wait_warn_seconds, lock_wait_crit_seconds)
        self.replication_lag = (replication_lag_warn_seconds, replication_lag_crit_seconds)
        self.query_max_length = query_max_length
        self.max_sessions = max_sessions
        self.table_top = table_top
        if bloat not in BLOAT_METHODS:
            raise ParameterError("bloat must be one of %s, got %r" % (", ".join(BLOAT_METHODS), bloat))
        self.bloat = bloat
        self.bloat_levels = (bloat_warn_percent, bloat_crit_percent)
        self.bloat_min_bytes = bloat_min_bytes
        if query_timeout <= 0:
            raise ParameterError("query_timeout must be more than 0 seconds")
        self.query_timeout = query_timeout
        for name in ("connections", "long_query", "idle_in_transaction", "lock_wait", "replication_lag", "bloat_levels"):
            warn, crit = getattr(self, name)
            if warn is not None and crit is not None and crit < warn:
                raise ParameterError("%s: the critical threshold %s is below the warning threshold %s"
                                     % (name.replace("_", " "), crit, warn))
        for name in ("query_max_length", "max_sessions", "table_top"):
            if getattr(self, name) < 0:
                raise ParameterError("%s must not be negative" % name)

    def timeouts(self):
        """Parameters of TIMEOUTS_SQL, in milliseconds."""
        return {"statement_timeout_ms": int(self.query_timeout * 1000),
                "lock_timeout_ms": int(min(LOCK_TIMEOUT_SECONDS, self.query_timeout) * 1000)}

    @classmethod
    def from_params(cls, params):
        names = cls.__init__.__code__.co_varnames[1:cls.__init__.__code__.co_argcount]
        return cls(**{name: params[name] for name in names if params.get(name) is not None})


def finding(check, state, value, unit, detail):
    return {"check": check, "state": state, "value": value, "unit": unit, "detail": detail}


def kind(session):
    """client, replication, background, or hidden (the login may not see what it is: another role's
    session without pg_monitor); who may be signalled without an explicit allow."""
    backend_type = session.get("backend_type")
    if backend_type is None:
        return "hidden"
    if backend_type == CLIENT:
        return "client"
    if backend_type in REPLICATION_TYPES or backend_type.startswith("logical replication"):
        return "replication"
    return "background"


def _count(sessions, key):
    counts = {}
    for session in sessions:
        name = session.get(key)
        if name in (None, ""):
            name = "(hidden)" if kind(session) == "hidden" and key not in ("user", "database") else "(none)"
        name = str(name)
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def connection_summary(snapshot):
    """Counts of the sessions besides ours, and the share of the connection slots in use.

    Only client backends take a ``max_connections`` slot (WAL senders, autovacuum and other
    background processes have their own), and the last ``superuser_reserved_connections``
    (plus ``reserved_connections`` from PostgreSQL 16) are refused to ordinary roles: the share
    is client backends over the slots an application role can use.
    """
    sessions = snapshot["sessions"]
    hidden = [s for s in sessions if kind(s) == "hidden"]
    clients = [s for s in sessions if kind(s) == "client"] + hidden_sessions(sessions)
    max_connections = snapshot["max_connections"]
    reserved = (snapshot.get("superuser_reserved_connections") or 0) + (snapshot.get("reserved_connections") or 0)
    usable = max_connections - reserved if max_connections > reserved else max_connections
    return {
        "client_backends": len(clients),
        "total": len(sessions),
        "hidden": len(hidden),
        "max_connections": max_connections,
        "superuser_reserved_connections": snapshot.get("superuser_reserved_connections") or 0,
        "reserved_connections": snapshot.get("reserved_connections") or 0,
        "usable": usable,
        "used_percent": round(len(clients) * 100.0 / usable, 1) if usable else 0.0,
        "by_state": _count(clients, "state"),
        "by_database": _count(clients, "database"),
        "by_user": _count(clients, "user"),
        "by_application": _count(clients, "application"),
        "by_backend_type": _count(sessions, "backend_type"),
    }


def redact_query(text):
    """A query text with its password literals masked."""
    if not text:
        return text
    for pattern in _SECRET_LITERALS:
        text = pattern.sub(lambda m: m.group(1) + ("'***'" if m.group(2).startswith("'") else "***"), text)
    return text


def brief(session):
    """The fields of a session worth showing in a list (password literals in the query masked)."""
    keys = ("pid", "user", "database", "application", "client_addr", "backend_type", "state", "age",
            "xact_age", "wait_event_type", "wait_event", "blocked_by", "query", "query_truncated")
    item = {key: session.get(key) for key in keys}
    item["query"] = redact_query(item["query"])
    return item


def over(sessions, states, threshold):
    """Sessions in one of ``states`` at least ``threshold`` seconds old, oldest first."""
    if threshold is None:
        return []
    found = [s for s in sessions if s.get("state") in states and (s.get("age") or 0) >= threshold
             and kind(s) == "client"]
    return sorted(found, key=lambda s: -(s.get("age") or 0))


def plural(count, singular, many=None):
    return "%d %s" % (count, singular if count == 1 else (many or singular + "s"))


def _who(session):
    return "pid %s %s@%s (%s)" % (session["pid"], session.get("user") or "?", session.get("database") or "?",
                                  session.get("application") or "no application name")


def _excerpt(session, length=80):
    query = " ".join(redact_query(session.get("query") or "").split())
    return query if len(query) <= length else query[:length - 3] + "..."


def hidden_sessions(sessions):
    """Sessions of a role whose type and state this login may not see (other roles' sessions
    without pg_monitor): client backends as far as anyone can tell, so they are counted as such."""
    return [s for s in sessions if kind(s) == "hidden" and s.get("user")]


def _age_check(name, nouns, sessions, states, thresholds):
    """A finding on the oldest session in ``states``; ``nouns`` is (singular, plural).  Sessions
    this login cannot see make it at least a warning: what it cannot see it cannot call ok."""
    warn, crit = thresholds
    first = warn if warn is not None else crit
    candidates = [s for s in sessions if s.get("state") in states and kind(s) == "client"]
    oldest = max((s.get("age") or 0 for s in candidates), default=None)
    listed = over(sessions, states, first)
    if oldest is None:
        state, value, detail = "ok", None, "no %s" % nouns[0]
    elif not listed:
        state, value = level(oldest, warn, crit), round(oldest, 1)
        detail = "%s, none for %s s or more (oldest %.1f s)" % (plural(len(candidates), *nouns), first, oldest)
    else:
        top = listed[0]
        state, value = level(oldest, warn, crit), round(oldest, 1)
        detail = "%s for %s s or more; oldest %.0f s: %s: %s" % (plural(len(listed), *nouns), first, top["age"],
                                                                 _who(top), _excerpt(top))
    hidden = hidden_sessions(sessions)
    if hidden:
        state = worst([state, "warning"])
        detail += "; the state of %s of other roles is hidden from this login (grant it pg_monitor)" % plural(
            len(hidden), "session")
    return finding(name, state, value, "s", detail), listed


def lock_tree(sessions, waiting_locks=()):
    """Who blocks whom, as nested dicts: roots are blockers not themselves blocked (or, in a cycle,
    the lowest pid); each node has ``blocks``, the sessions waiting on it."""
    by_pid = {s["pid"]: s for s in sessions}
    waits = {}
    for lock in waiting_locks or ():
        waits.setdefault(lock["pid"], {key: lock.get(key) for key in ("locktype", "mode", "relation", "transactionid")})
    children = {}
    for session in sessions:
        for blocker in session.get("blocked_by") or ():
            children.setdefault(blocker, []).append(session["pid"])
    blocked = {s["pid"] for s in sessions if s.get("blocked_by")}
    roots = sorted(pid for pid in children if pid not in blocked)
    covered = set()

    def node(pid, path):
        covered.add(pid)
        session = by_pid.get(pid)
        if session is None:
            item = {"pid": pid, "detail": "a prepared transaction" if pid == 0 else "not visible (this check, or ended)"}
        else:
            item = brief(session)
            item.pop("blocked_by", None)
        if pid in waits:
            item["waiting_for"] = waits[pid]
        item["blocks"] = [node(child, path | {pid}) if child not in path else {"pid": child, "detail": "deadlock cycle"}
                          for child in sorted(set(children.get(pid, ())))]
        return item

    tree = [node(pid, frozenset()) for pid in roots]
    for pid in sorted(children):  # pure cycles have no root: start from their lowest pid
        if pid not in covered:
            tree.append(node(pid, frozenset()))
    return tree


def blocked_check(sessions, thresholds):
    blocked = [s for s in sessions if s.get("blocked_by")]
    if not blocked:
        return finding("blocked sessions", "ok", 0, "s", "no session waits for a lock held by another")
    longest = max(blocked, key=lambda s: s.get("age") or 0)
    blockers = sorted({pid for s in blocked for pid in s["blocked_by"]} - {s["pid"] for s in blocked})
    detail = "%s for locks held by others, longest %.0f s: %s waits for pid %s" % (
        plural(len(blocked), "session waits", "sessions wait"), longest.get("age") or 0, _who(longest), ", ".join(str(p) for p in longest["blocked_by"]))
    if blockers:
        detail += "; blocking at the root: pid %s" % ", ".join(str(p) for p in blockers)
    return finding("blocked sessions", level(longest.get("age") or 0, *thresholds), round(longest.get("age") or 0, 1),
                   "s", detail)


def replication_checks(snapshot, thresholds):
    replicas, slots, standby = snapshot.get("replication") or [], snapshot.get("slots") or [], snapshot.get("standby")
    if standby:
        delay = standby.get("replay_delay")
        status = standby.get("receiver_status") or "no WAL receiver"
        state = worst([level(delay, *thresholds) if delay is not None else "ok",
                       "ok" if status == "streaming" else "warning"])
        detail = "standby (%s): last replayed transaction %s old; %s received but not replayed yet" % (
            status, "%.1f s" % delay if delay is not None else "of unknown age",
            _human_bytes(standby.get("unreplayed_bytes")))
        main = finding("replication", state, round(delay, 1) if delay is not None else None, "s", detail)
    elif not replicas:
        main = finding("replication", "ok", None, "s", "primary with no standby connected")
    else:
        lags = [r.get("replay_lag") for r in replicas if r.get("replay_lag") is not None]
        lag = max(lags, default=0.0)
        not_streaming = [r for r in replicas if r.get("state") != "streaming"]
        state = worst([level(lag, *thresholds), "warning" if not_streaming else "ok"])
        names = ", ".join("%s %s (%s)" % (r.get("application") or r.get("client_addr") or r["pid"], r.get("state"),
                                          r.get("sync_state")) for r in replicas)
        detail = "%s: %s; replay lag up to %.1f s, %s" % (
            plural(len(replicas), "standby", "standbys"), names, lag,
            _human_bytes(max((r.get("replay_lag_bytes") or 0 for r in replicas), default=0)))
        main = finding("replication", state, round(lag, 1), "s", detail)
    inactive = [s for s in slots if not s.get("active")]
    if not slots:
        slot_finding = finding("replication slots", "ok", 0, "slots", "no replication slot")
    elif inactive:
        retained = max((s.get("retained_bytes") or 0 for s in inactive), default=0)
        slot_finding = finding("replication slots", "warning", len(inactive), "slots",
                               "%d of %s inactive, holding WAL back (up to %s): %s" % (
                                   len(inactive), plural(len(slots), "slot"), _human_bytes(retained), ", ".join(s["slot_name"] for s in inactive)))
    else:
        slot_finding = finding("replication slots", "ok", 0, "slots", "%s, all active" % plural(len(slots), "slot"))
    return [main, slot_finding]


def assess(snapshot, policy):
    """Findings and the raw data of one snapshot (the result of ``SNAPSHOT_SQL``)."""
    sessions = snapshot["sessions"]
    connections = connection_summary(snapshot)
    role = "standby (in recovery)" if snapshot["in_recovery"] else "primary"
    findings = [finding("server", "ok", snapshot["server_version"].split()[0], None,
                        "PostgreSQL %s, %s, accepts connections and answers queries"
                        % (snapshot["server_version"].split()[0], role))]
    detail = ("%d client connections of %d usable by ordinary roles (max_connections %d, %d reserved): %.1f%%; "
              "%d server processes besides this check" % (
                  connections["client_backends"], connections["usable"], connections["max_connections"],
                  connections["max_connections"] - connections["usable"], connections["used_percent"],
                  connections["total"]))
    if connections["hidden"]:
        detail += ("; %d hidden from this login (grant it pg_monitor), those of a role counted as clients"
                   % connections["hidden"])
    findings.append(finding("connections", level(connections["used_percent"], *policy.connections),
                            connections["used_percent"], "%", detail))
    long_finding, long_queries = _age_check("long-running queries", ("active query", "active queries"), sessions, ("active",),
                                            policy.long_query)
    idle_finding, idle_tx = _age_check("idle in transaction", ("session idle in transaction", "sessions idle in transaction"),
                                       sessions,
                                       IDLE_IN_TRANSACTION, policy.idle_in_transaction)
    findings += [long_finding, idle_finding, blocked_check(sessions, policy.lock_wait)]
    findings += replication_checks(snapshot, policy.replication_lag)
    cap = policy.max_sessions
    ordered = sorted(sessions, key=lambda s: (s.get("state") in (None, "idle"), -(s.get("age") or 0)))
    return {
        "server": {"version": snapshot["server_version"].split()[0], "in_recovery": snapshot["in_recovery"]},
        "connections": connections,
        "findings": findings,
        "long_queries": [brief(s) for s in long_queries[:cap]],
        "idle_in_transaction": [brief(s) for s in idle_tx[:cap]],
        "lock_tree": lock_tree(sessions, snapshot.get("waiting_locks")),
        "sessions": [brief(s) for s in ordered[:cap]],
        "sessions_truncated": len(ordered) > cap,
        "replication": {"standbys": snapshot.get("replication") or [], "slots": snapshot.get("slots") or [],
                        "standby": snapshot.get("standby")},
        "databases": snapshot.get("databases") or [],
    }


def _human_bytes(size):
    size = float(size or 0)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return "%d bytes" % size if unit == "bytes" else "%.1f %s" % (size, unit)
        size /= 1024.0
    return "%.1f TiB" % size  # pragma: no cover


def table_sizes_check(tables):
    """An informational finding over the top tables of every database looked at."""
    everything = [t for rows in tables.values() for t in rows]
    if not everything:
        return finding("table sizes", "ok", 0, "bytes", "no user table in %s" % (", ".join(tables) or "no database"))
    largest = max(everything, key=lambda t: t["total_bytes"] or 0)
    return finding("table sizes", "ok", largest["total_bytes"], "bytes",
                   "largest table %s.%s.%s: %s (table %s, indexes %s); %s listed" % (
                       largest["database"], largest["schema"], largest["table"], _human_bytes(largest["total_bytes"]),
                       _human_bytes(largest["table_bytes"]), _human_bytes(largest["index_bytes"]), plural(len(everything), "table")))


def snapshot(server, database, policy):
    """One read-only round trip: settings, sessions, waiting locks, replication, database sizes."""
    params = dict(policy.timeouts(), query_max_length=policy.query_max_length)
    rows = server.query_rows(database, TIMEOUTS_SQL + SNAPSHOT_SQL, params)
    return rows[0]


def table_sizes(server, databases, policy):
    """The largest tables of each database, with a bloat figure per table unless ``policy.bloat`` is none."""
    tables = {}
    for name in databases:
        rows = server.query_rows(name, TIMEOUTS_SQL + TABLE_SIZES_SQL, dict(policy.timeouts(), top=policy.table_top))
        exact, note = {}, None
        if policy.bloat in ("auto", "pgstattuple"):
            exact, note = pgstattuple_figures(server, name, [r["_oid"] for r in rows if r["kind"] in ("r", "m")],
                                              policy.timeouts())
        for row in rows:
            row["database"] = name
            if policy.bloat != "none":
                row["bloat"] = table_bloat(row, exact.get(row["_oid"]), note)
            for key in [k for k in row if k.startswith("_")]:
                del row[key]
        tables[name] = rows
    return tables


def pgstattuple_figures(server, database, oids, timeouts):
    """({oid: pgstattuple row}, None) or ({}, why not): exact figures when the extension is installed
    in ``database`` and the login role may use it (superuser or pg_stat_scan_tables)."""
    try:
        rows = server.query_rows(database, PGSTATTUPLE_SCHEMA_SQL)
    except DatabaseError as exc:
        return {}, "pgstattuple not checked: %s" % exc
    if not rows:
        return {}, "pgstattuple is not installed in %s" % database
    if not oids:
        return {}, None
    function = '"%s".pgstattuple' % rows[0]["schema"].replace('"', '""')
    try:
        found = server.query_rows(database, TIMEOUTS_SQL + PGSTATTUPLE_SQL.format(function=function),
                                  dict(timeouts, oids=oids))
    except DatabaseError as exc:
        return {}, "pgstattuple failed in %s: %s" % (database, exc)
    return {row["oid"]: row for row in found}, None


def _aligned(size):
    return (size + MAXALIGN - 1) // MAXALIGN * MAXALIGN


def stale_statistics(row):
    """Why the planner statistics of a table row (from TABLE_SIZES_SQL) are too old or incomplete
    to estimate from, or None.  The analyze rule is autovacuum's default: 50 rows + 10 %."""
    if not row.get("last_analyze"):
        return "never analyzed"
    changed = row.get("modified_since_analyze") or 0
    if changed > 50 + 0.1 * (row.get("_reltuples") or 0):
        return "%d rows changed since the last analyze (%s)" % (changed, row["last_analyze"])
    if (row.get("_columns_with_stats") or 0) < (row.get("_columns") or 0):
        return "no statistics for %d of %d columns" % (row["_columns"] - (row.get("_columns_with_stats") or 0),
                                                       row["_columns"])
    return None


def estimate_bloat(row):
    """Wasted heap space estimated from planner statistics (rows and average row width), as
    check_postgres does: the pages the rows would need at the table's fillfactor against its size.
    None when there is nothing to estimate from."""
    block = row.get("_block_size") or 8192
    pages = (row.get("table_bytes") or 0) // block
    tuples, width = row.get("_reltuples"), row.get("_row_width")
    if pages <= 0 or width is None or tuples is None or tuples < 0:
        return None
    tuple_bytes = _aligned(TUPLE_OVERHEAD + width) + LINE_POINTER
    per_page = max(1, int((block - PAGE_HEADER) * (row.get("_fillfactor") or 100) / 100.0) // tuple_bytes)
    needed = -(-int(tuples) // per_page)
    wasted = max(0, pages - needed)
    return {"wasted_bytes": wasted * block, "wasted_percent": round(wasted * 100.0 / pages, 1)}


def table_bloat(row, exact=None, note=None):
    """The bloat figure of one table: exact from pgstattuple when given, else the estimate."""
    if exact is not None:
        wasted = (exact.get("dead_tuple_len") or 0) + (exact.get("free_space") or 0)
        total = exact.get("table_len") or 0
        return {"method": "pgstattuple", "wasted_bytes": wasted,
                "wasted_percent": round(wasted * 100.0 / total, 1) if total else 0.0,
                "dead_tuple_percent": exact.get("dead_tuple_percent"), "free_percent": exact.get("free_percent"),
                "stale_statistics": None, "note": None}
    estimate = estimate_bloat(row) or {"wasted_bytes": None, "wasted_percent": None}
    estimate.update(method="statistics", stale_statistics=stale_statistics(row), note=note)
    return estimate


def bloat_check(tables, policy):
    """A finding over the listed tables of at least ``bloat_min_bytes``: the most wasted share.  An
    estimate from stale statistics is at most a warning, and says so; asking for pgstattuple and
    not getting it is a warning."""
    notes = sorted({t["bloat"]["note"] for rows in tables.values() for t in rows
                    if t.get("bloat") and t["bloat"]["note"]})
    rated = []
    for rows in tables.values():
        for table in rows:
            figure = table.get("bloat")
            if not figure or figure["wasted_percent"] is None or (table["table_bytes"] or 0) < policy.bloat_min_bytes:
                continue
            state = level(figure["wasted_percent"], *policy.bloat_levels)
            if figure["stale_statistics"] and state == "critical":
                state = "warning"
            rated.append((state, figure["wasted_percent"], table))
    if not rated:
        state, percent = "ok", None
        detail = "no table of %s or more to rate" % _human_bytes(policy.bloat_min_bytes)
    else:
        state, percent, table = max(rated, key=lambda item: (rank(item[0]), item[1]))
        figure = table["bloat"]
        detail = "%s.%s.%s: %.1f%% of %s wasted (%s)" % (
            table["database"], table["schema"], table["table"], percent, _human_bytes(table["table_bytes"]),
            "pgstattuple" if figure["method"] == "pgstattuple" else "estimate from planner statistics")
        if figure["stale_statistics"]:
            detail += "; statistics stale: %s, run ANALYZE before trusting it" % figure["stale_statistics"]
        stale = [t for _state, _percent, t in rated if t["bloat"]["stale_statistics"] and t is not table]
        if stale:
            detail += "; %s with stale statistics" % plural(len(stale), "other table")
    if notes:
        detail += "; " + "; ".join(notes)
    if policy.bloat == "pgstattuple" and notes:
        state = worst([state, "warning"])
    return finding("bloat", state, percent, "%", detail)


def report(server, database, policy, size_databases=None):
    """The read-only report: findings, their overall state, and the raw data."""
    try:
        data = snapshot(server, database, policy)
    except DatabaseError as exc:
        detail = str(exc)
        if not detail.startswith("cannot connect"):
            detail = "connected to %s but the activity query failed: %s" % (server.describe(database), detail)
        result = conclude({"findings": [finding("server", "critical", None, None, detail)], "reachable": False})
        result["msg"] = detail
        return result
    result = assess(data, policy)
    if policy.table_top:
        try:
            tables = table_sizes(server, size_databases or [database], policy)
            result["tables"] = [t for rows in tables.values() for t in rows]
            result["findings"].append(table_sizes_check(tables))
            if policy.bloat != "none":
                result["findings"].append(bloat_check(tables, policy))
        except DatabaseError as exc:
            result["tables"] = []
            hint = " (a table is locked exclusively: see the lock tree)" if "lock timeout" in str(exc) else ""
            result["findings"].append(finding("table sizes", "warning", None, "bytes",
                                              "table sizes could not be read: %s%s" % (exc, hint)))
    result["reachable"] = True
    return conclude(result)


def conclude(result):
    """Set the overall state, the counts and the one-line message from ``result["findings"]``."""
    problems = ["%s %s: %s" % (f["check"], f["state"], f["detail"]) for f in result["findings"] if f["state"] != "ok"]
    result.update(overview(result["findings"], "checks", problems=problems))
    return result


# --- remediation -------------------------------------------------------------------------------

SESSIONS_SQL = "SELECT coalesce(json_agg(s ORDER BY s.pid), '[]') FROM (SELECT " + SESSION_COLUMNS + SESSIONS_FROM + ") s"

# Signal a session only while it is still doing what it was selected for: same backend (a pid can
# be reused), same transaction, same query, same state.  No row: it ended or moved on by itself.
SIGNAL_SQL = """
SELECT {function}(a.pid)
FROM pg_stat_activity a
WHERE a.pid = %(pid)s AND a.pid <> pg_backend_pid()
  AND a.backend_start::text = %(backend_start)s
  AND a.xact_start::text IS NOT DISTINCT FROM %(xact_start)s
  AND a.query_start::text IS NOT DISTINCT FROM %(query_start)s
  AND a.state IS NOT DISTINCT FROM %(state)s
"""

WORK_SQL = """
SELECT a.pid, a.backend_start::text, a.xact_start::text, a.query_start::text, a.state
FROM pg_stat_activity a WHERE a.pid = ANY(%(pids)s)
"""

# A terminated backend exits within milliseconds unless it is stuck in the kernel; wait this long
# before reporting that it is still there.
TERMINATE_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.2


class TargetFilter:
    """Which sessions a remediation may signal, and which it must leave alone however they match."""

    def __init__(self, pids=None, min_age=None, states=None, users=None, applications=None, databases=None,
                 blocking_only=False, allow_superuser=False, allow_replication=False, allow_background=False,
                 protect_applications=PROTECTED_APPLICATIONS, max_targets=10):
        if not pids and min_age is None:
            raise ParameterError("a remediation needs target_pids or target_min_age: it never signals every session")
        if min_age is not None and min_age < 0:
            raise ParameterError("target_min_age must not be negative")
        unknown = sorted(set(states or ()) - set(SESSION_STATES))
        if unknown:
            raise ParameterError("unknown session state(s) %s; states are %s"
                                 % (", ".join(unknown), ", ".join(SESSION_STATES)))
        self.pids = set(pids or ())
        self.min_age = min_age
        # Named pids are taken in any state; otherwise idle sessions only when asked for.
        self.states = set(states) if states else (None if self.pids else set(DEFAULT_TARGET_STATES))
        self.users = set(users or ())
        self.applications = set(applications or ())
        self.databases = set(databases or ())
        self.blocking_only = blocking_only
        self.allow = {"superuser": allow_superuser, "replication": allow_replication, "background": allow_background}
        self.protect_applications = set(protect_applications or ())
        self.max_targets = max_targets

    def matches(self, session, blockers):
        checks = (
            not self.pids or session["pid"] in self.pids,
            self.min_age is None or (session.get("age") or 0) >= self.min_age,
            self.states is None or session.get("state") in self.states,
            not self.users or session.get("user") in self.users,
            not self.applications or session.get("application") in self.applications,
            not self.databases or session.get("database") in self.databases,
            not self.blocking_only or session["pid"] in blockers,
        )
        return all(checks)

    def protection(self, session):
        """Why a matching session must not be signalled, or None."""
        what = kind(session)
        if what == "replication" and not self.allow["replication"]:
            return "replication process (%s); set allow_replication to signal it" % session.get("backend_type")
        if what == "background" and not self.allow["background"]:
            return "background process (%s); set allow_background to signal it" % session.get("backend_type")
        if what == "hidden":
            return "its state is hidden from this login (grant it pg_monitor), so it cannot be judged"
        if session.get("superuser") and not self.allow["superuser"]:
            return "superuser session (%s); set allow_superuser to signal it" % session.get("user")
        if session.get("application") in self.protect_applications:
            return "protected application %s (protect_applications)" % session.get("application")
        return None

    def select(self, sessions):
        """(targets, skipped): the sessions to signal, and the matching ones left alone with why."""
        blockers = {pid for s in sessions for pid in (s.get("blocked_by") or ())}
        targets, skipped = [], []
        for session in sessions:
            if not self.matches(session, blockers):
                continue
            reason = self.protection(session)
            if reason:
                skipped.append({"pid": session["pid"], "reason": reason})
            else:
                targets.append(session)
        seen = {s["pid"] for s in sessions}
        skipped += [{"pid": pid, "reason": "no such session (or it is this module's own)"}
                    for pid in sorted(self.pids - seen)]
        if self.max_targets is not None and len(targets) > self.max_targets:
            raise ParameterError("%s match the filters, more than max_targets %d: nothing was signalled; narrow "
                                 "the filters or raise max_targets" % (plural(len(targets), "session"), self.max_targets))
        return targets, skipped


def _work(session):
    return tuple(session.get(key) for key in WORK_KEY)


class Remediation:
    """Cancel (then terminate after a grace period) or terminate the sessions a TargetFilter selects,
    on one connection of its own that is never a target."""

    def __init__(self, server, database, action, target_filter, grace_period=10.0, escalate=True,
                 query_max_length=200, clock=time.monotonic, sleep=time.sleep):
        if action not in REMEDIATIONS[1:]:
            raise ParameterError("remediation must be one of %s, got %r" % (", ".join(REMEDIATIONS[1:]), action))
        if grace_period is None or grace_period < 0:
            raise ParameterError("grace_period must be zero or more seconds")
        self.server, self.database, self.action = server, database, action
        self.filter, self.grace_period, self.escalate = target_filter, grace_period, escalate
        self.query_max_length = query_max_length
        self._clock, self._sleep = clock, sleep
        self.changed = False

    def run(self, check_mode=False):
        with contextlib.closing(self.server.connect(self.database, autocommit=True)) as conn:
            try:
                with conn.cursor() as cur:
                    cur.execute(SESSIONS_SQL, {"query_max_length": self.query_max_length})
                    sessions = cur.fetchone()[0]
                targets, skipped = self.filter.select(sessions)
                results = [self._result(s) for s in targets]
                if check_mode:
                    for item in results:
                        item["outcome"] = "would %s" % self.action
                        item["detail"] = self._plan()
                elif results:
                    self._act(conn, targets, results)
            except psycopg2.Error as exc:
                raise DatabaseError("remediation on %s failed: %s"
                                    % (self.server.describe(self.database), _pg_message(exc))) from None
        counts = {}
        for item in results:
            counts[item["outcome"]] = counts.get(item["outcome"], 0) + 1
        return {"action": self.action, "check_mode": check_mode, "grace_period": self.grace_period,
                "escalate": self.escalate, "matched": len(results), "outcomes": counts, "results": results,
                "skipped": skipped, "changed": self.changed if not check_mode else bool(results)}

    def _plan(self):
        if self.action == "terminate":
            return "pg_terminate_backend"
        if self.escalate:
            return "pg_cancel_backend, then pg_terminate_backend if still running after %s s" % self.grace_period
        return "pg_cancel_backend"

    @staticmethod
    def _result(session):
        item = brief(session)
        item.pop("blocked_by", None)
        item.update({"signals": [], "outcome": None, "detail": ""})
        return item

    def _signal(self, conn, function, session, item):
        """Send one signal if the session still does the same work; True when it was sent."""
        params = {key: session.get(key) for key in WORK_KEY}
        params["pid"] = session["pid"]
        try:
            with conn.cursor() as cur:
                cur.execute(SIGNAL_SQL.format(function=function), params)
                row = cur.fetchone()
        except psycopg2.Error as exc:
            item["outcome"] = "failed"
            item["detail"] = "%s refused: %s" % (function, _pg_message(exc))
            return False
        if row is None:
            item["outcome"] = item["outcome"] or "ended by itself"
            item["detail"] = item["detail"] or "it finished or moved on before %s" % function
            return False
        if not row[0]:
            item["outcome"] = "failed"
            item["detail"] = "%s returned false (not a server process any more?)" % function
            return False
        item["signals"].append(function)
        self.changed = True
        return True

    def _still_working(self, conn, sessions):
        """The pids of ``sessions`` still doing the same work."""
        if not sessions:
            return set()
        with conn.cursor() as cur:
            cur.execute(WORK_SQL, {"pids": [s["pid"] for s in sessions]})
            now = {row[0]: tuple(row[1:]) for row in cur.fetchall()}
        return {s["pid"] for s in sessions if now.get(s["pid"]) == _work(s)}

    def _wait(self, conn, sessions, seconds):
        """Poll until none of ``sessions`` does the same work or ``seconds`` pass; the pids still at it."""
        deadline = self._clock() + seconds
        pending = self._still_working(conn, sessions)
        while pending and self._clock() < deadline:
            self._sleep(POLL_SECONDS)
            pending = self._still_working(conn, [s for s in sessions if s["pid"] in pending])
        return pending

    def _act(self, conn, targets, results):
        items = {item["pid"]: item for item in results}
        to_terminate = targets
        if self.action == "cancel":
            cancelled = [s for s in targets if self._signal(conn, "pg_cancel_backend", s, items[s["pid"]])]
            started = self._clock()
            pending = self._wait(conn, cancelled, self.grace_period)
            waited = round(self._clock() - started, 1)
            for session in cancelled:
                if session["pid"] not in pending:
                    items[session["pid"]].update(outcome="cancelled", detail="stopped within %s s of the cancel" % waited)
            to_terminate = [s for s in cancelled if s["pid"] in pending]
            if not self.escalate:
                for session in to_terminate:
                    items[session["pid"]].update(outcome="still running",
                                                 detail="still running %s s after the cancel; escalate is off"
                                                 % self.grace_period)
                return
        terminated = [s for s in to_terminate if self._signal(conn, "pg_terminate_backend", s, items[s["pid"]])]
        gone_check = self._wait(conn, terminated, TERMINATE_WAIT_SECONDS)
        for session in terminated:
            item = items[session["pid"]]
            if session["pid"] in gone_check:
                item.update(outcome="failed", detail="terminate signal sent, but it is still there after %s s"
                            % TERMINATE_WAIT_SECONDS)
            elif len(item["signals"]) > 1:
                item.update(outcome="terminated", detail="still running %s s after the cancel, so terminated"
                            % self.grace_period)
            else:
                item.update(outcome="terminated", detail="connection closed")


def remediation_finding(done):
    """The remediation as one more finding: critical when a signal was refused or did not take,
    warning when a cancelled query still runs (escalate off), else ok."""
    action, outcomes = done["action"], done["outcomes"]
    if not done["matched"]:
        detail = "%s: no session matched the filters" % action
    elif done["check_mode"]:
        pids = ", ".join(str(r["pid"]) for r in done["results"])
        detail = "would %s %s (check mode): pid %s" % (action, plural(done["matched"], "session"), pids)
    else:
        detail = "%s %s: %s" % (action, plural(done["matched"], "session"),
                                ", ".join("%s %d" % (name, count) for name, count in sorted(outcomes.items())))
        detail += "".join("; pid %s %s: %s" % (r["pid"], r["outcome"], r["detail"]) for r in done["results"]
                          if r["outcome"] in ("failed", "still running"))
    if done["skipped"]:
        detail += "; %s left alone (see remediation.skipped)" % plural(len(done["skipped"]), "matching session")
    state = "critical" if outcomes.get("failed") else ("warning" if outcomes.get("still running") else "ok")
    signalled = sum(1 for r in done["results"] if r["signals"])
    return finding("remediation", state, done["matched"] if done["check_mode"] else signalled, "sessions", detail)
