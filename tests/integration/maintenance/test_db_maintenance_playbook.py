# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/db_maintenance.yml with the db_maintenance role: on real PostgreSQL (an INVALID index left by
a failed CREATE UNIQUE INDEX CONCURRENTLY, a backup first, sizes before and after) and on the sample
service's SQLite file with the service as a local process (stopped, vacuumed, started, healthy); check
mode changes nothing; a failed maintenance step still starts the service again and writes the report."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys

import psycopg2
import pytest

from harness import REPO
from sample_service_fixture import CTL_PATH, clean_environ

PLAYBOOK = os.path.join(REPO, "playbooks", "db_maintenance.yml")


def inventory(tmp_path, host_vars):
    path = tmp_path / "inventory.json"
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    host.update(host_vars)
    path.write_text(json.dumps({"app": {"hosts": {"localhost": host}}}))
    return str(path)


def invalid_indexes(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid")
        return [row[0] for row in cur.fetchall()]


def report_of(run):
    stats = run.custom_stats("runbook_db_maintenance")
    with open(stats["report"]["json"], encoding="utf-8") as handle:
        return stats, json.load(handle)


def by_check(report, section):
    return {f["check"]: f for f in report["findings"] if f.get("section") == section}


@pytest.fixture()
def invalid_index_db(pg_database, pg_connect):
    """A table with dead rows and dup_v_key left INVALID by a failed CREATE UNIQUE INDEX CONCURRENTLY."""
    conn = pg_connect(pg_database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id serial PRIMARY KEY, name text)")
        cur.execute("INSERT INTO items (name) SELECT md5(g::text) FROM generate_series(1, 20000) g")
        cur.execute("DELETE FROM items WHERE id % 2 = 0")
        cur.execute("CREATE TABLE dup (v int)")
        cur.execute("INSERT INTO dup VALUES (1), (1), (2)")
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute("CREATE UNIQUE INDEX CONCURRENTLY dup_v_key ON dup (v)")
        cur.execute("DELETE FROM dup WHERE ctid = (SELECT min(ctid) FROM dup WHERE v = 1)")
    assert invalid_indexes(conn) == ["dup_v_key"]
    return conn


def test_postgresql_window_backs_up_reports_and_rebuilds_the_invalid_index(invalid_index_db, pg_database, pg_conn_params,
                                                                           tmp_path, ansible_playbook):
    conn = invalid_index_db
    store = tmp_path / "store"
    host_vars = {
        "db_maintenance_service": "maint-pg", "db_maintenance_engine": "postgresql",
        "db_maintenance_database": pg_database, "db_maintenance_backup_store": {"type": "local", "path": str(store)},
        "db_maintenance_report_dir": str(tmp_path / "reports"),
        "db_maintenance_retry_delay": 0.5,
    }
    host_vars.update({"db_maintenance_" + key: value for key, value in pg_conn_params.items()})
    inv = inventory(tmp_path, host_vars)

    check = ansible_playbook(PLAYBOOK, inventory=inv, check=True)
    assert check.rc == 0, check.output[-4000:]
    assert invalid_indexes(conn) == ["dup_v_key"]
    assert not store.exists() or not any(store.rglob("*.manifest.json"))
    assert not (tmp_path / "reports").exists()
    plan = check.task("Run the maintenance steps")["result"]
    assert [(s["action"], s["outcome"]) for s in plan["steps"]] == [("rebuild_invalid", "planned"), ("vacuum_analyze", "planned")]

    run = ansible_playbook(PLAYBOOK, inventory=inv)
    assert run.rc == 0, run.output[-4000:]
    assert invalid_indexes(conn) == []
    with conn.cursor() as cur:
        cur.execute("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'items'")
        assert cur.fetchone() == (True,)
    manifests = list(store.rglob("*.manifest.json"))
    assert len(manifests) == 1

    stats, report = report_of(run)
    assert stats["state"] == report["state"] and stats["database_bytes_before"] > 0 and stats["database_bytes_after"] > 0
    assert os.stat(stats["report"]["json"]).st_mode & 0o777 == 0o600
    steps = by_check(report, "steps")
    assert steps["backup"]["state"] == "ok" and manifests[0].name.split(".")[0] in steps["backup"]["detail"]
    assert steps["backup"]["value"] >= 0
    for phase in ("before", "after"):
        found = by_check(report, phase)
        assert found["table sizes"]["value"] > 0 and "bloat" in found, found
    maintenance = by_check(report, "maintenance")
    assert maintenance["rebuild invalid public.dup_v_key"]["state"] == "ok"
    assert maintenance["rebuild invalid public.dup_v_key"]["detail"].startswith("done")
    assert maintenance["database size"]["value"] == stats["database_bytes_after"]
    with open(stats["report"]["markdown"], encoding="utf-8") as handle:
        markdown = handle.read()
    for title in ("Steps of the window", "Sizes and bloat before", "Maintenance", "Sizes and bloat after", "dup_v_key"):
        assert title in markdown
    assert pg_conn_params["login_password"] not in markdown + run.output


def test_postgresql_window_fails_without_maintenance_when_the_backup_fails(pg_database, pg_conn_params, tmp_path,
                                                                           ansible_playbook, pg_connect):
    conn = pg_connect(pg_database)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 100)")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store directory should be")
    host_vars = {
        "db_maintenance_service": "maint-pg", "db_maintenance_engine": "postgresql",
        "db_maintenance_database": pg_database,
        "db_maintenance_backup_store": {"type": "local", "path": str(blocker / "store")},
        "db_maintenance_report_dir": str(tmp_path / "reports"),
    }
    host_vars.update({"db_maintenance_" + key: value for key, value in pg_conn_params.items()})
    run = ansible_playbook(PLAYBOOK, inventory=inventory(tmp_path, host_vars))
    assert run.rc != 0 and "the backup failed, so no maintenance ran" in run.output, run.output[-4000:]
    with conn.cursor() as cur:
        cur.execute("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 't'")
        assert cur.fetchone() == (None,)
    stats, report = report_of(run)
    assert report["state"] == "critical" and by_check(report, "steps")["backup"]["state"] == "critical"
    assert "maintenance" not in {f.get("section") for f in report["findings"]}


