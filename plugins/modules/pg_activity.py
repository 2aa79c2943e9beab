#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: pg_activity
short_description: PostgreSQL activity diagnostics - connections, long queries, lock tree, replication, table sizes
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Reads what a PostgreSQL server is doing and rates it V(ok), V(warning) or V(critical), as a list of findings
    with one shape (C(check), C(state), C(value), C(unit), C(detail)) that the daily check and the incident
    reports consume; the overall state is the worst finding.
  - "Connections: counts of client backends by state, database, user and application, and the share of the
    connection slots in use. Only client backends (C(backend_type = 'client backend')) take a C(max_connections)
    slot, and the last C(superuser_reserved_connections) (plus C(reserved_connections) from PostgreSQL 16) are
    refused to ordinary roles, so the share is client backends over C(max_connections) minus the reserved slots:
    the slots an application role can still get before it sees C(too many clients)."
  - Long-running queries and sessions idle in transaction over thresholds (age, pid, user, application, state and a
    query excerpt capped in length), the lock tree (who blocks whom, from C(pg_blocking_pids)) as nested JSON,
    replication (standbys and their lag, slots, or the standby's own replay delay), database sizes and the largest
    tables.
  - The session this module opens is never counted, listed or rated. Password literals in query texts
    (C(PASSWORD '...'), C(password=...) in connection strings) are masked.
  - To see the type, state and query of other roles' sessions the login role needs C(pg_monitor) (or
    C(pg_read_all_stats)), or to be a superuser. Without it those sessions are counted as client connections (when
    they have a role), their query reads C(<insufficient privilege>), the long-query and idle-transaction findings
    are at least a warning saying so (what the check cannot see it does not call ok), and remediation leaves them
    alone.
  - When the server cannot be reached the result is a critical C(server) finding with the reason, so a report can
    still be written with O(fail_on=never).
  - "Remediation is opt-in (O(remediate)): V(cancel) sends C(pg_cancel_backend) to the sessions the C(target_*)
    filters select and, after O(grace_period), C(pg_terminate_backend) to those still doing the same thing (same
    query, or still idle in the same transaction); V(terminate) closes them at once, for example idle connections
    older than a limit. A session is only signalled while it is still doing what it was selected for, so a pid
    that finished or was reused is left alone."
  - This module's own session, superuser sessions, replication processes (WAL senders, logical replication
    workers), background processes (autovacuum and the like) and the applications in O(protect_applications)
    (backups by default) are never signalled unless explicitly allowed; the ones that matched are listed in
    RV(remediation.skipped).
  - With O(remediate), the findings are read again after acting, so RV(state) and O(fail_on) judge what is left;
    RV(findings_before) keeps what was seen first.
extends_documentation_fragment:
  - runbook.ops.postgres
