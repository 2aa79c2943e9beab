# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of _pg_activity: connection share, findings, the lock tree, replication rules.
The SQL itself runs against the real server in tests/integration/diagnostics."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _pg_activity as activity
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError


def session(pid, state="idle", age=1.0, backend_type="client backend", blocked_by=(), **extra):
    item = {"pid": pid, "state": state, "age": age, "backend_type": backend_type, "blocked_by": list(blocked_by),
            "user": "app", "database": "app", "application": "web", "query": "SELECT %d" % pid,
            "xact_age": age, "superuser": False}
    item.update(extra)
    return item


def snapshot(sessions, max_connections=20, reserved=3, **extra):
    data = {"server_version": "15.18 (Debian 15.18-0+deb12u1)", "in_recovery": False,
            "max_connections": max_connections, "superuser_reserved_connections": reserved,
            "reserved_connections": 0, "sessions": sessions, "waiting_locks": [], "replication": [], "slots": [],
            "standby": None, "databases": []}
    data.update(extra)
    return data


def by_check(result):
    return {f["check"]: f for f in result["findings"]}


def test_eleven_clients_are_not_sixteen_of_twenty():
    # The case: 11 client backends and 5 background processes on max_connections 20.
    background = [session(100 + n, state=None, backend_type=t) for n, t in enumerate(
        ("checkpointer", "background writer", "walwriter", "autovacuum launcher", "logical replication launcher"))]
    clients = [session(n, state="idle" if n % 2 else "active") for n in range(11)]
    summary = activity.connection_summary(snapshot(background + clients))
    assert summary["client_backends"] == 11 and summary["total"] == 16
    assert summary["usable"] == 17 and summary["used_percent"] == round(11 * 100 / 17, 1)
    assert summary["by_state"] == {"active": 6, "idle": 5}
    assert summary["by_backend_type"]["client backend"] == 11
    result = activity.assess(snapshot(background + clients), activity.ActivityPolicy())
    connections = by_check(result)["connections"]
    assert connections["value"] == 64.7 and connections["unit"] == "%" and connections["state"] == "ok"
    assert connections["detail"].startswith("11 client connections of 17 usable by ordinary roles "
                                            "(max_connections 20, 3 reserved): 64.7%")


@pytest.mark.parametrize("clients, state", [(13, "ok"), (14, "warning"), (16, "warning"), (17, "critical")])
def test_connection_thresholds_at_their_edges(clients, state):
    # 17 usable slots: 14 is 82.4 % (>= 80), 16 is 94.1 % (< 95), 17 is 100 %.
    result = activity.assess(snapshot([session(n) for n in range(clients)]), activity.ActivityPolicy())
    assert by_check(result)["connections"]["state"] == state


def test_reserved_connections_and_degenerate_settings():
    summary = activity.connection_summary(snapshot([session(1)], max_connections=10, reserved=3,
                                                   reserved_connections=2))
    assert summary["usable"] == 5 and summary["used_percent"] == 20.0
    tiny = activity.connection_summary(snapshot([session(1)], max_connections=2, reserved=3))
    assert tiny["usable"] == 2  # reserved >= max_connections: the whole of max_connections


def test_long_queries_and_idle_transactions():
    sessions = [session(1, "active", 400.0, query="SELECT * FROM big " + "x" * 200),
                session(2, "active", 5.0),
                session(3, "idle in transaction", 700.0),
                session(4, "idle in transaction (aborted)", 90.0),
                session(5, "active", 9999.0, backend_type="autovacuum worker"),  # not a client query
                session(6, "idle", 99999.0)]
    result = activity.assess(snapshot(sessions), activity.ActivityPolicy())
    checks = by_check(result)
    assert checks["long-running queries"]["state"] == "warning" and checks["long-running queries"]["value"] == 400.0
    assert checks["long-running queries"]["detail"].startswith(
        "1 active query for 300 s or more; oldest 400 s: pid 1 app@app (web): SELECT * FROM big xxx")
    assert [s["pid"] for s in result["long_queries"]] == [1]
    assert checks["idle in transaction"]["state"] == "critical"
    assert [s["pid"] for s in result["idle_in_transaction"]] == [3, 4]
    assert checks["idle in transaction"]["detail"].startswith("2 sessions idle in transaction for 60 s or more")
    quiet = activity.assess(snapshot([session(6, "idle", 5.0)]), activity.ActivityPolicy())
    assert by_check(quiet)["long-running queries"] == {
        "check": "long-running queries", "state": "ok", "value": None, "unit": "s", "detail": "no active query"}


