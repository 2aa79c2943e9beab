# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rotate_secret with restart_method compose: a Compose v1 service (busybox httpd, host networking) whose CGI
checks X-Api-Token against API_TOKEN and API_TOKEN_PREVIOUS from its env_file, recreated by the role."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest
import yaml

from harness import run_playbook
from rotation_testlib import PLAYBOOK, env_value, inventory, record
from sample_service_fixture import free_port, http_request

CGI = """#!/bin/sh
# busybox httpd passes a CGI's output through when it starts with a status line
if [ -n "$HTTP_X_API_TOKEN" ] && { [ "$HTTP_X_API_TOKEN" = "$API_TOKEN" ] || \\
        { [ -n "$API_TOKEN_PREVIOUS" ] && [ "$HTTP_X_API_TOKEN" = "$API_TOKEN_PREVIOUS" ]; }; }; then
    printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nok\\n'
else
    printf 'HTTP/1.0 401 Unauthorized\\r\\nContent-Type: text/plain\\r\\n\\r\\nrefused\\n'
fi
"""


@pytest.fixture()
def compose_service(tmp_path, busybox_image):
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is needed: install the system packages with `make system`")
    tag = busybox_image
    project = tmp_path / ("rbopsrot" + uuid.uuid4().hex[:8])
    (project / "www" / "cgi-bin").mkdir(parents=True)
    (project / "www" / "index.html").write_text("ready\n")
    (project / "www" / "cgi-bin" / "api").write_text(CGI)
    (project / "www" / "cgi-bin" / "api").chmod(0o755)
    port = free_port()
    env_file = project / "app.env"
    env_file.write_text("# the API service\nAPI_TOKEN=compose-old-token-1\n")
    env_file.chmod(0o600)
    (project / "docker-compose.yml").write_text(yaml.safe_dump({"version": "2.4", "services": {"api": {
        "image": tag, "network_mode": "host", "env_file": ["app.env"],
        "command": ["httpd", "-f", "-p", "127.0.0.1:%d" % port, "-h", "/www"],
        "volumes": ["./www:/www:ro"], "stop_grace_period": "1s"}}}))
    subprocess.run(["docker-compose", "up", "-d"], cwd=project, check=True, capture_output=True)
    yield {"dir": project, "env_file": str(env_file), "url": "http://127.0.0.1:%d" % port}
    subprocess.run(["docker-compose", "down", "--timeout", "1"], cwd=project, check=False, capture_output=True)


def status(url, token):
    return http_request(url + "/cgi-bin/api", headers={"X-Api-Token": token}).status


def test_compose_service_recreated_with_the_new_token(tmp_path, compose_service):
    url = compose_service["url"]
    for _attempt in range(50):
        try:
            if status(url, "compose-old-token-1") == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    assert status(url, "compose-old-token-1") == 200
    assert status(url, "not-the-token") == 401
    extra = {
        "rotate_secret_env_file": compose_service["env_file"],
        "rotate_secret_keys": [{"key": "API_TOKEN", "probe_path": "/cgi-bin/api", "overlap": True}],
        "rotate_secret_restart_method": "compose",
        "rotate_secret_compose_file": str(compose_service["dir"] / "docker-compose.yml"),
        "rotate_secret_compose_service": "api",
        "rotate_secret_base_url": url,
        "rotate_secret_health_path": "/index.html",
        "rotate_secret_wait_timeout": 20,
    }
    run = run_playbook(tmp_path, PLAYBOOK, inventory=inventory(tmp_path), extra_vars=extra)
    assert run.rc == 0, run.output
    new = env_value(compose_service["env_file"], "API_TOKEN")
    assert status(url, new) == 200 and status(url, "compose-old-token-1") == 401
    assert record(compose_service["env_file"])["keys"]["API_TOKEN"]["phase"] == "finished"
    restarts = [r for r in run.records if r["task"].startswith("Restart the service")]
    assert len([r for r in restarts if r["result"].get("changed")]) == 2  # new values, then old values dropped
