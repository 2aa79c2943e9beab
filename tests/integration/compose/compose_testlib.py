# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the compose_release tests: a project of busybox images whose health and migration a test steers
through files on a bind mount."""

from __future__ import annotations

import json
import os
import subprocess
import time

from harness import run_playbook

IMAGE = "rbops-cr-test"
VERSIONS = ("v1", "v2", "v3")
# Each version's health check fails while state/unhealthy-<version> exists (interval 1 s, 2 retries); it exits at
# once (and its restart policy starts it again) while state/crash-<version> exists.
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ARG VERSION
ENV APP_VERSION=$VERSION
HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD ["/bin/sh", "-c", "test ! -f /state/unhealthy-$APP_VERSION"]
CMD ["/bin/sh", "-c", "test ! -f /state/crash-$APP_VERSION || exit 1; exec sleep 100000"]
"""
# The migration writes the version's number as the schema head; state/fail-migration-<version> makes it fail.
MIGRATION = ["sh", "-c", 'test ! -f /state/fail-migration-$APP_VERSION || { echo "migration failed" >&2; exit 3; };'
             ' echo ${APP_VERSION#v} > /state/head']
HEAD = ["sh", "-c", "cat /state/head 2>/dev/null || echo 0"]
SECRET = "cr-test-secret-value-9f3b"


def image_id(ref):
    return subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True,
                          check=True).stdout.strip()


def containers(project):
    """{name: (service, image id, container id, started at)} of a project's containers (one-offs too)."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=%s" % project],
                         capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return {}
    found = json.loads(subprocess.run(["docker", "inspect"] + ids, capture_output=True, text=True, check=True).stdout)
    return {c["Name"].lstrip("/"): (c["Config"]["Labels"]["com.docker.compose.service"], c["Image"], c["Id"],
                                    c["State"]["StartedAt"]) for c in found}


class Project:
    """One Compose project in a test's tmp_path."""

    def __init__(self, tmp_path, name):
        self.tmp_path = tmp_path
        self.name = name
        self.dir = tmp_path / name
        self.state = self.dir / "state"
        self.env_file = self.dir / ".env"
        self.history = self.dir / ".runbook" / "releases.json"
        self.events = self.dir / ".runbook" / "events.jsonl"

    def params(self, **extra):
        base = {"project_dir": str(self.dir), "health_timeout": 20}
        base.update(extra)
        return base

    def deploy_params(self, tag, **extra):
        return self.params(tag=tag, migration_service="api", migration_command=MIGRATION, migration_head_command=HEAD,
                           **extra)

    def play(self, tasks, check=False, diff=False, env=None):
        """Run ``tasks`` (dicts: name, params, and optional keys of the task) in one playbook; results by name."""
        body = []
        for task in tasks:
            task = dict(task)
            module = task.pop("module", "runbook.ops.compose_release")
            entry = {"name": task.pop("name"), module: task.pop("params"), "ignore_errors": True}
            entry.update(task)
            body.append(entry)
        run = run_playbook(self.tmp_path, [{"hosts": "localhost", "gather_facts": False, "tasks": body}],
                           check=check, diff=diff, env=env)
        assert run.rc == 0, run.output
        return run

    def running(self):
        return containers(self.name)

    def images(self):
        return {service: image for service, image, _id, _started in self.running().values()}

    def env_text(self):
        return self.env_file.read_text()

    def head(self):
        path = self.state / "head"
        return path.read_text().strip() if path.exists() else None

    def touch(self, name):
        (self.state / name).write_text("")

    def history_data(self):
        return json.loads(self.history.read_text())

    def compose(self, *args, env=None):
        return subprocess.run(["docker-compose", "-p", self.name] + list(args), cwd=self.dir, capture_output=True,
                              text=True, check=False, env=dict(os.environ, **(env or {})))


def timed(function, *args, **kwargs):
    start = time.monotonic()
    value = function(*args, **kwargs)
    return value, time.monotonic() - start
