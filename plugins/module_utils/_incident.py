# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The incident record: what the diagnoses saw, how severe it is, what to do, what was done.

The ``incident`` role runs read-only diagnoses (``http_probe``, ``container_health``, ``pg_activity``,
``redis_probe``, ``log_scan``, ...) and hands their registered results here as *observations*::

    {"diagnosis": "service", "source": "http_probe", "time": "2026-11-30T22:00:01Z", "result": {...}}
    {"diagnosis": "database", "skipped": "not configured (incident_postgres_enabled)"}
    {"diagnosis": "queue", "source": "redis_probe", "time": "...", "error": "the task failed: ..."}

This file turns them into findings (one shape, ``_findings``), rates the incident SEV-1..SEV-4,
proposes named remediations with the reason for each, and renders the record (Markdown after the
incident report template of the runbooks, and JSON).  Every decision the playbook takes lives here,
so it is unit-tested; the role only runs modules and passes results.  Plain Python, no Ansible.

Severity rules (the runbooks' table: SEV-1 service down, SEV-2 significant degradation, SEV-3 limited
impact, SEV-4 minimal):

* **SEV-1** - an *outage* finding: the service's own endpoints (diagnosis ``service``) or the proxy
  in front of it (``proxy``) are critical (no answer, an error status, not ready), or the database
  server or Redis cannot be reached.
* **SEV-2** - any other critical finding (a container down or crash-looping, a lock pile-up, a queue
  over its critical level, a full disk, a failed migration, an expiring certificate, many lockouts,
  a diagnosis that could not run), except in diagnoses of limited impact (below).
* **SEV-3** - a warning anywhere, or a critical finding of limited impact (``metrics``: monitoring
  cannot scrape, users are not affected).
