# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/incident.yml (IN1-IN10) through ansible-playbook against the sample service, the test PostgreSQL
server (a real blocking lock) and Redis (lockout keys under a unique prefix)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat
import subprocess
import sys
import tarfile
import time
import uuid

import pytest
import redis
import yaml

from harness import REPO, run_playbook

from conftest import activity_of

PLAYBOOK = os.path.join(REPO, "playbooks", "incident.yml")
ACTIONS = ("restart_service", "scale_workers", "cancel_blocking_sessions", "cancel_long_queries",
           "terminate_idle_in_transaction", "terminate_idle_connections", "delete_lockout_keys", "docker_prune",
           "maintenance_mode")
TYPES = ("api_unavailable", "database", "queue_backlog", "redis_unavailable", "login_lockouts", "metrics_auth",
         "disk_full", "tls", "bad_gateway", "service_wont_start", "migration_failed", "triage")
RESULT_TASK = "Remember the incident"
STATS_TASK = "Publish the incident for AWX"


def write_inventory(tmp_path, host_vars):
    path = tmp_path / ("inventory-%s.yml" % uuid.uuid4().hex[:8])
    values = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    values.update(host_vars)
    path.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": values}}}))
    return str(path)


def service_vars(svc, tmp_path, **overrides):
    """incident_* settings for a sample service on this host (records in tmp_path/records)."""
    values = {
        "incident_base_url": svc.url,
        "incident_token_check_path": "/api/items",
        "incident_api_token": svc.token,
        "incident_metrics_token": svc.token,
        "incident_log_paths": [os.path.join(svc.data_dir, "logs", "jobs", "*.log")],
        "incident_disk_paths": [svc.base_dir],
        "incident_record_dir": str(tmp_path / "records"),
        "incident_bundle_dir": str(tmp_path / "bundles"),
        "incident_resources_enabled": False,
        "incident_bundle_env_files": [svc.env_file],  # every value of the service's env file is a known secret
    }
    values.update(overrides)
    return values


def write_job_log(svc, job_id, errors=3):
    """A job log with ``errors`` error lines of now (and one fine line), as the service's jobs write them."""
    folder = os.path.join(svc.data_dir, "logs", "jobs")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(os.path.join(folder, "%s.log" % job_id), "w", encoding="utf-8") as handle:
        handle.write("%s INFO job %s started\n" % (now, job_id))
        for number in range(errors):
            handle.write("%s ERROR job %s: upload failed (attempt %d)\n" % (now, job_id, number + 1))


def run_incident(tmp_path, host_vars, check=False, **extra):
    variables = dict(host_vars)
    variables.update(extra)
    return run_playbook(tmp_path, PLAYBOOK, inventory=write_inventory(tmp_path, variables), check=check,
                        env={"ANSIBLE_SHOW_CUSTOM_STATS": "true"})


def incident_of(run):
    record = run.task(RESULT_TASK)
    return record["result"]["ansible_facts"]["incident_result"]


def record_of(incident):
    with open(incident["record"]["json"], encoding="utf-8") as handle:
        return json.load(handle)


def findings_by_check(record, diagnosis):
    return {f["check"]: f for f in record["findings"] if f["diagnosis"] == diagnosis}


def assert_private(path):
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700, path


