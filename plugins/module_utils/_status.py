# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one scale every check reports on: ``ok < warning < critical``.

Probes, path checks, diagnostics and reports all rank, count, compare and fail through this
file, so a state means the same thing everywhere.  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import math

STATES = ("ok", "warning", "critical")
SEVERITIES = ("critical", "warning")
FAIL_ON = ("critical", "warning", "never")
NUMERIC_OPERATORS = ("==", "!=", ">", ">=", "<", "<=")

# The argument spec of every module's fail_on option (documented by the status doc fragment).
FAIL_ON_ARGSPEC = {"type": "str", "choices": list(FAIL_ON), "default": "critical"}

_RANK = {state: position for position, state in enumerate(STATES)}


def rank(state):
    """Position of ``state`` on the scale; an unknown name is a programming error."""
    try:
        return _RANK[state]
    except KeyError:
        raise ValueError("unknown state %r; states are %s" % (state, ", ".join(STATES))) from None


def worst(states):
    """The most severe of ``states`` (``ok`` for none)."""
    return max(states, key=rank, default="ok")


def fails(state, fail_on):
    """Whether an overall ``state`` fails the task under ``fail_on`` (critical, warning, never)."""
    if fail_on not in FAIL_ON:
        raise ValueError("fail_on must be one of %s, got %r" % (", ".join(FAIL_ON), fail_on))
    if fail_on == "never":
        return False
    return rank(state) >= rank(fail_on)


def passes(state, fail_on):
    """Whether a result is good enough to stop waiting for: it would not fail the task
    (under ``never``, anything short of critical)."""
    return not fails(state, "critical" if fail_on == "never" else fail_on)


def compare(left, op, right):
    """``left <op> right`` for numbers; NaN compares false except with ``!=``."""
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    raise ValueError("unknown comparison %r; use one of %s" % (op, " ".join(NUMERIC_OPERATORS)))


def level(value, warn=None, crit=None, op=">="):
    """The state of ``value`` against warning/critical thresholds (either may be None).

    ``op`` says which side is bad: ``>=``/``>`` for "too high" (disk use), ``<=``/``<`` for
    "too low" (days until a certificate expires).  A NaN value is critical: it cannot be judged.
    """
    if isinstance(value, float) and math.isnan(value):
        return "critical"
    if crit is not None and compare(value, op, crit):
        return "critical"
    if warn is not None and compare(value, op, warn):
        return "warning"
    return "ok"


def summarize(states):
    """Counts of each state: ``{"total": n, "ok": .., "warning": .., "critical": ..}``."""
    states = list(states)
    counts = {"total": len(states)}
    for name in STATES:
        counts[name] = 0
    for state in states:
        counts[STATES[rank(state)]] += 1
    return counts


def overview(results, noun, name_key="name", problems=None, state=None, separator=" | "):
    """State, counts and the one-line message of a list of results.

    Each result is a dict with ``state``, ``reasons`` (a list of strings) and ``name_key``.
    The message reads ``"2 of 3 targets ok, overall critical - api critical: status 500"``.
    A caller that words its problems itself gives them as ``problems`` (a list of strings),
    one whose overall state counts more than the results gives ``state``; ``separator``
    joins the problems.
    """
    counts = summarize(r["state"] for r in results)
    if state is None:
        state = worst(r["state"] for r in results)
    if problems is None:
        problems = ["%s %s: %s" % (r[name_key], r["state"], "; ".join(r.get("reasons") or ()) or "no detail")
                    for r in results if r["state"] != "ok"]
    msg = "%d of %d %s ok, overall %s" % (counts["ok"], counts["total"], noun, state)
    if problems:
        msg += " - " + separator.join(problems)
    return {"state": state, "summary": counts, "msg": msg}
