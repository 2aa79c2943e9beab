# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The full restore's timeline: each step's state and time from the marks and results the role registers,
the RTO, the time the writers were stopped, the RPO of the database (logical, PITR to a time, PITR latest) and
of the files."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _findings
from ansible_collections.runbook.ops.plugins.module_utils import _full_restore as fr
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError

MARKS = {"begin": 1000.0, "precheck": 1002.0, "stop": 1003.0, "database": 1010.5, "files": 1012.0, "config": 1012.5,
         "start": 1015.0, "health": 1020.0, "verify": 1021.0}
TITLES = ["pre-check (nothing stopped)", "stop writers", "restore database", "restore uploaded files",
          "restore configuration", "start writers", "health gate", "verify data", "RTO", "RPO database", "RPO files"]
SKIPPED = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}


def logical_restore():
    """A logical restore with every part: the registered results as the role has them."""
    return {
        "marks": dict(MARKS), "rto_seconds": 14400, "rpo_seconds": 3600,
        "writers": {"enabled": True, "stop_argv": ["ctl.sh", "stop", "app.env"],
                    "start": {"ok": True, "detail": "`ctl.sh start app.env` exited 0"}},
        "database": {"source": "logical", "backup_age_seconds": 120,
                     "backup": {"id": "sqlite-app-1", "started": "2026-12-01T03:00:00Z",
                                "row_counts": {"items": 10, "audit_log": 3}}},
        "files": {"enabled": True,
                  "plan": {"counts": {"copied": 2, "deleted": 1, "unchanged": 3}, "source_age_seconds": 60,
                           "source_synced_at": "2026-12-01T03:01:00Z"},
                  "result": {"msg": "download: 2 copied (10 bytes), 1 deleted, 3 unchanged", "changed": True}},
        "config": {"enabled": True, "source": "/srv/known-good", "dest": "/srv/app/config",
                   "files": ["app.conf", "extra.conf"], "result": {"changed": True}},
        "health": {"enabled": True, "result": {"state": "ok", "msg": "1 of 1 targets ok, overall ok"}},
        "verify": {"enabled": True, "api": {"state": "ok", "msg": "1 of 1 targets ok, overall ok"},
                   "files": {"counts": {"copied": 0, "deleted": 0, "unchanged": 5}}},
    }


def pitr_restore(target_type="time", **result):
    restore = logical_restore()
    restore["marks"]["cluster_stop"] = 1005.0
    pgbackrest = {"target": {"backup": "20261201-030000F"}, "promoted": True, "recovered_to": "2026-12-01 03:20:00.5+00",
                  "target_gap_seconds": 1.25, "restore_seconds": 3.0, "duration_seconds": 7.5,
                  "verification": {"row_counts": {"public.items": 3},
                                   "assertions": [{"name": "a", "ok": True}, {"name": "b", "ok": False}]}}
    pgbackrest.update(result)
    restore["database"] = {"source": "pitr", "pitr": {
        "stanza": "app", "pg_data": "/var/lib/postgresql/15/main", "target_type": target_type,
        "target": "2026-12-01 03:20:01+00" if target_type == "time" else "",
        "plan": {"backup": "20261201-030000F", "target": "2026-12-01 03:20:01+00" if target_type == "time" else None,
                 "archive_end": "2026-12-01T03:25:00Z"},
        "archive_age_seconds": 300, "result": pgbackrest}}
    return restore


def run(restore, **changes):
    values = copy.deepcopy(restore)
    values.update(changes)
    return {f["check"]: f for f in fr.timeline(**values)}


def parts(restore, **changes):
    """``restore`` with some keys of its parts changed: ``health={"result": {...}}``."""
    values = copy.deepcopy(restore)
    for name, change in changes.items():
        values[name].update(change)
    return values