options:
  database:
    description: The database to connect to. Activity is server-wide; table sizes are read in O(size_databases).
    type: str
    default: postgres
    aliases: [login_db]
  size_databases:
    description:
      - The databases whose largest tables are listed (each gets its own connection). Default is O(database).
    type: list
    elements: str
  table_top:
    description: How many of the largest tables to list per database; V(0) skips table sizes.
    type: int
    default: 10
  bloat:
    description:
      - How to rate the wasted space (dead tuples and free space) of the listed tables (needs O(table_top) > 0).
      - V(statistics) estimates it from the planner statistics (row count and average row width against the table's
        size, as C(check_postgres) does). It costs nothing but misleads when the statistics are stale, so each table
        says when they are (never analyzed, more rows changed since the last analyze than autovacuum's default
        threshold of 50 + 10%, or columns without statistics) and such an estimate is at most a warning.
      - V(pgstattuple) gives exact figures from the C(pgstattuple) extension (it reads each listed table in full; the
        extension must be installed in the database and the login role a superuser or member of
        C(pg_stat_scan_tables)); when it cannot be used the estimate is given with a warning saying why.
      - V(auto) uses C(pgstattuple) where it can and the estimate elsewhere, without a warning.
      - V(none) skips it.
    type: str
    choices: [none, statistics, auto, pgstattuple]
    default: statistics
  bloat_warn_percent:
    description: Warning when at least this share of a table's size is wasted.
    type: float
    default: 30
  bloat_crit_percent:
    description: Critical when at least this share of a table's size is wasted.
    type: float
    default: 60
  bloat_min_bytes:
    description: Tables smaller than this are listed but not rated for bloat.
    type: int
    default: 10485760
  connections_warn_percent:
    description: Warning when client backends use at least this share of the usable connection slots.
    type: float
    default: 80
  connections_crit_percent:
    description: Critical when client backends use at least this share of the usable connection slots.
    type: float
    default: 95
  long_query_warn_seconds:
    description: Warning when an active query has run this many seconds or more.
    type: float
    default: 300
  long_query_crit_seconds:
    description: Critical when an active query has run this many seconds or more.
    type: float
    default: 1800
  idle_in_transaction_warn_seconds:
    description: Warning when a session has been idle inside an open transaction this many seconds or more.
    type: float
    default: 60
  idle_in_transaction_crit_seconds:
    description: Critical when a session has been idle inside an open transaction this many seconds or more.
    type: float
    default: 600
  lock_wait_warn_seconds:
    description: Warning when a session blocked by another one's lock has waited this many seconds or more.
    type: float
    default: 30
  lock_wait_crit_seconds:
    description: Critical when a session blocked by another one's lock has waited this many seconds or more.
    type: float
    default: 300
  replication_lag_warn_seconds:
    description: Warning when a standby's replay lag (or, on a standby, its replay delay) reaches this many seconds.
    type: float
    default: 60
  replication_lag_crit_seconds:
    description: Critical when a standby's replay lag (or, on a standby, its replay delay) reaches this many seconds.
    type: float
    default: 600
  query_max_length:
    description: Query texts are cut to this many characters in the output.
    type: int
    default: 200
  query_timeout:
    description:
      - Seconds any one of the module's read queries may take (C(statement_timeout)). Table sizes and pgstattuple
        also give up after 2 seconds waiting for a table lock, so a table locked exclusively (C(VACUUM FULL),
        C(ALTER TABLE)) makes the table sizes finding a warning instead of hanging the check.
    type: float
    default: 30
  max_sessions:
    description: At most this many sessions in each returned list (the counts are always complete).
    type: int
    default: 50
  remediate:
    description:
      - What to do to the sessions the C(target_*) options select. V(none) only reads.
      - V(cancel) cancels their current query, then terminates those still at it after O(grace_period) seconds
        (unless O(escalate=false)). A session idle in a transaction has no query to cancel, so it is terminated
        after the grace period.
      - V(terminate) closes their connections at once (the runbook's "terminate idle connections older than N").
      - Needs O(target_pids) or O(target_min_age). The login role must be a superuser, the sessions' own role, or a
        member of C(pg_signal_backend) (which cannot signal superuser sessions).
    type: str
    choices: [none, cancel, terminate]
    default: none
  grace_period:
    description: Seconds between the cancel and the terminate of a session still running its query.
    type: float
    default: 10
  escalate:
    description: Whether V(cancel) terminates the sessions still running after O(grace_period).
    type: bool
    default: true
  target_pids:
    description: Only these backend pids. Named pids are taken in any state unless O(target_states) is given.
    type: list
    elements: int
  target_min_age:
    description:
      - Only sessions at least this many seconds in their current state (for an active session, since its query
        started; for an idle one, since it became idle).
    type: float
  target_states:
    description:
      - Only sessions in one of these states. Default V(active), V(idle in transaction) and
        V(idle in transaction (aborted)); idle sessions only when named here (or by O(target_pids)).
    type: list
    elements: str
    choices: [active, idle, idle in transaction, idle in transaction (aborted), fastpath function call, disabled]
  target_users:
    description: Only sessions of these roles.
    type: list
    elements: str
  target_applications:
    description: Only sessions with one of these C(application_name) values.
    type: list
    elements: str
  target_databases:
    description: Only sessions connected to these databases.
    type: list
    elements: str
  target_blocking:
    description: Only sessions that block at least one other session (the roots and inner nodes of RV(lock_tree)).
    type: bool
    default: false
  max_targets:
    description: Refuse, signalling nothing, when more sessions than this match.
    type: int
    default: 10
  allow_superuser:
    description: Allow signalling superuser sessions.
    type: bool
    default: false
  allow_replication:
    description: Allow signalling replication processes (WAL senders, logical replication workers).
    type: bool
    default: false
  allow_background:
    description: Allow signalling background processes (autovacuum workers, extension workers).
    type: bool
    default: false
  protect_applications:
    description:
      - Sessions with these C(application_name) values are never signalled; by default backups and this collection's
        own sessions (V(runbook.ops)). Set V([]) to allow them.
    type: list
    elements: str
    default: [pg_dump, pg_dumpall, pg_basebackup, pg_restore, pgbackrest, runbook.ops]
  fail_on:
    description:
      - The overall state that fails the task. V(never) always returns the findings without failing, for reports and
        incident playbooks that evaluate them later.
    type: str
    choices: [critical, warning, never]
    default: critical
attributes:
  check_mode:
    support: full
    description:
      - Reads as usual. With O(remediate) it lists what it would cancel or terminate, reports C(changed) when it
        would signal something, and signals nothing.
  diff_mode:
    support: none
    description: Signals have no diff; RV(remediation) lists what was done per pid.
  idempotent:
    support: partial
    description: Read-only unless O(remediate) is set; then a second run signals only sessions that match anew.
seealso:
  - name: The Statistics Collector (pg_stat_activity)
    description: What the session states and backend types mean.
    link: https://www.postgresql.org/docs/current/monitoring-stats.html
'''

EXAMPLES = r'''
- name: What is the database doing?
  runbook.ops.pg_activity:
    login_host: 127.0.0.1
    login_user: monitor
    login_password: "{{ vault_pg_monitor_password }}"
    database: app
    fail_on: never
  register: pg

- name: Show who blocks whom
  ansible.builtin.debug:
    var: pg.lock_tree

- name: Daily check, stricter on idle transactions, no table sizes
  runbook.ops.pg_activity:
    login_host: 127.0.0.1
    login_user: monitor
    login_password: "{{ vault_pg_monitor_password }}"
    idle_in_transaction_warn_seconds: 30
    table_top: 0
    fail_on: warning

- name: Incident - cancel the app's queries running for over 5 minutes, terminate them 10 s later if still running
  runbook.ops.pg_activity:
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_admin_password }}"
    remediate: cancel
    target_min_age: 300
    target_users: [app]
    target_states: [active]
    grace_period: 10
    fail_on: never
  register: cancelled

