#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_backup
short_description: Back up a PostgreSQL or SQLite database into a local or S3 backup store
version_added: 0.1.0
description:
  - Takes a consistent backup and streams it through compression and a sha256 hash into the store, in
    constant memory, without a temporary copy of the dump (SQLite and O(format=directory) need one
    temporary copy; see O(tmp_dir)).
  - PostgreSQL is dumped with C(pg_dump) in custom format (or directory format with O(jobs)). Row counts of
    every table are taken in the very snapshot the dump reads (exported from a REPEATABLE READ transaction
    and handed to C(pg_dump --snapshot)), so they describe exactly what the dump holds.
  - SQLite is copied with its online backup API, consistent while the service keeps writing; the copy must
    pass C(PRAGMA quick_check) before it is stored.
  - A manifest (sizes, sha256, versions, per-table row counts, times) is written last, beside the data
    object. A dump that fails half-way leaves neither; the module fails and no new backup appears.
  - Retention (O(keep_last), O(keep_days)) then deletes older complete backups of the same service and
    database. Incomplete backups are never deleted, as they may be a backup another run is still writing.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.backup_source
  - runbook.ops.postgres
  - runbook.ops.store
options:
  format:
    description:
      - C(pg_dump) archive format for O(engine=postgresql). V(custom) streams; V(directory) allows O(jobs) but
        is first written to a temporary directory under O(tmp_dir).
    type: str
    choices: [custom, directory]
    default: custom
  jobs:
    description:
      - Parallel C(pg_dump) jobs, for O(format=directory) only; at least 1.
      - At most four per CPU of the managed host (and never more than 64), and refused when the
        C(jobs + 1) connections would leave the server fewer than a tenth of C(max_connections) (at least 3) free
        for its other clients.
    type: int
    default: 1
  compression:
    description:
      - Compression of the stored object. C(pg_dump) runs with C(-Z0) and the stream is compressed here.
    type: str
    choices: [zstd, gzip, none]
    default: zstd
  compression_level:
    description:
      - Compression level; defaults to 1 for zstd (fastest, and on typical application data also the smallest) and 6 for gzip.
      - 1 to 22 for zstd, 1 to 9 for gzip; refused with O(compression=none). Checked in check mode too.
    type: int
  pg_dump_options:
    description:
      - Extra C(pg_dump) arguments, for example C(--exclude-table-data=audit_log).
      - Options that change the output format or destination, and C(--schema-only), are refused.
      - Table and schema selection (C(-t)/C(--table), C(-T)/C(--exclude-table), C(--exclude-table-data),
        C(-n)/C(--schema), C(-N)/C(--exclude-schema)) is resolved in the dump's snapshot as C(pg_dump) resolves
        it. The manifest then counts only the tables whose rows the dump holds, lists the tables dumped without
        their rows in C(data_excluded) and records the selection in C(pg_dump_selection); verification and
        restore compare only the counted tables.
    type: list
    elements: str
    default: []
  keep_last:
    description:
      - Retention. Keep at least this many newest complete backups of this service and database.
      - Retention only ever deletes complete backups whose manifest names exactly this engine and database and the
        same source (the same SQLite file, or the same PostgreSQL host and port); backups of other databases whose
        names differ only in punctuation, or taken from another file or server, are never touched.
    type: int
  keep_days:
    description:
      - Retention. Keep every complete backup younger than this many days.
      - With both O(keep_last) and O(keep_days), a backup is kept when either keeps it.
        With neither, nothing is deleted.
    type: int
attributes:
  check_mode:
    support: full
    description: Checks that the database and the store are reachable and reports the object it would write
      and the backups retention would delete, without writing or deleting anything.
  diff_mode:
    support: none
    description: A backup has nothing to show as a diff.
  idempotent:
    support: none
    description: Every run takes a new backup.
notes:
  - Backups and manifests are private files (0600) in a V(local) store.
seealso:
  - module: runbook.ops.backup_info
  - module: runbook.ops.backup_verify
  - module: runbook.ops.db_restore
"""

EXAMPLES = r"""
- name: Back up the app's PostgreSQL database to S3, keeping 30 days
  runbook.ops.db_backup:
    service: app
    engine: postgresql
    database: app
    login_host: 127.0.0.1
    login_user: app
    login_password: "{{ vault_app_db_password }}"
    store:
      type: s3
      bucket: acme-backups
      prefix: prod
      sse: AES256
    keep_days: 30
  register: backup

- name: Back up a SQLite database while the service runs, into a local directory
  runbook.ops.db_backup:
    service: s3desk
    engine: sqlite
    path: /srv/s3desk/data/s3desk.db
    store:
      type: local
      path: /var/backups/runbook
    keep_last: 7

- name: A parallel directory-format dump of a large database
  runbook.ops.db_backup:
    service: app
    engine: postgresql
    database: app
    format: directory
    jobs: 4
    tmp_dir: /srv/scratch
    store:
      type: local
      path: /var/backups/runbook
