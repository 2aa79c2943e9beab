# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/daily_check.yml (HP6, the morning checklist) through ansible-playbook, against the sample
service, the test PostgreSQL and Redis servers, and a local backup store."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid

import pytest
import redis
import yaml

from harness import REPO, ansible_env, run_module, run_playbook

from health_testlib import DAILY_PLAYBOOK, HEALTH_PLAYBOOK, age_backup, fact, health_vars, stats_of, write_inventory
from sample_service_fixture import free_port

RESULT_TASK = "Work out the overall state of the daily check"
STATS_TASK = "Publish the daily check summary for AWX"
FAIL_TASK = "Fail on a critical finding"


@pytest.fixture()
def queues(redis_url):
    """queues(name=count, ...) -> {name: key}: fresh Redis lists with that many items, deleted after."""
    client = redis.Redis.from_url(redis_url)
    created = []

    def make(**counts):
        keys = {}
        for name, count in counts.items():
            key = "rbops-test-%s-%s" % (name, uuid.uuid4().hex[:8])
            if count:
                client.lpush(key, *range(count))
            created.append(key)
            keys[name] = key
        return keys

    yield make
    if created:
        client.delete(*created)


def backup_store(tmp_path, svc, hours_old):
    """A local store holding one real backup of the service's SQLite database, ``hours_old`` hours old."""
    store = str(tmp_path / "store")
    params = {"service": "app", "engine": "sqlite", "path": svc.db_path, "store": {"type": "local", "path": store}}
    run = run_module(tmp_path, "runbook.ops.db_backup", params)
    assert not run.failed, run.output
    age_backup(store, "app", hours_old)
    return {"type": "local", "path": store}


def daily_vars(svc, report_dir, **overrides):
    values = health_vars(svc)
    values.update({
        "daily_check_log_dirs": [svc.base_dir],
        "daily_check_report_dir": str(report_dir),
        "daily_check_backup_service": "app",
        "daily_check_cpu_warn_percent": 100,  # other test processes may keep the CPUs busy
        "daily_check_cpu_crit_percent": 100,
    })
    values.update(overrides)
    return values


def run_daily(tmp_path, host_vars, **kwargs):
    return run_playbook(tmp_path, DAILY_PLAYBOOK, inventory=write_inventory(tmp_path, host_vars),
                        env={"ANSIBLE_SHOW_CUSTOM_STATS": "true"}, **kwargs)


def by_check(result):
    return {finding["check"]: finding for finding in result["findings"]}


