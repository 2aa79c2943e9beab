# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_host_resources on verbatim /proc files of a real host (fixtures/proc, see its README)."""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _host_resources as hr
from ansible_collections.runbook.ops.plugins.module_utils._errors import HostError, ParameterError

PROC = pathlib.Path(__file__).parent / "fixtures" / "proc"


def text(name):
    return (PROC / name).read_text(encoding="ascii")


class FakeProc:
    """Serves the captured files by /proc path; /proc/stat gives stat_1, then stat_2."""

    def __init__(self, files=None):
        self.files = files or {hr.MEMINFO: [text("meminfo")], hr.STAT: [text("stat_1"), text("stat_2")],
                               hr.LOADAVG: [text("loadavg")]}
        self.slept = []

    def read(self, path):
        queue = self.files[path]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def sleep(self, seconds):
        self.slept.append(seconds)


def test_meminfo_fields_in_bytes():
    meminfo = hr.parse_meminfo(text("meminfo"))
    assert meminfo["MemTotal"] == 24684084 * 1024
    assert meminfo["MemAvailable"] == 23537820 * 1024
    assert meminfo["SwapTotal"] == 0 and meminfo["SwapFree"] == 0
    assert "HugePages_Total" in meminfo and meminfo["HugePages_Total"] == int(
        [line.split()[1] for line in text("meminfo").splitlines() if line.startswith("HugePages_Total")][0])  # a count, no kB


def test_cpu_line_and_busy_share():
    before, after = hr.parse_cpu(text("stat_1")), hr.parse_cpu(text("stat_2"))
    # user nice system idle iowait irq softirq steal of the "cpu" line; guest columns are not added again.
    assert before == (563322 + 7746 + 140438 + 144723 + 1417 + 0 + 2017 + 574, 144723 + 1417)
    assert after == (563420 + 7746 + 140448 + 144816 + 1417 + 0 + 2017 + 574, 144816 + 1417)
    # 201 jiffies passed, 93 of them idle.
    assert hr.cpu_busy_percent(before, after) == pytest.approx(100.0 * 108 / 201)
    assert hr.cpu_busy_percent(after, after) is None


def test_stat_without_cpu_line_is_an_error():
    per_cpu_only = "\n".join(line for line in text("stat_1").splitlines() if not line.startswith("cpu "))
    with pytest.raises(HostError, match="no readable aggregate cpu line"):
        hr.parse_cpu(per_cpu_only)


def test_loadavg():
    assert hr.parse_loadavg(text("loadavg")) == (2.39, 3.03, 3.33)
    with pytest.raises(HostError, match="not readable"):
        hr.parse_loadavg("garbage here now")


def test_measure_on_the_captured_host_is_ok_under_default_levels():
    proc = FakeProc()
    result = hr.measure(sample_seconds=1, read=proc.read, sleep=proc.sleep, cpu_count=2, load=(1.5, 3.0), swap=(50, 80))
    checks = {f["check"]: f for f in result["findings"]}
    assert proc.slept == [1.0]
    assert set(checks) == {"memory", "cpu", "load", "swap"}
    for item in checks.values():
        assert set(hr._findings.FINDING_KEYS) <= set(item)
    memory = checks["memory"]
    assert memory["value"] == 4.6 and memory["unit"] == "%" and memory["state"] == "ok"
    assert memory["detail"] == "4.6% used, 22.4 of 23.5 GiB available (warning over 80%, critical over 95%)"
    cpu = checks["cpu"]
    assert cpu["value"] == 53.7 and cpu["unit"] == "%" and cpu["state"] == "ok"
    assert cpu["detail"] == "53.7% busy over 1 s (warning over 70%, critical over 90%)"
    load = checks["load"]
    assert load["value"] == pytest.approx(1.2, abs=0.01) and load["unit"] == "per core" and load["state"] == "ok"
    assert "load 2.39 3.03 3.33 (1, 5, 15 min) on 2 CPUs" in load["detail"]
    assert checks["swap"] == {"check": "swap", "state": "ok", "value": None, "unit": "%", "detail": "no swap configured"}
    assert result["state"] == "ok"
    assert result["figures"]["memory"]["MemTotal"] == 24684084 * 1024


