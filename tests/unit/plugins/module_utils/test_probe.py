# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Target validation (_probe_target), check evaluation and the wait loop (_probe), without a network."""

from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _http, _probe
from ansible_collections.runbook.ops.plugins.module_utils._errors import ProbeError
from ansible_collections.runbook.ops.plugins.module_utils._http import Response
from ansible_collections.runbook.ops.plugins.module_utils._probe import evaluate
from ansible_collections.runbook.ops.plugins.module_utils._probe_target import ProbeTarget


def target(**spec):
    spec.setdefault("url", "http://127.0.0.1:1/healthz")
    return ProbeTarget.from_dict(spec)


def json_response(document, status=200, latency=5.0, headers=()):
    return Response(status=status, body=json.dumps(document).encode(), latency_ms=latency,
                    headers=[("Content-Type", "application/json")] + list(headers))


READY = {"status": "ready", "checks": {"database": "ok", "redis": "down"}, "queue": {"length": 150},
         "workers": ["a", "b"]}


def test_defaults_merge_and_token_headers():
    probe = ProbeTarget.from_dict({"url": "http://x.test/", "headers": {"X-Trace": "1"}, "bearer_token": "b-tok"},
                                  {"headers": {"x-trace": "0", "X-Other": "2"}, "api_token": "a-tok", "timeout": 3})
    assert probe.headers == {"X-Other": "2", "X-Trace": "1", "X-Api-Token": "a-tok", "Authorization": "Bearer b-tok"}
    assert probe.timeout == 3.0 and probe.status == [200] and probe.validate_certs is True
    assert probe.name == "http://x.test/" and probe.port == 80 and probe.request_path == "/"
    assert "a-tok" in probe.secrets and "Bearer b-tok" in probe.secrets


def test_url_password_becomes_basic_auth_and_is_hidden():
    probe = target(url="https://ops:s3cret@x.test:8443/a?b=1")
    assert probe.display_url == "https://ops:********@x.test:8443/a?b=1"
    assert probe.headers["Authorization"].startswith("Basic ") and probe.request_path == "/a?b=1"
    assert "s3cret" not in probe.name


@pytest.mark.parametrize("spec, message", [
    ({"url": "ftp://x.test/"}, "invalid URL 'ftp://x.test/': the scheme must be http or https"),
    ({"url": "http:///path"}, "no host name"),
    ({"url": "http://x.test:99999/"}, "invalid URL"),
    ({"url": "not a url"}, "invalid URL"),
    ({"url": "http://x.test/", "json": [{"path": "checks.[", "equals": "ok"}]}, "invalid JMESPath 'checks.['"),
    ({"url": "http://x.test/", "json": [{"path": "a", "op": "~=", "value": 1}]}, "unknown comparison '~='"),
    ({"url": "http://x.test/", "json": [{"path": "a"}]}, "needs equals, or op and value"),
    ({"url": "http://x.test/", "json": [{"path": "a", "op": ">", "value": "many"}]}, "needs a number"),
    ({"url": "http://x.test/", "headers_match": [{"name": "X", "op": "regex", "value": "("}]}, "invalid regex"),
    ({"url": "http://x.test/", "body_regex": "("}, "invalid body_regex"),
    ({"url": "http://x.test/", "warn_ms": 900, "crit_ms": 100}, "warn_ms (900) is above crit_ms (100)"),
    ({"url": "http://x.test/", "ca_path": "/nonexistent/ca.pem"}, "does not exist"),
    ({"url": "http://x.test/", "host": "a b"}, "invalid host"),
    ({"url": "http://x.test/", "status": ["two hundred"]}, "status must be a list"),
    ({"url": "http://x.test/", "colour": "red"}, "unknown option"),
])
def test_invalid_targets(spec, message):
    with pytest.raises(ProbeError) as info:
        ProbeTarget.from_dict(spec)
    assert message in str(info.value)


def test_header_value_with_line_break_is_refused_without_echoing_it():
    with pytest.raises(ProbeError) as info:
        target(headers={"X-Api-Token": "tok\r\nX-Evil: 1"})
    assert "tok" not in str(info.value) and "X-Api-Token" in str(info.value)


