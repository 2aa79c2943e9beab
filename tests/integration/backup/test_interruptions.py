# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup stopped from outside: SIGTERM (timeout, systemd, an AWX cancel, kill) cleans up like
Ctrl-C; leftovers of a harder death (SIGKILL, power cut) are swept by a later run; a frozen S3
endpoint aborts the backup within the store's timeouts."""

from __future__ import annotations

import glob
import os
import signal
import sqlite3
import subprocess
import tempfile
import time

import pytest

from backup_testlib import (failed, in_background, moto_server, ok, pg_params, random_secret, scratch_databases,
                            task)
from test_slow_dump import copy_backends, our_processes, wait_for

import boto3


def module_processes(marker, module):
    """{pid: argv} of the module processes of our run (AnsiballZ_<module>.py)."""
    found = {}
    for pid, (cmdline, _environ) in our_processes(b"RBOPS_TEST_MARKER=" + marker.encode()).items():
        if ("AnsiballZ_%s" % module).encode() in cmdline:
            found[int(pid)] = cmdline
    return found


def children_of_run(marker):
    return {pid: cmdline for pid, (cmdline, _environ)
            in our_processes(b"RBOPS_TEST_MARKER=" + marker.encode()).items()}


def pgpass_files():
    found = set()
    for directory in (tempfile.gettempdir(), "/tmp"):
        found.update(glob.glob(os.path.join(directory, "rbops-pgpass-*")))
    return found


def terminate_module(marker, module, running):
    pids = wait_for(lambda: module_processes(marker, module), "the %s module process" % module, running)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    return running.result(timeout=300)


def runbook_sessions(conn, database):
    with conn.cursor() as cur:
        cur.execute("SELECT pid, state FROM pg_stat_activity WHERE application_name = 'runbook.ops' "
                    "AND datname = %s", (database,))
        return cur.fetchall()


