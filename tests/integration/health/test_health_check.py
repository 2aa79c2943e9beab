# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/health_check.yml through ansible-playbook against the real sample service."""

from __future__ import annotations

import os

from harness import run_playbook

from health_testlib import HEALTH_PLAYBOOK, fact, findings_by_check, health_vars, stats_of, write_inventory

RESULT_TASK = "Work out the overall state"
STATS_TASK = "Publish the health summary for AWX"
FAIL_TASK = "Fail when the state reaches health_check_fail_on"


def run_health(tmp_path, host_vars, **kwargs):
    env = {"ANSIBLE_SHOW_CUSTOM_STATS": "true"}
    return run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, host_vars), env=env, **kwargs)


def test_healthy_service_is_ok_and_token_stays_secret(tmp_path, sample_service):
    svc = sample_service()
    run = run_health(tmp_path, health_vars(svc), verbosity=3)
    assert run.rc == 0, run.output
    result = fact(run, RESULT_TASK, "health_check_result")
    assert result["state"] == "ok", result["problems"]
    checks = findings_by_check(result)
    assert {"liveness", "readiness", "metrics endpoint", "metric database up", "metric error rate",
            "data dir " + svc.data_dir} <= set(checks)
    assert checks["readiness"]["detail"].startswith("HTTP 200")
    assert checks["metric database up"]["value"] == 1
    assert result["counts"]["critical"] == 0 and result["counts"]["total"] == len(result["checks"])
    stats = stats_of(run, STATS_TASK)
    assert stats["runbook_health_check"]["localhost"]["state"] == "ok"
    assert "CUSTOM STATS" in run.output and "runbook_health_check" in run.output
    assert run.task(FAIL_TASK)["status"] == "skipped"
    assert svc.token not in run.output  # -vvv


def test_readiness_failing_is_critical_with_reason(tmp_path, sample_service):
    svc = sample_service(env={"FAIL_READY": "true"})
    run = run_health(tmp_path, health_vars(svc))
    assert run.rc != 0
    result = fact(run, RESULT_TASK, "health_check_result")
    assert result["state"] == "critical"
    readiness = findings_by_check(result)["readiness"]
    assert readiness["state"] == "critical"
    assert "503" in readiness["detail"] and "not_ready" in readiness["detail"], readiness
    assert findings_by_check(result)["liveness"]["state"] == "ok"
    failure = run.task(FAIL_TASK)
    assert failure["status"] == "failed"
    assert "readiness critical" in failure["result"]["msg"] and "503" in failure["result"]["msg"]


def test_unreadable_database_fails_readiness(tmp_path, sample_service):
    svc = sample_service()
    os.chmod(svc.db_path, 0)  # root ignores modes: replace the file with a directory instead
    os.unlink(svc.db_path)
    os.mkdir(svc.db_path, 0o700)
    run = run_health(tmp_path, health_vars(svc, health_check_data_dir_file_mode=""), extra_vars={"health_check_fail_on": "never"})
    assert run.rc == 0, run.output
    result = fact(run, RESULT_TASK, "health_check_result")
    readiness = findings_by_check(result)["readiness"]
    assert readiness["state"] == "critical" and "checks.database" in readiness["detail"], readiness
    assert result["state"] == "critical"


def test_wrong_metrics_token_is_critical(tmp_path, sample_service):
    svc = sample_service()
    run = run_health(tmp_path, health_vars(svc, health_check_metrics_token="not-the-token"), verbosity=3)
    assert run.rc != 0
    result = fact(run, RESULT_TASK, "health_check_result")
    endpoint = findings_by_check(result)["metrics endpoint"]
    assert endpoint["state"] == "critical" and "401" in endpoint["detail"], endpoint
    assert "metric database up" not in findings_by_check(result)  # not evaluated: one finding, not four
    assert "not-the-token" not in run.output and svc.token not in run.output


def test_host_not_in_allowlist_and_metrics_secret(tmp_path, sample_service):
    svc = sample_service(env={"METRICS_SECRET": "metrics-secret-123"})
    run = run_health(tmp_path, health_vars(svc, health_check_host="evil.example", health_check_metrics_auth="metrics_secret",
                                           health_check_metrics_token="metrics-secret-123",
                                           health_check_fail_on="never"))
    endpoint = findings_by_check(fact(run, RESULT_TASK, "health_check_result"))["metrics endpoint"]
    assert endpoint["state"] == "critical" and "403" in endpoint["detail"], endpoint
    run = run_health(tmp_path, health_vars(svc, health_check_host="localhost", health_check_metrics_auth="metrics_secret",
                                           health_check_metrics_token="metrics-secret-123"))
    assert run.rc == 0, run.output
    assert fact(run, RESULT_TASK, "health_check_result")["state"] == "ok"


def test_data_dir_permissions_and_disk_thresholds(tmp_path, sample_service):
    svc = sample_service()
    loose = os.path.join(svc.data_dir, "exported.csv")
    with open(loose, "w", encoding="utf-8") as handle:
        handle.write("x\n")
    os.chmod(loose, 0o644)
    run = run_health(tmp_path, health_vars(svc, health_check_disk_paths=["/"], health_check_disk_warn_percent=0.01,
                                           health_check_disk_crit_percent=100, health_check_fail_on="warning"))
    assert run.rc != 0
    result = fact(run, RESULT_TASK, "health_check_result")
    checks = findings_by_check(result)
    data_dir = checks["data dir " + svc.data_dir]
    assert data_dir["state"] == "critical" and "0644" in data_dir["detail"], data_dir
    assert checks["disk /"]["state"] == "warning" and "warning" in checks["disk /"]["detail"], checks["disk /"]
    assert "warning" in run.task(FAIL_TASK)["result"]["msg"] or "critical" in run.task(FAIL_TASK)["result"]["msg"]


def test_check_mode_runs_every_probe(tmp_path, sample_service):
    svc = sample_service()
    run = run_health(tmp_path, health_vars(svc), check=True)
    assert run.rc == 0, run.output
    result = fact(run, RESULT_TASK, "health_check_result")
    assert result["state"] == "ok" and result["counts"]["total"] >= 6


def test_bad_settings_fail_in_preflight(tmp_path, sample_service):
    svc = sample_service()
    run = run_health(tmp_path, health_vars(svc, health_check_warn_ms=2000, health_check_crit_ms=1000))
    assert run.rc != 0
    assert "health_check_warn_ms at most health_check_crit_ms" in run.output
    run = run_health(tmp_path, health_vars(svc, health_check_metrics_token=""))
    assert run.rc != 0 and "set health_check_metrics_token" in run.output
    run = run_health(tmp_path, health_vars(svc, health_check_fail_on="sometimes"))
    assert run.rc != 0 and "health_check_fail_on" in run.output
