# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An nginx of the test's own on a free loopback port, and a client that polls through it.

    proxy = nginx_proxy({"app": ["127.0.0.1:8781", "127.0.0.1:8782"]})   # started; stopped at teardown
    proxy.url, proxy.upstream_file, proxy.config, proxy.directives, proxy.served()

nginx runs with ``nginx -c <config> -g 'daemon on; pid <file>;'``; its error and access logs and temp
directories are in the test's directory.  The access log records the upstream that served each request.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from sample_service_fixture import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class NginxProxy:
    def __init__(self, directory, upstreams):
        self.dir = str(directory)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.config = os.path.join(self.dir, "nginx.conf")
        self.upstream_file = os.path.join(self.dir, "upstream.conf")
        self.pid_file = os.path.join(self.dir, "nginx.pid")
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.directives = "pid %s;" % self.pid_file
        lines = []
        for name, servers in upstreams.items():
            lines.append("upstream %s {" % name)
            lines += ["    server %s;" % server for server in servers]
            lines.append("}")
        with open(self.upstream_file, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        temp = {kind: os.path.join(self.dir, "temp", kind) for kind in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        os.makedirs(os.path.join(self.dir, "temp"))
        first = next(iter(upstreams))
        values = dict(temp, error_log=self.error_log, access_log=self.access_log, upstream_file=self.upstream_file,
                      port=self.port, first=first)
        with open(self.config, "w", encoding="utf-8") as handle:
            handle.write("""worker_processes 1;
error_log %(error_log)s notice;
events { worker_connections 256; }
http {
    log_format upstream '$msec $status $request_uri $upstream_addr $upstream_status';
    access_log %(access_log)s upstream;
    client_body_temp_path %(body)s;
    proxy_temp_path %(proxy)s;
    fastcgi_temp_path %(fastcgi)s;
    uwsgi_temp_path %(uwsgi)s;
    scgi_temp_path %(scgi)s;
    include %(upstream_file)s;
    server {
        listen 127.0.0.1:%(port)d;
        location / { proxy_pass http://%(first)s; }
    }
}
""" % values)
        self.start()

    def start(self):
        proc = subprocess.run([NGINX, "-c", self.config, "-g", "daemon on; " + self.directives],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise AssertionError("nginx did not start: %s" % (proc.stderr or proc.stdout))
        deadline = time.monotonic() + 10
        while not os.path.exists(self.pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self):
        try:
            with open(self.pid_file, encoding="utf-8") as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def served(self):
        """[(time, status, uri, upstream address)] of every request in the access log."""
        found = []
        with open(self.access_log, encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 4:
                    found.append((float(parts[0]), parts[1], parts[2], parts[3]))
        return found

    def role_vars(self, upstream):
        return {"rolling_restart_nginx_upstream_file": self.upstream_file, "rolling_restart_nginx_upstream": upstream,
                "rolling_restart_nginx_config": self.config, "rolling_restart_nginx_directives": self.directives,
                "rolling_restart_nginx_binary": NGINX}


@pytest.fixture()
def nginx_proxy(tmp_path):
    """Factory: nginx_proxy({upstream name: [server addresses]}) -> a started NginxProxy; stopped at teardown."""
    started = []

    def factory(upstreams):
        directory = tmp_path / ("nginx-%d" % len(started))
        directory.mkdir()
        proxy = NginxProxy(directory, upstreams)
        started.append(proxy)
        return proxy

    yield factory
    for proxy in started:
        proxy.stop()


class Poller(threading.Thread):
    """GET ``url`` every ``every`` seconds until stopped; every answer but 200 (or no answer) is a failure."""

    def __init__(self, url, every=0.02, timeout=5):
        super().__init__(daemon=True)
        self.url, self.every, self.timeout = url, every, timeout
        self.results = []  # (monotonic time, status or None, error text)
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                    response.read()
                    self.results.append((started, response.status, ""))
            except urllib.error.HTTPError as exc:
                self.results.append((started, exc.code, exc.reason))
            except (OSError, urllib.error.URLError) as exc:
                self.results.append((started, None, str(exc)))
            self.halt.wait(max(0.0, self.every - (time.monotonic() - started)))

    def stop(self):
        self.halt.set()
        self.join(10)

    @property
    def failures(self):
        return [r for r in self.results if r[1] != 200]
