# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sample service's process life: lock, readiness, subcommands, PostgreSQL mode, ctl.sh."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from cryptography.fernet import Fernet

from sample_service_fixture import CTL_PATH, SampleService, clean_environ, free_port, http_request, pg_database_url, process_alive


def hold_lock(path, kind):
    """Start a helper process that holds `path` with only flock or only lockf; returns the Popen."""
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.%s(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "os.pwrite(fd, b'%%d\\n' %% os.getpid(), 0)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n") % kind
    proc = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True)  # pylint: disable=consider-using-with
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_instance_is_refused(sample_service):
    first = sample_service()
    second = SampleService(os.path.join(first.base_dir, "second"), env={"DATA_DIR": first.data_dir, "PORT": str(free_port())})
    result = second.command("serve", timeout=30)
    assert result.returncode == 3
    assert "another instance holds %s (pid %d)" % (first.lock_path, first.pid) in result.stderr
    assert http_request(first.url + "/readyz").status == 200  # the first one is untouched
    with open(first.lock_path, encoding="ascii") as handle:
        assert handle.read().strip() == str(first.pid)


@pytest.mark.parametrize("kind", ["flock", "lockf"])
def test_each_lock_kind_alone_blocks_start(sample_service, kind):
    svc = sample_service(start=False)
    os.makedirs(svc.data_dir, mode=0o700)
    holder = hold_lock(svc.lock_path, kind)
    try:
        result = svc.command("serve", timeout=30)
        assert result.returncode == 3, result.stderr
        assert "another instance holds" in result.stderr and "(pid %d)" % holder.pid in result.stderr
    finally:
        holder.kill()
        holder.wait()
    svc.start()  # once the holder is gone the service starts
    assert http_request(svc.url + "/healthz").status == 200


def test_sigterm_is_graceful_and_releases_the_lock(sample_service):
    svc = sample_service()
    job = svc.api("POST", "/api/jobs", json={"kind": "long", "duration": 30}).json
    time.sleep(0.5)
    started = time.monotonic()
    assert svc.stop() == 0
    assert time.monotonic() - started < 10
    with sqlite3.connect(svc.db_path) as conn:
        status = conn.execute("SELECT status FROM jobs WHERE id = ?", (job["id"],)).fetchone()[0]
        events = [row[0] for row in conn.execute("SELECT event FROM audit_log ORDER BY id")]
    assert status == "failed"
    assert events[0].startswith("startup") and events[-1] == "shutdown"
    with open(os.path.join(svc.data_dir, "logs", "jobs", "%d.log" % job["id"]), encoding="utf-8") as handle:
        assert "interrupted by shutdown" in handle.read()
    svc.start()  # lock released: a new instance starts on the same DATA_DIR
    assert svc.api("GET", "/api/jobs").json["jobs"][0]["status"] == "failed"


def test_readiness_fails_on_corrupt_database(sample_service):
    svc = sample_service()
    svc.api("POST", "/api/items", json={"name": "x"})
    with open(svc.db_path, "r+b") as handle:
        handle.write(b"this is not a sqlite database at all" * 200)
    ready = http_request(svc.url + "/readyz")
    assert ready.status == 503
    assert ready.text.startswith("not ready: database:") and "not a database" in ready.text
    detail = http_request(svc.url + "/ready")
    assert detail.status == 503
    assert detail.json["status"] == "not_ready"
    assert detail.json["checks"]["database"].startswith("error: ")
    assert http_request(svc.url + "/healthz").status == 200  # alive, just not ready
    metrics = svc.get("/metrics", headers={"X-Api-Token": svc.token})
    assert metrics.status == 200 and "app_database_up 0" in metrics.text
    api = svc.api("GET", "/api/items")
    assert api.status == 503 and "database error" in api.json["error"]
    assert svc.command("check").returncode == 1


def test_readiness_fails_when_database_file_is_gone(sample_service):
    svc = sample_service()
    os.rename(svc.db_path, svc.db_path + ".moved")
    ready = http_request(svc.url + "/readyz")
    assert ready.status == 503 and "unable to open database file" in ready.text
    assert not os.path.exists(svc.db_path)  # readiness never creates an empty database
    os.rename(svc.db_path + ".moved", svc.db_path)
    assert http_request(svc.url + "/readyz").status == 200


def test_fail_ready_and_startup_delay_knobs(sample_service):
    svc = sample_service(env={"FAIL_READY": "true", "STARTUP_DELAY": "1.5"}, start=False)
    started = time.monotonic()
    svc.start()
    assert time.monotonic() - started >= 1.5
    ready = http_request(svc.url + "/readyz")
    assert ready.status == 503 and "FAIL_READY" in ready.text
    assert http_request(svc.url + "/ready").json["checks"]["database"] == "ok"


