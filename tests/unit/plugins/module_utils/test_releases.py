# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_releases: release ids, retention, rollback targets and plans, the history file and the event log."""

from __future__ import annotations

import datetime
import json
import os
import stat

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _releases
from ansible_collections.runbook.ops.plugins.module_utils._errors import ComposeError
from ansible_collections.runbook.ops.plugins.module_utils._releases import ReleaseHistory, retention

WHEN = datetime.datetime(2026, 11, 30, 21, 0, 0, tzinfo=datetime.timezone.utc)


def rec(rid, outcome="succeeded", tag=None, before=None, after=None, backup=None, ran=None):
    return {"id": rid, "outcome": outcome, "variables": {"APP_TAG": tag or rid}, "migration_head_before": before,
            "migration_head_after": after, "backup_id": backup,
            "migration_ran": ran if ran is not None else (before is not None)}


def history(tmp_path, records, current=None):
    found = ReleaseHistory(str(tmp_path / "state"))
    for record in records:
        found.add(record)
    if current:
        found.current_id = current
    return found


# ids -------------------------------------------------------------------------------------------
def test_release_id_from_time_and_tag():
    assert _releases.release_id(WHEN, {"APP_TAG": "v2"}, "APP_TAG") == "r20261130T210000Z-v2"


def test_release_id_is_unique_and_safe():
    taken = {"r20261130T210000Z-v2", "r20261130T210000Z-v2-2"}
    assert _releases.release_id(WHEN, {"APP_TAG": "v2"}, "APP_TAG", taken) == "r20261130T210000Z-v2-3"
    assert _releases.release_id(WHEN, {"APP_TAG": "1.4/rc 1:x"}, "APP_TAG") == "r20261130T210000Z-1.4-rc-1-x"


def test_release_id_of_an_image_map_is_a_short_hash():
    first = _releases.release_id(WHEN, {"API_IMAGE": "app:1", "WORKER_IMAGE": "w:1"}, "APP_TAG")
    second = _releases.release_id(WHEN, {"API_IMAGE": "app:2", "WORKER_IMAGE": "w:1"}, "APP_TAG")
    assert first.startswith("r20261130T210000Z-") and len(first.rsplit("-", 1)[1]) == 8 and first != second


def test_stamp_is_utc():
    plus_one = datetime.timezone(datetime.timedelta(hours=1))
    assert _releases.stamp(datetime.datetime(2026, 11, 30, 22, 0, 0, tzinfo=plus_one)) == "2026-11-30T21:00:00Z"


# retention -------------------------------------------------------------------------------------
def ids(records):
    return [r["id"] for r in records]


def test_retention_counts_succeeded_releases_only():
    records = [rec("a"), rec("b"), rec("f1", "failed"), rec("c"), rec("f2", "failed"), rec("d")]
    kept, removed = retention(records, 2)
    assert ids(kept) == ["c", "f2", "d"] and ids(removed) == ["a", "b", "f1"]


def test_retention_never_deletes_the_newest_succeeded_release():
    records = [rec("a"), rec("b"), rec("f1", "failed"), rec("f2", "failed"), rec("f3", "failed")]
    kept, _removed = retention(records, 1)
    assert ids(kept) == ["b", "f1", "f2", "f3"]


def test_retention_keeps_failed_releases_when_none_succeeded():
    records = [rec("f1", "failed"), rec("f2", "failed")]
    assert ids(retention(records, 1)[0]) == ["f1", "f2"]


def test_retention_keeps_the_protected_current_release():
    records = [rec("a"), rec("b"), rec("c")]
    kept, removed = retention(records, 1, protect=("a",))
    assert ids(kept) == ["a", "c"] and ids(removed) == ["b"]


def test_retention_needs_one():
    with pytest.raises(ComposeError, match="at least 1"):
        retention([rec("a")], 0)


def test_prune_protects_current(tmp_path):
    found = history(tmp_path, [rec("a"), rec("b"), rec("c")], current="a")
    assert found.prune(1) == ["b"]
    assert found.ids() == ["a", "c"]


# rollback targets and plans ----------------------------------------------------------------------
def test_default_target_is_the_newest_other_succeeded_release(tmp_path):
    found = history(tmp_path, [rec("r1", tag="v1"), rec("r2", tag="v2"), rec("r3", "failed", tag="v3")])
    assert found.current()["id"] == "r3"
    assert found.rollback_target()["id"] == "r2"
    found.current_id = "r2"
    assert found.rollback_target()["id"] == "r1"


def test_default_target_skips_a_release_with_the_same_variables(tmp_path):
    found = history(tmp_path, [rec("r1", tag="v1"), rec("r2", tag="v2"), rec("r3", tag="v2")])
    assert found.rollback_target()["id"] == "r1"


def test_named_target_must_exist_and_have_succeeded(tmp_path):
    found = history(tmp_path, [rec("r1"), rec("r2", "failed"), rec("r3")])
    assert found.rollback_target("r1")["id"] == "r1"
    with pytest.raises(ComposeError, match="release r2 failed; only a succeeded release"):
        found.rollback_target("r2")
    with pytest.raises(ComposeError, match=r"release nope is not in the history .* \(known: r3, r2, r1\)"):
        found.rollback_target("nope")


def test_no_target_without_another_succeeded_release(tmp_path):
    with pytest.raises(ComposeError, match="no succeeded release to roll back to"):
        history(tmp_path, [rec("r1"), rec("r2", "failed")], current="r1").rollback_target()
    with pytest.raises(ComposeError, match="current: none"):
        history(tmp_path, []).rollback_target()


