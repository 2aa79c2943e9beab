# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a PostgreSQL restore replaces and what it leaves: the swap mode (restore into a new
database, check, rename), the clean mode (pg_restore --clean, which leaves objects that are not
in the backup and says so), dumps made with table-selecting pg_dump_options, and a restore that
fails after its commit reporting changed."""

from __future__ import annotations

import datetime
import json

from backup_testlib import (failed, make_sqlite_sample, manifest_of, ok, pg_checksum, pg_counts, pg_database_names,
                            pg_params, task)


def add_late_objects(conn):
    """Objects created after the backup: a table and a large object."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE public.late (id int); INSERT INTO public.late VALUES (1), (2); "
                    "SELECT lo_from_bytea(0, 'late large object')")


def test_swap_replaces_everything_and_keeps_the_previous_database(
        local_store, pg_sample, pg_conn_params, pg_connect, run_tasks):
    database, conn, expected = pg_sample
    common = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
    run = run_tasks([task("backup", "db_backup", common)])
    backup = ok(run, "backup")["backup"]
    before = pg_checksum(conn)
    add_late_objects(conn)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM public.orders")
    conn.close()
    admin = pg_connect("postgres")
    try:
        run = run_tasks([
            task("refused without force", "db_restore", common),
            task("swap (check)", "db_restore", dict(common, force=True), check=True),
        ])
        failed(run, "refused without force", "not empty", "force")
        planned = ok(run, "swap (check)")
        assert planned["mode"] == "swap" and planned["previous_database"].startswith(database + "_pre_restore_")
        assert pg_database_names(admin, database + "_pre_restore_") == [], "check mode created a database"
        run = run_tasks([task("swap", "db_restore", dict(common, force=True))])
        done = ok(run, "swap")
        assert done["changed"] is True and done["mode"] == "swap"
        assert done["backup"]["id"] == backup["id"]
        previous = done["previous_database"]
        assert previous in done["msg"] and "kept" in done["msg"]
        # The live database is exactly the backup: the late table and large object are gone.
        live = pg_connect(database)
        assert pg_checksum(live) == before
        with live.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_largeobject_metadata")
            assert cur.fetchone()[0] == 0
        # The previous database is kept, with what it held at the swap.
        assert pg_database_names(admin, previous) == [previous]
        kept = pg_counts(pg_connect(previous))
        assert kept["public.late"] == 2 and kept["public.orders"] == 0
        assert pg_database_names(admin, database + "_rbops_new_") == []

        # drop_previous: no database is kept.
        run = run_tasks([task("swap dropping", "db_restore", dict(common, force=True, drop_previous=True))])
        assert ok(run, "swap dropping")["previous_database"] is None
        assert pg_database_names(admin, database + "_pre_restore_") == [previous]
        assert pg_counts(pg_connect(database)) == expected
    finally:
        with admin.cursor() as cur:
            for name in pg_database_names(admin, database + "_pre_restore_"):
                cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def test_clean_mode_says_what_it_did_not_remove(local_store, pg_sample, pg_conn_params, pg_connect, run_tasks):
    database, conn, expected = pg_sample
    common = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
    run = run_tasks([task("backup", "db_backup", common)])
    ok(run, "backup")
    add_late_objects(conn)
    run = run_tasks([task("clean", "db_restore", dict(common, force=True, replace="clean"))])
    done = ok(run, "clean")
    assert done["mode"] == "clean" and done["previous_database"] is None
    assert done["not_removed"] == ["public.late"]
    assert "not removed" in done["msg"] and "public.late" in done["msg"]
    counts = pg_counts(conn)
    assert counts.pop("public.late") == 2 and counts == expected


