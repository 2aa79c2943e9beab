# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container-state rules of _docker on `docker inspect` output captured from a real engine (fixtures/docker)."""

from __future__ import annotations

import datetime
import json
import os

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _docker
from ansible_collections.runbook.ops.plugins.module_utils._docker import ContainerRules, assess, container_record
from ansible_collections.runbook.ops.plugins.module_utils._errors import ContainerError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "docker")


def captured(name):
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as handle:
        inspected = json.load(handle)
    assert len(inspected) == 1
    return inspected[0]


def after_start(attrs, seconds):
    """The moment ``seconds`` after the container's latest start (its creation if it never started)."""
    start = _docker.parse_time(attrs["State"]["StartedAt"]) or _docker.parse_time(attrs["Created"])
    return start + datetime.timedelta(seconds=seconds)


def rate(name, seconds=60, **rules):
    attrs = captured(name)
    return ContainerRules.from_dict(rules).rate(container_record(attrs), after_start(attrs, seconds))


def test_every_capture_reads_as_its_state():
    assert {name: container_record(captured(name))["status"] for name in (
        "compose-web", "compose-worker", "compose-slow", "compose-plain", "compose-job", "oom", "oom-restarted",
        "crashloop", "restarting", "created", "paused")} == {
        "compose-web": "running", "compose-worker": "running", "compose-slow": "running",
        "compose-plain": "running", "compose-job": "exited", "oom": "exited", "oom-restarted": "running",
        "crashloop": "running", "restarting": "restarting", "created": "created", "paused": "paused"}
    web = container_record(captured("compose-web"))
    assert (web["name"], web["project"], web["service"], web["oneoff"], web["health"]) == (
        "rbopscap_web_1", "rbopscap", "web", False, "healthy")


def test_running_and_healthy_or_without_a_health_check_is_ok():
    assert rate("compose-web", 90) == ("ok", "running, healthy, up 90 s")
    assert rate("compose-plain", 3 * 3600) == ("ok", "running, no health check, up 3.0 h")
    assert rate("compose-plain", 60, require_healthcheck=True) == (
        "warning", "running without a health check (one is required), up 60 s")


def test_unhealthy_is_critical_with_the_check_output_on_one_line():
    state, detail = rate("compose-worker")
    assert state == "critical"
    assert detail == "running, unhealthy (failing streak 7, last check exit code 1: queue stuck)"


def test_starting_is_a_warning_within_the_grace_period_then_critical():
    assert rate("compose-slow", 10) == ("warning", "running, health check starting (grace 2 min), up 10 s")
    assert rate("compose-slow", 120)[0] == "warning"
    assert rate("compose-slow", 121)[0] == "critical"
    assert rate("compose-slow", 300) == (
        "critical", "running, health check still starting 5 min after the start (grace 2 min)")
    assert rate("compose-slow", 300, start_grace=600)[0] == "warning"


@pytest.mark.parametrize("name, detail", [
    ("compose-job", "exited with code 3"),
    ("oom", "exited with code 137, killed for lack of memory (OOM)"),
    ("restarting", "restarting after exit code 2, restarted 6 times"),
    ("created", "created but never started"),
    ("paused", "paused (its processes are frozen)"),
])
def test_stopped_restarting_created_and_paused_are_critical(name, detail):
    assert rate(name) == ("critical", detail)


def test_a_crash_loop_is_not_ok():
    # Captured running, 3 restarts since creation, its latest start moments before the capture.
    state, detail = rate("crashloop", 5)
    assert state == "critical"
    assert detail == ("running, no health check, up 5 s; crash loop: restarted 5 s ago, within the 10 min window "
                      "(3 restarts since it was created)")
    assert rate("crashloop", 5, restart_crit_count=4)[0] == "warning"
    # The same container an hour after its latest start: the loop has stopped.
    assert rate("crashloop", 3600) == ("ok", "running, no health check, up 1.0 h")
    assert rate("crashloop", 3600, restart_window=7200)[0] == "critical"


def test_an_oom_kill_before_the_latest_start_is_reported():
    state, detail = rate("oom-restarted", 30)
    assert state == "warning"
    assert detail == ("running, no health check, up 30 s; killed for lack of memory (OOM) before its latest start; "
                      "restarted 30 s ago, within the 10 min window (1 restarts since it was created)")
    later_state, later_detail = rate("oom-restarted", 2 * 86400)
    assert later_state == "ok" and "killed for lack of memory (OOM)" in later_detail


