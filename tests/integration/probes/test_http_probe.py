# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""http_probe through ansible-playbook against local servers (see conftest.py)."""

from __future__ import annotations

import os
import socket
import ssl
import threading

import pytest
from conftest import API_TOKEN, BEARER_TOKEN, METRICS_SECRET

MODULE = "runbook.ops.http_probe"


def by_name(result):
    return {t["name"]: t for t in result["targets"]}


def test_many_targets_concurrently_with_per_field_json_checks(ansible_module, server, closed_port):
    run = ansible_module(MODULE, {
        "targets": [
            {"name": "live", "url": server.url("/healthz"), "body_contains": "ok"},
            {"name": "ready", "url": server.url("/readyz"),
             "json": [{"path": "status", "equals": "ready"}, {"path": "checks.database", "equals": "ok"},
                      {"path": "checks.redis", "equals": "ok", "severity": "warning"}]},
            {"name": "ready strict", "url": server.url("/readyz"),
             "json": [{"path": "checks.redis", "op": "==", "value": "ok"}]},
            {"name": "broken", "url": server.url("/error")},
            {"name": "refused", "url": "http://127.0.0.1:%d/healthz" % closed_port},
            {"name": "dns", "url": "http://no-such-host.invalid/healthz"},
            {"name": "wrong text", "url": server.url("/healthz"), "body_regex": "^healthy$"},
        ],
        "timeout": 3,
    })
    assert run.failed
    result = run.result
    targets = by_name(result)
    assert [t["name"] for t in result["targets"]][0] == "live"
    assert targets["live"]["state"] == "ok" and targets["live"]["status"] == 200
    assert targets["live"]["latency_ms"] > 0
    assert targets["ready"]["state"] == "warning"
    assert targets["ready"]["reasons"] == ["JSON checks.redis is 'down', expected 'ok'"]
    assert targets["ready strict"]["state"] == "critical"
    assert targets["broken"]["reasons"] == ["status 500 not in [200]"]
    assert targets["refused"]["reasons"] == ["connection refused (127.0.0.1:%d)" % closed_port]
    assert targets["refused"]["status"] is None
    assert targets["dns"]["reasons"] == ["DNS lookup failed for host 'no-such-host.invalid'"]
    assert targets["wrong text"]["reasons"] == ["body does not match regex '^healthy$'"]
    assert result["summary"] == {"total": 7, "ok": 1, "warning": 1, "critical": 5}
    assert result["state"] == "critical" and result["changed"] is False
    assert result["msg"].startswith("1 of 7 targets ok, overall critical - ready warning: JSON checks.redis")
    assert "Traceback" not in run.output


def test_latency_levels(ansible_module, server):
    run = ansible_module(MODULE, {"targets": [
        {"name": "fast", "url": server.url("/slow?ms=10")},
        {"name": "slowish", "url": server.url("/slow?ms=400")},
        {"name": "slow", "url": server.url("/slow?ms=1200")},
    ], "warn_ms": 250, "crit_ms": 1000, "fail_on": "never"})
    assert not run.failed
    targets = by_name(run.result)
    assert targets["fast"]["state"] == "ok"
    assert targets["slowish"]["state"] == "warning"
    assert targets["slowish"]["reasons"][0].endswith("ms over warning 250 ms")
    assert targets["slow"]["state"] == "critical"
    assert targets["slow"]["reasons"][0].endswith("ms over critical 1000 ms")
    # concurrently: the whole task took about the slowest probe, not the sum
    assert run.result["elapsed_ms"] < 1600


def test_timeout(ansible_module, server):
    run = ansible_module(MODULE, {"url": server.url("/hang"), "timeout": 1})
    assert run.failed
    assert run.result["targets"][0]["reasons"] == ["timed out after 1.0s"]
    assert run.result["msg"] == "0 of 1 targets ok, overall critical - %s critical: timed out after 1.0s" % server.url("/hang")


def test_host_allowlist(ansible_module, server):
    run = ansible_module(MODULE, {"targets": [
        {"name": "without host", "url": server.url("/hosted")},
        {"name": "with host", "url": server.url("/hosted"), "host": "app.internal", "body_contains": "hello"},
    ], "fail_on": "never"})
    targets = by_name(run.result)
    assert targets["with host"]["state"] == "ok" and targets["with host"]["host"] == "app.internal"
    assert targets["without host"]["reasons"] == [
        "status 403 not in [200] (the server refused the request: check the token and the Host header)"]


