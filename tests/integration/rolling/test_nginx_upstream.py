# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nginx_upstream against a real nginx in front of two small HTTP servers: check mode, drain, back, idempotence,
and the old text back when nginx -t or the reload fails."""

from __future__ import annotations

import http.server
import threading
import urllib.request

import pytest

from harness import run_module

from sample_service_fixture import free_port


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # pylint: disable=invalid-name
        body = str(self.server.server_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def backends():
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler) for _server in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield ["127.0.0.1:%d" % s.server_address[1] for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def answers(proxy, count=6):
    """Which backend ports answered ``count`` requests through nginx."""
    found = set()
    for _request in range(count):
        with urllib.request.urlopen(proxy.url + "/", timeout=5) as response:
            found.add(response.read().decode())
    return found


def params(proxy, server, state, **extra):
    return dict({"path": proxy.upstream_file, "upstream": "app", "server": server, "state": state,
                 "nginx_config": proxy.config, "nginx_directives": proxy.directives}, **extra)


def test_drain_and_back_through_a_real_nginx(tmp_path, nginx_proxy, backends):
    proxy = nginx_proxy({"app": backends})
    original = open(proxy.upstream_file, encoding="utf-8").read()
    first, second = backends
    assert answers(proxy) == {first.split(":")[1], second.split(":")[1]}

    check = run_module(tmp_path, "runbook.ops.nginx_upstream", params(proxy, first, "down"), check=True, diff=True)
    assert check.result["changed"] is True and check.result["reloaded"] is False
    assert "server %s down;" % first in check.result["diff"]["after"]
    assert open(proxy.upstream_file, encoding="utf-8").read() == original

    down = run_module(tmp_path, "runbook.ops.nginx_upstream", params(proxy, first, "down"))
    assert not down.failed, down.result["msg"]
    assert down.result["changed"] and down.result["validated"] and down.result["reloaded"]
    assert down.result["state_before"] == "up"
    assert open(proxy.upstream_file, encoding="utf-8").read() == original.replace(
        "server %s;" % first, "server %s down;" % first)
    assert answers(proxy) == {second.split(":")[1]}  # only the other one gets requests

    again = run_module(tmp_path, "runbook.ops.nginx_upstream", params(proxy, first, "down")).result
    assert again["changed"] is False and again["reloaded"] is False and "down already" in again["msg"]
    last = run_module(tmp_path, "runbook.ops.nginx_upstream", params(proxy, second, "down"))
    assert last.failed and "it is the last server of upstream app that is up" in last.result["msg"]

    up = run_module(tmp_path, "runbook.ops.nginx_upstream", params(proxy, first, "up"))
    assert up.result["changed"] and up.result["reloaded"]
    assert open(proxy.upstream_file, encoding="utf-8").read() == original
    assert answers(proxy) == {first.split(":")[1], second.split(":")[1]}


def test_a_failed_test_or_reload_leaves_the_file_as_it_was(tmp_path, nginx_proxy, backends):
    proxy = nginx_proxy({"app": backends})
    original = open(proxy.upstream_file, encoding="utf-8").read()
    main = open(proxy.config, encoding="utf-8").read()

    # The main configuration is broken elsewhere: nginx -t fails, the upstream file goes back, nothing reloads.
    with open(proxy.config, "w", encoding="utf-8") as handle:
        handle.write(main.replace("worker_processes 1;", "worker_processes 1;\nno_such_directive on;"))
    bad = run_module(tmp_path, "runbook.ops.nginx_upstream", params(proxy, backends[0], "down"))
    assert bad.failed and bad.result["changed"] is False and bad.result["reloaded"] is False
    assert bad.result["msg"].startswith("nginx -t rejected the change (")
    assert 'unknown directive "no_such_directive"' in bad.result["msg"]
    assert bad.result["msg"].endswith("upstream.conf was put back as it was")
    assert open(proxy.upstream_file, encoding="utf-8").read() == original
    with open(proxy.config, "w", encoding="utf-8") as handle:
        handle.write(main)

    # nginx is not running: the reload fails, the file goes back.
    proxy.stop()
    gone = run_module(tmp_path, "runbook.ops.nginx_upstream", params(proxy, backends[0], "down"))
    assert gone.failed and gone.result["validated"] is True and gone.result["reloaded"] is False
    assert "the reload failed" in gone.result["msg"] and "(nginx was not reloaded with the change)" in gone.result["msg"]
    assert open(proxy.upstream_file, encoding="utf-8").read() == original