- name: Terminate connections idle for over an hour (seed procedure "too many clients")
  runbook.ops.pg_activity:
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_admin_password }}"
    remediate: terminate
    target_states: [idle]
    target_min_age: 3600
    target_databases: [app]
    max_targets: 50
    fail_on: never

- name: End the session at the root of a lock pile-up, after looking at what it would do
  runbook.ops.pg_activity:
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_admin_password }}"
    remediate: cancel
    target_blocking: true
    target_min_age: 60
    fail_on: never
  check_mode: true
'''

RETURN = r'''
state:
  description: The worst state of all findings.
  returned: always
  type: str
  sample: warning
summary:
  description: How many findings are in each state.
  returned: always
  type: dict
  sample: {total: 8, ok: 7, warning: 1, critical: 0}
msg:
  description: One line with the counts and the detail of every finding that is not ok.
  returned: always
  type: str
  sample: "7 of 8 checks ok, overall warning - idle in transaction warning: 1 session idle in transaction for 60 s or more; ..."
reachable:
  description: Whether the server answered the activity query. When false, only RV(state), RV(summary), RV(msg) and
    RV(findings) are returned.
  returned: always
  type: bool
  sample: true
findings:
  description: One finding per check, in a fixed order (server, connections, long-running queries, idle in
    transaction, blocked sessions, replication, replication slots, then table sizes and bloat unless turned off,
    and remediation when O(remediate) is set - critical when a signal was refused or did not take, warning when a
    cancelled query still runs).
  returned: always
  type: list
  elements: dict
  contains:
    check:
      description: The name of the check.
      type: str
      sample: connections
    state:
      description: V(ok), V(warning) or V(critical).
      type: str
      sample: ok
    value:
      description: The measured value the state was computed from (null when there was nothing to measure).
      type: raw
      sample: 11.3
    unit:
      description: The unit of RV(findings[].value) (V(%), V(s), V(bytes), V(slots)), or null.
      type: str
      sample: "%"
    detail:
      description: A human sentence.
      type: str
      sample: "11 client connections of 97 usable by ordinary roles (max_connections 100, 3 reserved): 11.3%; ..."
  sample:
    - {check: connections, state: ok, value: 11.3, unit: "%",
       detail: "11 client connections of 97 usable by ordinary roles (max_connections 100, 3 reserved): 11.3%; ..."}
