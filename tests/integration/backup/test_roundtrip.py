# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup -> backup_info -> backup_verify -> db_restore, for PostgreSQL and SQLite, local and S3,
with every module's check mode changing nothing."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from backup_testlib import (failed, make_sqlite_sample, manifest_of, ok, pg_checksum, pg_counts, pg_database_names, pg_params,
                            scratch_databases, sqlite_checksum, task)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def assert_private_files(view):
    """Local stores: objects and manifests 0600, folders 0700."""
    if view.kind != "local":
        return
    for directory, dirs, files in os.walk(view.root):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600, name
        del dirs


def assert_manifest_matches_object(view, backup):
    stored = manifest_of(view, backup)
    data = view.read(backup["object"])
    assert stored["sha256"] == hashlib.sha256(data).hexdigest() == backup["sha256"]
    assert stored["size"] == len(data) == backup["size"]
    assert stored["id"] == backup["id"] and stored["object"] == backup["object"]
    assert stored["row_counts"] == backup["row_counts"]
    return stored, data


def test_postgresql_round_trip(store, pg_sample, pg_conn_params, pg_connect, pg_target, run_tasks):
    database, conn, expected = pg_sample
    original = pg_checksum(conn)
    common = pg_params(pg_conn_params, database, service="shop", store=store.params)
    check_target = pg_target()

    first = run_tasks([
        task("backup (check)", "db_backup", common, check=True),
        task("info before", "backup_info", {"service": "shop", "store": store.params}),
    ])
    planned = ok(first, "backup (check)")
    assert planned["changed"] is True and planned["backup"]["id"].startswith("postgresql-%s-" % database)
    assert store.keys() == [], "check mode wrote to the store"
    if store.kind == "local":  # check mode created nothing, not even the store directory
        failed(first, "info before", "backup store directory", "does not exist")
    else:
        assert ok(first, "info before")["latest"] is None

    run = run_tasks([
        task("backup", "db_backup", common),
        task("info", "backup_info", {"service": "shop", "engine": "postgresql", "database": database,
                                     "max_age": "1h", "store": store.params}),
        task("verify (check)", "backup_verify", common, check=True),
        task("verify", "backup_verify", dict(common, assertions=[
            {"name": "customers", "query": "SELECT count(*) FROM public.customers", "expected": expected["public.customers"]},
            {"name": "audit schema", "query": "SELECT count(*) FROM audit.events", "expected": expected["audit.events"]}],
            max_age="10m", max_restore_seconds=300)),
        task("restore (check)", "db_restore", dict(common, database=check_target, source_database=database,
                                                   create_database=True), check=True),
    ])
    backup = ok(run, "backup")["backup"]
    assert backup["row_counts"] == expected == pg_counts(conn)
    stored, data = assert_manifest_matches_object(store, backup)
    assert data.startswith(ZSTD_MAGIC) and stored["compression"] == "zstd" and stored["dump_format"] == "custom"
    assert stored["engine"] == "postgresql" and stored["database"] == database and stored["tool_versions"]["pg_dump"]
    assert sorted(store.keys()) == sorted([backup["object"], backup["object"] + ".manifest.json"])
    assert_private_files(store)

    info = ok(run, "info")
    assert info["rpo_ok"] is True and info["count"] == {"complete": 1, "incomplete": 0}
    assert info["latest"]["id"] == backup["id"] and info["latest"]["details"]["row_counts"] == expected

    for name in ("verify (check)", "verify"):
        report = ok(run, name)["report"]
        assert report["passed"] and report["checksum"] == "ok" and report["scratch_dropped"], report
        assert {t["table"]: t["actual"] for t in report["tables"]} == expected
    assert [a["ok"] for a in ok(run, "verify")["report"]["assertions"]] == [True, True]
    assert scratch_databases(pg_connect("postgres"), database) == []

    would = ok(run, "restore (check)")
    assert would["backup"]["id"] == backup["id"] and would["created_database"] is True
    assert check_target not in pg_database_names(pg_connect("postgres"), check_target), "check mode created a db"

    # A real restore into a new database, and one over the damaged original.
    restored_name = pg_target()
    with conn.cursor() as cur:
        cur.execute("DELETE FROM public.orders WHERE id % 2 = 0; DROP TABLE audit.events; "
                    "UPDATE public.customers SET name = 'changed'")
    run = run_tasks([
        task("restore new", "db_restore", dict(common, database=restored_name, source_database=database,
                                               create_database=True)),
        task("restore over", "db_restore", dict(common, force=True)),
    ])
    assert ok(run, "restore new")["row_counts"] == expected
    over = ok(run, "restore over")
    # The default replace mode swapped in a new database (ending the sessions of the old one, this test's
    # connection among them) and kept the damaged one as <database>_pre_restore_<stamp>.
    admin = pg_connect("postgres")
    with admin.cursor() as cur:
        cur.execute('DROP DATABASE "%s" WITH (FORCE)' % over["previous_database"])
    assert over["row_counts"] == expected and over["mode"] == "swap"
    assert pg_checksum(pg_connect(restored_name)) == original
    assert pg_checksum(pg_connect(database)) == original
    assert len(store.keys()) == 2, "restore or verify wrote to the store"


