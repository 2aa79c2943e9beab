# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the diagnostics tests: real PostgreSQL sessions the test controls (idle, idle in a
transaction, blocked on a lock, running a long query), each named by a unique application_name so
assertions and remediation filters only ever touch the test's own sessions on the shared server."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg2
import pytest


class Session:
    """One psycopg2 connection; ``start(sql)`` runs a statement in a thread (it may block)."""

    def __init__(self, conn, application):
        self.conn = conn
        self.application = application
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]
        self.thread = None
        self.error = None

    def run(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None

    def start(self, sql):
        def target():
            try:
                self.run(sql)
            except psycopg2.Error as exc:
                self.error = exc
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def wait(self, timeout=30):
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True


@pytest.fixture()
def tag():
    """A unique prefix for the application_name of this test's sessions."""
    return "rbops-t-%s" % uuid.uuid4().hex[:8]


@pytest.fixture()
def pg_session(pg_conn_params, tag):
    """pg_session(dbname, role, autocommit=True) -> Session named '<tag>-<role>'; all closed (and
    terminated if still busy) after the test."""
    opened = []

    def open_session(dbname, role, autocommit=True):
        application = "%s-%s" % (tag, role)
        conn = psycopg2.connect(host=pg_conn_params["login_host"], port=pg_conn_params["login_port"],
                                user=pg_conn_params["login_user"], password=pg_conn_params["login_password"],
                                dbname=dbname, application_name=application)
        conn.autocommit = autocommit
        session = Session(conn, application)
        opened.append(session)
        return session

    yield open_session
    admin = psycopg2.connect(host=pg_conn_params["login_host"], port=pg_conn_params["login_port"],
                             user=pg_conn_params["login_user"], password=pg_conn_params["login_password"],
                             dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
                    (tag + "-%",))
    admin.close()
    for session in opened:
        session.wait(10)
        try:
            session.conn.close()
        except psycopg2.Error:
            pass


def activity_of(pg_conn_params, where, params=()):
    """Rows of pg_stat_activity (pid, state, wait_event_type, blocked_by) matching ``where``."""
    conn = psycopg2.connect(host=pg_conn_params["login_host"], port=pg_conn_params["login_port"],
                            user=pg_conn_params["login_user"], password=pg_conn_params["login_password"],
                            dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pid, state, wait_event_type, pg_blocking_pids(pid), query_start FROM pg_stat_activity "
                        "WHERE " + where, params)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture()
def wait_for(pg_conn_params):
    """wait_for(where, params, predicate=bool, timeout=15) -> rows once predicate(rows) holds."""
    def wait(where, params=(), predicate=bool, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            rows = activity_of(pg_conn_params, where, params)
            if predicate(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError("pg_stat_activity never matched %s: %r" % (where, rows))
            time.sleep(0.1)
    return wait


@pytest.fixture()
def blocked_pair(pg_database, pg_session, wait_for):
    """A real blocking lock: 'blocker' updated row 1 in an open transaction and sits idle in it;
    'waiter' tries to update the same row and waits for it. Returns (blocker, waiter, dbname)."""
    setup = pg_session(pg_database, "setup")
    setup.run("CREATE TABLE items (id int PRIMARY KEY, name text)")
    setup.run("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g")
    setup.conn.close()
    blocker = pg_session(pg_database, "blocker", autocommit=False)
    blocker.run("UPDATE items SET name = 'held' WHERE id = 1")
    waiter = pg_session(pg_database, "waiter")
    waiter.start("UPDATE items SET name = 'waiting' WHERE id = 1")
    wait_for("pid = %s", (waiter.pid,), lambda rows: rows and rows[0][3] == [blocker.pid])
    return blocker, waiter, pg_database


@pytest.fixture()
def closed_port():
    """A port on 127.0.0.1 that nothing listens on."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture()
def limited_role(pg_conn_params, tag):
    """A login role without superuser or pg_monitor: (name, password, grant(sql)); dropped after the test."""
    import secrets

    name = tag.replace("-", "_")
    password = secrets.token_urlsafe(16)
    admin = psycopg2.connect(host=pg_conn_params["login_host"], port=pg_conn_params["login_port"],
                             user=pg_conn_params["login_user"], password=pg_conn_params["login_password"],
                             dbname="postgres")
    admin.autocommit = True

    def grant(role):
        with admin.cursor() as cur:
            cur.execute('GRANT %s TO "%s"' % (role, name))

    with admin.cursor() as cur:
        cur.execute("CREATE ROLE \"%s\" LOGIN PASSWORD %%s" % name, (password,))
    yield name, password, grant
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
        for _attempt in range(50):
            try:
                cur.execute('DROP ROLE IF EXISTS "%s"' % name)
                break
            except psycopg2.errors.DependentObjectsStillInUse:
                time.sleep(0.1)
    admin.close()