def test_a_restore_where_everything_worked():
    findings = fr.timeline(**logical_restore())
    assert [f["check"] for f in findings] == TITLES
    assert [f["section"] for f in findings] == ["steps"] * 8 + ["objectives"] * 3
    assert all(set(f) == {"section", "check", "state", "value", "unit", "detail"} and f["unit"] == "s" for f in findings)
    found = {f["check"]: f for f in findings}
    assert all(f["state"] == "ok" for f in findings), findings
    assert [found[t]["value"] for t in TITLES[:8]] == [2.0, 1.0, 7.5, 1.5, 0.5, 2.5, 5.0, 1.0]
    assert found["pre-check (nothing stopped)"]["detail"] == (
        "database backup sqlite-app-1; files: 2 to copy, 1 to delete; configuration from /srv/known-good (2 files)")
    assert found["stop writers"]["detail"] == "`ctl.sh stop app.env`"
    assert found["restore database"]["detail"] == ("backup sqlite-app-1 (taken 2026-12-01T03:00:00Z); every table's "
                                                   "row count matched its manifest (audit_log=3, items=10)")
    assert found["restore uploaded files"]["detail"] == "download: 2 copied (10 bytes), 1 deleted, 3 unchanged"
    assert found["restore configuration"]["detail"] == "copied /srv/known-good to /srv/app/config, changed"
    assert found["start writers"]["detail"] == "`ctl.sh start app.env` exited 0"
    assert found["health gate"]["detail"] == "1 of 1 targets ok, overall ok"
    assert found["verify data"]["detail"] == "API: 1 of 1 targets ok, overall ok; files: 5 match the store, 0 differ"
    assert found["RTO"]["value"] == 20.0
    assert found["RTO"]["detail"] == "pre-check to healthy 20.0 s (target 14400 s); writers stopped 17.0 s"
    assert found["RPO database"]["value"] == 120
    assert found["RPO database"]["detail"] == "backup taken 2026-12-01T03:00:00Z, 120 s before the restore (target 3600 s)"
    assert found["RPO files"]["value"] == 60
    assert found["RPO files"]["detail"] == "last upload finished 2026-12-01T03:01:00Z, 60 s before the restore (target 3600 s)"
    # check_report takes them as they are
    report = _findings.build([findings], noun="steps and objectives")
    assert report["state"] == "ok" and report["findings"] == findings
    assert report["msg"] == "11 of 11 steps and objectives ok, overall ok"


def test_parts_not_in_this_restore_and_their_time():
    restore = parts(logical_restore(), writers={"enabled": False}, files={"enabled": False, "plan": SKIPPED},
                    config={"enabled": False, "source": ""}, verify={"enabled": False, "api": SKIPPED, "files": SKIPPED})
    found = run(restore)
    for title in ("stop writers", "restore uploaded files", "restore configuration", "start writers", "verify data"):
        assert (found[title]["state"], found[title]["value"], found[title]["detail"]) == ("ok", None, "not part of this restore")
    # the stop mark of a restore without writers does not count: the database's time runs from the pre-check
    assert found["restore database"]["value"] == 8.5 and found["health gate"]["value"] == 9.5
    assert found["pre-check (nothing stopped)"]["detail"] == "database backup sqlite-app-1"
    assert found["RPO files"] == {"section": "objectives", "check": "RPO files", "state": "ok", "value": None, "unit": "s",
                                  "detail": "not part of this restore"}
    database = run(parts(logical_restore(), database={"source": "none", "backup": {}, "backup_age_seconds": None}))
    assert database["restore database"]["detail"] == "not part of this restore"
    assert database["RPO database"]["state"] == "ok" and database["RPO database"]["value"] is None
    assert database["RPO database"]["detail"] == "not part of this restore"
    assert database["pre-check (nothing stopped)"]["detail"].startswith("files: 2 to copy")


