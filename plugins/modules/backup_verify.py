#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_verify
short_description: Prove a backup restores, by restoring it into scratch space and checking it
version_added: 0.1.0
description:
  - Takes the latest complete backup of a service's database (or O(backup_id)), checks its size and sha256
    against the manifest, restores it into a scratch database with a unique name (PostgreSQL,
    C(rbops_verify_<db>_<random>) on the given server) or a temporary file (SQLite, which must also pass
    C(PRAGMA integrity_check)), and compares every table's row count with the manifest.
  - Runs the O(assertions) (read-only SQL whose first value must equal the expected one) in the scratch copy.
  - Measures the restore time against O(max_restore_seconds) (RTO) and the backup's age against O(max_age) (RPO).
  - The scratch database or file is always removed, also when a check or the restore fails. A PostgreSQL scratch
    database that a killed verification left behind (named C(rbops_verify_<name>_<UTC stamp>_<hex>), older than a
    day and with nobody connected) is dropped by the next verification on the same server.
  - Refuses a backup whose manifest names another engine or database than the one asked for (a backup id of
    another database, for example); O(source_database) names the database a backup was taken of.
  - Tables a backup holds without their rows (C(pg_dump_options) such as C(--exclude-table-data)) are listed in the
    report and not compared.
  - Any failed check fails the task with a message naming the table or check; the full report is returned
    either way.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.backup_source
  - runbook.ops.postgres
  - runbook.ops.store
  - runbook.ops.restore_check
options:
  database:
    description:
      - Database whose backups to verify (PostgreSQL name, or the SQLite database name such as C(app) for
        C(app.db); O(path) may be given instead for SQLite).
      - For PostgreSQL, the scratch database is created on the server of the connection options, which need
        the right to create databases.
  backup_id:
    description: Backup to verify. Defaults to the newest complete backup.
    type: str
  max_age:
    description:
      - RPO. Fail when the backup is older than this. Seconds, or a duration such as V(1h), V(26h), V(1d).
    type: str
  max_restore_seconds:
    description: RTO. Fail when the restore takes longer than this many seconds.
    type: float
  source_database:
    description:
      - The database the backup was taken of, when it differs from O(database) or the name of O(path); backups
        whose manifest names another database are refused.
    type: str
  jobs:
    description:
      - Parallel C(pg_restore) jobs for directory-format backups; at least 1.
      - A custom-format backup is restored from a stream with one job; the module then warns that O(jobs) was not used.
    type: int
    default: 1
attributes:
  check_mode:
    support: full
    description: Verification only reads the store and writes scratch space it always removes, so it runs in
      check mode too.
  diff_mode:
    support: none
    description: Nothing to diff.
  idempotent:
    support: full
    description: Never changes the store or the live database.
seealso:
  - module: runbook.ops.db_backup
  - module: runbook.ops.backup_info
"""

EXAMPLES = r"""
- name: Verify last night's backup of app, with business checks, RPO and RTO
  runbook.ops.backup_verify:
    service: app
    engine: postgresql
    database: app
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    store:
      type: s3
      bucket: acme-backups
      prefix: prod
    assertions:
      - name: an admin user exists
        query: SELECT count(*) FROM users WHERE is_admin
        expected: 1
    max_age: 26h
    max_restore_seconds: 14400
  register: verification

- name: Verify the latest SQLite backup of s3desk
  runbook.ops.backup_verify:
    service: s3desk
    engine: sqlite
    database: s3desk
    store:
      type: local
      path: /var/backups/runbook
"""

RETURN = r"""
report:
  description: What was checked and found. Also returned when the verification fails.
  returned: always
  type: dict
  contains:
    backup_id:
      description: The backup verified.
      type: str
      sample: postgresql-app-20261123T091500Z-3fa9c1
    passed:
      description: Whether every check passed.
      type: bool
      sample: true
    checksum:
      description: V(ok), V(failed) or V(unchecked).
      type: str
      sample: ok
    tables:
      description: Per table, the row count in the manifest and after the restore.
      type: list
      elements: dict
      sample: [{"table": "public.items", "expected": 1200, "actual": 1200, "ok": true}]
    assertions:
      description: Per assertion, the expected and actual value.
      type: list
      elements: dict
      sample: [{"name": "an admin user exists", "expected": 1, "actual": 1, "ok": true}]
    restore_seconds:
      description: Time to check and restore the backup (the RTO measurement).
      type: float
      sample: 42.1
    age_seconds:
      description: Age of the backup (the RPO measurement).
      type: int
      sample: 3600
    rpo:
      description: RPO limit, measurement and result.
      type: dict
      sample: {"max_age_seconds": 93600, "age_seconds": 3600, "ok": true}
    rto:
      description: RTO limit, measurement and result.
      type: dict
      sample: {"max_restore_seconds": 14400, "restore_seconds": 42.1, "ok": true}
    scratch_database:
      description: The scratch database (or temporary directory) used.
      type: str
      sample: rbops_verify_app_1a2b3c4d
    scratch_dropped:
      description: Whether the scratch space is gone after the verification.
      type: bool
      sample: true
    failures:
      description: One line per failed check.
      type: list
      elements: str
      sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _backup as backups
from ansible_collections.runbook.ops.plugins.module_utils import _manifest as manifests
from ansible_collections.runbook.ops.plugins.module_utils import _restore as restores
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import (
    BACKUP_SOURCE_OPTIONS, POSTGRES_OPTIONS, RESTORE_CHECK_OPTIONS, STORE_OPTIONS, merged, pg_server)
from ansible_collections.runbook.ops.plugins.module_utils._store import store_from_params


def main():
    handle_termination()  # SIGTERM cleans up like Ctrl-C
    module = AnsibleModule(
        argument_spec=merged(
            BACKUP_SOURCE_OPTIONS, POSTGRES_OPTIONS, STORE_OPTIONS, RESTORE_CHECK_OPTIONS,
            backup_id={"type": "str"},
            max_age={"type": "str"},
            max_restore_seconds={"type": "float"},
            jobs={"type": "int", "default": 1},
            source_database={"type": "str"},
        ),
        required_if=[["engine", "postgresql", ["database"]]],
        required_one_of=[["database", "path"]],
        supports_check_mode=True,
    )
    params = module.params
    report = None
    try:
        max_age = manifests.parse_duration(params["max_age"], "max_age")
        if params["max_restore_seconds"] is not None and params["max_restore_seconds"] <= 0:
            raise ParameterError("max_restore_seconds must be positive")
        backups.require_libraries(params["engine"], params["store"]["type"])
        backups.check_jobs(params["jobs"])
        server = pg_server(params)
        identity = backups.BackupIdentity(params["service"], params["engine"],
                                          database=params["source_database"] or params["database"],
                                          path=params["path"])
        store = store_from_params(params["store"])
        report = restores.verify_backup(store, identity, server, backup_id=params["backup_id"],
                                        assertions=params["assertions"], max_age=max_age,
                                        max_restore_seconds=params["max_restore_seconds"], jobs=params["jobs"],
                                        tmp_dir=params["tmp_dir"])
    except RunbookError as exc:
        fail_with(module, exc)
    for note in report["notes"]:
        module.warn(note)
    module.exit_json(changed=False, report=report,
                     msg="backup %s verified: checksum ok, %d tables match, %d assertions pass, restored in %.1fs, "
                         "%s old" % (report["backup_id"], len(report["tables"]), len(report["assertions"]),
                                     report["restore_seconds"], manifests.human_duration(report["age_seconds"])))


if __name__ == "__main__":
    main()
