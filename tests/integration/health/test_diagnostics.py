# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""redis_probe, log_scan and check_report through ansible-playbook, against the test Redis server, the Docker
engine and real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import uuid

import pytest
import redis

from harness import run_module

from sample_service_fixture import free_port


def by_check(result):
    """Findings by check name; the first one when a name repeats."""
    checks = {}
    for finding in result["findings"]:
        checks.setdefault(finding["check"], finding)
    return checks


@pytest.fixture()
def rclient(redis_url):
    client = redis.Redis.from_url(redis_url)
    created = []
    yield client, created
    if created:
        client.delete(*created)


def key(created, name):
    value = "rbops-diag-%s-%s" % (name, uuid.uuid4().hex[:8])
    created.append(value)
    return value


def test_redis_queues_by_type_and_levels(tmp_path, rclient):
    client, created = rclient
    jobs, events, delayed, hashed, absent = (key(created, n) for n in ("jobs", "events", "delayed", "hash", "absent"))
    client.lpush(jobs, *range(150))
    for number in range(7):
        client.xadd(events, {"n": number})
    client.zadd(delayed, {"a": 1, "b": 2})
    client.hset(hashed, "field", "value")
    run = run_module(tmp_path, "runbook.ops.redis_probe", {
        "port": 6379, "fail_on": "never",
        "queues": [jobs, {"key": events, "warn": 5, "crit": 10}, {"key": delayed, "warn": 0, "crit": 1}, hashed, absent,
                   {"key": jobs, "type": "stream"}]})
    result = run.result
    assert not run.failed, result
    checks = by_check(result)
    assert checks["redis"]["state"] == "ok" and checks["redis"]["unit"] == "ms" and "PING answered" in checks["redis"]["detail"]
    assert checks["queue " + jobs]["state"] == "warning" and checks["queue " + jobs]["value"] == 150
    assert checks["queue " + jobs]["detail"] == "150 items (warning over 100, critical over 1000)"
    assert checks["queue " + events]["value"] == 7 and checks["queue " + events]["state"] == "warning"
    assert checks["queue " + delayed]["value"] == 2 and checks["queue " + delayed]["state"] == "critical"
    assert checks["queue " + hashed]["state"] == "critical" and "is a hash" in checks["queue " + hashed]["detail"]
    assert checks["queue " + absent]["value"] == 0 and checks["queue " + absent]["state"] == "ok"
    typed = [f for f in result["findings"] if f["check"] == "queue " + jobs][-1]
    assert typed["state"] == "critical" and "not stream" in typed["detail"]
    assert set(result["info"]) >= {"memory", "clients", "persistence", "replication", "keyspace"}
    assert {"metric": "queue " + events, "warning": 5, "critical": 10, "unit": "items"} in result["thresholds"]
    assert result["state"] == "critical"


def test_redis_db_that_does_not_exist_is_critical(tmp_path, rclient):
    client, created = rclient
    databases = int(client.config_get("databases")["databases"])
    jobs = key(created, "jobs")
    client.lpush(jobs, 1, 2, 3)
    run = run_module(tmp_path, "runbook.ops.redis_probe", {"db": databases, "queues": [jobs], "fail_on": "never"})
    checks = by_check(run.result)
    assert run.result["state"] == "critical"
    assert "database %d does not exist" % databases in checks["redis"]["detail"], checks["redis"]
    assert checks["queue " + jobs]["state"] == "critical" and checks["queue " + jobs]["value"] is None
    failed = run_module(tmp_path, "runbook.ops.redis_probe", {"db": databases, "queues": [jobs]})
    assert failed.failed and "does not exist" in failed.result["msg"]


def test_redis_down_has_a_real_detail(tmp_path):
    port = free_port()
    params = {"port": port, "queues": ["jobs"], "timeout": 2, "fail_on": "never"}
    run = run_module(tmp_path, "runbook.ops.redis_probe", params)
    checks = by_check(run.result)
    assert checks["redis"]["state"] == "critical"
    assert "127.0.0.1:%d is unreachable" % port in checks["redis"]["detail"] and "refused" in checks["redis"]["detail"]
    assert checks["queue jobs"]["detail"].startswith("not read: Redis at 127.0.0.1:%d is unreachable" % port)


