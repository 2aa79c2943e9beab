#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_restore
short_description: Point-in-time recovery with pgBackRest into a new cluster, verified
version_added: 0.2.0
description:
  - Restores a stanza to a point in time (O(target_type=time)), an LSN, a named restore point, the end of the
    backup (V(immediate)) or the end of the WAL archive (V(latest)), with C(pgbackrest restore).
  - By default into a B(new) data directory O(data_dir) that is started as a new cluster on O(restore_port), so the live
    cluster is never touched; the copy gets C(archive_mode=off) so it never pushes WAL into the live stanza's
    repository. The live cluster's data directory (the stanza's C(pg1-path)) or any non-empty directory is refused
    unless O(force=true), and a directory with a running server is always refused.
  - For a time or LSN target the newest backup that ended before the target is chosen; a target in the future or
    before every backup is refused before anything is written.
  - Starts the copy with C(pg_ctl), waits until recovery reaches the target and the server promotes
    (C(recovery_target_action=promote)), and reports the recovered-to time (the last transaction replayed, from the
    server log) against the target, and the duration (RTO).
  - When recovery stops early (a WAL segment missing from the repository, a target after the last archived WAL) the
    task fails with PostgreSQL's reason and the missing segment; the restored directory is left for inspection.
  - With O(database), runs the checks of M(runbook.ops.backup_verify) in the copy, row counts (O(expected_row_counts))
    and SQL O(assertions), and the RTO limit O(max_restore_seconds); any failed check fails the task.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.pgbackrest
  - runbook.ops.postgres
  - runbook.ops.restore_check
options:
  data_dir:
    description: Where to restore; a new or empty directory (created with mode 0700 for O(os_user)).
    type: path
    required: true
  target_type:
    description: What to recover to.
    type: str
    choices: [latest, time, lsn, name, immediate]
    default: latest
  target:
    description:
      - The target, for V(time) a timestamp with a time zone (C(2026-11-30 21:10:40+00), C(2026-11-30T21:10:40Z)),
        for V(lsn) an LSN (C(0/3000050)), for V(name) a restore point made with C(pg_create_restore_point()).
    type: str
  exclusive:
    description: Stop just before the target instead of just after it (V(time) and V(lsn)).
    type: bool
    default: false
  backup_set:
    description: Start from this backup label instead of the one the module chooses.
    type: str
  restore_port:
    description: Port of the restored copy; required unless O(force) restores over a stopped cluster.
    type: int
  listen_addresses:
    description: Addresses the copy listens on.
    type: str
    default: 127.0.0.1
  socket_dir:
    description: Directory of the copy's Unix socket.
    type: path
    default: /var/run/postgresql
  log_file:
    description: The copy's server log; defaults to O(data_dir) with C(.log) appended. The module reads the recovery's
      outcome from it.
    type: path
  force:
    description:
      - Allow restoring over a non-empty directory, including the live cluster's data directory, with
        C(pgbackrest restore --delta). The server there must be stopped. What the directory held is replaced.
    type: bool
    default: false
  start:
    description: Start the copy and wait for its promotion. With V(false) only the files are restored.
    type: bool
    default: true
  start_command:
    description: Command (a list, no shell) that starts the cluster instead of C(pg_ctl), for a restore over a
      cluster whose configuration lives elsewhere (C([pg_ctlcluster, "15", main, start])).
    type: list
    elements: str
    default: []
  recovery_timeout:
    description: Seconds the restore, start and recovery may take before the task fails.
    type: int
    default: 3600
  process_max:
    description: Parallel restore processes.
    type: int
  stop_after:
    description: Stop the copy after the verification (it is left running by default, for inspection).
    type: bool
    default: false
  database:
    description:
      - Database of the copy to verify; empty skips the verification.
      - The connection options reach the copy on O(restore_port) (O(login_host) defaults to C(127.0.0.1) here).
    type: str
  expected_row_counts:
    description: Exact row counts expected in the copy, by table (C(public.items)).
    type: dict
    default: {}
  max_restore_seconds:
    description: RTO, the longest acceptable restore (restore, start, recovery) in seconds.
    type: float
attributes:
  check_mode:
    support: full
    description: Reads the repository, validates the target and the destination, and returns the restore command
      it would run; writes nothing.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: none
    description: A second run finds the directory not empty and refuses.
notes:
  - Run it as root (C(become)); pgBackRest and C(pg_ctl) run as O(os_user). The restored copy reads WAL from the
    repository through the stanza's O(config) (its C(restore_command)), which must stay in place while it recovers.
  - O(login_port) is ignored; the verification connects to O(restore_port).
seealso:
  - module: runbook.ops.pgbackrest_backup
  - module: runbook.ops.backup_verify
"""

EXAMPLES = r"""
- name: Recover app to just before the bad migration, beside the live cluster, and check it
  runbook.ops.pgbackrest_restore:
    stanza: app
    config: /etc/pgbackrest/app.conf
    data_dir: /var/lib/postgresql/pitr/app-20261130
    restore_port: 5499
    target_type: time
    target: "2026-11-30 21:10:00+00"
    database: app
    login_host: 127.0.0.1
    login_user: postgres_admin
    login_password: "{{ vault_pg_password }}"
    assertions:
      - {name: orders exist, query: "SELECT count(*) > 0 FROM orders", expected: true}
    max_restore_seconds: 14400
  register: pitr
"""

RETURN = r"""
mode:
  description: V(new) (a new cluster in a new directory) or V(replace) (O(force) over an existing directory).
  returned: always
  type: str
