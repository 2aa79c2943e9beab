# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The incident record: findings from module results, severity rules, proposals, actions, rendering."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _incident
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError

T0 = "2026-11-30T22:00:00Z"


def http(state="ok", name="readiness", status=200, reasons=()):
    return {"diagnosis": "service", "source": "http_probe", "time": "2026-11-30T22:00:01Z",
            "result": {"targets": [{"name": name, "url": "http://127.0.0.1:8780/readyz", "state": state, "status": status,
                                    "latency_ms": 3.2, "reasons": list(reasons)}]}}


def pg(findings, lock_tree=()):
    return {"diagnosis": "database", "source": "pg_activity", "time": "2026-11-30T22:00:02Z",
            "result": {"findings": findings, "lock_tree": list(lock_tree)}}


def finding(check, state, detail="x", value=None):
    return {"check": check, "state": state, "value": value, "unit": None, "detail": detail}


def containers(*records):
    return {"diagnosis": "containers", "source": "container_health", "time": "2026-11-30T22:00:03Z",
            "result": {"findings": [finding("container %s" % r["name"], r["state"]) for r in records],
                       "containers": list(records)}}


def lockouts(matched, pattern="login_attempt*"):
    return {"diagnosis": "lockouts", "source": "redis_keys", "time": "2026-11-30T22:00:04Z", "levels": {"warn": 1, "crit": 1000},
            "result": {"matched": matched, "pattern": pattern, "target": "127.0.0.1:6379/0", "sample": ["login_attempt:a"]}}


def redis(state="ok", queues=()):
    found = [finding("redis", state, "PING answered" if state == "ok" else "connection refused")]
    found += [finding("queue %s" % key, level, "%d items" % length, length) for key, level, length in queues]
    return {"diagnosis": "redis", "source": "redis_probe", "time": "2026-11-30T22:00:05Z", "result": {"findings": found}}


# Severity ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("observations, expected", [
    ([http("critical", status=503, reasons=["status 503"])], "SEV-1"),                  # not ready: down for users
    ([pg([finding("server", "critical", "connection refused")])], "SEV-1"),            # database unreachable
    ([redis("critical")], "SEV-1"),                                                   # Redis down, no fallback
    ([http(), pg([finding("server", "ok"), finding("blocked sessions", "critical")])], "SEV-2"),
    ([lockouts(5000)], "SEV-2"),
    ([{"diagnosis": "metrics", "source": "metrics_probe",
       "result": {"reasons": ["status 401"], "series": 0, "status": 401}}], "SEV-3"),  # monitoring only
    ([http("warning", reasons=["slow: 700 ms"])], "SEV-3"),
    ([lockouts(3)], "SEV-3"),
    ([http(), lockouts(0)], "SEV-4"),
    ([], "SEV-4"),
    ([{"diagnosis": "queue", "error": "task failed: Redis down"}], "SEV-2"),            # could not look: not ok
])
def test_severity_rules(observations, expected):
    assert _incident.assess("triage", observations)["severity"] == expected


def test_a_declared_severity_wins_and_the_computed_one_is_kept():
    record = _incident.build("api_unavailable", [http()], declared_severity="SEV-2", started=T0, host="app1")
    assert record["severity"] == "SEV-2"
    assert "declared SEV-2 by the operator" in record["severity_reason"] and "SEV-4" in record["severity_reason"]
    with pytest.raises(ParameterError, match="SEV-1"):
        _incident.build("api_unavailable", [], declared_severity="SEV-5")


# Findings from module results ----------------------------------------------------------------------


def test_findings_carry_their_diagnosis_and_time():
    found = _incident.assess("triage", [http("critical", status=None, reasons=["connection refused"])])["findings"]
    assert found == [{"check": "readiness", "state": "critical", "value": 3.2, "unit": "ms",
                      "detail": "connection refused (3 ms)", "target": "http://127.0.0.1:8780/readyz",
                      "diagnosis": "service", "section": "service", "source": "http_probe",
                      "time": "2026-11-30T22:00:01Z"}]


def test_a_failed_or_skipped_diagnosis():
    assessment = _incident.assess("triage", [{"diagnosis": "database", "error": "connection refused"},
                                             {"diagnosis": "tls", "skipped": "not configured"}])
    assert [f["check"] for f in assessment["findings"]] == ["diagnosis database"]
    assert assessment["findings"][0]["state"] == "critical"
    assert assessment["wrong"] == ["database"]
    assert [d["skipped"] for d in assessment["diagnoses"]] == [None, "not configured"]