def test_json_checks_per_field():
    probe = target(json=[{"path": "status", "equals": "ready"},
                         {"path": "checks.database", "equals": "ok"},
                         {"path": "checks.redis", "equals": "ok", "severity": "warning"},
                         {"path": "queue.length", "op": "<", "value": 100},
                         {"path": "workers", "op": "contains", "value": "b"},
                         {"path": "length(workers)", "op": ">=", "value": "2"},
                         {"path": "status", "op": "regex", "value": "^rea"},
                         {"path": "missing.field", "op": "exists", "value": False},
                         {"path": "checks.cache", "equals": "ok"}])
    result = evaluate(probe, json_response(READY))
    assert result["state"] == "critical"
    assert result["reasons"] == [
        "JSON checks.redis is 'down', expected 'ok'",
        "JSON queue.length is 150, expected < 100",
        "JSON checks.cache is missing, expected 'ok'",
    ]


def test_numbers_match_numeric_strings_and_not_equal():
    probe = target(json=[{"path": "code", "equals": "200"}, {"path": "state", "op": "!=", "value": "down"}])
    assert evaluate(probe, json_response({"code": 200, "state": "up"}))["state"] == "ok"
    failed = evaluate(probe, json_response({"code": 500, "state": "down"}))
    assert failed["reasons"] == ["JSON code is 500, expected '200'", "JSON state is 'down', expected anything but 'down'"]


def test_warning_only_checks_make_a_warning():
    probe = target(json=[{"path": "checks.redis", "equals": "ok", "severity": "warning"}])
    assert evaluate(probe, json_response(READY))["state"] == "warning"


def test_body_not_json():
    probe = target(json=[{"path": "a", "equals": 1}])
    result = evaluate(probe, Response(status=200, body=b"<html>", latency_ms=1.0))
    assert result["state"] == "critical" and result["reasons"][0].startswith("body is not valid JSON")


def test_status_body_latency():
    probe = target(status=[200, 204], body_contains="ok", body_regex=r"^o\w$", warn_ms=500, crit_ms=1000)
    assert evaluate(probe, Response(status=204, body=b"ok", latency_ms=10.0))["state"] == "ok"
    slow = evaluate(probe, Response(status=200, body=b"ok", latency_ms=734.2))
    assert (slow["state"], slow["reasons"]) == ("warning", ["latency 734 ms over warning 500 ms"])
    bad = evaluate(probe, Response(status=500, body=b"error", latency_ms=1500.0))
    assert bad["reasons"] == ["status 500 not in [200, 204]", "latency 1500 ms over critical 1000 ms",
                              "body does not contain 'ok'", "body does not match regex '^o\\w$'"]
    refused = evaluate(target(), Response(status=401, body=b"", latency_ms=1.0))
    assert "check the token" in refused["reasons"][0]


def test_header_checks_hide_sensitive_values():
    probe = target(headers_match=[{"name": "content-type", "op": "contains", "value": "json"},
                                  {"name": "Set-Cookie", "op": "regex", "value": "^nope"},
                                  {"name": "Cache-Control", "op": "exists"}])
    result = evaluate(probe, Response(status=200, body=b"{}", latency_ms=1.0,
                                      headers=[("Content-Type", "text/html"), ("Set-Cookie", "session=abc123")]))
    assert result["reasons"] == ["header content-type is 'text/html', expected to contain 'json'",
                                 "header Set-Cookie is (value hidden), expected to match regex '^nope'",
                                 "header Cache-Control is missing, expected it to exist"]


def test_transport_error_and_body_return():
    assert evaluate(target(), Response(error="connection refused (127.0.0.1:1)"))["reasons"] == [
        "connection refused (127.0.0.1:1)"]
    result = evaluate(target(return_body=True, api_token="tok123"),
                      Response(status=200, body=b'{"echo": "tok123"}', latency_ms=1.0))
    assert result["json"] == {"echo": "********"} and result["body"] == '{"echo": "********"}'


def test_certificate_expiry_levels():
    def with_days(days):
        cert = _http.Certificate("2030-01-01T00:00:00Z", days, "CN=x", "CN=x", ["x"])
        return evaluate(target(url="https://x.test/"), Response(status=200, body=b"", latency_ms=1.0, cert=cert))
    assert with_days(90)["state"] == "ok"
    assert with_days(10)["reasons"] == ["certificate expires in 10 days, under warning 30 days (2030-01-01T00:00:00Z)"]
    assert with_days(3)["state"] == "critical"
    assert with_days(-2)["reasons"] == ["certificate expired 2 days ago (2030-01-01T00:00:00Z)"]