def ctl(svc, action):
    return subprocess.run([CTL_PATH, action, svc.env_file], env=clean_environ({"PYTHON": sys.executable}),
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture()
def sqlite_service(sample_service):
    """The sample service on SQLite, run through ctl.sh, with 300 items of which 250 were deleted (free pages)."""
    svc = sample_service(start=False)
    proc = ctl(svc, "start")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with sqlite3.connect(svc.db_path, timeout=10) as db:
        db.executemany("INSERT INTO items (name, secret_enc, created_at) VALUES (?, ?, ?)",
                       [("n%d" % i, "x" * 2000, "2026-01-01T00:00:00Z") for i in range(300)])
    with sqlite3.connect(svc.db_path, timeout=10) as db:
        db.execute("DELETE FROM items WHERE id > 50")
    return svc


def sqlite_vars(svc, tmp_path, **extra):
    host_vars = {
        "db_maintenance_service": "app", "db_maintenance_engine": "sqlite", "db_maintenance_path": svc.db_path,
        "db_maintenance_backup_store": {"type": "local", "path": str(tmp_path / "store")},
        "db_maintenance_report_dir": str(tmp_path / "reports"),
        "db_maintenance_writer": "process",
        "db_maintenance_stop_command": [CTL_PATH, "stop", svc.env_file],
        "db_maintenance_start_command": [CTL_PATH, "start", svc.env_file],
        "db_maintenance_writer_environment": {"PYTHON": sys.executable},
        "db_maintenance_health_urls": [svc.url + "/readyz"],
        "db_maintenance_health_timeout": 20,
    }
    host_vars.update(extra)
    return host_vars


def service_pid(svc):
    with open(svc.lock_path, encoding="ascii") as handle:
        return int(handle.read().strip())


def test_sqlite_window_stops_vacuums_and_starts_the_service(sqlite_service, tmp_path, ansible_playbook):
    svc = sqlite_service
    inv = inventory(tmp_path, sqlite_vars(svc, tmp_path))
    size = os.path.getsize(svc.db_path)
    pid = service_pid(svc)

    check = ansible_playbook(PLAYBOOK, inventory=inv, check=True)
    assert check.rc == 0, check.output[-4000:]
    assert os.path.getsize(svc.db_path) == size and service_pid(svc) == pid and ctl(svc, "status").returncode == 0
    assert not (tmp_path / "store").exists() and not (tmp_path / "reports").exists()
    assert "check mode" in check.output and "writer lock" in check.output

    run = ansible_playbook(PLAYBOOK, inventory=inv)
    assert run.rc == 0, run.output[-4000:]
    assert ctl(svc, "status").returncode == 0 and service_pid(svc) != pid
    assert svc.get("/readyz").status == 200
    assert os.path.getsize(svc.db_path) < size
    with sqlite3.connect(svc.db_path) as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (50,)
    stats, report = report_of(run)
    assert report["state"] == "ok", report["findings"]
    steps = by_check(report, "steps")
    assert list(steps) == ["backup", "stop writers", "start writers", "health"]
    assert by_check(report, "before")["file size"]["value"] == size
    assert by_check(report, "after")["file size"]["value"] == os.path.getsize(svc.db_path)
    maintenance = by_check(report, "maintenance")
    assert maintenance["vacuum %s" % svc.db_path]["detail"].startswith("done")
    assert maintenance["integrity check %s" % svc.db_path]["state"] == "ok"
    assert stats["database_bytes_before"] == size and stats["database_bytes_after"] < size


def test_sqlite_failed_maintenance_starts_the_service_again_and_reports_it(sqlite_service, tmp_path, ansible_playbook):
    svc = sqlite_service
    size = os.path.getsize(svc.db_path)
    # Another writer holds the lock the maintenance must take (given as db_maintenance_lock_file): the module
    # refuses before changing anything, and the service stopped for the window must be started again.
    lock_path = str(tmp_path / "other-writer.lock")
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(lock, str(os.getpid()).encode())
        fcntl.flock(lock, fcntl.LOCK_EX)
        run = ansible_playbook(PLAYBOOK, inventory=inventory(tmp_path, sqlite_vars(
            svc, tmp_path, db_maintenance_backup=False, db_maintenance_lock_file=lock_path)))
    finally:
        os.close(lock)
    assert run.rc != 0 and "holds its writer lock" in run.output, run.output[-4000:]
    assert ctl(svc, "status").returncode == 0, "the service was not started again"
    assert svc.get("/readyz").status == 200 and os.path.getsize(svc.db_path) == size
    stats, report = report_of(run)
    assert report["state"] == "critical"
    steps = by_check(report, "steps")
    assert list(steps) == ["stop writers", "start writers", "health", "maintenance"]
    assert steps["start writers"]["state"] == "ok" and steps["health"]["state"] == "ok"
    assert "holds its writer lock" in steps["maintenance"]["detail"]
