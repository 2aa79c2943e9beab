# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The full restore's timeline: each step's state, time and what it did, the RTO and the RPO.

The role ``full_restore`` notes a time mark (epoch seconds) when each step ends and registers what each
step's module returned; this file turns those plain data into the findings of its report (``_findings``
shape, sections ``steps`` and ``objectives``).  Plain Python, no Ansible imports.

A step's time runs from the end of the previous step that was part of the restore to its own end mark;
a step without an end mark did not finish.  The RTO runs from the start of the run (mark ``begin``) to
the health gate, the time the writers were stopped from mark ``stop`` to the health gate.
"""

from __future__ import annotations

import collections

from ansible_collections.runbook.ops.plugins.module_utils import _findings, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError

# (id, title) of the steps in the order they run; the ids are the time marks' keys.
STEPS = (
    ("precheck", "pre-check (nothing stopped)"),
    ("stop", "stop writers"),
    ("database", "restore database"),
    ("files", "restore uploaded files"),
    ("config", "restore configuration"),
    ("start", "start writers"),
    ("health", "health gate"),
    ("verify", "verify data"),
)
# Steps between the writers' stop and start: the role notes their end only when they succeeded.
UNFINISHED_FAILS = ("stop", "database", "files", "config")
DB_SOURCES = ("none", "logical", "pitr")
UNKNOWN_RECOVERY = "an unknown time (no server log)"

# after_failure: whether the step still runs (and is rated on its outcome) after an earlier step failed.
Step = collections.namedtuple("Step", "id title enabled done state after_failure", defaults=("ok", True))


def seconds(value, what):
    """An epoch time or a number of seconds as given (int or float), ``None`` for none; a numeric string
    (Jinja without native types) becomes a number."""
    if value is None or value == "" or value == "None":
        return None
    if isinstance(value, bool):
        raise ParameterError("%s must be a number of seconds, got %r" % (what, value))
    if isinstance(value, (int, float)):
        return value
    try:
        text = str(value).strip()
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        raise ParameterError("%s must be a number of seconds, got %r" % (what, value)) from None


def ran(result):
    """A registered result, or ``{}`` for a task that did not run (undefined, skipped)."""
    if not isinstance(result, dict) or result.get("skipped"):
        return {}
    return result


def _pairs(mapping):
    """``{"b": 2, "a": 1}`` -> ``"a=1, b=2"`` (Jinja's ``dictsort | map('join', '=') | join(', ')``)."""
    return ", ".join("%s=%s" % (key, mapping[key]) for key in sorted(mapping or {}))


def _target(target_type, target):
    return ("%s %s" % (target_type or "", target or "")).strip()


# --- what each step did --------------------------------------------------------------------------------

def precheck_done(database, files, config):
    parts = []
    if database["source"] == "logical":
        parts.append("database backup %s" % (database["backup"] or {}).get("id"))
    elif database["source"] == "pitr":
        pitr = database["pitr"]
        plan = pitr["plan"] or {}
        parts.append("stanza %s: backup %s covers %s, WAL archived up to %s"
                     % (pitr["stanza"], plan.get("backup"), _target(pitr["target_type"], plan.get("target")),
                        plan.get("archive_end")))
    if files["enabled"]:
        counts = ran(files["plan"]).get("counts") or {}
        parts.append("files: %d to copy, %d to delete" % (counts.get("copied", 0), counts.get("deleted", 0)))
    if config["enabled"]:
        parts.append("configuration from %s (%d files)" % (config["source"], len(config["files"] or ())))
    return "; ".join(parts)


def logical_done(backup):
    backup = backup or {}
    return ("backup %s (taken %s); every table's row count matched its manifest (%s)"
            % (backup.get("id", ""), backup.get("started", ""), _pairs(backup.get("row_counts"))))


def pitr_done(pitr, marks):
    """The point-in-time recovery: recovered-to time against the target, its time split into stopping the
    cluster, ``pgbackrest restore`` and start plus recovery, the checks of the copy."""
    result = ran(pitr["result"])
    gap = seconds(result.get("target_gap_seconds"), "target_gap_seconds")
    begin = marks.get("begin")
    stopped = marks.get("cluster_stop", begin) - marks.get("stop", begin)
    restore = float(seconds(result.get("restore_seconds"), "restore_seconds") or 0)
    duration = float(seconds(result.get("duration_seconds"), "duration_seconds") or 0)
    text = ("point-in-time recovery of stanza %s from backup %s over %s: recovered to %s (target %s%s); cluster stopped"
            " in %.1f s, pgbackrest restore %.1f s, start and recovery %.1f s"
            % (pitr["stanza"], (result.get("target") or {}).get("backup", "?"), pitr["pg_data"],
               result.get("recovered_to") or UNKNOWN_RECOVERY, _target(pitr["target_type"], pitr["target"]),
               ", %s s before it" % gap if gap is not None else "", stopped, restore, duration - restore))
    checks = result.get("verification") or {}
    if checks:
        text += "; rows: " + _pairs(checks.get("row_counts"))
    assertions = checks.get("assertions") or []
    if assertions:
        text += "; assertions: %d of %d pass" % (len([a for a in assertions if a.get("ok")]), len(assertions))
    return text


def verify_done(verify):
    api, compared = ran(verify["api"]), ran(verify["files"])
    parts = ["API: %s" % api["msg"]] if "msg" in api else []
    if "counts" in compared:
        counts = compared["counts"]
        parts.append("files: %d match the store, %d differ" % (counts.get("unchanged", 0), _differ(counts)))
    return "; ".join(parts)


def _differ(counts):
    return counts.get("copied", 0) + counts.get("deleted", 0)


def _state(value, what):
    if value not in _status.STATES:
        raise ParameterError("%s must be one of %s, got %r" % (what, ", ".join(_status.STATES), value))
    return value


def database_done(database, marks):
    if database["source"] == "logical":
        return logical_done(database["backup"])
    if database["source"] == "pitr":
        return pitr_done(database["pitr"], marks)
    return ""


def steps(marks, writers, database, files, config, health, verify):
    """The eight steps with what each did and the state its own outcome gives it."""
    start = writers["start"] or {}
    config_result = ran(config["result"])
    probe = ran(health["result"])
    api, compared = ran(verify["api"]), ran(verify["files"])
    verify_bad = (_state(api.get("state", "ok"), "verify.api.state") == "critical"
                  or ("counts" in compared and _differ(compared["counts"]) > 0))
    return [
        Step("precheck", STEPS[0][1], True, precheck_done(database, files, config)),
        Step("stop", STEPS[1][1], writers["enabled"], "`%s`" % " ".join(writers["stop_argv"] or ())),
        Step("database", STEPS[2][1], database["source"] != "none", database_done(database, marks)),
        Step("files", STEPS[3][1], files["enabled"], ran(files["result"]).get("msg", "")),
        Step("config", STEPS[4][1], config["enabled"],
             "copied %s to %s, %s" % (config["source"], config["dest"],
                                      "changed" if config_result.get("changed") else "unchanged")),
        Step("start", STEPS[5][1], writers["enabled"], start.get("detail", ""),
             "ok" if start.get("ok", True) else "critical"),
        Step("health", STEPS[6][1], health["enabled"], probe.get("msg", ""),
             _state(probe.get("state", "critical"), "health.result.state")),
        Step("verify", STEPS[7][1], verify["enabled"], verify_done(verify), "critical" if verify_bad else "ok",
             after_failure=False),
    ]


# --- rating ----------------------------------------------------------------------------------------------

def rate_steps(step_list, marks, check_mode=False, failed_step="", error=""):
    """One finding per step: its state, its time (seconds since the end of the previous step that was part
    of the restore, ``None`` without an end mark) and what it did or why it did not."""
    found = []
    last = marks["begin"]
    for step in step_list:
        at = marks.get(step.id)
        took = round(at - last, 2) if at is not None else None
        skipped = check_mode and step.id != "precheck"
        if not step.enabled:
            state, detail = "ok", "not part of this restore"
        elif skipped:
            state, detail = "ok", "check mode: not run"
        elif step.id in UNFINISHED_FAILS and at is None:
            state, detail = "critical", "failed at %s: %s" % (failed_step, error)
        elif error and not step.after_failure:
            state, detail = "warning", "not run: an earlier step failed"
        else:
            state, detail = step.state, step.done
        if step.enabled and at is not None:
            last = at
        found.append(_findings.finding(step.title, state, took if step.enabled and not skipped else None, "s", detail,
                                       section="steps"))
    return found


def rto(marks, rto_seconds, check_mode=False, failed=False, health_state="ok"):
    """Start of the run to healthy against the objective; with the time the writers were stopped."""
    if check_mode:
        return _findings.finding("RTO", "ok", None, "s", "check mode", section="objectives")
    took = round(marks["health"] - marks["begin"], 1) if "health" in marks else None
    downtime = round(marks["health"] - marks["stop"], 1) if "health" in marks and "stop" in marks else None
    if failed or health_state == "critical":
        state = "critical"
    elif took is None:
        state = "warning"
    else:
        state = _status.level(took, warn=rto_seconds, op=">")
    if took is None:
        detail = "unknown: the run has no health gate time mark (target %s s)" % rto_seconds
    else:
        detail = "pre-check to healthy %s s (target %s s)%s" % (
            took, rto_seconds, "; writers stopped %s s" % downtime if downtime is not None else "")
    return _findings.finding("RTO", state, took, "s", detail, section="objectives")


def _age_rating(age, rpo_seconds):
    """An unknown age is a warning: nothing says the data is recent enough."""
    return "warning" if age is None else _status.level(age, warn=rpo_seconds, op=">")


def rpo_database(database, rpo_seconds, check_mode=False):
    """The age of the restored database: the logical backup's age, or for PITR how much earlier than a time
    target the last kept transaction committed (for ``latest``, the newest archived WAL's age)."""
    if database["source"] == "pitr":
        return _rpo_pitr(database["pitr"], rpo_seconds, check_mode)
    if database["source"] == "none":
        return _findings.finding("RPO database", "ok", None, "s", "not part of this restore", section="objectives")
    age = seconds(database["backup_age_seconds"], "database.backup_age_seconds")
    started = (database["backup"] or {}).get("started")
    if age is None:
        detail = "backup taken %s, age unknown (target %s s)" % (started, rpo_seconds)
    else:
        detail = "backup taken %s, %s s before the restore (target %s s)" % (started, age, rpo_seconds)
    return _findings.finding("RPO database", _age_rating(age, rpo_seconds), int(age) if age is not None else None, "s",
                             detail, section="objectives")


def _rpo_pitr(pitr, rpo_seconds, check_mode):
    result = ran(pitr["result"])
    gap = seconds(result.get("target_gap_seconds"), "target_gap_seconds")
    archive_age = seconds(pitr["archive_age_seconds"], "database.pitr.archive_age_seconds")
    value = None
    if pitr["target_type"] == "time" and gap is not None:
        value = float(gap)
    elif pitr["target_type"] == "latest" and archive_age is not None:
        value = int(archive_age)
    if check_mode:
        state, detail = "ok", "check mode: would recover to %s %s" % (pitr["target_type"], pitr["target"] or "")
    elif not result.get("promoted"):
        state, detail = "warning", "not recovered"
    else:
        state = "ok" if value is None else _status.level(value, warn=rpo_seconds, op=">")
        if gap is not None:
            how = "; the last kept transaction committed %s s before the target" % gap
        elif pitr["target_type"] == "latest" and archive_age is not None:
            how = "; the newest archived WAL was %s s old at the pre-check" % archive_age
        else:
            how = ""
        detail = "recovered to %s, target %s%s (RPO target %s s)" % (
            result.get("recovered_to") or UNKNOWN_RECOVERY, _target(pitr["target_type"], pitr["target"]), how,
            rpo_seconds)
    return _findings.finding("RPO database", state, value, "s", detail, section="objectives")


def rpo_files(files, rpo_seconds):
    """The age of the restored files: when the last upload finished."""
    if not files["enabled"]:
        return _findings.finding("RPO files", "ok", None, "s", "not part of this restore", section="objectives")
    plan = ran(files["plan"])
    age = seconds(plan.get("source_age_seconds"), "files.plan.source_age_seconds")
    if age is None:
        detail = "unknown: no manifest of an upload beside the files"
    else:
        detail = "last upload finished %s, %s s before the restore (target %s s)" % (
            plan.get("source_synced_at"), age, rpo_seconds)
    return _findings.finding("RPO files", _age_rating(age, rpo_seconds), int(age) if age is not None else None, "s",
                             detail, section="objectives")


# --- the whole timeline ----------------------------------------------------------------------------------

PART_DEFAULTS = {
    "writers": {"enabled": False, "stop_argv": [], "start": {}},
    "database": {"source": "none", "backup": {}, "backup_age_seconds": None, "pitr": None},
    "files": {"enabled": False, "plan": {}, "result": {}},
    "config": {"enabled": False, "source": "", "dest": "", "files": [], "result": {}},
    "health": {"enabled": False, "result": {}},
    "verify": {"enabled": False, "api": {}, "files": {}},
}
PITR_DEFAULTS = {"stanza": "", "pg_data": "", "target_type": "latest", "target": "", "plan": {},
                 "archive_age_seconds": None, "result": {}, "port": None, "log_file": "", "start_argv": [],
                 "cluster_probe": {}}
# The task of the role that restores over the live data directory (its name is what failed_step holds).
RECOVER_TASK = "Recover the database"


def part(name, given):
    """A part of the restore as given (a dict, keys missing or ``None`` take their defaults)."""
    values = dict(PART_DEFAULTS[name])
    values.update({key: value for key, value in (given or {}).items() if value is not None})
    if name == "database":
        if values["source"] not in DB_SOURCES:
            raise ParameterError("database.source must be one of %s, got %r" % (", ".join(DB_SOURCES), values["source"]))
        pitr = dict(PITR_DEFAULTS)
        pitr.update({key: value for key, value in (values["pitr"] or {}).items() if value is not None})
        values["pitr"] = pitr
    return values


def timed_marks(marks):
    """The time marks as numbers; ``begin`` is required."""
    numbers = {}
    for key, value in (marks or {}).items():
        number = seconds(value, "marks.%s" % key)
        if number is not None:
            numbers[str(key)] = float(number)
    if "begin" not in numbers:
        raise ParameterError("marks must have begin, the start of the run (epoch seconds)")
    return numbers


def left_behind(pitr, marks, failed_step, failed_changed):
    """What a failure after the database cluster was stopped (mark ``cluster_stop``) left of it: whether it runs
    (``cluster_probe``, the registered ``wait_for`` on its port) and whether its data directory was overwritten."""
    if "cluster_stop" not in marks:
        return ""
    running = ran(pitr["cluster_probe"]).get("state") == "started"
    state = "running (port %s)" % pitr["port"] if running else "stopped"
    if failed_step.startswith(RECOVER_TASK) and failed_changed:
        data = ("its data directory %s was overwritten by pgbackrest restore and is left for inspection%s: run the full"
                " restore again, or restore it with pgBackRest, before the service uses it"
                % (pitr["pg_data"], " (server log %s)" % pitr["log_file"] if pitr["log_file"] else ""))
    elif failed_step.startswith(RECOVER_TASK):
        data = "its data directory %s was not changed: `%s` starts it as it was before the restore" % (
            pitr["pg_data"], " ".join(pitr["start_argv"] or ()))
    else:
        data = "its data directory %s was not changed by the restore" % pitr["pg_data"]
    return "the cluster is %s; %s" % (state, data)


def rate(marks, rto_seconds, rpo_seconds, check_mode=False, failed_step="", error="", failed_changed=False, **parts):
    """A full restore rated: ``findings``, one per step (section ``steps``), then the RTO, the database's and
    the files' RPO (section ``objectives``); ``left_behind``, what a failed point-in-time recovery left of the
    database cluster (also in the failed step's detail).  ``parts`` are ``writers``, ``database``, ``files``,
    ``config``, ``health`` and ``verify`` (see ``PART_DEFAULTS``); an unknown part is refused.  A non-empty
    ``error`` means a step between the writers' stop and start failed (``failed_step``, the task's name, and
    ``failed_changed``, whether it had changed something)."""
    unknown = sorted(set(parts) - set(PART_DEFAULTS))
    if unknown:
        raise ParameterError("unknown parts of a full restore: %s" % ", ".join(unknown))
    marks = timed_marks(marks)
    given = {name: part(name, parts.get(name)) for name in PART_DEFAULTS}
    failed_step, error, left = failed_step or "", error or "", ""
    if error and given["database"]["source"] == "pitr":
        left = left_behind(given["database"]["pitr"], marks, failed_step, failed_changed)
        if left:
            error += "; left behind: " + left
    found = rate_steps(steps(marks, **given), marks, check_mode, failed_step, error)
    health = ran(given["health"]["result"]) if given["health"]["enabled"] else {}
    found.append(rto(marks, rto_seconds, check_mode, failed=bool(error), health_state=health.get("state", "ok")))
    found.append(rpo_database(given["database"], rpo_seconds, check_mode))
    found.append(rpo_files(given["files"], rpo_seconds))
    return {"findings": found, "left_behind": left}


def timeline(marks, rto_seconds, rpo_seconds, **options):
    """The findings of ``rate``."""
    return rate(marks, rto_seconds, rpo_seconds, **options)["findings"]
