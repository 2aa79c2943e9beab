# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/deploy.yml and playbooks/rollback.yml (roles deploy and rollback) through ansible-playbook, with the
real Docker engine, Compose v1, PostgreSQL and the sample service images rbops-sample:v1..v5:

  v1 good; v2 good with a migration that adds the `tags` table and writes rows; v3 never ready;
  v4 whose migration fails (from head 1); v5 healthy, then the process exits after about 10 s.

Each test chains the steps of one Compose project (or two), so the whole file runs in about two minutes."""

from __future__ import annotations

import datetime
import json
import os
import re
import time
import uuid

import pytest
import yaml

from harness import REPO, run_playbook

from deploy_testlib import HEALTH_TIMEOUT, project_vars

DEPLOY = os.path.join(REPO, "playbooks", "deploy.yml")
ROLLBACK = os.path.join(REPO, "playbooks", "rollback.yml")
FIGURES = {}
STEPS = []


# helpers ---------------------------------------------------------------------------------------------
def inventory(tmp_path, hosts):
    """An inventory with the group app: {host: hostvars}, every host on this machine (connection local)."""
    import sys

    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {
        name: dict(hostvars, ansible_connection="local", ansible_python_interpreter=sys.executable)
        for name, hostvars in hosts.items()}}}}}))
    return str(path)


def backup_vars(project, store, pg_conn_params):
    """A production deploy: the pre-deploy backup (and a data-aware rollback's restore) of the project's database."""
    login = {"login_host": pg_conn_params["login_host"], "login_port": pg_conn_params["login_port"],
             "login_user": pg_conn_params["login_user"], "login_password": pg_conn_params["login_password"]}
    values = {"deploy_environment": "production", "deploy_backup_service": project.name,
              "deploy_backup_database": project.database, "deploy_backup_store": {"type": "local", "path": str(store)}}
    values.update({"deploy_backup_" + key: value for key, value in login.items()})
    values.update({"rollback_restore_service": project.name, "rollback_restore_database": project.database,
                   "rollback_restore_store": {"type": "local", "path": str(store)}})
    values.update({"rollback_restore_" + key: value for key, value in login.items()})
    return values


def history(project):
    with open(os.path.join(project.dir, ".runbook", "releases.json"), encoding="utf-8") as handle:
        return json.load(handle)


def release_of(project, tag, outcome=None):
    """The newest release record of ``tag`` (with ``outcome`` when given)."""
    found = [r for r in history(project)["releases"]
             if r["variables"].get("APP_TAG") == tag and (outcome is None or r["outcome"] == outcome)]
    assert found, "no %s release of %s in %s" % (outcome or "", tag, [r["id"] for r in history(project)["releases"]])
    return found[-1]


def events(project):
    with open(os.path.join(project.dir, ".runbook", "events.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def event_time(entry):
    return datetime.datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%SZ")


def snapshot(project):
    """What a run that must change nothing could touch: env file, history, event log, containers."""
    files = {}
    for name in (".env", os.path.join(".runbook", "releases.json"), os.path.join(".runbook", "events.jsonl")):
        path = os.path.join(project.dir, name)
        if os.path.exists(path):
            with open(path, "rb") as handle:
                files[name] = handle.read()
        else:
            files[name] = None
    containers = [(c["name"], c["state"], c["image_id"], c["started_at"]) for c in project.containers()]
    return files, containers


def deploy(tmp_path, inv, tag, check=False, **extra):
    started = time.monotonic()
    run = run_playbook(tmp_path, DEPLOY, inventory=inv, extra_vars=dict(extra, deploy_tag=tag), check=check)
    run.seconds = time.monotonic() - started
    STEPS.append((tag, check, round(run.seconds, 1), len(run.records)))
    return run


def recap(run, host):
    match = re.search(r"^%s\s+:\s+(.*)$" % re.escape(host), run.stdout, re.M)
    assert match, run.output
    return dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1)))


def assert_serves(project, tag):
    """The api runs the image of ``tag`` (the image id the release recorded), healthy, and answers ready."""
    project.wait_healthy(timeout=30)
    api = [c for c in project.containers("api") if c["state"] == "running"]
    assert [c["image"] for c in api] == ["rbops-sample:" + tag], api
    recorded = release_of(project, tag, "succeeded")["services"]["api"]["image_id"]
    assert api[0]["image_id"] == recorded
    assert project.get("/readyz").status == 200


def failure_message(run):
    failed = [r for r in run.records if r["status"] == "failed" and r["task"] == "Fail naming the gate"]
    assert failed, run.output
    return failed[-1]["result"]["msg"]


@pytest.fixture()
def tags(sample_images):
    """Test-own tags of rbops-sample:v1..v5 ({"v1": "dt-<hex>-v1", ...}): the releases keep pointing at the images
    of this run even when scripts/sample-images.sh rebuilds the versions meanwhile; removed after the test."""
    from deploy_testlib import docker

    prefix = "dt-%s-" % uuid.uuid4().hex[:8]
    pinned = {}
    for version in sample_images["tags"]:
        docker("tag", "rbops-sample:" + version, "rbops-sample:" + prefix + version)
        pinned[version] = prefix + version
    yield pinned
    docker("rmi", *["rbops-sample:" + tag for tag in pinned.values()], check=False)


@pytest.fixture()
def drop_pre_restore_databases(pg_connect):
    """Drop the databases a swap restore keeps (<database>_pre_restore_<stamp>) for the given names."""
    names = []
    yield names
    conn = pg_connect("postgres")
    with conn.cursor() as cur:
        for name in names:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (name + "_pre_restore_%",))
            for (kept,) in cur.fetchall():
                cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % kept)


# tests -----------------------------------------------------------------------------------------------
def test_deploy_failures_rollback_and_data_aware_rollback(tmp_path, compose_project, tags, pg_conn_params,
                                                          drop_pre_restore_databases):
    """v1; v4 whose migration fails switches nothing; v2 with its migration and a pre-deploy backup; v3 never
    healthy -> rolled back to v2 automatically; rollback.yml --check; rollback.yml to v1 by name restores the
    backup taken before v2 (v2's rows gone, the rows from before intact)."""
    project = compose_project(tag=tags["v1"])
    drop_pre_restore_databases.append(project.database)
    store = tmp_path / "backups"
    store.mkdir()
    inv = inventory(tmp_path, {"app1": dict(project_vars(project), **backup_vars(project, store, pg_conn_params))})

    # v1: the first release. The project is "production" (a pre-deploy backup by default); only v2's backup
    # matters below, so the other deploys skip theirs (deploy_backup=false) to keep the test short.
    run = deploy(tmp_path, inv, tags["v1"], deploy_backup=False)
    assert run.rc == 0, run.output
    assert_serves(project, tags["v1"])
    v1 = release_of(project, tags["v1"], "succeeded")
    assert (v1["migration_head_before"], v1["migration_head_after"]) == ("0", "1")
    assert v1["backup_id"] is None
    gates = [(e["detail"]["gate"], e["outcome"]) for e in events(project) if e["event"] == "gate"]
    assert gates == [("health", "passed"), ("http", "passed"), ("smoke", "passed"), ("watch", "passed")]
    for number in range(3):
        assert project.api("POST", "/api/items", json={"name": "before-%d" % number, "secret": "s%d" % number}).status == 201
    before = snapshot(project)

    # v4: its migration fails -> nothing switched (same containers, env file, head 1), v4 recorded failed.
    run = deploy(tmp_path, inv, tags["v4"], deploy_backup=False)
    assert run.rc != 0
    msg = failure_message(run)
    assert "failed at gate 'migration'" in msg, msg
    assert "nothing had been switched" in msg, msg
    v4 = release_of(project, tags["v4"])
    assert v4["outcome"] == "failed" and v4["failure"]["gate"] == "migration"
    assert project.read_env()["APP_TAG"] == tags["v1"]
    assert snapshot(project)[1] == before[1]
    assert project.schema_head() == 1 and "tags" not in project.tables()

    # v2: backup, migration 1 -> 2 (the tags table and its rows), healthy, gates passed.
    run = deploy(tmp_path, inv, tags["v2"])
    assert run.rc == 0, run.output
    assert_serves(project, tags["v2"])
    v2 = release_of(project, tags["v2"], "succeeded")
    assert (v2["migration_head_before"], v2["migration_head_after"]) == ("1", "2")
    assert v2["backup_id"] and (store / project.name / (v2["backup_id"] + ".dump.zst.manifest.json")).exists()
    assert project.query("SELECT count(*) FROM tags")[0][0] == 3

    # v3: never healthy -> the health gate fails, automatic rollback to v2 (images only: v3 moved no head).
    run = deploy(tmp_path, inv, tags["v3"], deploy_backup=False)
    assert run.rc != 0
    msg = failure_message(run)
    assert "failed at gate 'health'" in msg and "rolled back from" in msg, msg
    assert_serves(project, tags["v2"])
    v3 = release_of(project, tags["v3"])
    assert v3["outcome"] == "failed" and v3["failure"]["gate"] == "health"
    assert v3["rolled_back_to"] == v2["id"] and history(project)["current"] == v2["id"]
    assert project.read_env()["APP_TAG"] == tags["v2"]
    assert project.query("SELECT count(*) FROM tags")[0][0] == 3  # no data rollback: v3 did not move the head
    log = events(project)
    failed_at = [e for e in log if e["event"] == "deploy" and e["outcome"] == "failed" and e["release"] == v3["id"]][-1]
    healthy_at = [e for e in log if e["event"] == "gate" and e["detail"].get("gate") == "rollback"][-1]
    assert healthy_at["outcome"] == "passed" and healthy_at["release"] == v2["id"]
    assert [e["detail"]["gate"] for e in log if e["event"] == "gate" and e["outcome"] == "failed"][-1] == "health"
    gap = (event_time(healthy_at) - event_time(failed_at)).total_seconds()
    rollback = run.task("Keep the result")["result"]["ansible_facts"]["rollback_result"]
    FIGURES["failed gate -> rolled back healthy (s, event log)"] = gap
    FIGURES["rollback alone (s)"] = float(rollback["seconds"])
    assert gap <= HEALTH_TIMEOUT + 20, (gap, log)

    # rollback.yml --check to v1: prints the data-aware plan (v2 moved the head: restore v2's backup), changes nothing.
    before = snapshot(project)
    run = run_playbook(tmp_path, ROLLBACK, inventory=inv, extra_vars={"rollback_release": v1["id"]}, check=True)
    assert run.rc == 0, run.output
    plan = run.task("Show the plan")["result"]["msg"]
    assert any(v2["backup_id"] in line and "restore" in line for line in plan), plan
    assert snapshot(project) == before
    assert recap(run, "app1")["changed"] == 0

    # rollback.yml to v1 by name: writers stopped, v2's pre-deploy backup restored, v1 started, readiness.
    run = run_playbook(tmp_path, ROLLBACK, inventory=inv, extra_vars={"rollback_release": v1["id"]})
    assert run.rc == 0, run.output
    result = run.task("Keep the result")["result"]["ansible_facts"]["rollback_result"]
    assert result["data_restored"] and result["backup_id"] == v2["backup_id"] and result["target"] == v1["id"]
    assert_serves(project, tags["v1"])
    assert project.schema_head() == 1 and "tags" not in project.tables()  # v2's migration and rows are gone
    names = sorted(row[0] for row in project.query("SELECT name FROM items"))
    assert names == ["before-0", "before-1", "before-2"]  # the rows from before intact
    assert project.api("GET", "/api/items").status == 200
    assert history(project)["current"] == v1["id"]
    restore_events = [e for e in events(project) if e["event"] == "restore"]
    assert restore_events and restore_events[-1]["detail"]["backup_id"] == v2["backup_id"]


def test_rolling_deploy_two_hosts_idempotence_check_mode_and_watch(tmp_path, compose_project, tags):
    """Two projects as two hosts: v2 on both; the same again changes nothing; --check of v3 changes nothing;
    v5 (healthy, then crashing) with serial 1: the watch period catches it on the first host, which rolls
    back to v2, and the play stops before the second host."""
    first, second = compose_project(tag=tags["v2"]), compose_project(tag=tags["v2"])
    hosts = {"app1": project_vars(first, deploy_environment="staging"),
             "app2": project_vars(second, deploy_environment="staging")}
    inv = inventory(tmp_path, hosts)

    run = deploy(tmp_path, inv, tags["v2"])
    assert run.rc == 0, run.output
    for project in (first, second):
        assert_serves(project, tags["v2"])
        assert release_of(project, tags["v2"], "succeeded")["backup_id"] is None  # staging: no backup

    # The same release again: unchanged, no backup, no gate, no Compose command.
    before = [snapshot(first), snapshot(second)]
    run = deploy(tmp_path, inv, tags["v2"])
    assert run.rc == 0, run.output
    FIGURES["unchanged re-deploy, whole playbook, 2 hosts (s)"] = round(run.seconds, 1)
    for host, project, seen in (("app1", first, before[0]), ("app2", second, before[1])):
        assert recap(run, host)["changed"] == 0
        files, containers = snapshot(project)
        assert containers == seen[1] and files[".env"] == seen[0][".env"]
        assert files[os.path.join(".runbook", "releases.json")] == seen[0][os.path.join(".runbook", "releases.json")]
    unchanged = [r for r in run.records if r["task"].startswith("Deploy the release") and r["host"] == "app1"][-1]
    assert unchanged["result"]["changed"] is False and "already runs healthy" in unchanged["result"]["msg"]

    # Check mode: v3 would be deployed; nothing is written, pulled, started or logged.
    before = [snapshot(first), snapshot(second)]
    run = deploy(tmp_path, inv, tags["v3"], check=True)
    assert run.rc == 0, run.output
    assert [snapshot(first), snapshot(second)] == before
    planned = [r for r in run.records if r["task"].startswith("Deploy the release") and r["host"] == "app1"][-1]
    assert planned["result"]["changed"] is True

    # v5 with serial 1: healthy, then it crashes within the watch period on app1 -> rolled back; app2 untouched.
    second_before = snapshot(second)
    v2_first = release_of(first, tags["v2"], "succeeded")
    run = deploy(tmp_path, inv, tags["v5"], deploy_watch_seconds=25, deploy_watch_metrics_path="/metrics",
                 deploy_metrics_token=first.token, deploy_serial=1, deploy_max_fail_percentage=0)
    assert run.rc != 0
    msg = failure_message(run)
    assert "failed at gate 'watch'" in msg and "restart" in msg, msg
    assert_serves(first, tags["v2"])
    v5 = release_of(first, tags["v5"])
    # The watch failed it after its container gate had passed: recorded failed, never a rollback target again.
    assert v5["outcome"] == "failed" and v5["failure"]["gate"] == "watch" and v5["rolled_back_to"] == v2_first["id"]
    assert history(first)["current"] == v2_first["id"]
    assert not [r for r in run.records if r["host"] == "app2"], "the play went on to app2"
    assert snapshot(second) == second_before
    assert second.read_env()["APP_TAG"] == tags["v2"]
    watch = [e for e in events(first) if e["event"] == "gate" and e["detail"].get("gate") == "watch"][-1]
    assert watch["outcome"] == "failed" and watch["release"] == v5["id"]


def test_figures():
    """Print the measured figures (run with -s to see them)."""
    for name, value in FIGURES.items():
        print("%s: %s" % (name, value))
    for step in STEPS:
        print("deploy %s check=%s: %s s, %d task results" % step)
