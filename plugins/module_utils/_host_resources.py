# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory, CPU, load and swap of a Linux host, from /proc, as findings.

Memory used is ``1 - MemAvailable / MemTotal`` (what the kernel says it can give to new work without
swapping, not ``MemFree``).  CPU busy is the share of non-idle time between two readings of the ``cpu``
line of /proc/stat (idle and iowait count as idle; guest time is already inside user and nice).  Load is
the 1, 5 and 15 minute load average divided by the number of CPUs.  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import os
import sys
import time

from ansible_collections.runbook.ops.plugins.module_utils import _findings, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import HostError, ParameterError

MEMINFO = "/proc/meminfo"
STAT = "/proc/stat"
LOADAVG = "/proc/loadavg"
MIN_SAMPLE_SECONDS = 0.1
MAX_SAMPLE_SECONDS = 60.0
# Levels are "above": a value over the warning level is a warning, as in the thresholds table.
OPERATOR = ">"
GIB = 1024.0 ** 3


def check_sample_seconds(seconds):
    """The CPU sample interval, refused outside [0.1, 60] seconds."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ParameterError("sample_seconds must be a number of seconds, got %r" % (seconds,)) from None
    if not MIN_SAMPLE_SECONDS <= value <= MAX_SAMPLE_SECONDS:
        raise ParameterError("sample_seconds must be between %s and %s seconds, got %s"
                             % (MIN_SAMPLE_SECONDS, int(MAX_SAMPLE_SECONDS), seconds))
    return value


def check_levels(name, warn, crit):
    """Warning and critical levels of one figure: not negative, warning not above critical."""
    for label, value in (("warn", warn), ("crit", crit)):
        if value is not None and value < 0:
            raise ParameterError("%s_%s must not be negative, got %s" % (name, label, value))
    if warn is not None and crit is not None and warn > crit:
        raise ParameterError("%s_warn (%s) must not be above %s_crit (%s)" % (name, warn, name, crit))


def parse_meminfo(text):
    """/proc/meminfo as ``{field: bytes}`` (fields given in kB are converted; counts stay counts)."""
    values = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts:
            continue
        try:
            number = int(parts[0])
        except ValueError:
            continue
        if len(parts) > 1 and parts[1] == "kB":
            number *= 1024
        values[name.strip()] = number
    return values


def parse_cpu(text):
    """``(total, idle)`` jiffies of the aggregate ``cpu`` line of /proc/stat."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                numbers = [int(field) for field in fields[1:9]]  # user nice system idle iowait irq softirq steal
            except ValueError:
                break
            if len(numbers) < 4:
                break
            idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)
            return sum(numbers), idle
    raise HostError("/proc/stat has no readable aggregate cpu line")


def cpu_busy_percent(before, after):
    """Busy share (0-100) between two ``(total, idle)`` readings; None when no time passed between them."""
    total = after[0] - before[0]
    idle = after[1] - before[1]
    if total <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * (total - idle) / total))


def parse_loadavg(text):
    """The 1, 5 and 15 minute load averages of /proc/loadavg."""
    try:
        return tuple(float(field) for field in text.split()[:3])
    except ValueError:
        raise HostError("/proc/loadavg is not readable: %r" % _findings.clip(text, 100)) from None


def _levels_text(warn, crit, unit):
    parts = []
    if warn is not None:
        parts.append("warning over %s%s" % (_findings.format_value(warn), unit))
    if crit is not None:
        parts.append("critical over %s%s" % (_findings.format_value(crit), unit))
    return " (%s)" % ", ".join(parts) if parts else ""


def memory_finding(meminfo, warn, crit):
    total = meminfo.get("MemTotal")
    available = meminfo.get("MemAvailable")
    if not total or available is None:
        return _findings.finding("memory", "warning", None, "%",
                                 "/proc/meminfo has no MemTotal or MemAvailable (a kernel older than 3.14?)")
    used = round(100.0 * (1 - float(available) / total), 1)
    state = _status.level(used, warn, crit, OPERATOR)
    return _findings.finding("memory", state, used, "%", "%.1f%% used, %.1f of %.1f GiB available%s"
                             % (used, available / GIB, total / GIB, _levels_text(warn, crit, "%")))


