# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups taken while the database keeps changing are consistent snapshots; a SQLite restore
respects the service's single-writer lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psycopg2

from backup_testlib import failed, ok, pg_counts, pg_params, sqlite_counts, task
from sample_service_fixture import CTL_PATH


class Writer(threading.Thread):
    """Calls ``write()`` in a loop until stopped; counts successes and keeps the first error."""

    def __init__(self, write):
        super().__init__(daemon=True)
        self._write = write
        self._halt = threading.Event()
        self.done = 0
        self.error = None

    def run(self):
        while not self._halt.is_set():
            try:
                self._write()
                self.done += 1
            except Exception as exc:  # pylint: disable=broad-except
                self.error = exc
                return

    def stop(self):
        self._halt.set()
        self.join(30)
        assert self.error is None, "the writer failed: %r" % (self.error,)


def ctl(action, svc):
    """ctl.sh with the test's interpreter (the service needs `cryptography`)."""
    return ["env", "PYTHON=" + sys.executable, CTL_PATH, action, svc.env_file]


def run_ctl(action, svc):
    proc = subprocess.run(ctl(action, svc), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, "ctl.sh %s failed: %s %s" % (action, proc.stdout, proc.stderr)


def service_pid(svc):
    with open(os.path.join(svc.data_dir, "app.pid"), encoding="ascii") as handle:
        return int(handle.read().strip())


def test_sqlite_backup_while_the_service_writes_and_restore_around_it(sample_service, local_store, tmp_path, run_tasks):
    svc = sample_service(start=False)
    run_ctl("start", svc)  # through ctl.sh, so that the restore can stop and start it the same way
    try:
        for number in range(30):
            assert svc.api("POST", "/api/items", json={"name": "seed %d" % number, "secret": "s"}).status == 201

        def post():
            response = svc.api("POST", "/api/items", json={"name": "live", "secret": "value"})
            assert response.status == 201, response
        writer = Writer(post)
        writer.start()
        common = {"service": "app", "engine": "sqlite", "path": svc.db_path, "store": local_store.params}
        before = writer.done
        run = run_tasks([task("backup", "db_backup", common)])
        during = writer.done - before
        writer.stop()
        assert during > 0, "no write happened while the backup ran: the test proves nothing"
        manifest = ok(run, "backup")["backup"]
        live = sqlite_counts(svc.db_path)
        assert live["items"] > manifest["row_counts"]["items"] >= 30

        copy = str(tmp_path / "copy.db")
        pid = service_pid(svc)
        inode = os.stat(svc.db_path).st_ino
        run = run_tasks([
            task("verify", "backup_verify", common),
            task("restore copy", "db_restore", dict(common, path=copy, database="app")),
            task("restore live (check)", "db_restore", dict(common, force=True), check=True),
            task("restore live", "db_restore", dict(common, force=True)),
        ])
        assert ok(run, "verify")["report"]["passed"]
        assert ok(run, "restore copy")["row_counts"] == manifest["row_counts"] == sqlite_counts(copy)
        for name in ("restore live (check)", "restore live"):
            failed(run, name, svc.lock_path, "pid %d" % pid, "stop_command")
        assert os.stat(svc.db_path).st_ino == inode, "a refused restore replaced the live database"
        assert sqlite_counts(svc.db_path)["items"] == live["items"]
        assert [n for n in os.listdir(svc.data_dir) if "pre-restore" in n or n.startswith(".rbops")] == []

        run = run_tasks([task("restore with stop", "db_restore", dict(
            common, force=True, stop_command=ctl("stop", svc), start_command=ctl("start", svc)))])
        restored = ok(run, "restore with stop")
        assert restored["writer_stopped"] is True and restored["writer_pid"] == pid
        assert restored["row_counts"] == manifest["row_counts"]
        assert os.path.exists(restored["previous"])
        assert sqlite_counts(restored["previous"])["items"] == live["items"], "the replaced database must be kept"
        assert service_pid(svc) != pid
        response = svc.api("GET", "/api/items")
        assert response.status == 200 and response.json["count"] == manifest["row_counts"]["items"]
        assert svc.api("POST", "/api/items", json={"name": "after restore"}).status == 201
    finally:
        run_ctl("stop", svc)


def test_postgresql_backup_while_rows_are_inserted(pg_sample, pg_conn_params, pg_target, pg_connect, local_store,
                                                   run_tasks):
    database, conn, _expected = pg_sample
    with conn.cursor() as cur:  # enough data that pg_dump takes a while
        cur.execute("CREATE TABLE public.filler AS SELECT g AS id, md5(g::text) AS a FROM generate_series(1, 400000) g")
    writer_conn = psycopg2.connect(host=pg_conn_params["login_host"], port=pg_conn_params["login_port"],
                                   user=pg_conn_params["login_user"], password=pg_conn_params["login_password"],
                                   dbname=database)
    writer_conn.autocommit = True

    def insert():
        with writer_conn.cursor() as cur:
            cur.execute("BEGIN; INSERT INTO public.orders (customer_id, note) VALUES (1, 'live'); "
                        "INSERT INTO audit.events (at, event) VALUES (now(), 'live'); COMMIT")
    writer = Writer(insert)
    writer.start()
    try:
        common = pg_params(pg_conn_params, database, service="shop", store=local_store.params)
        before = writer.done
        run = run_tasks([task("backup", "db_backup", common)])
        during = writer.done - before
    finally:
        writer.stop()
        writer_conn.close()
    assert during > 0, "no insert happened while the backup ran: the test proves nothing"
    manifest = ok(run, "backup")["backup"]
    live = pg_counts(conn)
    assert live["public.orders"] > manifest["row_counts"]["public.orders"]
    target = pg_target()
    run = run_tasks([
        task("restore", "db_restore", dict(common, database=target, source_database=database, create_database=True)),
        task("verify", "backup_verify", common),
    ])
    assert ok(run, "restore")["row_counts"] == manifest["row_counts"] == pg_counts(pg_connect(target))
    assert ok(run, "verify")["report"]["passed"]
    # Each transaction added one order and one event: the snapshot holds both or neither.
    restored = pg_connect(target)
    with restored.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM public.orders WHERE note = 'live'), "
                    "(SELECT count(*) FROM audit.events WHERE event = 'live')")
        orders, events = cur.fetchone()
    assert orders == events