def test_sessions_list_is_capped_busy_first():
    sessions = [session(n, "idle", float(n)) for n in range(10)] + [session(99, "active", 0.5)]
    result = activity.assess(snapshot(sessions), activity.ActivityPolicy(max_sessions=3))
    assert [s["pid"] for s in result["sessions"]] == [99, 9, 8] and result["sessions_truncated"] is True


def test_lock_tree_chain_and_two_blockers():
    sessions = [session(10, "idle in transaction", 60.0),
                session(11, "active", 50.0, blocked_by=[10]),
                session(12, "active", 40.0, blocked_by=[11]),
                session(13, "active", 30.0, blocked_by=[10, 14]),
                session(14, "idle in transaction", 20.0),
                session(15, "active", 1.0)]
    locks = [{"pid": 11, "locktype": "transactionid", "mode": "ShareLock", "relation": None, "transactionid": "7"}]
    tree = activity.lock_tree(sessions, locks)
    assert [node["pid"] for node in tree] == [10, 14]
    assert [child["pid"] for child in tree[0]["blocks"]] == [11, 13]
    assert tree[0]["blocks"][0]["waiting_for"]["mode"] == "ShareLock"
    assert [child["pid"] for child in tree[0]["blocks"][0]["blocks"]] == [12]
    assert [child["pid"] for child in tree[1]["blocks"]] == [13]
    assert "blocked_by" not in tree[0]
    finding = activity.blocked_check(sessions, (30, 300))
    assert finding["state"] == "warning" and finding["value"] == 50.0
    assert finding["detail"] == ("3 sessions wait for locks held by others, longest 50 s: pid 11 app@app (web) "
                                 "waits for pid 10; blocking at the root: pid 10, 14")


def test_lock_tree_cycle_and_invisible_blocker():
    sessions = [session(1, "active", blocked_by=[2]), session(2, "active", blocked_by=[1]),
                session(3, "active", blocked_by=[0])]
    tree = activity.lock_tree(sessions)
    assert tree[0] == {"pid": 0, "detail": "a prepared transaction", "blocks": [tree[0]["blocks"][0]]}
    assert tree[0]["blocks"][0]["pid"] == 3
    cycle = tree[1]
    assert cycle["pid"] == 1 and cycle["blocks"][0]["pid"] == 2
    assert cycle["blocks"][0]["blocks"] == [{"pid": 1, "detail": "deadlock cycle"}]
    assert activity.lock_tree([session(1)]) == []


def test_replication_findings():
    policy = activity.ActivityPolicy()
    standbys = [{"pid": 7, "application": "replica1", "state": "streaming", "sync_state": "async",
                 "replay_lag": 75.0, "replay_lag_bytes": 2048},
                {"pid": 8, "application": "replica2", "state": "catchup", "sync_state": "async",
                 "replay_lag": None, "replay_lag_bytes": None}]
    checks = by_check(activity.assess(snapshot([], replication=standbys), policy))
    assert checks["replication"]["state"] == "warning" and checks["replication"]["value"] == 75.0
    assert checks["replication"]["detail"] == ("2 standbys: replica1 streaming (async), replica2 catchup (async); "
                                               "replay lag up to 75.0 s, 2.0 KiB")
    slots = [{"slot_name": "old", "active": False, "retained_bytes": 3 * 1024 ** 3},
             {"slot_name": "live", "active": True, "retained_bytes": 0}]
    checks = by_check(activity.assess(snapshot([], slots=slots), policy))
    assert checks["replication slots"]["state"] == "warning" and checks["replication slots"]["value"] == 1
    assert checks["replication slots"]["detail"] == "1 of 2 slots inactive, holding WAL back (up to 3.0 GiB): old"
    standby = {"replay_delay": 700.0, "receiver_status": "streaming", "unreplayed_bytes": 0}
    checks = by_check(activity.assess(snapshot([], in_recovery=True, standby=standby), policy))
    assert checks["replication"]["state"] == "critical"
    assert checks["server"]["detail"] == "PostgreSQL 15.18, standby (in recovery), accepts connections and answers queries"