def swap_finding(meminfo, warn, crit):
    total = meminfo.get("SwapTotal")
    free = meminfo.get("SwapFree")
    if total is None or free is None:
        return _findings.finding("swap", "warning", None, "%", "/proc/meminfo has no SwapTotal or SwapFree")
    if total == 0:
        return _findings.finding("swap", "ok", None, "%", "no swap configured")
    used = round(100.0 * (total - free) / total, 1)
    state = _status.level(used, warn, crit, OPERATOR)
    return _findings.finding("swap", state, used, "%", "%.1f%% of %.1f GiB swap used%s"
                             % (used, total / GIB, _levels_text(warn, crit, "%")))


def cpu_finding(busy, seconds, warn, crit):
    if busy is None:
        return _findings.finding("cpu", "warning", None, "%",
                                 "/proc/stat did not advance over %s s; CPU use unknown" % _findings.format_value(seconds))
    busy = round(busy, 1)
    state = _status.level(busy, warn, crit, OPERATOR)
    return _findings.finding("cpu", state, busy, "%", "%.1f%% busy over %s s%s"
                             % (busy, _findings.format_value(seconds), _levels_text(warn, crit, "%")))


def load_finding(loads, cpus, warn, crit):
    per_core = round(loads[0] / cpus, 2)
    state = _status.level(per_core, warn, crit, OPERATOR)
    return _findings.finding("load", state, per_core, "per core",
                             "load %.2f %.2f %.2f (1, 5, 15 min) on %d CPUs, %.2f per core%s"
                             % (loads[0], loads[1], loads[2], cpus, per_core,
                                _levels_text(warn, crit, " per core")))


def read_text(path):
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        raise HostError("cannot read %s: %s" % (path, exc.strerror or exc)) from None


def require_linux(platform=None):
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        raise HostError("host_resources reads /proc and runs on Linux only; this host is %s" % platform)


def measure(memory=(80.0, 95.0), cpu=(70.0, 90.0), load=None, swap=None, sample_seconds=1.0,
            read=read_text, sleep=time.sleep, cpu_count=None):
    """Findings and raw figures of the host.  ``memory``, ``cpu``, ``load`` and ``swap`` are
    ``(warn, crit)`` pairs (either may be None); ``load`` and ``swap`` are not checked when None.
    ``cpu`` None skips the CPU sample."""
    sample_seconds = check_sample_seconds(sample_seconds)
    for name, levels in (("memory", memory), ("cpu", cpu), ("load", load), ("swap", swap)):
        if levels is not None:
            check_levels(name, *levels)
    meminfo = parse_meminfo(read(MEMINFO))
    findings = [memory_finding(meminfo, *memory)]
    figures = {"memory": {key: meminfo.get(key) for key in ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree")}}
    if cpu is not None:
        before = parse_cpu(read(STAT))
        sleep(sample_seconds)
        after = parse_cpu(read(STAT))
        busy = cpu_busy_percent(before, after)
        findings.append(cpu_finding(busy, sample_seconds, *cpu))
        figures["cpu_busy_percent"] = None if busy is None else round(busy, 1)
        figures["sample_seconds"] = sample_seconds
    if load is not None:
        cpus = cpu_count or os.cpu_count() or 1
        loads = parse_loadavg(read(LOADAVG))
        findings.append(load_finding(loads, cpus, *load))
        figures["load"] = {"1m": loads[0], "5m": loads[1], "15m": loads[2], "cpus": cpus}
    if swap is not None:
        findings.append(swap_finding(meminfo, *swap))
    return {"state": _status.worst(f["state"] for f in findings), "findings": findings, "figures": figures}


def thresholds(memory=(80.0, 95.0), cpu=(70.0, 90.0), load=None, swap=None):
    """Rows for a report's thresholds table."""
    rows = []
    for metric, levels, unit in (("memory used", memory, "%"), ("cpu busy", cpu, "%"),
                                 ("load per core", load, "per core"), ("swap used", swap, "%")):
        if levels is not None:
            rows.append({"metric": metric, "warning": levels[0], "critical": levels[1], "unit": unit})
    return rows