def test_metrics_endpoint_refused_and_ok():
    refused = {"diagnosis": "metrics", "source": "metrics_probe",
               "result": {"reasons": ["status 401, expected 200"], "series": 0, "status": 401, "checks": [
                   {"name": "up", "state": "critical", "value": None, "reasons": ["no series"]}]}}
    found = _incident.assess("metrics_auth", [refused])["findings"]
    assert [(f["check"], f["state"]) for f in found] == [("metrics endpoint", "critical")]  # checks not evaluated
    fine = {"diagnosis": "metrics", "source": "metrics_probe", "result": {"reasons": [], "series": 40, "status": 200}}
    assert _incident.assess("metrics_auth", [fine])["findings"][0]["detail"] == "40 series scraped (HTTP 200)"


def test_path_check_release_info_and_docker_df():
    disk = {"diagnosis": "disk", "source": "path_check", "result": {"paths": [
        {"path": "/srv", "state": "critical", "reasons": ["95% used"],
         "filesystem": {"used_percent": 95, "mount": "/", "free_bytes": 1024}}]}}
    releases = {"diagnosis": "releases", "source": "compose_release_info", "result": {
        "current": {"id": "r1-v3", "outcome": "failed", "failure": {"gate": "migration", "message": "exit 1"}},
        "drift": [{"service": "api", "running_image": "app:v9", "recorded_image": "app:v3"}]}}
    df = {"diagnosis": "docker", "source": "docker_df", "result": {"rc": 0, "stdout": "\n".join([
        json.dumps({"Type": "Images", "Size": "2GB", "Reclaimable": "1.5GB (75%)"}),
        json.dumps({"Type": "Containers", "Size": "10MB", "Reclaimable": "0B (0%)"})])}}
    found = {f["check"]: f for f in _incident.assess("triage", [disk, releases, df])["findings"]}
    assert found["disk /srv"]["state"] == "critical" and found["disk /srv"]["value"] == 95
    assert found["release r1-v3"]["state"] == "critical" and "migration gate: exit 1" in found["release r1-v3"]["detail"]
    assert found["drift api"]["state"] == "warning"
    assert found["docker disk usage"]["value"] == 1500000000
    broken = {"diagnosis": "docker", "source": "docker_df", "result": {"rc": 1, "stderr": "Cannot connect"}}
    assert _incident.assess("disk_full", [broken])["findings"][0]["state"] == "warning"


@pytest.mark.parametrize("text, size", [("1.5GB", 1500000000), ("512MB (40%)", 512000000), ("0B", 0), ("", None),
                                        ("12kB", 12000)])
def test_parse_size(text, size):
    assert _incident.parse_size(text) == size


def test_bad_observations_are_refused():
    with pytest.raises(ParameterError, match="diagnosis"):
        _incident.assess("triage", [{"source": "http_probe"}])
    with pytest.raises(ParameterError, match="unknown source 'nmap'"):
        _incident.assess("triage", [{"diagnosis": "x", "source": "nmap", "result": {}}])
    with pytest.raises(ParameterError, match="registered result"):
        _incident.assess("triage", [{"diagnosis": "x", "source": "log_scan"}])
    with pytest.raises(ParameterError, match="incident_type"):
        _incident.assess("outage", [])


# Proposals -----------------------------------------------------------------------------------------


COMPOSE = {"compose_project_dir": "/srv/app"}


def actions_of(assessment):
    return {p["action"]: p for p in assessment["proposed"]}


def test_restart_only_the_failed_services_of_a_compose_project():
    observations = [containers({"name": "app_api_1", "service": "api", "counted": True, "state": "critical"},
                               {"name": "app_worker_1", "service": "worker", "counted": True, "state": "ok"},
                               {"name": "app_migrate_1", "service": "migrate", "counted": False, "state": "critical"})]
    proposed = actions_of(_incident.assess("api_unavailable", observations, COMPOSE))
    assert proposed["restart_service"]["args"] == {"services": ["api"]}
    # Without a Compose project there is nothing the role could restart.
    assert _incident.assess("api_unavailable", observations, {})["proposed"] == []


def test_bad_gateway_restarts_the_proxy_only_when_the_backend_is_healthy():
    proxy = {"diagnosis": "proxy", "source": "http_probe", "result": {"targets": [
        {"name": "proxy", "url": "http://127.0.0.1/", "state": "critical", "status": 502, "reasons": ["status 502"]}]}}
    settings = dict(COMPOSE, proxy_service="nginx")
    assert actions_of(_incident.assess("bad_gateway", [proxy, http()], settings))["restart_service"]["args"] == \
        {"services": ["nginx"]}
    assert "restart_service" not in actions_of(_incident.assess("bad_gateway", [proxy, http("critical")], settings))