* **SEV-4** - nothing found wrong.
"""

from __future__ import annotations

import datetime
import json
import re

from ansible_collections.runbook.ops.plugins.module_utils import _files, _findings, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError

INCIDENT_TYPES = ("api_unavailable", "database", "queue_backlog", "redis_unavailable", "login_lockouts",
                  "metrics_auth", "disk_full", "tls", "bad_gateway", "service_wont_start", "migration_failed",
                  "triage")

# The named remediations the role can run (each a task file calling one module).
ACTIONS = ("restart_service", "scale_workers", "cancel_blocking_sessions", "cancel_long_queries",
           "terminate_idle_in_transaction", "terminate_idle_connections", "delete_lockout_keys", "docker_prune",
           "maintenance_mode")

SEVERITIES = ("SEV-1", "SEV-2", "SEV-3", "SEV-4")
SEVERITY_MEANING = {
    "SEV-1": "Critical - service down",
    "SEV-2": "Major - significant degradation",
    "SEV-3": "Minor - limited impact",
    "SEV-4": "Low - minimal impact",
}
# Diagnoses whose critical findings do not reach users (the severity stays at SEV-3).
LIMITED_IMPACT = ("metrics",)

# What each incident type's runbook says to look at next, for the person reading the record.
NEXT_STEPS = {
    "api_unavailable": "If containers crash, look for OOM kills and restart them; if resources are exhausted, scale "
                       "up; if the database is the cause, check its connections; then check DNS, proxy and firewall.",
    "database": "Cancel long-running or blocking queries if needed; restart the database if it does not answer; "
                "fail over to a replica if the primary is down; restore from a backup if data is corrupted.",
    "queue_backlog": "Scale the workers up, restart stuck workers, find the cause of the slowdown; consider "
                     "clearing a queue backed up for more than a day.",
    "redis_unavailable": "There is no safe fallback: keep the application in maintenance mode until Redis is back, "
                         "then check that lockout keys expire and watch for replayed requests.",
    "login_lockouts": "Check AUTH_LOGIN_MAX_ATTEMPTS, AUTH_LOGIN_LOCKOUT_MINUTES and the attempt window; delete the "
                      "lockout keys to unblock users; review the auth logs for brute-force addresses.",
    "metrics_auth": "Check METRICS_ENABLED; with a secret guard the scraper must send the secret header, with a CIDR "
                    "guard its address must be in the allow-list; look for metrics_guard warnings in the logs.",
    "disk_full": "Remove dangling images and stopped containers, rotate or delete old logs, then grow the disk.",
    "tls": "Renew or replace the certificate (rotate_tls.yml), then check the served one.",
    "bad_gateway": "Test the proxy configuration (nginx -t), check that the proxy reaches the backend, restart the "
                   "proxy, check its upstream configuration.",
    "service_wont_start": "Read the logs of the exited containers: a port conflict, a missing variable in the env "
                          "file, a database not ready, permissions of the volumes.",
    "migration_failed": "Check the migration status, roll the release back if needed, fix the migration and run it "
                        "again (or mark it applied by hand when it already was).",
    "triage": "Start with the diagnoses marked critical; run the incident type that matches them for its remediations.",
}

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime(_TIME_FORMAT)


def parse_time(text):
    """An ISO-8601 time (``Z`` or an offset) as an aware datetime, or None."""
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


# --------------------------------------------------------------------------------------------------
# Observations -> findings


def _reasons(item):
    return "; ".join(str(r) for r in item.get("reasons") or ())


def _from_findings(result):
    return [dict(item) for item in result.get("findings") or ()]


def _from_http_probe(result):
    out = []
    for target in result.get("targets") or ():
        facts = []
        if target.get("status") is not None:
            facts.append("HTTP %s" % target["status"])
        if target.get("latency_ms") is not None:
            facts.append("%d ms" % round(float(target["latency_ms"])))
        cert = target.get("cert") or {}
        if isinstance(cert, dict) and cert.get("days_left") is not None:
            facts.append("certificate %s days left" % cert["days_left"])
        detail = _reasons(target)
        detail = "%s (%s)" % (detail, ", ".join(facts)) if detail and facts else detail or ", ".join(facts)
        out.append(_findings.finding(target.get("name") or target.get("url"), target.get("state", "critical"),
                                     target.get("latency_ms"), "ms", detail, target=target.get("url")))
    return out


def _from_metrics_probe(result):
    reasons = [str(r) for r in result.get("reasons") or ()]
    status = result.get("status")
    if reasons:
        state = "critical" if not result.get("series") else "warning"
        detail = "; ".join(reasons)
    else:
        state = "ok"
        detail = "%s series scraped (HTTP %s)" % (result.get("series"), status)
    out = [_findings.finding("metrics endpoint", state, status, None, detail, target=result.get("url"))]
    if state != "critical":
        for check in result.get("checks") or ():
            out.append(_findings.finding("metric " + str(check.get("name")), check.get("state", "critical"),
                                         check.get("value"), None, _reasons(check) or "%s = %s"
                                         % (check.get("selector"), check.get("value"))))
    return out


def _from_path_check(result):
    out = []
    for report in result.get("paths") or ():
        fs = report.get("filesystem") or {}
        usage = ("%s%% used on %s, %s free" % (fs.get("used_percent"), fs.get("mount"),
                                               _findings.human_bytes(fs.get("free_bytes") or 0))) if fs else ""
        out.append(_findings.finding("disk " + str(report.get("path")), report.get("state", "critical"),
                                     fs.get("used_percent"), "%", _reasons(report) or usage, target=report.get("path")))
    return out


def _from_redis_keys(result, levels):
    matched = int(result.get("matched") or 0)
    warn, crit = levels.get("warn", 1), levels.get("crit")
    state = _status.level(matched, warn, crit)
    sample = ", ".join((result.get("sample") or [])[:5])
    detail = "%d keys match %r at %s" % (matched, result.get("pattern"), result.get("target"))
    if sample:
        detail += " (for example %s)" % sample
    return [_findings.finding("lockout keys", state, matched, "keys", detail, target=result.get("pattern"))]


def _from_release_info(result):
    out = []
    current = result.get("current") or None
    if current:
        failure = current.get("failure") or {}
        if current.get("outcome") == "failed":
            gate = failure.get("gate") or "unknown gate"
            out.append(_findings.finding("release %s" % current.get("id"), "critical", gate, None,
                                         "failed at the %s gate: %s" % (gate, failure.get("message") or "no message")))
        else:
            head = current.get("migration_head_after")
            out.append(_findings.finding("release %s" % current.get("id"), "ok", current.get("outcome"), None,
                                         "%s%s" % (current.get("outcome") or "unknown outcome",
                                                   (", migration head %s" % head) if head else "")))
    else:
        out.append(_findings.finding("release history", "ok", None, None, "no release recorded for this project"))
    for drift in result.get("drift") or ():
        detail = "runs %s, the release recorded %s" % (drift.get("running_image"), drift.get("recorded_image"))
        out.append(_findings.finding("drift %s" % drift.get("service"), "warning", drift.get("running_image"), None,
                                     detail))
    return out


_SIZE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}


def parse_size(text):
    """Docker's human sizes (``1.2GB``, ``512MB (40%)``, ``0B``) as bytes, or None."""
    match = re.match(r"\s*([\d.]+)\s*([kmgt]?i?b)", str(text or ""), re.IGNORECASE)
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS.get(match.group(2).lower(), 1))


