# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sample service's deploy knobs: `migrate` (SCHEMA_HEAD, --status, MIGRATION_FAIL), serve refusing a
database behind its head, CRASH_AFTER and the `worker` command, on SQLite and PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from sample_service_fixture import APP_PATH, clean_environ, http_request, pg_database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request, sample_service):
    """A stopped sample service on SQLite, then on PostgreSQL; .query(sql) reads its database."""
    if request.param == "sqlite":
        svc = sample_service(start=False)

        def query(sql, params=()):
            with sqlite3.connect(svc.db_path) as conn:
                return [tuple(row) for row in conn.execute(sql, params).fetchall()]
    else:
        params = request.getfixturevalue("pg_conn_params")
        database = request.getfixturevalue("pg_database")
        svc = sample_service(database_url=pg_database_url(params, database), start=False)
        connect = request.getfixturevalue("pg_connect")

        def query(sql, params=()):
            with connect(database).cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return [tuple(row) for row in cur.fetchall()]
    svc.query = query
    svc.kind = request.param
    return svc


def columns(svc, table):
    if svc.kind == "sqlite":
        return [row[1] for row in svc.query("PRAGMA table_info(%s)" % table)]
    return [row[0] for row in svc.query("SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,))]


def tables(svc):
    if svc.kind == "sqlite":
        return sorted(row[0] for row in svc.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
    return sorted(row[0] for row in svc.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))


def status(svc):
    proc = svc.command("migrate", "--status")
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def migrate(svc, **env):
    svc.set_env(**env)
    return svc.command("migrate")


def test_migrate_to_the_head_one_transaction_each(service):
    assert service.command("migrate", "--status").stdout == "0\n"  # a bare integer
    first = migrate(service)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"head_before": 0, "head_after": 1, "applied": [1]}
    assert status(service) == 1
    assert tables(service) == ["audit_log", "items", "jobs", "schema_migrations"]
    assert service.command("seed", "--items", "2").returncode == 0

    second = migrate(service, SCHEMA_HEAD=2)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == {"head_before": 1, "head_after": 2, "applied": [2]}
    assert status(service) == 2
    assert service.query("SELECT name FROM tags ORDER BY id") == [("default",), ("important",), ("archive",)]
    assert service.query("SELECT name, tag FROM items ORDER BY id") == [("seed-item-1", "default"), ("seed-item-2", "default")]
    assert [row[0] for row in service.query("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2]

    again = service.command("migrate")
    assert json.loads(again.stdout) == {"head_before": 2, "head_after": 2, "applied": []}
    assert "nothing to migrate" in again.stderr
    # An older build's migrate never downgrades.
    older = migrate(service, SCHEMA_HEAD=1)
    assert json.loads(older.stdout)["applied"] == [] and status(service) == 2


def test_a_failing_migration_leaves_nothing_behind(service):
    assert migrate(service).returncode == 0
    assert service.command("seed", "--items", "1").returncode == 0
    failed = migrate(service, SCHEMA_HEAD=2, MIGRATION_FAIL="true")
    assert failed.returncode == 1
    assert "migrate failed: migration 2 (tags) failed and was rolled back, the database stays at head 1" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert status(service) == 1
    # The table it created, the rows it wrote and the column it added are all gone (SQLite DDL included).
    assert "tags" not in tables(service)
    assert "tag" not in columns(service, "items")
    assert service.query("SELECT COUNT(*) FROM items") == [(1,)]
    fixed = migrate(service, MIGRATION_FAIL=None)
    assert fixed.returncode == 0, fixed.stderr
    assert status(service) == 2
    # From head 2 the first pending migration is 3: it fails the same way and the head stays 2.
    again = migrate(service, SCHEMA_HEAD=3, MIGRATION_FAIL="true")
    assert again.returncode == 1
    assert "migration 3 (priority) failed and was rolled back, the database stays at head 2" in again.stderr
    assert "(MIGRATION_FAIL is set)" in again.stderr
    assert status(service) == 2 and "priority" not in columns(service, "items")


def test_serve_refuses_a_database_behind_its_head(service):
    assert migrate(service).returncode == 0
    service.set_env(SCHEMA_HEAD=2)
    refused = service.command("serve", timeout=30)
    assert refused.returncode == 2
    assert ("serve refused: the database is at schema head 1, this build (version 1.0.0) needs head 2: "
            "run `app.py migrate` first") in refused.stderr
    worker = service.command("worker", timeout=30)
    assert worker.returncode == 2 and "worker refused" in worker.stderr
    assert status(service) == 1  # refusing changed nothing
    assert service.command("migrate").returncode == 0
    service.start()
    assert http_request(service.url + "/readyz").status == 200


def test_an_empty_database_is_bootstrapped_to_the_head(service):
    service.set_env(SCHEMA_HEAD=2)
    service.start()
    assert http_request(service.url + "/readyz").status == 200
    assert status(service) == 2
    # Readiness follows the schema: a database moved back behind the head (a restored backup) is not ready.
    assert service.query("DELETE FROM schema_migrations WHERE version = 2 RETURNING version") == [(2,)]
    ready = http_request(service.url + "/readyz")
    assert ready.status == 503
    assert ready.text == "not ready: schema: the database is at head 1, this build needs 2 (run app.py migrate)\n"
    assert http_request(service.url + "/ready").json["reason"].startswith("schema: ")
    assert http_request(service.url + "/healthz").status == 200


def test_an_older_build_runs_on_a_newer_schema(sample_service):
    svc = sample_service(start=False)
    assert migrate(svc, SCHEMA_HEAD=2).returncode == 0
    svc.set_env(SCHEMA_HEAD=1)
    svc.start()
    assert http_request(svc.url + "/readyz").status == 200
    assert svc.api("POST", "/api/items", json={"name": "from-v1"}).status == 201
    svc.stop()
    assert "the database is ahead of this build database_head=2 build_head=1" in svc.log_text()


def test_crash_after_exits_non_zero(sample_service):
    svc = sample_service(env={"CRASH_AFTER": "1.5"}, start=False)
    started = time.monotonic()
    svc.start()
    assert http_request(svc.url + "/readyz").status == 200
    svc.process.wait(10)
    assert svc.process.returncode == 1
    assert 1.5 <= time.monotonic() - started < 8
    assert "CRASH_AFTER=1.5 reached: exiting with status 1 (test knob)" in svc.log_text()


@pytest.mark.parametrize("env, message", [
    ({"SCHEMA_HEAD": "4"}, "SCHEMA_HEAD must be a migration number from 1 to 3, got '4'"),
    ({"SCHEMA_HEAD": "0"}, "SCHEMA_HEAD must be a migration number from 1 to 3, got '0'"),
    ({"CRASH_AFTER": "soon"}, "CRASH_AFTER must be a number of seconds"),
])
def test_bad_knobs_are_configuration_errors(sample_service, env, message):
    svc = sample_service(env=env, start=False)
    proc = svc.command("migrate")
    assert proc.returncode == 2 and message in proc.stderr


def test_migrate_head_option_and_status_of_a_missing_database(sample_service):
    svc = sample_service(start=False)
    assert svc.command("migrate", "--head", "4").returncode == 2
    assert status(svc) == 0
    assert not os.path.exists(svc.db_path)  # --status creates nothing
    assert json.loads(svc.command("migrate", "--head", "2").stdout)["applied"] == [1, 2]


def test_concurrent_migrations_apply_each_version_once(sample_service, pg_conn_params, pg_database, pg_connect):
    svc = sample_service(database_url=pg_database_url(pg_conn_params, pg_database), env={"SCHEMA_HEAD": "2"}, start=False)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _index: svc.command("migrate"), range(3)))
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    applied = sorted(v for r in results for v in json.loads(r.stdout)["applied"])
    assert applied == [1, 2]
    with pg_connect(pg_database).cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM tags")
        assert cur.fetchone()[0] == 3


def test_worker_runs_jobs_without_http(sample_service, pg_conn_params, pg_database, pg_connect):
    svc = sample_service(database_url=pg_database_url(pg_conn_params, pg_database))
    ids = [svc.api("POST", "/api/jobs", json={"kind": "k%d" % n, "duration": 0}).json["id"] for n in range(6)]
    conn = pg_connect(pg_database)

    def succeeded():
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'")
            return cur.fetchone()[0]
    deadline = time.monotonic() + 20
    while succeeded() < len(ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    svc.stop()
    with conn.cursor() as cur:
        cur.execute("UPDATE jobs SET status = 'queued'")  # whatever the api's own worker did: run them again
    # Two workers at once on the same queue (and DATA_DIR): every job runs exactly once.
    workers = [subprocess.Popen([svc.python, APP_PATH, "--env-file", svc.env_file, "worker"], env=clean_environ(),  # pylint: disable=consider-using-with
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _worker in range(2)]
    try:
        deadline = time.monotonic() + 20
        time.sleep(0.5)  # the UPDATE above made them all queued: let the workers start on them
        while time.monotonic() < deadline:
            if succeeded() == len(ids):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the workers did not run every job")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
    outputs = [worker.communicate(timeout=15)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert all("worker started" in out and "listening" not in out for out in outputs)
    started = {}
    for job_id in ids:
        with open(os.path.join(svc.data_dir, "logs", "jobs", "%d.log" % job_id), encoding="utf-8") as handle:
            started[job_id] = handle.read().count("job %d started" % job_id)
    assert started == {job_id: 2 for job_id in ids}  # once by the api's worker, once by exactly one of ours
