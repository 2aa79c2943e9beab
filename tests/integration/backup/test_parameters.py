# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad parameters: a failed task with a message that says what is wrong, no traceback, nothing written."""

from __future__ import annotations

import os

from backup_testlib import failed, make_sqlite_sample, pg_params, task


def test_bad_parameters(pg_conn_params, tmp_path, run_tasks):
    source = str(tmp_path / "app.db")
    make_sqlite_sample(source, rows=5)
    store_dir = str(tmp_path / "store")
    store = {"type": "local", "path": store_dir}
    lite = {"service": "notes", "engine": "sqlite", "path": source, "store": store}
    pg = pg_params(pg_conn_params, "postgres", service="shop", store=store)
    cases = [
        ("unknown engine", "db_backup", dict(lite, engine="mysql"), ["engine", "postgresql, sqlite", "mysql"]),
        ("postgresql without database", "db_backup", {k: v for k, v in pg.items() if k != "database"},
         ["database"]),
        ("s3 without bucket", "db_backup", dict(lite, store={"type": "s3", "endpoint_url": "http://127.0.0.1:1"}),
         ["bucket"]),
        ("relative store path", "db_backup", dict(lite, store={"type": "local", "path": "backups/here"}),
         ["store.path must be an absolute", "backups/here"]),
        ("relative sqlite path", "db_backup", dict(lite, path="data/app.db"), ["path must be absolute"]),
        ("bad service name", "db_backup", dict(lite, service="../etc"), ["service must be"]),
        ("negative keep_last", "db_backup", dict(lite, keep_last=-1), ["keep_last must be at least 1"]),
        ("negative keep_days", "db_backup", dict(lite, keep_days=-3), ["keep_days must be at least 0"]),
        ("pg_dump --file", "db_backup", dict(pg, pg_dump_options=["--file=/tmp/elsewhere"]), ["--file"]),
        ("pg_dump -f", "db_backup", dict(pg, pg_dump_options=["-f/tmp/elsewhere"]), ["-f"]),
        ("jobs with custom format", "db_backup", dict(pg, jobs=2), ["jobs 2 needs format: directory"]),
        ("path traversal id", "db_restore", dict(lite, backup_id="../../etc/passwd", path=source + ".new"),
         ["malformed backup id", "../../etc/passwd"]),
        ("short id", "db_restore", dict(lite, backup_id="foo", path=source + ".new"), ["malformed backup id", "foo"]),
        ("verify bad id", "backup_verify", dict(lite, backup_id="../../etc/passwd"), ["malformed backup id"]),
        ("bad max_age", "backup_info", {"service": "notes", "store": store, "max_age": "soon"},
         ["max_age", "soon", "not a duration"]),
        ("verify bad max_age", "backup_verify", dict(lite, max_age="1 fortnight"), ["not a duration"]),
        ("restore jobs in one transaction", "db_restore", dict(pg, jobs=2, single_transaction=True),
         ["jobs > 1 needs single_transaction: false"]),
        ("unknown option", "db_backup", dict(lite, retention=3), ["retention"]),
    ]
    run = run_tasks([task(name, module, params) for name, module, params, _words in cases])
    for name, _module, _params, words in cases:
        failed(run, name, *words)
    assert not os.path.exists(store_dir), "a refused task wrote to the store"
    assert not os.path.exists(source + ".new")