def test_check_mode_runs_only_the_pre_check():
    restore = logical_restore()
    restore["marks"] = {"begin": 1000.0, "precheck": 1002.0, "health": 1002.5, "verify": 1002.6}
    for name, key in (("files", "result"), ("config", "result"), ("health", "result"), ("verify", "api"),
                      ("verify", "files")):
        restore[name][key] = SKIPPED
    restore["writers"]["start"] = {}
    found = run(restore, check_mode=True)
    assert found["pre-check (nothing stopped)"]["state"] == "ok" and found["pre-check (nothing stopped)"]["value"] == 2.0
    for title in TITLES[1:8]:
        assert (found[title]["state"], found[title]["value"], found[title]["detail"]) == ("ok", None, "check mode: not run")
    assert (found["RTO"]["state"], found["RTO"]["value"], found["RTO"]["detail"]) == ("ok", None, "check mode")
    assert found["RPO database"]["value"] == 120 and found["RPO files"]["value"] == 60


def test_a_failed_step_is_critical_the_later_ones_too_and_verify_does_not_run():
    restore = logical_restore()
    for key in ("files", "config"):
        del restore["marks"][key]
    restore["files"]["result"] = {"failed": True, "msg": "bucket gone"}
    restore["verify"].update(api=SKIPPED, files=SKIPPED)
    found = run(restore, failed_step="Download the uploaded files", error="NoSuchBucket: bucket gone")
    for title in ("restore uploaded files", "restore configuration"):
        assert found[title]["state"] == "critical" and found[title]["value"] is None
        assert found[title]["detail"] == "failed at Download the uploaded files: NoSuchBucket: bucket gone"
    assert found["restore database"]["state"] == "ok" and found["restore database"]["value"] == 7.5
    # the start's time runs from the last step that finished
    assert found["start writers"]["state"] == "ok" and found["start writers"]["value"] == 4.5
    assert found["health gate"]["state"] == "ok"
    assert found["verify data"]["state"] == "warning" and found["verify data"]["detail"] == "not run: an earlier step failed"
    assert found["RTO"]["state"] == "critical" and found["RTO"]["value"] == 20.0


def test_a_failure_before_the_database_step_ended():
    restore = logical_restore()
    for key in ("database", "files", "config"):
        del restore["marks"][key]
    found = run(restore, failed_step="Restore the database with the restore role", error="row counts differ")
    assert [found[t]["state"] for t in TITLES[:5]] == ["ok", "ok", "critical", "critical", "critical"]
    assert found["start writers"]["value"] == 12.0  # from the stop mark


def test_a_failed_start_of_the_writers_is_critical():
    restore = parts(logical_restore(), writers={"start": {"ok": False, "detail": "`ctl.sh start app.env` exited 1: boom"}})
    found = run(restore)
    assert found["start writers"]["state"] == "critical"
    assert found["start writers"]["detail"] == "`ctl.sh start app.env` exited 1: boom"
    assert found["RTO"]["state"] == "ok"  # the health gate says whether the service came back


@pytest.mark.parametrize("state, rto_state", [("ok", "ok"), ("warning", "ok"), ("critical", "critical")])
def test_the_health_gate_takes_the_probe_state(state, rto_state):
    found = run(parts(logical_restore(), health={"result": {"state": state, "msg": "readyz %s" % state}}))
    assert found["health gate"]["state"] == state and found["health gate"]["detail"] == "readyz %s" % state
    assert found["RTO"]["state"] == rto_state


@pytest.mark.parametrize("result", [{}, None, SKIPPED])
def test_a_health_gate_that_did_not_run_is_critical(result):
    found = run(parts(logical_restore(), health={"result": result}))
    assert found["health gate"]["state"] == "critical" and found["health gate"]["detail"] == ""


def test_without_a_health_gate():
    found = run(parts(logical_restore(), health={"enabled": False, "result": SKIPPED}))
    assert found["health gate"]["detail"] == "not part of this restore" and found["RTO"]["state"] == "ok"


def test_a_health_state_off_the_scale_is_refused():
    with pytest.raises(ParameterError, match="health.result.state"):
        fr.timeline(**parts(logical_restore(), health={"result": {"state": "fine"}}))