def wait_until_gone(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not condition():
            return
        time.sleep(0.1)
    assert not condition(), "still there after %ds: %r" % (timeout, condition())


def test_sigterm_mid_dump_leaves_nothing(store, big_database, pg_conn_params, pg_connect, run_tasks):
    params = pg_params(pg_conn_params, big_database, service="big", store=store.params)
    admin = pg_connect("postgres")
    marker = random_secret(20)
    before = pgpass_files()
    running = in_background(run_tasks, [task("backup", "db_backup", params)], env={"RBOPS_TEST_MARKER": marker})
    wait_for(lambda: copy_backends(admin, big_database), "pg_dump's COPY", running)
    if store.kind == "s3":
        wait_for(store.unfinished_uploads, "a multipart upload", running)
    else:
        wait_for(lambda: store.keys(hidden=True), "a partial file", running)
    run = terminate_module(marker, "db_backup", running)
    failed(run, "backup", "terminated (SIGTERM)")
    assert store.keys(hidden=True) == [], "SIGTERM left objects or partial files: %s" % store.keys(hidden=True)
    assert store.unfinished_uploads() == [], "SIGTERM left an unfinished multipart upload"
    assert pgpass_files() - before == set(), "SIGTERM left a password file"
    wait_until_gone(lambda: children_of_run(marker))  # pg_dump died with the module
    wait_until_gone(lambda: runbook_sessions(admin, big_database))  # and the snapshot transaction ended


def test_password_file_is_anonymous_memory(big_database, pg_conn_params, local_store, run_tasks):
    """pg_dump reads the password from an anonymous in-memory file (memfd) of the module process:
    nothing on disk, gone even after SIGKILL."""
    params = pg_params(pg_conn_params, big_database, service="big", store=local_store.params)
    marker = random_secret(20)
    running = in_background(run_tasks, [task("backup", "db_backup", params)], env={"RBOPS_TEST_MARKER": marker})
    targets = []

    def pg_dump_passfile():
        for pid, (cmdline, environ) in our_processes(b"RBOPS_TEST_MARKER=" + marker.encode()).items():
            if cmdline.split(b"\0", 1)[0].endswith(b"pg_dump") and b"--version" not in cmdline:
                env = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
                try:
                    targets.append(os.readlink(env[b"PGPASSFILE"].decode()))
                except OSError:
                    continue
                return env[b"PGPASSFILE"]
        return None

    passfile = wait_for(pg_dump_passfile, "pg_dump", running)
    assert targets and targets[0].startswith("/memfd:"), "PGPASSFILE %s is %s, not an anonymous file" % (
        passfile, targets)
    assert not passfile.startswith(tempfile.gettempdir().encode())
    ok(running.result(timeout=300), "backup")


def test_sigterm_mid_verify_and_restore(big_database, pg_conn_params, pg_connect, pg_target, local_store, run_tasks):
    """backup_verify and db_restore terminated while pg_restore runs: the scratch database is dropped,
    pg_restore stops, and pg_restore too reads the password from anonymous memory."""
    admin = pg_connect("postgres")
    params = pg_params(pg_conn_params, big_database, service="big", store=local_store.params)
    ok(run_tasks([task("backup", "db_backup", dict(params, compression="none"))]), "backup")
    before = pgpass_files()

    marker = random_secret(20)
    running = in_background(run_tasks, [task("verify", "backup_verify", params)], env={"RBOPS_TEST_MARKER": marker})
    wait_for(lambda: [argv for argv in children_of_run(marker).values() if b"pg_restore" in argv.split(b"\0")[0]],
             "pg_restore", running)
    run = terminate_module(marker, "backup_verify", running)
    failed(run, "verify", "terminated (SIGTERM)")
    wait_until_gone(lambda: children_of_run(marker))
    assert scratch_databases(admin, big_database) == [], "SIGTERM left the scratch database"

    marker = random_secret(20)
    target = pg_target()
    restore = dict(params, database=target, source_database=big_database, create_database=True)
    running = in_background(run_tasks, [task("restore", "db_restore", restore)], env={"RBOPS_TEST_MARKER": marker})
    found = []

    def pg_restore_env():
        for _pid, (cmdline, environ) in our_processes(b"RBOPS_TEST_MARKER=" + marker.encode()).items():
            if cmdline.split(b"\0", 1)[0].endswith(b"pg_restore"):
                env = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
                found.append((cmdline, environ, os.readlink(env[b"PGPASSFILE"].decode())))
                return found
        return None

    cmdline, environ, passfile = wait_for(pg_restore_env, "pg_restore", running)[0]
    password = pg_conn_params["login_password"].encode()
    assert password not in cmdline and password not in environ
    assert passfile.startswith("/memfd:"), passfile
    run = terminate_module(marker, "db_restore", running)
    failed(run, "restore", "terminated (SIGTERM)")
    wait_until_gone(lambda: children_of_run(marker))
    assert pgpass_files() - before == set()


def big_sqlite(path, megabytes=120):
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                     "INSERT INTO blobs (data) SELECT randomblob(4096) FROM n", (megabytes * 256,))
        conn.commit()
    finally:
        conn.close()


def test_sigterm_mid_sqlite_backup_leaves_no_copy(local_store, tmp_path, run_tasks):
    source = str(tmp_path / "big.db")
    big_sqlite(source)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    params = {"service": "bigsqlite", "engine": "sqlite", "path": source, "tmp_dir": str(scratch),
              "compression": "gzip", "store": local_store.params}
    marker = random_secret(20)
    running = in_background(run_tasks, [task("backup", "db_backup", params)], env={"RBOPS_TEST_MARKER": marker})
    wait_for(lambda: list(scratch.iterdir()), "the temporary copy", running)
    run = terminate_module(marker, "db_backup", running)
    failed(run, "backup", "terminated (SIGTERM)")
    assert list(scratch.iterdir()) == [], "SIGTERM left the temporary copy of the database"
    assert local_store.keys(hidden=True) == []


