# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_activity's remediation (cancel, terminate after a grace period, terminate idle connections)
through ansible-playbook on real sessions. The server is shared: every run is filtered to the test's
own database and application names. The test role is a superuser, so runs that should act pass
allow_superuser (one test shows the protection)."""

from __future__ import annotations

import time

import psycopg2
import psycopg2.errors

from conftest import activity_of

MODULE = "runbook.ops.pg_activity"
STUBBORN = ("DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(0.1); "
            "EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$")


def alive(pg_conn_params, *pids):
    """pid -> state of those of ``pids`` still connected."""
    return {row[0]: row[1] for row in activity_of(pg_conn_params, "pid = ANY(%s)", (list(pids),))}


def by_pid(remediation):
    return {item["pid"]: item for item in remediation["results"]}


def findings(result):
    return {item["check"]: item for item in result["findings"]}


def remediate(pg_conn_params, database, **options):
    params = dict(pg_conn_params, database=database, fail_on="never", table_top=0, allow_superuser=True)
    params.update(options)
    return params


def test_cancel_then_terminate_a_real_lock_pile_up(ansible_module, pg_conn_params, blocked_pair):
    blocker, waiter, dbname = blocked_pair
    params = remediate(pg_conn_params, dbname, remediate="cancel", grace_period=2, target_min_age=0,
                       target_applications=[blocker.application, waiter.application],
                       lock_wait_warn_seconds=0)
    started = time.monotonic()
    run = ansible_module(MODULE, params)
    assert not run.failed, run.output
    result = run.result
    assert result["changed"] is True
    done = by_pid(result["remediation"])
    assert set(done) == {blocker.pid, waiter.pid}
    # The waiter's UPDATE stops at the cancel...
    assert done[waiter.pid]["outcome"] == "cancelled" and done[waiter.pid]["signals"] == ["pg_cancel_backend"]
    assert waiter.wait(5) and isinstance(waiter.error, psycopg2.errors.QueryCanceled)
    # ...the blocker, idle in its transaction, ignores it and is terminated after the grace period.
    assert done[blocker.pid]["outcome"] == "terminated"
    assert done[blocker.pid]["signals"] == ["pg_cancel_backend", "pg_terminate_backend"]
    assert done[blocker.pid]["detail"] == "still running 2.0 s after the cancel, so terminated"
    assert time.monotonic() - started >= 2
    assert alive(pg_conn_params, blocker.pid, waiter.pid) == {waiter.pid: "idle"}
    assert result["remediation"]["outcomes"] == {"cancelled": 1, "terminated": 1}
    assert findings(result)["remediation"] == {"check": "remediation", "state": "ok", "value": 2, "unit": "sessions",
                                               "detail": "cancel 2 sessions: cancelled 1, terminated 1"}
    # Findings are read again after acting: the pile-up is gone from the lock tree.
    before = {f["check"]: f for f in result["findings_before"]}
    assert before["blocked sessions"]["state"] != "ok"
    assert blocker.pid not in [node["pid"] for node in result["lock_tree"]]


def test_a_query_that_ignores_cancel_is_terminated(ansible_module, pg_conn_params, pg_database, pg_session,
                                                   wait_for):
    stubborn = pg_session(pg_database, "stubborn")
    stubborn.start(STUBBORN)
    wait_for("pid = %s AND state = 'active'", (stubborn.pid,))
    params = remediate(pg_conn_params, pg_database, remediate="cancel", grace_period=1.5, escalate=False,
                       target_pids=[stubborn.pid])
    run = ansible_module(MODULE, params)
    item = by_pid(run.result["remediation"])[stubborn.pid]
    assert item["outcome"] == "still running" and item["signals"] == ["pg_cancel_backend"]
    assert run.result["changed"] is True  # a cancel was sent
    assert findings(run.result)["remediation"]["state"] == "warning"
    assert findings(run.result)["remediation"]["detail"] == (
        "cancel 1 session: still running 1; pid %d still running: still running 1.5 s after the cancel; "
        "escalate is off" % stubborn.pid)
    assert alive(pg_conn_params, stubborn.pid) == {stubborn.pid: "active"}
    run = ansible_module(MODULE, dict(params, escalate=True))
    item = by_pid(run.result["remediation"])[stubborn.pid]
    assert item["outcome"] == "terminated" and item["signals"] == ["pg_cancel_backend", "pg_terminate_backend"]
    assert alive(pg_conn_params, stubborn.pid) == {}
    assert stubborn.wait(5) and stubborn.error is not None


def test_check_mode_touches_nothing(ansible_module, pg_conn_params, blocked_pair):
    blocker, waiter, dbname = blocked_pair
    params = remediate(pg_conn_params, dbname, remediate="terminate", target_min_age=0,
                       target_applications=[blocker.application, waiter.application])
    run = ansible_module(MODULE, params, check=True)
    assert not run.failed, run.output
    result = run.result
    assert {item["outcome"] for item in result["remediation"]["results"]} == {"would terminate"}
    assert set(by_pid(result["remediation"])) == {blocker.pid, waiter.pid}
    assert all(item["signals"] == [] for item in result["remediation"]["results"])
    assert result["changed"] is True and result["remediation"]["check_mode"] is True
    assert findings(result)["remediation"] == {
        "check": "remediation", "state": "ok", "value": 2, "unit": "sessions",
        "detail": "would terminate 2 sessions (check mode): pid %s" % ", ".join(str(p) for p in sorted([blocker.pid, waiter.pid]))}
    assert "findings_before" not in result
    time.sleep(0.5)
    rows = activity_of(pg_conn_params, "pid = ANY(%s)", ([blocker.pid, waiter.pid],))
    states = {row[0]: (row[1], row[3]) for row in rows}
    assert states == {blocker.pid: ("idle in transaction", []), waiter.pid: ("active", [blocker.pid])}
    assert waiter.thread.is_alive()


def test_own_session_and_protected_sessions_are_never_signalled(ansible_module, pg_conn_params, pg_database, pg_session):
    # The module's own session is the only runbook.ops session on this fresh database.
    params = remediate(pg_conn_params, pg_database, remediate="terminate", target_min_age=0,
                       target_databases=[pg_database], target_applications=["runbook.ops"],
                       target_states=["active", "idle", "idle in transaction"], protect_applications=[],
                       allow_background=True, allow_replication=True)
    run = ansible_module(MODULE, params)
    assert not run.failed, run.output
    assert run.result["remediation"]["matched"] == 0 and run.result["changed"] is False
    assert findings(run.result)["remediation"]["detail"] == "terminate: no session matched the filters"
    # A backup's session (application pg_dump) and, without allow_superuser, a superuser's are skipped.
    dump = pg_session(pg_database, "dump", autocommit=False)
    dump.run("SET application_name = 'pg_dump'")
    dump.run("SELECT 1")
    other = pg_session(pg_database, "other", autocommit=False)
    other.run("SELECT 1")
    params = remediate(pg_conn_params, pg_database, remediate="terminate", target_min_age=0,
                       target_databases=[pg_database])
    run = ansible_module(MODULE, dict(params, target_pids=[dump.pid, 999999999]))
    skipped = {item["pid"]: item["reason"] for item in run.result["remediation"]["skipped"]}
    assert skipped == {dump.pid: "protected application pg_dump (protect_applications)",
                       999999999: "no such session (or it is this module's own)"}
    run = ansible_module(MODULE, dict(params, allow_superuser=False, target_pids=[other.pid]))
    assert run.result["remediation"]["skipped"] == [
        {"pid": other.pid, "reason": "superuser session (%s); set allow_superuser to signal it"
         % pg_conn_params["login_user"]}]
    assert run.result["changed"] is False
    assert alive(pg_conn_params, dump.pid, other.pid) == {dump.pid: "idle in transaction",
                                                          other.pid: "idle in transaction"}


def test_filters_and_idle_age(ansible_module, pg_conn_params, pg_database, pg_session):
    old_a = pg_session(pg_database, "a")
    old_b = pg_session(pg_database, "b")
    old_tx = pg_session(pg_database, "tx", autocommit=False)
    old_tx.run("SELECT 1")
    made = time.monotonic()
    pids = [old_a.pid, old_b.pid, old_tx.pid]
    base = remediate(pg_conn_params, pg_database, remediate="terminate", target_databases=[pg_database])
    # Filters that exclude every session of the test: nothing happens.
    for extra in ({"target_min_age": 3600, "target_states": ["idle"]},
                  {"target_min_age": 0, "target_users": ["nobody_rbops"]},
                  {"target_min_age": 0, "target_databases": ["postgres"], "target_applications": [old_a.application]},
                  {"target_min_age": 0, "target_applications": [old_a.application]},  # idle: not a default state
                  {"target_min_age": 0, "target_blocking": True, "target_applications": [old_tx.application]}):
        run = ansible_module(MODULE, dict(base, **extra))
        assert run.result["remediation"]["matched"] == 0, (extra, run.result["remediation"])
        assert run.result["changed"] is False
    assert len(alive(pg_conn_params, *pids)) == 3
    # Idle for 8 s or more, application a: the old session goes, a young one with the same name stays.
    time.sleep(max(0.0, 12 - (time.monotonic() - made)))
    young_a = pg_session(pg_database, "a2")
    young_a.run("SET application_name = %s", (old_a.application,))
    pids.append(young_a.pid)
    run = ansible_module(MODULE, dict(base, target_min_age=8, target_states=["idle"],
                                      target_applications=[old_a.application], target_users=[pg_conn_params["login_user"]]))
    assert [(item["pid"], item["outcome"]) for item in run.result["remediation"]["results"]] == [(old_a.pid, "terminated")]
    assert run.result["changed"] is True
    assert set(alive(pg_conn_params, *pids)) == {old_b.pid, old_tx.pid, young_a.pid}


def test_max_targets_and_missing_filter_refuse_before_acting(ansible_module, pg_conn_params, pg_database,
                                                             pg_session):
    sessions = [pg_session(pg_database, "idle%d" % n) for n in range(3)]
    params = remediate(pg_conn_params, pg_database, remediate="terminate", target_min_age=0, target_states=["idle"],
                       target_applications=[s.application for s in sessions], max_targets=2)
    run = ansible_module(MODULE, params)
    assert run.failed and "Traceback" not in run.output
    assert run.result["msg"] == ("3 sessions match the filters, more than max_targets 2: nothing was signalled; "
                                 "narrow the filters or raise max_targets")
    assert run.result["changed"] is False
    assert len(alive(pg_conn_params, *[s.pid for s in sessions])) == 3
    run = ansible_module(MODULE, remediate(pg_conn_params, pg_database, remediate="cancel"))
    assert run.failed
    assert run.result["msg"] == "a remediation needs target_pids or target_min_age: it never signals every session"