def _from_docker_df(result):
    """``docker system df --format '{{json .}}'`` output: what Docker holds and could give back."""
    if result.get("rc") not in (0, None):
        detail = _findings.one_line(result.get("stderr") or result.get("msg") or "docker system df failed", 300)
        return [_findings.finding("docker disk usage", "warning", None, None, "could not be read: " + detail)]
    reclaimable, parts = 0, []
    for line in str(result.get("stdout") or "").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        size = parse_size(row.get("Reclaimable")) or 0
        reclaimable += size
        parts.append("%s %s (%s reclaimable)" % (row.get("Type"), row.get("Size"), row.get("Reclaimable")))
    return [_findings.finding("docker disk usage", "ok", reclaimable, "bytes",
                              "; ".join(parts) or "nothing reported", reclaimable_bytes=reclaimable)]


_CONVERTERS = {
    "http_probe": _from_http_probe,
    "metrics_probe": _from_metrics_probe,
    "path_check": _from_path_check,
    "compose_release_info": _from_release_info,
    "docker_df": _from_docker_df,
}
for _name in ("container_health", "log_scan", "redis_probe", "pg_activity", "host_resources"):
    _CONVERTERS[_name] = _from_findings


def check_observation(item, index):
    if not isinstance(item, dict) or not item.get("diagnosis"):
        raise ParameterError("observations[%d] must be a dict with a diagnosis" % index)
    if not item.get("skipped") and not item.get("error"):
        source = item.get("source")
        if source not in _CONVERTERS and source != "redis_keys":
            raise ParameterError("observations[%d] (%s): unknown source %r; known: %s"
                                 % (index, item["diagnosis"], source, ", ".join(sorted(_CONVERTERS) + ["redis_keys"])))
        if not isinstance(item.get("result"), dict):
            raise ParameterError("observations[%d] (%s): result must be the registered result of %s"
                                 % (index, item["diagnosis"], source))
    return item


def observation_findings(item):
    """The findings of one observation, each with its ``diagnosis`` (the report section) and time."""
    diagnosis = str(item["diagnosis"])
    if item.get("skipped"):
        return []
    if item.get("error"):
        found = [_findings.finding("diagnosis %s" % diagnosis, "critical", None, None,
                                   "could not run: %s" % item["error"])]
    else:
        result = item["result"]
        if item["source"] == "redis_keys":
            found = _from_redis_keys(result, item.get("levels") or {})
        else:
            found = _CONVERTERS[item["source"]](result)
    out = []
    for entry in found:
        entry = _findings.normalize(entry, "%s finding" % diagnosis)
        entry.update(diagnosis=diagnosis, section=diagnosis, source=item.get("source"), time=item.get("time"))
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------------
# Severity


def is_outage(finding):
    """Whether a finding means the service is down for its users (see the module docstring)."""
    if finding["state"] != "critical":
        return False
    diagnosis, check = finding.get("diagnosis"), finding["check"]
    if diagnosis in ("service", "proxy"):
        return True
    if diagnosis == "database" and check == "server":
        return True
    return diagnosis in ("redis", "lockouts") and check == "redis"


