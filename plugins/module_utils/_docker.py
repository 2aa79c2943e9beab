# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker containers as the runbooks see them: inspection through the Docker SDK and the rules
that rate a container's state ``ok``, ``warning`` or ``critical`` (runbook HP7).

The rules read what ``docker inspect`` (``GET /containers/{id}/json``) returns, so they are tested on
captured inspect output; ``DockerEngine`` is the only part that talks to the engine.  Plain Python, no
Ansible imports.  Read-only: nothing here starts, stops or changes a container.
"""

from __future__ import annotations

import datetime
import re
import traceback
from dataclasses import dataclass

from ansible_collections.runbook.ops.plugins.module_utils._errors import ContainerError
from ansible_collections.runbook.ops.plugins.module_utils._status import overview, worst

try:
    import docker
    from docker import errors as docker_errors
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:  # reported by the module with missing_required_lib
    docker = None
    docker_errors = None
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()

# Labels Compose (v1 and v2) puts on the containers it creates.
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"

# States a container cannot serve from.  "restarting" is the engine waiting to start it again.
STOPPED_STATES = ("created", "exited", "dead", "removing")
DETAIL_OUTPUT_CHARS = 200


def parse_time(text):
    """A Docker timestamp (RFC 3339, nanoseconds, ``Z``) as an aware datetime; None for the zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return None
    stamp, fraction, zone = match.groups()
    micro = int(((fraction or "") + "000000")[:6])
    parsed = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(microsecond=micro)
    offset = datetime.timedelta(0) if zone == "Z" else datetime.timedelta(
        hours=int(zone[1:3]), minutes=int(zone[4:6])) * (1 if zone[0] == "+" else -1)
    return parsed.replace(tzinfo=datetime.timezone(offset))


def one_line(text, limit=DETAIL_OUTPUT_CHARS):
    """Health check output on one line: tabs, newlines and runs of spaces become one space."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"


def duration(seconds):
    """``45 s``, ``12 min``, ``3.5 h``, ``2.0 d``: how long ago or how long for, for people."""
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 3600:
        return "%d min" % (seconds // 60)
    if seconds < 172800:
        return "%.1f h" % (seconds / 3600)
    return "%.1f d" % (seconds / 86400)


def container_record(attrs):
    """The facts of one ``docker inspect`` object that the rules and the reports use."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    health = state.get("Health") or None
    log = (health or {}).get("Log") or []
    last = log[-1] if log else {}
    return {
        "id": attrs.get("Id", ""),
        "name": (attrs.get("Name") or "").lstrip("/"),
        "image": config.get("Image"),
        "project": labels.get(COMPOSE_PROJECT_LABEL),
        "service": labels.get(COMPOSE_SERVICE_LABEL) or "",
        "oneoff": labels.get(COMPOSE_ONEOFF_LABEL) == "True",
        "status": state.get("Status") or "unknown",
        "health": health.get("Status") if health else None,
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "restart_count": int(attrs.get("RestartCount") or 0),
        "started_at": state.get("StartedAt"),
        "finished_at": state.get("FinishedAt"),
        "failing_streak": int((health or {}).get("FailingStreak") or 0),
        "last_health_exit": last.get("ExitCode"),
        "last_health_output": one_line(last.get("Output")),
    }


