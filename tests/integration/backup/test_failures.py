# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups that must be refused and checks that must fail: each failure is a failed task with a
clear msg, no traceback, and nothing changed or left behind."""

from __future__ import annotations

import json
import os

from backup_testlib import (failed, make_sqlite_sample, manifest_of, ok, pg_checksum, pg_params, scratch_databases,
                            sqlite_checksum, task)


def make_old_pg_data(conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE precious (id int PRIMARY KEY, v text); "
                    "INSERT INTO precious SELECT g, md5(g::text) FROM generate_series(1, 50) g")
    return pg_checksum(conn)


def flip_byte(view, key):
    data = bytearray(view.read(key))
    data[len(data) // 2] ^= 0xFF
    view.write(key, bytes(data))


def truncate(view, key):
    data = view.read(key)
    view.write(key, data[:len(data) - 100])


def leftovers(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith(".rbops") or "pre-restore" in name)


def test_damaged_objects_are_refused(store, pg_sample, pg_conn_params, pg_connect, pg_target, tmp_path, run_tasks):
    database, _conn, _expected = pg_sample
    pg_common = pg_params(pg_conn_params, database, service="shop", store=store.params)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    source = str(data_dir / "app.db")
    make_sqlite_sample(source)
    lite_common = {"service": "notes", "engine": "sqlite", "path": source, "store": store.params}

    run = run_tasks([task("pg backup", "db_backup", pg_common), task("sqlite backup", "db_backup", lite_common)])
    pg_backup, lite_backup = ok(run, "pg backup")["backup"], ok(run, "sqlite backup")["backup"]
    pristine = {key: store.read(key) for key in (pg_backup["object"], lite_backup["object"])}

    # Targets that hold other data, which a refused restore must leave exactly as they are.
    target = pg_target(create=True)
    target_conn = pg_connect(target)
    target_before = make_old_pg_data(target_conn)
    lite_target = str(data_dir / "live.db")
    make_sqlite_sample(lite_target, rows=17)
    lite_before = sqlite_checksum(lite_target)
    admin = pg_connect("postgres")

    attempts = [
        # The pre-check the restore role runs before it stops any writer: check mode reads the object too.
        task("pg restore pre-check", "db_restore",
             dict(pg_common, database=target, source_database=database, force=True), check=True),
        task("sqlite restore pre-check", "db_restore",
             dict(lite_common, path=lite_target, database="app", force=True), check=True),
        task("pg restore", "db_restore", dict(pg_common, database=target, source_database=database, force=True)),
        task("pg verify", "backup_verify", pg_common),
        task("sqlite restore", "db_restore", dict(lite_common, path=lite_target, database="app", force=True)),
        task("sqlite verify", "backup_verify", lite_common),
    ]
    for damage, pg_words, lite_words in ((flip_byte, ("sha256", "corrupt"), ("truncated",)),
                                         (truncate, ("truncated",), ("sha256", "corrupt"))):
        for key, data in pristine.items():
            store.write(key, data)
        damage(store, pg_backup["object"])
        (truncate if damage is flip_byte else flip_byte)(store, lite_backup["object"])
        run = run_tasks(attempts)
        failed(run, "pg restore pre-check", pg_backup["id"], *pg_words)
        failed(run, "sqlite restore pre-check", lite_backup["id"], *lite_words)
        failed(run, "pg restore", pg_backup["id"], *pg_words)
        failed(run, "pg verify", pg_backup["id"], *pg_words)
        failed(run, "sqlite restore", lite_backup["id"], *lite_words)
        failed(run, "sqlite verify", lite_backup["id"], *lite_words)
        for name in ("pg verify", "sqlite verify"):
            report = run.task(name)["result"]["report"]
            assert report["checksum"] == "failed" and report["failures"], report
        assert pg_checksum(target_conn) == target_before, "a refused restore changed the target"
        assert sqlite_checksum(lite_target) == lite_before
        assert leftovers(str(data_dir)) == []
        assert scratch_databases(admin, database) == [], "scratch database left behind"
        assert len(store.keys()) == 4


def test_incomplete_and_unreadable_manifests(store, tmp_path, run_tasks):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    source = str(data_dir / "app.db")
    make_sqlite_sample(source)
    common = {"service": "notes", "engine": "sqlite", "path": source, "store": store.params}
    run = run_tasks([task("older", "db_backup", common), task("newer", "db_backup", common)])
    older, newer = ok(run, "older")["backup"], ok(run, "newer")["backup"]
    store.delete(newer["object"] + ".manifest.json")  # as if the run died before writing it

    copy = str(data_dir / "copy.db")
    run = run_tasks([
        task("restore incomplete", "db_restore", dict(common, backup_id=newer["id"], path=copy, database="app")),
        task("verify incomplete", "backup_verify", dict(common, backup_id=newer["id"])),
        task("info", "backup_info", {"service": "notes", "store": store.params}),
        task("restore latest", "db_restore", dict(common, path=copy, database="app")),
        task("verify latest", "backup_verify", common),
    ])
    failed(run, "restore incomplete", newer["id"], "incomplete")
    failed(run, "verify incomplete", newer["id"], "incomplete")
    info = ok(run, "info")
    assert info["latest"]["id"] == older["id"] and info["count"] == {"complete": 1, "incomplete": 1}
    # Both ids may carry the same second (S3 times have no finer resolution): compare as a set.
    listed = {b["id"]: b for b in info["backups"]}
    assert set(listed) == {newer["id"], older["id"]}
    assert listed[newer["id"]]["complete"] is False and listed[newer["id"]]["manifest"] is None
    assert ok(run, "restore latest")["backup"]["id"] == older["id"]
    assert ok(run, "verify latest")["report"]["backup_id"] == older["id"]
    assert not os.path.exists(str(data_dir / "nothing.db"))

    store.write(older["object"] + ".manifest.json", b'{"format": "runbook.ops/backup-manifest", "id": ')
    other = str(data_dir / "other.db")
    run = run_tasks([
        task("restore garbled", "db_restore", dict(common, path=other, database="app")),
        task("verify garbled", "backup_verify", dict(common, backup_id=older["id"])),
        task("info garbled", "backup_info", {"service": "notes", "store": store.params}),
    ])
    failed(run, "restore garbled", "manifest", "not valid JSON")
    failed(run, "verify garbled", "manifest", "not valid JSON")
    failed(run, "info garbled", "manifest", "not valid JSON")
    assert not os.path.exists(other)
    assert leftovers(str(data_dir)) == []


def test_restore_over_non_empty_needs_force(local_store, pg_sample, pg_conn_params, pg_connect, pg_target, tmp_path,
                                            run_tasks):
    database, _conn, _expected = pg_sample
    pg_common = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
    source = str(tmp_path / "app.db")
    make_sqlite_sample(source)
    lite_common = {"service": "notes", "engine": "sqlite", "path": source, "store": local_store.params}
    target = pg_target(create=True)
    target_conn = pg_connect(target)
    before = make_old_pg_data(target_conn)
    lite_target = str(tmp_path / "live.db")
    make_sqlite_sample(lite_target, rows=11)
    lite_before = sqlite_checksum(lite_target)
    run = run_tasks([
        task("pg backup", "db_backup", pg_common),
        task("sqlite backup", "db_backup", lite_common),
        task("pg restore (check)", "db_restore", dict(pg_common, database=target, source_database=database), check=True),
        task("pg restore", "db_restore", dict(pg_common, database=target, source_database=database)),
        task("sqlite restore", "db_restore", dict(lite_common, path=lite_target, database="app")),
        task("missing db", "db_restore", dict(pg_common, database=pg_target(), source_database=database)),
    ])
    for name in ("pg restore (check)", "pg restore"):
        failed(run, name, "not empty", "force: true")
    failed(run, "sqlite restore", "not empty", "force: true")
    failed(run, "missing db", "does not exist", "create_database")
    assert pg_checksum(target_conn) == before
    assert sqlite_checksum(lite_target) == lite_before


def test_failed_verifications(store, pg_sample, pg_conn_params, pg_connect, tmp_path, run_tasks):
    database, _conn, expected = pg_sample
    pg_common = pg_params(pg_conn_params, database, service="shop", store=store.params)
    source = str(tmp_path / "app.db")
    lite_expected = make_sqlite_sample(source)
    lite_common = {"service": "notes", "engine": "sqlite", "path": source, "store": store.params}
    bad_assertion = [{"name": "no customers are lost", "query": "SELECT count(*) FROM public.customers",
                      "expected": expected["public.customers"] + 1},
                     {"name": "orders exist", "query": "SELECT count(*) > 0 FROM public.orders", "expected": True}]
    broken_sql = [{"name": "refers to a missing table", "query": "SELECT count(*) FROM nowhere", "expected": 0}]
    run = run_tasks([
        task("pg backup", "db_backup", pg_common),
        task("sqlite backup", "db_backup", lite_common),
        task("pg assertion", "backup_verify", dict(pg_common, assertions=bad_assertion)),
        task("sqlite broken sql", "backup_verify", dict(lite_common, assertions=broken_sql)),
        task("pg rto", "backup_verify", dict(pg_common, max_restore_seconds=0.001)),
        task("sqlite rpo", "backup_verify", dict(lite_common, max_age="0s")),
    ])
    pg_backup, lite_backup = ok(run, "pg backup")["backup"], ok(run, "sqlite backup")["backup"]
    failed(run, "pg assertion", "no customers are lost", str(expected["public.customers"] + 1))
    report = run.task("pg assertion")["result"]["report"]
    assert [a["ok"] for a in report["assertions"]] == [False, True] and report["scratch_dropped"]
    assert "orders exist" not in report["failures"][0]
    failed(run, "sqlite broken sql", "refers to a missing table", "no such table")
    failed(run, "pg rto", "RTO")
    assert run.task("pg rto")["result"]["report"]["rto"]["ok"] is False
    failed(run, "sqlite rpo", "RPO")

    # The manifest is not covered by the checksum: a wrong row count in it must still be caught.
    for backup, table in ((pg_backup, "public.orders"), (lite_backup, "jobs")):
        manifest = manifest_of(store, backup)
        manifest["row_counts"][table] += 5
        store.write(backup["object"] + ".manifest.json", json.dumps(manifest).encode())
    run = run_tasks([task("pg counts", "backup_verify", pg_common),
                     task("sqlite counts", "backup_verify", lite_common)])
    failed(run, "pg counts", "public.orders", str(expected["public.orders"]))
    failed(run, "sqlite counts", "jobs", str(lite_expected["jobs"]))
    pg_report = run.task("pg counts")["result"]["report"]
    assert pg_report["checksum"] == "ok" and pg_report["scratch_dropped"] is True
    assert [t["table"] for t in pg_report["tables"] if not t["ok"]] == ["public.orders"]
    assert scratch_databases(pg_connect("postgres"), database) == []
    lite_report = run.task("sqlite counts")["result"]["report"]
    assert lite_report["scratch_dropped"] and not os.path.exists(lite_report["scratch_database"])
