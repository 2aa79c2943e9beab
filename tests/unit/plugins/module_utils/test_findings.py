# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Findings and the report: state, counts, the Value column with units, thresholds, private files."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _findings
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError


def sample_groups():
    return [
        [_findings.finding("queue jobs", "warning", 150, "items", "150 items (warning over 100, critical over 1000)",
                           section="queue")],
        [{"check": "disk /", "state": "ok", "value": 52.7, "unit": "%", "detail": "52.7% used\ton /", "section": "disk"},
         {"check": "last backup", "state": "critical", "value": 93784, "unit": "s", "detail": "too old", "section": "backup"}],
        [],
    ]


def test_build_state_counts_problems_worst_first():
    report = _findings.build(sample_groups(), title="Daily check", host="app1")
    assert report["state"] == "critical"
    assert report["counts"] == {"total": 3, "ok": 1, "warning": 1, "critical": 1}
    assert report["problems"][0].startswith("last backup critical: too old")
    assert report["msg"].startswith("1 of 3 checks ok, overall critical - last backup critical")
    assert report["findings"][1]["detail"] == "52.7% used on /"  # tabs and newlines become spaces


def test_structured_values_become_text():
    assert _findings.build([[{"check": "x", "state": "ok", "value": {"a": [1]}}]])["findings"][0]["value"] == '{"a": [1]}'


def test_no_findings_is_ok_with_zero_counts():
    report = _findings.build([])
    assert report["state"] == "ok" and report["counts"]["total"] == 0


@pytest.mark.parametrize("item,message", [
    ({"state": "ok"}, "has no check"),
    ({"check": "x", "state": "fine"}, "state must be one of"),
    ("text", "must be a dict"),
])
def test_malformed_findings_are_refused(item, message):
    with pytest.raises(ParameterError, match=message):
        _findings.build([[item]])


@pytest.mark.parametrize("value,unit,text", [
    (None, "%", "-"), (52.7, "%", "52.7%"), (150, "items", "150 items"), (93784, "s", "1d2h"), (7230, "s", "2h0m"),
    (12.0, "ms", "12 ms"), ("15.4", None, "15.4"), (3, None, "3"), (0.25, "days", "0.2 days"),
    (512, "bytes", "512 bytes"), (1536, "bytes", "1.5 KiB"), (3 * 1024 ** 3, "bytes", "3.0 GiB"),
])
def test_value_column_has_units(value, unit, text):
    assert _findings.format_value(value, unit) == text


def test_markdown_sections_values_samples_thresholds():
    groups = sample_groups()
    groups.append([_findings.finding("log files", "warning", 2, "lines", "2 matching lines", section="logs",
                                     samples=["a.log: ERROR one | two", "x" * 5000])])
    report = _findings.build(groups, title="Daily check", host="app1",
                             sections=[{"id": "queue", "title": "3. Queue length"}, {"id": "logs", "title": "2. Logs"},
                                       {"id": "tls", "title": "7. TLS"}],
                             thresholds=[{"metric": "postgresql connections", "warning": 80, "critical": 95, "unit": "%"},
                                         {"metric": "queue jobs", "warning": 100, "critical": 1000, "unit": "items"}])
    text = _findings.markdown(report)
    assert "| Overall | **CRITICAL** |" in text
    assert "## 3. Queue length" in text and "| WARNING | queue jobs | 150 items | 150 items (warning over 100" in text
    assert "## 7. TLS\n\nNot configured." in text
    assert "## Other checks" in text and "| 1d2h |" in text and "| 52.7% |" in text
    assert "| postgresql connections | 80% | 95% |" in text and "| queue jobs | 100 items | 1000 items |" in text
    assert "a.log: ERROR one | two" in text and "x" * 5000 not in text


def test_write_is_private_and_atomic(tmp_path):
    report = _findings.build(sample_groups(), host="app1")
    directory = tmp_path / "deep" / "reports"
    paths = _findings.write(report, str(directory), "daily-app1")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for path in paths.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = json.load(open(paths["json"], encoding="utf-8"))
    assert document["state"] == "critical" and document["report_files"] == paths
    assert not [name for name in os.listdir(directory) if name.startswith(".")]
