# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""metrics_probe and path_check through ansible-playbook."""

from __future__ import annotations

import os

from conftest import API_TOKEN, BEARER_TOKEN, METRICS_SECRET

CHECKS = [
    {"name": "error rate", "warn": 0.01, "crit": 0.2,
     "ratio": {"numerator": {"metric": "http_requests_total", "labels": {"code": "=~5.."}},
               "denominator": {"metric": "http_requests_total"}}},
    {"name": "queue", "metric": "app_queue_length", "warn": 100, "crit": 1000},
    {"name": "database up", "metric": "app_database_up", "expect": {"op": "==", "value": 1}},
    {"name": "jobs 5xx", "metric": "http_requests_total", "labels": {"path": "/jobs"}, "crit": 5},
]


def test_metrics_checks_with_each_token(ansible_module, server):
    for auth in ({"api_token": API_TOKEN}, {"bearer_token": BEARER_TOKEN}, {"metrics_secret": METRICS_SECRET}):
        params = dict(auth, url=server.url("/metrics"), checks=CHECKS, return_samples=["app_queue_length"])
        run = ansible_module("runbook.ops.metrics_probe", params, verbosity=3)
        assert run.failed  # "jobs 5xx" is critical
        result = run.result
        checks = {c["name"]: c for c in result["checks"]}
        assert checks["error rate"]["state"] == "warning"
        assert checks["error rate"]["value"] == 30 / 330
        assert (checks["error rate"]["numerator"], checks["error rate"]["denominator"]) == (30, 330)
        assert checks["queue"]["state"] == "warning" and checks["queue"]["series"] == 2
        assert checks["queue"]["reasons"] == ["app_queue_length = 153 (sum of 2 series) is > 100 (warning)"]
        assert checks["database up"]["state"] == "ok"
        assert checks["jobs 5xx"]["breached"] == "critical"
        assert result["summary"] == {"total": 4, "ok": 1, "warning": 2, "critical": 1}
        assert result["series"] == 6 and result["parse_errors"] == []
        assert [s["labels"]["queue"] for s in result["samples"]["app_queue_length"]] == ["default", "mail"]
        assert result["msg"].startswith("1 of 4 checks ok, overall critical - error rate warning: ratio")
        for secret in (API_TOKEN, BEARER_TOKEN, METRICS_SECRET):
            assert secret not in run.output


def test_wrong_token_is_a_clear_failed_check(ansible_module, server):
    params = {"url": server.url("/metrics"), "api_token": "nope-" + API_TOKEN, "checks": CHECKS[:1]}
    run = ansible_module("runbook.ops.metrics_probe", params, verbosity=3)
    assert run.failed
    result = run.result
    assert result["status"] == 401
    assert result["reasons"] == ["status 401 not in [200] (the server refused the request: check the token and the Host header)"]
    assert result["checks"][0]["state"] == "critical"
    assert result["checks"][0]["reasons"][0].startswith("not evaluated: status 401")
    assert API_TOKEN not in run.output and "Traceback" not in run.output


def test_not_prometheus_text_and_unreachable(ansible_module, server, closed_port):
    html = ansible_module("runbook.ops.metrics_probe", {"url": server.url("/hosted"), "host": "app.internal", "checks": CHECKS[1:2]})
    assert html.failed
    assert html.result["reasons"][0].startswith("response is not Prometheus text: no samples found; first problem: line 1")
    down = ansible_module("runbook.ops.metrics_probe", {"url": "http://127.0.0.1:%d/metrics" % closed_port, "checks": CHECKS[1:2], "fail_on": "never"})
    assert not down.failed and down.result["state"] == "critical"
    assert "endpoint http://127.0.0.1:%d/metrics: connection refused" % closed_port in down.result["msg"]


def test_metrics_bad_input(ansible_module, server):
    for checks, message in (
            ([{"metric": "app_queue_length"}], "give at least one of warn, crit or expect"),
            ([{"metric": "app_queue_length", "crit": {"op": "~", "value": 1}}], "unknown comparison '~'"),
            ([{"metric": "app_queue_length", "labels": {"queue": "=~("}, "crit": 1}], "invalid regex"),
            ([{"metric": "app_queue_length", "crit": {"between": [9, 1]}}], "low above high")):
        run = ansible_module("runbook.ops.metrics_probe", {"url": server.url("/metrics"), "checks": checks, "api_token": API_TOKEN})
        assert run.failed and message in run.result["msg"], run.result
        assert "Traceback" not in run.output


def test_path_check_modes_on_a_data_dir(ansible_module, tmp_path):
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    (data / "app.db").write_text("db")
    (data / "logs" / "job.log").write_text("log")
    os.chmod(data, 0o755)
    os.chmod(data / "logs", 0o700)
    os.chmod(data / "app.db", 0o644)
    os.chmod(data / "logs" / "job.log", 0o600)
    params = {"paths": [str(data), str(tmp_path / "missing")], "mode": "0700", "file_mode": "0600",
              "recurse": True, "warn_percent": 100, "crit_percent": 100}
    run = ansible_module("runbook.ops.path_check", params, check=True)
    assert run.failed
    result = run.result
    found, missing = result["paths"]
    assert found["files_checked"] == 4 and found["offenders_count"] == 2
    assert {(o["path"], o["mode"]) for o in found["offenders"]} == {(str(data), "0755"), (str(data / "app.db"), "0644")}
    assert found["filesystem"]["total_bytes"] > 0 and 0 <= found["filesystem"]["used_percent"] <= 100
    assert missing["exists"] is False and missing["reasons"] == ["%s does not exist" % (tmp_path / "missing")]
    assert result["changed"] is False and result["summary"]["critical"] == 2
    assert oct(os.stat(data / "app.db").st_mode & 0o777) == "0o644"  # read-only: nothing was fixed

    os.chmod(data, 0o700)
    os.chmod(data / "app.db", 0o600)
    fixed = ansible_module("runbook.ops.path_check", dict(params, paths=[str(data)]))
    assert not fixed.failed and fixed.result["state"] == "ok" and fixed.result["paths"][0]["offenders"] == []

    full = ansible_module("runbook.ops.path_check", {"paths": [str(data)], "warn_percent": 0, "crit_percent": 100})
    assert not full.failed and full.result["state"] == "warning"
    assert "full, at or over warning 0%" in full.result["paths"][0]["reasons"][0]

    bad = ansible_module("runbook.ops.path_check", {"paths": [str(data)], "mode": "rwx"})
    assert bad.failed and bad.result["msg"] == "mode 'rwx' is not an octal mode such as '0700'"
    assert "Traceback" not in bad.output