@pytest.mark.parametrize("memory, cpu, load, expected", [
    ((0, 0), (0, 0), None, {"memory": "critical", "cpu": "critical"}),
    ((4, 50), (50, 60), (1.0, 2.0), {"memory": "warning", "cpu": "warning", "load": "warning"}),
    ((4.6, 4.6), (53.7, 90), (1.0, 1.19), {"memory": "ok", "cpu": "ok", "load": "critical"}),  # "above", not "at"
])
def test_levels(memory, cpu, load, expected):
    proc = FakeProc()
    result = hr.measure(memory=memory, cpu=cpu, load=load, read=proc.read, sleep=proc.sleep, cpu_count=2)
    assert {f["check"]: f["state"] for f in result["findings"]} == expected


def test_no_cpu_sample_when_cpu_is_off():
    proc = FakeProc()
    result = hr.measure(cpu=None, read=proc.read, sleep=proc.sleep)
    assert [f["check"] for f in result["findings"]] == ["memory"] and proc.slept == []


def test_stat_that_does_not_advance_is_a_warning_not_a_crash():
    proc = FakeProc({hr.MEMINFO: [text("meminfo")], hr.STAT: [text("stat_1")]})
    result = hr.measure(read=proc.read, sleep=proc.sleep)
    cpu = [f for f in result["findings"] if f["check"] == "cpu"][0]
    assert cpu["state"] == "warning" and cpu["value"] is None and "did not advance" in cpu["detail"]


def test_meminfo_without_memavailable_is_a_warning():
    old = "\n".join(line for line in text("meminfo").splitlines() if not line.startswith("MemAvailable"))
    proc = FakeProc({hr.MEMINFO: [old], hr.STAT: [text("stat_1"), text("stat_2")]})
    memory = hr.measure(read=proc.read, sleep=proc.sleep)["findings"][0]
    assert memory["state"] == "warning" and memory["value"] is None and "MemAvailable" in memory["detail"]


def test_swap_in_use():
    meminfo = hr.parse_meminfo(text("meminfo"))
    meminfo.update(SwapTotal=4 * 1024 ** 3, SwapFree=1024 ** 3)
    swap = hr.swap_finding(meminfo, 50, 70)
    assert swap["state"] == "critical" and swap["value"] == 75.0
    assert swap["detail"] == "75.0% of 4.0 GiB swap used (warning over 50%, critical over 70%)"


@pytest.mark.parametrize("seconds", [0, 0.05, -1, 61, "soon", None])
def test_sample_interval_out_of_range_is_refused(seconds):
    proc = FakeProc()
    with pytest.raises(ParameterError, match="sample_seconds must be"):
        hr.measure(sample_seconds=seconds, read=proc.read, sleep=proc.sleep)
    assert proc.slept == []


@pytest.mark.parametrize("memory, message", [((96, 95), "memory_warn \\(96\\) must not be above memory_crit \\(95\\)"),
                                             ((-1, 95), "memory_warn must not be negative")])
def test_bad_levels_are_refused(memory, message):
    with pytest.raises(ParameterError, match=message):
        hr.measure(memory=memory, read=FakeProc().read, sleep=FakeProc().sleep)


def test_unreadable_proc_file(tmp_path):
    with pytest.raises(HostError, match="cannot read .*missing"):
        hr.read_text(str(tmp_path / "missing"))


def test_off_linux_is_refused_clearly():
    with pytest.raises(HostError, match="Linux only; this host is darwin"):
        hr.require_linux("darwin")
    hr.require_linux("linux")


def test_thresholds_rows():
    assert hr.thresholds((80, 95), None, (1.5, 3), None) == [
        {"metric": "memory used", "warning": 80, "critical": 95, "unit": "%"},
        {"metric": "load per core", "warning": 1.5, "critical": 3, "unit": "per core"}]