@pytest.mark.parametrize("api_state, counts, state, detail", [
    ("warning", {"copied": 0, "deleted": 0, "unchanged": 5}, "ok", "API: m; files: 5 match the store, 0 differ"),
    ("critical", {"copied": 0, "deleted": 0, "unchanged": 5}, "critical", "API: m; files: 5 match the store, 0 differ"),
    ("ok", {"copied": 1, "deleted": 0, "unchanged": 4}, "critical", "API: m; files: 4 match the store, 1 differ"),
    ("ok", {"copied": 0, "deleted": 2, "unchanged": 5}, "critical", "API: m; files: 5 match the store, 2 differ"),
])
def test_verify_rates_the_service_count_and_the_files(api_state, counts, state, detail):
    found = run(parts(logical_restore(), verify={"api": {"state": api_state, "msg": "m"}, "files": {"counts": counts}}))
    assert found["verify data"]["state"] == state and found["verify data"]["detail"] == detail


def test_verify_of_the_files_alone_or_the_api_alone():
    found = run(parts(logical_restore(), verify={"api": SKIPPED}))
    assert found["verify data"]["state"] == "ok"
    assert found["verify data"]["detail"] == "files: 5 match the store, 0 differ"
    found = run(parts(logical_restore(), verify={"files": SKIPPED}))
    assert found["verify data"]["detail"] == "API: 1 of 1 targets ok, overall ok"


def test_durations_with_missing_marks_and_marks_as_strings():
    restore = logical_restore()
    del restore["marks"]["verify"]
    restore["marks"]["health"] = "1020.25"  # Jinja without native types gives strings
    restore["marks"]["begin"] = "1000"
    found = run(restore)
    assert found["verify data"]["value"] is None and found["verify data"]["state"] == "ok"
    assert found["health gate"]["value"] == 5.25 and found["RTO"]["value"] == 20.2
    restore["marks"] = {"precheck": 1.0}
    with pytest.raises(ParameterError, match="marks must have begin"):
        fr.timeline(**restore)
    restore["marks"] = dict(MARKS, stop="soon")
    with pytest.raises(ParameterError, match="marks.stop must be a number of seconds"):
        fr.timeline(**restore)


def test_rto_against_its_objective_and_the_downtime():
    assert run(logical_restore(), rto_seconds=20)["RTO"]["state"] == "ok"
    late = run(logical_restore(), rto_seconds=10)["RTO"]
    assert late["state"] == "warning" and late["detail"] == "pre-check to healthy 20.0 s (target 10 s); writers stopped 17.0 s"
    restore = logical_restore()
    del restore["marks"]["stop"]
    restore["writers"]["enabled"] = False
    assert run(restore)["RTO"]["detail"] == "pre-check to healthy 20.0 s (target 14400 s)"
    failed = run(logical_restore(), error="boom", failed_step="x")["RTO"]
    assert failed["state"] == "critical" and failed["value"] == 20.0
    restore = logical_restore()
    del restore["marks"]["health"]
    unknown = run(restore)["RTO"]
    assert unknown["state"] == "warning" and unknown["value"] is None and unknown["detail"].startswith("unknown")


def test_rpo_of_a_logical_backup():
    old = run(parts(logical_restore(), database={"backup_age_seconds": 3601}))["RPO database"]
    assert old["state"] == "warning" and old["value"] == 3601
    assert run(parts(logical_restore(), database={"backup_age_seconds": 3600}))["RPO database"]["state"] == "ok"
    unknown = run(parts(logical_restore(), database={"backup_age_seconds": None}))["RPO database"]
    assert unknown["state"] == "warning" and unknown["value"] is None
    assert unknown["detail"] == "backup taken 2026-12-01T03:00:00Z, age unknown (target 3600 s)"
    assert run(parts(logical_restore(), database={"backup_age_seconds": "120"}))["RPO database"]["value"] == 120
    with pytest.raises(ParameterError, match="backup_age_seconds"):
        fr.timeline(**parts(logical_restore(), database={"backup_age_seconds": True}))