def test_plan_without_a_head_move(tmp_path):
    found = history(tmp_path, [rec("r1", before="1", after="1"), rec("r2", "failed", before="1", after="1", backup="b2")])
    plan = found.rollback_plan(found.get("r1"))
    assert plan["data_rollback_needed"] is False and plan["backup_id"] is None and plan["from"] == "r2"
    assert "no release after r1 moved the migration head" in plan["reason"]


def test_plan_when_the_failed_release_moved_the_head(tmp_path):
    found = history(tmp_path, [rec("r1", before="0", after="1", backup="b1"),
                               rec("r2", "failed", before="1", after="2", backup="b2")])
    plan = found.rollback_plan(found.get("r1"))
    assert plan["data_rollback_needed"] is True and plan["backup_id"] == "b2" and plan["moved_by"] == ["r2"]
    assert "head 1 -> 2" in plan["reason"] and "b2" in plan["reason"]


def test_plan_across_several_releases_takes_the_first_backup(tmp_path):
    found = history(tmp_path, [rec("r1", before="1", after="1"), rec("r2", before="1", after="2", backup="b2"),
                               rec("r3", before="2", after="2", backup="b3"), rec("r4", "failed", before="2", after="3",
                                                                                  backup="b4")])
    plan = found.rollback_plan(found.get("r1"))
    assert plan["moved_by"] == ["r2", "r4"] and plan["backup_id"] == "b2"
    assert found.rollback_plan(found.get("r3"))["backup_id"] == "b4"


def test_plan_with_an_unknown_head_is_careful(tmp_path):
    found = history(tmp_path, [rec("r1"), rec("r2", "failed", ran=True, backup="b2")])
    plan = found.rollback_plan(found.get("r1"))
    assert plan["data_rollback_needed"] is True and plan["backup_id"] == "b2" and "unknown" in plan["reason"]
    assert _releases.moved(rec("x")) is False


def test_plan_for_a_roll_forward_or_the_running_release(tmp_path):
    found = history(tmp_path, [rec("r1", before="0", after="1"), rec("r2", before="1", after="2")], current="r1")
    plan = found.rollback_plan(found.get("r2"))
    assert plan["data_rollback_needed"] is False and "roll forward" in plan["reason"]
    assert "already runs" in found.rollback_plan(found.get("r1"))["reason"]


# the file --------------------------------------------------------------------------------------
def test_history_round_trip_is_private(tmp_path):
    found = history(tmp_path, [rec("r1"), rec("r2", "failed")], current="r1")
    found.save()
    mode = stat.S_IMODE(os.stat(found.path).st_mode)
    assert mode == 0o600 and stat.S_IMODE(os.stat(found.state_dir).st_mode) == 0o700
    again = ReleaseHistory.load(found.state_dir)
    assert again.exists and again.ids() == ["r1", "r2"] and again.current()["id"] == "r1"
    assert [r["id"] for r in again.newest_first()] == ["r2", "r1"]
    assert again.last_successful()["id"] == "r1"
    assert not [n for n in os.listdir(found.state_dir) if ".partial-" in n]


def test_a_missing_history_is_empty(tmp_path):
    found = ReleaseHistory.load(str(tmp_path / "none"))
    assert not found.exists and found.current() is None and found.last_successful() is None


@pytest.mark.parametrize("content, words", [("{broken", "cannot read"), ('{"version": 1}', "no releases list"),
                                            ("[1, 2]", "no releases list")])
def test_a_damaged_history_is_refused(tmp_path, content, words):
    (tmp_path / _releases.HISTORY_NAME).write_text(content)
    with pytest.raises(ComposeError, match=words):
        ReleaseHistory.load(str(tmp_path))


def test_a_release_id_is_added_once(tmp_path):
    found = history(tmp_path, [rec("r1")])
    with pytest.raises(ComposeError, match="already in the history"):
        found.add(rec("r1"))
    found.add(rec("f", "failed"), current=False)
    assert found.current()["id"] == "r1"


# the event log ---------------------------------------------------------------------------------
def test_events_append_as_private_json_lines(tmp_path):
    state = str(tmp_path / "state")
    first = _releases.append_event(state, "deploy", "started", "r1", {"variables": {"APP_TAG": "v1"}}, when=WHEN)
    _releases.append_event(state, "gate", "failed", "r1", {"gate": "http", "status": 503})
    path = os.path.join(state, _releases.EVENTS_NAME)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first == {"time": "2026-11-30T21:00:00Z", "event": "deploy", "outcome": "started", "release": "r1",
                     "detail": {"variables": {"APP_TAG": "v1"}}}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"torn": ')
    events = _releases.read_events(state)
    assert [(e["event"], e["outcome"]) for e in events] == [("deploy", "started"), ("gate", "failed")]
    assert _releases.read_events(state, limit=1)[0]["event"] == "gate"
    assert _releases.read_events(str(tmp_path / "none")) == []


def test_event_line_is_one_line_of_json():
    line = _releases.event_line("deploy", "failed", None, {"message": "a\nb"}, when=WHEN)
    assert line.endswith("\n") and line.count("\n") == 1 and json.loads(line)["detail"]["message"] == "a\nb"


def test_an_unwritable_event_log_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ComposeError, match="cannot append to the event log"):
        _releases.append_event(str(blocker / "state"), "deploy", "started")


def test_default_target_is_older_than_the_current_release(tmp_path):
    # v3 deployed healthy, then failed a later gate (the deploy role's watch period) and was rolled back to v2:
    # the next default rollback goes further back to v1, never forward to v3.
    found = history(tmp_path, [rec("r1", tag="v1"), rec("r2", tag="v2"), rec("r3", tag="v3")], current="r2")
    assert found.rollback_target()["id"] == "r1"
    assert found.rollback_target("r3")["id"] == "r3"  # by name, a newer release is still allowed
