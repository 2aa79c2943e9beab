# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ok < warning < critical scale, fail_on, comparisons and summaries."""

from __future__ import annotations

import math

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _status


def test_worst_ranks_states_and_defaults_to_ok():
    assert _status.worst([]) == "ok"
    assert _status.worst(["ok", "warning"]) == "warning"
    assert _status.worst(iter(["warning", "critical", "ok"])) == "critical"
    with pytest.raises(ValueError, match="unknown state 'bad'"):
        _status.worst(["ok", "bad"])


@pytest.mark.parametrize("state,fail_on,expected", [
    ("ok", "critical", False), ("warning", "critical", False), ("critical", "critical", True),
    ("ok", "warning", False), ("warning", "warning", True), ("critical", "warning", True),
    ("critical", "never", False),
])
def test_fails(state, fail_on, expected):
    assert _status.fails(state, fail_on) is expected


def test_fails_refuses_unknown_fail_on():
    with pytest.raises(ValueError, match="fail_on"):
        _status.fails("ok", "sometimes")


def test_passes_under_never_waits_for_anything_short_of_critical():
    assert _status.passes("warning", "never")
    assert not _status.passes("critical", "never")
    assert not _status.passes("warning", "warning")


@pytest.mark.parametrize("op,expected", [(">", False), (">=", True), ("<", False), ("<=", True),
                                         ("==", True), ("!=", False)])
def test_compare(op, expected):
    assert _status.compare(5, op, 5) is expected


def test_compare_rejects_unknown_operator():
    with pytest.raises(ValueError, match="unknown comparison '=~'"):
        _status.compare(1, "=~", 2)


def test_level_high_and_low_sides():
    assert _status.level(79, warn=80, crit=90) == "ok"
    assert _status.level(80, warn=80, crit=90) == "warning"
    assert _status.level(95, warn=80, crit=90) == "critical"
    assert _status.level(20, warn=30, crit=7, op="<") == "warning"
    assert _status.level(3, warn=30, crit=7, op="<") == "critical"
    assert _status.level(math.nan, warn=1) == "critical"
    assert _status.level(10**9) == "ok"


def test_summarize_counts_every_state():
    assert _status.summarize(["ok", "ok", "critical"]) == {"total": 3, "ok": 2, "warning": 0, "critical": 1}


def test_overview_message_names_the_problems():
    report = _status.overview([
        {"name": "api", "state": "critical", "reasons": ["status 500", "slow"]},
        {"name": "web", "state": "ok", "reasons": []},
        {"name": "db", "state": "warning", "reasons": []},
    ], "targets")
    assert report["state"] == "critical"
    assert report["summary"]["warning"] == 1
    assert report["msg"] == ("1 of 3 targets ok, overall critical - api critical: status 500; slow"
                             " | db warning: no detail")


def test_overview_takes_the_callers_problems_state_and_separator():
    report = _status.overview([{"check": "a", "state": "ok"}, {"check": "b", "state": "warning"}], "checks",
                              problems=["b warning: slow", "c: gone"], state="critical", separator="; ")
    assert report["state"] == "critical" and report["summary"]["warning"] == 1
    assert report["msg"] == "1 of 2 checks ok, overall critical - b warning: slow; c: gone"