def test_tokens_are_sent_and_never_shown(ansible_module, server):
    run = ansible_module(MODULE, {"targets": [
        {"name": "api token", "url": server.url("/metrics"), "api_token": API_TOKEN},
        {"name": "bearer", "url": server.url("/metrics"), "bearer_token": BEARER_TOKEN},
        {"name": "secret", "url": server.url("/metrics"), "metrics_secret": METRICS_SECRET},
        {"name": "header", "url": server.url("/metrics"), "headers": {"X-Api-Token": API_TOKEN}},
        {"name": "wrong", "url": server.url("/metrics"), "api_token": "wrong-" + API_TOKEN},
        {"name": "cookie", "url": server.url("/healthz"),
         "headers_match": [{"name": "Set-Cookie", "equals": "nope"}]},
    ], "return_body": True}, verbosity=3)
    targets = by_name(run.result)
    for name in ("api token", "bearer", "secret", "header"):
        assert targets[name]["state"] == "ok", targets[name]
    assert targets["wrong"]["status"] == 401 and "check the token" in targets["wrong"]["reasons"][0]
    assert targets["cookie"]["reasons"] == ["header Set-Cookie is (value hidden), expected 'nope'"]
    assert "s3ss10n-cookie-value" not in str(run.result["targets"][5]["reasons"])
    for secret in (API_TOKEN, BEARER_TOKEN, METRICS_SECRET):
        assert secret not in run.output


def test_tls_self_signed_certificate(ansible_module, tls_server):
    url = tls_server.url("/healthz", "https")
    run = ansible_module(MODULE, {"targets": [
        {"name": "unverified", "url": url, "validate_certs": False},
        {"name": "system store", "url": url},
        {"name": "private ca", "url": url, "ca_path": tls_server.cert_path},
        {"name": "private ca by name", "url": url, "ca_path": tls_server.cert_path, "host": "app.internal"},
        {"name": "private ca tight", "url": url, "ca_path": tls_server.cert_path, "warn_days": 5, "crit_days": 2},
    ], "warn_days": 30, "fail_on": "never"})
    targets = by_name(run.result)
    unverified = targets["unverified"]
    assert unverified["state"] == "warning" and unverified["status"] == 200
    assert unverified["cert"]["days_left"] in (9, 10)
    assert unverified["cert"]["subject"] == "CN=app.internal" and unverified["cert"]["dns_names"] == ["app.internal"]
    assert unverified["reasons"][0].startswith("certificate expires in 9 days, under warning 30 days") or \
        unverified["reasons"][0].startswith("certificate expires in 10 days, under warning 30 days")
    system = targets["system store"]
    assert system["state"] == "critical" and system["status"] is None
    assert system["reasons"][0] == "certificate verify failed: self-signed certificate"
    assert system["cert"]["subject"] == "CN=app.internal"  # still reported after the verify failure
    assert targets["private ca"]["state"] == "warning" and targets["private ca"]["status"] == 200
    assert targets["private ca by name"]["status"] == 200
    assert targets["private ca tight"]["state"] == "ok" and targets["private ca tight"]["reasons"] == []


def test_wait_mode(ansible_module, server):
    run = ansible_module(MODULE, {"targets": [
        {"name": "steady", "url": server.url("/healthz")},
        {"name": "starting", "url": server.url("/eventually/a")},
    ], "wait": True, "wait_timeout": 20, "wait_delay": 0.4, "wait_max_delay": 1})
    assert not run.failed, run.output
    result = run.result
    assert result["state"] == "ok" and result["attempts"] >= 3
    targets = by_name(result)
    assert targets["steady"]["attempts"] == 1 and targets["starting"]["attempts"] == result["attempts"]
    assert 1400 <= result["elapsed_ms"] < 10000


def test_wait_mode_deadline(ansible_module, server):
    run = ansible_module(MODULE, {"url": server.url("/error"), "name": "down", "wait": True,
                                  "wait_timeout": 1.5, "wait_delay": 0.3})
    assert run.failed
    assert run.result["attempts"] >= 3 and run.result["targets"][0]["attempts"] == run.result["attempts"]
    assert 1400 <= run.result["elapsed_ms"] < 5000
    assert "down critical: status 500 not in [200]" in run.result["msg"]


def test_fail_on(ansible_module, server):
    warning_target = {"url": server.url("/readyz"), "json": [{"path": "checks.redis", "equals": "ok",
                                                              "severity": "warning"}]}
    assert not ansible_module(MODULE, dict(warning_target, fail_on="critical")).failed
    assert ansible_module(MODULE, dict(warning_target, fail_on="warning")).failed
    never = ansible_module(MODULE, {"url": server.url("/error"), "fail_on": "never"})
    assert not never.failed and never.result["state"] == "critical"


def test_check_mode_probes_read_only(ansible_module, server):
    run = ansible_module(MODULE, {"url": server.url("/readyz"), "return_body": True}, check=True)
    assert not run.failed
    target = run.result["targets"][0]
    assert run.result["changed"] is False and target["status"] == 200
    assert target["json"]["checks"]["database"] == "ok" and target["body"].startswith('{"status"')