def test_scale_workers_on_a_backlog():
    settings = dict(COMPOSE, worker_scale={"worker": 4})
    proposed = actions_of(_incident.assess("queue_backlog", [redis(queues=[("jobs", "critical", 5000)])], settings))
    assert proposed["scale_workers"]["args"] == {"scale": {"worker": 4}}
    assert "jobs" in proposed["scale_workers"]["why"]
    assert _incident.assess("queue_backlog", [redis(queues=[("jobs", "ok", 5)])], settings)["proposed"] == []


def test_database_proposals_follow_the_findings():
    observations = [pg([finding("server", "ok"), finding("blocked sessions", "warning", "1 session waits"),
                        finding("long-running queries", "critical", "1 query for 2h"),
                        finding("idle in transaction", "warning"), finding("connections", "critical", "96%")],
                       lock_tree=[{"pid": 4240, "blocks": [{"pid": 4242}]}, {"pid": 0, "detail": "prepared"}])]
    settings = {"long_query_seconds": 300, "idle_in_transaction_seconds": 60, "idle_connection_seconds": 3600}
    proposed = actions_of(_incident.assess("database", observations, settings))
    assert list(proposed) == ["cancel_blocking_sessions", "cancel_long_queries", "terminate_idle_in_transaction",
                              "terminate_idle_connections"]
    assert proposed["cancel_blocking_sessions"]["args"]["target_pids"] == [4240]  # the root, never pid 0
    assert proposed["cancel_long_queries"]["args"] == {
        "remediate": "cancel", "target_states": ["active"], "target_min_age": 300.0}
    assert proposed["terminate_idle_connections"]["args"]["target_states"] == ["idle"]
    assert proposed["terminate_idle_connections"]["args"]["target_min_age"] == 3600.0
    # A blocked-sessions finding without a visible root proposes nothing to cancel.
    lone = [pg([finding("blocked sessions", "warning")], lock_tree=[{"pid": 0}])]
    assert _incident.assess("database", lone)["proposed"] == []


def test_lockouts_prune_and_maintenance_mode():
    assert actions_of(_incident.assess("login_lockouts", [lockouts(20, "p:login_attempt*")]))[
        "delete_lockout_keys"]["args"] == {"pattern": "p:login_attempt*"}
    assert _incident.assess("login_lockouts", [lockouts(0)])["proposed"] == []
    disk = {"diagnosis": "disk", "source": "path_check", "result": {"paths": [
        {"path": "/", "state": "critical", "reasons": ["full"], "filesystem": None}]}}
    assert "docker_prune" in actions_of(_incident.assess("disk_full", [disk], dict(COMPOSE, docker_prune_available=True)))
    assert _incident.assess("disk_full", [disk], COMPOSE)["proposed"] == []
    settings = dict(COMPOSE, maintenance_services=["api", "worker"])
    proposed = actions_of(_incident.assess("redis_unavailable", [redis("critical")], settings))
    assert proposed["maintenance_mode"]["args"] == {"services": ["api", "worker"]}
    assert _incident.assess("redis_unavailable", [redis("ok")], settings)["proposed"] == []


def test_an_action_runs_only_when_remediate_and_named():
    observations = [lockouts(20)]
    off = _incident.assess("login_lockouts", observations, remediate=False, allowed=["delete_lockout_keys"])
    assert off["to_run"] == [] and off["proposed"][0]["note"] == "proposed only: incident_remediate is false"
    unnamed = _incident.assess("login_lockouts", observations, remediate=True, allowed=["restart_service"])
    assert unnamed["to_run"] == [] and "not in incident_actions" in unnamed["proposed"][0]["note"]
    on = _incident.assess("login_lockouts", observations, remediate=True, allowed=["delete_lockout_keys"])
    assert on["to_run"] == ["delete_lockout_keys"] and on["proposed"][0]["will_run"]
    dry = _incident.assess("login_lockouts", observations, remediate=True, allowed=["delete_lockout_keys"], check_mode=True)
    assert dry["to_run"] == ["delete_lockout_keys"] and dry["proposed"][0]["note"].startswith("check mode")
    with pytest.raises(ParameterError, match="unknown actions rm_rf"):
        _incident.assess("login_lockouts", observations, remediate=True, allowed=["rm_rf"])