def test_pitr_to_a_time():
    found = run(pitr_restore())
    assert found["pre-check (nothing stopped)"]["detail"] == (
        "stanza app: backup 20261201-030000F covers time 2026-12-01 03:20:01+00, WAL archived up to 2026-12-01T03:25:00Z; "
        "files: 2 to copy, 1 to delete; configuration from /srv/known-good (2 files)")
    assert found["restore database"]["detail"] == (
        "point-in-time recovery of stanza app from backup 20261201-030000F over /var/lib/postgresql/15/main: recovered to "
        "2026-12-01 03:20:00.5+00 (target time 2026-12-01 03:20:01+00, 1.25 s before it); cluster stopped in 2.0 s, "
        "pgbackrest restore 3.0 s, start and recovery 4.5 s; rows: public.items=3; assertions: 1 of 2 pass")
    rpo = found["RPO database"]
    assert rpo["state"] == "ok" and rpo["value"] == 1.25
    assert rpo["detail"] == ("recovered to 2026-12-01 03:20:00.5+00, target time 2026-12-01 03:20:01+00; the last kept "
                             "transaction committed 1.25 s before the target (RPO target 3600 s)")
    assert run(pitr_restore(target_gap_seconds=4000.5))["RPO database"]["state"] == "warning"


def test_pitr_details_without_a_server_log_or_checks():
    found = run(pitr_restore(recovered_to=None, target_gap_seconds=None, verification=None, target=None))
    assert found["restore database"]["detail"] == (
        "point-in-time recovery of stanza app from backup ? over /var/lib/postgresql/15/main: recovered to an unknown "
        "time (no server log) (target time 2026-12-01 03:20:01+00); cluster stopped in 2.0 s, pgbackrest restore 3.0 s, "
        "start and recovery 4.5 s")
    rpo = found["RPO database"]
    assert rpo["state"] == "ok" and rpo["value"] is None  # the gap is unknown; the recovery promoted
    assert rpo["detail"] == "recovered to an unknown time (no server log), target time 2026-12-01 03:20:01+00 (RPO target 3600 s)"


def test_pitr_latest_rates_the_archive_age():
    found = run(pitr_restore("latest", target_gap_seconds=None))
    assert found["pre-check (nothing stopped)"]["detail"].startswith(
        "stanza app: backup 20261201-030000F covers latest, WAL archived up to 2026-12-01T03:25:00Z;")
    rpo = found["RPO database"]
    assert rpo["state"] == "ok" and rpo["value"] == 300
    assert rpo["detail"] == ("recovered to 2026-12-01 03:20:00.5+00, target latest; the newest archived WAL was 300 s old "
                             "at the pre-check (RPO target 3600 s)")
    assert "(target latest);" in found["restore database"]["detail"]
    restore = pitr_restore("latest", target_gap_seconds=None)
    restore["database"]["pitr"]["archive_age_seconds"] = 7200
    assert run(restore)["RPO database"]["state"] == "warning"
    restore["database"]["pitr"]["archive_age_seconds"] = None
    unknown = run(restore)["RPO database"]
    assert unknown["state"] == "ok" and unknown["value"] is None
    assert unknown["detail"] == "recovered to 2026-12-01 03:20:00.5+00, target latest (RPO target 3600 s)"


def test_pitr_not_recovered_and_check_mode():
    restore = pitr_restore()
    del restore["marks"]["database"]
    restore["database"]["pitr"]["result"] = {"failed": True, "promoted": False, "msg": "start_command false failed"}
    restore["database"]["pitr"].update(port=5433, log_file="/var/log/pg.log", start_argv=["pg_ctlcluster", "15", "main", "start"],
                                       cluster_probe={"failed": True, "msg": "Timeout when waiting for 127.0.0.1:5433"})
    found = run(restore, failed_step="Recover the database to the target", error="start_command false failed",
                failed_changed=True)
    assert found["restore database"]["state"] == "critical"
    assert found["restore database"]["detail"] == (
        "failed at Recover the database to the target: start_command false failed; left behind: the cluster is stopped; "
        "its data directory /var/lib/postgresql/15/main was overwritten by pgbackrest restore and is left for inspection "
        "(server log /var/log/pg.log): run the full restore again, or restore it with pgBackRest, before the service uses it")
    assert found["RPO database"]["state"] == "warning" and found["RPO database"]["detail"] == "not recovered"
    assert found["RPO database"]["value"] is None
    check = pitr_restore("latest")
    check["database"]["pitr"]["result"] = SKIPPED
    check["marks"] = {"begin": 1000.0, "precheck": 1001.0, "health": 1001.1, "verify": 1001.2}
    rpo = run(check, check_mode=True)["RPO database"]
    assert rpo["state"] == "ok" and rpo["detail"] == "check mode: would recover to latest" and rpo["value"] == 300


