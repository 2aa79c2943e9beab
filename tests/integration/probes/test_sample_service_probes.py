# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""http_probe and metrics_probe against the real managed sample service."""

from __future__ import annotations

from sample_service_fixture import sample_service  # noqa: F401  pylint: disable=unused-import

METRICS_SECRET = "metrics-secret-7c1f0e2a"


def test_probe_the_sample_service(ansible_module, sample_service):  # noqa: F811  pylint: disable=redefined-outer-name
    svc = sample_service(env={"ALLOWED_HOSTS": "app.internal", "METRICS_SECRET": METRICS_SECRET})
    health = ansible_module("runbook.ops.http_probe", {"targets": [
        {"name": "healthz", "url": svc.url + "/healthz", "body_contains": "ok",
         "headers_match": [{"name": "X-Process-Id", "equals": str(svc.pid)}]},
        {"name": "readyz", "url": svc.url + "/readyz", "body_regex": "^ok"},
        {"name": "ready", "url": svc.url + "/ready",
         "json": [{"path": "status", "equals": "ready"}, {"path": "checks.database", "equals": "ok"}]},
    ], "warn_ms": 500, "crit_ms": 1000, "wait": True, "wait_timeout": 10})
    assert not health.failed, health.output
    assert health.result["state"] == "ok" and health.result["summary"]["ok"] == 3

    checks = [
        {"name": "database up", "metric": "app_database_up", "expect": {"op": "==", "value": 1}},
        {"name": "queued jobs", "metric": "app_jobs_queued", "warn": 100, "crit": 1000},
        {"name": "error rate", "missing": "ok", "warn": 0.01, "crit": 0.05,
         "ratio": {"numerator": {"metric": "app_http_requests_total", "labels": {"status": "=~5.."}},
                   "denominator": {"metric": "app_http_requests_total"}}},
        {"name": "build", "metric": "app_build_info", "labels": {"version": "1.0.0"}, "aggregate": "count",
         "expect": {"op": "==", "value": 1}},
    ]
    for auth in ({"api_token": svc.token}, {"bearer_token": svc.token}, {"metrics_secret": METRICS_SECRET}):
        run = ansible_module("runbook.ops.metrics_probe", dict(auth, url=svc.url + "/metrics", host="app.internal", checks=checks), verbosity=3)
        assert not run.failed, run.output
        result = run.result
        assert result["state"] == "ok" and result["parse_errors"] == [], result
        by_name = {c["name"]: c for c in result["checks"]}
        assert by_name["database up"]["value"] == 1 and by_name["error rate"]["value"] == 0
        assert by_name["build"]["value"] == 1
        assert svc.token not in run.output and METRICS_SECRET not in run.output

    wrong_host = ansible_module("runbook.ops.metrics_probe", {"url": svc.url + "/metrics", "api_token": svc.token, "checks": checks[:1]})
    assert wrong_host.failed and wrong_host.result["status"] == 403
    params = {"url": svc.url + "/metrics", "host": "app.internal", "api_token": "not-" + svc.token, "checks": checks[:1]}
    wrong_token = ansible_module("runbook.ops.metrics_probe", params, verbosity=3)
    assert wrong_token.failed and wrong_token.result["status"] == 401
    assert "check the token" in wrong_token.result["msg"] and svc.token not in wrong_token.output