@dataclass
class ContainerRules:
    """How a container's state is rated.  Build with ``ContainerRules.from_dict(params)``.

    Restarts: the engine counts the restarts its restart policy made (``RestartCount``) and keeps
    the time of the latest start (``State.StartedAt``), not the time of each restart.  A running
    container that has restarted (count above 0) and whose latest start lies within
    ``restart_window`` seconds restarted within the window: a warning, and critical when its
    count has reached ``restart_crit_count`` (a restart policy that keeps firing: a crash loop).
    A container that crashes every 12 s is always within the window with a growing count.
    ``OOMKilled`` of a running container (kept from its previous run) is a warning within the window.

    Given an earlier observation of the same container (``previous``), the restarts since then count
    instead: any is a warning, ``restart_crit_count`` or more critical, however long each run lasted.
    """

    require_healthcheck: bool = False
    start_grace: float = 120.0
    restart_window: float = 600.0
    restart_crit_count: int = 3

    @classmethod
    def from_dict(cls, params):
        rules = cls()
        if params.get("require_healthcheck") is not None:
            rules.require_healthcheck = bool(params["require_healthcheck"])
        for key in ("start_grace", "restart_window"):
            if params.get(key) is not None:
                value = float(params[key])
                if value < 0:
                    raise ContainerError("%s must be 0 or more seconds, got %s" % (key, params[key]))
                setattr(rules, key, value)
        if params.get("restart_crit_count") is not None:
            value = int(params["restart_crit_count"])
            if value < 1:
                raise ContainerError("restart_crit_count must be at least 1, got %s" % params["restart_crit_count"])
            rules.restart_crit_count = value
        return rules

    def rate(self, record, now, previous=None):
        """``(state, detail)`` of one container record at ``now`` (an aware datetime).

        ``previous``: the record of the same container from an earlier observation (``id``,
        ``restart_count``, ``observed_at``), or None.
        """
        status = record["status"]
        started = parse_time(record["started_at"])
        up = (now - started).total_seconds() if started else None
        if status in STOPPED_STATES or status == "restarting":
            return "critical", self._stopped(record)
        if status == "paused":
            return "critical", "paused (its processes are frozen)"
        if status != "running":
            return "critical", "in state %s" % status
        found = [self._health(record, up)]
        if record["oom_killed"]:
            # The engine keeps OOMKilled of the previous run after a restart; it is news only while recent.
            recent = up is not None and up <= self.restart_window
            found.append(("warning" if recent else "ok", "killed for lack of memory (OOM) before its latest start"))
        if previous is not None:
            found.extend(self._restarts_since(record, previous, now))
        else:
            found.extend(self._restarts(record, up))
        return worst(s for s, _d in found), "; ".join(d for _s, d in found)

    def _stopped(self, record):
        status = record["status"]
        if status == "created":
            text = "created but never started"
        elif status == "restarting":
            text = "restarting after exit code %s" % record["exit_code"]
        else:
            text = "%s with code %s" % (status, record["exit_code"])
        if record["oom_killed"]:
            text += ", killed for lack of memory (OOM)"
        if record["restart_count"]:
            text += ", restarted %d times" % record["restart_count"]
        return text

    def _health(self, record, up):
        uptime = (", up %s" % duration(up)) if up is not None else ""
        health = record["health"]
        if health == "unhealthy":
            last = record["last_health_output"]
            return "critical", "running, unhealthy (failing streak %d, last check exit code %s%s)" % (
                record["failing_streak"], record["last_health_exit"], (": " + last) if last else "")
        if health == "starting":
            if up is not None and up > self.start_grace:
                return "critical", "running, health check still starting %s after the start (grace %s)" % (
                    duration(up), duration(self.start_grace))
            return "warning", "running, health check starting (grace %s)%s" % (duration(self.start_grace), uptime)
        if health is None:
            if self.require_healthcheck:
                return "warning", "running without a health check (one is required)%s" % uptime
            return "ok", "running, no health check%s" % uptime
        if health == "healthy":
            return "ok", "running, healthy%s" % uptime
        return "warning", "running, health %s%s" % (health, uptime)

    def _restarts(self, record, up):
        count = record["restart_count"]
        if not count or up is None or up > self.restart_window:
            return []
        state = "critical" if count >= self.restart_crit_count else "warning"
        label = "crash loop: " if state == "critical" else ""
        return [(state, "%srestarted %s ago, within the %s window (%d restarts since it was created)"
                 % (label, duration(up), duration(self.restart_window), count))]

    def _restarts_since(self, record, previous, now):
        count = record["restart_count"] - previous["restart_count"]
        if count <= 0:
            return []
        seen = parse_time(previous.get("observed_at"))
        when = (" %s ago" % duration((now - seen).total_seconds())) if seen else ""
        state = "critical" if count >= self.restart_crit_count else "warning"
        return [(state, "%srestarted %d times since the previous observation%s"
                 % ("crash loop: " if state == "critical" else "", count, when))]


def previous_records(previous):
    """Earlier ``containers`` records by container id; each needs ``id`` and ``restart_count``."""
    found = {}
    for position, entry in enumerate(previous or ()):
        if not isinstance(entry, dict) or not entry.get("id") or not isinstance(entry.get("restart_count"), int) \
                or isinstance(entry.get("restart_count"), bool):
            raise ContainerError("previous[%d] needs id and an integer restart_count, as the containers result of an"
                                 " earlier run has" % position)
        found[entry["id"]] = entry
    return found


def assess(inspected, rules, now, project=None, required_services=(), ignore_services=(), missing=(), previous=None):
    """Findings and records of inspected containers.

    ``inspected``: ``docker inspect`` objects (each container once); ``missing``: names asked for that
    do not exist; ``project``: the Compose project asked for (its absence of containers is critical);
    ``required_services``: services that must have a running container; ``ignore_services``: services
    whose containers do not count; ``previous``: records of an earlier observation by id (restarts
    since then are counted instead of judging the latest start).  One-off containers never count.
    """
    records = [container_record(attrs) for attrs in inspected]
    observed_at = now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for record in records:
        record["observed_at"] = observed_at
    findings = []
    for name in missing:
        findings.append(_finding("container " + name, name, "critical", None,
                                 "no container named %s on this host" % name))
    if project:
        in_project = [r for r in records if r["project"] == project]
        if not in_project:
            findings.append(_finding("compose project " + project, project, "critical", 0,
                                     "no containers of Compose project %s" % project))
        for service in required_services:
            if not any(r["service"] == service and r["status"] == "running" and not r["oneoff"] for r in in_project):
                findings.append(_finding("service " + service, service, "critical", None,
                                         "Compose service %s has no running container" % service))
    for record in records:
        record["counted"] = not record["oneoff"] and record["service"] not in ignore_services
        if not record["counted"]:
            continue
        state, detail = rules.rate(record, now, (previous or {}).get(record["id"]))
        record["state"] = state
        findings.append(_finding("container " + record["name"], record["service"] or record["name"], state,
                                 record["health"] or record["status"], detail))
    report = overview(findings, "checks", name_key="check")
    report.update(findings=findings, containers=records)
    return report


