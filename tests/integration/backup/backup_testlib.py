# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the backup module tests (fixtures are in conftest.py): sample databases, content
checksums, stores we can inspect and damage behind the modules' backs, and multi-task playbooks
(one ansible-playbook start for several module calls keeps the suite fast)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import sqlite3
import string
import subprocess
import sys
import time

MODULE_PREFIX = "runbook.ops."
S3_ACCESS_KEY = "testing"
ID_STAMP_RE = re.compile(r"\d{8}T\d{6}Z")
BIG_ROWS = 2000000


def random_secret(length=24):
    """Secrets of >= 16 random letters and digits: Ansible masks every occurrence of a no_log value,
    so a short one would mangle unrelated output and hide real leaks."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _position in range(length))


SECRET_VARS = {}


def secret_var(value):
    """A playbook expression for a secret, as real playbooks pass them (vault variables): ansible-core
    2.19 prints the playbook lines around a failed task, which would show a literal value.
    run_tasks() passes every registered secret as an extra var."""
    name = "rbops_secret_%s" % hashlib.sha256(value.encode()).hexdigest()[:12]
    SECRET_VARS[name] = value
    return "{{ %s }}" % name


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- playbooks ---------------------------------------------------------------------------------

def task(name, module, params, check=None):
    """One task of a run_tasks() playbook; failures are recorded, not fatal."""
    entry = {"name": name, MODULE_PREFIX + module: params, "ignore_errors": True}
    if check is not None:
        entry["check_mode"] = check
    return entry


def result_of(run, name):
    return run.task(name)["result"]


def ok(run, name):
    """The result of a task that must have succeeded."""
    record = run.task(name)
    assert record["status"] == "ok", "task %r failed: %s\n%s" % (name, record["result"].get("msg"), run.output[-3000:])
    return record["result"]


def failed(run, name, *fragments):
    """The msg of a task that must have failed cleanly, mentioning every fragment."""
    record = run.task(name)
    msg = record["result"].get("msg", "")
    assert record["status"] == "failed", "task %r should fail but gave %s" % (name, json.dumps(record["result"])[:2000])
    assert "Traceback" not in run.output and "MODULE FAILURE" not in msg, run.output[-4000:]
    # ansible-core 2.19 always adds "exception" to a failure; a real one would carry a traceback.
    assert "Traceback" not in str(record["result"].get("exception", "")), record["result"]["exception"]
    for fragment in fragments:
        assert fragment.lower() in msg.lower(), "%r not in msg of %r: %s" % (fragment, name, msg)
    return msg


def in_background(function, *args, **kwargs):
    """Run ``function`` in a thread; returns a Future (the pool shuts down with it)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(function, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


# --- PostgreSQL --------------------------------------------------------------------------------

PG_TABLES = ("audit.events", "public.customers", "public.orders")


def make_pg_sample(conn, rows=200):
    """Three tables in two schemas, with nulls, numerics, jsonb, bytea and a foreign key."""
    with conn.cursor() as cur:
        cur.execute("""
            CREATE SCHEMA audit;
            CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, email text,
                                           balance numeric(12,2), created timestamptz NOT NULL);
            CREATE TABLE public.orders (id bigserial PRIMARY KEY, customer_id int REFERENCES public.customers(id),
                                        payload jsonb, blob bytea, note text);
            CREATE TABLE audit.events (id serial PRIMARY KEY, at timestamptz NOT NULL, event text NOT NULL);
            INSERT INTO public.customers (name, email, balance, created)
                SELECT 'customer ' || g, CASE WHEN g %% 7 = 0 THEN NULL ELSE 'c' || g || '@example.org' END,
                       round((random() * 10000)::numeric, 2), now() - g * interval '1 minute'
                FROM generate_series(1, %(rows)s) g;
            INSERT INTO public.orders (customer_id, payload, blob, note)
                SELECT 1 + (g %% %(rows)s), jsonb_build_object('n', g, 'tags', jsonb_build_array('a', md5(g::text))),
                       decode(md5(random()::text), 'hex'), CASE WHEN g %% 3 = 0 THEN NULL ELSE 'x''"\\' || g END
                FROM generate_series(1, 2 * %(rows)s) g;
            INSERT INTO audit.events (at, event)
                SELECT now() - g * interval '1 second', 'event ' || md5(random()::text)
                FROM generate_series(1, %(half)s) g;
        """, {"rows": rows, "half": max(1, rows // 2)})
    return {"audit.events": max(1, rows // 2), "public.customers": rows, "public.orders": 2 * rows}


def pg_tables(conn):
    with conn.cursor() as cur:
        cur.execute("""SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                       AND n.nspname NOT LIKE 'pg_toast%%' ORDER BY 1""")
        return [row[0] for row in cur.fetchall()]


def pg_counts(conn):
    counts = {}
    with conn.cursor() as cur:
        for table in pg_tables(conn):
            cur.execute("SELECT count(*) FROM %s" % table)
            counts[table] = cur.fetchone()[0]
    return counts


def pg_checksum(conn):
    """md5 of every table's full contents (row text sorted), and its row count."""
    found = {}
    with conn.cursor() as cur:
        for table in pg_tables(conn):
            cur.execute("SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                        "FROM %s t" % table)
            found[table] = tuple(cur.fetchone())
    return found


def scratch_databases(conn, database):
    """Scratch databases backup_verify made for ``database`` that still exist (other runs on this
    server may verify other databases at the same time)."""
    return pg_database_names(conn, "rbops_verify_%s_" % database[:30].lower())


def pg_database_names(conn, prefix):
    with conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix.replace("_", "\\_") + "%",))
        return sorted(row[0] for row in cur.fetchall())


def pg_params(conn_params, database, **extra):
    params = dict(conn_params, login_password=secret_var(conn_params["login_password"]))
    params.update({"engine": "postgresql", "database": database})
    params.update(extra)
    return params


# --- SQLite ------------------------------------------------------------------------------------

def make_sqlite_sample(path, rows=300):
    """A SQLite file in WAL mode like the service's, with text, blobs, nulls and an index."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript("""
            CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, secret_enc TEXT, created_at TEXT NOT NULL);
            CREATE TABLE jobs (id INTEGER PRIMARY KEY, kind TEXT, status TEXT, payload BLOB);
            CREATE TABLE audit_log (id INTEGER PRIMARY KEY, event TEXT NOT NULL, at TEXT NOT NULL);
            CREATE INDEX items_name ON items(name);
        """)
        conn.executemany("INSERT INTO items (name, secret_enc, created_at) VALUES (?, ?, ?)",
                         [("item %d" % i, None if i % 5 == 0 else secrets.token_hex(16), "2026-01-01T00:%02d" % (i % 60))
                          for i in range(rows)])
        conn.executemany("INSERT INTO jobs (kind, status, payload) VALUES (?, ?, ?)",
                         [("kind%d" % (i % 4), "done", secrets.token_bytes(32)) for i in range(rows // 2)])
        conn.executemany("INSERT INTO audit_log (event, at) VALUES (?, ?)",
                         [("event %d" % i, "2026-01-02") for i in range(rows // 3)])
        conn.commit()
    finally:
        conn.close()
    return {"items": rows, "jobs": rows // 2, "audit_log": rows // 3}


def sqlite_checksum(path):
    """{table: (rows, sha256 of all rows in rowid order)} of a SQLite file."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        found = {}
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                             "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for table in tables:
            digest = hashlib.sha256()
            count = 0
            for row in conn.execute('SELECT * FROM "%s" ORDER BY rowid' % table):
                digest.update(repr(row).encode())
                count += 1
            found[table] = (count, digest.hexdigest())
        return found
    finally:
        conn.close()


def sqlite_counts(path):
    return {table: value[0] for table, value in sqlite_checksum(path).items()}


# --- stores ------------------------------------------------------------------------------------

class LocalStoreView:
    """A local store as the tests see it: plain files."""

    kind = "local"

    def __init__(self, root):
        self.root = str(root)
        self.params = {"type": "local", "path": self.root}

    def path(self, key):
        return os.path.join(self.root, key)

    def keys(self, service=None, hidden=False):
        found = []
        base = os.path.join(self.root, service) if service else self.root
        for directory, _dirs, files in os.walk(base):
            for name in files:
                if hidden or not name.startswith("."):
                    found.append(os.path.relpath(os.path.join(directory, name), self.root))
        return sorted(found)

    def read(self, key):
        with open(self.path(key), "rb") as handle:
            return handle.read()

    def write(self, key, data):
        os.makedirs(os.path.dirname(self.path(key)), exist_ok=True)
        with open(self.path(key), "wb") as handle:
            handle.write(data)

    def delete(self, key):
        os.unlink(self.path(key))

    def unfinished_uploads(self):
        return [k for k in self.keys(hidden=True) if os.path.basename(k).startswith(".")]


class S3StoreView:
    """An S3 store (bucket + prefix on moto) as the tests see it, through boto3."""

    kind = "s3"

    def __init__(self, endpoint, bucket, prefix="backups", secret_key=None):
        import boto3

        self.bucket = bucket
        self.prefix = prefix
        self.secret_key = secret_key or random_secret(32)
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                   aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=self.secret_key)
        self.params = {"type": "s3", "bucket": bucket, "prefix": prefix, "endpoint_url": endpoint,
                       "access_key": S3_ACCESS_KEY, "secret_key": secret_var(self.secret_key)}

    def _full(self, key):
        return "%s/%s" % (self.prefix, key) if self.prefix else key

    def keys(self, service=None, hidden=False):
        del hidden
        prefix = self._full(service + "/") if service else (self.prefix + "/" if self.prefix else "")
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(item["Key"][strip:] for page in pages for item in page.get("Contents", []))

    def read(self, key):
        return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()

    def write(self, key, data):
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)

    def delete(self, key):
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def unfinished_uploads(self):
        return self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])


