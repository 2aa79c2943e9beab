# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DR5 through playbooks/rolling_restart.yml: two replicas of the sample service behind an nginx of the test's
own, a client polling /readyz through nginx every 20 ms the whole time. Zero failed requests; both replicas
restarted (new start times); a replica that does not come back stops the run and stays drained."""

from __future__ import annotations

import os
import re
import sys
import time

import yaml

from harness import REPO, run_playbook

from rolling_testlib import Poller

PLAYBOOK = os.path.join(REPO, "playbooks", "rolling_restart.yml")


def inventory(tmp_path, project, proxy, **overrides):
    values = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "rolling_restart_project_dir": project.dir,
        "rolling_restart_project_name": project.name,
        "rolling_restart_compose_command": "v1",
        "rolling_restart_replicas": [{"service": service, "server": "127.0.0.1:%d" % port}
                                     for service, port in project.ports.items()],
        "rolling_restart_drain_seconds": 1,
        "rolling_restart_health_timeout": 30,
    }
    values.update(proxy.role_vars("app"))
    values.update(overrides)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {"localhost": values}}}}}))
    return str(path)


def started_at(project):
    return {c["service"]: c["started_at"] for c in project.containers()}


def replicas_project(compose_project, nginx_proxy):
    project = compose_project(tag="v1", replicas=True).up()
    proxy = nginx_proxy({"app": ["127.0.0.1:%d" % port for port in project.ports.values()]})
    return project, proxy


def test_rolling_restart_without_a_failed_request(tmp_path, compose_project, nginx_proxy):
    project, proxy = replicas_project(compose_project, nginx_proxy)
    upstream_text = open(proxy.upstream_file, encoding="utf-8").read()
    before = started_at(project)
    inv = inventory(tmp_path, project, proxy)

    poller = Poller(proxy.url + "/readyz")
    poller.start()
    try:
        time.sleep(0.5)
        check = run_playbook(tmp_path, PLAYBOOK, inventory=inv, check=True)
        assert check.rc == 0, check.output
        assert started_at(project) == before  # check mode changed nothing
        assert open(proxy.upstream_file, encoding="utf-8").read() == upstream_text

        began = time.monotonic()
        run = run_playbook(tmp_path, PLAYBOOK, inventory=inv)
        seconds = time.monotonic() - began
        time.sleep(0.5)
    finally:
        poller.stop()
    assert run.rc == 0, run.output
    after = started_at(project)
    assert set(after) == {"api_a", "api_b"} and all(after[s] != before[s] for s in after), (before, after)
    assert open(proxy.upstream_file, encoding="utf-8").read() == upstream_text  # both up again

    failures = poller.failures
    print("\nrolling restart: %.1f s for the playbook, %d requests through nginx, %d failed"
          % (seconds, len(poller.results), len(failures)))
    for record in run.records:
        if record["task"].startswith("Note the replica back in"):
            print("  %s" % record["result"]["ansible_facts"]["__rolling_restart_done"][-1]["summary"])
    assert len(poller.results) > 100
    assert failures == [], failures[:10]
    # Both replicas served, and each one was out of the rotation for a while (drained).
    servers = {"127.0.0.1:%d" % port for port in project.ports.values()}
    served = [entry for entry in proxy.served() if entry[2] == "/readyz"]
    assert {entry[3] for entry in served} == servers
    assert all(entry[1] == "200" for entry in served)


def test_a_replica_that_does_not_come_back_stops_the_run_and_stays_drained(tmp_path, compose_project, nginx_proxy):
    project, proxy = replicas_project(compose_project, nginx_proxy)
    before = started_at(project)
    # api_a's data directory no longer belongs to the service's user: after the restart it cannot take its lock.
    data_a = os.path.join(project.dir, "data", "api_a")
    os.chown(data_a, 0, 0)
    inv = inventory(tmp_path, project, proxy, rolling_restart_health_timeout=20)

    poller = Poller(proxy.url + "/readyz")
    poller.start()
    try:
        run = run_playbook(tmp_path, PLAYBOOK, inventory=inv)
        time.sleep(0.3)
    finally:
        poller.stop()
    assert run.rc != 0
    port_a, port_b = project.ports["api_a"], project.ports["api_b"]
    message = run.output
    assert "rolling restart stopped at replica api_a (127.0.0.1:%d)" % port_a in message, message
    assert "It stays marked down in nginx upstream app; the other replicas keep serving." in message
    assert "Restarted before it: none; not restarted: api_a, api_b." in message
    text = open(proxy.upstream_file, encoding="utf-8").read()
    assert "server 127.0.0.1:%d down;" % port_a in text and "server 127.0.0.1:%d;" % port_b in text
    assert started_at(project)["api_b"] == before["api_b"]  # never touched
    # api_b kept serving through nginx the whole time.
    assert poller.failures == [], poller.failures[:10]
    served = [entry for entry in proxy.served() if entry[2] == "/readyz"]
    assert served and served[-1][3] == "127.0.0.1:%d" % port_b

    # Run again with api_b first: api_a is not healthy, so api_b, the only one serving, is not drained.
    reverse = inventory(tmp_path, project, proxy, rolling_restart_health_timeout=20, rolling_restart_replicas=[
        {"service": "api_b", "server": "127.0.0.1:%d" % port_b}, {"service": "api_a", "server": "127.0.0.1:%d" % port_a}])
    again = run_playbook(tmp_path, PLAYBOOK, inventory=reverse)
    assert again.rc != 0
    # api_a restarts in a loop: the check of the other replicas refuses, or, when one poll caught api_a between
    # two restarts, nginx_upstream refuses to mark down the last server that is up. Either way nothing is drained.
    assert re.search(r"rolling restart stopped at replica api_b \(127\.0\.0\.1:%d\), step '(Check that the other "
                     r"replicas serve before draining api_b|Mark down in nginx and reload, draining api_b)'" % port_b,
                     again.output), again.output
    assert "It was not drained; nginx is unchanged for it." in again.output
    assert open(proxy.upstream_file, encoding="utf-8").read() == text
    assert started_at(project)["api_b"] == before["api_b"]
