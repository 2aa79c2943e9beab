# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark databases, generated server-side.

Two kinds: ``rbops_bench_<N>g`` (below) is the worst case for a compressor; ``rbops_bench_app``
(``ensure_app_database``) looks like real application data.


Text columns carry base64 of sha256 digests of random() (6 bits of entropy per character, the
worst case for a compressor short of encrypted blobs), uuids, timestamps, numerics and jsonb
documents; a few low-cardinality columns (event kinds, user agents) keep it realistic.  zstd
shrinks the dump by roughly a third, so compression cannot make the benchmark look good.

A database is reused when its ``bench_meta`` row says generation completed and its size is
still at least the target; otherwise it is dropped and generated again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

import psycopg2
from psycopg2 import sql

from _common import progress

GIB = 1 << 30
DATABASE_PREFIX = "rbops_bench_"
# One batch adds about 80 MB (heap and indexes).
EVENTS_PER_BATCH = 100000
DOCUMENTS_PER_BATCH = 30000
ACCOUNTS_PER_GIB = 200000


def database_name(size_gib):
    return "%s%dg" % (DATABASE_PREFIX, size_gib)


def _b64_random(digests):
    """SQL for base64 text of ``digests`` random sha256 digests (32 bytes each), no line breaks."""
    parts = " || ".join(["sha256(random()::text::bytea)"] * digests)
    return "replace(encode(%s, 'base64'), E'\\n', '')" % parts


SCHEMA_SQL = """
CREATE TABLE accounts (
    id integer PRIMARY KEY,
    uid uuid NOT NULL,
    email text NOT NULL,
    display_name text NOT NULL,
    created_at timestamptz NOT NULL,
    balance numeric(14,2) NOT NULL,
    settings jsonb NOT NULL
);
CREATE TABLE events (
    id bigint PRIMARY KEY,
    event_id uuid NOT NULL,
    account_id integer NOT NULL,
    kind text NOT NULL,
    created_at timestamptz NOT NULL,
    amount numeric(12,2),
    payload jsonb NOT NULL,
    note text
);
CREATE TABLE documents (
    id bigint PRIMARY KEY,
    doc_id uuid NOT NULL,
    account_id integer NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE bench_meta (key text PRIMARY KEY, value text NOT NULL);
"""

ACCOUNTS_SQL = """
INSERT INTO accounts
SELECT g, gen_random_uuid(), md5(random()::text) || '@example.com', %(name)s,
       now() - random() * interval '1000 days', round((random() * 1e6)::numeric, 2),
       jsonb_build_object('theme', (ARRAY['dark','light','system'])[1 + floor(random() * 3)::int],
                          'api_key', %(key)s, 'quota', floor(random() * 100000)::int)
FROM generate_series(%%(first)s, %%(last)s) g
""" % {"name": _b64_random(1), "key": _b64_random(1)}

EVENTS_SQL = """
INSERT INTO events
SELECT g, gen_random_uuid(), 1 + floor(random() * %%(accounts)s)::int,
       (ARRAY['login','logout','purchase','refund','upload','download','share','delete'])[1 + floor(random() * 8)::int],
       now() - random() * interval '365 days', round((random() * 10000)::numeric, 2),
       jsonb_build_object(
           'ip', concat_ws('.', floor(random() * 256)::int, floor(random() * 256)::int,
                           floor(random() * 256)::int, floor(random() * 256)::int),
           'session', md5(random()::text), 'signature', %(sig)s, 'score', random(),
           'agent', (ARRAY['curl/8.5', 'Mozilla/5.0 (X11; Linux x86_64)', 'okhttp/4.12',
                           'python-requests/2.32'])[1 + floor(random() * 4)::int]),
       %(note)s
FROM generate_series(%%(first)s, %%(last)s) g
""" % {"sig": _b64_random(2), "note": _b64_random(4)}

DOCUMENTS_SQL = """
INSERT INTO documents
SELECT g, gen_random_uuid(), 1 + floor(random() * %%(accounts)s)::int, md5(random()::text),
       %(body)s, now() - random() * interval '365 days'
FROM generate_series(%%(first)s, %%(last)s) g
""" % {"body": _b64_random(24)}


def _admin(settings, dbname="postgres"):
    conn = psycopg2.connect(dbname=dbname, application_name="rbops-bench", **settings)
    conn.autocommit = True
    return conn