def severity(findings):
    """``(SEV-n, reason)`` of the findings by the rules of the module docstring."""
    outages = [f for f in findings if is_outage(f)]
    if outages:
        return "SEV-1", "service down: " + "; ".join("%s %s" % (f["check"], f["detail"]) for f in outages[:3])
    major = [f for f in findings if f["state"] == "critical" and f.get("diagnosis") not in LIMITED_IMPACT]
    if major:
        return "SEV-2", "significant degradation: " + "; ".join("%s %s" % (f["check"], f["detail"]) for f in major[:3])
    minor = [f for f in findings if f["state"] != "ok"]
    if minor:
        return "SEV-3", "limited impact: " + "; ".join("%s %s" % (f["check"], f["detail"]) for f in minor[:3])
    return "SEV-4", "nothing found wrong by the diagnoses that ran"


# --------------------------------------------------------------------------------------------------
# Proposals


def _bad(findings, diagnosis, check=None, prefix=None):
    return [f for f in findings if f.get("diagnosis") == diagnosis and f["state"] != "ok"
            and (check is None or f["check"] == check) and (prefix is None or f["check"].startswith(prefix))]


def _observation(observations, diagnosis, source):
    for item in observations:
        if item.get("diagnosis") == diagnosis and item.get("source") == source and isinstance(item.get("result"), dict):
            return item["result"]
    return None


def _failed_services(observations, diagnosis="containers"):
    """Compose services with a counted container rated critical (exited, unhealthy, crash-looping)."""
    result = _observation(observations, diagnosis, "container_health") or {}
    services = []
    for container in result.get("containers") or ():
        if container.get("counted") and container.get("state") == "critical" and container.get("service"):
            if container["service"] not in services:
                services.append(container["service"])
    return services


def _proposal(action, why, **args):
    return {"action": action, "why": _findings.one_line(why, 600), "args": args}


def propose(findings, observations, settings):
    """The remediations the findings call for, in the order to try them, each with why."""
    settings = settings or {}
    out = []
    compose = bool(settings.get("compose_project_dir"))

    # Containers down or crash-looping: restart them (a Compose project only).
    failed = _failed_services(observations)
    proxy_service = settings.get("proxy_service") or ""
    if compose and failed:
        out.append(_proposal("restart_service", "containers of %s are down, unhealthy or restarting" % ", ".join(failed),
                             services=failed))
    elif compose and proxy_service and _bad(findings, "proxy") and not _bad(findings, "service"):
        out.append(_proposal("restart_service", "the proxy answers with errors while the backend is healthy: restart "
                             "the proxy service %s" % proxy_service, services=[proxy_service]))

    # Queue backlog: more workers.
    scale = settings.get("worker_scale") or {}
    queues = _bad(findings, "redis", prefix="queue ")
    if compose and scale and queues:
        why = "%s; scale %s" % ("; ".join("%s %s" % (f["check"], f["detail"]) for f in queues),
                                ", ".join("%s to %s" % kv for kv in sorted(scale.items())))
        out.append(_proposal("scale_workers", why,
                             scale=dict(scale)))

    # Database sessions.
    blocked = _bad(findings, "database", "blocked sessions")
    roots = [node["pid"] for node in (_observation(observations, "database", "pg_activity") or {}).get("lock_tree") or ()
             if isinstance(node, dict) and node.get("pid")]  # pid 0 is a prepared transaction: nothing to signal
    if blocked and roots:
        out.append(_proposal("cancel_blocking_sessions", "blocked sessions: %s; cancel the query of the session%s at the "
                             "root (pid %s), terminate after the grace period if still there"
                             % (blocked[0]["detail"], "s" if len(roots) > 1 else "", ", ".join(str(p) for p in roots)),
                             remediate="cancel", target_blocking=True, target_pids=roots,
                             target_states=["active", "idle in transaction", "idle in transaction (aborted)"]))
    long_queries = _bad(findings, "database", "long-running queries")
    if long_queries:
        out.append(_proposal("cancel_long_queries", long_queries[0]["detail"], remediate="cancel",
                             target_states=["active"], target_min_age=float(settings.get("long_query_seconds", 300))))
    idle_tx = _bad(findings, "database", "idle in transaction")
    if idle_tx:
        out.append(_proposal("terminate_idle_in_transaction", idle_tx[0]["detail"], remediate="terminate",
                             target_states=["idle in transaction", "idle in transaction (aborted)"],
                             target_min_age=float(settings.get("idle_in_transaction_seconds", 60))))
    connections = _bad(findings, "database", "connections")
    if connections:
        age = float(settings.get("idle_connection_seconds", 3600))
        out.append(_proposal("terminate_idle_connections", "%s; terminate connections idle for %s or more"
                             % (connections[0]["detail"], _findings.duration(age)), remediate="terminate",
                             target_states=["idle"], target_min_age=age))

    # Login lockouts.
    lockouts = _bad(findings, "lockouts", "lockout keys")
    if lockouts:
        out.append(_proposal("delete_lockout_keys", lockouts[0]["detail"], pattern=lockouts[0].get("target")))

    # Disk full: give back what Docker holds for nothing.
    disk = _bad(findings, "disk", prefix="disk ")
    if disk and settings.get("docker_prune_available"):
        out.append(_proposal("docker_prune", "%s; remove dangling images and stopped containers of the project"
                             % "; ".join("%s %s" % (f["check"], f["detail"]) for f in disk[:2])))

    # Redis down: no safe fallback, so maintenance mode for the writers until it is back.
    redis_down = [f for f in findings if f.get("diagnosis") in ("redis", "lockouts") and f["check"] == "redis"
                  and f["state"] == "critical"]
    writers = settings.get("maintenance_services") or []
    if compose and redis_down and writers:
        out.append(_proposal("maintenance_mode", "Redis is unavailable (%s) and there is no safe fallback: stop %s until "
                             "it is back" % (redis_down[0]["detail"], ", ".join(writers)), services=list(writers)))
    return out