server:
  description: Version and role of the server.
  returned: when reachable
  type: dict
  sample: {version: "15.18", in_recovery: false}
connections:
  description:
    - Client backends and all server processes besides this check, the connection settings, the slots usable by
      ordinary roles and the share in use.
    - C(by_state), C(by_database), C(by_user) and C(by_application) count client backends; C(by_backend_type) counts
      every process. C(hidden) counts the rows the login may not see (V((hidden)) in the counts).
  returned: when reachable
  type: dict
  sample: {client_backends: 11, total: 17, hidden: 0, max_connections: 100, superuser_reserved_connections: 3,
           reserved_connections: 0, usable: 97, used_percent: 11.3, by_state: {active: 2, idle: 9},
           by_database: {app: 11}, by_user: {app: 11}, by_application: {gunicorn: 10, worker: 1},
           by_backend_type: {client backend: 11, checkpointer: 1}}
long_queries:
  description: Active client queries at or over the lowest long-query threshold, oldest first (at most O(max_sessions)).
  returned: when reachable
  type: list
  elements: dict
  sample: [{pid: 4242, user: app, database: app, application: worker, client_addr: 127.0.0.1,
            backend_type: client backend, state: active, age: 1834.2, xact_age: 1834.2, wait_event_type: Lock,
            wait_event: relation, blocked_by: [4240], query: "UPDATE items SET ...", query_truncated: false}]
idle_in_transaction:
  description: Client sessions idle in a transaction at or over the lowest threshold, oldest first; same fields as
    RV(long_queries). C(age) is the idle time, C(xact_age) the age of the transaction.
  returned: when reachable
  type: list
  elements: dict
  sample: []
lock_tree:
  description:
    - Who blocks whom. Each root is a session that blocks others without waiting itself; C(blocks) lists the
      sessions waiting for it, recursively. A waiting session also has C(waiting_for) (lock type, mode, relation).
    - A blocker that is not visible (pid 0 is a prepared transaction) is a node with only C(pid) and C(detail).
  returned: when reachable
  type: list
  elements: dict
  sample: [{pid: 4240, user: app, state: idle in transaction, age: 95.1, query: "UPDATE items SET ...",
            blocks: [{pid: 4242, state: active, wait_event_type: Lock,
                      waiting_for: {locktype: transactionid, mode: ShareLock, relation: null, transactionid: "7411"},
                      blocks: []}]}]
sessions:
  description: Every session besides this check (client and background), busy ones first, oldest first (at most
    O(max_sessions)); same fields as RV(long_queries).
  returned: when reachable
  type: list
  elements: dict
  sample: []
sessions_truncated:
  description: Whether RV(sessions) was cut at O(max_sessions).
  returned: when reachable
  type: bool
  sample: false
replication:
  description: C(standbys) from C(pg_stat_replication) (lags in seconds and bytes), C(slots) from
    C(pg_replication_slots) (with the WAL bytes each retains), and on a standby C(standby) (replay delay).
  returned: when reachable
  type: dict
  sample: {standbys: [], slots: [], standby: null}
