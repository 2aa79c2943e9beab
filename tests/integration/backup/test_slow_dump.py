# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What happens while pg_dump runs: a dump killed half-way leaves no backup behind; the password
is never on a command line or in an environment; two backups at once do not collide."""

from __future__ import annotations

import os
import time

from backup_testlib import (BIG_ROWS, SECRET_VARS, failed, in_background, ok, pg_params, random_secret,
                            scratch_databases, secret_var, task)
from harness import run_playbook

COPY_BACKEND_SQL = ("SELECT pid FROM pg_stat_activity WHERE application_name = 'runbook.ops' AND datname = %s "
                    "AND query LIKE 'COPY%%'")


def wait_for(condition, what, running, timeout=60):
    """Poll ``condition`` until it returns something true; fail if ``running`` finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert not running.done(), "the backup finished before %s: %s" % (what, running.result().output[-2000:])
        time.sleep(0.02)
    raise AssertionError("timed out waiting for %s" % what)


def copy_backends(conn, database):
    with conn.cursor() as cur:
        cur.execute(COPY_BACKEND_SQL, (database,))
        return [row[0] for row in cur.fetchall()]


def test_dump_terminated_half_way_leaves_no_backup(store, big_database, pg_conn_params, pg_connect, run_tasks):
    params = pg_params(pg_conn_params, big_database, service="big", store=store.params)
    admin = pg_connect("postgres")
    running = in_background(run_tasks, [task("backup", "db_backup", params)])
    backends = wait_for(lambda: copy_backends(admin, big_database), "pg_dump's COPY", running)
    if store.kind == "s3":
        # Let the upload get going, so that there is a multipart upload to abort.
        wait_for(store.unfinished_uploads, "a multipart upload", running)
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s) AS pid", (backends,))
    run = running.result(timeout=300)
    failed(run, "backup", "pg_dump", "failed")
    assert store.keys() == [], "a dump that died half-way left objects: %s" % store.keys()
    assert store.unfinished_uploads() == [], "partial files or unfinished multipart uploads were left"

    info = run_tasks([task("info", "backup_info", {"service": "big", "store": store.params})])
    assert ok(info, "info")["latest"] is None and ok(info, "info")["backups"] == []


def our_processes(marker):
    """{pid: (argv bytes, environ bytes)} of the processes that inherited ``marker`` in their environment
    (other tests on this machine may run pg_dump with the same server and password)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/environ" % pid, "rb") as handle:
                environ = handle.read()
            if marker in environ:
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    found[pid] = (handle.read(), environ)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def test_password_never_on_a_command_line_or_in_an_environment(big_database, pg_conn_params, local_store, run_tasks):
    password = pg_conn_params["login_password"]
    assert len(password) >= 16, "the test server's password is too short for this test to mean anything"
    params = pg_params(pg_conn_params, big_database, service="big", store=local_store.params, compression="none")
    needle = password.encode()
    marker = random_secret(20)
    running = in_background(run_tasks, [task("backup", "db_backup", params)], verbosity=3,
                            env={"RBOPS_TEST_MARKER": marker})
    seen, pg_dumps = set(), {}
    while not running.done():
        for pid, (cmdline, environ) in our_processes(b"RBOPS_TEST_MARKER=" + marker.encode()).items():
            seen.add(cmdline.split(b"\0", 1)[0])
            assert needle not in cmdline, "the password is in the arguments of pid %s: %r" % (pid, cmdline[:300])
            assert needle not in environ, "the password is in the environment of %r" % cmdline[:300]
            if cmdline.split(b"\0", 1)[0].endswith(b"pg_dump") and b"--version" not in cmdline:
                pg_dumps[pid] = dict(item.split(b"=", 1) for item in environ.split(b"\0") if b"=" in item)
        time.sleep(0.01)
    run = running.result()
    result = ok(run, "backup")
    assert pg_dumps, "never saw pg_dump running (saw %s): the test proves nothing" % sorted(seen)
    assert result["backup"]["row_counts"] == {"public.big": BIG_ROWS}
    assert password not in run.output and password not in str(result)
    assert "login_password" in run.output, "-vvv output should show the (censored) module arguments"
    for environ in pg_dumps.values():
        passfile = environ.get(b"PGPASSFILE")
        assert passfile and not os.path.exists(passfile), "the temporary password file was not removed"
        assert b"PGPASSWORD" not in environ


def test_secrets_never_in_verbose_output(pg_sample, pg_conn_params, pg_target, s3_store, run_tasks):
    database, _conn, expected = pg_sample
    password, s3_secret = pg_conn_params["login_password"], s3_store.secret_key
    common = pg_params(pg_conn_params, database, service="shop", store=s3_store.params)
    wrong = random_secret(28)
    run = run_tasks([
        task("backup", "db_backup", common),
        task("info", "backup_info", {"service": "shop", "store": s3_store.params}),
        task("verify", "backup_verify", common),
        task("restore", "db_restore", dict(common, database=pg_target(), source_database=database,
                                           create_database=True)),
        task("wrong password", "db_backup", dict(common, login_password=secret_var(wrong))),
    ], verbosity=3)
    assert ok(run, "backup")["backup"]["row_counts"] == expected
    assert ok(run, "verify")["report"]["passed"]
    assert ok(run, "restore")["row_counts"] == expected
    failed(run, "wrong password", "cannot connect", "password authentication failed")
    for secret in (password, s3_secret, wrong):
        assert secret not in run.output, "a secret appeared in -vvv output"
        assert secret not in str(run.records), "a secret appeared in a task result"
    assert s3_store.params["endpoint_url"] in run.output, "-vvv output should show the module arguments"


def test_two_backups_at_once_into_one_store(store, pg_sample, pg_conn_params, pg_connect, tmp_path, run_tasks):
    database, _conn, expected = pg_sample
    params = pg_params(pg_conn_params, database, service="shop", store=store.params)
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [task("backup", "db_backup", params)]}]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    runs = [in_background(run_playbook, tmp_path / name, play, extra_vars=dict(SECRET_VARS)) for name in ("a", "b")]
    backups = [ok(future.result(timeout=300), "backup")["backup"] for future in runs]
    ids = {backup["id"] for backup in backups}
    assert len(ids) == 2, "two concurrent backups got the same id"
    assert sorted(store.keys()) == sorted(k for b in backups for k in (b["object"], b["object"] + ".manifest.json"))
    run = run_tasks([task("verify " + backup_id, "backup_verify", dict(params, backup_id=backup_id))
                     for backup_id in sorted(ids)])
    for backup_id in ids:
        report = ok(run, "verify " + backup_id)["report"]
        assert report["passed"] and {t["table"]: t["actual"] for t in report["tables"]} == expected
    assert scratch_databases(pg_connect("postgres"), database) == []