def test_policy_validation():
    with pytest.raises(ParameterError, match="lock wait: the critical threshold 1 is below the warning threshold 5"):
        activity.ActivityPolicy(lock_wait_warn_seconds=5, lock_wait_crit_seconds=1)
    with pytest.raises(ParameterError, match="max_sessions must not be negative"):
        activity.ActivityPolicy(max_sessions=-1)
    policy = activity.ActivityPolicy.from_params({"long_query_warn_seconds": 5, "long_query_crit_seconds": None,
                                                  "table_top": 0, "unrelated": 1})
    assert policy.long_query == (5, 1800) and policy.table_top == 0


def test_kinds():
    assert activity.kind({"backend_type": "client backend"}) == "client"
    assert activity.kind({"backend_type": "walsender"}) == "replication"
    assert activity.kind({"backend_type": "logical replication worker"}) == "replication"
    assert activity.kind({"backend_type": "autovacuum worker"}) == "background"
    assert activity.kind({"backend_type": "pg_cron scheduler"}) == "background"


def test_target_filter_defaults_and_protections():
    sessions = [session(1, "active", 400.0),
                session(2, "idle", 5000.0),
                session(3, "idle in transaction", 700.0, superuser=True, user="postgres"),
                session(4, "active", 900.0, backend_type="walsender"),
                session(5, "active", 900.0, backend_type="autovacuum worker"),
                session(6, "active", 900.0, application="pg_dump"),
                session(7, "active", 10.0)]
    targets, skipped = activity.TargetFilter(min_age=300).select(sessions)
    assert [s["pid"] for s in targets] == [1]  # idle 2 is not a default state, 7 is too young
    assert skipped == [
        {"pid": 3, "reason": "superuser session (postgres); set allow_superuser to signal it"},
        {"pid": 4, "reason": "replication process (walsender); set allow_replication to signal it"},
        {"pid": 5, "reason": "background process (autovacuum worker); set allow_background to signal it"},
        {"pid": 6, "reason": "protected application pg_dump (protect_applications)"}]
    allowed = activity.TargetFilter(min_age=300, allow_superuser=True, allow_replication=True, allow_background=True,
                                    protect_applications=[])
    assert [s["pid"] for s in allowed.select(sessions)[0]] == [1, 3, 4, 5, 6]
    # Named pids: any state, other filters still apply, unknown pids reported.
    targets, skipped = activity.TargetFilter(pids=[2, 7, 42]).select(sessions)
    assert [s["pid"] for s in targets] == [2, 7]
    assert skipped == [{"pid": 42, "reason": "no such session (or it is this module's own)"}]
    assert activity.TargetFilter(pids=[2], states=["active"]).select(sessions)[0] == []


def test_target_filter_attributes_and_blocking():
    sessions = [session(1, "idle in transaction", 100.0, user="app", application="worker", database="app"),
                session(2, "active", 50.0, blocked_by=[1], user="app", application="web", database="app"),
                session(3, "active", 50.0, user="report", application="web", database="dw")]

    def select(**kw):
        return [s["pid"] for s in activity.TargetFilter(min_age=0, **kw).select(sessions)[0]]

    assert select() == [1, 2, 3]
    assert select(users=["app"]) == [1, 2]
    assert select(applications=["web"]) == [2, 3]
    assert select(databases=["dw"]) == [3]
    assert select(blocking_only=True) == [1]
    assert select(states=["active"], users=["app"]) == [2]
    with pytest.raises(ParameterError, match="^3 sessions match the filters, more than max_targets 2: nothing was"):
        activity.TargetFilter(min_age=0, max_targets=2).select(sessions)


def test_target_filter_and_remediation_refuse_bad_options():
    with pytest.raises(ParameterError, match="needs target_pids or target_min_age"):
        activity.TargetFilter(users=["app"])
    with pytest.raises(ParameterError, match="target_min_age must not be negative"):
        activity.TargetFilter(min_age=-1)
    with pytest.raises(ParameterError, match="unknown session state"):
        activity.TargetFilter(min_age=1, states=["sleeping"])
    target_filter = activity.TargetFilter(min_age=1)
    with pytest.raises(ParameterError, match="remediation must be one of cancel, terminate"):
        activity.Remediation(None, "postgres", "none", target_filter)
    with pytest.raises(ParameterError, match="grace_period must be zero or more seconds"):
        activity.Remediation(None, "postgres", "cancel", target_filter, grace_period=-1)


