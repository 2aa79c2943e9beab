# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Findings and the report made of them.

Every diagnostic module (log_scan, redis_probe, pg_activity, ...) returns ``findings``, a list of
dicts with one shape::

    {"check": str, "state": "ok|warning|critical", "value": number|str|None, "unit": str|None,
     "detail": str}

plus optional keys a report may use (``section``, ``target``, ``kind``, ``samples``).  The
``check_report`` module turns lists of findings into one report: overall state, counts, the
problems, a Markdown and a JSON rendering.  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import json
import os

from ansible_collections.runbook.ops.plugins.module_utils import _files, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError

FINDING_KEYS = ("check", "state", "value", "unit", "detail")
# Longest detail and sample line kept in a report: a hostile log line must not make a 300 MB report.
MAX_DETAIL_CHARS = 2000
MAX_SAMPLE_CHARS = 500


def clip(text, limit=MAX_DETAIL_CHARS):
    """``text`` cut to at most ``limit`` characters (an ellipsis says it was cut)."""
    text = "" if text is None else str(text)
    if len(text) > limit:
        text = text[:limit - 1] + "\u2026"
    return text


def one_line(text, limit=MAX_DETAIL_CHARS):
    """Whitespace runs (tabs, newlines) as single spaces, clipped: details are table cells."""
    return clip(" ".join(str("" if text is None else text).split()), limit)


def finding(check, state, value=None, unit=None, detail="", **extra):
    """A finding dict; ``state`` must be on the scale."""
    _status.rank(state)
    result = {"check": str(check), "state": state, "value": value, "unit": unit, "detail": one_line(detail)}
    result.update(extra)
    return result


def normalize(item, where="finding"):
    """A finding given by a user or another module, checked and completed (unit/value default to None)."""
    if not isinstance(item, dict):
        raise ParameterError("%s must be a dict with check, state and detail, got %s" % (where, type(item).__name__))
    missing = [key for key in ("check", "state") if key not in item]
    if missing:
        raise ParameterError("%s has no %s: %s" % (where, " and ".join(missing), one_line(json.dumps(item, default=str), 300)))
    if item["state"] not in _status.STATES:
        raise ParameterError("%s %r: state must be one of %s, got %r"
                             % (where, item["check"], ", ".join(_status.STATES), item["state"]))
    value = item.get("value")
    if isinstance(value, (list, dict)):
        value = one_line(json.dumps(value, sort_keys=True, default=str), 200)  # a value is one cell of a table
    result = dict(item)
    result["check"] = str(item["check"])
    result["value"] = value
    result["unit"] = item.get("unit")
    result["detail"] = one_line(item.get("detail") or "")
    if "samples" in result:
        result["samples"] = [clip(line, MAX_SAMPLE_CHARS) for line in result.get("samples") or ()]
    return result


def flatten(groups):
    """Findings given as a list of lists (one per check task) or a flat list, checked, in order."""
    out = []
    for position, group in enumerate(groups or ()):
        items = group if isinstance(group, list) else [group]
        for index, item in enumerate(items):
            out.append(normalize(item, "findings[%d][%d]" % (position, index)))
    return out


def problems(findings):
    """``"<check> <state>: <detail>"`` for each finding that is not ok, worst first (stable)."""
    bad = [f for f in findings if f["state"] != "ok"]
    bad.sort(key=lambda f: -_status.rank(f["state"]))
    return ["%s %s: %s" % (f["check"], f["state"], f["detail"] or "no detail") for f in bad]


def overview(findings, noun="checks", state=None):
    """``_status.overview`` of findings: the problems worst first, ``"; "`` between them."""
    return _status.overview(findings, noun, problems=problems(findings), state=state, separator="; ")


def _number(value):
    if isinstance(value, float):
        return ("%.1f" % value).rstrip("0").rstrip(".") if value != int(value) else "%d" % value
    return str(value)


def duration(seconds):
    """``7230`` -> ``"2h0m"``; ``93784`` -> ``"1d2h"``: how long, for a person."""
    seconds = int(seconds)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return "%s%dd%dh" % (sign, days, hours)
    if hours:
        return "%s%dh%dm" % (sign, hours, minutes)
    if minutes:
        return "%s%dm%ds" % (sign, minutes, secs)
    return "%s%ds" % (sign, secs)


def human_bytes(size):
    """``1536`` -> ``"1.5 KiB"``."""
    size = float(size)
    for name in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or name == "TiB":
            return "%d bytes" % size if name == "bytes" else "%.1f %s" % (size, name)
        size /= 1024.0
    return "%.1f TiB" % size  # not reached