databases:
  description: The databases that accept connections and their size in bytes (null without CONNECT privilege).
  returned: when reachable
  type: list
  elements: dict
  sample: [{name: app, size_bytes: 7861071}]
findings_before:
  description: The findings read before acting, when O(remediate) signalled something (RV(findings) is read after).
  returned: when remediate is not none and something was signalled
  type: list
  elements: dict
  sample: [{check: blocked sessions, state: critical, value: 310.2, unit: s, detail: "1 session waits ..."}]
remediation:
  description: What was (or in check mode would be) done, per pid.
  returned: when remediate is not none
  type: dict
  contains:
    action:
      description: V(cancel) or V(terminate).
      type: str
      sample: cancel
    check_mode:
      description: Whether nothing was signalled because of check mode.
      type: bool
      sample: false
    matched:
      description: How many sessions matched the filters and were not protected.
      type: int
      sample: 2
    outcomes:
      description: How many sessions ended with each outcome.
      type: dict
      sample: {cancelled: 1, terminated: 1}
    results:
      description:
        - One entry per matched session, with the fields of RV(long_queries), the C(signals) sent in order, and an
          C(outcome) - V(cancelled), V(terminated), V(still running) (O(escalate=false)), V(ended by itself)
          (it finished or moved on before the signal), V(failed) (refused or still there), or in check mode
          V(would cancel)/V(would terminate) - with a C(detail).
      type: list
      elements: dict
      sample: [{pid: 4240, user: app, application: worker, state: idle in transaction, age: 95.1,
                signals: [pg_cancel_backend, pg_terminate_backend], outcome: terminated,
                detail: "still running 10.0 s after the cancel, so terminated"}]
    skipped:
      description: Sessions that matched but are protected, and named pids that do not exist, with the reason.
      type: list
      elements: dict
      sample: [{pid: 4100, reason: "protected application pg_dump (protect_applications)"}]
  sample: {action: cancel, check_mode: false, matched: 1, outcomes: {cancelled: 1}, results: [], skipped: []}
tables:
  description: The largest tables (and materialized views) of each of O(size_databases), largest first, with the
    table, index and TOAST sizes, row estimate, live and dead tuples and the last analyze and vacuum.
  returned: when reachable and O(table_top) is not 0
  type: list
  elements: dict
  contains:
    bloat:
      description:
        - Unless O(bloat=none), the wasted space. C(method) is V(statistics) or V(pgstattuple); C(wasted_bytes) and
          C(wasted_percent) (null when there are no statistics to estimate from); C(stale_statistics), why the
          statistics behind an estimate cannot be trusted (null when they can); C(note), why pgstattuple was not
          used; with pgstattuple also C(dead_tuple_percent) and C(free_percent).
      type: dict
      sample: {method: statistics, wasted_bytes: 9420800, wasted_percent: 66.7, stale_statistics: null, note: null}
  sample: [{database: app, schema: public, table: items, kind: r, total_bytes: 1318912, table_bytes: 991232,
            index_bytes: 311296, toast_bytes: 8192, estimated_rows: 25000, live_tuples: 25000, dead_tuples: 120,
            modified_since_analyze: 120, last_analyze: "2026-11-30 03:12:44.1+00", last_vacuum: null,
            analyze_age: 3600, bloat: {method: statistics, wasted_bytes: 0, wasted_percent: 0.0,
                                       stale_statistics: null, note: null}}]
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _pg_activity as activity
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import POSTGRES_OPTIONS, merged, pg_server
from ansible_collections.runbook.ops.plugins.module_utils._status import FAIL_ON_ARGSPEC, fails

THRESHOLDS = ("connections_warn_percent", "connections_crit_percent", "long_query_warn_seconds",
              "long_query_crit_seconds", "idle_in_transaction_warn_seconds", "idle_in_transaction_crit_seconds",
              "lock_wait_warn_seconds", "lock_wait_crit_seconds", "replication_lag_warn_seconds",
              "replication_lag_crit_seconds")