def table_row(table_bytes=80 * 8192, reltuples=4000.0, width=100, analyzed=True, modified=0, columns=(2, 2),
              **extra):
    row = {"database": "app", "schema": "public", "table": "items", "table_bytes": table_bytes,
           "_reltuples": reltuples, "_row_width": width, "_fillfactor": 100, "_block_size": 8192,
           "_columns_with_stats": columns[0], "_columns": columns[1],
           "last_analyze": "2026-11-30 03:00:00+00" if analyzed else None, "modified_since_analyze": modified}
    row.update(extra)
    return row


def test_bloat_estimate_from_statistics():
    # 100-byte rows: 24 + 104 aligned + 4 = 132 bytes, 61 per page; 4000 rows need 66 pages.
    assert activity.estimate_bloat(table_row()) == {"wasted_bytes": 14 * 8192, "wasted_percent": 17.5}
    assert activity.estimate_bloat(table_row(table_bytes=66 * 8192))["wasted_percent"] == 0.0
    assert activity.estimate_bloat(table_row(table_bytes=40 * 8192))["wasted_bytes"] == 0  # more rows than pages: 0
    # fillfactor 50 halves the rows per page: 30 per page, 134 pages needed.
    assert activity.estimate_bloat(table_row(table_bytes=134 * 8192, _fillfactor=50))["wasted_percent"] == 0.0
    assert activity.estimate_bloat(table_row(width=None)) is None  # never analyzed: no widths
    assert activity.estimate_bloat(table_row(table_bytes=0)) is None


def test_stale_statistics():
    assert activity.stale_statistics(table_row()) is None
    assert activity.stale_statistics(table_row(analyzed=False)) == "never analyzed"
    assert activity.stale_statistics(table_row(modified=450)) is None  # 50 + 10 % of 4000
    assert activity.stale_statistics(table_row(modified=451)) == ("451 rows changed since the last analyze "
                                                                  "(2026-11-30 03:00:00+00)")
    assert activity.stale_statistics(table_row(columns=(1, 3))) == "no statistics for 2 of 3 columns"


def test_bloat_finding():
    policy = activity.ActivityPolicy(bloat_min_bytes=0)
    fresh = dict(table_row(table_bytes=200 * 8192), bloat=None)
    fresh["bloat"] = activity.table_bloat(fresh)
    stale = dict(table_row(table_bytes=400 * 8192, modified=10000, table="grown"))
    stale["bloat"] = activity.table_bloat(stale)
    assert fresh["bloat"]["wasted_percent"] == 67.0 and stale["bloat"]["wasted_percent"] == 83.5
    check = activity.bloat_check({"app": [fresh]}, policy)
    assert check == {"check": "bloat", "state": "critical", "value": 67.0, "unit": "%",
                     "detail": "app.public.items: 67.0% of 1.6 MiB wasted (estimate from planner statistics)"}
    # A worse figure from stale statistics is only a warning; the critical fresh one wins.
    check = activity.bloat_check({"app": [fresh, stale]}, policy)
    assert check["state"] == "critical" and check["value"] == 67.0
    assert check["detail"].endswith("; 1 other table with stale statistics")
    check = activity.bloat_check({"app": [stale]}, policy)
    assert check["state"] == "warning" and "statistics stale: 10000 rows changed" in check["detail"]
    small = activity.bloat_check({"app": [fresh]}, activity.ActivityPolicy())
    assert small == {"check": "bloat", "state": "ok", "value": None, "unit": "%",
                     "detail": "no table of 10.0 MiB or more to rate"}
    exact = activity.table_bloat(fresh, {"table_len": 1000, "dead_tuple_len": 100, "free_space": 250,
                                         "dead_tuple_percent": 10.0, "free_percent": 25.0})
    assert exact == {"method": "pgstattuple", "wasted_bytes": 350, "wasted_percent": 35.0,
                     "dead_tuple_percent": 10.0, "free_percent": 25.0, "stale_statistics": None, "note": None}
    with pytest.raises(ParameterError, match="bloat must be one of none, statistics, auto, pgstattuple"):
        activity.ActivityPolicy(bloat="exact")


