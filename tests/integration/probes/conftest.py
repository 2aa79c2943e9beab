# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small HTTP and HTTPS servers on 127.0.0.1 that behave like the endpoints in the runbooks."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

API_TOKEN = "tok-api-5f2c9d1e8b7a"
BEARER_TOKEN = "tok-bearer-a1b2c3d4e5f6"
METRICS_SECRET = "tok-secret-9z8y7x6w5v"

METRICS = """# HELP http_requests_total Requests by code.
# TYPE http_requests_total counter
http_requests_total{code="200",path="/api"} 300
http_requests_total{code="500",path="/api"} 20
http_requests_total{code="503",path="/jobs"} 10
# HELP app_queue_length Jobs waiting.
# TYPE app_queue_length gauge
app_queue_length{queue="default"} 150
app_queue_length{queue="mail"} 3
# TYPE app_database_up gauge
app_database_up 1
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def reply(self, status, body, content_type="text/plain"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Set-Cookie", "session=s3ss10n-cookie-value")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802  (http.server API)
        path, _sep, query = self.path.partition("?")
        if path in ("/healthz", "/"):
            return self.reply(200, "ok")
        if path == "/slow":
            time.sleep(int(query.split("=")[1]) / 1000.0)
            return self.reply(200, "ok")
        if path == "/hang":
            time.sleep(3)
            return self.reply(200, "late")
        if path == "/error":
            return self.reply(500, "internal error")
        if path == "/readyz":
            document = {"status": "ready", "checks": {"database": "ok", "redis": "down"}}
            return self.reply(200, json.dumps(document), "application/json")
        if path == "/metrics":
            allowed = (self.headers.get("X-Api-Token") == API_TOKEN
                       or self.headers.get("Authorization") == "Bearer " + BEARER_TOKEN
                       or self.headers.get("x-metrics-secret") == METRICS_SECRET)
            if not allowed:
                return self.reply(401, "unauthorized")
            return self.reply(200, METRICS, "text/plain; version=0.0.4")
        if path == "/hosted":
            if self.headers.get("Host") != "app.internal":
                return self.reply(403, "host not allowed")
            return self.reply(200, "hello app.internal")
        if path.startswith("/eventually/"):
            started = self.server.first_seen.setdefault(path, time.monotonic())
            if time.monotonic() - started < 1.5:
                return self.reply(503, "starting")
            return self.reply(200, "ok")
        return self.reply(404, "not found")


class Server:
    def __init__(self, context=None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.first_seen = {}
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path, scheme="http"):
        return "%s://127.0.0.1:%d%s" % (scheme, self.port, path)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    running = Server()
    yield running
    running.stop()


@pytest.fixture()
def tls_server(tmp_path):
    """An HTTPS server with a self-signed certificate for app.internal and 127.0.0.1, valid for 10 days."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-days", "10", "-nodes", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", str(key), "-out", str(cert),
                    "-subj", "/CN=app.internal", "-addext", "subjectAltName=DNS:app.internal,IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    running = Server(context)
    running.cert_path = str(cert)
    yield running
    running.stop()


@pytest.fixture()
def closed_port():
    """A port on 127.0.0.1 that nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