def decide(proposals, remediate, allowed, check_mode=False):
    """Mark each proposal ``will_run`` (remediate on and the action named) and say why not otherwise."""
    allowed = list(allowed or ())
    unknown = [name for name in allowed if name not in ACTIONS]
    if unknown:
        raise ParameterError("unknown actions %s; the actions are %s" % (", ".join(unknown), ", ".join(ACTIONS)))
    out = []
    for item in proposals:
        item = dict(item)
        named = item["action"] in allowed
        item["allowed"] = named
        item["will_run"] = bool(remediate) and named
        if not remediate:
            item["note"] = "proposed only: incident_remediate is false"
        elif not named:
            item["note"] = "proposed only: %s is not in incident_actions" % item["action"]
        else:
            item["note"] = "check mode: would run, changes nothing" if check_mode else "runs"
        out.append(item)
    return out


# --------------------------------------------------------------------------------------------------
# Actions and the record


def _action_detail(result):
    """What a remediation module reported, shortened for the record (never the raw result)."""
    detail = {}
    remediation = result.get("remediation")
    if isinstance(remediation, dict):  # pg_activity
        detail["outcomes"] = remediation.get("outcomes")
        detail["pids"] = [{"pid": r.get("pid"), "outcome": r.get("outcome"), "detail": r.get("detail")}
                          for r in remediation.get("results") or ()][:20]
        detail["skipped"] = remediation.get("skipped")
    for key in ("matched", "deleted", "dry_run", "restarted", "scale"):  # redis_keys, compose_release
        if key in result:
            detail[key] = result[key]
    return detail


def check_action(item, index):
    """An action the role ran: ``{action, time, result}`` (the registered result) or ``{action, time, error}``.

    The outcome is ``failed``, ``would run (check mode)``, ``done`` or ``nothing to do``."""
    if not isinstance(item, dict) or not item.get("action"):
        raise ParameterError("actions[%d] must be a dict with action and the registered result (or error)" % index)
    result = item.get("result") if isinstance(item.get("result"), dict) else {}
    steps = [r for r in result.get("results") or () if isinstance(r, dict)] or [result]  # a looped task
    changed = any(bool(r.get("changed")) for r in steps)
    check_mode = bool(item.get("check_mode"))
    if item.get("error") or any(r.get("failed") for r in steps):
        outcome = "failed"
        msg = item.get("error") or "; ".join(str(r.get("msg")) for r in steps if r.get("failed"))
    elif check_mode:
        outcome = "would run (check mode)"
        msg = "; ".join(str(r.get("msg")) for r in steps if r.get("msg"))
    else:
        outcome = "done" if changed else "nothing to do"
        msg = "; ".join(str(r.get("msg") or r.get("stdout") or "") for r in steps if r.get("msg") or r.get("stdout"))
    detail = _action_detail(result)
    if not changed and detail.get("skipped"):  # pg_activity left protected sessions alone: say which and why
        msg = "left alone: %s; %s" % ("; ".join("pid %s %s" % (s.get("pid"), s.get("reason")) for s in detail["skipped"]),
                                      msg)
    return {"action": str(item["action"]), "time": item.get("time"), "outcome": outcome, "changed": changed,
            "check_mode": check_mode, "msg": _findings.one_line(msg, 1000), "detail": detail}