def test_later_run_sweeps_stale_partial_files(tmp_path, local_store, run_tasks):
    """What a SIGKILL leaves (hidden partial files) is removed by the next backup into the same
    folder once older than the store's partial_max_age; younger ones may belong to a running backup."""
    source = str(tmp_path / "app.db")
    big_sqlite(source, megabytes=1)
    folder = os.path.join(local_store.root, "notes")
    os.makedirs(folder)
    stale = os.path.join(folder, ".sqlite-app-20260101T000000Z-abc.sqlite.zst.partial-0badf00d")
    young = os.path.join(folder, ".sqlite-app-20260101T000000Z-def.sqlite.zst.partial-0000beef")
    for path in (stale, young):
        with open(path, "wb") as handle:
            handle.write(os.urandom(1000))
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    params = {"service": "notes", "engine": "sqlite", "path": source, "store": local_store.params}
    ok(run_tasks([task("backup", "db_backup", params)]), "backup")
    assert not os.path.exists(stale), "a stale partial file survived the next backup"
    assert os.path.exists(young), "a young partial file (maybe a running backup's) was removed"


def test_later_run_aborts_stale_multipart_uploads(tmp_path, s3_store, run_tasks):
    source = str(tmp_path / "app.db")
    big_sqlite(source, megabytes=1)
    client = s3_store.client
    stale = client.create_multipart_upload(Bucket=s3_store.bucket,
                                           Key="backups/notes/sqlite-app-20260101T000000Z-abc.sqlite.zst")
    client.upload_part(Bucket=s3_store.bucket, Key=stale["Key"], UploadId=stale["UploadId"], PartNumber=1,
                       Body=os.urandom(1000))
    elsewhere = client.create_multipart_upload(Bucket=s3_store.bucket, Key="other/notes/not-ours.bin")
    time.sleep(2.5)
    store = dict(s3_store.params, partial_max_age=2)
    ok(run_tasks([task("backup", "db_backup", {"service": "notes", "engine": "sqlite", "path": source,
                                               "store": store})]), "backup")
    left = [(upload["Key"], upload["UploadId"]) for upload in s3_store.unfinished_uploads()]
    assert (stale["Key"], stale["UploadId"]) not in left, "a stale multipart upload survived the next backup"
    assert (elsewhere["Key"], elsewhere["UploadId"]) in left, "an upload outside the store's prefix was touched"
    client.abort_multipart_upload(Bucket=s3_store.bucket, Key=elsewhere["Key"], UploadId=elsewhere["UploadId"])


def test_frozen_s3_endpoint_aborts_within_the_timeouts(big_database, pg_conn_params, pg_connect, run_tasks):
    """A moto server stopped with SIGSTOP mid-upload: the backup fails within the store's timeouts,
    pg_dump is killed and the snapshot transaction ends."""
    admin = pg_connect("postgres")
    marker = random_secret(20)
    with moto_server() as endpoint:
        setup = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                             aws_secret_access_key="testing")
        setup.create_bucket(Bucket="frozen")
        store = {"type": "s3", "bucket": "frozen", "endpoint_url": endpoint, "access_key": "testing",
                 "secret_key": "testing", "connect_timeout": 2, "read_timeout": 3, "retries": 1}
        params = pg_params(pg_conn_params, big_database, service="big", store=store, compression="none")
        server = [pid for pid, argv in _moto_pids(endpoint).items()]
        assert server, "cannot find the private moto server's process"
        running = in_background(run_tasks, [task("backup", "db_backup", params)],
                                env={"RBOPS_TEST_MARKER": marker})
        wait_for(lambda: setup.list_multipart_uploads(Bucket="frozen").get("Uploads"), "a multipart upload", running)
        for pid in server:
            os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            run = running.result(timeout=300)
            took = time.monotonic() - frozen_at
        finally:
            for pid in server:
                os.kill(pid, signal.SIGCONT)
    failed(run, "backup", "cannot reach the S3 endpoint", endpoint)
    # read_timeout 3 s, one attempt: a part upload, the abort of the upload, some slack.
    assert took < 45, "the backup took %.0f s to give up on a frozen endpoint" % took
    wait_until_gone(lambda: children_of_run(marker))
    wait_until_gone(lambda: runbook_sessions(admin, big_database))