def test_excluded_table_data_is_recorded_verified_and_restored(
        local_store, pg_sample, pg_conn_params, pg_target, pg_connect, run_tasks):
    database, conn, expected = pg_sample
    common = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
    target = pg_target()
    run = run_tasks([
        task("backup", "db_backup", dict(common, pg_dump_options=["--exclude-table-data=audit.events",
                                                                  "-T", "public.ORD*"])),
        task("verify", "backup_verify", common),
        task("restore", "db_restore", dict(pg_params(pg_conn_params, target, service="shop", store=local_store.params),
                                           source_database=database, create_database=True)),
    ])
    backup = ok(run, "backup")["backup"]
    assert backup["row_counts"] == {"public.customers": expected["public.customers"]}
    assert backup["data_excluded"] == ["audit.events"]
    manifest = manifest_of(local_store, backup)
    assert manifest["data_excluded"] == ["audit.events"]
    report = ok(run, "verify")["report"]
    assert report["passed"] and report["data_excluded"] == ["audit.events"]
    assert [t["table"] for t in report["tables"]] == ["public.customers"]
    ok(run, "restore")
    assert pg_counts(pg_connect(target)) == {"audit.events": 0, "public.customers": expected["public.customers"]}


def test_a_restore_that_fails_after_its_commit_reports_changed(
        local_store, pg_sample, pg_conn_params, pg_target, pg_connect, run_tasks):
    database, _conn, _expected = pg_sample
    common = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
    run = run_tasks([task("backup", "db_backup", common)])
    backup = ok(run, "backup")["backup"]
    # A manifest whose counts the restored data cannot match: the check runs after pg_restore committed.
    key = backup["object"] + ".manifest.json"
    manifest = json.loads(local_store.read(key))
    manifest["row_counts"]["public.customers"] += 1
    local_store.write(key, json.dumps(manifest).encode())
    empty = pg_target(create=True)
    run = run_tasks([
        task("into an empty database", "db_restore", pg_params(pg_conn_params, empty, service="shop",
                                                               source_database=database, store=local_store.params)),
        task("clean restore", "db_restore", dict(common, force=True, replace="clean")),
        task("swap restore", "db_restore", dict(common, force=True)),
    ])
    for name in ("into an empty database", "clean restore"):
        msg = failed(run, name, "row counts differ", "was changed")
        assert run.task(name)["result"]["changed"] is True, msg
    assert pg_counts(pg_connect(empty))["public.customers"] == manifest["row_counts"]["public.customers"] - 1
    # The swap checks the new database before the rename: the live one was not touched.
    msg = failed(run, "swap restore", "row counts differ", "was not touched")
    assert run.task("swap restore")["result"]["changed"] is False, msg


def test_bad_numbers_are_refused_cleanly(local_store, tmp_path, pg_sample, pg_conn_params, run_tasks):
    database, _conn, _expected = pg_sample
    path = str(tmp_path / "app.db")
    make_sqlite_sample(path, rows=3)
    lite = {"service": "notes", "engine": "sqlite", "path": path, "store": local_store.params}
    pg = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
    cases = [
        ("gzip 10", "db_backup", dict(lite, compression="gzip", compression_level=10), "1 to 9"),
        ("zstd 99", "db_backup", dict(lite, compression_level=99), "1 to 22"),
        ("zstd -1", "db_backup", dict(lite, compression_level=-1), "1 to 22"),
        ("gzip 0", "db_backup", dict(lite, compression="gzip", compression_level=0), "1 to 9"),
        ("level with none", "db_backup", dict(lite, compression="none", compression_level=3), "compression: none"),
        ("jobs 0", "db_backup", dict(pg, jobs=0), "at least 1"),
        ("jobs -1", "db_backup", dict(pg, format="directory", jobs=-1), "at least 1"),
        ("jobs 100000", "db_backup", dict(pg, format="directory", jobs=100000), "more than this host can use"),
        ("restore jobs 0", "db_restore", dict(pg, jobs=0), "at least 1"),
        ("verify jobs -1", "backup_verify", dict(pg, jobs=-1), "at least 1"),
        ("stop_timeout -5", "db_restore", dict(lite, force=True, stop_timeout=-5), "stop_timeout"),
        ("sqlite path is a directory", "db_backup", dict(lite, path=str(tmp_path)), "is a directory"),
        ("restore over a directory", "db_restore", dict(lite, path=str(tmp_path), force=True), "is a directory"),
    ]
    tasks = []
    for name, module, params, _fragment in cases:
        tasks.append(task(name, module, params))
        tasks.append(task(name + " (check)", module, params, check=True))
    run = run_tasks(tasks)
    for name, _module, _params, fragment in cases:
        failed(run, name, fragment)
        failed(run, name + " (check)", fragment)
    assert local_store.keys() == [], "a refused backup wrote something"