"""

RETURN = r"""
backup:
  description: The manifest of the new backup (in check mode, the id and object it would have).
  returned: always
  type: dict
  contains:
    id:
      description: Backup id, usable with O(runbook.ops.db_restore#module:backup_id).
      type: str
      sample: postgresql-app-20261123T091500Z-3fa9c1
    object:
      description: Store key of the data object.
      type: str
      sample: app/postgresql-app-20261123T091500Z-3fa9c1.dump.zst
    location:
      description: Where the object is, as a path or an s3:// URL.
      type: str
      sample: s3://acme-backups/prod/app/postgresql-app-20261123T091500Z-3fa9c1.dump.zst
    size:
      description: Stored (compressed) size in bytes.
      type: int
      sample: 10485760
    raw_size:
      description: Size of the dump before compression, in bytes.
      type: int
      sample: 52428800
    sha256:
      description: sha256 of the stored object.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    duration_seconds:
      description: How long the backup took.
      type: float
      sample: 12.4
    row_counts:
      description:
        - Exact rows per table in the backup, keyed C(schema.table) (PostgreSQL) or table name (SQLite).
        - A schema or table name that is not a plain lower-case identifier is double-quoted as in SQL
          (C("Sales".orders), C("x.y".z)), so different tables never share a key.
      type: dict
      sample: {"public.items": 1200, "public.jobs": 42}
    data_excluded:
      description: Tables the dump holds without their rows (from O(pg_dump_options)); not in RV(backup.row_counts).
      type: list
      elements: str
      returned: when O(pg_dump_options) select tables or schemas
      sample: ["public.audit_log"]
    source:
      description: The database backed up, C(host:port/database) or the SQLite file; retention only deletes
        backups of the same source.
      type: str
      sample: 127.0.0.1:5432/app
    server_version:
      description: Version of the database server (or of the SQLite library).
      type: str
      sample: "15.18"
    tool_versions:
      description: Versions of the tools that made the dump.
      type: dict
      sample: {"pg_dump": "15.18"}
deleted:
  description: Ids of the backups retention deleted (in check mode, would delete).
  returned: always
  type: list
  elements: str
  sample: [postgresql-app-20261020T091500Z-aa01bc]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _backup as backups
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
            format={"type": "str", "choices": ["custom", "directory"], "default": "custom"},
            jobs={"type": "int", "default": 1},
            compression={"type": "str", "choices": ["zstd", "gzip", "none"], "default": "zstd"},
            compression_level={"type": "int"},
            pg_dump_options={"type": "list", "elements": "str", "default": []},
            keep_last={"type": "int"},
            keep_days={"type": "int"},
        ),
        required_if=[["engine", "postgresql", ["database"]], ["engine", "sqlite", ["path"]]],
        supports_check_mode=True,
    )
    params = module.params
    try:
        backups.require_libraries(params["engine"], params["store"]["type"], params["compression"])
        for name in ("keep_last", "keep_days"):
            if params[name] is not None and params[name] < (1 if name == "keep_last" else 0):
                raise ParameterError("%s must be at least %d" % (name, 1 if name == "keep_last" else 0))
        if params["tmp_dir"] and not os.path.isdir(params["tmp_dir"]):
            raise ParameterError("tmp_dir %s is not a directory" % params["tmp_dir"])
        spec = backups.BackupSpec(
            service=params["service"], engine=params["engine"], database=params["database"], path=params["path"],
            server=pg_server(params), compression=params["compression"],
            compression_level=params["compression_level"],
            dump_format=params["format"] if params["engine"] == "postgresql" else None, jobs=params["jobs"],
            tmp_dir=params["tmp_dir"], extra_args=params["pg_dump_options"])
        spec.require_path()
        store = store_from_params(params["store"])
        if module.check_mode:
            planned = backups.plan_backup(store, spec)
            expired = backups.expired_backups(store, spec, params["keep_last"], params["keep_days"])
            module.exit_json(changed=True, backup=planned, deleted=[e.backup_id for e in expired],
                             msg="would back up %s to %s" % (spec.source(), planned["location"]))
        manifest = backups.take_backup(store, spec)
        manifest["location"] = store.location(manifest["object"])
        expired = backups.expired_backups(store, spec, params["keep_last"], params["keep_days"],
                                          protect={manifest["id"]})
        deleted = backups.delete_backups(store, expired)
    except RunbookError as exc:
        fail_with(module, exc)
    module.exit_json(changed=True, backup=manifest, deleted=deleted,
                     msg="backed up %s to %s (%d bytes, %d tables) in %.1fs%s"
                     % (spec.source(), manifest["location"], manifest["size"], manifest["tables"],
                        manifest["duration_seconds"],
                        "; retention deleted %d older backups" % len(deleted) if deleted else ""))


if __name__ == "__main__":
    main()
