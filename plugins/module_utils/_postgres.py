# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connections and queries: PgServer (connect, read-only queries, row counts,
scratch databases).  The client tools (pg_dump/pg_restore command lines, their environment and
the snapshot pg_dump imports) are in _pg_dump.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess

from ansible_collections.runbook.ops.plugins.module_utils._errors import DatabaseError, ParameterError
from ansible_collections.runbook.ops.plugins.module_utils._manifest import table_key

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:
    psycopg2 = None

USER_TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
ORDER BY 1, 2
"""

USER_RELATIONS_SQL = """
SELECT count(*)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
"""

SCRATCH_PREFIX = "rbops_verify_"


def conninfo_quote(value):
    """Quote a value for a libpq connection string (used for dbname, which is not secret)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class PgServer:
    """How to reach one PostgreSQL server, and the client tools to use with it."""

    def __init__(self, host=None, port=5432, user=None, password=None, ssl_mode=None, connect_timeout=10,
                 bin_dir=None):
        if psycopg2 is None:
            raise DatabaseError("the postgresql engine needs the Python library psycopg2 on the managed host")
        self.host = host
        self.port = port
        self.user = user
        self._password = password
        self.ssl_mode = ssl_mode
        self.connect_timeout = connect_timeout
        self.bin_dir = bin_dir

    def describe(self, database=None):
        where = "%s:%s" % (self.host or "local socket", self.port)
        return "%s/%s" % (where, database) if database else where

    def connect(self, database, autocommit=True):
        kwargs = {"dbname": database, "port": self.port, "connect_timeout": self.connect_timeout,
                  "application_name": "runbook.ops"}
        for key, value in (("host", self.host), ("user", self.user), ("password", self._password),
                           ("sslmode", self.ssl_mode)):
            if value:
                kwargs[key] = value
        try:
            conn = psycopg2.connect(**kwargs)
        except psycopg2.Error as exc:
            raise DatabaseError("cannot connect to PostgreSQL at %s: %s"
                                % (self.describe(database), _pg_message(exc))) from None
        conn.autocommit = autocommit
        return conn

    def tool(self, name):
        path = os.path.join(self.bin_dir, name) if self.bin_dir else shutil.which(name)
        if not path or not os.access(path, os.X_OK):
            raise DatabaseError("%s not found%s: install the PostgreSQL client tools (Debian: postgresql-client) "
                                "or set pg_bin_dir" % (name, " in %s" % self.bin_dir if self.bin_dir else " on PATH"))
        return path

    def tool_version(self, name):
        out = subprocess.run([self.tool(name), "--version"], capture_output=True, text=True, check=False).stdout
        match = re.search(r"(\d+(?:\.\d+)*)", out)
        return match.group(1) if match else out.strip()

    @property
    def password(self):
        """For the client tools' password file (see _pg_dump.tool_env); never logged."""
        return self._password

    def tool_settings(self):
        """The non-secret libpq environment of the client tools (PGHOST, PGPORT, ...)."""
        env = {"PGPORT": str(self.port), "PGCONNECT_TIMEOUT": str(self.connect_timeout), "PGAPPNAME": "runbook.ops"}
        for key, value in (("PGHOST", self.host), ("PGUSER", self.user), ("PGSSLMODE", self.ssl_mode)):
            if value:
                env[key] = value
        return env

    def database_exists(self, database):
        with contextlib.closing(self.connect("postgres")) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            return cur.fetchone() is not None

    def relation_count(self, database):
        """How many user tables, views, sequences ... the database holds (0: empty)."""
        with contextlib.closing(self.connect(database)) as conn, conn.cursor() as cur:
            cur.execute(USER_RELATIONS_SQL)
            return cur.fetchone()[0]

    def create_database(self, database, owner=None):
        with contextlib.closing(self.connect("postgres")) as conn, conn.cursor() as cur:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(database))
            if owner:
                statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            try:
                cur.execute(statement)
            except psycopg2.Error as exc:
                raise DatabaseError("cannot create database %s: %s" % (database, _pg_message(exc))) from None

    def drop_database(self, database):
        with contextlib.closing(self.connect("postgres")) as conn, conn.cursor() as cur:
            try:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            except psycopg2.Error as exc:
                raise DatabaseError("cannot drop database %s: %s" % (database, _pg_message(exc))) from None

    def row_counts(self, database):
        with contextlib.closing(self.connect(database)) as conn, conn.cursor() as cur:
            return count_rows(cur)

    def query_rows(self, database, query, params=None, limit=None):
        """Rows of a query run in a READ ONLY transaction that is always rolled back, as a list
        of dicts keyed by column name (at most ``limit`` rows)."""
        with contextlib.closing(self.connect(database, autocommit=False)) as conn, conn.cursor() as cur:
            try:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(query, params)
                if not cur.description:
                    return []
                names = [column.name for column in cur.description]
                rows = cur.fetchmany(limit) if limit else cur.fetchall()
            except psycopg2.Error as exc:
                raise DatabaseError(_pg_message(exc)) from None
            finally:
                conn.rollback()
            return [dict(zip(names, row)) for row in rows]

    def run_scalar(self, database, query):
        """First column of the first row of a read-only query (verification assertions)."""
        rows = self.query_rows(database, query, limit=1)
        return next(iter(rows[0].values())) if rows and rows[0] else None


def count_rows(cur, tables=None):
    """Exact row count of every user table (or of ``tables``, (schema, table) pairs), keyed by
    _manifest.table_key: 'schema.table' with a part quoted when it is not a plain identifier."""
    if tables is None:
        cur.execute(USER_TABLES_SQL)
        tables = cur.fetchall()
    counts = {}
    for schema, table in tables:
        cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
        counts[table_key(schema, table)] = cur.fetchone()[0]
    return counts


def scratch_database_name(label):
    return "%s%s_%s" % (SCRATCH_PREFIX, label[:30].lower(), secrets.token_hex(4))


def check_database_name(name):
    if not name or len(name) > 63 or "\x00" in name:
        raise ParameterError("invalid PostgreSQL database name %r" % (name,))
    return name


def _pg_message(exc):
    text = (getattr(exc, "pgerror", None) or str(exc) or exc.__class__.__name__).strip()
    return " ".join(text.split())
