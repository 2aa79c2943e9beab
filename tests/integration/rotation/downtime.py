# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measure what a client sees while playbooks/rotate_secrets.yml rotates the sample service's API token.

    .venv/bin/python tests/integration/rotation/downtime.py [--runs 3] [--reload 1.0]

The client polls GET /api/items every 50 ms. It holds a token and re-reads it from the service's env
file every --reload seconds (a client that reloads its configuration periodically) and at once after a
401. For each run it reports the requests refused (401), the requests that failed to connect, and the
longest gap between two successful answers; once with a single key, once with the old token kept as
API_TOKEN_PREVIOUS during an overlap (grace 2 s). Not a test: a measurement for the docs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE), os.path.join(os.path.dirname(os.path.dirname(HERE)), "..", ".build", "collections")]

from rotation_testlib import ctl, env_value, rotate, start_with_ctl  # noqa: E402
from sample_service_fixture import SampleService  # noqa: E402

INTERVAL = 0.05


class Poller(threading.Thread):
    def __init__(self, svc, reload_seconds):
        super().__init__(daemon=True)
        self.svc = svc
        self.reload_seconds = reload_seconds
        self.stop_event = threading.Event()
        self.results = []  # (monotonic time, status or None for a connection failure)

    def run(self):
        token, loaded = env_value(self.svc.env_file, "API_TOKEN"), time.monotonic()
        while not self.stop_event.is_set():
            started = time.monotonic()
            if started - loaded >= self.reload_seconds:
                token, loaded = env_value(self.svc.env_file, "API_TOKEN"), started
            request = urllib.request.Request(self.svc.url + "/api/items", headers={"X-Api-Token": token})
            try:
                with urllib.request.urlopen(request, timeout=2) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = None
            self.results.append((started, status))
            if status == 401:
                token, loaded = env_value(self.svc.env_file, "API_TOKEN"), time.monotonic()
            time.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))

    def summary(self):
        ok_times = [t for t, status in self.results if status == 200]
        gaps = [b - a for a, b in zip(ok_times, ok_times[1:])]
        return {"requests": len(self.results), "refused_401": sum(1 for _t, s in self.results if s == 401),
                "connection_failed": sum(1 for _t, s in self.results if s is None),
                "other": sum(1 for _t, s in self.results if s not in (200, 401, None)),
                "longest_gap_s": round(max(gaps) if gaps else float("nan"), 3)}


def measure(overlap, reload_seconds):
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        svc = SampleService(tmp_path / "svc")
        start_with_ctl(svc)
        try:
            poller = Poller(svc, reload_seconds)
            poller.start()
            time.sleep(1)
            keys = [{"key": "API_TOKEN", "probe_path": "/api/items", "overlap": overlap}]
            started = time.monotonic()
            run = rotate(tmp_path, svc, keys=keys, rotate_secret_grace_seconds=2 if overlap else 0)
            took = time.monotonic() - started
            time.sleep(1.5)
            poller.stop_event.set()
            poller.join(5)
            if run.rc != 0:
                raise SystemExit(run.output)
            result = poller.summary()
            result["playbook_s"] = round(took, 1)
            return result
        finally:
            ctl(svc, "stop")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reload", type=float, default=1.0, help="seconds between the client's token reloads")
    args = parser.parse_args()
    for overlap in (False, True):
        for number in range(args.runs):
            print("%-8s run %d: %s" % ("overlap" if overlap else "single", number + 1, measure(overlap, args.reload)), flush=True)


if __name__ == "__main__":
    main()