# Actions -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("item, outcome", [
    ({"action": "delete_lockout_keys", "result": {"changed": True, "deleted": 5, "msg": "deleted 5 keys"}}, "done"),
    ({"action": "delete_lockout_keys", "result": {"changed": False, "deleted": 0, "msg": "no key"}}, "nothing to do"),
    ({"action": "delete_lockout_keys", "check_mode": True, "result": {"changed": True, "matched": 5}},
     "would run (check mode)"),
    ({"action": "restart_service", "error": "task failed: lock held"}, "failed"),
    ({"action": "docker_prune", "result": {"changed": True, "results": [
        {"changed": False, "stdout": "Total 0B"}, {"changed": True, "stdout": "Deleted: x"}]}},
     "done"),
    ({"action": "docker_prune", "result": {"results": [{"failed": True, "msg": "no docker"}]}}, "failed"),
])
def test_action_outcomes(item, outcome):
    assert _incident.check_action(item, 0)["outcome"] == outcome


def test_pg_action_says_which_sessions_were_left_alone():
    action = _incident.check_action({"action": "cancel_blocking_sessions", "result": {
        "changed": False, "msg": "ok", "remediation": {"outcomes": {}, "results": [],
                                                       "skipped": [{"pid": 7, "reason": "superuser session"}]}}}, 0)
    assert action["outcome"] == "nothing to do"
    assert action["msg"].startswith("left alone: pid 7 superuser session")


# The record ----------------------------------------------------------------------------------------


def test_record_timeline_status_and_summary():
    record = _incident.build(
        "login_lockouts", [lockouts(20)],
        actions=[{"action": "delete_lockout_keys", "time": "2026-11-30T22:00:09Z",
                  "result": {"changed": True, "deleted": 20, "msg": "deleted 20 keys"}}],
        remediate=True, allowed=["delete_lockout_keys"], started=T0, finished="2026-11-30T22:00:10Z", host="app1",
        service="api", bundle={"path": "/r/b.tar.gz", "size": 2048, "sha256": "ab" * 32, "time": "2026-11-30T22:00:06Z"})
    assert record["id"] == "INC-app1-20261130T220000Z"
    assert record["status"] == "Monitoring (remediation applied)"
    assert record["duration_seconds"] == 10
    times = [entry["time"] for entry in record["timeline"]]
    assert times == sorted(times)
    events = [entry["event"] for entry in record["timeline"]]
    assert events[0].startswith("incident playbook started: login_lockouts on app1")
    assert any(e.startswith("diagnostics bundle /r/b.tar.gz (2.0 KiB") for e in events)
    assert any(e.startswith("action delete_lockout_keys: done") for e in events)
    assert events[-1] == "incident record written"
    assert record["summary"] == ("INC-app1-20261130T220000Z SEV-3 login_lockouts: monitoring (remediation applied); "
                                 "wrong: lockouts; proposed: delete_lockout_keys; done: delete_lockout_keys done")


def test_markdown_follows_the_template_and_marks_a_dry_run():
    record = _incident.build("api_unavailable", [http("critical", status=503, reasons=["status 503 | not ready"])],
                             check_mode=True, started=T0, finished="2026-11-30T22:01:30Z", host="app1",
                             bundle={"note": "module missing"})
    text = _incident.markdown(record)
    for heading in ("# Incident Report: INC-app1-", "## Summary", "## Impact", "## Root Cause", "## Timeline",
                    "## Detection", "## Findings", "## Response", "## Lessons Learned", "## Attachments"):
        assert heading in text
    assert "**Dry run (check mode).**" in text
    assert "| Duration | 1m30s |" in text and "| Severity | **SEV-1** (Critical - service down) |" in text
    assert "status 503 \\| not ready" in text  # a pipe in a detail does not break the table
    assert "| 2026-11-30T22:00:01Z (T+1s) |" in text
    assert "Diagnostics bundle: not collected: module missing" in text
    assert record["summary"].endswith("(check mode: nothing changed)")


def test_write_is_private_and_atomic(tmp_path):
    record = _incident.build("tls", [], started=T0, host="app1")
    directory = str(tmp_path / "a" / "records")
    paths = _incident.write(record, directory, "incident-tls-app1")
    for path in paths.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    document = json.loads(open(paths["json"], encoding="utf-8").read())
    assert document["record_files"] == paths and document["severity"] == "SEV-4"
    assert "This record as JSON: `%s`" % paths["json"] in open(paths["markdown"], encoding="utf-8").read()
    assert sorted(os.listdir(directory)) == ["incident-tls-app1.json", "incident-tls-app1.md"]
    with pytest.raises(ParameterError, match="file name"):
        _incident.write(record, directory, "../x")