def test_api_unavailable_against_a_stopped_service_is_sev1(sample_service, tmp_path):
    svc = sample_service()
    svc.stop()
    write_job_log(svc, 5, errors=1)
    run = run_incident(tmp_path, service_vars(svc, tmp_path), incident_type="api_unavailable")
    assert run.rc == 0, run.output
    incident = incident_of(run)
    assert incident["severity"] == "SEV-1", incident
    assert "service" in incident["wrong"]
    record = record_of(incident)
    service = findings_by_check(record, "service")
    assert service["liveness"]["state"] == "critical" and service["readiness"]["state"] == "critical"
    assert record["severity_reason"].startswith("service down")
    assert not record["dry_run"] and record["actions"] == []
    # No Compose project: nothing to restart automatically.
    assert record["proposed"] == []
    for path in incident["record"].values():
        assert_private(path)
    markdown = open(incident["record"]["markdown"], encoding="utf-8").read()
    assert "# Incident Report: " + incident["id"] in markdown
    assert "| Severity | **SEV-1** (Critical - service down) |" in markdown
    assert "## Timeline" in markdown and "diagnosis service (http_probe)" in markdown
    stats = run.task(STATS_TASK)["result"]["ansible_stats"]["data"]["runbook_incident"]["localhost"]
    assert stats["severity"] == "SEV-1" and stats["record"] == incident["record"]
    # The token is never written to the record.
    assert svc.token not in markdown and svc.token not in open(incident["record"]["json"], encoding="utf-8").read()
    # The bundle: fetched beside the record, private, its checksum as recorded, the job log in it, no secret.
    bundle = record["bundle"]
    assert os.path.dirname(bundle["path"]) == os.path.dirname(incident["record"]["json"])
    assert stat.S_IMODE(os.stat(bundle["path"]).st_mode) == 0o600
    with open(bundle["path"], "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == bundle["sha256"]
    with tarfile.open(bundle["path"]) as archive:
        names = archive.getnames()
        content = b"".join(archive.extractfile(m).read() for m in archive.getmembers() if m.isfile())
    assert any(name.endswith("logs/jobs/5.log") for name in names), names
    assert b"upload failed" in content
    assert svc.token.encode() not in content and svc.encryption_key.encode() not in content
    assert "diagnostics bundle " + bundle["path"] in markdown


@pytest.fixture()
def redis_client(redis_url):
    return redis.Redis.from_url(redis_url)


@pytest.fixture()
def lockout_keys(redis_client):
    """lockout_keys(locked=200, other=100) -> (prefix, pattern): keys under a unique prefix, deleted after."""
    prefixes = []

    def make(locked=200, other=100):
        prefix = "rbops-t-%s:" % uuid.uuid4().hex[:8]
        prefixes.append(prefix)
        pipe = redis_client.pipeline()
        for number in range(locked):
            pipe.set("%slogin_attempt:user%d" % (prefix, number), 5)
        for number in range(other):
            pipe.set("%ssession:%d" % (prefix, number), "x")
        pipe.execute()
        return prefix, prefix + "login_attempt*"

    yield make
    for prefix in prefixes:
        keys = list(redis_client.scan_iter(prefix + "*", count=1000))
        if keys:
            redis_client.delete(*keys)


def count(client, pattern):
    return sum(1 for dummy in client.scan_iter(pattern, count=1000))


def redis_vars(redis_url, pattern):
    from urllib.parse import urlparse

    url = urlparse(redis_url)
    return {"incident_redis_enabled": True, "incident_redis_host": url.hostname, "incident_redis_port": url.port or 6379,
            "incident_redis_password": url.password or "", "incident_lockout_pattern": pattern}


def test_triage_names_what_is_wrong(sample_service, tmp_path, redis_url, lockout_keys, pg_conn_params):
    """The service is alive but never ready, and its job logs have errors: triage says so, and only that."""
    svc = sample_service(env={"FAIL_READY": "true"})
    write_job_log(svc, 41, errors=3)
    pattern = lockout_keys(locked=0, other=0)[1]
    host_vars = service_vars(svc, tmp_path, incident_postgres_enabled=True,
                             incident_login_host=pg_conn_params["login_host"],
                             incident_login_port=pg_conn_params["login_port"],
                             incident_login_user=pg_conn_params["login_user"],
                             incident_login_password=pg_conn_params["login_password"],
                             incident_postgres_long_query_warn_seconds=86400,  # other tests share the server
                             incident_postgres_long_query_crit_seconds=86400,
                             incident_postgres_idle_in_transaction_warn_seconds=86400,
                             incident_postgres_idle_in_transaction_crit_seconds=86400,
                             incident_postgres_lock_wait_warn_seconds=86400,
                             incident_postgres_lock_wait_crit_seconds=86400,
                             **redis_vars(redis_url, pattern))
    started = time.monotonic()
    run = run_incident(tmp_path, host_vars, incident_type="triage")
    wall = time.monotonic() - started
    print("\ntriage wall time on the sample service: %.1f s" % wall)
    assert run.rc == 0, run.output
    incident = incident_of(run)
    record = record_of(incident)
    assert {"service", "logs"} <= set(incident["wrong"]), incident
    assert not {"database", "redis", "lockouts", "metrics", "disk"} & set(incident["wrong"]), incident["problems"]
    service = findings_by_check(record, "service")
    assert service["liveness"]["state"] == "ok"
    assert service["readiness"]["state"] == "critical"
    assert service["api token"]["state"] == "ok"  # the token the operator holds matches the running service
    assert findings_by_check(record, "logs")["log files"]["value"] == 3
    assert incident["severity"] == "SEV-1"
    checked = {d["diagnosis"]: d for d in record["diagnoses"]}
    for name in ("containers", "releases", "docker", "tls", "proxy", "resources"):
        assert checked[name]["skipped"].startswith("not configured"), checked[name]
    assert wall < 30, "triage took %.1f s" % wall


def test_login_lockouts_deleted_only_when_remediate_and_named(tmp_path, redis_url, redis_client, lockout_keys):
    prefix, pattern = lockout_keys(locked=300, other=150)
    host_vars = dict(redis_vars(redis_url, pattern), incident_record_dir=str(tmp_path / "records"),
                     incident_bundle_dir=str(tmp_path / "bundles"), incident_disk_paths=[])

    # Diagnosis only: the keys are counted and the deletion proposed, nothing deleted.
    run = run_incident(tmp_path, host_vars, incident_type="login_lockouts")
    assert run.rc == 0, run.output
    incident = incident_of(run)
    assert [p["action"] for p in incident["proposed"]] == ["delete_lockout_keys"]
    assert incident["proposed"][0]["will_run"] is False and "incident_remediate is false" in incident["proposed"][0]["note"]
    assert findings_by_check(record_of(incident), "lockouts")["lockout keys"]["value"] == 300
    assert incident["severity"] == "SEV-3" and incident["actions"] == []
    assert count(redis_client, prefix + "login_attempt*") == 300

    # Remediation on, but the action not named: still nothing deleted.
    run = run_incident(tmp_path, host_vars, incident_type="login_lockouts", incident_remediate=True,
                       incident_actions=["restart_service"])
    assert run.rc == 0, run.output
    incident = incident_of(run)
    assert incident["actions"] == [] and "not in incident_actions" in incident["proposed"][0]["note"]
    assert count(redis_client, prefix + "login_attempt*") == 300

    # Remediation on and named: only the matching keys go.
    run = run_incident(tmp_path, host_vars, incident_type="login_lockouts", incident_remediate=True,
                       incident_actions=["delete_lockout_keys"])
    assert run.rc == 0, run.output
    incident = incident_of(run)
    assert [(a["action"], a["outcome"]) for a in incident["actions"]] == [("delete_lockout_keys", "done")]
    assert incident["actions"][0]["detail"]["deleted"] == 300
    assert count(redis_client, prefix + "login_attempt*") == 0
    assert count(redis_client, prefix + "session:*") == 150
    markdown = open(incident["record"]["markdown"], encoding="utf-8").read()
    assert "| delete_lockout_keys | done |" in markdown.replace(markdown.split("| delete_lockout_keys |")[0], "") or \
        "delete_lockout_keys: done" in markdown


def test_database_blocking_lock_cancelled_when_told(tmp_path, pg_conn_params, blocked_pair):
    blocker, waiter, dbname = blocked_pair
    host_vars = {"incident_postgres_enabled": True, "incident_login_host": pg_conn_params["login_host"],
                 "incident_login_port": pg_conn_params["login_port"], "incident_login_user": pg_conn_params["login_user"],
                 "incident_login_password": pg_conn_params["login_password"], "incident_postgres_database": dbname,
                 "incident_postgres_lock_wait_warn_seconds": 0, "incident_postgres_lock_wait_crit_seconds": 3600,
                 "incident_postgres_target_databases": [dbname],  # never another test's sessions
                 "incident_postgres_grace_period": 1,
                 "incident_postgres_allow_superuser": True,  # the test's sessions log in as the test superuser
                 "incident_record_dir": str(tmp_path / "records"), "incident_bundle_dir": str(tmp_path / "bundles")}

    run = run_incident(tmp_path, host_vars, incident_type="database")
    assert run.rc == 0, run.output
    incident = incident_of(run)
    assert "cancel_blocking_sessions" in [p["action"] for p in incident["proposed"]], incident
    blocked = findings_by_check(record_of(incident), "database")["blocked sessions"]
    assert blocked["state"] == "warning", blocked
    assert activity_of(pg_conn_params, "pid = %s", (blocker.pid,)), "the blocker must still be there"

    run = run_incident(tmp_path, host_vars, incident_type="database", incident_remediate=True,
                       incident_actions=["cancel_blocking_sessions"])
    assert run.rc == 0, run.output
    incident = incident_of(run)
    action = [a for a in incident["actions"] if a["action"] == "cancel_blocking_sessions"]
    assert action and action[0]["outcome"] == "done", incident["actions"]
    pids = {entry["pid"]: entry["outcome"] for entry in action[0]["detail"]["pids"]}
    assert pids.get(blocker.pid) == "terminated", action
    assert waiter.wait(15), "the waiter must get its lock once the blocker is gone"
    assert not activity_of(pg_conn_params, "pid = %s", (blocker.pid,))


def test_every_type_in_check_mode_changes_nothing(sample_service, tmp_path, redis_url, redis_client, lockout_keys,
                                                  pg_conn_params, blocked_pair):
    """All twelve incident types in one check-mode run, with every remediation allowed: the lockout keys, the
    blocking session and the stopped service stay as they were; each record says it was a dry run."""
    blocker, dbname = blocked_pair[0], blocked_pair[2]
    prefix, pattern = lockout_keys(locked=50, other=10)
    svc = sample_service()
    svc.stop()
    write_job_log(svc, 7, errors=2)
    host_vars = service_vars(svc, tmp_path, incident_postgres_enabled=True,
                             incident_login_host=pg_conn_params["login_host"],
                             incident_login_port=pg_conn_params["login_port"],
                             incident_login_user=pg_conn_params["login_user"],
                             incident_login_password=pg_conn_params["login_password"],
                             incident_postgres_database=dbname, incident_postgres_target_databases=[dbname],
                             incident_postgres_lock_wait_warn_seconds=0, incident_postgres_allow_superuser=True,
                             incident_remediate=True, incident_actions=list(ACTIONS),
                             incident_bundle=False,  # its check mode is covered by the Compose test
                             incident_tls_urls=[svc.url], incident_proxy_url=svc.url + "/healthz",
                             **redis_vars(redis_url, pattern))
    play = [{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "Run one incident type", "ansible.builtin.include_role": {"name": "runbook.ops.incident"},
         "vars": {"incident_type": "{{ item }}"}, "loop": list(TYPES)}]}]
    started = time.monotonic()
    run = run_playbook(tmp_path, play, inventory=write_inventory(tmp_path, host_vars), check=True)
    print("\nall %d incident types in check mode: %.1f s" % (len(TYPES), time.monotonic() - started))
    assert run.rc == 0, run.output
    results = [r["result"]["ansible_facts"]["incident_result"] for r in run.records if r["task"] == RESULT_TASK]
    assert [r["type"] for r in results] == list(TYPES)
    for incident in results:
        assert incident["dry_run"] is True
        record = record_of(incident)
        assert record["dry_run"] is True
        assert "Dry run (check mode)" in open(incident["record"]["markdown"], encoding="utf-8").read()
        for action in incident["actions"]:
            assert action["outcome"] == "would run (check mode)", (incident["type"], action)
    by_type = {r["type"]: r for r in results}
    assert [a["action"] for a in by_type["login_lockouts"]["actions"]] == ["delete_lockout_keys"]
    assert "cancel_blocking_sessions" in [a["action"] for a in by_type["database"]["actions"]]
    assert by_type["api_unavailable"]["severity"] == "SEV-1"
    # Nothing changed: keys, the blocking session, the stopped service.
    assert count(redis_client, prefix + "login_attempt*") == 50
    assert activity_of(pg_conn_params, "pid = %s", (blocker.pid,))
    assert not svc.running
    # Only the record (on the controller), and the bundle and remediations saying what they would write or change,
    # report a change; no bundle was written.
    changed = [r["task"] for r in run.records if r.get("status") == "changed" or (r.get("result") or {}).get("changed")]
    unexpected = [task for task in changed
                  if not task.startswith(tuple(["Write the incident record"] + [a + ":" for a in ACTIONS]))]
    assert not unexpected, unexpected


