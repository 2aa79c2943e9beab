# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the benchmark suites: paths, service settings, timing, tables, results."""

from __future__ import annotations

import datetime
import os
import statistics
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
SCRATCH_DIR = os.path.join(REPO, ".build", "bench")
COLLECTIONS = os.path.join(REPO, ".build", "collections")
VENV_PYTHON = sys.executable


class BenchSetupError(Exception):
    """The environment a suite needs is missing (services not started, ...)."""


def progress(message):
    """One progress line with a timestamp; benchmarks run for minutes."""
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def require_env(name):
    value = os.environ.get(name)
    if not value:
        raise BenchSetupError("%s is not set: run `make bench` (it starts the services and sources "
                              ".build/services/env.sh) or source that file yourself" % name)
    return value


def pg_settings():
    """Superuser connection settings of the test PostgreSQL server, from env.sh."""
    with open(require_env("RBOPS_TEST_PG_PASSWORD_FILE"), encoding="utf-8") as handle:
        password = handle.read().strip()
    return {"host": require_env("RBOPS_TEST_PG_HOST"), "port": int(require_env("RBOPS_TEST_PG_PORT")),
            "user": require_env("RBOPS_TEST_PG_USER"), "password": password}


def median(values):
    return statistics.median(values) if values else None


def human_bytes(size):
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return ("%.0f %s" % (size, unit)) if unit == "B" else ("%.2f %s" % (size, unit))
        size /= 1024.0
    return str(size)


def render_table(headers, rows):
    """A Markdown table (readable as plain text too)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for row in cells[1:]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    return "\n".join(lines)


def write_results(suite, text):
    """Save a suite's report as bench/results/<suite>-<date>.md (git-ignored); returns the path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, "%s-%s.md" % (suite, datetime.datetime.now().strftime("%Y-%m-%d-%H%M")))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.rstrip() + "\n")
    return path


def machine_summary():
    cpus = os.cpu_count()
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            mem_kb = int(handle.readline().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return "%s cores (%s), %.0f GiB RAM" % (cpus, model or "unknown CPU", mem_kb / 1048576.0)