def _finding(check, target, state, value, detail):
    return {"check": check, "kind": "container", "target": target, "state": state, "value": value,
            "detail": detail, "reasons": [detail] if state != "ok" else []}


# What the SDK's connection errors (requests/urllib3 text) mean, for the person on call.
_ENGINE_FAILURES = (
    ("No such file or directory", "no Docker socket there (is the engine running?)"),
    ("Connection refused", "connection refused (is the engine running and listening there?)"),
    ("Permission denied", "permission denied on the Docker socket (root or the docker group is needed)"),
    ("timed out", "the engine did not answer in time"),
)


def engine_failure(exc):
    """A short reason for an SDK error: what the failure means, else the library's text on one line."""
    text = str(exc)
    for needle, meaning in _ENGINE_FAILURES:
        if needle.lower() in text.lower():
            return meaning
    return one_line(text)


class DockerEngine:
    """Read-only access to one Docker engine through the SDK (``docker`` library)."""

    def __init__(self, base_url=None, timeout=30):
        if not HAS_DOCKER:
            raise ContainerError("the Python library docker is not installed")
        self.where = base_url or "the default socket (DOCKER_HOST or /var/run/docker.sock)"
        try:
            if base_url:
                self.client = docker.DockerClient(base_url=base_url, timeout=timeout)
            else:
                self.client = docker.from_env(timeout=timeout)
        except docker_errors.DockerException as exc:
            raise ContainerError("cannot reach the Docker engine at %s: %s" % (self.where, engine_failure(exc))) from None

    def _call(self, what, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except docker_errors.NotFound:
            raise
        except (docker_errors.DockerException, OSError) as exc:
            raise ContainerError("%s failed on the Docker engine at %s: %s"
                                 % (what, self.where, engine_failure(exc))) from None

    def inspect(self, name):
        """The inspect object of the container ``name`` (name or id), or None when there is none."""
        try:
            return self._call("inspecting container %s" % name, self.client.api.inspect_container, name)
        except docker_errors.NotFound:
            return None

    def logs(self, name, tail):
        """Byte chunks of the last ``tail`` lines of the container's stdout and stderr, with timestamps."""
        chunks = self._call("reading the logs of container %s" % name, self.client.api.logs, name, stdout=True,
                            stderr=True, stream=True, follow=False, timestamps=True, tail=tail)
        try:
            yield from chunks
        except (docker_errors.DockerException, OSError) as exc:
            raise ContainerError("reading the logs of container %s failed on the Docker engine at %s: %s"
                                 % (name, self.where, engine_failure(exc))) from None

    def with_labels(self, labels):
        """Inspect objects of every container (running or not) carrying all ``labels`` (a dict)."""
        filters = {"label": ["%s=%s" % item for item in sorted(labels.items())]}
        listed = self._call("listing containers", self.client.api.containers, all=True, filters=filters)
        found = []
        for entry in listed:
            attrs = self.inspect(entry["Id"])
            if attrs is not None:  # removed between the listing and the inspect
                found.append(attrs)
        return found


def check_containers(engine_factory, rules, now, names=(), project=None, required_services=(),
                     ignore_services=(), previous=None):
    """Inspect containers by name and/or Compose project and rate them; an unreachable engine is a
    critical finding, not an error."""
    try:
        engine = engine_factory()
        inspected, seen, missing = [], set(), []
        if project:
            for attrs in engine.with_labels({COMPOSE_PROJECT_LABEL: project}):
                seen.add(attrs["Id"])
                inspected.append(attrs)
        for name in names:
            attrs = engine.inspect(name)
            if attrs is None:
                missing.append(name)
            elif attrs["Id"] not in seen:
                seen.add(attrs["Id"])
                inspected.append(attrs)
    except ContainerError as exc:
        finding = _finding("docker engine", project or ", ".join(names), "critical", None, str(exc))
        report = overview([finding], "checks", name_key="check")
        report.update(findings=[finding], containers=[])
        return report
    return assess(inspected, rules, now, project, required_services, ignore_services, missing, previous)