def test_sqlite_round_trip(store, tmp_path, run_tasks):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = str(data_dir / "app.db")
    expected = make_sqlite_sample(db)
    original = sqlite_checksum(db)
    common = {"service": "notes", "engine": "sqlite", "path": db, "store": store.params}
    check_path = str(data_dir / "check.db")

    first = run_tasks([task("backup (check)", "db_backup", common, check=True)])
    assert ok(first, "backup (check)")["backup"]["id"].startswith("sqlite-app-")
    assert store.keys() == []

    run = run_tasks([
        task("backup", "db_backup", common),
        task("info", "backup_info", {"service": "notes", "engine": "sqlite", "database": "app", "store": store.params}),
        task("verify (check)", "backup_verify", common, check=True),
        task("verify", "backup_verify", dict(common, assertions=[
            {"name": "items", "query": "SELECT count(*) FROM items", "expected": expected["items"]},
            {"name": "first item", "query": "SELECT name FROM items ORDER BY id LIMIT 1", "expected": "item 0"}])),
        task("restore (check)", "db_restore", dict(common, path=check_path, database="app"), check=True),
    ])
    backup = ok(run, "backup")["backup"]
    assert backup["row_counts"] == expected
    stored, data = assert_manifest_matches_object(store, backup)
    assert data.startswith(ZSTD_MAGIC) and stored["dump_format"] == "sqlite"
    assert_private_files(store)
    info = ok(run, "info")
    assert info["latest"]["id"] == backup["id"] and info["count"]["complete"] == 1
    for name in ("verify (check)", "verify"):
        report = ok(run, name)["report"]
        assert report["passed"] and report["scratch_dropped"] and not os.path.exists(report["scratch_database"])
    assert all(a["ok"] for a in ok(run, "verify")["report"]["assertions"])
    assert ok(run, "restore (check)")["target"] == check_path
    assert not os.path.exists(check_path), "check mode created the target"

    # Damage the live file, then restore over it (force) and into a new file.
    with open(db, "r+b") as handle:
        handle.truncate(0)
    fresh = str(data_dir / "fresh.db")
    run = run_tasks([
        task("restore over", "db_restore", dict(common, force=True)),
        task("restore new", "db_restore", dict(common, path=fresh, database="app")),
    ])
    over = ok(run, "restore over")
    assert over["row_counts"] == expected and os.path.exists(over["previous"])
    assert os.path.getsize(over["previous"]) == 0, "the replaced (damaged) file must be kept as it was"
    assert sqlite_checksum(db) == original
    assert ok(run, "restore new")["row_counts"] == expected
    assert sqlite_checksum(fresh) == original
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600
    assert len(store.keys()) == 2


@pytest.mark.parametrize("compression,magic", [("gzip", GZIP_MAGIC), ("none", None)])
def test_compressions(compression, magic, local_store, pg_sample, pg_conn_params, pg_target, pg_connect, tmp_path,
                      run_tasks):
    database, conn, expected = pg_sample
    db = str(tmp_path / "app.db")
    sqlite_expected = make_sqlite_sample(db)
    pg_common = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
    lite_common = {"service": "notes", "engine": "sqlite", "path": db, "store": local_store.params}
    target = pg_target()
    copy = str(tmp_path / "copy.db")
    run = run_tasks([
        task("pg backup", "db_backup", dict(pg_common, compression=compression)),
        task("pg verify", "backup_verify", pg_common),
        task("pg restore", "db_restore", dict(pg_common, database=target, source_database=database,
                                              create_database=True)),
        task("sqlite backup", "db_backup", dict(lite_common, compression=compression)),
        task("sqlite verify", "backup_verify", lite_common),
        task("sqlite restore", "db_restore", dict(lite_common, path=copy, database="app")),
    ])
    for engine, plain_magic in (("pg", b"PGDMP"), ("sqlite", b"SQLite format 3\x00")):
        backup = ok(run, engine + " backup")["backup"]
        stored, data = assert_manifest_matches_object(local_store, backup)
        assert stored["compression"] == compression
        assert data.startswith(magic or plain_magic)
        assert backup["object"].endswith(".gz" if compression == "gzip" else (".dump" if engine == "pg" else ".sqlite3"))
        assert ok(run, engine + " verify")["report"]["passed"]
    assert ok(run, "pg restore")["row_counts"] == expected
    assert pg_checksum(pg_connect(target)) == pg_checksum(conn)
    assert ok(run, "sqlite restore")["row_counts"] == sqlite_expected
    assert sqlite_checksum(copy) == sqlite_checksum(db)


def test_directory_format_parallel(store, pg_sample, pg_conn_params, pg_target, pg_connect, run_tasks):
    database, conn, expected = pg_sample
    common = pg_params(pg_conn_params, database, service="shop", store=store.params)
    target = pg_target()
    run = run_tasks([
        task("backup", "db_backup", dict(common, format="directory", jobs=2)),
        task("verify", "backup_verify", dict(common, jobs=2)),
        task("restore", "db_restore", dict(common, database=target, source_database=database, create_database=True,
                                           jobs=2, single_transaction=False)),
    ])
    backup = ok(run, "backup")["backup"]
    stored, _data = assert_manifest_matches_object(store, backup)
    assert stored["dump_format"] == "directory" and backup["object"].endswith(".tar.zst")
    assert backup["row_counts"] == expected
    report = ok(run, "verify")["report"]
    assert report["passed"] and report["scratch_dropped"]
    assert ok(run, "restore")["row_counts"] == expected
    assert pg_checksum(pg_connect(target)) == pg_checksum(conn)
    assert scratch_databases(pg_connect("postgres"), database) == []