target:
  description: The target as given to PostgreSQL and the backup restored from.
  returned: always
  type: dict
  sample: {type: time, target: "2026-11-30 21:13:13.053902+00", exclusive: false, backup: 20261130-211032F,
           backup_finished: "2026-11-30T21:10:35Z"}
recovered_to:
  description: Commit time of the last transaction the recovery replayed (from the server log).
  returned: when the copy promoted
  type: str
  sample: "2026-11-30 21:13:11.812160+00"
target_gap_seconds:
  description: Target minus recovered-to time (O(target_type=time)); how much earlier than the target the last kept
    transaction committed.
  returned: when the copy promoted
  type: float
duration_seconds:
  description: Restore, start and recovery until promotion (the RTO measurement).
  returned: success and not check mode
  type: float
restore_seconds:
  description: The C(pgbackrest restore) command alone.
  returned: success and not check mode
  type: float
promoted:
  description: Whether the copy finished recovery and accepts writes.
  returned: always
  type: bool
verification:
  description: Row counts, assertions and RTO, as in M(runbook.ops.backup_verify); also when they fail.
  returned: when O(database) is given
  type: dict
restore_command:
  description: The pgBackRest command line of the restore (never holds a secret).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _pgbackrest as pgbr
from ansible_collections.runbook.ops.plugins.module_utils._errors import (
    ParameterError, PitrError, RunbookError, handle_termination)
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import POSTGRES_OPTIONS, RESTORE_CHECK_OPTIONS, merged
from ansible_collections.runbook.ops.plugins.module_utils._postgres import PgServer


def main():
    handle_termination()
    module = AnsibleModule(
        argument_spec=merged(
            pgbr.PGBACKREST_OPTIONS, POSTGRES_OPTIONS, RESTORE_CHECK_OPTIONS,
            data_dir={"type": "path", "required": True},
            target_type={"type": "str", "choices": list(pgbr.TARGET_TYPES), "default": "latest"},
            target={"type": "str"},
            exclusive={"type": "bool", "default": False},
            backup_set={"type": "str"},
            restore_port={"type": "int"},
            listen_addresses={"type": "str", "default": "127.0.0.1"},
            socket_dir={"type": "path", "default": "/var/run/postgresql"},
            log_file={"type": "path"},
            force={"type": "bool", "default": False},
            start={"type": "bool", "default": True},
            start_command={"type": "list", "elements": "str", "default": []},
            recovery_timeout={"type": "int", "default": 3600},
            process_max={"type": "int"},
            stop_after={"type": "bool", "default": False},
            database={"type": "str"},
            expected_row_counts={"type": "dict", "default": {}},
            max_restore_seconds={"type": "float"},
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "promoted": False}
    try:
        if p["database"] and not p["start"]:
            raise ParameterError("database (the verification) needs start: true")
        pgbackrest = pgbr.pgbackrest_from_params(p, module.get_bin_path)
        live = pgbr.config_pg_path(pgbr.read_text(p["config"]), p["stanza"])
        result.update(pgbr.restore_cluster(
            pgbackrest, p["data_dir"], p["target_type"], p["target"], p["restore_port"], exclusive=p["exclusive"],
            backup_set=p["backup_set"], listen_addresses=p["listen_addresses"], socket_dir=p["socket_dir"],
            log_file=p["log_file"], force=p["force"], start=p["start"], start_command=p["start_command"],
            pg_bin_dir=p["pg_bin_dir"], live_data_dir=live, recovery_timeout=p["recovery_timeout"],
            process_max=p["process_max"], os_user=p["os_user"], check_mode=module.check_mode))
        result["changed"] = True
        if module.check_mode:
            module.exit_json(msg="would restore stanza %s (backup %s) into %s (%s)"
                             % (p["stanza"], result["target"]["backup"], result["data_dir"], result["mode"]), **result)
        if p["database"] and result["promoted"]:
            server = PgServer(host=p["login_host"] or "127.0.0.1", port=p["restore_port"] or p["login_port"],
                              user=p["login_user"], password=p["login_password"], ssl_mode=p["ssl_mode"],
                              connect_timeout=p["connect_timeout"], bin_dir=p["pg_bin_dir"])
            result["verification"] = pgbr.verify_copy(server, p["database"], p["expected_row_counts"], p["assertions"],
                                                      result["duration_seconds"], p["max_restore_seconds"])
        if p["stop_after"] and result["promoted"]:
            pgbr.run_tool(pgbr.stop_argv(pgbr.pg_tool("pg_ctl", p["pg_bin_dir"], result["data_dir"]),
                                         result["data_dir"]), "pg_ctl stop", p["os_user"])
            result["stopped"] = True
        verification = result.get("verification")
        if verification and not verification["passed"]:
            raise PitrError("the copy recovered to %s but failed verification: %s"
                            % (result.get("recovered_to"), "; ".join(verification["failures"])))
    except RunbookError as exc:
        fail_with(module, exc, **result)
    module.exit_json(msg="stanza %s restored into %s (port %s) from backup %s, recovered to %s (target %s) in %.1fs"
                         % (p["stanza"], result["data_dir"], result["port"], result["target"]["backup"],
                            result.get("recovered_to") or "the end of the archive" if result["promoted"] else "-",
                            result["target"].get("target") or p["target_type"], result.get("duration_seconds", 0)),
                     **result)


if __name__ == "__main__":
    main()
