# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the backup module tests; the helpers they use are in backup_testlib.py."""

from __future__ import annotations

import uuid

import pytest

from backup_testlib import LocalStoreView, S3StoreView, make_pg_sample
from harness import run_playbook
from sample_service_fixture import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import


@pytest.fixture()
def run_tasks(tmp_path):
    """run_tasks([task(...), ...], verbosity=0, env=None) -> PlaybookRun of one play on localhost."""
    def run(tasks, **kwargs):
        play = {"hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}
        return run_playbook(tmp_path, [play], **kwargs)
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
