# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probe benchmark: one http_probe task against an ansible.builtin.uri loop.

    python bench/run.py probe [--targets 100] [--delay 0.2] [--runs 3] [--concurrency 100]

A local ThreadingHTTPServer on 127.0.0.1 answers every request after --delay seconds.  Both
playbooks probe the same --targets URLs on it; each is run --runs times as a whole
`ansible-playbook`.  Reported: medians of the whole runs and of the probing task alone (a small
callback records task start and end; http_probe's own elapsed_ms is shown too), and the ratios.
Targets: the http_probe task within 2 s and at least 10 times faster than the uri loop.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time

import yaml

from _common import BENCH_DIR, COLLECTIONS, REPO, VENV_PYTHON, median, progress, render_table, write_results

CALLBACKS = os.path.join(BENCH_DIR, "callback_plugins")
PROBE_TASK = "probe every target with http_probe"
LOOP_TASK = "probe every target with a uri loop"
TASK_TIME_LIMIT_S = 2.0
MIN_RATIO = 10.0


class SlowServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 100 simultaneous connects must not overflow the listen backlog


def slow_handler(delay):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # pylint: disable=invalid-name
            time.sleep(delay)
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            pass

    return Handler


def playbooks(urls, concurrency):
    targets = [{"name": "t%03d" % i, "url": url} for i, url in enumerate(urls)]
    probe = [{"name": "http_probe", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": PROBE_TASK, "runbook.ops.http_probe": {"targets": targets, "concurrency": concurrency,
                                                        "timeout": 10}, "register": "probe"},
        {"name": "report elapsed_ms", "ansible.builtin.debug": {"msg": "ELAPSED_MS={{ probe.elapsed_ms }}"}},
    ]}]
    loop = [{"name": "uri loop", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": LOOP_TASK, "ansible.builtin.uri": {"url": "{{ item }}", "status_code": 200, "timeout": 10},
         "loop": urls},
    ]}]
    return probe, loop


def run_playbook(path, inventory, times_file):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
        "ANSIBLE_CONFIG": os.path.join(REPO, "tests", "ansible.cfg"),
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
        "ANSIBLE_CALLBACKS_ENABLED": "bench_task_timer",
        "ANSIBLE_NOCOLOR": "1",
        "RBOPS_BENCH_TIMES": times_file,
        "PATH": os.path.dirname(VENV_PYTHON) + os.pathsep + env.get("PATH", ""),
    })
    started = time.monotonic()
    proc = subprocess.run([os.path.join(os.path.dirname(VENV_PYTHON), "ansible-playbook"), "-i", inventory, path],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError("%s failed (rc %d):\n%s%s" % (path, proc.returncode, proc.stdout[-3000:], proc.stderr[-2000:]))
    with open(times_file, encoding="utf-8") as handle:
        times = json.load(handle)
    elapsed_ms = None
    for line in proc.stdout.splitlines():
        if "ELAPSED_MS=" in line:
            elapsed_ms = int(line.split("ELAPSED_MS=")[1].strip().strip('",'))
    return wall, times, elapsed_ms


def main(argv):
    parser = argparse.ArgumentParser(prog="bench/run.py probe", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the server waits before answering")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100, help="http_probe's worker pool")
    args = parser.parse_args(argv)

    server = SlowServer(("127.0.0.1", 0), slow_handler(args.delay))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    urls = ["http://127.0.0.1:%d/target/%d" % (port, i) for i in range(args.targets)]
    try:
        with tempfile.TemporaryDirectory(prefix="rbops-probe-bench-") as tmp:
            inventory = os.path.join(tmp, "inventory.yml")
            with open(inventory, "w", encoding="utf-8") as handle:
                yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                                "ansible_python_interpreter": VENV_PYTHON}}}}, handle)
            probe, loop = playbooks(urls, args.concurrency)
            paths = {}
            for name, plays in (("probe", probe), ("loop", loop)):
                paths[name] = os.path.join(tmp, "%s.yml" % name)
                with open(paths[name], "w", encoding="utf-8") as handle:
                    yaml.safe_dump(plays, handle, sort_keys=False)
            samples = {"probe": [], "loop": []}
            for run in range(1, args.runs + 1):
                for name, task in (("probe", PROBE_TASK), ("loop", LOOP_TASK)):
                    wall, times, elapsed_ms = run_playbook(paths[name], inventory, os.path.join(tmp, "times.json"))
                    samples[name].append({"wall": wall, "task": times[task], "elapsed_ms": elapsed_ms})
                    progress("run %d/%d %-5s playbook %.2f s, task %.2f s%s" % (
                        run, args.runs, name, wall, times[task],
                        ", module elapsed_ms %d" % elapsed_ms if elapsed_ms is not None else ""))
    finally:
        server.shutdown()
        server.server_close()

    def med(name, key):
        return median([s[key] for s in samples[name]])

    probe_task, loop_task = med("probe", "task"), med("loop", "task")
    probe_wall, loop_wall = med("probe", "wall"), med("loop", "wall")
    rows = [
        ["http_probe (1 task, concurrency %d)" % args.concurrency, "%.2f" % probe_wall, "%.2f" % probe_task,
         "%d" % med("probe", "elapsed_ms")],
        ["ansible.builtin.uri loop", "%.2f" % loop_wall, "%.2f" % loop_task, "-"],
        ["ratio (loop / http_probe)", "%.1fx" % (loop_wall / probe_wall), "%.1fx" % (loop_task / probe_task), "-"],
    ]
    table = render_table(["%d targets, %.0f ms each, median of %d" % (args.targets, args.delay * 1000, args.runs),
                          "playbook s", "task s", "module elapsed ms"], rows)
    verdict_task = probe_task <= TASK_TIME_LIMIT_S
    verdict_ratio = loop_task / probe_task >= MIN_RATIO
    verdict = "http_probe task %.2f s (target <= %.0f s): %s; task ratio %.1fx (target >= %.0fx): %s" % (
        probe_task, TASK_TIME_LIMIT_S, "met" if verdict_task else "MISSED",
        loop_task / probe_task, MIN_RATIO, "met" if verdict_ratio else "MISSED")
    text = "## Probe benchmark\n\n%s\n\n%s\n" % (table, verdict)
    print(text)
    print("results: %s" % write_results("probe", text))
    return 0 if verdict_task and verdict_ratio else 1