def test_listing_messages(tmp_path, local_store, run_tasks):
    path = str(tmp_path / "app.db")
    make_sqlite_sample(path, rows=3)
    lite = {"service": "notes", "engine": "sqlite", "path": path, "store": local_store.params}
    missing = {"type": "local", "path": str(tmp_path / "nowhere")}
    run = run_tasks([
        task("none yet", "backup_info", {"service": "notes", "store": local_store.params}),
        task("missing store", "backup_info", {"service": "notes", "store": missing}),
        task("backup 1", "db_backup", lite),
        task("backup 2", "db_backup", lite),
        task("all", "backup_info", {"service": "notes", "store": local_store.params}),
        task("one database", "backup_info", {"service": "notes", "engine": "sqlite", "database": "app",
                                             "store": local_store.params}),
    ])
    # A store directory that does not exist (yet) is said, and fails the listing: a typo in the
    # path must not read as "no backups".
    assert failed(run, "none yet", "no complete backups of notes in ", "does not exist")
    assert failed(run, "missing store", "nowhere", "does not exist")
    assert ok(run, "all")["msg"].startswith("latest of 2 complete backups of notes is ")
    assert ok(run, "one database")["msg"].startswith("latest of 2 complete sqlite backups of notes database app is ")


def test_verify_says_jobs_are_not_used_on_a_custom_format_backup(local_store, pg_sample, pg_conn_params, run_tasks):
    database, _conn, _expected = pg_sample
    common = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
    run = run_tasks([task("backup", "db_backup", common), task("verify", "backup_verify", dict(common, jobs=2))])
    ok(run, "backup")
    result = ok(run, "verify")
    assert any("jobs 2 not used" in warning for warning in result.get("warnings", [])), result


def test_verify_drops_scratch_databases_a_killed_verify_left(
        local_store, pg_sample, pg_conn_params, pg_connect, run_tasks):
    database, _conn, _expected = pg_sample
    common = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
    token = database[-6:]
    stale = "rbops_verify_%s_20200101t000000z_0123abcd" % token   # a verification killed years ago
    fresh = "rbops_verify_%s_%s_0123abcd" % (
        token, datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dt%H%M%Sz"))  # one running now
    legacy = "rbops_verify_%s_0123abcd" % token                    # no stamp: age unknown
    other = "shop_%s_20200101t000000z_0123abcd" % token            # not of our naming
    admin = pg_connect("postgres")
    names = (stale, fresh, legacy, other)
    try:
        with admin.cursor() as cur:
            for name in names:
                cur.execute('CREATE DATABASE "%s"' % name)
        run = run_tasks([task("backup", "db_backup", common), task("verify", "backup_verify", common)])
        ok(run, "backup")
        report = ok(run, "verify")["report"]
        # The sweep is server-wide: a verification of another test worker running at the same moment may drop
        # the stale database first, so what counts is that it is gone and the three others are not touched.
        assert pg_database_names(admin, stale) == []
        assert not set(report["stale_scratch_dropped"]) & {fresh, legacy, other}, report["stale_scratch_dropped"]
        for name in (fresh, legacy, other):
            assert pg_database_names(admin, name) == [name]
    finally:
        with admin.cursor() as cur:
            for name in names:
                cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
