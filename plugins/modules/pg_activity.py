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
  - The session this module opens is never counted, listed or rated.
  - To see the queries and states of other roles' sessions the login role needs C(pg_monitor) (or
    C(pg_read_all_stats)), or to be a superuser; without it they are counted but their query reads
    C(<insufficient privilege>).
  - When the server cannot be reached the result is a critical C(server) finding with the reason, so a report can
    still be written with O(fail_on=never).
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
  max_sessions:
    description: At most this many sessions in each returned list (the counts are always complete).
    type: int
    default: 50
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
    description: Runs normally in check mode; it only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything.
requirements:
  - psycopg2 (Python library) on the managed host
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
    transaction, blocked sessions, replication, replication slots, table sizes).
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
      every process.
  returned: when reachable
  type: dict
  sample: {client_backends: 11, total: 17, max_connections: 100, superuser_reserved_connections: 3,
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
tables:
  description: The largest tables (and materialized views) of each of O(size_databases), largest first, with the
    table, index and TOAST sizes, row estimate, live and dead tuples and the last analyze and vacuum.
  returned: when reachable and O(table_top) is not 0
  type: list
  elements: dict
  sample: [{database: app, schema: public, table: items, kind: r, total_bytes: 1318912, table_bytes: 991232,
            index_bytes: 311296, toast_bytes: 8192, estimated_rows: 25000, live_tuples: 25000, dead_tuples: 120,
            modified_since_analyze: 120, last_analyze: "2026-11-30 03:12:44.1+00", last_vacuum: null,
            analyze_age: 3600}]
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _pg_activity as activity
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
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
        fail_on=dict(FAIL_ON_ARGSPEC),
    )
    for name in THRESHOLDS:
        spec[name] = {"type": "float", "default": DEFAULTS[name]}
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if activity.psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    params = module.params
    try:
        policy = activity.ActivityPolicy.from_params(params)
        result = activity.report(pg_server(params), params["database"], policy, params["size_databases"])
    except RunbookError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    if fails(result["state"], params["fail_on"]):
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
