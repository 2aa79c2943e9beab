#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: db_maintenance
short_description: Database maintenance for a window - VACUUM, REINDEX CONCURRENTLY, the INVALID-index sweep, SQLite checks
version_added: 0.4.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Runs a database's maintenance as a list of steps, in order, and reports each one (done, failed, skipped or
    not run) with its time.
  - PostgreSQL, in this order - the sweep of INVALID indexes (those named C(<index>_ccnew) or C(_ccold), left by
    an interrupted REINDEX CONCURRENTLY, are dropped; other INVALID indexes, left by an interrupted CREATE INDEX
    CONCURRENTLY, are rebuilt; an index that CREATE INDEX CONCURRENTLY is building right now is left alone),
    REINDEX INDEX CONCURRENTLY of the indexes named in O(reindex) and, with O(reindex_bloated_percent), of b-tree
    indexes whose leaf density says they are bloated (needs the C(pgstattuple) extension), then VACUUM (ANALYZE)
    of the database or of O(tables).
  - Before a rebuild the free space of the server's data directory must be at least O(disk_headroom) times the
    index size (the module must then run on the database host; set O(disk_check=false) otherwise). A rebuild that
    fails drops the C(_ccnew) copy it left, so nothing half-done stays behind.
  - Every statement runs with O(lock_timeout) and is retried O(retries) times, so maintenance never queues the
    service's own queries behind a lock it waits for.
  - SQLite - C(PRAGMA integrity_check) first (a damaged file is never vacuumed), then VACUUM and C(PRAGMA optimize)
    while holding the service's single-writer lock; when the service holds that lock the task fails before
    changing anything (stop the service first, or run only the integrity check with O(vacuum=false),
    O(analyze=false)). In check mode a held lock is a note in RV(notes), so the plan of a window that stops the
    service first can be shown while it runs.
  - O(time_budget) is checked between steps - the step under way finishes, the rest are reported as not run.
extends_documentation_fragment:
  - runbook.ops.postgres
options:
  engine:
    description: The database engine.
    type: str
    choices: [postgresql, sqlite]
    default: postgresql
  database:
    description: The PostgreSQL database. Required for V(postgresql).
    type: str
  path:
    description: The SQLite database file. Required for V(sqlite).
    type: path
  lock_file:
    description: The service's single-writer lock file (SQLite); default C(DATA_DIR/.<name>.lock) beside the file.
    type: path
  vacuum:
    description: VACUUM (PostgreSQL) or VACUUM the file (SQLite).
    type: bool
    default: true
  analyze:
    description: ANALYZE (PostgreSQL, together with VACUUM when both are on) or C(PRAGMA optimize) (SQLite).
    type: bool
    default: true
  tables:
    description: The tables (C(table) or C(schema.table)) to vacuum and analyze; default the whole database.
    type: list
    elements: str
    default: []
  reindex:
    description: Indexes (C(index) or C(schema.index), schema C(public) by default) to rebuild with REINDEX CONCURRENTLY.
    type: list
    elements: str
    default: []
  reindex_bloated_percent:
    description:
      - Also rebuild b-tree indexes whose estimated bloat (from C(pgstatindex)'s leaf density against the default
        fillfactor of 90) is at least this percent. V(0) looks for none. Without the C(pgstattuple) extension
        the result says so and nothing is rebuilt for this reason.
    type: float
    default: 0
  reindex_min_bytes:
    description: Indexes smaller than this are never rebuilt for bloat.
    type: int
    default: 10485760
  invalid_indexes:
    description:
      - V(rebuild) drops the leftovers of interrupted REINDEX CONCURRENTLY and rebuilds other INVALID indexes;
        V(report) only lists them in RV(notes); V(ignore) does not look.
    type: str
    choices: [rebuild, report, ignore]
    default: rebuild
  lock_timeout:
    description: Seconds each statement waits for its lock before it gives up (and is retried).
    type: int
    default: 5
  retries:
    description: How many times a statement that did not get its lock is tried again.
    type: int
    default: 3
  retry_delay:
    description: Seconds between those tries.
    type: float
    default: 5
  disk_headroom:
    description: Free space needed before a rebuild, as a multiple of the index size.
    type: float
    default: 1.2
  disk_check:
    description: Check the free space of the server's data directory before a rebuild (PostgreSQL).
    type: bool
    default: true
  time_budget:
    description: Seconds after which no further step starts. V(0) has no budget.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: Returns the plan (every step V(planned)) and changes nothing.
  diff_mode:
    support: none
    description: Maintenance changes no configuration.
  idempotent:
    support: partial
    description: VACUUM and ANALYZE always run and report changed; the INVALID-index sweep finds nothing the second time.
seealso:
  - module: runbook.ops.pg_activity
    description: Table sizes and the bloat estimate before and after, and who holds the locks maintenance waits for.
'''

EXAMPLES = r'''
- name: Nightly maintenance of the app database, at most 30 minutes
  runbook.ops.db_maintenance:
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    database: app
    reindex_bloated_percent: 30
    time_budget: 1800
  register: maintenance

- name: Only the sweep for INVALID indexes, no VACUUM
  runbook.ops.db_maintenance:
    database: app
    vacuum: false
    analyze: false

- name: SQLite - integrity check, VACUUM and optimize (the service must be stopped)
  runbook.ops.db_maintenance:
    engine: sqlite
    path: /srv/app/data/app.db