def test_warnings_are_reported_without_failing(tmp_path, sample_service, queues, pg_conn_params):
    svc = sample_service()
    keys = queues(small=5, busy=150)
    with open(svc.log_file, "a", encoding="utf-8") as handle:
        stale = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.write("%s ERROR app: stale failure outside the window\n" % stale)
        handle.write("%s ERROR app: job failed error=disk quota\n" % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    report_dir = tmp_path / "reports"
    host_vars = daily_vars(
        svc, report_dir,
        daily_check_redis_queues=[keys["small"], keys["busy"]],
        daily_check_backup_store=backup_store(tmp_path, svc, hours_old=2),
        daily_check_postgres_enabled=True,
        daily_check_login_host=pg_conn_params["login_host"],
        daily_check_login_port=pg_conn_params["login_port"],
        daily_check_login_user=pg_conn_params["login_user"],
        daily_check_login_password=pg_conn_params["login_password"],
    )
    run = run_daily(tmp_path, host_vars, verbosity=3)
    assert run.rc == 0, run.output[-5000:]
    result = fact(run, RESULT_TASK, "daily_check_result")
    checks = by_check(result)
    assert result["state"] == "warning", result["problems"]

    assert checks["liveness"]["state"] == "ok" and checks["liveness"]["section"] == "service"
    assert checks["readiness"]["section"] == "database" and checks["readiness"]["state"] == "ok"
    assert checks["log files"]["state"] == "warning" and checks["log files"]["value"] == 1, checks["log files"]
    assert any("disk quota" in line for line in checks["log files"]["samples"])
    assert checks["queue " + keys["small"]]["state"] == "ok" and checks["queue " + keys["small"]]["value"] == 5
    busy = checks["queue " + keys["busy"]]
    assert busy["state"] == "warning" and busy["value"] == 150, busy
    assert checks["postgresql"]["state"] == "ok" and "accepts connections" in checks["postgresql"]["detail"]
    # pg_activity: client backends only, against the slots ordinary roles can use.
    connections = checks["postgresql connections"]
    assert connections["state"] == "ok" and connections["unit"] == "%" and "client connections of" in connections["detail"]
    assert checks["postgresql idle in transaction"]["section"] == "database"
    backup = checks["last backup"]
    assert backup["state"] == "warning" and 7000 < backup["value"] < 7500, backup
    assert checks["disk /"]["section"] == "disk"
    assert checks["memory"]["state"] in ("ok", "warning", "critical") and 0 < checks["memory"]["value"] < 100

    # Reports: private files in a private directory, with the findings.
    markdown, json_path = result["report_files"]["markdown"], result["report_files"]["json"]
    assert stat.S_IMODE(os.stat(report_dir).st_mode) == 0o700
    for path in (markdown, json_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    text = open(markdown, encoding="utf-8").read()
    assert "**WARNING**" in text and "## 3. Queue length" in text and keys["busy"] in text
    assert "150 items (warning over 100, critical over 1000)" in text
    assert "job failed error=disk quota" in text and "stale failure" not in text
    report = json.load(open(json_path, encoding="utf-8"))
    assert report["state"] == "warning" and len(report["findings"]) == len(result["findings"])
    thresholds = {row["metric"]: row for row in report["thresholds"]}
    assert thresholds["queue length (default)"] == {"metric": "queue length (default)", "warning": 100, "critical": 1000,
                                                    "unit": "items"}
    # The thresholds table names the PostgreSQL connection and per-queue levels; the Value column has units.
    assert thresholds["queue " + keys["busy"]]["warning"] == 100
    assert "| postgresql connections (of max_connections) | 80% | 95% |" in text
    # ... and pg_activity's long-query and idle-in-transaction levels beside them.
    assert thresholds["postgresql long-running query"] == {"metric": "postgresql long-running query", "warning": 300,
                                                           "critical": 1800, "unit": "s"}
    assert thresholds["postgresql idle in transaction"] == {"metric": "postgresql idle in transaction", "warning": 60,
                                                            "critical": 600, "unit": "s"}
    assert "| postgresql long-running query | 5m0s | 30m0s |" in text
    assert "| postgresql idle in transaction | 1m0s | 10m0s |" in text
    assert "| queue %s | 100 items | 1000 items |" % keys["busy"] in text
    assert "| WARNING | queue %s | 150 items |" % keys["busy"] in text
    assert "| WARNING | last backup | 2h0m |" in text or "| WARNING | last backup | 1h59m |" in text
    assert "redis-cli" not in open(os.path.join(REPO, "roles", "daily_check", "tasks", "queue.yml"), encoding="utf-8").read()

    stats = stats_of(run, STATS_TASK)["runbook_daily_check"]["localhost"]
    assert stats["state"] == "warning" and stats["report"]["markdown"] == markdown
    assert "runbook_daily_check" in run.output.split("CUSTOM STATS")[-1]
    assert run.task(FAIL_TASK)["status"] == "skipped"
    # Secrets never reach the -vvv output.
    assert svc.token not in run.output
    assert pg_conn_params["login_password"] not in run.output
    assert not [name for name in os.listdir("/tmp") if name.startswith("rbops-daily-pgpass-")]


def test_critical_findings_fail_after_the_report(tmp_path, sample_service, queues):
    svc = sample_service()
    keys = queues(flood=1500)
    report_dir = tmp_path / "reports"
    run = run_daily(tmp_path, daily_vars(svc, report_dir, daily_check_redis_queues=[keys["flood"]],
                                         daily_check_backup_store=backup_store(tmp_path, svc, hours_old=30),
                                         daily_check_disk_paths=["/"], daily_check_disk_warn_percent=0.01,
                                         daily_check_disk_crit_percent=0.02))
    assert run.rc != 0
    result = fact(run, RESULT_TASK, "daily_check_result")
    checks = by_check(result)
    assert result["state"] == "critical"
    assert checks["queue " + keys["flood"]]["state"] == "critical"
    assert checks["last backup"]["state"] == "critical" and "is 1d6h" in checks["last backup"]["detail"]
    assert checks["disk /"]["state"] == "critical" and checks["disk /"]["unit"] == "%"
    assert checks["disk /"]["detail"].count("free") == 1, checks["disk /"]  # said once, not repeated in other units
    failure = run.task(FAIL_TASK)
    assert failure["status"] == "failed"
    message = failure["result"]["msg"]
    assert keys["flood"] in message and "last backup critical" in message and result["report_files"]["markdown"] in message
    # The report was written before the play failed, and the stats were published.
    assert "**CRITICAL**" in open(result["report_files"]["markdown"], encoding="utf-8").read()
    assert stats_of(run, STATS_TASK)["runbook_daily_check"]["localhost"]["state"] == "critical"


def test_check_mode_reports_without_writing_and_fail_on_critical_off(tmp_path, sample_service, queues):
    svc = sample_service(env={"FAIL_READY": "1"})
    keys = queues(empty=0)
    report_dir = tmp_path / "reports"
    empty_store = tmp_path / "empty-store"
    empty_store.mkdir()
    run = run_daily(tmp_path, daily_vars(svc, report_dir, daily_check_redis_queues=[keys["empty"]],
                                         daily_check_backup_store={"type": "local", "path": str(empty_store)},
                                         daily_check_fail_on_critical=False), check=True)
    assert run.rc == 0, run.output[-5000:]
    result = fact(run, RESULT_TASK, "daily_check_result")
    checks = by_check(result)
    assert result["state"] == "critical" and result["check_mode"] is True
    assert checks["readiness"]["state"] == "critical" and "503" in checks["readiness"]["detail"]
    assert checks["last backup"]["state"] == "critical" and "no complete" in checks["last backup"]["detail"]
    assert checks["queue " + keys["empty"]]["value"] == 0
    assert not report_dir.exists()
    assert result["report_files"] is None and "would write the report to " + str(report_dir) in result["msg"]
    assert stats_of(run, STATS_TASK)["runbook_daily_check"]["localhost"]["state"] == "critical"
    assert stats_of(run, STATS_TASK)["runbook_daily_check"]["localhost"]["report"] is None
    assert run.task(FAIL_TASK)["status"] == "skipped"


@pytest.fixture()
def redis_with_password(tmp_path):
    """A private redis-server on a free loopback port with requirepass -> (port, password)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run `make services`")
    port, password = free_port(), "redis-pw-" + uuid.uuid4().hex
    conf = tmp_path / "redis.conf"
    conf.write_text("bind 127.0.0.1\nport %d\nsave \"\"\nappendonly no\nrequirepass %s\n" % (port, password))
    conf.chmod(0o600)
    proc = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, password=password)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    client.lpush('jobs "quoted" \\ key', *range(7))
    yield port, password
    proc.terminate()
    proc.wait(10)


def test_redis_password_is_never_shown(tmp_path, redis_with_password):
    port, password = redis_with_password
    minimal = {"health_check_liveness_path": "", "health_check_readiness_path": "", "health_check_metrics_path": "",
               "daily_check_disk_paths": [], "daily_check_resources_enabled": False,
               "daily_check_report_dir": str(tmp_path / "reports"),
               "daily_check_redis_port": port,
               "daily_check_redis_queues": [{"key": 'jobs "quoted" \\ key', "warn": 5, "crit": 50}]}
    run = run_daily(tmp_path, dict(minimal, daily_check_redis_password=password), verbosity=3)
    assert run.rc == 0, run.output[-5000:]
    finding = by_check(fact(run, RESULT_TASK, "daily_check_result"))['queue jobs "quoted" \\ key']
    assert finding["state"] == "warning" and finding["value"] == 7, finding
    assert password not in run.output

    wrong = "wrong-" + uuid.uuid4().hex
    run = run_daily(tmp_path, dict(minimal, daily_check_redis_password=wrong), verbosity=3)
    assert run.rc != 0
    finding = by_check(fact(run, RESULT_TASK, "daily_check_result"))["redis"]
    assert finding["state"] == "critical" and "authentication failed" in finding["detail"], finding
    assert wrong not in run.output


MINIMAL = {"health_check_liveness_path": "", "health_check_readiness_path": "", "health_check_metrics_path": "",
           "daily_check_disk_paths": [], "daily_check_resources_enabled": False}


def minimal_vars(tmp_path, **overrides):
    values = dict(MINIMAL, daily_check_report_dir=str(tmp_path / "reports"))
    values.update(overrides)
    return values


def written_report(result):
    """The Markdown and JSON reports of a run, checked to be there and private."""
    files = result["report_files"]
    assert files, result["msg"]
    for path in files.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    return open(files["markdown"], encoding="utf-8").read(), json.load(open(files["json"], encoding="utf-8"))


def test_missing_log_directory_is_critical_not_ok(tmp_path):
    missing = str(tmp_path / "no-such-logs")
    run = run_daily(tmp_path, minimal_vars(tmp_path, daily_check_log_dirs=[missing]))
    assert run.rc != 0
    result = fact(run, RESULT_TASK, "daily_check_result")
    finding = by_check(result)["log path " + missing]
    assert finding["state"] == "critical" and "does not exist" in finding["detail"], finding
    assert result["state"] == "critical"
    run = run_daily(tmp_path, minimal_vars(tmp_path, daily_check_log_dirs=[missing], daily_check_log_missing_state="warning"))
    assert run.rc == 0 and fact(run, RESULT_TASK, "daily_check_result")["state"] == "warning"


def test_http_url_in_the_tls_list_is_critical(tmp_path, sample_service):
    svc = sample_service()
    run = run_daily(tmp_path, minimal_vars(tmp_path, daily_check_tls_urls=[svc.url + "/healthz"],
                                           daily_check_fail_on_critical=False))
    assert run.rc == 0, run.output[-3000:]
    result = fact(run, RESULT_TASK, "daily_check_result")
    finding = by_check(result)["certificate " + svc.url + "/healthz"]
    assert finding["state"] == "critical" and "not HTTPS: no certificate to check" in finding["detail"], finding
    assert result["state"] == "critical"


def test_redis_database_that_does_not_exist_and_redis_down(tmp_path, queues, redis_url):
    keys = queues(jobs=3)
    databases = int(redis.Redis.from_url(redis_url).config_get("databases")["databases"])
    run = run_daily(tmp_path, minimal_vars(tmp_path, daily_check_redis_db=databases,
                                           daily_check_redis_queues=[keys["jobs"]], daily_check_fail_on_critical=False))
    assert run.rc == 0, run.output[-3000:]
    checks = by_check(fact(run, RESULT_TASK, "daily_check_result"))
    assert checks["redis"]["state"] == "critical" and "database %d does not exist" % databases in checks["redis"]["detail"]
    assert checks["queue " + keys["jobs"]]["state"] == "critical" and checks["queue " + keys["jobs"]]["value"] is None

    port = free_port()
    run = run_daily(tmp_path, minimal_vars(tmp_path, daily_check_redis_port=port, daily_check_redis_timeout=2,
                                           daily_check_redis_queues=[keys["jobs"]], daily_check_fail_on_critical=False))
    checks = by_check(fact(run, RESULT_TASK, "daily_check_result"))
    detail = checks["queue " + keys["jobs"]]["detail"]
    assert checks["queue " + keys["jobs"]]["state"] == "critical"
    assert "127.0.0.1:%d is unreachable" % port in detail and "refused" in detail, detail


def test_hostile_log_lines_are_counted_and_the_report_is_written(tmp_path):
    logs = tmp_path / "data" / "logs" / "jobs"
    logs.mkdir(parents=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (logs / "crash.log").write_bytes(b"%s INFO job started\n" % now.encode() + b"\0" * 8192
                                     + b"%s ERROR job crashed after NUL bytes\n" % now.encode())
    (logs / "utf8.log").write_bytes(b"%s ERROR Refusing to deserialize \xff\xfe\xc3( an invalid UTF8 string\n" % now.encode())
    (logs / "huge.log").write_bytes(b"%s ERROR start of a huge line " % now.encode() + b"x" * (8 * 1024 * 1024) + b"\n")
    run = run_daily(tmp_path, minimal_vars(tmp_path, daily_check_log_dirs=[str(logs / "*.log")],
                                           daily_check_log_max_line_bytes=4096))
    assert run.rc == 0, run.output[-3000:]
    result = fact(run, RESULT_TASK, "daily_check_result")
    logs_finding = by_check(result)["log files"]
    assert logs_finding["value"] == 3 and logs_finding["state"] == "warning", logs_finding
    assert any("crashed after NUL bytes" in line for line in logs_finding["samples"])
    text, report = written_report(result)
    assert "crashed after NUL bytes" in text and "\ufffd" in text and len(text) < 100000
    assert report["state"] == "warning"
    assert stats_of(run, STATS_TASK)["runbook_daily_check"]["localhost"]["state"] == "warning"


def test_a_failing_check_becomes_a_finding_and_the_report_is_still_written(tmp_path):
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    run = run_daily(tmp_path, minimal_vars(tmp_path, daily_check_log_dirs=[str(tmp_path)],
                                           daily_check_log_error_regex="error(",  # log_scan refuses it
                                           daily_check_disk_paths=[str(dangling)]))
    assert run.rc != 0
    result = fact(run, RESULT_TASK, "daily_check_result")
    checks = by_check(result)
    assert checks["log files"]["state"] == "critical"
    assert "could not run" in checks["log files"]["detail"] and "not a valid regular expression" in checks["log files"]["detail"]
    disk = [f for f in result["findings"] if f["section"] == "disk"]
    assert disk and all(f["state"] != "ok" for f in disk), disk
    text, report = written_report(result)
    assert "**CRITICAL**" in text and report["state"] == "critical"
    assert stats_of(run, STATS_TASK)["runbook_daily_check"]["localhost"]["report"] == result["report_files"]
    assert run.task(FAIL_TASK)["status"] == "failed"


@pytest.mark.parametrize("playbook", [DAILY_PLAYBOOK, HEALTH_PLAYBOOK])
def test_playbooks_honour_target_hosts(tmp_path, playbook):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {
        "staging": {"hosts": {"app-staging.example.internal": {}}},
        "production": {"hosts": {"app-prod.example.internal": {}}}}}}))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook, "-i", str(inventory),
                           "-e", "target_hosts=production", "--list-hosts"],
                          cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "app-prod.example.internal" in proc.stdout and "app-staging" not in proc.stdout, proc.stdout


def test_postgresql_down_is_a_critical_finding_in_the_written_report(tmp_path):
    port = free_port()
    run = run_daily(tmp_path, minimal_vars(tmp_path, daily_check_postgres_enabled=True, daily_check_login_port=port))
    assert run.rc != 0
    result = fact(run, RESULT_TASK, "daily_check_result")
    finding = by_check(result)["postgresql"]
    assert finding["state"] == "critical" and str(port) in finding["detail"], finding
    text, _report = written_report(result)
    assert "| CRITICAL | postgresql |" in text


def test_memory_and_cpu_over_zero_percent_are_critical(tmp_path):
    host_vars = minimal_vars(tmp_path, daily_check_resources_enabled=True,
                             daily_check_memory_warn_percent=0, daily_check_memory_crit_percent=0,
                             daily_check_cpu_warn_percent=0, daily_check_cpu_crit_percent=0)
    run = run_daily(tmp_path, host_vars)
    assert run.rc != 0 and run.task(FAIL_TASK)["status"] == "failed", run.output[-3000:]
    result = fact(run, RESULT_TASK, "daily_check_result")
    checks = by_check(result)
    for name in ("memory", "cpu"):
        item = checks[name]
        assert item["state"] == "critical" and item["section"] == "resources" and item["unit"] == "%", item
        assert "critical over 0%" in item["detail"], item
    assert 0 < checks["memory"]["value"] < 100 and 0 <= checks["cpu"]["value"] <= 100
    markdown, _report = written_report(result)
    assert "| CRITICAL | memory |" in markdown and "| CRITICAL | cpu |" in markdown


def test_cpu_sample_interval_out_of_range_is_refused(tmp_path):
    run = run_daily(tmp_path, minimal_vars(tmp_path, daily_check_resources_enabled=True,
                                           daily_check_cpu_sample_seconds=61))
    assert run.rc != 0
    finding = by_check(fact(run, RESULT_TASK, "daily_check_result"))["memory and cpu"]
    assert finding["state"] == "critical" and "sample_seconds must be between 0.1 and 60 seconds, got 61" in finding["detail"]


def test_host_resources_module_check_mode_and_refusals(tmp_path):
    run = run_module(tmp_path, "runbook.ops.host_resources",
                     {"sample_seconds": 0.2, "cpu_warn_percent": 100, "cpu_crit_percent": 100,  # other tests keep the CPUs busy
                      "load_warn_per_core": 0, "load_crit_per_core": 1000,
                      "swap_warn_percent": 50, "swap_crit_percent": 90}, check=True)
    assert not run.failed and run.result["changed"] is False, run.output[-3000:]
    checks = {item["check"]: item for item in run.result["findings"]}
    assert set(checks) == {"memory", "cpu", "load", "swap"}
    assert checks["load"]["state"] == "warning" and checks["load"]["unit"] == "per core"
    assert run.result["state"] == "warning" and run.result["figures"]["sample_seconds"] == 0.2

    run = run_module(tmp_path, "runbook.ops.host_resources",
                     {"memory_warn_percent": 0, "memory_crit_percent": 0, "cpu": False})
    assert run.failed and run.result["state"] == "critical"
    assert [item["check"] for item in run.result["findings"]] == ["memory"]

    for params, message in (({"sample_seconds": 0}, "sample_seconds must be between 0.1 and 60 seconds, got 0"),
                            ({"cpu_warn_percent": 95, "cpu_crit_percent": 90},
                             "cpu_warn (95.0) must not be above cpu_crit (90.0)")):
        run = run_module(tmp_path, "runbook.ops.host_resources", params)
        assert run.failed and message in run.result["msg"], run.result
