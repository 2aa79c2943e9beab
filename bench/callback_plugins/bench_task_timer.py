# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: write each task's wall time (first start to last result) to a JSON file."""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_task_timer
type: aggregate
short_description: Task wall times for the benchmarks
description:
  - Writes C({task name: seconds}) to the file named by E(RBOPS_BENCH_TIMES) when the play ends.
  - A looped task counts from its start to its last item's result.
options: {}
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._started = {}
        self._ended = {}
        self._current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._current = task.get_name()
        self._started.setdefault(self._current, time.monotonic())

    def _done(self, result):
        self._ended[result._task.get_name()] = time.monotonic()

    def v2_runner_on_ok(self, result):
        self._done(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("RBOPS_BENCH_TIMES")
        if not path:
            return
        times = {name: round(self._ended[name] - start, 3) for name, start in self._started.items() if name in self._ended}
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(times, handle)
