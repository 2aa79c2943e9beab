# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL roles with statement logging, a private redis-server and a private nginx, all on loopback."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import uuid

import pytest

from sample_service_fixture import free_port

PG_LOG = "/var/log/postgresql/postgresql-15-main.log"


def _admin(params, dbname="postgres"):
    import psycopg2

    conn = psycopg2.connect(host=params["login_host"], port=params["login_port"], user=params["login_user"],
                            password=params["login_password"], dbname=dbname)
    conn.autocommit = True
    return conn


class PgLog:
    """The server log from a point on: what the server wrote while a test ran."""

    def __init__(self, conn):
        with conn.cursor() as cur:
            cur.execute("SELECT pg_current_logfile()")
            current = cur.fetchone()[0]
            cur.execute("SHOW data_directory")
            data_dir = cur.fetchone()[0]
        self.path = os.path.join(data_dir, current) if current else PG_LOG
        if not os.access(self.path, os.R_OK):
            pytest.skip("the PostgreSQL server log %s is not readable here" % self.path)
        self.offset = os.path.getsize(self.path)

    def text(self, settle=0.5):
        time.sleep(settle)  # the server writes its log asynchronously
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode("utf-8", "replace")


class PgRoles:
    """A database with log_statement = all and login roles made for one test; all dropped afterwards."""

    def __init__(self, params):
        self.params = params
        self.suffix = uuid.uuid4().hex[:8]
        self.database = "rbops_rot_" + self.suffix
        self.roles = []
        self.admin = _admin(params)
        with self.admin.cursor() as cur:
            cur.execute('CREATE DATABASE "%s"' % self.database)
            # Every statement the module's admin session sends to this database lands in the server log.
            cur.execute("ALTER DATABASE \"%s\" SET log_statement = 'all'" % self.database)
        self.log = PgLog(self.admin)

    def name(self, label):
        return "rbops_%s_%s" % (label, self.suffix)

    def create(self, label, password=None, login=True, member_of=None, owner_default=False):
        name = self.name(label)
        with self.admin.cursor() as cur:
            cur.execute('CREATE ROLE "%s" %s' % (name, "LOGIN" if login else "NOLOGIN")
                        + (" PASSWORD %s" if password else ""), (password,) if password else None)
            if member_of:
                cur.execute('GRANT "%s" TO "%s"' % (member_of, name))
                if owner_default:
                    # what the role creates belongs to the owner role: nothing is stranded on a login role
                    cur.execute('ALTER ROLE "%s" SET role = "%s"' % (name, member_of))
        self.roles.append(name)
        return name

    def grant_database(self, role):
        with self.admin.cursor() as cur:
            cur.execute('GRANT ALL ON DATABASE "%s" TO "%s"' % (self.database, role))
        conn = _admin(self.params, self.database)
        with conn.cursor() as cur:
            cur.execute('GRANT ALL ON SCHEMA public TO "%s"' % role)
        conn.close()

    def stored(self, role):
        with self.admin.cursor() as cur:
            cur.execute("SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = %s", (role,))
            return cur.fetchone()

    def can_login(self, role, password, dbname=None):
        import psycopg2

        try:
            conn = psycopg2.connect(host=self.params["login_host"], port=self.params["login_port"], user=role,
                                    password=password, dbname=dbname or self.database, connect_timeout=5)
        except psycopg2.OperationalError:
            return False
        conn.close()
        return True

    def url(self, role, password):
        from urllib.parse import quote
        return "postgresql://%s:%s@%s:%d/%s" % (quote(role, safe=""), quote(password, safe=""), self.params["login_host"],
                                                int(self.params["login_port"]), self.database)

    def module_params(self, **extra):
        values = dict(self.params, login_db=self.database)
        values.update(extra)
        return values

    def cleanup(self):
        with self.admin.cursor() as cur:
            cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.database)
            for role in reversed(self.roles):
                cur.execute('DROP ROLE IF EXISTS "%s"' % role)
        self.admin.close()


@pytest.fixture()
def pg_roles(pg_conn_params):
    roles = PgRoles(pg_conn_params)
    yield roles
    roles.cleanup()


def new_password():
    return "pw-" + secrets.token_urlsafe(18) + "/+@:%"  # characters a URL must encode


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port (the shared one on 6379 is never touched)."""

    def __init__(self, base, password=None):
        self.port = free_port()
        self.dir = str(base)
        self.pidfile = os.path.join(self.dir, "redis.pid")
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "yes", "--pidfile", self.pidfile, "--dir", self.dir,
                "--logfile", os.path.join(self.dir, "redis.log")]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        if password:
            self.client.config_set("requirepass", password)
            self.client = redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_timeout=5)

    def auth_ok(self, password, username=None):
        import redis

        try:
            redis.Redis(host="127.0.0.1", port=self.port, username=username, password=password, socket_timeout=5).ping()
        except (redis.AuthenticationError, redis.ResponseError):
            return False
        return True

    def stop(self):
        try:
            with open(self.pidfile, encoding="ascii") as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists("/proc/%d" % pid):
            time.sleep(0.05)


@pytest.fixture()
def private_redis(tmp_path_factory):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (scripts/install-system-packages.sh installs it)")
    started = []

    def factory(password=None):
        server = PrivateRedis(tmp_path_factory.mktemp("redis"), password=password)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
