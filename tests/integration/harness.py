# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run modules and playbooks through the real ansible-playbook and collect their results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CALLBACKS = os.path.join(REPO, "tests", "integration", "callback_plugins")
VENV_BIN = os.path.dirname(sys.executable)


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    records: list = field(default_factory=list)

    @property
    def output(self):
        return self.stdout + self.stderr

    def task(self, name):
        """The last result of the task called ``name``."""
        matches = [r for r in self.records if r["task"] == name]
        if not matches:
            raise AssertionError("no result for task %r; tasks: %s\n%s"
                                 % (name, [r["task"] for r in self.records], self.output))
        return matches[-1]

    def custom_stats(self, key, host="localhost"):
        """This host's value of a set_stats key: what AWX shows as the job's artifacts."""
        for record in reversed(self.records):
            if record["action"] in ("ansible.builtin.set_stats", "set_stats") and record["status"] == "ok":
                data = record["result"].get("ansible_stats", {}).get("data", {})
                if key in data:
                    return data[key][host]
        raise AssertionError("no set_stats %s in the run:\n%s" % (key, self.output[-3000:]))

    @property
    def result(self):
        """The result of the one module task of a run_module() playbook."""
        return self.task("module under test")["result"]

    @property
    def failed(self):
        return self.task("module under test")["status"] == "failed"


def ansible_env(result_file=None, extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".build", "collections"),
        "ANSIBLE_CONFIG": os.path.join(REPO, "tests", "ansible.cfg"),
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
        "ANSIBLE_CALLBACKS_ENABLED": "result_file",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
    })
    if result_file:
        env["RBOPS_RESULT_FILE"] = result_file
    env.update(extra or {})
    return env


def run_playbook(tmp_path, playbook, inventory=None, extra_vars=None, check=False, diff=False,
                 verbosity=0, env=None, timeout=600, args=()):
    """Run ``playbook`` (a path, or a list of plays to write out) with ansible-playbook."""
    if not isinstance(playbook, str):
        path = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:8])
        path.write_text(yaml.safe_dump(playbook, sort_keys=False))
        playbook = str(path)
    result_file = str(tmp_path / ("results-%s.jsonl" % uuid.uuid4().hex[:8]))
    cmd = [os.path.join(VENV_BIN, "ansible-playbook"), playbook]
    if inventory is None:
        inv = tmp_path / "inventory.yml"
        if not inv.exists():
            inv.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable}}}}))
        inventory = str(inv)
    cmd += ["-i", inventory]
    if extra_vars:
        vars_file = tmp_path / ("vars-%s.json" % uuid.uuid4().hex[:8])
        vars_file.write_text(json.dumps(extra_vars))
        cmd += ["-e", "@" + str(vars_file)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    cmd += list(args)
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(result_file, env), capture_output=True,
                          text=True, timeout=timeout, check=False)
    records = []
    if os.path.exists(result_file):
        with open(result_file, encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, records)


def run_module(tmp_path, module, params, check=False, diff=False, verbosity=0, env=None,
               module_defaults=None):
    """Run one module task through ansible-playbook; the task may fail without stopping the run."""
    task = {"name": "module under test", module: params, "ignore_errors": True}
    play = {"hosts": "localhost", "gather_facts": False, "tasks": [task]}
    if module_defaults:
        play["module_defaults"] = module_defaults
    return run_playbook(tmp_path, [play], check=check, diff=diff, verbosity=verbosity, env=env)
