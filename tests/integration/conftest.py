# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the real services scripts/services.sh starts on loopback."""

from __future__ import annotations

import os
import uuid

import pytest

from busybox_image import ensure_busybox_image
from harness import run_module, run_playbook

# The managed sample service, as a factory fixture: sample_service(database_url=None, env=None, start=True).
pytest_plugins = ["sample_service_fixture"]


def _require(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail("%s is not set: run the integration tests with `make integration`" % name)
    return value


@pytest.fixture(scope="session")
def pg_conn_params():
    """Connection options for the test PostgreSQL server (a superuser with a password)."""
    with open(_require("RBOPS_TEST_PG_PASSWORD_FILE"), encoding="utf-8") as handle:
        password = handle.read().strip()
    return {
        "login_host": _require("RBOPS_TEST_PG_HOST"),
        "login_port": int(_require("RBOPS_TEST_PG_PORT")),
        "login_user": _require("RBOPS_TEST_PG_USER"),
        "login_password": password,
    }


@pytest.fixture()
def pg_database(pg_conn_params):
    """A fresh, empty database that is dropped after the test."""
    import psycopg2

    name = "rbops_t_" + uuid.uuid4().hex[:10]
    admin = _admin_connection(pg_conn_params)
    with admin.cursor() as cur:
        cur.execute('CREATE DATABASE "%s"' % name)
    yield name
    with admin.cursor() as cur:
        cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    admin.close()
    del psycopg2


def _admin_connection(params, dbname="postgres"):
    import psycopg2

    conn = psycopg2.connect(host=params["login_host"], port=params["login_port"],
                            user=params["login_user"], password=params["login_password"],
                            dbname=dbname)
    conn.autocommit = True
    return conn


@pytest.fixture()
def pg_connect(pg_conn_params):
    """connect(dbname) -> an autocommit psycopg2 connection, closed after the test."""
    opened = []

    def connect(dbname):
        conn = _admin_connection(pg_conn_params, dbname)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture(scope="session")
def s3_endpoint():
    return _require("RBOPS_TEST_S3_ENDPOINT")


@pytest.fixture()
def s3_bucket(s3_endpoint):
    """A fresh bucket on the moto S3 server."""
    import boto3

    name = "rbops-t-" + uuid.uuid4().hex[:10]
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=name)
    yield name
    # Empty it (objects, unfinished multipart uploads), then delete it: the shared server stays clean.
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    client.delete_bucket(Bucket=name)


@pytest.fixture(scope="session")
def redis_url():
    return _require("RBOPS_TEST_REDIS_URL")


@pytest.fixture()
def ansible_module(tmp_path):
    """ansible_module(name, params, check=False, diff=False, verbosity=0) -> PlaybookRun."""
    def run(module, params, **kwargs):
        return run_module(tmp_path, module, params, **kwargs)
    return run


@pytest.fixture()
def ansible_playbook(tmp_path):
    """ansible_playbook(playbook, inventory=None, extra_vars=None, ...) -> PlaybookRun."""
    def run(playbook, **kwargs):
        return run_playbook(tmp_path, playbook, **kwargs)
    return run


@pytest.fixture(scope="session")
def busybox_image():
    """The tag of a small FROM-scratch busybox image (built once, kept as a cache)."""
    try:
        return ensure_busybox_image()
    except RuntimeError as exc:
        pytest.fail(str(exc))