def _moto_pids(endpoint):
    port = endpoint.rsplit(":", 1)[1]
    out = subprocess.run(["pgrep", "-f", "moto_server -H 127.0.0.1 -p %s" % port], capture_output=True, text=True,
                         check=False).stdout
    return {int(pid): None for pid in out.split()}


@pytest.mark.parametrize("prefix", ["../up", "a//b", "/abs", "a/../b", "."])
def test_bad_s3_prefix_is_refused(prefix, s3_store, tmp_path, run_tasks):
    source = str(tmp_path / "app.db")
    big_sqlite(source, megabytes=1)
    store = dict(s3_store.params, prefix=prefix)
    run = run_tasks([task("backup", "db_backup", {"service": "notes", "engine": "sqlite", "path": source,
                                                  "store": store})])
    failed(run, "backup", "store.prefix")
    assert s3_store.client.list_objects_v2(Bucket=s3_store.bucket).get("KeyCount", 0) == 0


def test_messages_say_what_is_wrong(tmp_path, pg_conn_params, run_tasks):
    """A store path that does not exist, a SQLite path that is a directory: said as such."""
    missing_store = {"type": "local", "path": str(tmp_path / "no-such-store")}
    directory = tmp_path / "app.db"
    directory.mkdir()
    sqlite = {"service": "notes", "engine": "sqlite", "path": str(directory),
              "store": {"type": "local", "path": str(tmp_path / "store")}}
    run = run_tasks([
        task("info", "backup_info", {"service": "notes", "store": missing_store}),
        task("rpo", "backup_info", {"service": "notes", "store": missing_store, "max_age": "1h"}),
        task("backup", "db_backup", sqlite),
        task("plan", "db_backup", sqlite, check=True),
    ])
    failed(run, "info", "backup store directory", "does not exist")
    failed(run, "rpo", "RPO missed", "backup store directory", "does not exist")
    for name in ("backup", "plan"):
        failed(run, name, "is a directory")
    assert not os.path.exists(missing_store["path"])


def test_s3_bucket_fixture_deletes_its_bucket(s3_endpoint, request):
    """The s3_bucket fixture removes its bucket (and what is in it) after the test."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    names = []
    # Registered before the fixture is set up, so it runs after the fixture's teardown.
    request.addfinalizer(lambda: _assert_bucket_gone(client, names[0]))
    names.append(request.getfixturevalue("s3_bucket"))
    client.put_object(Bucket=names[0], Key="x/y", Body=b"data")
    client.create_multipart_upload(Bucket=names[0], Key="x/z")


def _assert_bucket_gone(client, name):
    names = [bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])]
    assert name not in names, "the s3_bucket fixture left bucket %s behind" % name


def test_pg_dump_killed_by_a_signal_is_reported_as_such(big_database, pg_conn_params, local_store, run_tasks):
    params = pg_params(pg_conn_params, big_database, service="big", store=local_store.params)
    marker = random_secret(20)
    running = in_background(run_tasks, [task("backup", "db_backup", params)], env={"RBOPS_TEST_MARKER": marker})

    def pg_dumps():
        return [int(pid) for pid, argv in children_of_run(marker).items()
                if argv.split(b"\0", 1)[0].endswith(b"pg_dump") and b"--version" not in argv]

    for pid in wait_for(pg_dumps, "pg_dump", running):
        os.kill(pid, signal.SIGKILL)
    msg = failed(running.result(timeout=300), "backup", "pg_dump of", "killed by signal 9")
    assert "exit -9" not in msg
    assert local_store.keys(hidden=True) == []