'''

RETURN = r'''
steps:
  description: Each step with its action, target, reason, outcome, detail, seconds, attempts and, for index rebuilds
    and SQLite VACUUM, bytes before and after.
  returned: always
  type: list
  elements: dict
  sample: [{action: drop_invalid, target: public.items_name_idx_ccnew, reason: "left by an interrupted REINDEX CONCURRENTLY",
            outcome: done, detail: "", seconds: 0.1, attempts: 1, bytes_before: 16384, bytes_after: 0}]
notes:
  description: What was seen and left alone (an index being built now, INVALID indexes in V(report) mode, no pgstattuple).
  returned: always
  type: list
  elements: str
  sample: ["bloated indexes are not looked for: the pgstattuple extension is not installed in app"]
stopped:
  description: Whether the time budget stopped the run before every step ran.
  returned: always
  type: bool
  sample: false
database_bytes_before:
  description: The database's size before (PostgreSQL C(pg_database_size), SQLite the file size).
  returned: always
  type: int
  sample: 104857600
database_bytes_after:
  description: Its size after (null in check mode).
  returned: always
  type: int
  sample: 94371840
findings:
  description:
    - The run as report findings for M(runbook.ops.check_report) (section V(maintenance)) - one per step (V(ok) done
      or planned, V(warning) skipped or not run, V(critical) failed; the value is its time in seconds), the
      database size before and after, and one per note.
  returned: always
  type: list
  elements: dict
  sample: [{section: maintenance, check: "vacuum analyze database app", state: ok, value: 1.2, unit: s,
            detail: "done - every table"}]
msg:
  description: The counts of steps by outcome and the failures.
  returned: always
  type: str
  sample: "3 maintenance steps: 3 done"
'''

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _db_maintenance as maint
from ansible_collections.runbook.ops.plugins.module_utils import _options
from ansible_collections.runbook.ops.plugins.module_utils._errors import MaintenanceError, RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def postgres(module, params, budget):
    server = _options.pg_server(params)
    with maint.PgMaintenance(server, params["database"], params["lock_timeout"], params["retries"],
                             params["retry_delay"], params["disk_headroom"], params["disk_check"]) as job:
        steps, notes = job.plan(params["vacuum"], params["analyze"], params["tables"], params["reindex"],
                                params["reindex_bloated_percent"], params["reindex_min_bytes"], params["invalid_indexes"])
        before = job.database_bytes()
        stopped = False if module.check_mode else maint.run_steps(steps, budget, job.run)
        after = None if module.check_mode else job.database_bytes()
    return steps, notes, stopped, before, after


def sqlite(module, params, budget):
    job = maint.SqliteMaintenance(params["path"], params["lock_file"])
    steps = maint.sqlite_plan(params["path"], params["vacuum"], params["analyze"])
    notes = []
    before = os.path.getsize(params["path"])
    writes = len(steps) > 1
    holder = job.writers() if writes else None
    if holder is not None and module.check_mode:
        # The plan stands; the role that runs it stops the writer first.
        notes.append("the service holds its writer lock %s (pid %s): a real run fails unless it is stopped first"
                     % (job.lock_path, holder))
    elif holder is not None:
        raise MaintenanceError("the service holds its writer lock %s (pid %s): stop it before VACUUM or optimize, or "
                               "run only the integrity check (vacuum: false, analyze: false)" % (job.lock_path, holder))
    if module.check_mode:
        return steps, notes, False, before, None
    if writes:
        with job.held():
            stopped = maint.run_steps(steps, budget, job.run)
    else:
        stopped = maint.run_steps(steps, budget, job.run)
    return steps, notes, stopped, before, os.path.getsize(params["path"])


def main():
    module = AnsibleModule(
        argument_spec=_options.merged(_options.POSTGRES_OPTIONS, **{
            "engine": {"type": "str", "default": "postgresql", "choices": ["postgresql", "sqlite"]},
            "database": {"type": "str"},
            "path": {"type": "path"},
            "lock_file": {"type": "path"},
            "vacuum": {"type": "bool", "default": True},
            "analyze": {"type": "bool", "default": True},
            "tables": {"type": "list", "elements": "str", "default": []},
            "reindex": {"type": "list", "elements": "str", "default": []},
            "reindex_bloated_percent": {"type": "float", "default": 0},
            "reindex_min_bytes": {"type": "int", "default": 10 * 1024 * 1024},
            "invalid_indexes": {"type": "str", "default": "rebuild", "choices": ["rebuild", "report", "ignore"]},
            "lock_timeout": {"type": "int", "default": 5},
            "retries": {"type": "int", "default": 3},
            "retry_delay": {"type": "float", "default": 5},
            "disk_headroom": {"type": "float", "default": 1.2},
            "disk_check": {"type": "bool", "default": True},
            "time_budget": {"type": "int", "default": 0},
        }),
        required_if=[["engine", "postgresql", ["database"]], ["engine", "sqlite", ["path"]]],
        supports_check_mode=True,
    )
    params = module.params
    if params["engine"] == "postgresql" and maint.psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    try:
        budget = maint.Budget(params["time_budget"])
        run = postgres if params["engine"] == "postgresql" else sqlite
        steps, notes, stopped, before, after = run(module, params, budget)
    except RunbookError as exc:
        fail_with(module, exc)
    failed = [step for step in steps if step.outcome == "failed"]
    result = {
        "changed": any(step.outcome == "done" and step.action != "integrity_check" for step in steps),
        "steps": [step.as_dict() for step in steps], "notes": notes, "stopped": stopped,
        "database_bytes_before": before, "database_bytes_after": after,
        "findings": maint.findings(steps, notes, before, after),
        "msg": maint.summary(steps, stopped, params["time_budget"]),
    }
    if module.check_mode:
        result["msg"] = "check mode, nothing run: " + result["msg"]
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