def test_redact():
    assert _http.redact("a tok b Bearer tok", ["tok", "Bearer tok"]) == "a ******** b ********"


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_mode_backs_off_and_reprobes_only_failing_targets(monkeypatch):
    calls = []

    def fake_probe(probe):
        calls.append(probe.name)
        ready = probe.name == "good" or len([c for c in calls if c == "late"]) >= 4
        return {"name": probe.name, "state": "ok" if ready else "critical", "reasons": [] if ready else ["not yet"]}

    monkeypatch.setattr(_probe, "probe", fake_probe)
    clock = FakeClock()
    prober = _probe.Prober(2, clock=clock.clock, sleep=clock.sleep)
    report = prober.run([target(name="good"), target(name="late")], wait=True, wait_timeout=60,
                        wait_delay=1, wait_max_delay=3)
    assert report["state"] == "ok" and report["attempts"] == 4 and not report["failed"]
    assert clock.sleeps == [1, 2, 3]
    assert calls.count("good") == 1
    assert [t["attempts"] for t in report["targets"]] == [1, 4]


def test_wait_mode_gives_up_at_the_deadline(monkeypatch):
    monkeypatch.setattr(_probe, "probe", lambda p: {"name": p.name, "state": "critical", "reasons": ["down"]})
    clock = FakeClock()
    report = _probe.Prober(clock=clock.clock, sleep=clock.sleep).run(
        [target(name="down")], wait=True, wait_timeout=5, wait_delay=2, wait_max_delay=10)
    assert sum(clock.sleeps) == 5 and report["failed"] and report["state"] == "critical"
    assert report["msg"] == "0 of 1 targets ok, overall critical - down critical: down"


@pytest.mark.parametrize("state, fail_on, failed", [
    ("critical", "critical", True), ("warning", "critical", False), ("warning", "warning", True),
    ("ok", "warning", False), ("critical", "never", False)])
def test_fail_on(state, fail_on, failed):
    result = {"name": "api", "state": state, "reasons": [] if state == "ok" else ["status 500 not in [200]"]}
    assert _probe.report([result], 1, 0.0, fail_on)["failed"] is failed


@pytest.mark.parametrize("option, value, message", [
    ("wait_timeout", -1, "wait_timeout must be 0 or more, got -1"),
    ("wait_delay", -0.5, "wait_delay must be 0 or more, got -0.5"),
    ("wait_max_delay", float("nan"), "wait_max_delay must be 0 or more, got NaN"),
    ("wait_timeout", "soon", "wait_timeout must be a number, got 'soon'"),
])
def test_wait_options_are_refused_when_negative(option, value, message):
    with pytest.raises(ProbeError) as info:
        _probe.Prober().run([target()], wait=True, **{option: value})
    assert str(info.value) == message


def test_timeout_must_be_positive():
    for value, shown in ((-1, "-1"), (0, "0"), (float("inf"), "Infinity")):
        with pytest.raises(ProbeError) as info:
            target(timeout=value)
        assert str(info.value).endswith("timeout must be positive, got %s" % shown)


# ---------------------------------------------------------------------------------------------
# Certificate days, at the boundaries

def self_signed(not_after):
    """DER bytes of a self-signed certificate that expires at ``not_after``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "app.internal")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(not_after - datetime.timedelta(days=400)).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


NOT_AFTER = datetime.datetime(2030, 1, 10, 12, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("before, reason", [
    # expired: whole days since expiry, never rounded up
    (datetime.timedelta(days=-2), "certificate expired 2 days ago (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(days=-2, minutes=-1), "certificate expired 2 days ago (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(days=-2, hours=-23, minutes=-59), "certificate expired 2 days ago (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(days=-1), "certificate expired 1 day ago (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(hours=-3), "certificate expired less than a day ago (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(seconds=-1), "certificate expired less than a day ago (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(seconds=0), "certificate expires in 0 days, under critical 7 days (2030-01-10T12:00:00Z)"),
    # valid: whole days left, never rounded up
    (datetime.timedelta(hours=3), "certificate expires in 0 days, under critical 7 days (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(days=6, hours=23, minutes=59),
     "certificate expires in 6 days, under critical 7 days (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(days=7), "certificate expires in 7 days, under warning 30 days (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(days=29, hours=23), "certificate expires in 29 days, under warning 30 days (2030-01-10T12:00:00Z)"),
    (datetime.timedelta(days=30), None),
])
def test_certificate_days_at_the_boundaries(before, reason):
    cert = _http.parse_certificate(self_signed(NOT_AFTER), now=NOT_AFTER - before)
    result = evaluate(target(url="https://x.test/"), Response(status=200, body=b"", latency_ms=1.0, cert=cert))
    assert result["reasons"] == ([reason] if reason else [])
    assert cert.expired is (before < datetime.timedelta(0))
    assert result["cert"]["expired"] is cert.expired
