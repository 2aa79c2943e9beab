# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""release_watch on real Compose projects of the sample images: a healthy project passes, v5 (healthy, then
crashing after about 10 s) fails on its restarts, a replica answering 500s fails on the error rate."""

from __future__ import annotations

import threading
import time

from harness import run_module

from sample_service_fixture import new_fernet_key


def watch(tmp_path, project, check=False, **params):
    params = dict({"project_name": project.name, "interval": 1}, **params)
    return run_module(tmp_path, "runbook.ops.release_watch", params, check=check)


def test_v5_crashing_after_it_turned_healthy_fails_on_its_restarts(tmp_path, compose_project):
    project = compose_project(tag="v5").up()
    started = time.monotonic()
    run = watch(tmp_path, project, watch_seconds=40)
    result = run.result
    assert run.failed and result["passed"] is False
    assert result["stopped_early"] is True and time.monotonic() - started < 30
    api = "%s_api_1" % project.name
    kinds = {b["kind"] for b in result["breaches"]}
    assert kinds <= {"restarts", "health"} and kinds, result["breaches"]
    first = result["breaches"][0]
    assert first["target"] == "container " + api and first["time"].endswith("Z") and first["at_seconds"] > 0
    # Named: the container, and that it restarted (or is restarting) - with when.
    assert api in result["msg"] and "restart" in result["msg"] and "at +" in result["msg"]


def test_a_healthy_project_passes_and_a_replica_answering_500_fails_on_the_error_rate(tmp_path, compose_project):
    # api_b has another encryption key: the item api_a stores cannot be decrypted there, GET answers 500.
    project = compose_project(tag="v1", replicas=True,
                              service_env={"api_b": {"ENCRYPTION_KEY": new_fernet_key()}}).up()
    created = project.api("POST", "/api/items", json={"name": "a", "secret": "s"}, service="api_a")
    assert created.status == 201

    # Healthy, no traffic but the health checks (every second) and the scrapes, which count as requests.
    run = watch(tmp_path, project, watch_seconds=2, metrics_url=project.url("api_a") + "/metrics",
                api_token=project.token, check=True)
    result = run.result
    assert not run.failed, result["msg"]
    assert result["passed"] is True and result["changed"] is False and result["breaches"] == []
    assert result["polls"] == 3 and result["stopped_early"] is False
    assert sorted(result["restarts"]) == ["%s_api_a_1" % project.name, "%s_api_b_1" % project.name]
    assert result["restarts_total"] == 0
    assert result["requests"] >= 2 and result["errors"] == 0 and result["error_rate"] == 0
    assert result["scrapes"] == {"total": 3, "good": 3}
    assert {c["health"] for c in result["containers"]} == {"healthy"}
    assert project.token not in run.output
    assert result["msg"].startswith("Compose project %s passed the watch: 3 polls over " % project.name)

    # A wrong token: the rate cannot be measured, which fails the watch (not a silent pass).
    refused = watch(tmp_path, project, watch_seconds=1, metrics_url=project.url("api_a") + "/metrics",
                    api_token="wrong-token").result
    assert refused["passed"] is False and refused["breaches"][0]["kind"] == "metrics"
    assert "status 401" in refused["msg"] and "wrong-token" not in refused["msg"]

    assert project.api("GET", "/api/items/%d" % created.json["id"], service="api_b").status == 500
    stop = threading.Event()

    def fail_requests():
        while not stop.is_set():
            project.api("GET", "/api/items/%d" % created.json["id"], service="api_b")
            stop.wait(0.1)

    driver = threading.Thread(target=fail_requests, daemon=True)
    driver.start()
    try:
        run = watch(tmp_path, project, watch_seconds=4, metrics_url=project.url("api_b") + "/metrics",
                    api_token=project.token, max_error_rate=0.05, services=["api_b"])
    finally:
        stop.set()
        driver.join(5)
    result = run.result
    assert run.failed and result["passed"] is False and result["stopped_early"] is False
    assert [b["kind"] for b in result["breaches"]] == ["error_rate"]
    breach = result["breaches"][0]
    assert breach["value"] > 0.05 and breach["threshold"] == 0.05 and breach["at_seconds"] >= 4
    assert result["errors"] > 10 and result["requests"] > result["errors"]
    assert 'is above max_error_rate 0.05' in result["msg"] and 'status=~"5.."' in result["msg"]
    assert list(result["restarts"]) == ["%s_api_b_1" % project.name]
