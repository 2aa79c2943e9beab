# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the compose_release tests: three small image versions and a fresh Compose project per test."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
import yaml

from compose_testlib import DOCKERFILE, IMAGE, SECRET, VERSIONS, Project, containers


@pytest.fixture(scope="session")
def cr_images(tmp_path_factory):
    """rbops-cr-test:v1..v3 (FROM scratch + the static busybox; no registry is reachable); removed after the session."""
    if shutil.which("docker-compose") is None or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        pytest.fail("the Docker engine and docker-compose are needed: start the services with `make services`")
    context = tmp_path_factory.mktemp("cr-image")
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text(DOCKERFILE)
    tags = ["%s:%s" % (IMAGE, version) for version in VERSIONS]
    for version, tag in zip(VERSIONS, tags):
        subprocess.run(["docker", "build", "-q", "--build-arg", "VERSION=" + version, "-t", tag, str(context)],
                       check=True, capture_output=True)
    yield tags
    subprocess.run(["docker", "rmi", "-f"] + tags, check=False, capture_output=True)


@pytest.fixture()
def project(tmp_path, cr_images):
    """A project with services api and worker on rbops-cr-test:${APP_TAG}, nothing running yet; everything it
    started (containers, one-offs, volumes) is removed at teardown."""
    name = "rbopscr" + uuid.uuid4().hex[:8]
    found = Project(tmp_path, name)
    found.state.mkdir(parents=True)
    service = {"image": IMAGE + ":${APP_TAG}", "network_mode": "host", "stop_signal": "SIGKILL",
               "volumes": ["./state:/state"], "env_file": [".env"], "restart": "on-failure"}
    (found.dir / "docker-compose.yml").write_text(yaml.safe_dump(
        {"version": "2.4", "services": {"api": service, "worker": dict(service)}}))
    found.env_file.write_text("# app settings\nAPP_TAG=v1\nAPI_TOKEN=%s\n" % SECRET)
    found.env_file.chmod(0o600)
    yield found
    found.compose("down", "-v", "-t", "0", "--remove-orphans")
    for leftover in (name, name + "oneoff"):
        ids = [cid for _s, _i, cid, _t in containers(leftover).values()]
        if ids:
            subprocess.run(["docker", "rm", "-f"] + ids, check=False, capture_output=True)
    assert not containers(name), "containers of %s are left" % name