def manifest_of(view, backup):
    """The stored manifest of a backup (the ``backup`` result of db_backup)."""
    return json.loads(view.read(backup["object"] + ".manifest.json"))


def clone_backup(view, manifest, stamp, with_manifest=True):
    """Copy a real backup under an id with another UTC stamp (a datetime): a complete, valid,
    older (or newer) backup as db_backup would have written it then.  Returns the new manifest."""
    text = stamp.strftime("%Y%m%dT%H%M%SZ")
    new_id = ID_STAMP_RE.sub(text, manifest["id"])[:-6] + secrets.token_hex(3)
    new_object = manifest["object"].replace(manifest["id"], new_id)
    view.write(new_object, view.read(manifest["object"]))
    clone = dict(manifest, id=new_id, object=new_object, started=stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 finished=stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    clone.pop("manifest", None)
    clone.pop("location", None)
    if with_manifest:
        view.write(new_object + ".manifest.json", json.dumps(clone, indent=2).encode())
    return clone


# --- a second moto server, with authentication -------------------------------------------------

@contextlib.contextmanager
def moto_server(env=None):
    """A private moto_server on a free loopback port; yields its endpoint URL."""
    port = free_port()
    server_env = dict(os.environ)
    server_env.update(env or {})
    binary = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], env=server_env,  # pylint: disable=consider-using-with
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start on port %d" % port)
            time.sleep(0.1)
        yield "http://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
