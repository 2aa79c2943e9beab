# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HP7: Docker health state of a Compose project's containers, through playbooks/health_check.yml."""

from __future__ import annotations

import subprocess
import time

from harness import run_playbook

from health_testlib import HEALTH_PLAYBOOK, fact, findings_by_check, write_inventory
from sample_service_fixture import free_port

RESULT_TASK = "Work out the overall state"


def wait_health(project, expected, timeout=30):
    """Wait until every container of the project reports the expected health (name -> status)."""
    deadline = time.monotonic() + timeout
    states = {}
    while time.monotonic() < deadline:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=" + project],
                             capture_output=True, text=True, check=True).stdout.split()
        states = {}
        for cid in ids:
            out = subprocess.run(["docker", "inspect", "-f",
                                  '{{index .Config.Labels "com.docker.compose.service"}} '
                                  '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}', cid],
                                 capture_output=True, text=True, check=True).stdout.split()
            states[out[0]] = out[1]
        if states == expected:
            return
        time.sleep(0.5)
    raise AssertionError("containers of %s did not reach %s: %s" % (project, expected, states))


def containers_only(project, **overrides):
    values = {"health_check_liveness_path": "", "health_check_readiness_path": "", "health_check_metrics_path": "",
              "health_check_compose_project": project}
    values.update(overrides)
    return values


def test_healthy_and_unhealthy_compose_services(tmp_path, compose_project):
    port = free_port()
    healthcheck = {"interval": "1s", "timeout": "2s", "retries": 2}
    project = compose_project({
        "web": {"command": ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:%d" % port, "-h", "/"],
                "healthcheck": dict(healthcheck, test=["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null",
                                                       "http://127.0.0.1:%d/bin/busybox" % port])},
        "worker": {"command": ["/bin/busybox", "sleep", "600"],
                   "healthcheck": dict(healthcheck, test=["CMD", "/bin/busybox", "sh", "-c", "echo queue stuck; exit 1"])},
        "plain": {"command": ["/bin/busybox", "sleep", "600"]},
    })
    wait_health(project, {"web": "healthy", "worker": "unhealthy", "plain": "none"})

    run = run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, containers_only(
        project, health_check_compose_services=["web", "worker", "plain", "scheduler"])))
    assert run.rc != 0
    result = fact(run, RESULT_TASK, "health_check_result")
    checks = findings_by_check(result)
    web = [f for f in result["checks"] if f["target"] == "web"][0]
    worker = [f for f in result["checks"] if f["target"] == "worker"][0]
    plain = [f for f in result["checks"] if f["target"] == "plain"][0]
    assert web["state"] == "ok" and web["value"] == "healthy", web
    assert worker["state"] == "critical" and "unhealthy" in worker["detail"] and "queue stuck" in worker["detail"], worker
    assert plain["state"] == "ok" and "no health check" in plain["detail"], plain
    assert checks["service scheduler"]["state"] == "critical"
    assert "no running container" in checks["service scheduler"]["detail"]
    assert {c["service"] for c in result["containers"]} == {"web", "worker", "plain"}

    # The unhealthy service ignored (a one-shot job, say): the project is ok.
    run = run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, containers_only(
        project, health_check_compose_ignore_services=["worker"])), check=True)
    assert run.rc == 0, run.output
    assert fact(run, RESULT_TASK, "health_check_result")["state"] == "ok"


def test_stopped_container_missing_project_and_unknown_name(tmp_path, compose_project):
    project = compose_project({"job": {"command": ["/bin/busybox", "sh", "-c", "exit 3"]}})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=" + project,
                              "--filter", "status=exited"], capture_output=True, text=True, check=True).stdout
        if out.strip():
            break
        time.sleep(0.3)
    run = run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, containers_only(
        project, health_check_containers=["rbops-no-such-container"], health_check_fail_on="never")))
    assert run.rc == 0, run.output
    result = fact(run, RESULT_TASK, "health_check_result")
    job = [f for f in result["checks"] if f["target"] == "job"][0]
    assert job["state"] == "critical" and "exited (exit code 3" in job["detail"], job
    inspect = findings_by_check(result)["docker inspect"]
    assert inspect["state"] == "critical" and "rbops-no-such-container" in inspect["detail"]

    run = run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, containers_only(
        "rbopsnosuchproject", health_check_fail_on="never")))
    missing = findings_by_check(fact(run, RESULT_TASK, "health_check_result"))["compose project rbopsnosuchproject"]
    assert missing["state"] == "critical" and "no containers" in missing["detail"]
