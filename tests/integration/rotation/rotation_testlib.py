# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the rotation tests: the sample service under ctl.sh, the playbook, a process-argument watcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import yaml

from harness import REPO, run_playbook
from sample_service_fixture import CTL_PATH, clean_environ

PLAYBOOK = os.path.join(REPO, "playbooks", "rotate_secrets.yml")


def ctl(svc, action):
    """Run sample_service/ctl.sh ACTION on the service's env file (the way the role restarts it)."""
    env = clean_environ({"PYTHON": sys.executable})
    return subprocess.run([CTL_PATH, action, svc.env_file], env=env, capture_output=True, text=True, timeout=60, check=False)


def start_with_ctl(svc):
    proc = ctl(svc, "start")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return svc


def env_value(path, key):
    from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile
    return EnvFile.load(str(path)).get(key)


def record(path):
    record_file = os.path.join(os.path.dirname(path), ".%s.rotation.json" % os.path.basename(path))
    with open(record_file, encoding="utf-8") as handle:
        return json.load(handle)


def inventory(tmp_path):
    path = tmp_path / "rotation-inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    return str(path)


def role_vars(svc, keys=None, **extra):
    values = {
        "rotate_secret_env_file": svc.env_file,
        "rotate_secret_keys": keys or [{"key": "API_TOKEN", "probe_path": "/api/items"}],
        "rotate_secret_restart_method": "ctl",
        "rotate_secret_ctl": CTL_PATH,
        "rotate_secret_restart_environment": {"PYTHON": sys.executable},
        "rotate_secret_base_url": svc.url,
        "rotate_secret_wait_timeout": 15,
    }
    values.update(extra)
    return values


def rotate(tmp_path, svc, keys=None, check=False, verbosity=0, **extra):
    return run_playbook(tmp_path, PLAYBOOK, inventory=inventory(tmp_path), extra_vars=role_vars(svc, keys, **extra),
                        check=check, verbosity=verbosity)


class ArgvWatcher:
    """Reads every process's command line every few milliseconds while a run goes on, to prove a
    secret never appears in process arguments."""

    def __init__(self, interval=0.02):
        self.interval = interval
        self.seen = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as handle:
                        self.seen.add(handle.read().replace(b"\0", b" ").decode("utf-8", "replace"))
                except OSError:
                    continue
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def contains(self, value):
        return any(value in line for line in self.seen)
