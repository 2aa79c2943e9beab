# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the health_check and daily_check tests: a busybox image and Compose projects."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
import yaml

from health_testlib import IMAGE


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory):
    """A FROM scratch image with a static busybox (no registry is reachable); removed after the session."""
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        pytest.fail("the Docker engine is not running: start the services with `make services`")
    context = tmp_path_factory.mktemp("busybox-image")
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\n'
                                        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
    tag = "%s:%s" % (IMAGE, uuid.uuid4().hex[:8])
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True, capture_output=True)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], check=False, capture_output=True)


@pytest.fixture()
def compose_project(tmp_path, busybox_image):
    """compose_project(services_yaml_dict) -> project name; `docker-compose down` at teardown."""
    started = []

    def start(services):
        name = "rbopshc" + uuid.uuid4().hex[:8]
        folder = tmp_path / name
        folder.mkdir()
        for service in services.values():
            service.setdefault("image", busybox_image)
            service.setdefault("network_mode", "host")
        (folder / "docker-compose.yml").write_text(yaml.safe_dump({"version": "2.4", "services": services}))
        started.append((name, folder))
        subprocess.run(["docker-compose", "-p", name, "up", "-d"], cwd=folder, check=True, capture_output=True)
        return name

    yield start
    for name, folder in started:
        subprocess.run(["docker-compose", "-p", name, "down", "--timeout", "1", "--remove-orphans"], cwd=folder,
                       check=False, capture_output=True)