def test_assess_a_compose_project_names_and_missing_containers():
    inspected = [captured(n) for n in ("compose-web", "compose-worker", "compose-plain", "compose-job")]
    now = after_start(inspected[0], 60)
    report = assess(inspected, ContainerRules(), now, project="rbopscap",
                    required_services=["web", "job", "scheduler"], ignore_services=["job"],
                    missing=["rbops-no-such-container"])
    checks = {f["check"]: f for f in report["findings"]}
    assert set(checks) == {"container rbops-no-such-container", "service job", "service scheduler",
                           "container rbopscap_web_1", "container rbopscap_worker_1", "container rbopscap_plain_1"}
    assert checks["container rbops-no-such-container"]["detail"] == "no container named rbops-no-such-container on this host"
    assert checks["service scheduler"]["detail"] == "Compose service scheduler has no running container"
    assert checks["service job"]["state"] == "critical"  # ignored for its state, still required to run
    assert checks["container rbopscap_worker_1"]["target"] == "worker"
    assert checks["container rbopscap_web_1"]["value"] == "healthy"
    assert report["state"] == "critical" and report["summary"] == {"total": 6, "ok": 2, "warning": 0, "critical": 4}
    assert report["msg"].startswith("2 of 6 checks ok, overall critical - ")
    assert "\t" not in report["msg"] and "\n" not in report["msg"]
    assert [r["counted"] for r in report["containers"]] == [True, True, True, False]

    empty = assess([], ContainerRules(), now, project="rbopsnosuchproject")
    assert [(f["check"], f["state"], f["detail"]) for f in empty["findings"]] == [
        ("compose project rbopsnosuchproject", "critical", "no containers of Compose project rbopsnosuchproject")]


class CapturedEngine:
    """An engine answering from the captures (the SDK calls themselves are tested in the integration tests)."""

    def __init__(self, *names):
        self.containers = [captured(name) for name in names]

    def inspect(self, name):
        return next((c for c in self.containers if name in (c["Id"], c["Name"].lstrip("/"))), None)

    def with_labels(self, labels):
        return [c for c in self.containers
                if all(c["Config"]["Labels"].get(k) == v for k, v in labels.items())]


def test_check_containers_counts_each_container_once_and_reports_an_unreachable_engine():
    engine = CapturedEngine("compose-web", "crashloop")
    now = after_start(engine.containers[0], 30)
    report = _docker.check_containers(lambda: engine, ContainerRules(), now, names=["rbopscap_web_1", "gone"],
                                      project="rbopscap")
    assert [f["check"] for f in report["findings"]] == ["container gone", "container rbopscap_web_1"]

    def unreachable():
        raise ContainerError("cannot reach the Docker engine at unix:///nowhere.sock: connection refused")

    down = _docker.check_containers(unreachable, ContainerRules(), now, names=["web"])
    assert down["state"] == "critical" and down["containers"] == []
    assert down["findings"][0]["check"] == "docker engine" and "connection refused" in down["findings"][0]["detail"]


def test_helpers_and_bad_rules():
    assert _docker.parse_time("0001-01-01T00:00:00Z") is None
    assert _docker.parse_time("2026-11-30T18:24:50.658166601Z") == datetime.datetime(
        2026, 11, 30, 18, 24, 50, 658166, tzinfo=datetime.timezone.utc)
    assert _docker.parse_time("2026-11-30T19:24:50+01:00") == datetime.datetime(
        2026, 11, 30, 18, 24, 50, tzinfo=datetime.timezone.utc)
    assert _docker.parse_time("2026-11-30T18:24:50Z\n") is None
    assert _docker.one_line("Error:\tNo such object:\tweb\n") == "Error: No such object: web"
    assert _docker.one_line("x" * 300).endswith("…") and len(_docker.one_line("x" * 300)) == 200
    for bad, message in (({"start_grace": -1}, "start_grace must be 0 or more"),
                         ({"restart_crit_count": 0}, "restart_crit_count must be at least 1")):
        with pytest.raises(ContainerError, match=message):
            ContainerRules.from_dict(bad)


@pytest.mark.skipif(not _docker.HAS_DOCKER, reason="the Docker SDK is not installed")
@pytest.mark.parametrize("where, reason", [
    ("unix:///nonexistent/rbops-docker.sock", "no Docker socket there (is the engine running?)"),
    ("tcp://127.0.0.1:1", "connection refused (is the engine running and listening there?)"),
])
def test_an_unreachable_engine_is_said_in_plain_words(where, reason):
    with pytest.raises(ContainerError) as caught:
        _docker.DockerEngine(where, timeout=5)
    assert str(caught.value) == "cannot reach the Docker engine at %s: %s" % (where, reason)


def test_restarts_since_a_previous_observation():
    attrs = captured("crashloop")  # RestartCount 3
    record = container_record(attrs)
    rules = ContainerRules()
    an_hour_on = after_start(attrs, 3600)  # the latest start alone would read ok
    earlier = {"id": record["id"], "restart_count": 1, "observed_at": "2026-11-30T17:25:05Z"}
    assert rules.rate(record, an_hour_on, earlier) == (
        "warning", "running, no health check, up 1.0 h; restarted 2 times since the previous observation 2.0 h ago")
    assert rules.rate(record, an_hour_on, dict(earlier, restart_count=0))[1].endswith(
        "crash loop: restarted 3 times since the previous observation 2.0 h ago")
    assert rules.rate(record, an_hour_on, dict(earlier, restart_count=0))[0] == "critical"
    # No restart since the previous observation: ok even moments after the latest start.
    assert rules.rate(record, after_start(attrs, 5), dict(earlier, restart_count=3))[0] == "ok"

    report = assess([attrs], rules, an_hour_on, previous=_docker.previous_records([earlier]))
    assert report["state"] == "warning" and report["containers"][0]["observed_at"] == "2026-11-30T19:25:05.677238Z"
    for bad in ([{"id": "x"}], [{"id": "x", "restart_count": True}], ["x"]):
        with pytest.raises(ContainerError, match=r"previous\[0\] needs id and an integer restart_count"):
            _docker.previous_records(bad)
