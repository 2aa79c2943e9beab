# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/incident.yml (IN1-IN10) through ansible-playbook against the sample service, the test PostgreSQL
server (a real blocking lock) and Redis (lockout keys under a unique prefix)."""

from __future__ import annotations

import datetime
import json
import os
import stat
import sys
import time
import uuid

import pytest
import redis
import yaml

from harness import REPO, run_playbook

from conftest import activity_of

PLAYBOOK = os.path.join(REPO, "playbooks", "incident.yml")
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