DEFAULTS = {"connections_warn_percent": 80, "connections_crit_percent": 95, "long_query_warn_seconds": 300,
            "long_query_crit_seconds": 1800, "idle_in_transaction_warn_seconds": 60,
            "idle_in_transaction_crit_seconds": 600, "lock_wait_warn_seconds": 30, "lock_wait_crit_seconds": 300,
            "replication_lag_warn_seconds": 60, "replication_lag_crit_seconds": 600}


def argument_spec():
    spec = merged(
        POSTGRES_OPTIONS,
        database={"type": "str", "default": "postgres", "aliases": ["login_db"]},
        size_databases={"type": "list", "elements": "str"},
        table_top={"type": "int", "default": 10},
        query_max_length={"type": "int", "default": 200},
        max_sessions={"type": "int", "default": 50},
        query_timeout={"type": "float", "default": 30},
        bloat={"type": "str", "choices": list(activity.BLOAT_METHODS), "default": "statistics"},
        bloat_warn_percent={"type": "float", "default": 30},
        bloat_crit_percent={"type": "float", "default": 60},
        bloat_min_bytes={"type": "int", "default": 10 * 1024 * 1024},
        fail_on=dict(FAIL_ON_ARGSPEC),
        remediate={"type": "str", "choices": list(activity.REMEDIATIONS), "default": "none"},
        grace_period={"type": "float", "default": 10},
        escalate={"type": "bool", "default": True},
        target_pids={"type": "list", "elements": "int"},
        target_min_age={"type": "float"},
        target_states={"type": "list", "elements": "str", "choices": list(activity.SESSION_STATES)},
        target_users={"type": "list", "elements": "str"},
        target_applications={"type": "list", "elements": "str"},
        target_databases={"type": "list", "elements": "str"},
        target_blocking={"type": "bool", "default": False},
        max_targets={"type": "int", "default": 10},
        allow_superuser={"type": "bool", "default": False},
        allow_replication={"type": "bool", "default": False},
        allow_background={"type": "bool", "default": False},
        protect_applications={"type": "list", "elements": "str", "default": list(activity.PROTECTED_APPLICATIONS)},
    )
    for name in THRESHOLDS:
        spec[name] = {"type": "float", "default": DEFAULTS[name]}
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if activity.psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    params = module.params
    changed = False
    remediation = None
    try:
        policy = activity.ActivityPolicy.from_params(params)
        server = pg_server(params)
        remediation = remediation_from_params(server, params)
        result = activity.report(server, params["database"], policy, params["size_databases"])
        if remediation is not None:
            done = remediation.run(check_mode=module.check_mode)
            changed = done.pop("changed")
            if changed and not module.check_mode:
                before = result["findings"]
                result = activity.report(server, params["database"], policy, params["size_databases"])
                result["findings_before"] = before
            result["remediation"] = done
            result["findings"].append(activity.remediation_finding(done))
            activity.conclude(result)
    except RunbookError as exc:
        changed = changed or bool(remediation is not None and remediation.changed and not module.check_mode)
        fail_with(module, exc, changed=changed)
    if fails(result["state"], params["fail_on"]):
        module.fail_json(changed=changed, **result)
    module.exit_json(changed=changed, **result)


def remediation_from_params(server, params):
    """The Remediation the options ask for (None for remediate=none), checked before anything is read."""
    if params["remediate"] == "none":
        return None
    target_filter = activity.TargetFilter(
        pids=params["target_pids"], min_age=params["target_min_age"], states=params["target_states"],
        users=params["target_users"], applications=params["target_applications"],
        databases=params["target_databases"], blocking_only=params["target_blocking"],
        allow_superuser=params["allow_superuser"], allow_replication=params["allow_replication"],
        allow_background=params["allow_background"], protect_applications=params["protect_applications"],
        max_targets=params["max_targets"])
    return activity.Remediation(server, params["database"], params["remediate"], target_filter,
                                grace_period=params["grace_period"], escalate=params["escalate"],
                                query_max_length=params["query_max_length"])


if __name__ == "__main__":
    main()