def _observation_line(item, found):
    if item.get("skipped"):
        return "diagnosis %s skipped: %s" % (item["diagnosis"], item["skipped"])
    counts = _status.summarize(f["state"] for f in found)
    state = _status.worst(f["state"] for f in found)
    line = "diagnosis %s (%s): %d of %d checks ok, %s" % (
        item["diagnosis"], item.get("source") or "task", counts["ok"], counts["total"], state)
    bad = _findings.problems(found)
    if bad:
        line += " - " + "; ".join(bad[:3])
    return _findings.one_line(line, 600)


def _duration(started, finished):
    begin, end = parse_time(started), parse_time(finished)
    if begin and end:
        return max(0, int((end - begin).total_seconds()))
    return None


def assess(incident_type, observations, settings=None, remediate=False, allowed=(), check_mode=False):
    """Findings, severity and proposals of the observations (what the role needs before acting)."""
    if incident_type not in INCIDENT_TYPES:
        raise ParameterError("incident_type must be one of %s, got %r" % (", ".join(INCIDENT_TYPES), incident_type))
    observations = [check_observation(item, index) for index, item in enumerate(observations or ())]
    findings = []
    for item in observations:
        findings.extend(observation_findings(item))
    sev, reason = severity(findings)
    proposals = decide(propose(findings, observations, settings), remediate, allowed, check_mode)
    diagnoses = []
    for item in observations:
        found = [f for f in findings if f["diagnosis"] == item["diagnosis"]]
        diagnoses.append({"diagnosis": item["diagnosis"], "source": item.get("source"), "time": item.get("time"),
                          "skipped": item.get("skipped"),
                          "state": None if item.get("skipped") else _status.worst(f["state"] for f in found),
                          "line": _observation_line(item, found)})
    wrong = sorted({d["diagnosis"] for d in diagnoses if d["state"] not in (None, "ok")})
    return {"findings": findings, "severity": sev, "severity_reason": _findings.one_line(reason, 600),
            "state": _status.worst(f["state"] for f in findings), "problems": _findings.problems(findings),
            "proposed": proposals, "to_run": [p["action"] for p in proposals if p["will_run"]],
            "diagnoses": diagnoses, "wrong": wrong, "observations": observations}


