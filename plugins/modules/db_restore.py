#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_restore
short_description: Restore a PostgreSQL or SQLite database from a backup store
version_added: 0.1.0
description:
  - Restores the latest complete backup of a service's database, or the one named by O(backup_id).
  - Before anything is changed the backup must match its manifest (size and sha256); a backup without a
    manifest, truncated, or with a single flipped byte is refused.
  - PostgreSQL with C(pg_restore). An empty target is restored into directly, a missing one is created with
    O(create_database) (and dropped again when the restore fails). A non-empty target needs O(force=true) and is
    replaced as O(replace) says; see there for what each mode leaves behind and the privileges it needs.
  - With O(single_transaction) (the default) a C(pg_restore) that fails changes nothing. A restore that fails
    after it changed the live database (without a single transaction, or when the row counts differ after the
    commit) returns C(changed=true) and says so in its message.
  - The backup must be one of the database being restored (the manifest's engine and database); a backup of
    another database, for example given by O(backup_id), is refused unless O(source_database) names it.
  - SQLite by decompressing into a new file beside the target, checking it (integrity and row counts), then
    atomically replacing the target; the previous file is kept as C(<path>.pre-restore-<stamp>).
  - Refuses to restore over a non-empty database unless O(force=true).
  - Refuses a SQLite restore while another process holds the service's single-writer lock, unless
    O(stop_command) says how to stop it; the lock is held during the swap so the service cannot start midway.
  - After the restore, every table's row count is compared with the manifest.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.backup_source
  - runbook.ops.postgres
  - runbook.ops.store
options:
  database:
    description:
      - For O(engine=postgresql), the database to restore into; backups of O(source_database) are used.
      - For O(engine=sqlite), the name of the backed-up database, when it differs from the name of O(path).
  path:
    description: For O(engine=sqlite), the database file to restore (replace).
  source_database:
    description:
      - Database whose backups to restore, when it is not the target O(database) (or, for SQLite, the name of
        O(path)), for example to restore C(app) into C(app_restored).
      - A backup whose manifest names another database than this one is refused.
    type: str
  replace:
    description:
      - For PostgreSQL, how a non-empty target is replaced (with O(force=true)).
      - V(swap) (the default) restores into a new database C(<database>_rbops_new_<hex>) on the same server, compares
        its row counts with the manifest, then blocks new connections to the live database, ends its sessions,
        renames it to C(<database>_pre_restore_<UTC stamp>) and renames the new one into its place. Everything the
        backup does not hold is gone from the live database (tables, large objects, functions created later) and
        is still in the previous database, which is kept until you drop it (or O(drop_previous=true)). If anything
        fails before the rename, the live database was not touched. Needs CREATEDB and ownership of the database
        (or a superuser), ending other sessions needs the same role, C(pg_signal_backend) or a superuser, and the
        server needs room for a second copy. The new database belongs to the old one's owner; database-level
        privileges (C(GRANT ... ON DATABASE)) and settings (C(ALTER DATABASE ... SET)) are not copied; the module
        warns when the previous database had any.
      - V(clean) runs C(pg_restore --clean --if-exists) over the live database (in one transaction with
        O(single_transaction)). It drops and recreates only the objects the backup holds; objects that are not
        in the backup (a table or large object created after it) stay, and RV(not_removed) lists the tables among
        them. Needs only the privileges the objects' owners have; no second copy.
    type: str
    choices: [swap, clean]
    default: swap
  drop_previous:
    description:
      - For O(replace=swap), drop the previous database right after a successful swap instead of keeping it.
    type: bool
    default: false
  backup_id:
    description: Backup to restore. Defaults to the newest complete backup.
    type: str
  force:
    description:
      - Replace a database that is not empty (PostgreSQL; any user table) or a SQLite file that exists.
    type: bool
    default: false
  create_database:
    description: For PostgreSQL, create the target database when it does not exist.
    type: bool
    default: false
  single_transaction:
    description:
      - For PostgreSQL, restore in one transaction (C(pg_restore --single-transaction)), so a failure changes
        nothing. Not available with O(jobs) above 1.
    type: bool
    default: true
  no_owner:
    description: For PostgreSQL, skip ownership and privileges (C(--no-owner --no-privileges)).
    type: bool
    default: false
  jobs:
    description:
      - Parallel C(pg_restore) jobs, for directory-format backups (needs O(single_transaction=false)); at least 1,
        at most four per CPU (and 64), and refused when the server has too few free connections.
    type: int
    default: 1
  keep_previous:
    description: For SQLite, keep the replaced file (and its -wal/-shm files) as C(<path>.pre-restore-<stamp>).
    type: bool
    default: true
  lock_file:
    description:
      - For SQLite, the service's single-writer lock file. Defaults to C(<dir>/.<name>.lock) for C(<dir>/<name>.db)
        (for example C(DATA_DIR/.s3desk.lock) for C(DATA_DIR/s3desk.db)).
    type: path
  stop_command:
    description:
      - For SQLite, a command (argument list) that stops the writer when it holds the lock, for example
        C([docker-compose, -f, /srv/app/docker-compose.yml, stop, app]). The module waits up to O(stop_timeout)
        seconds for the lock to be released.
    type: list
    elements: str
  start_command:
    description: For SQLite, a command (argument list) run after the restore, whether it succeeded or not.
    type: list
    elements: str
  stop_timeout:
    description: Seconds to wait for the writer lock after O(stop_command); 0 or more.
    type: int
    default: 30
  check_mode_checksum:
    description:
      - In check mode, read the whole backup object and check its sha256, so that a corrupt backup is refused
        by a pre-check, before writers are stopped. Set to V(false) to skip that read of a very large backup.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Finds and checks the backup's manifest, the target and the lock, and reports what would be
      restored where (and what would be refused) without changing anything.
  diff_mode:
    support: none
    description: Database contents are not shown as a diff.
  idempotent:
    support: none
    description: Each run restores again.
seealso:
  - module: runbook.ops.db_backup
  - module: runbook.ops.backup_verify
"""

EXAMPLES = r"""
- name: Replace the live database app by its latest backup (swap; the old one is kept as app_pre_restore_<stamp>)
  runbook.ops.db_restore:
    service: app
    engine: postgresql
    database: app
    force: true
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    store:
      type: s3
      bucket: acme-backups
      prefix: prod

- name: Restore a given backup into a new database beside the live one
  runbook.ops.db_restore:
    service: app
    engine: postgresql
    source_database: app
    database: app_restored
    create_database: true
    backup_id: postgresql-app-20261123T091500Z-3fa9c1
    login_user: postgres
    store:
      type: local
      path: /var/backups/runbook

- name: Restore SQLite, stopping and starting the Compose service around the swap
  runbook.ops.db_restore:
    service: s3desk
    engine: sqlite
    path: /srv/s3desk/data/s3desk.db
    force: true
    stop_command: [docker-compose, -f, /srv/s3desk/docker-compose.yml, stop, s3desk]
    start_command: [docker-compose, -f, /srv/s3desk/docker-compose.yml, start, s3desk]
    store:
      type: local
      path: /var/backups/runbook
"""

RETURN = r"""
backup:
  description: The backup that was (or would be) restored.
  returned: always
  type: dict
  contains:
    id:
      description: Backup id.
      type: str
      sample: sqlite-s3desk-20261123T091500Z-3fa9c1
    location:
      description: Where the data object is.
      type: str
      sample: /var/backups/runbook/s3desk/sqlite-s3desk-20261123T091500Z-3fa9c1.sqlite3.zst
    size:
      description: Stored size in bytes.
      type: int
      sample: 1048576
    sha256:
      description: sha256 the object matched.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    started:
      description: When the backup was taken (UTC).
      type: str
      sample: "2026-11-23T09:15:00.000000Z"
    row_counts:
      description: Row counts recorded in the manifest.
      type: dict
      sample: {"items": 3}
target:
  description: The database restored into (C(host:port/database) or the SQLite file).
  returned: always
  type: str
  sample: 127.0.0.1:5432/app
previous:
  description: For SQLite, where the replaced file was kept.
  returned: when engine is sqlite
  type: str
  sample: /srv/s3desk/data/s3desk.db.pre-restore-20261123T101500Z
row_counts:
  description: Row counts of the restored database, per table.
  returned: success, not in check mode
  type: dict
  sample: {"public.items": 1200}
duration_seconds:
  description: How long the restore took.
  returned: success, not in check mode
  type: float
  sample: 8.2
mode:
  description:
    - For PostgreSQL, what the restore did (or would do), V(swap) or V(clean) (see O(replace)) over a non-empty
      database, V(into_empty) into an existing empty one, V(create) into a database it created.
  returned: when engine is postgresql
  type: str
  sample: swap
previous_database:
  description: For O(replace=swap), the database the live one was renamed to and kept (V(null) when dropped).
  returned: when engine is postgresql
  type: str
  sample: app_pre_restore_20261123T101500Z
not_removed:
  description:
    - For PostgreSQL, tables in the restored database that the backup does not hold (left by O(replace=clean)).
      Other objects outside the backup (functions, large objects) are not listed but are not removed either.
  returned: when engine is postgresql and not in check mode
  type: list
  elements: str
  sample: ["public.created_after_the_backup"]
data_excluded:
  description: Tables the backup holds without their rows (C(pg_dump_options)); not compared.
  returned: when engine is postgresql
  type: list
  elements: str
  sample: []
created_database:
  description: For PostgreSQL, whether the target database was (or would be) created.
  returned: when engine is postgresql
  type: bool
  sample: false
checksum:
  description: In check mode, V(ok) when the backup object matched its sha256, V(unchecked) with O(check_mode_checksum=false).
  returned: check mode
  type: str
  sample: ok
writer_stopped:
  description: For SQLite, whether O(stop_command) was run because the writer held the lock.
  returned: when engine is sqlite
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _backup as backups
from ansible_collections.runbook.ops.plugins.module_utils import _restore as restores
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import (
    BACKUP_SOURCE_OPTIONS, POSTGRES_OPTIONS, STORE_OPTIONS, merged, pg_server)
from ansible_collections.runbook.ops.plugins.module_utils._store import store_from_params


def main():
    handle_termination()  # SIGTERM cleans up like Ctrl-C
    module = AnsibleModule(
        argument_spec=merged(
            BACKUP_SOURCE_OPTIONS, POSTGRES_OPTIONS, STORE_OPTIONS,
            source_database={"type": "str"},
            backup_id={"type": "str"},
            force={"type": "bool", "default": False},
            create_database={"type": "bool", "default": False},
            replace={"type": "str", "choices": list(restores.REPLACE_MODES), "default": "swap"},
            drop_previous={"type": "bool", "default": False},
            single_transaction={"type": "bool", "default": True},
            no_owner={"type": "bool", "default": False},
            jobs={"type": "int", "default": 1},
            keep_previous={"type": "bool", "default": True},
            lock_file={"type": "path"},
            stop_command={"type": "list", "elements": "str"},
            start_command={"type": "list", "elements": "str"},
            stop_timeout={"type": "int", "default": 30},
            check_mode_checksum={"type": "bool", "default": True},
        ),
        required_if=[["engine", "postgresql", ["database"]], ["engine", "sqlite", ["path"]]],
        supports_check_mode=True,
    )
    params = module.params
    try:
        backups.require_libraries(params["engine"], params["store"]["type"])
        backups.check_jobs(params["jobs"])
        if params["jobs"] > 1 and params["single_transaction"]:
            raise ParameterError("jobs > 1 needs single_transaction: false (pg_restore cannot do both)")
        store = store_from_params(params["store"])
        server = pg_server(params)
        if params["engine"] == "postgresql":
            identity = backups.BackupIdentity(params["service"], "postgresql",
                                              database=params["source_database"] or params["database"])
            result = restores.restore_postgres_database(
                store, identity, server, params["database"], backup_id=params["backup_id"],
                create_database=params["create_database"], force=params["force"], replace=params["replace"],
                drop_previous=params["drop_previous"], single_transaction=params["single_transaction"],
                no_owner=params["no_owner"], jobs=params["jobs"], tmp_dir=params["tmp_dir"],
                check_mode=module.check_mode, check_mode_checksum=params["check_mode_checksum"])
        else:
            identity = backups.BackupIdentity(params["service"], "sqlite", path=params["path"],
                                              database=params["source_database"] or params["database"])
            result = restores.restore_sqlite_file(
                store, identity, params["path"], backup_id=params["backup_id"], force=params["force"],
                keep_previous=params["keep_previous"], lock_path=params["lock_file"],
                stop_command=params["stop_command"], start_command=params["start_command"],
                stop_timeout=params["stop_timeout"], check_mode=module.check_mode,
                check_mode_checksum=params["check_mode_checksum"])
    except RunbookError as exc:
        fail_with(module, exc)
    verb = "would restore" if module.check_mode else "restored"
    msg = "%s backup %s into %s" % (verb, result["backup"]["id"], result["target"])
    if result.get("mode") == "swap":
        msg += (" by swapping in a new database; the previous one %s %s" % (
            "would be" if module.check_mode else "is", "kept as %s" % result["previous_database"]
            if result["previous_database"] else "dropped"))
    elif result.get("mode") == "clean":
        msg += (" with pg_restore --clean over the live database: objects that are not in the backup were not removed%s"
                % (" (tables: %s)" % ", ".join(result["not_removed"]) if result.get("not_removed") else ""))
    for note in result.get("not_carried_over", []):
        module.warn("not carried over to the restored database: %s" % note)
    module.exit_json(changed=True, msg=msg, **result)


if __name__ == "__main__":
    main()