def format_value(value, unit=None):
    """The Value cell: ``"-"`` for none, the unit beside the number (``"52.7%"``, ``"150 items"``,
    ``"2h0m"`` for seconds)."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return one_line(value, 200) + ((" " + unit) if unit else "")
    if unit == "s":
        return duration(value)
    if unit == "%":
        return _number(value) + "%"
    if unit == "ms":
        return _number(value) + " ms"
    if unit == "bytes":
        return human_bytes(value)
    return _number(value) + ((" " + unit) if unit else "")


def normalize_thresholds(thresholds):
    """Threshold rows ``{metric, warning, critical, unit}`` for the report's table."""
    rows = []
    for index, row in enumerate(thresholds or ()):
        if not isinstance(row, dict) or "metric" not in row:
            raise ParameterError("thresholds[%d] must be a dict with metric, warning, critical (and unit)" % index)
        rows.append({"metric": str(row["metric"]), "warning": row.get("warning"), "critical": row.get("critical"),
                     "unit": row.get("unit")})
    return rows


def build(groups, title="Checks", host=None, started=None, finished=None, check_mode=False,
          thresholds=None, sections=None, noun="checks", extra=None):
    """The report dict of lists of findings: state, counts, problems, msg, findings, thresholds."""
    findings = flatten(groups)
    summary = overview(findings, noun)
    report = {
        "title": title,
        "host": host,
        "started": started,
        "finished": finished,
        "check_mode": bool(check_mode),
        "state": summary["state"],
        "counts": summary["summary"],
        "problems": problems(findings),
        "msg": summary["msg"],
        "findings": findings,
        "thresholds": normalize_thresholds(thresholds),
        "sections": [{"id": str(s["id"]), "title": str(s.get("title") or s["id"])} for s in sections or ()],
    }
    report.update(extra or {})
    return report


def _cell(text):
    return one_line(text).replace("|", "\\|")


def _table(findings):
    lines = ["| State | Check | Value | Detail |", "|---|---|---|---|"]
    for item in findings:
        lines.append("| %s | %s | %s | %s |" % (item["state"].upper(), _cell(item["check"]),
                                                _cell(format_value(item.get("value"), item.get("unit"))),
                                                _cell(item["detail"])))
    for item in findings:
        if item.get("samples"):
            lines += ["", "Last matching lines of %s:" % item["check"], "", "```"]
            lines += [clip(line, MAX_SAMPLE_CHARS).replace("```", "'''") for line in item["samples"]]
            lines.append("```")
    return lines


table = _table  # the findings table, also used by the incident record (_incident.py)


def markdown(report):
    """The report as Markdown: summary, what needs attention, one table per section, thresholds."""
    counts = report["counts"]
    lines = ["# %s: %s" % (report.get("title") or "Checks", report.get("host") or ""), "",
             "| | |", "|---|---|",
             "| Overall | **%s** |" % report["state"].upper(),
             "| Checks | %d ok, %d warning, %d critical |" % (counts["ok"], counts["warning"], counts["critical"])]
    for key, label in (("started", "Started"), ("finished", "Finished")):
        if report.get(key):
            lines.append("| %s | %s |" % (label, _cell(report[key])))
    if report.get("check_mode"):
        lines.append("| Mode | check mode (nothing changed) |")
    lines.append("")
    if report["problems"]:
        lines += ["## Needs attention", ""]
        lines += ["- " + one_line(problem) for problem in report["problems"]]
        lines.append("")
    findings = report["findings"]
    sections = report.get("sections") or []
    if sections:
        known = set()
        for section in sections:
            known.add(section["id"])
            chosen = [f for f in findings if f.get("section") == section["id"]]
            lines += ["## %s" % section["title"], ""]
            lines += _table(chosen) if chosen else ["Not configured."]
            lines.append("")
        others = [f for f in findings if f.get("section") not in known]
        if others:
            lines += ["## Other checks", ""] + _table(others) + [""]
    elif findings:
        lines += ["## Checks", ""] + _table(findings) + [""]
    if report.get("thresholds"):
        lines += ["## Thresholds", "", "| Metric | Warning | Critical |", "|---|---|---|"]
        for row in report["thresholds"]:
            lines.append("| %s | %s | %s |" % (_cell(row["metric"]), _cell(format_value(row["warning"], row["unit"])),
                                               _cell(format_value(row["critical"], row["unit"]))))
        lines.append("")
    return "\n".join(lines)


def report_paths(directory, name):
    base = os.path.join(directory, name)
    return {"markdown": base + ".md", "json": base + ".json"}


def write(report, directory, name):
    """Write ``<directory>/<name>.md`` and ``.json`` atomically, mode 0600, in a 0700 directory.
    Returns the paths."""
    paths = report_paths(directory, name)
    _files.make_private_dirs(directory)
    document = dict(report, report_files=paths)
    _files.atomic_write(paths["json"], data=(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8"),
                        mode=0o600, keep_attributes=False)
    _files.atomic_write(paths["markdown"], data=(markdown(report) + "\n").encode("utf-8"), mode=0o600,
                        keep_attributes=False)
    return paths
