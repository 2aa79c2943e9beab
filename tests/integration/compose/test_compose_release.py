# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""compose_release, compose_release_info and release_event through ansible-playbook against the real engine and
Compose v1: deploys with a migration, the health gate, rollbacks, the lock, env overrides, retention, scaling,
restarts one at a time, stop/start and check mode."""

from __future__ import annotations

import datetime
import json
import re
import threading

from compose_testlib import SECRET, image_id

INFO = "runbook.ops.compose_release_info"


def started(text):
    return datetime.datetime.strptime(text[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")


def clock(name):
    return {"name": name, "module": "ansible.builtin.set_fact", "params": {name: "{{ now(utc=true).timestamp() }}"}}


def fact(run, name):
    return float(run.task(name)["result"]["ansible_facts"][name])


def test_check_mode_on_a_new_project_creates_nothing(project):
    run = project.play([{"name": "check", "params": project.deploy_params("v1")}], check=True)
    result = run.task("check")["result"]
    assert run.task("check")["status"] == "ok" and result["changed"] is True
    assert "would deploy APP_TAG=v1" in result["msg"] and "migration" in result["msg"]
    assert sorted(result["would_recreate"]) == ["api", "worker"] and result["release"] is None
    assert not (project.dir / ".runbook").exists() and project.running() == {} and project.head() is None


def test_deploy_v1_then_v2_with_migration_then_unchanged(project):
    v1_id, v2_id = image_id("rbops-cr-test:v1"), image_id("rbops-cr-test:v2")
    stat = {"module": "ansible.builtin.stat", "params": {"path": str(project.history), "checksum_algorithm": "sha256"}}
    run = project.play([{"name": "v1", "params": project.deploy_params("v1", backup_id="bk-before-v1")},
                        dict(stat, name="history before"),
                        {"name": "v2 check", "params": project.deploy_params("v2"), "check_mode": True, "diff": True},
                        dict(stat, name="history after")])
    v1 = run.task("v1")["result"]
    assert v1["changed"] and v1["release"]["outcome"] == "succeeded" and v1["previous"] is None
    assert (v1["release"]["migration_head_before"], v1["release"]["migration_head_after"]) == ("0", "1")
    assert v1["release"]["backup_id"] == "bk-before-v1" and v1["release"]["variables"] == {"APP_TAG": "v1"}
    assert {s: e["image_id"] for s, e in v1["release"]["services"].items()} == {"api": v1_id, "worker": v1_id}
    assert v1["compose_command"] == "docker-compose" and len(v1["containers"]) == 2
    check = run.task("v2 check")["result"]
    assert check["changed"] and sorted(check["would_recreate"]) == ["api", "worker"]
    assert check["diff"]["before"] == "APP_TAG=v1\n" and check["diff"]["after"] == "APP_TAG=v2\n"
    # the check changed nothing: the history file, the env file, the containers v1 created, the head of v1
    assert run.task("history before")["result"]["stat"]["checksum"] == run.task("history after")["result"]["stat"]["checksum"]
    assert [r["id"] for r in project.history_data()["releases"]] == [v1["release"]["id"]]
    assert "APP_TAG=v1\n" in project.env_text() and project.head() == "1"
    assert sorted(cid for _s, _i, cid, _t in project.running().values()) == sorted(c["id"] for c in v1["containers"])

    run = project.play([{"name": "v2", "params": project.deploy_params("v2", backup_id="bk-before-v2")},
                        clock("t0"), {"name": "v2 again", "params": project.deploy_params("v2")}, clock("t1")],
                       diff=True)
    v2 = run.task("v2")["result"]
    assert v2["changed"] and v2["previous"]["id"] == v1["release"]["id"] and v2["release"]["previous"] == v1["release"]["id"]
    assert (v2["release"]["migration_head_before"], v2["release"]["migration_head_after"]) == ("1", "2")
    assert project.images() == {"api": v2_id, "worker": v2_id} and project.head() == "2"
    assert project.env_text() == "# app settings\nAPP_TAG=v2\nAPI_TOKEN=%s\n" % SECRET
    again = run.task("v2 again")["result"]
    assert again["changed"] is False and again["release"]["id"] == v2["release"]["id"] and "already runs healthy" in again["msg"]
    unchanged = fact(run, "t1") - fact(run, "t0")
    print("unchanged re-deploy: %.2f s" % unchanged)
    assert unchanged <= 3.0
    assert len(project.history_data()["releases"]) == 2
    events = [json.loads(line) for line in project.events.read_text().splitlines()]
    assert [(e["event"], e["outcome"]) for e in events] == [("deploy", "started"), ("deploy", "succeeded")] * 2
    # secrets of the env file never leave it: not in results, diffs, history or events
    for text in (run.output, json.dumps(run.records), project.history.read_text(), project.events.read_text()):
        assert SECRET not in text
    assert oct(project.history.stat().st_mode & 0o777) == "0o600"


def file_task(name, path, state):
    return {"name": name, "module": "ansible.builtin.file", "params": {"path": str(path), "state": state}}


def running_images(result):
    return {c["service"]: c["image_id"] for c in result["containers"]}


def test_unhealthy_release_fails_then_rollbacks_by_default_and_by_name(project):
    v1_id, v2_id = image_id("rbops-cr-test:v1"), image_id("rbops-cr-test:v2")
    info = {"project_dir": str(project.dir)}
    run = project.play([
        {"name": "v1", "params": project.params(tag="v1", backup_id="bk1"), "register": "v1_result"},
        {"name": "v2", "params": project.deploy_params("v2", backup_id="bk2")},
        file_task("make v3 unhealthy", project.state / "unhealthy-v3", "touch"),
        {"name": "v3", "params": project.deploy_params("v3", backup_id="bk3", health_timeout=15), "register": "v3_result"},
        clock("t0"), {"name": "rollback", "params": project.params(state="rolled_back")}, clock("t1"),
        {"name": "plan to v1", "module": INFO, "params": dict(info, release="{{ v1_result.release.id }}")},
        {"name": "plan to nowhere", "module": INFO, "params": dict(info, release="r-nope")},
        {"name": "to v1", "params": project.params(state="rolled_back", release="{{ v1_result.release.id }}")},
        {"name": "to a failed one", "params": project.params(state="rolled_back", release="{{ v3_result.release.id }}")},
        {"name": "info", "module": INFO, "params": info},
        file_task("make v3 healthy", project.state / "unhealthy-v3", "absent"),
        {"name": "v3 kept 2", "params": project.params(tag="v3", keep_releases=2)},
    ])
    v1, v2 = run.task("v1")["result"]["release"], run.task("v2")["result"]["release"]
    failed = run.task("v3")
    assert failed["status"] == "failed"
    result = failed["result"]
    assert "failed at the health gate" in result["msg"] and "unhealthy" in result["msg"]
    assert result["release"]["outcome"] == "failed" and result["release"]["failure"]["gate"] == "health"
    assert result["previous"]["id"] == v2["id"] and {c["service"] for c in result["containers"]} == {"api", "worker"}
    back = run.task("rollback")["result"]
    assert run.task("rollback")["status"] == "ok" and back["changed"]
    assert back["release"]["id"] == v2["id"] and back["previous"]["id"] == result["release"]["id"]
    assert running_images(back) == {"api": v2_id, "worker": v2_id}
    # v3's migration moved the head 2 -> 3 before its containers failed: the plan says restore bk3
    assert back["rollback_plan"]["data_rollback_needed"] is True and back["rollback_plan"]["backup_id"] == "bk3"
    assert back["rollback_plan"]["moved_by"] == [result["release"]["id"]]
    rollback_seconds = fact(run, "t1") - fact(run, "t0")
    print("failed gate -> rolled back and healthy: %.2f s" % rollback_seconds)
    assert rollback_seconds <= 15 + 20
    plan = run.task("plan to v1")["result"]["rollback_plan"]
    assert plan["target"] == v1["id"] and plan["from"] == v2["id"] and plan["moved_by"] == [v2["id"]]
    assert plan["data_rollback_needed"] is True and plan["backup_id"] == "bk2"
    nowhere = run.task("plan to nowhere")
    assert nowhere["status"] == "failed" and "release r-nope is not in the history" in nowhere["result"]["msg"]

    to_v1 = run.task("to v1")["result"]
    assert to_v1["changed"] and to_v1["release"]["id"] == v1["id"] and "running images verified" in to_v1["msg"]
    assert running_images(to_v1) == {"api": v1_id, "worker": v1_id}
    # from v2 back to v1: v2 moved the head 1 -> 2, its pre-deploy backup is the one to restore
    assert to_v1["rollback_plan"]["moved_by"] == [v2["id"]] and to_v1["rollback_plan"]["backup_id"] == "bk2"
    refused = run.task("to a failed one")
    assert refused["status"] == "failed" and "only a succeeded release can be rolled back to" in refused["result"]["msg"]
    info = run.task("info")["result"]
    assert info["current"]["id"] == v1["id"] and info["drift"] == [] and info["compose_command"] == "docker-compose"
    assert [r["id"] for r in info["releases"]] == [result["release"]["id"], v2["id"], v1["id"]]
    assert info["releases"][0]["rolled_back_to"] == v2["id"] and info["last_successful"]["id"] == v2["id"]
    # v1 is the oldest release: a default rollback only goes back to older releases, never forward to v2.
    assert info["rollback_plan"]["target"] is None
    assert {c["state"] for c in info["containers"]} == {"ok"}

    kept = run.task("v3 kept 2")["result"]
    # succeeded: v1, v2, v3 -> v2 and v3 stay; the failed v3 between them stays and does not count
    assert kept["removed_releases"] == [v1["id"]]
    assert kept["releases"] == [kept["release"]["id"], result["release"]["id"], v2["id"]]
    events = [(e["event"], e["outcome"]) for e in map(json.loads, project.events.read_text().splitlines())]
    assert ("deploy", "failed") in events and events.count(("rollback", "succeeded")) == 2


def test_a_failed_migration_switches_nothing(project):
    run = project.play([
        {"name": "v1", "params": project.deploy_params("v1")},
        file_task("make the migration fail", project.state / "fail-migration-v2", "touch"),
        {"name": "v2", "params": project.deploy_params("v2")},
        {"name": "info", "module": INFO, "params": {"project_dir": str(project.dir)}},
        {"name": "keys", "params": project.params(tag="v2", required_env_keys=["API_TOKEN", "DB_URL"])},
        {"name": "only v2", "params": project.params(tag="v2", compose_command="v2")}])
    v1 = run.task("v1")["result"]
    failed = run.task("v2")
    assert failed["status"] == "failed"
    msg = failed["result"]["msg"]
    assert "failed at the migration gate" in msg and "exited with code 3" in msg and "migration failed" in msg
    assert "nothing was switched" in msg
    record = failed["result"]["release"]
    assert record["outcome"] == "failed" and (record["migration_head_before"], record["migration_head_after"]) == ("1", "1")
    assert sorted(cid for _s, _i, cid, _t in project.running().values()) == sorted(c["id"] for c in v1["containers"])
    assert set(project.images().values()) == {image_id("rbops-cr-test:v1")}
    assert "APP_TAG=v1\n" in project.env_text() and project.head() == "1"
    info = run.task("info")["result"]
    assert info["current"]["id"] == v1["release"]["id"] and info["releases"][0]["id"] == record["id"]
    keys = run.task("keys")
    assert keys["status"] == "failed" and "lacks required key(s) or has them empty: DB_URL; nothing was changed" \
        in keys["result"]["msg"]
    only_v2 = run.task("only v2")  # Compose v2 is not installed on the test machine
    assert only_v2["status"] == "failed" and "no usable Compose command: docker compose (v2)" in only_v2["result"]["msg"]


def test_a_release_whose_containers_restart_fails_the_gate(project):
    run = project.play([
        {"name": "v1", "params": project.params(tag="v1")},
        file_task("make v2 crash", project.state / "crash-v2", "touch"),
        {"name": "v2", "params": project.params(tag="v2", health_timeout=15, grace_period=10)},
        {"name": "rollback", "params": project.params(state="rolled_back")}])
    failed = run.task("v2")
    assert failed["status"] == "failed" and "failed at the health gate" in failed["result"]["msg"]
    # the gate fails on the restarts at once, well within grace_period and health_timeout
    assert re.search(r"\(api\) (restarted \d+ time|is restarting after exit code 1|is exited with code 1)", failed["result"]["msg"])
    assert "not healthy within" not in failed["result"]["msg"]
    assert run.task("rollback")["status"] == "ok"
    assert set(project.images().values()) == {image_id("rbops-cr-test:v1")}


def test_two_deploys_at_once(project):
    slow = project.params(tag="v2", migration_service="api", migration_command=["sh", "-c", "sleep 6"])
    outcome = []
    first = threading.Thread(target=lambda: outcome.append(project.play([
        {"name": "v1", "params": project.params(tag="v1")}, {"name": "slow", "params": slow}])))
    first.start()
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    while not project.events.exists() or project.events.read_text().count('"outcome": "started"') < 2:
        assert datetime.datetime.now() < deadline, "the slow deploy never started"
        threading.Event().wait(0.1)
    run = project.play([{"name": "at once", "params": project.params(tag="v3")},
                        {"name": "waiting", "params": project.params(tag="v3", lock_timeout=60)}])
    first.join(60)
    assert outcome and outcome[0].task("slow")["status"] == "ok"
    refused = run.task("at once")
    assert refused["status"] == "failed" and "holds its lock" in refused["result"]["msg"]
    assert "set lock_timeout to wait" in refused["result"]["msg"]
    waited = run.task("waiting")["result"]
    assert run.task("waiting")["status"] == "ok" and waited["previous"]["variables"] == {"APP_TAG": "v2"}
    assert set(project.images().values()) == {image_id("rbops-cr-test:v3")}


def test_a_shell_tag_variable_does_not_override_the_env_file_and_drift_is_reported(project):
    v1_id, v2_id = image_id("rbops-cr-test:v1"), image_id("rbops-cr-test:v2")
    by_hand = ["docker-compose", "-p", project.name, "up", "-d"]
    info = {"name": "info", "module": INFO, "params": {"project_dir": str(project.dir)}}
    # the whole play runs with APP_TAG=v1 in its environment, as if exported in the shell
    run = project.play([
        {"name": "v1", "params": project.params(tag="v1")},
        {"name": "v2", "params": project.params(tag="v2")},
        {"name": "by hand", "module": "ansible.builtin.command", "params": {"argv": by_hand, "chdir": str(project.dir)}},
        info,
        {"name": "v2 again", "params": project.params(tag="v2")},
        dict(info, name="info after")], env={"APP_TAG": "v1"})
    assert run.task("v2")["result"]["changed"] and running_images(run.task("v2")["result"]) == {"api": v2_id, "worker": v2_id}
    assert run.task("by hand")["status"] == "ok"
    drift = run.task("info")["result"]["drift"]  # Compose by hand took APP_TAG from the shell, not the env file
    assert sorted(d["service"] for d in drift) == ["api", "worker"]
    assert drift[0]["recorded_image_id"] == v2_id and drift[0]["running_image_id"] == v1_id
    again = run.task("v2 again")["result"]
    assert again["changed"] is True and running_images(again) == {"api": v2_id, "worker": v2_id}
    assert run.task("info after")["result"]["drift"] == []
    assert project.images() == {"api": v2_id, "worker": v2_id}


def test_scale_restart_one_at_a_time_stop_and_start(project):
    run = project.play([
        {"name": "v1", "params": project.params(tag="v1")},
        {"name": "up to 3", "params": project.params(state="scaled", scale={"worker": 3})},
        {"name": "3 again", "params": project.params(state="scaled", scale={"worker": 3})},
        {"name": "check stop", "params": project.params(state="stopped", services=["api"]), "check_mode": True},
        {"name": "restart", "params": project.params(state="restarted", services=["worker"], one_at_a_time=True)},
        {"name": "down to 1", "params": project.params(state="scaled", scale={"worker": 1})},
        {"name": "stop", "params": project.params(state="stopped", services=["worker"])},
        {"name": "stop again", "params": project.params(state="stopped", services=["worker"])},
        {"name": "start", "params": project.params(state="started", services=["worker"])},
        {"name": "start again", "params": project.params(state="started")},
        {"name": "restart api", "params": project.params(state="restarted", services=["api"])},
        {"name": "bad service", "params": project.params(state="stopped", services=["nope"])}])
    assert run.task("up to 3")["result"]["changed"] and run.task("up to 3")["result"]["scale"] == {"worker": 3}
    assert run.task("3 again")["result"]["changed"] is False
    check = run.task("check stop")["result"]
    assert check["changed"] and "would stop" in check["msg"]
    before = {c["name"]: c for c in run.task("3 again")["result"]["containers"]}
    restarted = run.task("restart")["result"]
    after = {c["name"]: c for c in restarted["containers"]}
    workers = sorted(n for n, c in after.items() if c["service"] == "worker")
    assert len(workers) == 3 and restarted["restarted"] == workers
    assert all(after[n]["started_at"] != before[n]["started_at"] for n in workers)  # every worker started again
    api_before = [c for c in check["containers"] if c["service"] == "api"][0]
    api = [c for c in run.task("start again")["result"]["containers"] if c["service"] == "api"][0]
    assert api["started_at"] == api_before["started_at"] and api["id"] == api_before["id"]  # left alone, by the check too
    starts = sorted(started(after[n]["started_at"]) for n in workers)
    # one at a time: each restart waited for the previous container's health check (interval 1 s)
    assert all((b - a).total_seconds() >= 0.8 for a, b in zip(starts, starts[1:]))
    assert run.task("down to 1")["result"]["scale"] == {"worker": 1}
    assert [run.task(n)["result"]["changed"] for n in ("stop", "stop again", "start", "start again")] == \
        [True, False, True, False]
    assert "no such service" in run.task("bad service")["result"]["msg"]
    restarted_api = run.task("restart api")["result"]
    assert restarted_api["changed"] and restarted_api["restarted"] == [api["name"]]
    assert [c["started_at"] for c in restarted_api["containers"] if c["service"] == "api"] != [api["started_at"]]
    assert sorted(s for s, _i, _c, _t in project.running().values()) == ["api", "worker"]
    events = [e["event"] for e in map(json.loads, project.events.read_text().splitlines())]
    assert events.count("scale") == 2 and "restart" in events and "stop" in events and "start" in events


def test_release_event_appends_and_check_mode_does_not(project):
    params = {"project_dir": str(project.dir), "event": "gate", "outcome": "failed", "release": "r1",
              "detail": {"gate": "http", "status": 503}}
    run = project.play([
        {"name": "check", "module": "runbook.ops.release_event", "params": params, "check_mode": True},
        {"name": "stat", "module": "ansible.builtin.stat", "params": {"path": str(project.events)}},
        {"name": "append", "module": "runbook.ops.release_event", "params": params},
        {"name": "history only", "module": INFO, "params": {"project_dir": str(project.dir), "containers": False}}])
    assert run.task("check")["result"]["event"]["event"] == "gate"
    assert run.task("stat")["result"]["stat"]["exists"] is False
    event = run.task("append")["result"]["event"]
    lines = project.events.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == event and event["detail"] == {"gate": "http", "status": 503}
    assert oct(project.events.stat().st_mode & 0o777) == "0o600"
    history_only = run.task("history only")["result"]
    assert (history_only["releases"], history_only["current"], history_only["drift"], history_only["containers"],
            history_only["rollback_plan"]) == ([], None, [], [], None)