def test_configuration_errors(sample_service):
    svc = sample_service(env={"API_TOKEN": ""}, start=False)
    result = svc.command("serve")
    assert result.returncode == 2 and "API_TOKEN is required" in result.stderr
    svc.set_env(API_TOKEN="", AUTH_DISABLED="true")
    svc.start()
    assert svc.api("GET", "/api/items", token=None).status == 200
    svc.stop()
    svc.set_env(API_TOKEN="t", ENCRYPTION_KEY="not-a-fernet-key")
    result = svc.command("serve")
    assert result.returncode == 2 and "not a valid Fernet key" in result.stderr
    assert "not-a-fernet-key" not in result.stderr
    svc.set_env(ENCRYPTION_KEY=Fernet.generate_key().decode(), DATABASE_URL="mysql://u:pw-hidden@h/db")
    result = svc.command("serve")
    assert result.returncode == 2 and "mysql://u:***@h/db" in result.stderr and "pw-hidden" not in result.stderr


def test_seed_and_check(sample_service):
    svc = sample_service(start=False)
    result = svc.command("seed", "--items", "7")
    assert result.returncode == 0, result.stderr
    assert svc.command("check").returncode == 0
    svc.start()
    items = svc.api("GET", "/api/items").json
    assert items["count"] == 7
    assert svc.api("GET", "/api/items/7").json["secret"] == "seed-secret-7"
    refused = svc.command("seed", "--items", "1")  # single writer: not while the service runs
    assert refused.returncode == 3


def test_reencrypt(sample_service):
    svc = sample_service()
    for number in range(3):
        svc.api("POST", "/api/items", json={"name": "i%d" % number, "secret": "secret-%d" % number})
    svc.api("POST", "/api/items", json={"name": "plain"})
    old_key, new_key = svc.encryption_key, Fernet.generate_key().decode()

    # Refused while the service holds the lock.
    running = svc.command("reencrypt", "--old-key-env", "OLD_KEY", "--new-key-env", "NEW_KEY", env={"OLD_KEY": old_key, "NEW_KEY": new_key})
    assert running.returncode == 3
    svc.stop()

    missing = svc.command("reencrypt", "--old-key-env", "OLD_KEY", "--new-key-env", "NEW_KEY", env={"OLD_KEY": old_key})
    assert missing.returncode == 2 and "NEW_KEY" in missing.stderr

    # A wrong old key changes nothing (one transaction) and says which item failed.
    wrong = svc.command("reencrypt", "--old-key-env", "OLD_KEY", "--new-key-env", "NEW_KEY",
                        env={"OLD_KEY": Fernet.generate_key().decode(), "NEW_KEY": new_key})
    assert wrong.returncode == 1 and "cannot decrypt secret of item 1" in wrong.stderr
    with sqlite3.connect(svc.db_path) as conn:
        stored = [row[0] for row in conn.execute("SELECT secret_enc FROM items WHERE secret_enc IS NOT NULL ORDER BY id")]
    assert [Fernet(old_key.encode()).decrypt(s.encode()) for s in stored] == [b"secret-0", b"secret-1", b"secret-2"]

    done = svc.command("reencrypt", "--old-key-env", "OLD_KEY", "--new-key-env", "NEW_KEY", env={"OLD_KEY": old_key, "NEW_KEY": new_key})
    assert done.returncode == 0, done.stderr
    assert '"reencrypted": 3' in done.stdout
    for output in (done.stdout, done.stderr, wrong.stderr):
        assert old_key not in output and new_key not in output

    svc.start()  # still the old key: secrets no longer decrypt
    assert svc.api("GET", "/api/items/1").status == 500
    svc.set_env(ENCRYPTION_KEY=new_key)
    svc.restart()
    assert [svc.api("GET", "/api/items/%d" % i).json["secret"] for i in (1, 2, 3, 4)] == ["secret-0", "secret-1", "secret-2", None]