@pytest.mark.parametrize("query, shown", [
    ("ALTER ROLE app PASSWORD 'se''cret' VALID UNTIL 'infinity'", "ALTER ROLE app PASSWORD '***' VALID UNTIL 'infinity'"),
    ("alter user x with encrypted password 'SCRAM-SHA-256$4096:abc'", "alter user x with encrypted password '***'"),
    ("ALTER ROLE app PASSWORD 'cut short by query_max_len", "ALTER ROLE app PASSWORD '***'"),
    ("CREATE SUBSCRIPTION s CONNECTION 'host=db password=abc dbname=app' PUBLICATION p",
     "CREATE SUBSCRIPTION s CONNECTION 'host=db password=*** dbname=app' PUBLICATION p"),
    ("SELECT dblink_connect('host=db password = ''x y'' user=b')", "SELECT dblink_connect('host=db password = '***' user=b')"),
    ("SELECT password FROM users WHERE name = 'password'", "SELECT password FROM users WHERE name = 'password'"),
    ("SELECT 1", "SELECT 1"),
])
def test_password_literals_are_masked(query, shown):
    assert activity.redact_query(query) == shown
    assert activity.brief(session(1, query=query))["query"] == shown


def test_sessions_hidden_from_the_login():
    # Without pg_monitor, another role's row has its pid, role and database but no type or state.
    hidden = dict(session(50, state=None, backend_type=None), application=None, age=None, query="<insufficient privilege>")
    aux = dict(session(51, state=None, backend_type=None), user=None, database=None, application=None, age=None)
    result = activity.assess(snapshot([session(1, "active"), hidden, aux]), activity.ActivityPolicy())
    conns = result["connections"]
    assert conns["client_backends"] == 2 and conns["hidden"] == 2 and conns["total"] == 3
    assert conns["by_state"] == {"(hidden)": 1, "active": 1}
    assert conns["by_backend_type"] == {"(hidden)": 2, "client backend": 1}
    checks = by_check(result)
    assert checks["connections"]["detail"].endswith(
        "; 2 hidden from this login (grant it pg_monitor), those of a role counted as clients")
    for name in ("long-running queries", "idle in transaction"):
        assert checks[name]["state"] == "warning"
        assert checks[name]["detail"].endswith(
            "; the state of 1 session of other roles is hidden from this login (grant it pg_monitor)")
    assert activity.TargetFilter(pids=[50]).select([hidden])[1] == [
        {"pid": 50, "reason": "its state is hidden from this login (grant it pg_monitor), so it cannot be judged"}]


def remediation_result(action="cancel", check_mode=False, results=(), skipped=()):
    outcomes = {}
    for item in results:
        outcomes[item["outcome"]] = outcomes.get(item["outcome"], 0) + 1
    return {"action": action, "check_mode": check_mode, "matched": len(results), "outcomes": outcomes,
            "results": list(results), "skipped": list(skipped)}


def test_remediation_finding():
    done = remediation_result(results=[
        {"pid": 1, "outcome": "cancelled", "signals": ["pg_cancel_backend"], "detail": "stopped"},
        {"pid": 2, "outcome": "failed", "signals": [], "detail": "pg_cancel_backend refused: permission denied"}],
        skipped=[{"pid": 3, "reason": "protected"}])
    assert activity.remediation_finding(done) == {
        "check": "remediation", "state": "critical", "value": 1, "unit": "sessions",
        "detail": "cancel 2 sessions: cancelled 1, failed 1; pid 2 failed: pg_cancel_backend refused: permission "
                  "denied; 1 matching session left alone (see remediation.skipped)"}
    still = remediation_result(results=[{"pid": 4, "outcome": "still running", "signals": ["pg_cancel_backend"],
                                         "detail": "escalate is off"}])
    assert activity.remediation_finding(still)["state"] == "warning"
    would = remediation_result("terminate", True, [{"pid": 5, "outcome": "would terminate", "signals": []},
                                                   {"pid": 6, "outcome": "would terminate", "signals": []}])
    assert activity.remediation_finding(would) == {
        "check": "remediation", "state": "ok", "value": 2, "unit": "sessions",
        "detail": "would terminate 2 sessions (check mode): pid 5, 6"}
    assert activity.remediation_finding(remediation_result())["detail"] == "cancel: no session matched the filters"


def test_conclude():
    result = activity.conclude({"findings": [activity.finding("a", "ok", 1, None, "fine"),
                                             activity.finding("b", "warning", 2, "s", "slow")]})
    assert result["state"] == "warning" and result["summary"] == {"total": 2, "ok": 1, "warning": 1, "critical": 0}
    assert result["msg"] == "1 of 2 checks ok, overall warning - b warning: slow"
