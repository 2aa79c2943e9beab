# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of _db_maintenance: names, the bloat estimate, the time budget and the step runner;
the statements against real servers are in tests/integration/diagnostics/test_db_maintenance.py."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _db_maintenance as maint
from ansible_collections.runbook.ops.plugins.module_utils._errors import MaintenanceError, ParameterError


@pytest.mark.parametrize("name, leftover", [
    ("items_name_idx_ccnew", True), ("items_name_idx_ccnew1", True), ("items_name_idx_ccold", True),
    ("items_name_idx", False), ("ccnew", False), ("items_ccnew_idx", False),
])
def test_leftovers_of_reindex_concurrently(name, leftover):
    assert bool(maint.LEFTOVER_RE.fullmatch(name)) is leftover


def test_index_names():
    assert maint.split_name("items_idx") == ("public", "items_idx")
    assert maint.split_name("app.items_idx") == ("app", "items_idx")
    for bad in ("", "a.b.c"):
        with pytest.raises(ParameterError):
            maint.split_name(bad)


@pytest.mark.parametrize("density, percent", [(90.0, 0.0), (95.0, 0.0), (45.0, 50.0), (9.0, 90.0), (None, 0.0), (0, 0.0)])
def test_bloat_estimate_from_leaf_density(density, percent):
    assert maint.bloat_percent(density) == percent


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_budget_stops_between_steps_and_failures_do_not_stop_the_rest():
    clock = Clock()
    budget = maint.Budget(10, clock=clock)
    steps = [maint.Step("reindex", "a"), maint.Step("reindex", "b"), maint.Step("vacuum", "c"), maint.Step("vacuum", "d")]

    def runner(step):
        clock.now += 4
        if step.target == "a":
            raise MaintenanceError("a: lock not granted")

    assert maint.run_steps(steps, budget, runner) is True
    assert [s.outcome for s in steps] == ["failed", "done", "done", "not_run"]
    assert steps[0].detail == "a: lock not granted" and "10 s" in steps[3].detail
    line = maint.summary(steps, True, 10)
    assert line == ("4 maintenance steps: 2 done, 1 failed, 1 not run; stopped after the time budget of 10 s"
                    " - a: lock not granted")
    assert maint.Budget(0, clock=clock).spent() is False
    with pytest.raises(ParameterError):
        maint.Budget(-1)


def test_findings_rate_each_step_and_give_the_sizes():
    done = maint.Step("vacuum", "/srv/app.db", "rewrites the file", 4096)
    done.outcome, done.seconds, done.bytes_after = "done", 0.5, 2048
    failed = maint.Step("reindex", "public.i", "named")
    failed.outcome, failed.detail = "failed", "lock not granted"
    late = maint.Step("optimize", "/srv/app.db")
    late.outcome = "not_run"
    out = maint.findings([done, failed, late], ["x is being built"], 8192, 6144)
    assert [(f["check"], f["state"]) for f in out] == [
        ("vacuum /srv/app.db", "ok"), ("reindex public.i", "critical"), ("optimize /srv/app.db", "warning"),
        ("database size", "ok"), ("note", "ok")]
    assert out[0]["value"] == 0.5 and out[0]["detail"] == "done - rewrites the file (4096 -> 2048 bytes)"
    assert out[1]["detail"] == "failed - named: lock not granted"
    assert out[3]["value"] == 6144 and out[3]["detail"] == "8192 bytes before, 6144 after (-2048)"
    assert all(f["section"] == "maintenance" for f in out)
    planned = maint.findings([maint.Step("integrity_check", "/srv/app.db")], [], 100, None)
    assert planned[0]["state"] == "ok" and planned[-1]["detail"] == "100 bytes before (not run, no size after)"