@pytest.fixture()
def stopped_compose_service(tmp_path, busybox_image):
    """A Compose project (host networking) whose one service `web` was stopped: (project_dir, name)."""
    name = "rbopsinc" + uuid.uuid4().hex[:8]
    folder = tmp_path / name
    folder.mkdir()
    (folder / "docker-compose.yml").write_text(yaml.safe_dump({"version": "2.4", "services": {
        "web": {"image": busybox_image, "network_mode": "host", "command": ["sleep", "3600"], "init": True}}}))
    (folder / ".env").write_text("COMPOSE_PROJECT_NAME=%s\n" % name)
    subprocess.run(["docker-compose", "up", "-d"], cwd=folder, check=True, capture_output=True)
    subprocess.run(["docker-compose", "stop", "--timeout", "1"], cwd=folder, check=True, capture_output=True)
    yield str(folder), name
    subprocess.run(["docker-compose", "down", "--timeout", "1"], cwd=folder, check=False, capture_output=True)


def container_status(name):
    out = subprocess.run(["docker", "ps", "-a", "--filter", "label=com.docker.compose.project=%s" % name,
                          "--format", "{{.State}}"], check=True, capture_output=True, text=True).stdout.split()
    return out


def test_service_wont_start_restarts_the_stopped_service_when_told(tmp_path, stopped_compose_service):
    folder, name = stopped_compose_service
    assert container_status(name) == ["exited"]
    host_vars = {"incident_compose_project_dir": folder, "incident_record_dir": str(tmp_path / "records"),
                 "incident_bundle_dir": str(tmp_path / "bundles"), "incident_disk_paths": [folder],
                 "incident_disk_warn_percent": 0}  # any use is a warning: docker_prune is proposed too
    run = run_incident(tmp_path, host_vars, check=True, incident_type="service_wont_start", incident_remediate=True,
                       incident_actions=["restart_service", "docker_prune"])
    assert run.rc == 0, run.output
    incident = incident_of(run)
    assert [(a["action"], a["outcome"]) for a in incident["actions"]] == [("restart_service", "would run (check mode)"),
                                                                          ("docker_prune", "would run (check mode)")]
    assert container_status(name) == ["exited"]
    assert incident["bundle"]["note"].startswith("check mode: would write")
    assert not os.path.exists(host_vars["incident_bundle_dir"]) or not os.listdir(host_vars["incident_bundle_dir"])

    run = run_incident(tmp_path, host_vars, incident_type="service_wont_start", incident_remediate=True,
                       incident_actions=["restart_service"])
    assert run.rc == 0, run.output
    incident = incident_of(run)
    assert incident["severity"] == "SEV-2" and "containers" in incident["wrong"], incident
    assert incident["proposed"][0]["args"] == {"services": ["web"]}
    assert [p["action"] for p in incident["proposed"]] == ["restart_service", "docker_prune"]
    assert [(a["action"], a["outcome"]) for a in incident["actions"]] == [("restart_service", "done")]  # prune not named
    assert container_status(name) == ["running"]
    record = record_of(incident)
    assert {d["diagnosis"]: d["state"] for d in record["diagnoses"]}["releases"] == "ok"
    assert record["bundle"]["path"].endswith(".tar.gz")
