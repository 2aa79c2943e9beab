# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The watch loop of release_watch, driven with captured `docker inspect` output (fixtures/docker) and
exposition text, a fake clock and no sleeping."""

from __future__ import annotations

import copy
import datetime
import json
import os

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _prometheus, _watch
from ansible_collections.runbook.ops.plugins.module_utils._errors import ContainerError, WatchError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "docker")
START = datetime.datetime(2026, 11, 30, 18, 30, 0, tzinfo=datetime.timezone.utc)


def captured(name):
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as handle:
        return json.load(handle)[0]


def web(**changes):
    """The healthy web container of project rbopscap, with State fields or top-level fields changed."""
    attrs = copy.deepcopy(captured("compose-web"))
    for key, value in changes.items():
        if key in ("RestartCount", "Id", "Name"):
            attrs[key] = value
        else:
            attrs["State"][key] = value
    return attrs


class Clock:
    """A monotonic clock that the sleep advances; each poll also costs ``poll_cost`` seconds."""

    def __init__(self, poll_cost=0.0):
        self.value = 0.0
        self.poll_cost = poll_cost
        self.sleeps = []

    def __call__(self):
        return self.value

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.value += seconds

    def now(self):
        return START + datetime.timedelta(seconds=self.value)


def run(settings, polls, scrapes=None, clock=None):
    """Watch with ``polls`` (a list of inspect-object lists, or exceptions, one per poll; the last repeats)."""
    clock = clock or Clock()
    polls, scrapes = list(polls), list(scrapes or [])

    def containers():
        item = polls.pop(0) if len(polls) > 1 else polls[0]
        clock.value += clock.poll_cost
        if isinstance(item, Exception):
            raise item
        return item

    def scrape():
        text = scrapes.pop(0) if len(scrapes) > 1 else scrapes[0]
        if text is None:
            return {"reasons": ["connection refused"], "state": "critical"}, None
        return {"reasons": [], "state": "ok"}, _prometheus.parse(text)

    return _watch.watch(settings, containers, scrape if scrapes else None, clock=clock, sleep=clock.sleep,
                        now=clock.now)


def settings(**params):
    params.setdefault("project_name", "rbopscap")
    params.setdefault("watch_seconds", 10)
    params.setdefault("interval", 2)
    return _watch.WatchSettings.from_dict(params)


def counters(ok, errors=0, extra=""):
    text = ("# TYPE app_http_requests_total counter\n"
            'app_http_requests_total{method="GET",path="/readyz",status="200"} %d\n' % ok)
    if errors:
        text += 'app_http_requests_total{method="GET",path="/api/items",status="500"} %d\n' % errors
    return text + extra


def test_a_healthy_project_passes_after_the_whole_period_on_a_fixed_grid():
    clock = Clock(poll_cost=0.3)
    result = run(settings(), [[web()]], clock=clock)
    assert result["passed"] is True
    assert result["polls"] == 6  # at 0, 2, 4, 6, 8 and 10 s: slow polls do not drift the grid
    assert [s["at_seconds"] for s in result["samples"]] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert result["breaches"] == [] and result["restarts"] == {"rbopscap_web_1": 0}
    assert result["stopped_early"] is False and result["error_rate"] is None
    assert result["samples"][0]["containers"]["rbopscap_web_1"] == {
        "status": "running", "health": "healthy", "state": "ok", "restarts": 0}
    assert result["msg"] == "Compose project rbopscap passed the watch: 6 polls over 10.3 s, 0 restarts"


def test_a_restart_by_the_restart_policy_fails_fast_naming_the_container_and_when():
    restarted = web(RestartCount=1, StartedAt="2026-11-30T18:30:05.000000000Z")
    result = run(settings(), [[web()], [web()], [web()], [restarted]])
    assert result["passed"] is False and result["stopped_early"] is True
    assert result["polls"] == 4
    assert result["breaches"] == [{
        "kind": "restarts", "target": "container rbopscap_web_1", "value": 1, "threshold": 0, "at_seconds": 6.0,
        "time": "2026-11-30T18:30:06Z",
        "detail": "container rbopscap_web_1 restarted 1 time since the watch began (max_restarts 0)"}]
    assert result["msg"].startswith("Compose project rbopscap failed the watch and it stopped early (4 polls over 6 s,"
                                    " 1 restart) - restarts at +6 s (2026-11-30T18:30:06Z): container rbopscap_web_1")


def test_restarts_up_to_max_restarts_pass_and_one_more_fails_with_the_latest_count():
    polls = [[web()], [web(RestartCount=1)], [web(RestartCount=2)], [web(RestartCount=3)]]
    assert run(settings(max_restarts=3), polls)["passed"] is True
    result = run(settings(max_restarts=1, fail_fast=False), polls)
    assert result["polls"] == 6 and result["restarts_total"] == 3
    (found,) = result["breaches"]
    assert (found["at_seconds"], found["value"], found["threshold"]) == (4.0, 3, 1)  # first crossed at 4 s


def test_restarts_before_the_watch_do_not_count():
    result = run(settings(), [[web(RestartCount=7)]])
    assert result["passed"] is True and result["restarts_total"] == 0


def test_a_restart_by_hand_and_a_recreated_container_count():
    moved = web(StartedAt="2026-11-30T18:30:03.000000000Z")
    assert run(settings(), [[web()], [moved]])["breaches"][0]["value"] == 1
    recreated = web(Id="f" * 64, RestartCount=1)
    result = run(settings(fail_fast=False), [[web()], [recreated]])
    assert result["restarts"] == {"rbopscap_web_1": 2}  # replaced, and the new one restarted once


def test_a_container_that_crashed_is_a_health_breach_with_the_rules_words():
    exited = web(Status="exited", Running=False, ExitCode=3, Health=None)
    result = run(settings(), [[web()], [exited]])
    (found,) = result["breaches"]
    assert found["kind"] == "health" and found["target"] == "container rbopscap_web_1"
    assert found["detail"] == "exited with code 3"
    restarting = run(settings(), [[web()], [captured("restarting")]])
    assert [b["kind"] for b in restarting["breaches"]][:1] == ["health"]


def test_unhealthy_and_health_starting_past_the_grace_are_breaches_starting_within_it_is_not():
    worker = copy.deepcopy(captured("compose-worker"))
    worker["Config"]["Labels"]["com.docker.compose.project"] = "rbopscap"
    result = run(settings(), [[web(), worker]])
    assert [(b["kind"], b["target"]) for b in result["breaches"]] == [("health", "container rbopscap_worker_1")]
    assert "unhealthy" in result["breaches"][0]["detail"]
    starting = web(Health={"Status": "starting", "FailingStreak": 0, "Log": []})
    assert run(settings(start_grace=600), [[starting]])["passed"] is True
    late = run(settings(start_grace=5), [[starting]])
    assert late["breaches"][0]["detail"].startswith("running, health check still starting")


def test_only_the_services_asked_for_count_and_they_must_run():
    worker = copy.deepcopy(captured("compose-worker"))
    worker["Config"]["Labels"]["com.docker.compose.project"] = "rbopscap"
    assert run(settings(services=["web"]), [[web(), worker]])["passed"] is True
    assert run(settings(ignore_services=["worker"]), [[web(), worker]])["passed"] is True
    result = run(settings(services=["web", "api"]), [[web()]])
    assert result["breaches"][0]["target"] == "service api"
    assert "no running container" in result["breaches"][0]["detail"]


def test_no_containers_a_vanished_one_and_an_unreachable_engine_are_breaches():
    assert "no containers of Compose project rbopscap" in run(settings(), [[]])["msg"]
    gone = run(settings(), [[web()], []])
    assert {b["target"] for b in gone["breaches"]} == {"container rbopscap_web_1", "compose project rbopscap"}
    assert "is gone" in gone["msg"]
    down = run(settings(), [[web()], ContainerError("cannot reach the Docker engine at x: connection refused")])
    assert down["breaches"][0]["target"] == "docker engine" and "connection refused" in down["msg"]


def test_error_rate_between_the_first_and_the_last_scrape():
    scrapes = [counters(100), counters(150), counters(200, errors=30)]  # the 500 series appears late
    result = run(settings(max_error_rate=0.05), [[web()]], scrapes)
    assert (result["requests"], result["errors"], result["error_rate"]) == (130, 30, 0.230769)
    assert result["scrapes"] == {"total": 6, "good": 6}
    (found,) = result["breaches"]
    assert found["kind"] == "error_rate" and found["at_seconds"] == 10.0 and found["threshold"] == 0.05
    assert found["detail"] == ('error rate 0.2308 (30 of 130 app_http_requests_total requests with status=~"5..")'
                               " is above max_error_rate 0.05")
    assert result["samples"][-1]["metrics"] == {"scrape": "ok", "requests": 130, "errors": 30}
    # The whole period is watched: a rate is judged at the end, not at the first scrape.
    assert result["polls"] == 6
    assert run(settings(max_error_rate=0.25), [[web()]], scrapes)["passed"] is True


def test_a_counter_reset_counts_from_zero_and_too_few_requests_are_not_judged():
    # The process restarted before the third scrape: both series went down and count from zero.
    scrapes = [counters(1000, errors=10), counters(1100, errors=10), counters(40, errors=5)]
    result = run(settings(), [[web()]], scrapes)
    assert (result["requests"], result["errors"]) == (100 + 40 + 5, 5)
    assert result["breaches"][0]["kind"] == "error_rate"
    quiet = run(settings(min_requests=500), [[web()]], scrapes)
    assert quiet["passed"] is True and quiet["error_rate"] == 0.034483
    idle = run(settings(), [[web()]], [counters(5)])
    assert idle["passed"] is True and idle["error_rate"] is None and "error rate n/a (0 of 0" in idle["msg"]


def test_the_status_label_and_the_counter_name_are_options():
    text = 'http_requests_total{code="503"} %d\nhttp_requests_total{code="200"} %d\n'
    scrapes = [text % (0, 10), text % (5, 15)]
    result = run(settings(error_counter="http_requests_total", status_label="code", error_status="50[34]"),
                 [[web()]], scrapes)
    assert (result["requests"], result["errors"], result["error_rate"]) == (10, 5, 0.5)


def test_a_rate_that_cannot_be_measured_fails():
    result = run(settings(), [[web()]], [counters(10), None])
    assert result["scrapes"] == {"total": 6, "good": 1}
    assert result["breaches"][0]["kind"] == "metrics"
    assert "1 of 6 scrapes of the metrics endpoint were good (two are needed); last problem: connection refused" \
        in result["msg"]
    typo = run(settings(error_counter="app_http_request_total"), [[web()]], [counters(10)])
    assert "the scrape has no metric app_http_request_total (did you mean app_http_requests_total?)" in typo["msg"]
    # A scrape that failed in the middle does not stop the rate from being measured.
    assert run(settings(), [[web()]], [counters(10), None, counters(20)])["passed"] is True


def test_settings_are_checked():
    with pytest.raises(WatchError, match="project_name is required"):
        _watch.WatchSettings.from_dict({})
    with pytest.raises(WatchError, match="interval must be more than 0"):
        settings(interval=0)
    with pytest.raises(WatchError, match="max_restarts must be 0 or more"):
        settings(max_restarts=-1)
    with pytest.raises(WatchError, match="error_status"):
        settings(error_status="5(")
    with pytest.raises(WatchError, match="invalid metric name"):
        settings(error_counter="app-requests")
    with pytest.raises(WatchError, match="invalid label name"):
        settings(status_label="status code")


def test_a_long_watch_keeps_a_bounded_number_of_samples():
    result = run(settings(watch_seconds=600, interval=1), [[web()]])
    assert result["polls"] == 601 and len(result["samples"]) == _watch.MAX_SAMPLES
    assert result["samples"][0]["at_seconds"] == 0.0 and result["samples"][-1]["at_seconds"] == 600.0