def build(incident_type, observations, actions=(), settings=None, remediate=False, allowed=(), check_mode=False,
          started=None, finished=None, host=None, service=None, title=None, incident_id=None,
          declared_severity=None, bundle=None):
    """The whole record: the assessment plus identity, timeline, actions and the bundle."""
    assessment = assess(incident_type, observations, settings, remediate, allowed, check_mode)
    actions = [check_action(item, index) for index, item in enumerate(actions or ())]
    finished = finished or utc_now()
    started = started or finished
    stamp = (parse_time(started) or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    sev, reason = assessment["severity"], assessment["severity_reason"]
    if declared_severity:
        if declared_severity not in SEVERITIES:
            raise ParameterError("severity must be one of %s, got %r" % (", ".join(SEVERITIES), declared_severity))
        reason = "declared %s by the operator (the diagnoses rate it %s: %s)" % (declared_severity, sev, reason)
        sev = declared_severity
    timeline = [{"time": started, "event": "incident playbook started: %s on %s%s"
                 % (incident_type, host or "host", " (check mode: a dry run)" if check_mode else "")}]
    for item, line in zip(assessment["observations"], assessment["diagnoses"]):
        timeline.append({"time": item.get("time") or started, "event": line["line"]})
    if bundle:
        when = bundle.get("time") or started
        if bundle.get("path"):
            timeline.append({"time": when, "event": "diagnostics bundle %s (%s, sha256 %s)"
                             % (bundle["path"], _findings.human_bytes(bundle.get("size") or 0),
                                str(bundle.get("sha256") or "?")[:16])})
        elif bundle.get("note"):
            timeline.append({"time": when, "event": "diagnostics bundle not collected: %s" % bundle["note"]})
    proposed = [p["action"] for p in assessment["proposed"]]
    timeline.append({"time": max([t["time"] for t in timeline if t["time"]] or [started]),
                     "event": "assessed %s (%s); proposed: %s" % (sev, reason, ", ".join(proposed) or "nothing")})
    for action in actions:
        timeline.append({"time": action["time"] or finished, "event": "action %s: %s%s" % (
            action["action"], action["outcome"], (" - " + action["msg"]) if action["msg"] else "")})
    timeline.append({"time": finished, "event": "incident record written"})
    timeline.sort(key=lambda t: parse_time(t["time"]) or datetime.datetime.min.replace(tzinfo=datetime.timezone.utc))
    failed_actions = [a for a in actions if a["outcome"] == "failed"]
    if failed_actions:
        status = "Investigating (an action failed)"
    elif actions and not check_mode:
        status = "Monitoring (remediation applied)"
    elif assessment["state"] == "ok":
        status = "Resolved or not reproduced (nothing found wrong)"
    else:
        status = "Investigating"
    record = {
        "id": incident_id or "INC-%s-%s" % (re.sub(r"[^A-Za-z0-9]+", "-", host or "host").strip("-"), stamp),
        "title": title or "%s on %s" % (incident_type.replace("_", " "), host or "host"),
        "type": incident_type,
        "host": host,
        "service": service,
        "severity": sev,
        "severity_meaning": SEVERITY_MEANING[sev],
        "severity_reason": reason,
        "status": status,
        "dry_run": bool(check_mode),
        "started": started,
        "finished": finished,
        "duration_seconds": _duration(started, finished),
        "state": assessment["state"],
        "wrong": assessment["wrong"],
        "problems": assessment["problems"],
        "diagnoses": assessment["diagnoses"],
        "findings": assessment["findings"],
        "proposed": assessment["proposed"],
        "actions": actions,
        "timeline": timeline,
        "bundle": bundle or None,
        "next_steps": NEXT_STEPS[incident_type],
    }
    record["summary"] = summary(record)
    return record


def summary(record):
    """One line for logs, set_stats and chat."""
    line = "%s %s %s: %s" % (record["id"], record["severity"], record["type"], record["status"].lower())
    if record["wrong"]:
        line += "; wrong: %s" % ", ".join(record["wrong"])
    if record["proposed"]:
        line += "; proposed: %s" % ", ".join(p["action"] for p in record["proposed"])
    if record["actions"]:
        line += "; done: %s" % ", ".join("%s %s" % (a["action"], a["outcome"]) for a in record["actions"])
    if record["dry_run"]:
        line += " (check mode: nothing changed)"
    return line


# --------------------------------------------------------------------------------------------------
# Rendering


def _cell(text):
    return _findings.one_line(text).replace("|", "\\|")


def _time_only(text, started):
    """``T+<offset>`` beside the clock time, as the template's timeline reads."""
    begin, when = parse_time(started), parse_time(text)
    if begin and when:
        return "%s (T+%s)" % (text, _findings.duration((when - begin).total_seconds()))
    return str(text or "-")


def markdown(record):
    """The record after the incident report template of the runbooks."""
    lines = ["# Incident Report: %s" % record["id"], ""]
    if record["dry_run"]:
        lines += ["> **Dry run (check mode).** The diagnoses ran; no remediation changed anything. "
                  "Actions below say what would have run.", ""]
    duration = record["duration_seconds"]
    lines += ["## Summary", "", "| Field | Value |", "|-------|-------|",
              "| Title | %s |" % _cell(record["title"]),
              "| Date | %s |" % (record["started"] or "-")[:10],
              "| Duration | %s |" % (_findings.duration(duration) if duration is not None else "-"),
              "| Severity | **%s** (%s) |" % (record["severity"], record["severity_meaning"]),
              "| Status | %s |" % _cell(record["status"]),
              "| Type | %s |" % record["type"],
              "| Affected | %s |" % _cell(" / ".join(x for x in (record.get("service"), record.get("host")) if x) or "-"),
              "", "## Impact", "", "- %s" % _findings.one_line(record["severity_reason"]), ""]
    lines += ["## Root Cause", "",
              "To be confirmed by a person. What the diagnoses found wrong, worst first:", ""]
    lines += ["- " + _findings.one_line(p) for p in record["problems"]] or ["- nothing"]
    lines += ["", "## Timeline", "", "| Time | Event |", "|------|-------|"]
    for entry in record["timeline"]:
        lines.append("| %s | %s |" % (_cell(_time_only(entry["time"], record["started"])), _cell(entry["event"])))
    lines += ["", "## Detection", "", "- Alert source: the incident playbook (runbook.ops incident role)",
              "- Detection method: automated diagnosis (%s)" % ", ".join(
                  d["diagnosis"] for d in record["diagnoses"] if not d["skipped"]) or "none", ""]
    skipped = [d for d in record["diagnoses"] if d["skipped"]]
    if skipped:
        lines += ["Not checked:", ""] + ["- %s: %s" % (d["diagnosis"], _findings.one_line(d["skipped"])) for d in skipped]
        lines.append("")
    lines += ["## Findings", ""]
    for diagnosis in record["diagnoses"]:
        if diagnosis["skipped"]:
            continue
        chosen = [f for f in record["findings"] if f["diagnosis"] == diagnosis["diagnosis"]]
        lines += ["### %s (%s)" % (diagnosis["diagnosis"], (diagnosis["state"] or "-").upper()), ""]
        lines += _findings.table(chosen) if chosen else ["No findings."]
        lines.append("")
    lines += ["## Response", "", "### Proposed remediations", ""]
    if record["proposed"]:
        lines += ["| Action | Why | Decision |", "|---|---|---|"]
        for item in record["proposed"]:
            lines.append("| %s | %s | %s |" % (item["action"], _cell(item["why"]), _cell(item["note"])))
    else:
        lines.append("None: the findings call for no automated remediation.")
    lines += ["", "### Actions taken", ""]
    if record["actions"]:
        lines += ["| Time | Action | Outcome | Detail |", "|---|---|---|---|"]
        for item in record["actions"]:
            cells = (_cell(item["time"] or "-"), item["action"], _cell(item["outcome"]), _cell(item["msg"]))
            lines.append("| %s | %s | %s | %s |" % cells)
    else:
        lines.append("None.")
    lines += ["", "### Next steps from the runbook", "", record["next_steps"], "",
              "## Lessons Learned", "", "### What went well", "- (to be filled in at the review)", "",
              "### What went poorly", "- (to be filled in at the review)", "",
              "### Action Items", "| Action | Owner | Due Date |", "|--------|-------|----------|",
              "| (to be filled in) | | |", "", "## Attachments", ""]
    bundle = record.get("bundle") or {}
    if bundle.get("path"):
        size = _findings.human_bytes(bundle.get("size") or 0)
        lines.append("- Diagnostics bundle: `%s` (%s, sha256 `%s`)" % (bundle["path"], size, bundle.get("sha256") or "?"))
        if bundle.get("host_path") and bundle["host_path"] != bundle["path"]:
            lines.append("- On the host: `%s`" % bundle["host_path"])
    else:
        lines.append("- Diagnostics bundle: not collected%s" % ((": " + bundle["note"]) if bundle.get("note") else ""))
    if record.get("record_files"):
        lines.append("- This record as JSON: `%s`" % record["record_files"]["json"])
    return "\n".join(lines)


def record_paths(directory, name):
    return _findings.report_paths(directory, name)


def write(record, directory, name):
    """Write ``<name>.md`` and ``<name>.json`` atomically, mode 0600, in a 0700 directory."""
    if not name or "/" in name or name in (".", ".."):
        raise ParameterError("record_name must be a file name without a directory, got %r" % name)
    paths = record_paths(directory, name)
    _files.make_private_dirs(directory)
    document = dict(record, record_files=paths)
    _files.atomic_write(paths["json"], data=(json.dumps(document, indent=2, default=str) + "\n").encode("utf-8"),
                        mode=0o600, keep_attributes=False)
    _files.atomic_write(paths["markdown"], data=(markdown(document) + "\n").encode("utf-8"), mode=0o600,
                        keep_attributes=False)
    return paths