def test_postgresql_mode(sample_service, pg_conn_params, pg_database, pg_connect):
    url = pg_database_url(pg_conn_params, pg_database)
    svc = sample_service(database_url=url)
    assert svc.db_path is None
    assert http_request(svc.url + "/ready").json == {"status": "ready", "checks": {"database": "ok"}}
    item = svc.api("POST", "/api/items", json={"name": "pg-item", "secret": "pg-secret"})
    assert item.status == 201 and item.json["id"] == 1
    assert svc.api("GET", "/api/items/1").json["secret"] == "pg-secret"
    job = svc.api("POST", "/api/jobs", json={"kind": "pg"})
    assert job.status == 201
    assert os.path.exists(os.path.join(svc.data_dir, "logs", "jobs", "%d.log" % job.json["id"]))

    conn = pg_connect(pg_database)
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == ["audit_log", "items", "jobs", "schema_migrations"]
        cur.execute("SELECT secret_enc FROM items WHERE id = 1")
        assert Fernet(svc.encryption_key.encode()).decrypt(cur.fetchone()[0].encode()) == b"pg-secret"
    assert not os.path.exists(os.path.join(svc.data_dir, "app.db"))

    with conn.cursor() as cur:
        cur.execute("ALTER TABLE items RENAME TO items_gone")
    ready = http_request(svc.url + "/ready")
    assert ready.status == 503 and ready.json["checks"]["database"].startswith("error: ")
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE items_gone RENAME TO items")
    assert http_request(svc.url + "/readyz").status == 200

    svc.stop()
    assert pg_conn_params["login_password"] not in svc.log_text()
    assert "postgresql://%s:***@" % pg_conn_params["login_user"] in svc.log_text()


def test_postgresql_unreachable(sample_service, pg_conn_params):
    url = pg_database_url(dict(pg_conn_params, login_password="wrong-password-xyz"), "postgres")
    svc = sample_service(database_url=url, start=False)
    result = svc.command("check")
    assert result.returncode == 1 and "password authentication failed" in result.stderr
    assert "wrong-password-xyz" not in result.stderr
    result = svc.command("serve")
    assert result.returncode == 1 and "wrong-password-xyz" not in result.stderr


def run_ctl(action, svc, **env):
    return subprocess.run([CTL_PATH, action, svc.env_file], env=clean_environ(dict(env, PYTHON=sys.executable)),
                          capture_output=True, text=True, timeout=60, check=False)


def test_ctl_start_status_stop(sample_service):
    svc = sample_service(start=False)
    pidfile = os.path.join(svc.data_dir, "app.pid")
    assert run_ctl("status", svc).returncode == 3

    started = run_ctl("start", svc)
    assert started.returncode == 0, started.stderr
    with open(pidfile, encoding="ascii") as handle:
        pid = int(handle.read())
    assert "started (pid %d)" % pid in started.stdout
    assert http_request(svc.url + "/healthz").status == 200
    status = run_ctl("status", svc)
    assert status.returncode == 0 and "running (pid %d)" % pid in status.stdout
    again = run_ctl("start", svc)
    assert again.returncode == 0 and "already running" in again.stdout

    restarted = run_ctl("restart", svc)
    assert restarted.returncode == 0, restarted.stderr
    with open(pidfile, encoding="ascii") as handle:
        new_pid = int(handle.read())
    assert new_pid != pid
    assert not process_alive(pid)

    stopped = run_ctl("stop", svc)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not os.path.exists(pidfile)
    assert not process_alive(new_pid)
    with pytest.raises(OSError):
        http_request(svc.url + "/healthz", timeout=2)
    assert run_ctl("status", svc).returncode == 3
    assert run_ctl("stop", svc).returncode == 0
    with open(os.path.join(svc.data_dir, "logs", "app.log"), encoding="utf-8") as handle:
        assert handle.read().count("stopped") == 2


def test_ctl_start_failure_is_reported(sample_service):
    svc = sample_service(env={"API_TOKEN": ""}, start=False)
    result = run_ctl("start", svc)
    assert result.returncode == 1
    assert "exited during start-up" in result.stderr and "API_TOKEN is required" in result.stderr
    assert run_ctl("status", svc).returncode == 3

    blocker = sample_service()  # same port, other DATA_DIR: cannot listen
    svc.set_env(API_TOKEN="t", PORT=str(blocker.port))
    result = run_ctl("start", svc)
    assert result.returncode == 1 and "cannot listen" in result.stderr


def test_ctl_stop_kills_after_timeout(sample_service):
    svc = sample_service(start=False)
    assert run_ctl("start", svc).returncode == 0
    with open(os.path.join(svc.data_dir, "app.pid"), encoding="ascii") as handle:
        pid = int(handle.read())
    # An idle client connection keeps a request thread waiting, so the graceful shutdown cannot finish.
    with socket.create_connection(("127.0.0.1", svc.port)):
        time.sleep(0.3)
        started = time.monotonic()
        stopped = run_ctl("stop", svc, STOP_TIMEOUT="2")
    assert stopped.returncode == 0, stopped.stderr
    assert "ignored SIGTERM for 2s; sending SIGKILL" in stopped.stderr
    assert 2 <= time.monotonic() - started < 10
    assert not process_alive(pid)
    assert run_ctl("status", svc).returncode == 3
    svc.start()  # the kernel dropped the locks of the killed process
    assert http_request(svc.url + "/readyz").status == 200


def test_ctl_usage():
    result = subprocess.run([CTL_PATH, "start"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "usage" in result.stderr