def test_bad_input_fails_cleanly(ansible_module, server):
    cases = [
        ({"url": "ftp://127.0.0.1/x"}, "invalid URL 'ftp://127.0.0.1/x': the scheme must be http or https"),
        ({"url": server.url("/readyz"), "json": [{"path": "checks.[", "equals": "ok"}]}, "invalid JMESPath 'checks.['"),
        ({"url": server.url("/readyz"), "json": [{"path": "a", "op": "~=", "value": 1}]}, "~="),
        ({"url": server.url("/readyz"), "json": [{"path": "a"}]}, "needs equals, or op and value"),
        ({"url": server.url("/readyz"), "ca_path": "/nonexistent/ca.pem"}, "ca_path '/nonexistent/ca.pem' does not exist"),
        ({"url": server.url("/"), "targets": [{"url": server.url("/")}]}, "mutually exclusive"),
        ({"url": server.url("/"), "wait": True, "wait_timeout": -1}, "wait_timeout must be 0 or more, got -1"),
        ({"url": server.url("/"), "wait": True, "wait_delay": -0.5}, "wait_delay must be 0 or more, got -0.5"),
        ({"url": server.url("/"), "wait": True, "wait_max_delay": -3}, "wait_max_delay must be 0 or more, got -3"),
        ({"url": server.url("/"), "timeout": -1}, "timeout must be positive, got -1"),
        ({"url": server.url("/"), "timeout": 0}, "timeout must be positive, got 0"),
        ({"url": server.url("/"), "concurrency": 0}, "concurrency must be at least 1"),
    ]
    for params, message in cases:
        run = ansible_module(MODULE, params)
        assert run.failed, params
        assert message in run.result["msg"], (message, run.result["msg"])
        assert "Traceback" not in run.output


def trickle_server(context=None):
    """A server that sends the status line, then one header line per second for 40 seconds;
    returns (port, stop)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn):
        if context is not None:
            try:
                conn.settimeout(10)
                conn = context.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                for line in range(40):
                    if stop.wait(1):
                        return
                    conn.sendall(b"X-Trickle-%d: %d\r\n" % (line, line))
            except OSError:  # the probe gave up and closed the connection
                return

    def accept():
        while not stop.is_set():
            try:
                conn, _address = listener.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    def stop_serving():
        stop.set()
        listener.close()
    return listener.getsockname()[1], stop_serving


@pytest.fixture()
def trickle_url():
    port, stop = trickle_server()
    yield "http://127.0.0.1:%d/healthz" % port
    stop()


@pytest.fixture()
def tls_trickle(tls_server):
    """(url, CA file) of an HTTPS server that trickles its headers, with tls_server's certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_server.cert_path, os.path.join(os.path.dirname(tls_server.cert_path), "key.pem"))
    port, stop = trickle_server(context)
    yield "https://127.0.0.1:%d/healthz" % port, tls_server.cert_path
    stop()


def test_timeout_holds_while_headers_trickle_in(ansible_module, trickle_url):
    """The timeout is a deadline for the whole request, not for each read of the socket."""
    run = ansible_module(MODULE, {"url": trickle_url, "name": "trickle", "timeout": 2,
                                  "wait": True, "wait_timeout": 5, "wait_delay": 1})
    assert run.failed
    target = run.result["targets"][0]
    assert target["reasons"] == ["timed out after 2.0s"] and target["status"] is None
    # wait_timeout 5 plus at most one more timeout of 2 for a probe started before the deadline
    assert 5000 <= run.result["elapsed_ms"] < 8500, run.result["elapsed_ms"]
    assert target["attempts"] >= 2


def test_timeout_holds_while_headers_trickle_in_over_tls(ansible_module, tls_trickle):
    url, ca_path = tls_trickle
    run = ansible_module(MODULE, {"url": url, "name": "trickle", "timeout": 2, "ca_path": ca_path,
                                  "warn_days": 5, "crit_days": 1})
    assert run.failed
    target = run.result["targets"][0]
    assert target["reasons"] == ["timed out after 2.0s"], target
    assert target["cert"]["dns_names"] == ["app.internal"]  # the handshake was done
    assert run.result["elapsed_ms"] < 3500, run.result["elapsed_ms"]


def without(tmp_path, library):
    """A PYTHONPATH entry under which ``import library`` fails, as on a host without it."""
    blocker = tmp_path / ("no-" + library) / library
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text("raise ImportError('%s is not installed on this host')\n" % library)
    return str(blocker.parent)


def run_without(ansible_playbook, tmp_path, library, module, params):
    task = {"name": "module under test", module: params, "ignore_errors": True,
            "environment": {"PYTHONPATH": without(tmp_path, library)}}
    return ansible_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}])


def test_missing_libraries_are_reported_before_work(ansible_playbook, tmp_path, tls_server, server):
    no_crypto = run_without(ansible_playbook, tmp_path, "cryptography", MODULE,
                            {"url": tls_server.url("/healthz", "https"), "ca_path": tls_server.cert_path})
    assert no_crypto.failed and "Traceback" not in no_crypto.output
    assert "Failed to import the required Python library (cryptography)" in no_crypto.result["msg"]
    assert "to read the certificates of https targets" in no_crypto.result["msg"]
    assert "targets" not in no_crypto.result  # nothing was probed
    # plain http needs neither library
    plain = run_without(ansible_playbook, tmp_path, "cryptography", MODULE, {"url": server.url("/healthz")})
    assert not plain.failed and plain.result["state"] == "ok"
    no_jmespath = run_without(ansible_playbook, tmp_path, "jmespath", MODULE,
                              {"url": server.url("/readyz"), "json": [{"path": "status", "equals": "ready"}]})
    assert no_jmespath.failed and "Failed to import the required Python library (jmespath)" in no_jmespath.result["msg"]
    assert "targets" not in no_jmespath.result
