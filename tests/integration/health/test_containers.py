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
    assert "\t" not in worker["detail"] and "\n" not in worker["detail"]
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
    assert job["state"] == "critical" and job["detail"] == "exited with code 3", job
    missing = findings_by_check(result)["container rbops-no-such-container"]
    assert missing["state"] == "critical", missing
    assert missing["detail"] == "no container named rbops-no-such-container on this host"

    run = run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, containers_only(
        "rbopsnosuchproject", health_check_fail_on="never")))
    missing = findings_by_check(fact(run, RESULT_TASK, "health_check_result"))["compose project rbopsnosuchproject"]
    assert missing["state"] == "critical" and "no containers" in missing["detail"]


def wait_for(container, template, expected, timeout=40):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = subprocess.run(["docker", "inspect", "-f", template, container], capture_output=True, text=True,
                              check=True).stdout.strip()
        if seen == expected:
            return
        time.sleep(0.2)
    raise AssertionError("%s: %s is %r, not %r" % (container, template, seen, expected))


def wait_for_a_fresh_start(container):
    """Wait for the next restart of a crash-looping container, so that the next look sees it running;
    its restart count then."""
    count = int(subprocess.run(["docker", "inspect", "-f", "{{.RestartCount}}", container], capture_output=True,
                               text=True, check=True).stdout)
    wait_for(container, "{{.RestartCount}} {{.State.Status}}", "%d running" % (count + 1))
    return count + 1


def test_a_crash_looping_container_is_critical_not_ok(tmp_path, compose_project, ansible_module):
    """Issue: a container crash-looping every 12 s read OK "restarts 3".

    It runs 12 s and exits; the engine restarts it at once (a run over 10 s resets its back-off), so it is
    almost always seen running, fresh, with a growing restart count.
    """
    project = compose_project({"api": {"command": ["/bin/busybox", "sh", "-c", "sleep 12; exit 1"],
                                       "restart": "always"},
                               "cache": {"command": ["/bin/busybox", "sleep", "600"]}})
    container = project + "_api_1"
    wait_for(container, "{{.RestartCount}} {{.State.Status}}", "2 running")
    run = run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, containers_only(
        project, health_check_compose_services=["api", "cache"], health_check_container_restart_crit_count=2,
        health_check_fail_on="never")))
    assert run.rc == 0, run.output
    result = fact(run, RESULT_TASK, "health_check_result")
    api = findings_by_check(result)["container " + container]
    assert api["state"] == "critical", api
    assert api["detail"].startswith("running, no health check, up ") and "; crash loop: restarted " in api["detail"]
    assert "(2 restarts since it was created)" in api["detail"], api
    assert findings_by_check(result)["container %s_cache_1" % project]["state"] == "ok"
    assert "service api" not in findings_by_check(result)

    # Below the critical count the same restarts are a warning, still not ok.
    wait_for_a_fresh_start(container)
    run = run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, containers_only(
        project, health_check_container_restart_crit_count=10, health_check_fail_on="never")))
    api = findings_by_check(fact(run, RESULT_TASK, "health_check_result"))["container " + container]
    assert api["state"] == "warning", api
    assert "restarted" in api["detail"] and "crash loop" not in api["detail"], api

    # Counted against an earlier observation instead of the latest start (the window alone would say ok).
    first = [c for c in fact(run, RESULT_TASK, "health_check_result")["containers"] if c["service"] == "api"][0]
    count = wait_for_a_fresh_start(container)
    since = ansible_module("runbook.ops.container_health", {
        "containers": [container], "restart_window": 0, "fail_on": "never",
        "previous": [dict(first, restart_count=count - 2)]})
    assert not since.failed, since.result
    finding = since.result["findings"][0]
    assert finding["state"] == "warning", finding
    assert "restarted 2 times since the previous observation" in finding["detail"], finding


def test_container_health_module_directly(ansible_module, compose_project):
    """The module through the Docker SDK: by name, the default engine, an unreachable engine, bad options."""
    project = compose_project({"web": {"command": ["/bin/busybox", "sleep", "600"]}})
    name = project + "_web_1"
    wait_for(name, "{{.State.Status}}", "running")
    run = ansible_module("runbook.ops.container_health", {"containers": [name], "require_healthcheck": True},
                         check=True)
    assert not run.failed and run.result["changed"] is False, run.result
    assert run.result["state"] == "warning" and run.result["containers"][0]["service"] == "web"
    assert run.result["findings"][0]["detail"].startswith("running without a health check (one is required)")
    failing = ansible_module("runbook.ops.container_health", {"containers": [name], "require_healthcheck": True,
                                                              "fail_on": "warning"})
    assert failing.failed and failing.result["state"] == "warning"

    down = ansible_module("runbook.ops.container_health", {"containers": [name], "fail_on": "never",
                                                           "docker_host": "unix:///nonexistent/rbops-docker.sock"})
    assert not down.failed, down.result
    engine = down.result["findings"][0]
    assert engine["check"] == "docker engine" and engine["state"] == "critical", engine
    assert engine["detail"] == ("cannot reach the Docker engine at unix:///nonexistent/rbops-docker.sock: "
                                "no Docker socket there (is the engine running?)"), engine
    assert "Traceback" not in down.output

    for params, message in (({}, "give containers, compose_project or both"),
                            ({"containers": [name], "compose_services": ["web"]}, "need compose_project"),
                            ({"containers": [name], "start_grace": -1}, "start_grace must be 0 or more"),
                            ({"containers": [name], "fail_on": "sometimes"}, "fail_on")):
        bad = ansible_module("runbook.ops.container_health", params)
        assert bad.failed and message in bad.result["msg"], (params, bad.result)
