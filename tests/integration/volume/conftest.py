# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the volume_backup/volume_restore tests: stores, a Docker volume and a tiny busybox
image to mount it in a running container; helpers are in volume_testlib.py."""

from __future__ import annotations

import uuid

import pytest

from harness import run_playbook
from volume_testlib import docker


@pytest.fixture()
def run_tasks(tmp_path):
    """run_tasks([task(...), ...], inventory=None) -> PlaybookRun of one play on localhost."""
    def run(tasks, **kwargs):
        play = {"hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}
        return run_playbook(tmp_path, [play], **kwargs)
    return run


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """Store options: once a local directory, once a bucket on the moto S3 server."""
    if request.param == "local":
        return {"type": "local", "path": str(tmp_path / "store")}
    return {"type": "s3", "bucket": request.getfixturevalue("s3_bucket"),
            "endpoint_url": request.getfixturevalue("s3_endpoint"), "access_key": "testing",
            "secret_key": "testing"}


@pytest.fixture()
def local_store(tmp_path):
    return {"type": "local", "path": str(tmp_path / "store")}


@pytest.fixture()
def docker_volume(busybox_image):
    """A fresh named volume and a start(name) helper for containers using it; all removed afterwards."""
    name = "rbops-t-" + uuid.uuid4().hex[:10]
    docker("volume", "create", name)
    containers = []

    def start(container=None):
        container = container or "rbops-t-c-" + uuid.uuid4().hex[:8]
        docker("run", "-d", "--network", "host", "--name", container, "-v", name + ":/data", busybox_image,
               "/bin/busybox", "sleep", "300")
        containers.append(container)
        return container

    mountpoint = docker("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip()
    try:
        yield name, mountpoint, start
    finally:
        for container in containers:
            docker("rm", "-f", container, check=False)
        docker("volume", "rm", "-f", name, check=False)