def test_redis_acl_user_and_password_never_shown(tmp_path, rclient):
    client, created = rclient
    user, password = "rbops-diag-" + uuid.uuid4().hex[:8], "pw-" + uuid.uuid4().hex
    jobs = key(created, "jobs")
    client.lpush(jobs, 1)
    client.execute_command("ACL", "SETUSER", user, "on", ">" + password, "~rbops-diag-*", "+@read", "+ping", "+info",
                           "+type", "+llen")
    try:
        params = {"username": user, "password": password, "queues": [jobs], "info_sections": ["memory"]}
        run = run_module(tmp_path, "runbook.ops.redis_probe", params, verbosity=3)
        assert not run.failed, run.result
        assert by_check(run.result)["queue " + jobs]["value"] == 1
        assert password not in run.output
        wrong = "wrong-" + uuid.uuid4().hex
        params = {"username": user, "password": wrong, "queues": [jobs], "fail_on": "never"}
        run = run_module(tmp_path, "runbook.ops.redis_probe", params, verbosity=3)
        assert "authentication failed" in by_check(run.result)["redis"]["detail"]
        assert wrong not in run.output
    finally:
        client.execute_command("ACL", "DELUSER", user)


def test_log_scan_files_and_missing_paths(tmp_path):
    jobs = tmp_path / "data" / "logs" / "jobs"
    jobs.mkdir(parents=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (jobs / "a.log").write_bytes(b"\0" * 1000 + b"%s ERROR after a crash\n" % now.encode() + b"bad \xff\xfe error\n")
    run = run_module(tmp_path, "runbook.ops.log_scan", {
        "paths": [str(jobs / "*.log"), str(tmp_path / "missing-dir")], "fail_on": "never"})
    checks = by_check(run.result)
    assert checks["log files"]["value"] == 2 and checks["log files"]["state"] == "warning", checks
    assert checks["log path %s" % (tmp_path / "missing-dir")]["state"] == "critical"
    assert run.result["state"] == "critical"
    failed = run_module(tmp_path, "runbook.ops.log_scan", {"paths": [str(tmp_path / "missing-dir")]})
    assert failed.failed and "does not exist" in failed.result["msg"]


def test_log_scan_container_logs_after_nul_bytes(tmp_path, busybox_image):
    name = "rbops-diag-logs-" + uuid.uuid4().hex[:8]
    script = r"printf 'starting\n\000\000\000\000ERROR after nul bytes\n'; printf 'bad \377\376 error utf8\n'; sleep 60"
    subprocess.run(["docker", "run", "-d", "--network", "host", "--name", name, busybox_image, "sh", "-c", script],
                   check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 20
        while b"utf8" not in subprocess.run(["docker", "logs", name], capture_output=True, check=False).stdout:
            assert time.monotonic() < deadline, "the container wrote no logs"
            time.sleep(0.2)
        params = {"containers": [name, name + "-ghost"], "since": "1h", "fail_on": "never"}
        run = run_module(tmp_path, "runbook.ops.log_scan", params)
        checks = by_check(run.result)
        logs = checks["container %s logs" % name]
        assert logs["value"] == 2 and logs["state"] == "warning", logs
        assert any("after nul bytes" in line for line in logs["samples"])
        ghost = checks["container %s-ghost logs" % name]
        assert ghost["state"] == "critical" and "does not exist" in ghost["detail"]
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def test_check_report_writes_private_files_and_check_mode_writes_none(tmp_path):
    findings = [[{"check": "queue jobs", "state": "warning", "value": 150, "unit": "items", "detail": "150 items"}],
                [{"check": "disk /", "state": "ok", "value": 40.5, "unit": "%", "detail": "fine"}]]
    params = {"findings": findings, "title": "Daily check", "host": "app1", "report_dir": str(tmp_path / "reports"),
              "report_name": "daily-app1",
              "thresholds": [{"metric": "queue jobs", "warning": 100, "critical": 1000, "unit": "items"}]}
    check = run_module(tmp_path, "runbook.ops.check_report", params, check=True)
    assert not check.failed and check.result["report_files"] is None
    assert "would write" in check.result["msg"] and not (tmp_path / "reports").exists()
    run = run_module(tmp_path, "runbook.ops.check_report", params)
    result = run.result
    assert result["state"] == "warning" and result["counts"] == {"total": 2, "ok": 1, "warning": 1, "critical": 0}
    assert result["changed"] and result["report_files"]["markdown"] in result["msg"]
    assert stat.S_IMODE(os.stat(tmp_path / "reports").st_mode) == 0o700
    for path in result["report_files"].values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "| WARNING | queue jobs | 150 items | 150 items |" in open(result["report_files"]["markdown"], encoding="utf-8").read()
    assert json.load(open(result["report_files"]["json"], encoding="utf-8"))["counts"]["warning"] == 1
    bad = run_module(tmp_path, "runbook.ops.check_report", {"findings": [[{"check": "x", "state": "unknown"}]]})
    assert bad.failed and "state must be one of" in bad.result["msg"]