def database_size(settings, name):
    """pg_database_size of ``name``, or None when it does not exist."""
    with contextlib.closing(_admin(settings)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", (name,))
        row = cur.fetchone()
        return row[0] if row else None


def _is_complete(settings, name, target):
    try:
        with contextlib.closing(_admin(settings, name)) as conn, conn.cursor() as cur:
            cur.execute("SELECT value FROM bench_meta WHERE key = 'target_bytes'")
            row = cur.fetchone()
            return row is not None and int(row[0]) >= target
    except psycopg2.Error:
        return False


def drop_database(settings, name):
    with contextlib.closing(_admin(settings)) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def ensure_database(settings, size_gib):
    """Make sure ``rbops_bench_<N>g`` exists with at least N GiB; returns (name, size, seconds
    spent generating, or None when it was reused)."""
    name = database_name(size_gib)
    target = size_gib * GIB
    size = database_size(settings, name)
    if size is not None and size >= target and _is_complete(settings, name, target):
        progress("reusing database %s (%.2f GiB)" % (name, size / GIB))
        return name, size, None
    if size is not None:
        progress("database %s is incomplete or too small: generating it again" % name)
        drop_database(settings, name)
    progress("generating %s: at least %d GiB of poorly compressible data (about 80 MB per batch)"
             % (name, size_gib))
    clock = time.monotonic()
    with contextlib.closing(_admin(settings)) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    accounts = ACCOUNTS_PER_GIB * size_gib
    with contextlib.closing(_admin(settings, name)) as conn, conn.cursor() as cur:
        cur.execute(SCHEMA_SQL)
        cur.execute(ACCOUNTS_SQL, {"first": 1, "last": accounts})
        batch, next_event, next_doc = 0, 1, 1
        while True:
            cur.execute("SELECT pg_database_size(current_database())")
            size = cur.fetchone()[0]
            if size >= target:
                break
            batch += 1
            cur.execute(EVENTS_SQL, {"accounts": accounts, "first": next_event,
                                     "last": next_event + EVENTS_PER_BATCH - 1})
            cur.execute(DOCUMENTS_SQL, {"accounts": accounts, "first": next_doc,
                                        "last": next_doc + DOCUMENTS_PER_BATCH - 1})
            next_event += EVENTS_PER_BATCH
            next_doc += DOCUMENTS_PER_BATCH
            if batch % 3 == 0:
                progress("  %s: %.2f / %d GiB after %.0fs" % (name, size / GIB, size_gib, time.monotonic() - clock))
        progress("  %s: VACUUM (FREEZE, ANALYZE) so that no benchmark run pays for hint bits" % name)
        cur.execute("VACUUM (FREEZE, ANALYZE)")
        cur.execute("CHECKPOINT")
        cur.execute("INSERT INTO bench_meta VALUES ('target_bytes', %s), ('generated_at', now()::text)",
                    (str(target),))
        cur.execute("SELECT pg_database_size(current_database())")
        size = cur.fetchone()[0]
    seconds = time.monotonic() - clock
    progress("generated %s: %.2f GiB in %.0fs" % (name, size / GIB, seconds))
    return name, size, seconds


def table_rows(settings, name):
    """Exact row counts (for the report)."""
    with contextlib.closing(_admin(settings, name)) as conn, conn.cursor() as cur:
        counts = {}
        cur.execute("SELECT relname FROM pg_stat_user_tables WHERE relname <> 'bench_meta' ORDER BY 1")
        for (table,) in cur.fetchall():
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            counts[table] = cur.fetchone()[0]
        return counts


def bench_databases(settings):
    with contextlib.closing(_admin(settings)) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1",
                    (DATABASE_PREFIX.replace("_", "\\_") + "%",))
        return [row[0] for row in cur.fetchall()]


APP_DATABASE = DATABASE_PREFIX + "app"
APP_PGBENCH_SCALE = 50          # pgbench_accounts: 5 million rows with blank-padded filler
APP_NOTES_ROWS = 3000000        # md5 text and jsonb: what application tables are made of
APP_NOTES_SQL = """
CREATE TABLE notes (
    id bigint PRIMARY KEY,
    author text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL,
    attrs jsonb NOT NULL
);
INSERT INTO notes
SELECT g, 'user' || (g %% 5000), md5(g::text), md5(random()::text) || ' ' || md5(random()::text),
       timestamptz '2026-01-01' + g * interval '7 seconds',
       jsonb_build_object('state', (ARRAY['open','closed','archived'])[1 + g %% 3],
                          'tags', jsonb_build_array('t' || (g %% 17), 't' || (g %% 29)),
                          'score', (g %% 1000) / 10.0, 'ref', md5((g * 7)::text))
FROM generate_series(1, %(rows)s) g;
CREATE INDEX notes_author ON notes (author);
"""


def ensure_app_database(settings):
    """``rbops_bench_app``: pgbench tables at scale 50 plus a 3-million-row table of md5 text and
    jsonb (about 1.3 GB): data that compresses the way real application databases do.  Returns
    (name, size, seconds spent generating or None when reused)."""
    name = APP_DATABASE
    size = database_size(settings, name)
    if size is not None and _is_complete(settings, name, 1):
        progress("reusing database %s (%.2f GiB)" % (name, size / GIB))
        return name, size, None
    if size is not None:
        drop_database(settings, name)
    pgbench = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    progress("generating %s: pgbench scale %d and %d rows of md5 text and jsonb"
             % (name, APP_PGBENCH_SCALE, APP_NOTES_ROWS))
    clock = time.monotonic()
    with contextlib.closing(_admin(settings)) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    env = dict(os.environ, PGPASSWORD=settings["password"])
    subprocess.run([pgbench, "-i", "-q", "-s", str(APP_PGBENCH_SCALE), "-h", settings["host"],
                    "-p", str(settings["port"]), "-U", settings["user"], name],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    with contextlib.closing(_admin(settings, name)) as conn, conn.cursor() as cur:
        cur.execute(APP_NOTES_SQL % {"rows": APP_NOTES_ROWS})
        cur.execute("CREATE TABLE bench_meta (key text PRIMARY KEY, value text NOT NULL)")
        cur.execute("VACUUM (FREEZE, ANALYZE)")
        cur.execute("CHECKPOINT")
        cur.execute("INSERT INTO bench_meta VALUES ('target_bytes', '1'), ('generated_at', now()::text)")
        cur.execute("SELECT pg_database_size(current_database())")
        size = cur.fetchone()[0]
    seconds = time.monotonic() - clock
    progress("generated %s: %.2f GiB in %.0fs" % (name, size / GIB, seconds))
    return name, size, seconds
