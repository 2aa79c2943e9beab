# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the backup module tests; the helpers they use are in backup_testlib.py."""

from __future__ import annotations

import uuid

import pytest

from backup_testlib import BIG_ROWS, SECRET_VARS, LocalStoreView, S3StoreView, make_pg_sample
from harness import run_playbook
from sample_service_fixture import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import


@pytest.fixture()
def run_tasks(tmp_path):
    """run_tasks([task(...), ...], verbosity=0, env=None) -> PlaybookRun of one play on localhost."""
    def run(tasks, extra_vars=None, **kwargs):
        play = {"hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}
        return run_playbook(tmp_path, [play], extra_vars=dict(SECRET_VARS, **(extra_vars or {})), **kwargs)
    return run


@pytest.fixture()
def pg_sample(pg_conn_params, pg_database, pg_connect):
    """A PostgreSQL database with sample data: (name, connection, expected counts)."""
    conn = pg_connect(pg_database)
    counts = make_pg_sample(conn)
    return pg_database, conn, counts


@pytest.fixture()
def pg_target(pg_conn_params, pg_connect):
    """Names of extra databases a test may create; all dropped afterwards."""
    names = []

    def new(create=False):
        name = "rbops_t_" + uuid.uuid4().hex[:10]
        names.append(name)
        if create:
            with pg_connect("postgres").cursor() as cur:
                cur.execute('CREATE DATABASE "%s"' % name)
        return name

    yield new
    admin = pg_connect("postgres")
    with admin.cursor() as cur:
        for name in names:
            cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


@pytest.fixture()
def local_store(tmp_path):
    return LocalStoreView(tmp_path / "store")


@pytest.fixture()
def s3_store(s3_endpoint, s3_bucket):
    return S3StoreView(s3_endpoint, s3_bucket)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """Each test using it runs once with a local store and once with an S3 store."""
    if request.param == "local":
        return LocalStoreView(tmp_path / "store")
    return S3StoreView(request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket"))


@pytest.fixture(scope="module")
def big_database(pg_conn_params):
    """A database large enough that pg_dump runs for seconds (about 150 MB of random hex text)."""
    import psycopg2

    name = "rbops_big_" + uuid.uuid4().hex[:8]
    params = {"host": pg_conn_params["login_host"], "port": pg_conn_params["login_port"],
              "user": pg_conn_params["login_user"], "password": pg_conn_params["login_password"]}
    admin = psycopg2.connect(dbname="postgres", **params)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute('CREATE DATABASE "%s"' % name)
    conn = psycopg2.connect(dbname=name, **params)
    conn.autocommit = True
    with conn.cursor() as cur:
        # UNLOGGED: no WAL while generating; pg_dump still dumps its data.
        cur.execute("CREATE UNLOGGED TABLE big (id int, a text, b text); "
                    "INSERT INTO big SELECT g, md5(random()::text), md5(random()::text) "
                    "FROM generate_series(1, %s) g", (BIG_ROWS,))
    conn.close()
    yield name
    with admin.cursor() as cur:
        cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    admin.close()
