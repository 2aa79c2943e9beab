# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_activity's read-only diagnostics through ansible-playbook, against sessions the test makes
on the real PostgreSQL server (shared with other tests: assertions are about the test's own sessions)."""

from __future__ import annotations

import sys
import time

from harness import run_playbook

MODULE = "runbook.ops.pg_activity"
FINDING_KEYS = {"check", "state", "value", "unit", "detail"}


def findings_of(result):
    for item in result["findings"]:
        assert set(item) == FINDING_KEYS, item
        assert item["state"] in ("ok", "warning", "critical")
    return {item["check"]: item for item in result["findings"]}


def walk(tree):
    for node in tree:
        yield node
        yield from walk(node.get("blocks", []))


def test_lock_tree_names_blocker_and_waiter(ansible_module, pg_conn_params, blocked_pair):
    blocker, waiter, dbname = blocked_pair
    time.sleep(1.2)
    params = dict(pg_conn_params, database=dbname, fail_on="never", lock_wait_warn_seconds=1,
                  idle_in_transaction_warn_seconds=1, idle_in_transaction_crit_seconds=3600)
    run = ansible_module(MODULE, params, check=True)
    assert not run.failed, run.output
    result = run.result
    assert result["changed"] is False
    roots = [node for node in result["lock_tree"] if node["pid"] == blocker.pid]
    assert len(roots) == 1, result["lock_tree"]
    root = roots[0]
    assert root["application"] == blocker.application and root["state"] == "idle in transaction"
    assert "UPDATE items SET name = 'held'" in root["query"]
    waiting = [node for node in root["blocks"] if node["pid"] == waiter.pid]
    assert len(waiting) == 1, root
    assert waiting[0]["application"] == waiter.application and waiting[0]["state"] == "active"
    assert waiting[0]["wait_event_type"] == "Lock"
    assert waiting[0]["waiting_for"]["mode"] == "ShareLock" and waiting[0]["waiting_for"]["locktype"] == "transactionid"
    assert waiting[0]["blocks"] == []
    assert waiter.pid not in [node["pid"] for node in result["lock_tree"]]  # not a root: it waits
    findings = findings_of(result)
    blocked = findings["blocked sessions"]
    assert blocked["state"] in ("warning", "critical") and blocked["unit"] == "s" and blocked["value"] >= 1
    idle = findings["idle in transaction"]
    assert idle["state"] in ("warning", "critical") and idle["value"] >= 1
    assert blocker.pid in [s["pid"] for s in result["idle_in_transaction"]]
    mine = [s for s in result["idle_in_transaction"] if s["pid"] == blocker.pid][0]
    assert mine["age"] >= 1 and mine["xact_age"] >= mine["age"] and mine["user"] == pg_conn_params["login_user"]
    assert result["state"] in ("warning", "critical")


def test_idle_in_transaction_under_the_threshold_is_ok(ansible_module, pg_conn_params, pg_database, pg_session):
    session = pg_session(pg_database, "idletx", autocommit=False)
    session.run("SELECT 1")
    params = dict(pg_conn_params, database=pg_database, fail_on="never", idle_in_transaction_warn_seconds=3600,
                  idle_in_transaction_crit_seconds=7200, table_top=0)
    run = ansible_module(MODULE, params)
    result = run.result
    assert session.pid not in [s["pid"] for s in result["idle_in_transaction"]]
    assert [s for s in result["sessions"] if s["pid"] == session.pid][0]["state"] == "idle in transaction"
    assert "tables" not in result and "table sizes" not in findings_of(result)


def test_long_query_is_listed_with_a_capped_excerpt(ansible_module, pg_conn_params, pg_database, pg_session,
                                                    wait_for):
    slow = pg_session(pg_database, "slow")
    slow.start("SELECT pg_sleep(60) /* a long report query with a long comment */")
    wait_for("pid = %s AND state = 'active'", (slow.pid,))
    time.sleep(1.5)
    params = dict(pg_conn_params, database=pg_database, long_query_warn_seconds=1, long_query_crit_seconds=3600,
                  query_max_length=20, fail_on="warning")
    run = ansible_module(MODULE, params)
    assert run.failed  # at least our query is over 1 s: warning fails under fail_on=warning
    result = run.result
    mine = [s for s in result["long_queries"] if s["pid"] == slow.pid]
    assert len(mine) == 1, result["long_queries"]
    assert mine[0]["query"] == "SELECT pg_sleep(60) " and mine[0]["query_truncated"] is True
    assert mine[0]["age"] >= 1.5 and mine[0]["application"] == slow.application
    long_finding = findings_of(result)["long-running queries"]
    assert long_finding["state"] in ("warning", "critical") and long_finding["value"] >= 1.5
    assert "for 1.0 s or more" in long_finding["detail"]
    assert "long-running queries" in result["msg"]


def test_client_backends_counted_apart_from_other_processes(ansible_module, pg_conn_params, pg_database, pg_session):
    sessions = [pg_session(pg_database, "idle%d" % n) for n in range(3)]
    busy = pg_session(pg_database, "busy", autocommit=False)
    busy.run("SELECT 1")
    run = ansible_module(MODULE, dict(pg_conn_params, database=pg_database, fail_on="never"))
    result = run.result
    conns = result["connections"]
    # The module's own session is connected to this database too, and is not counted.
    assert conns["by_database"][pg_database] == 4
    for session in sessions:
        assert conns["by_application"][session.application] == 1
    assert conns["by_backend_type"]["client backend"] == conns["client_backends"]
    assert sum(conns["by_state"].values()) == conns["client_backends"]
    assert sum(conns["by_backend_type"].values()) == conns["total"] > conns["client_backends"]
    assert "checkpointer" in conns["by_backend_type"]
    assert conns["usable"] == conns["max_connections"] - conns["superuser_reserved_connections"] \
        - conns["reserved_connections"]
    expected = round(conns["client_backends"] * 100.0 / conns["usable"], 1)
    finding = findings_of(result)["connections"]
    assert finding["value"] == conns["used_percent"] == expected and finding["unit"] == "%"
    assert finding["detail"].startswith("%d client connections of %d usable by ordinary roles"
                                        % (conns["client_backends"], conns["usable"]))
    assert all(s["pid"] != 0 for s in result["sessions"])


def test_connection_share_thresholds(ansible_module, pg_conn_params, pg_database):
    # Any server has at least the test's own connection... and this one is not counted; use 0 %
    # so the threshold edge is crossed whatever else is connected.
    params = dict(pg_conn_params, database=pg_database, connections_warn_percent=0, connections_crit_percent=100)
    run = ansible_module(MODULE, dict(params, fail_on="critical"))
    assert not run.failed or findings_of(run.result)["connections"]["state"] != "critical", run.output
    assert findings_of(run.result)["connections"]["state"] == "warning"
    strict = ansible_module(MODULE, dict(params, connections_crit_percent=0))
    assert strict.failed and findings_of(strict.result)["connections"]["state"] == "critical"
    assert "connections critical" in strict.result["msg"]


def test_table_sizes_and_replication(ansible_module, pg_conn_params, pg_database, pg_session):
    setup = pg_session(pg_database, "setup")
    setup.run("CREATE TABLE big (id int, payload text)")
    setup.run("INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g")
    setup.run("CREATE TABLE small (id int)")
    setup.run("ANALYZE")
    run = ansible_module(MODULE, dict(pg_conn_params, size_databases=[pg_database], table_top=1, fail_on="never"))
    result = run.result
    assert "tables" in result, result
    assert [(t["database"], t["schema"], t["table"]) for t in result["tables"]] == [(pg_database, "public", "big")]
    big = result["tables"][0]
    assert big["total_bytes"] >= big["table_bytes"] > 1000000 and big["live_tuples"] == 5000
    assert big["last_analyze"] and big["analyze_age"] >= 0
    sizes = findings_of(result)["table sizes"]
    assert sizes["unit"] == "bytes" and sizes["value"] >= big["total_bytes"] and sizes["state"] == "ok"
    assert pg_database in [d["name"] for d in result["databases"]]
    repl = findings_of(result)["replication"]
    assert repl["state"] == "ok" and repl["detail"] == "primary with no standby connected"
    assert result["replication"]["standbys"] == []


def test_server_down_is_a_critical_finding_not_a_traceback(ansible_module, pg_conn_params, closed_port):
    params = dict(pg_conn_params, login_port=closed_port)
    run = ansible_module(MODULE, params)
    assert run.failed and "Traceback" not in run.output
    assert run.result["msg"].startswith("cannot connect to PostgreSQL at 127.0.0.1:%d/postgres" % closed_port)
    never = ansible_module(MODULE, dict(params, fail_on="never"))
    assert not never.failed
    assert never.result["state"] == "critical" and never.result["reachable"] is False
    assert [f["check"] for f in never.result["findings"]] == ["server"]
    assert findings_of(never.result)["server"]["state"] == "critical"


def test_wrong_password_is_clear_and_not_shown(ansible_module, pg_conn_params):
    secret = "wrong-pw-Zq81xv"
    run = ansible_module(MODULE, dict(pg_conn_params, login_password=secret), verbosity=3)
    assert run.failed and "Traceback" not in run.output
    assert "password authentication failed" in run.result["msg"]
    assert secret not in run.output


def test_bad_thresholds_refused(ansible_module, pg_conn_params):
    run = ansible_module(MODULE, dict(pg_conn_params, long_query_warn_seconds=60, long_query_crit_seconds=10))
    assert run.failed
    assert run.result["msg"] == "long query: the critical threshold 10.0 is below the warning threshold 60.0"


def test_missing_psycopg2_is_reported(tmp_path, pg_conn_params):
    # /usr/bin/python3 on Debian has no psycopg2: the module must say so, not crash.
    inventory = tmp_path / "nolib.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         "      ansible_python_interpreter: /usr/bin/python3\n")
    task = {"name": "module under test", MODULE: dict(pg_conn_params), "ignore_errors": True}
    run = run_playbook(tmp_path, [{"hosts": "localhost", "gather_facts": False, "tasks": [task]}],
                       inventory=str(inventory))
    assert run.failed, run.output
    assert "psycopg2" in run.result["msg"] and "Failed to import the required Python library" in run.result["msg"]
    assert sys.executable != "/usr/bin/python3"


def bloat_of(result):
    return findings_of(result)["bloat"]


def test_bloat_estimate_says_when_statistics_are_stale(ansible_module, pg_conn_params, pg_database, pg_session):
    # Each step in its own session, closed after it: a closing backend flushes its statistics
    # (PostgreSQL 15 otherwise sends them up to a second or more later).
    def step(sql):
        session = pg_session(pg_database, "bloat")
        session.run(sql)
        session.conn.close()
        time.sleep(0.5)

    step("CREATE TABLE grown (id int, payload text) WITH (autovacuum_enabled = false)")
    step("INSERT INTO grown SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g")
    step("ANALYZE grown")
    params = dict(pg_conn_params, database=pg_database, fail_on="never", bloat_min_bytes=0, table_top=1)
    fresh = ansible_module(MODULE, params).result
    assert fresh["tables"][0]["bloat"] == {"method": "statistics", "wasted_bytes": 0, "wasted_percent": 0.0,
                                           "stale_statistics": None, "note": None}
    assert bloat_of(fresh)["state"] == "ok" and bloat_of(fresh)["value"] == 0.0
    # The table doubles without an ANALYZE: the statistics now claim half of it is wasted. The
    # estimate says so, and that it cannot be trusted, and is not critical.
    step("INSERT INTO grown SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g")
    stale = ansible_module(MODULE, params).result
    figure = stale["tables"][0]["bloat"]
    assert 45 <= figure["wasted_percent"] <= 55
    assert figure["stale_statistics"].startswith("50000 rows changed since the last analyze (")
    finding = bloat_of(stale)
    assert finding["state"] == "warning" and finding["unit"] == "%" and finding["value"] == figure["wasted_percent"]
    assert "statistics stale: 50000 rows changed since the last analyze" in finding["detail"]
    assert "run ANALYZE before trusting it" in finding["detail"]


def test_bloat_exact_with_pgstattuple(ansible_module, pg_conn_params, pg_database, pg_session):
    setup = pg_session(pg_database, "bloat")
    setup.run("CREATE TABLE churn (id int, payload text) WITH (autovacuum_enabled = false)")
    setup.run("INSERT INTO churn SELECT g, repeat('x', 100) FROM generate_series(1, 60000) g")
    setup.run("DELETE FROM churn WHERE id % 3 <> 0")
    setup.run("VACUUM ANALYZE churn")
    params = dict(pg_conn_params, database=pg_database, fail_on="never", bloat_min_bytes=0, table_top=1)
    # Without the extension: auto falls back to the estimate and says why; pgstattuple warns.
    auto = ansible_module(MODULE, dict(params, bloat="auto")).result
    assert auto["tables"][0]["bloat"]["method"] == "statistics"
    assert auto["tables"][0]["bloat"]["note"] == "pgstattuple is not installed in %s" % pg_database
    assert bloat_of(auto)["state"] == "critical"  # two thirds deleted: the estimate from fresh statistics
    strict = ansible_module(MODULE, dict(params, bloat="pgstattuple", bloat_crit_percent=100)).result
    assert bloat_of(strict)["state"] == "warning"
    assert bloat_of(strict)["detail"].endswith("; pgstattuple is not installed in %s" % pg_database)
    setup.run("CREATE EXTENSION pgstattuple")
    exact = ansible_module(MODULE, dict(params, bloat="auto")).result
    figure = exact["tables"][0]["bloat"]
    assert figure["method"] == "pgstattuple" and figure["note"] is None
    assert 55 <= figure["wasted_percent"] <= 75 and figure["free_percent"] > 50
    assert bloat_of(exact)["state"] == "critical" and "(pgstattuple)" in bloat_of(exact)["detail"]
    none = ansible_module(MODULE, dict(params, bloat="none")).result
    assert "bloat" not in findings_of(none) and "bloat" not in none["tables"][0]


def test_exclusively_locked_table_does_not_hang_the_check(ansible_module, pg_conn_params, pg_database, pg_session):
    setup = pg_session(pg_database, "setup")
    setup.run("CREATE TABLE locked (id int)")
    holder = pg_session(pg_database, "vacuumfull", autocommit=False)
    holder.run("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
    started = time.monotonic()
    run = ansible_module(MODULE, dict(pg_conn_params, database=pg_database, fail_on="never"))
    assert time.monotonic() - started < 25, "the table size query waited for the lock"
    sizes = findings_of(run.result)["table sizes"]
    assert sizes["state"] == "warning" and sizes["value"] is None
    assert "lock timeout" in sizes["detail"] and sizes["detail"].endswith(
        "(a table is locked exclusively: see the lock tree)")
    assert run.result["tables"] == [] and findings_of(run.result)["server"]["state"] == "ok"


def test_password_in_a_running_query_is_masked(ansible_module, pg_conn_params, pg_database, pg_session, wait_for):
    secret = "hunter2-Qx81"
    slow = pg_session(pg_database, "secret")
    slow.start("SELECT pg_sleep(30) /* ALTER ROLE nobody PASSWORD '%s' */" % secret)
    wait_for("pid = %s AND state = 'active'", (slow.pid,))
    run = ansible_module(MODULE, dict(pg_conn_params, database=pg_database, fail_on="never", long_query_warn_seconds=0),
                         verbosity=3)
    mine = [s for s in run.result["sessions"] if s["pid"] == slow.pid][0]
    assert mine["query"] == "SELECT pg_sleep(30) /* ALTER ROLE nobody PASSWORD '***' */"
    assert secret not in run.output


def test_sessions_hidden_from_the_login_are_not_called_ok(ansible_module, pg_conn_params, pg_database, pg_session,
                                                          limited_role):
    name, password, grant = limited_role
    other = pg_session(pg_database, "superuser", autocommit=False)
    other.run("SELECT 1")  # idle in transaction, as a superuser
    params = dict(pg_conn_params, login_user=name, login_password=password, database=pg_database,
                  fail_on="never", table_top=0, idle_in_transaction_warn_seconds=3600,
                  idle_in_transaction_crit_seconds=7200)
    blind = ansible_module(MODULE, params).result
    assert blind["connections"]["by_database"][pg_database] >= 1  # counted...
    mine = [s for s in blind["sessions"] if s["pid"] == other.pid][0]
    assert mine["state"] is None and mine["query"] == "<insufficient privilege>"
    for check in ("long-running queries", "idle in transaction"):  # ...but its state cannot be judged
        finding = findings_of(blind)[check]
        assert finding["state"] == "warning", finding
        assert "is hidden from this login (grant it pg_monitor)" in finding["detail"]
    # Remediation leaves what it cannot see alone.
    run = ansible_module(MODULE, dict(params, remediate="cancel", target_pids=[other.pid], allow_superuser=True))
    assert run.result["remediation"]["skipped"] == [{"pid": other.pid, "reason": (
        "its state is hidden from this login (grant it pg_monitor), so it cannot be judged")}]
    assert run.result["changed"] is False
    grant("pg_monitor")
    seeing = ansible_module(MODULE, params).result
    assert [s for s in seeing["sessions"] if s["pid"] == other.pid][0]["state"] == "idle in transaction"
    assert "hidden" not in findings_of(seeing)["idle in transaction"]["detail"]
    # pg_monitor does not give the right to signal a superuser's session: the refusal is critical.
    run = ansible_module(MODULE, dict(params, remediate="cancel", target_pids=[other.pid], allow_superuser=True,
                                      fail_on="critical"))
    assert run.failed and "Traceback" not in run.output
    item = run.result["remediation"]["results"][0]
    assert item["pid"] == other.pid and item["outcome"] == "failed" and item["signals"] == []
    assert item["detail"].startswith("pg_cancel_backend refused: ") and "superuser" in item["detail"]
    remediation = findings_of(run.result)["remediation"]
    assert remediation["state"] == "critical" and remediation["value"] == 0
    assert run.result["changed"] is False
    assert other.run("SELECT 2") == [(2,)]  # still there, transaction intact
