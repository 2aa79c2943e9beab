# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_maintenance against the real PostgreSQL server and real SQLite files: INVALID indexes left by an
interrupted REINDEX CONCURRENTLY and CREATE INDEX CONCURRENTLY, a lock the maintenance must not queue
behind, the time budget, the writer lock and a damaged SQLite file."""

from __future__ import annotations

import fcntl
import os
import sqlite3

import psycopg2
import pytest

MODULE = "runbook.ops.db_maintenance"


def invalid_indexes(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE NOT i.indisvalid ORDER BY 1")
        return [row[0] for row in cur.fetchall()]


@pytest.fixture()
def broken_indexes(pg_database, pg_connect):
    """items_name_idx with the _ccnew copy a cancelled REINDEX CONCURRENTLY left, and dup_v_key that a
    failed CREATE UNIQUE INDEX CONCURRENTLY left INVALID (its duplicates are gone since)."""
    conn = pg_connect(pg_database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id serial PRIMARY KEY, name text)")
        cur.execute("INSERT INTO items (name) SELECT md5(g::text) FROM generate_series(1, 300000) g")
        cur.execute("CREATE INDEX items_name_idx ON items (name)")
        cur.execute("SET statement_timeout = '100ms'")
        with pytest.raises(psycopg2.errors.QueryCanceled):
            cur.execute("REINDEX INDEX CONCURRENTLY items_name_idx")
        cur.execute("RESET statement_timeout")
        cur.execute("CREATE TABLE dup (v int)")
        cur.execute("INSERT INTO dup VALUES (1), (1), (2)")
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute("CREATE UNIQUE INDEX CONCURRENTLY dup_v_key ON dup (v)")
        cur.execute("DELETE FROM dup WHERE ctid = (SELECT min(ctid) FROM dup WHERE v = 1)")
    assert invalid_indexes(conn) == ["dup_v_key", "items_name_idx_ccnew"]
    return conn


def test_invalid_indexes_are_found_dropped_or_rebuilt(broken_indexes, pg_database, pg_conn_params, ansible_module):
    conn = broken_indexes
    params = dict(pg_conn_params, database=pg_database)
    plan = ansible_module(MODULE, params, check=True).result
    assert not plan["changed"] and "check mode, nothing run" in plan["msg"]
    actions = {(step["action"], step["target"]): step["outcome"] for step in plan["steps"]}
    assert actions == {("rebuild_invalid", "public.dup_v_key"): "planned",
                       ("drop_invalid", "public.items_name_idx_ccnew"): "planned",
                       ("vacuum_analyze", "database %s" % pg_database): "planned"}
    assert invalid_indexes(conn) == ["dup_v_key", "items_name_idx_ccnew"]

    run = ansible_module(MODULE, params).result
    assert run["changed"] and all(step["outcome"] == "done" for step in run["steps"]), run["steps"]
    assert invalid_indexes(conn) == []
    with conn.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relname IN ('items_name_idx', 'dup_v_key') ORDER BY 1")
        assert [row[0] for row in cur.fetchall()] == ["dup_v_key", "items_name_idx"]
        cur.execute("SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                    "WHERE relname = 'items'")
        assert cur.fetchone() == (True, True)
    rebuilt = next(step for step in run["steps"] if step["action"] == "rebuild_invalid")
    assert rebuilt["bytes_after"] > 0 and run["database_bytes_after"] > 0

    again = ansible_module(MODULE, dict(params, vacuum=False, analyze=False)).result
    assert not again["changed"] and again["steps"] == []


def test_a_held_lock_fails_the_rebuild_cleanly_and_the_budget_stops_the_rest(
        pg_database, pg_conn_params, pg_connect, ansible_module):
    conn = pg_connect(pg_database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 1000); CREATE INDEX t_v ON t (v)")
    holder = pg_connect(pg_database)
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    try:
        run = ansible_module(MODULE, dict(pg_conn_params, database=pg_database, reindex=["t_v"], lock_timeout=1,
                                          retries=1, retry_delay=0.2, time_budget=1))
    finally:
        holder.rollback()
    result = run.result
    assert run.failed and "Traceback" not in run.output
    reindex, vacuum = result["steps"]
    assert reindex["outcome"] == "failed" and reindex["attempts"] == 2
    assert "lock was not granted within lock_timeout 1 s in 2 attempts" in reindex["detail"]
    assert vacuum["outcome"] == "not_run" and result["stopped"]
    assert "stopped after the time budget of 1 s" in result["msg"]
    assert invalid_indexes(conn) == []

    missing = ansible_module(MODULE, dict(pg_conn_params, database=pg_database, reindex=["nope.t_v"]))
    assert missing.failed and "index nope.t_v does not exist" in missing.result["msg"]


def make_sqlite(path, rows=20000):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO items (body) VALUES (?)", [("x" * 200,)] * rows)
    conn.commit()
    conn.execute("DELETE FROM items WHERE id > 1000")
    conn.commit()
    conn.close()


def test_sqlite_respects_the_writer_lock_then_vacuums(tmp_path, ansible_module):
    path = str(tmp_path / "app.db")
    make_sqlite(path)
    size = os.path.getsize(path)
    lock = os.open(str(tmp_path / ".app.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        held = ansible_module(MODULE, {"engine": "sqlite", "path": path})
        assert held.failed and "holds its writer lock" in held.result["msg"] and str(os.getpid()) in held.result["msg"]
        assert os.path.getsize(path) == size
        check_only = ansible_module(MODULE, {"engine": "sqlite", "path": path, "vacuum": False, "analyze": False}).result
        assert not check_only["changed"] and check_only["steps"][0]["detail"] == "ok"
    finally:
        os.close(lock)
    run = ansible_module(MODULE, {"engine": "sqlite", "path": path}).result
    assert run["changed"] and [step["outcome"] for step in run["steps"]] == ["done", "done", "done"]
    assert run["database_bytes_after"] < size / 5
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 1000
    conn.close()


def test_a_damaged_sqlite_file_is_not_vacuumed(tmp_path, ansible_module):
    path = str(tmp_path / "app.db")
    make_sqlite(path, rows=3000)
    conn = sqlite3.connect(path)
    conn.execute("CREATE INDEX items_body ON items (body)")
    conn.commit()
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'items_body'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(path, "r+b") as handle:  # an invalid b-tree page type in the index's root page header
        handle.seek((root - 1) * page_size)
        handle.write(b"\x07" + b"\xff" * 11)
    size = os.path.getsize(path)
    run = ansible_module(MODULE, {"engine": "sqlite", "path": path})
    assert run.failed and "Traceback" not in run.output
    check, vacuum, optimize = run.result["steps"]
    assert check["outcome"] == "failed"
    assert "integrity check failed" in check["detail"] or "malformed" in check["detail"], check["detail"]
    assert vacuum["outcome"] == optimize["outcome"] == "skipped"
    assert os.path.getsize(path) == size
