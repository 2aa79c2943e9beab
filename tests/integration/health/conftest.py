# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the health_check and daily_check tests: a busybox image and Compose projects."""

from __future__ import annotations

import subprocess
import uuid

import pytest
import yaml


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
