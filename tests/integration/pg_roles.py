# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL login roles made for one test, in a database of its own with statement logging (fixture ``pg_roles``:
import it into a conftest.py, ``from pg_roles import pg_roles``), and ``new_password()``."""

from __future__ import annotations

import os
import secrets
import time
import uuid

import pytest

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