@pytest.mark.parametrize("failed_step, changed, probe, left", [
    ("Recover the database to the target", False, {"state": "started", "port": 5433},
     "the cluster is running (port 5433); its data directory /var/lib/postgresql/15/main was not changed: "
     "`pg_ctlcluster 15 main start` starts it as it was before the restore"),
    ("Recover the database to the target", True, SKIPPED,
     "the cluster is stopped; its data directory /var/lib/postgresql/15/main was overwritten by pgbackrest restore and "
     "is left for inspection: run the full restore again, or restore it with pgBackRest, before the service uses it"),
    ("Download the uploaded files", True, {"state": "started"},
     "the cluster is running (port 5433); its data directory /var/lib/postgresql/15/main was not changed by the restore"),
])
def test_what_a_failure_left_of_the_cluster(failed_step, changed, probe, left):
    restore = pitr_restore()
    restore["database"]["pitr"].update(port=5433, start_argv=["pg_ctlcluster", "15", "main", "start"], cluster_probe=probe)
    del restore["marks"]["files"]
    rated = fr.rate(**dict(restore, failed_step=failed_step, error="boom", failed_changed=changed))
    assert rated["left_behind"] == left
    failed = [f for f in rated["findings"] if f["state"] == "critical"]
    assert failed and failed[0]["detail"] == "failed at %s: boom; left behind: %s" % (failed_step, left)


def test_nothing_left_behind_before_the_cluster_stopped_or_without_a_failure():
    restore = pitr_restore()
    del restore["marks"]["cluster_stop"]
    assert fr.rate(**dict(restore, failed_step="Stop the writers", error="boom"))["left_behind"] == ""
    assert fr.rate(**pitr_restore())["left_behind"] == ""
    logical = logical_restore()
    logical["marks"]["cluster_stop"] = 1005.0
    assert fr.rate(**dict(logical, failed_step="x", error="boom", failed_changed=True))["left_behind"] == ""


def test_rpo_of_the_files():
    old = run(parts(logical_restore(), files={"plan": {"counts": {}, "source_age_seconds": 4000,
                                                       "source_synced_at": "2026-12-01T02:00:00Z"}}))["RPO files"]
    assert old["state"] == "warning" and old["value"] == 4000
    unknown = run(parts(logical_restore(), files={"plan": {"counts": {"copied": 1, "deleted": 0}}}))["RPO files"]
    assert unknown["state"] == "warning" and unknown["value"] is None
    assert unknown["detail"] == "unknown: no manifest of an upload beside the files"


def test_malformed_input_is_refused():
    restore = logical_restore()
    restore["volumes"] = {}
    with pytest.raises(ParameterError, match="unknown parts of a full restore: volumes"):
        fr.timeline(**restore)
    with pytest.raises(ParameterError, match="database.source must be one of"):
        fr.timeline(**parts(logical_restore(), database={"source": "dump"}))
    with pytest.raises(ParameterError, match="verify.api.state"):
        fr.timeline(**parts(logical_restore(), verify={"api": {"state": "bad", "msg": "m"}}))


def test_seconds():
    assert fr.seconds(None, "x") is None and fr.seconds("", "x") is None and fr.seconds("None", "x") is None
    assert fr.seconds(5, "x") == 5 and fr.seconds(2.5, "x") == 2.5
    assert fr.seconds("7", "x") == 7 and isinstance(fr.seconds("7", "x"), int) and fr.seconds("-1.5", "x") == -1.5
