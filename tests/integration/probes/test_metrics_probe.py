# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""metrics_probe never says OK about a check it could not evaluate (through ansible-playbook)."""

from __future__ import annotations

from conftest import API_TOKEN
from sample_service_fixture import sample_service  # noqa: F401  pylint: disable=unused-import

MODULE = "runbook.ops.metrics_probe"


def error_rate(metric, label, missing="ok", denominator=None):
    """The error-rate check as the health_check role builds it (missing: ok, for services without traffic)."""
    return {"name": "error rate", "warn": 0.01, "crit": 0.05, "missing": missing,
            "ratio": {"numerator": {"metric": metric, "labels": {label: "=~5.."}},
                      "denominator": {"metric": denominator or metric}}}


def test_error_rate_with_the_wrong_status_label_is_unknown(ansible_module, sample_service):  # noqa: F811  pylint: disable=redefined-outer-name
    """The sample service labels its requests by status; a check that asks for code must not read 0."""
    svc = sample_service()
    assert svc.api("GET", "/healthz").status == 200  # at least one series of app_http_requests_total
    params = {"url": svc.url + "/metrics", "api_token": svc.token,
              "checks": [error_rate("app_http_requests_total", "code"),
                         error_rate("app_http_requests_total", "status")]}
    run = ansible_module(MODULE, params)
    assert not run.failed  # warning, under fail_on: critical
    wrong, right = run.result["checks"]
    assert (wrong["state"], wrong["value"], wrong["breached"]) == ("warning", None, "warning")
    assert wrong["reasons"] == ['unknown: numerator app_http_requests_total{code=~"5.."} matched no series; '
                                'no app_http_requests_total series has the label code '
                                '(its labels: method, path, status) (warning)']
    assert (right["state"], right["value"]) == ("ok", 0)
    assert run.result["state"] == "warning"
    assert run.result["msg"].startswith("1 of 2 checks ok, overall warning - error rate warning: unknown: numerator")

    strict = ansible_module(MODULE, dict(params, checks=[error_rate("app_http_requests_total", "code", "critical")]))
    assert strict.failed and strict.result["checks"][0]["state"] == "critical"


def test_misspelt_metric_names_are_unknown(ansible_module, server):
    checks = [error_rate("http_request_total", "code", denominator="http_requests_total"),
              error_rate("http_requests_total", "code", denominator="http_request_total"),
              {"name": "queue", "metric": "app_queue_lenght", "warn": 100, "missing": "ok"}]
    run = ansible_module(MODULE, {"url": server.url("/metrics"), "api_token": API_TOKEN, "checks": checks,
                                  "fail_on": "warning"})
    assert run.failed and run.result["summary"] == {"total": 3, "ok": 0, "warning": 3, "critical": 0}
    numerator, denominator, queue = run.result["checks"]
    assert numerator["reasons"] == ['unknown: numerator http_request_total{code=~"5.."} matched no series; the scrape '
                                    'has no metric http_request_total (did you mean http_requests_total?) (warning)']
    assert denominator["reasons"] == ['unknown: denominator http_request_total matched no series; the scrape '
                                      'has no metric http_request_total (did you mean http_requests_total?) (warning)']
    assert queue["reasons"] == ['unknown: app_queue_lenght matched no series; the scrape has no metric '
                                'app_queue_lenght (did you mean app_queue_length?) (warning)']
    assert all(check["value"] is None for check in run.result["checks"])


def test_https_without_cryptography_is_reported_before_work(ansible_playbook, tmp_path, tls_server):
    blocker = tmp_path / "no-cryptography" / "cryptography"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('cryptography is not installed on this host')\n")
    task = {"name": "module under test", "ignore_errors": True, "environment": {"PYTHONPATH": str(blocker.parent)},
            MODULE: {"url": tls_server.url("/metrics", "https"), "ca_path": tls_server.cert_path, "api_token": API_TOKEN,
                     "checks": [{"metric": "app_database_up", "expect": {"op": "==", "value": 1}}]}}
    run = ansible_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}])
    assert run.failed and "Traceback" not in run.output
    assert "Failed to import the required Python library (cryptography)" in run.result["msg"]
    assert "checks" not in run.result  # nothing was scraped
