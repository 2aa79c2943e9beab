# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Watching a deployed Compose project for a while: restarts, container health and the HTTP error
rate (the watch period of a deploy's health gate, runbook DR1/DR2, and HP7 over time).

``watch()`` polls every ``interval`` seconds for ``watch_seconds``: it inspects the project's
containers (found by the Compose project label), rates each with ``_docker``'s container rules and
counts the restarts since the first poll; when a metrics URL is given it scrapes it and adds up the
increase of the request counters, split into errors (a status label matching ``5..``) and all.

Thresholds and what crosses them:

- ``restarts``: a container restarted more than ``max_restarts`` times since the watch began (the
  engine's restart count went up, a manual restart moved its start time, or Compose replaced it
  with a new container of the same name).
- ``health``: a container the rules rate critical (exited, restarting, unhealthy, still starting
  after ``start_grace``), a container that was there at the start and is gone, a service of
  ``services`` without a running container, no container at all, or an unreachable engine.
- ``error_rate``: errors / requests between the first and the last scrape above ``max_error_rate``
  (judged at the end, and only once at least ``min_requests`` requests were counted).
- ``metrics``: the error rate could not be measured (fewer than two good scrapes, or the counter is
  not in the scrape).

By default the watch stops at the first restart or health breach (``fail_fast``), so a rollback
starts early.  Counter increases are summed per series between consecutive good scrapes; a value
that went down is a counter reset (the process restarted) and counts from zero, like Prometheus'
``increase()``, and a series that appears later (the first 500) counts from zero too.

Plain Python, no Ansible imports.  The engine, the scrape, the clock and the sleep are injected, so
the unit tests drive the loop with captured ``docker inspect`` output and exposition text.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from dataclasses import dataclass

from ansible_collections.runbook.ops.plugins.module_utils import _docker, _prometheus
from ansible_collections.runbook.ops.plugins.module_utils._errors import ContainerError, ProbeError, WatchError

BREACH_KINDS = ("restarts", "health", "error_rate", "metrics")
# What the result says of each watched container at the last poll.
CONTAINER_FIELDS = ("name", "service", "id", "status", "health", "state", "restart_count", "started_at")
# Polls kept in the result: the first ones and the last ones, so a long watch stays a small result.
MAX_SAMPLES = 120


@dataclass
class WatchSettings:
    """What to watch and the thresholds.  Build with ``WatchSettings.from_dict(params)``."""

    project: str
    watch_seconds: float = 60.0
    interval: float = 2.0
    max_restarts: int = 0
    start_grace: float = 60.0
    services: tuple = ()
    ignore_services: tuple = ()
    fail_fast: bool = True
    error_counter: str = "app_http_requests_total"
    status_label: str = "status"
    error_status: str = "5.."
    max_error_rate: float = 0.01
    min_requests: int = 1

    @classmethod
    def from_dict(cls, params):
        settings = cls(project=params.get("project_name") or "")
        if not settings.project:
            raise WatchError("project_name is required: the Compose project whose containers to watch")
        for key in ("watch_seconds", "interval", "start_grace", "max_error_rate"):
            if params.get(key) is not None:
                value = float(params[key])
                if not math.isfinite(value) or value < 0:
                    raise WatchError("%s must be 0 or more, got %s" % (key, params[key]))
                setattr(settings, key, value)
        if settings.interval <= 0:
            raise WatchError("interval must be more than 0 seconds, got %s" % params.get("interval"))
        for key in ("max_restarts", "min_requests"):
            if params.get(key) is not None:
                if int(params[key]) < 0:
                    raise WatchError("%s must be 0 or more, got %s" % (key, params[key]))
                setattr(settings, key, int(params[key]))
        settings.services = tuple(params.get("services") or ())
        settings.ignore_services = tuple(params.get("ignore_services") or ())
        if params.get("fail_fast") is not None:
            settings.fail_fast = bool(params["fail_fast"])
        for key in ("error_counter", "status_label", "error_status"):
            if params.get(key):
                setattr(settings, key, str(params[key]))
        try:
            re.compile(settings.error_status)
        except re.error as exc:
            raise WatchError("error_status %r is not a regular expression: %s" % (settings.error_status, exc)) from None
        try:
            settings.selectors()
        except ProbeError as exc:
            raise WatchError(str(exc)) from None
        return settings

    def rules(self):
        """The container rules, health only: restarts are counted by the watch against max_restarts, so
        the rules' own judgement of a recent start is off (no start lies within a window of -inf seconds,
        not even one a little after the poll's clock reading)."""
        return _docker.ContainerRules(start_grace=self.start_grace, restart_window=-math.inf)

    def selectors(self):
        """(all requests, error requests) as _prometheus selectors."""
        every = _prometheus.Selector.from_spec(self.error_counter, None, "error_counter")
        errors = _prometheus.Selector.from_spec(self.error_counter, {self.status_label: "=~" + self.error_status},
                                                "error_counter")
        return every, errors


def _stamp(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _series_key(sample):
    return tuple(sorted(sample.labels.items()))


class CounterIncrease:
    """The increase of a set of counter series over consecutive scrapes, with counter resets."""

    def __init__(self):
        self.previous = None  # series key -> value at the last good scrape
        self.total = 0.0

    def add(self, samples):
        current = {}
        for sample in samples:
            if math.isfinite(sample.value):
                current[_series_key(sample)] = current.get(_series_key(sample), 0.0) + sample.value
        if self.previous is not None:
            for key, value in current.items():
                before = self.previous.get(key, 0.0)  # a series that appears later counts from zero
                self.total += value if value < before else value - before  # a drop is a counter reset
        self.previous = current
        return self.total


class ErrorRate:
    """Requests and errors counted from the scrapes of one metrics endpoint."""

    def __init__(self, settings):
        self.settings = settings
        self.every, self.errors = settings.selectors()
        self.requests = CounterIncrease()
        self.failed = CounterIncrease()
        self.good = 0
        self.scrapes = 0
        self.last_problem = None

    def add(self, report, exposition):
        """Count one scrape (``_prometheus.scrape``'s result); returns the figures for the poll's sample."""
        self.scrapes += 1
        if exposition is None:
            self.last_problem = "; ".join(report["reasons"]) or "metrics unavailable"
            return {"scrape": "failed", "reason": self.last_problem}
        mistake = self.every.mistake(exposition)
        if mistake:
            self.last_problem = mistake
            return {"scrape": "failed", "reason": mistake}
        self.good += 1
        self.requests.add(exposition.select(self.every))
        self.failed.add(exposition.select(self.errors))
        return {"scrape": "ok", "requests": _count(self.requests.total), "errors": _count(self.failed.total)}

    @property
    def rate(self):
        if self.good < 2 or self.requests.total <= 0:
            return None
        return self.failed.total / self.requests.total

    def judge(self, when):
        """Breaches at the end of the watch: the rate above the threshold, or no rate measured."""
        settings = self.settings
        if self.good < 2:
            return [breach("metrics", "error rate", None, None, when,
                           "the error rate could not be measured: %d of %d scrapes of the metrics endpoint were good"
                           " (two are needed)%s" % (self.good, self.scrapes,
                                                    "; last problem: " + self.last_problem if self.last_problem else ""))]
        rate = self.rate
        if rate is None or self.requests.total < settings.min_requests or rate <= settings.max_error_rate:
            return []
        return [breach("error_rate", "error rate", round(rate, 6), settings.max_error_rate, when,
                       "error rate %s (%s of %s %s requests with %s=~\"%s\") is above max_error_rate %s"
                       % (_prometheus.fmt(round(rate, 4)), _prometheus.fmt(self.failed.total),
                          _prometheus.fmt(self.requests.total), settings.error_counter, settings.status_label,
                          settings.error_status, _prometheus.fmt(settings.max_error_rate)))]


def _count(value):
    return int(value) if value == int(value) else round(value, 3)


def breach(kind, target, value, threshold, when, detail):
    """One threshold crossed: what (``kind``, ``target``), the figure and the limit, when (``when``:
    ``(seconds since the watch began, aware datetime)``) and a sentence for people."""
    seconds, moment = when
    return {"kind": kind, "target": target, "value": value, "threshold": threshold,
            "at_seconds": round(seconds, 1), "time": _stamp(moment), "detail": detail}


class RestartCounter:
    """Restarts per container name since the first poll.

    A restart is the engine's restart count going up (the restart policy), the start time moving
    while the count stays (``docker restart`` by hand), or a new container under the same name
    (Compose recreated it: one restart, plus the new container's own restarts).  A container that
    first appears after the first poll (a service scaled up) starts at 0.
    """

    def __init__(self):
        self.tracked = {}  # name -> {id, restart_count, started_at, count}

    def count(self, records):
        """Restarts since the first poll, by name, for the records of one poll."""
        for record in records:
            name = record["name"]
            seen = self.tracked.get(name)
            count = 0
            if seen is not None and seen["id"] != record["id"]:
                count = seen["count"] + 1 + record["restart_count"]
            elif seen is not None:
                more = record["restart_count"] - seen["restart_count"]
                if more <= 0 and record["started_at"] != seen["started_at"]:
                    more = 1
                count = seen["count"] + max(0, more)
            self.tracked[name] = {"id": record["id"], "restart_count": record["restart_count"],
                                  "started_at": record["started_at"], "count": count}
        return {r["name"]: self.tracked[r["name"]]["count"] for r in records}


class Watch:
    """The state of one watch; ``poll()`` once per interval, then ``finish()``."""

    def __init__(self, settings, containers, scrape=None):
        """``containers()`` returns the ``docker inspect`` objects of the project's containers (raising
        ContainerError when the engine cannot be reached); ``scrape()`` returns ``_prometheus.scrape``'s
        ``(report, exposition)``, or is None without a metrics URL."""
        self.settings = settings
        self.containers = containers
        self.scrape = scrape
        self.rules = settings.rules()
        self.restarts = RestartCounter()
        self.rate = ErrorRate(settings) if scrape is not None else None
        self.samples = []
        self.polls = 0
        self.breaches = []
        self.records = []
        self.restart_counts = {}
        self.first_seen = {}  # name -> the breach of each container, once
        self.baseline_names = None

    def poll(self, seconds, now):
        """One observation at ``seconds`` since the start (``now``: aware datetime).  Returns the new breaches."""
        when = (seconds, now)
        self.polls += 1
        sample = {"at_seconds": round(seconds, 1), "time": _stamp(now), "containers": {}}
        found = []
        try:
            inspected = self.containers()
        except ContainerError as exc:
            found.append(breach("health", "docker engine", None, None, when, str(exc)))
            inspected = None
        if inspected is not None:
            found += self._containers(inspected, sample, now, when)
        if self.rate is not None:
            report, exposition = self.scrape()
            sample["metrics"] = self.rate.add(report, exposition)
        self._keep(sample)
        new = [b for b in found if self._first(b)]
        self.breaches += new
        return new

    def _containers(self, inspected, sample, now, when):
        settings = self.settings
        report = _docker.assess(inspected, self.rules, now, project=settings.project,
                                required_services=settings.services, ignore_services=settings.ignore_services)
        counted = [r for r in report["containers"] if r["counted"]
                   and (not settings.services or r["service"] in settings.services)]
        self.records = counted
        counts = self.restarts.count(counted)
        self.restart_counts.update(counts)
        if self.baseline_names is None:
            self.baseline_names = {r["name"] for r in counted}
        found = []
        by_name = {r["name"]: r for r in counted}
        for finding in report["findings"]:
            if finding["state"] != "critical":
                continue
            name = finding["check"][len("container "):] if finding["check"].startswith("container ") else None
            if name is not None and name not in by_name:
                continue  # a container of a service that is not watched
            found.append(breach("health", finding["check"], finding["value"], "critical", when, finding["detail"]))
        for name in sorted(self.baseline_names - set(by_name)):
            found.append(breach("health", "container " + name, None, None, when,
                                "container %s was there when the watch began and is gone" % name))
        for record in counted:
            sample["containers"][record["name"]] = {
                "status": record["status"], "health": record["health"], "state": record["state"],
                "restarts": counts.get(record["name"], 0)}
            restarts = counts.get(record["name"], 0)
            if restarts > settings.max_restarts:
                found.append(breach("restarts", "container " + record["name"], restarts, settings.max_restarts, when,
                                    "container %s restarted %d time%s since the watch began (max_restarts %d)"
                                    % (record["name"], restarts, "" if restarts == 1 else "s", settings.max_restarts)))
        return found

    def _first(self, found):
        """Each (kind, target) is reported once: at the poll that first crossed the threshold."""
        key = (found["kind"], found["target"])
        if key in self.first_seen:
            if found["kind"] == "restarts":  # keep the latest count, the time stays the first crossing
                self.first_seen[key]["value"] = found["value"]
                self.first_seen[key]["detail"] = found["detail"]
            return False
        self.first_seen[key] = found
        return True

    def _keep(self, sample):
        self.samples.append(sample)
        if len(self.samples) > MAX_SAMPLES:
            # Keep the first half and the newest ones; the figures are counted over every poll anyway.
            del self.samples[MAX_SAMPLES // 2]

    @property
    def stops(self):
        """Whether the watch should stop now: a restart or health breach, with fail_fast."""
        return self.settings.fail_fast and any(b["kind"] in ("restarts", "health") for b in self.breaches)

    def finish(self, seconds, now, started):
        """The result: passed, breaches (in the order crossed), figures, samples, msg."""
        if self.rate is not None:
            self.breaches += [b for b in self.rate.judge((seconds, now)) if self._first(b)]
        settings = self.settings
        result = {
            "passed": not self.breaches,
            "project": settings.project,
            "started": _stamp(started),
            "finished": _stamp(now),
            "duration": round(seconds, 1),
            "polls": self.polls,
            "stopped_early": seconds + 1e-6 < settings.watch_seconds,
            "breaches": self.breaches,
            "restarts": dict(sorted(self.restart_counts.items())),
            "restarts_total": sum(self.restart_counts.values()),
            "containers": [{key: r[key] for key in CONTAINER_FIELDS} for r in self.records],
            "samples": self.samples,
            "error_rate": None, "requests": None, "errors": None, "scrapes": None,
        }
        if self.rate is not None:
            rate = self.rate.rate
            result.update(error_rate=None if rate is None else round(rate, 6),
                          requests=_count(self.rate.requests.total), errors=_count(self.rate.failed.total),
                          scrapes={"total": self.rate.scrapes, "good": self.rate.good})
        result["msg"] = self._message(result)
        return result

    def _message(self, result):
        settings = self.settings
        figures = "%d poll%s over %s s, %d restart%s" % (
            result["polls"], "" if result["polls"] == 1 else "s", _prometheus.fmt(result["duration"]),
            result["restarts_total"], "" if result["restarts_total"] == 1 else "s")
        if result["requests"] is not None:
            figures += ", error rate %s (%s of %s requests)" % (
                "n/a" if result["error_rate"] is None else _prometheus.fmt(round(result["error_rate"], 4)),
                result["errors"], result["requests"])
        if result["passed"]:
            return "Compose project %s passed the watch: %s" % (settings.project, figures)
        crossed = ["%s at +%s s (%s): %s" % (b["kind"], _prometheus.fmt(b["at_seconds"]), b["time"], b["detail"])
                   for b in self.breaches]
        return "Compose project %s failed the watch%s (%s) - %s" % (
            settings.project, " and it stopped early" if result["stopped_early"] else "", figures, " | ".join(crossed))


def watch(settings, containers, scrape=None, clock=time.monotonic, sleep=time.sleep, now=None):
    """Poll for ``settings.watch_seconds`` every ``settings.interval``; returns ``Watch.finish()``'s result.

    The first poll is at 0 and the last at ``watch_seconds`` (or at the first restart/health breach
    with fail_fast), so a watch of 30 s every 2 s makes 16 polls.
    """
    now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
    state = Watch(settings, containers, scrape)
    begin, started = clock(), now()
    while True:
        elapsed = clock() - begin
        state.poll(elapsed, now())
        if state.stops or elapsed >= settings.watch_seconds:
            break
        next_poll = state.polls * settings.interval  # on a fixed grid, so slow polls do not drift the end
        while next_poll <= elapsed:
            next_poll += settings.interval
        sleep(max(0.0, min(next_poll, settings.watch_seconds) - (clock() - begin)))
    return state.finish(clock() - begin, now(), started)
