# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sample service's HTTP surface: probes, metrics auth, items with encrypted secrets, jobs."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import time

from cryptography.fernet import Fernet

from sample_service_fixture import http_request


def metric_value(text, name, labels=None):
    """Value of one sample in Prometheus text format (labels given as a dict must all match)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        assert match, "malformed exposition line: %r" % line
        if match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in (labels or {}).items()):
            return float(match.group(4))
    return None


def test_probes_need_no_token(sample_service):
    svc = sample_service()
    health = http_request(svc.url + "/healthz")
    assert (health.status, health.text) == (200, "ok\n")
    ready = http_request(svc.url + "/readyz")
    assert (ready.status, ready.text) == (200, "ok\n")
    detail = http_request(svc.url + "/ready")
    assert detail.status == 200
    assert detail.json == {"status": "ready", "checks": {"database": "ok"}}
    version = http_request(svc.url + "/version")
    assert version.json == {"service": "app", "version": "1.0.0"}
    assert http_request(svc.url + "/nope").status == 404


def test_metrics_auth_and_content(sample_service):
    svc = sample_service(env={"VERSION": "2.5.1", "METRICS_SECRET": "scrape-secret-1"})
    assert svc.api("POST", "/api/items", json={"name": "one"}).status == 201

    missing = http_request(svc.url + "/metrics")
    assert missing.status == 401 and "API token" in missing.json["error"]
    wrong = http_request(svc.url + "/metrics", headers={"X-Api-Token": svc.token + "x"})
    assert wrong.status == 401
    wrong_bearer = http_request(svc.url + "/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong_bearer.status == 401
    wrong_secret = http_request(svc.url + "/metrics", headers={"X-Metrics-Secret": "nope"})
    assert wrong_secret.status == 401
    bad_host = http_request(svc.url + "/metrics", headers={"X-Api-Token": svc.token, "Host": "evil.example:%d" % svc.port})
    assert bad_host.status == 403 and "ALLOWED_HOSTS" in bad_host.json["error"]

    by_header = http_request(svc.url + "/metrics", headers={"X-Api-Token": svc.token})
    by_bearer = http_request(svc.url + "/metrics", headers={"Authorization": "Bearer " + svc.token})
    by_secret = http_request(svc.url + "/metrics", headers={"x-metrics-secret": "scrape-secret-1"})
    localhost = http_request("http://localhost:%d/metrics" % svc.port, headers={"X-Api-Token": svc.token})
    for resp in (by_header, by_bearer, by_secret, localhost):
        assert resp.status == 200, resp
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")

    text = by_secret.text
    assert "# TYPE app_http_requests_total counter" in text
    assert "# TYPE app_http_request_duration_seconds histogram" in text
    assert metric_value(text, "app_http_requests_total", {"method": "POST", "path": "/api/items", "status": "201"}) == 1
    assert metric_value(text, "app_http_requests_total", {"method": "GET", "path": "/metrics", "status": "401"}) == 4
    assert metric_value(text, "app_http_requests_total", {"method": "GET", "path": "/metrics", "status": "403"}) == 1
    count = metric_value(text, "app_http_request_duration_seconds_count")
    assert count == metric_value(text, "app_http_request_duration_seconds_bucket", {"le": "+Inf"}) >= 8
    assert metric_value(text, "app_http_request_duration_seconds_bucket", {"le": "0.005"}) <= count
    assert metric_value(text, "app_http_request_duration_seconds_sum") > 0
    assert metric_value(text, "app_items") == 1
    assert metric_value(text, "app_jobs_queued") == 0
    assert metric_value(text, "app_database_up") == 1
    assert metric_value(text, "app_build_info", {"version": "2.5.1"}) == 1
    assert abs(metric_value(text, "process_start_time_seconds") - time.time()) < 120


def test_metrics_secret_is_not_an_api_token(sample_service):
    svc = sample_service(env={"METRICS_SECRET": "scrape-secret-2"})
    resp = http_request(svc.url + "/api/items", headers={"X-Metrics-Secret": "scrape-secret-2"})
    assert resp.status == 401


def test_api_auth(sample_service):
    svc = sample_service()
    assert svc.api("GET", "/api/items", token=None).status == 401
    wrong = svc.api("GET", "/api/items", token="wrong-token")
    assert wrong.status == 401 and "error" in wrong.json
    assert svc.api("GET", "/api/jobs", token="").status == 401
    bearer = http_request(svc.url + "/api/items", headers={"Authorization": "Bearer " + svc.token})
    assert bearer.status == 200 and bearer.json == {"items": [], "count": 0}
    bad_host = http_request(svc.url + "/api/items", headers={"X-Api-Token": svc.token, "Host": "other.example"})
    assert bad_host.status == 403


def test_allowed_hosts_setting(sample_service):
    svc = sample_service(env={"ALLOWED_HOSTS": "svc.internal, localhost"})
    ok = http_request(svc.url + "/api/items", headers={"X-Api-Token": svc.token, "Host": "svc.internal:%d" % svc.port})
    assert ok.status == 200
    refused = http_request(svc.url + "/api/items", headers={"X-Api-Token": svc.token})  # Host: 127.0.0.1:port
    assert refused.status == 403


def test_previous_token_accepted_during_rotation(sample_service):
    svc = sample_service()
    old = svc.token
    svc.set_env(API_TOKEN="tok-new-" + old[-6:], API_TOKEN_PREVIOUS=old)
    svc.restart()
    assert svc.api("GET", "/api/items").status == 200
    assert svc.api("GET", "/api/items", token=old).status == 200
    svc.set_env(API_TOKEN_PREVIOUS=None)
    svc.restart()
    assert svc.api("GET", "/api/items", token=old).status == 401
    assert svc.api("GET", "/api/items").status == 200


def test_items_round_trip_with_encryption(sample_service):
    svc = sample_service()
    created = svc.api("POST", "/api/items", json={"name": "bucket-a", "secret": "s3-secret-value-123"})
    assert created.status == 201
    item_id = created.json["id"]
    assert created.json["has_secret"] is True
    assert "secret" not in created.json
    plain = svc.api("POST", "/api/items", json={"name": "no-secret"})
    assert plain.status == 201 and plain.json["has_secret"] is False

    listing = svc.api("GET", "/api/items")
    assert listing.json["count"] == 2
    assert [i["name"] for i in listing.json["items"]] == ["bucket-a", "no-secret"]
    assert "s3-secret-value-123" not in listing.text

    one = svc.api("GET", "/api/items/%d" % item_id)
    assert one.status == 200 and one.json["secret"] == "s3-secret-value-123" and one.json["name"] == "bucket-a"
    assert svc.api("GET", "/api/items/%d" % plain.json["id"]).json["secret"] is None
    assert svc.api("GET", "/api/items/999").status == 404

    # At rest the secret is Fernet ciphertext under ENCRYPTION_KEY, never the plaintext.
    with sqlite3.connect(svc.db_path) as conn:
        stored = conn.execute("SELECT secret_enc FROM items WHERE id = ?", (item_id,)).fetchone()[0]
        audit = [row[0] for row in conn.execute("SELECT event FROM audit_log")]
    assert "s3-secret-value-123" not in stored
    assert Fernet(svc.encryption_key.encode()).decrypt(stored.encode()) == b"s3-secret-value-123"
    assert "item.created id=%d" % item_id in audit
    with open(svc.db_path, "rb") as handle:
        assert b"s3-secret-value-123" not in handle.read()


def test_wrong_encryption_key_gives_clear_error(sample_service):
    svc = sample_service()
    item_id = svc.api("POST", "/api/items", json={"name": "x", "secret": "top"}).json["id"]
    svc.set_env(ENCRYPTION_KEY=Fernet.generate_key().decode())
    svc.restart()
    resp = svc.api("GET", "/api/items/%d" % item_id)
    assert resp.status == 500
    assert "ENCRYPTION_KEY does not match" in resp.json["error"]
    assert svc.api("GET", "/api/items").status == 200  # listing needs no decryption


def test_secret_needs_a_key(sample_service):
    svc = sample_service(env={"ENCRYPTION_KEY": ""})
    resp = svc.api("POST", "/api/items", json={"name": "x", "secret": "s"})
    assert resp.status == 400 and "ENCRYPTION_KEY is not configured" in resp.json["error"]
    assert svc.api("POST", "/api/items", json={"name": "x"}).status == 201


def test_bad_requests(sample_service):
    svc = sample_service()
    assert svc.api("POST", "/api/items", json={"secret": "s"}).status == 400
    assert svc.api("POST", "/api/items", json={"name": "x", "secret": 5}).status == 400
    assert svc.api("POST", "/api/jobs", json={"duration": 999}).status == 400
    assert svc.api("POST", "/api/jobs", json={"kind": "../etc"}).status == 400
    resp = http_request(svc.url + "/api/items", method="POST", headers={"X-Api-Token": svc.token, "Content-Type": "application/json"},
                        json=None)
    assert resp.status == 400  # empty body: name missing
    assert svc.api("GET", "/api/items").json["count"] == 0


def test_jobs_and_job_logs(sample_service):
    svc = sample_service()
    slow = svc.api("POST", "/api/jobs", json={"kind": "backup", "duration": 2})
    quick = svc.api("POST", "/api/jobs", json={"kind": "noop"})
    assert slow.status == 201 and quick.status == 201
    assert slow.json["status"] == "queued"
    time.sleep(0.5)
    metrics = svc.get("/metrics", headers={"X-Api-Token": svc.token}).text
    assert metric_value(metrics, "app_jobs_queued") == 1  # the quick job waits behind the slow one

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        jobs = svc.api("GET", "/api/jobs").json
        if all(job["status"] == "succeeded" for job in jobs["jobs"]):
            break
        time.sleep(0.2)
    assert jobs["count"] == 2
    assert [(j["kind"], j["status"]) for j in jobs["jobs"]] == [("backup", "succeeded"), ("noop", "succeeded")]

    log_dir = os.path.join(svc.data_dir, "logs", "jobs")
    log_path = os.path.join(log_dir, "%d.log" % slow.json["id"])
    with open(log_path, encoding="utf-8") as handle:
        log = handle.read()
    assert "created kind=backup" in log and "started" in log and "succeeded" in log
    assert stat.S_IMODE(os.stat(log_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(log_dir).st_mode) == 0o700


def test_file_modes_and_no_secrets_in_logs(sample_service):
    svc = sample_service(env={"METRICS_SECRET": "metrics-secret-xyz"})
    svc.api("POST", "/api/items", json={"name": "n", "secret": "item-secret-xyz"})
    svc.api("GET", "/api/items/1")
    svc.get("/metrics", headers={"Authorization": "Bearer " + svc.token})
    svc.api("GET", "/api/items", token="guess-token-xyz")
    svc.stop()
    for path in (svc.data_dir, os.path.join(svc.data_dir, "logs")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    for path in (svc.db_path, svc.lock_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    log = svc.log_text()
    assert "listening" in log and "stopped" in log
    for secret in (svc.token, svc.encryption_key, "metrics-secret-xyz", "item-secret-xyz", "guess-token-xyz"):
        assert secret not in log


def test_json_logs(sample_service):
    import json

    svc = sample_service(env={"LOG_FORMAT": "json"})
    svc.api("GET", "/api/items")
    svc.stop()
    records = [json.loads(line) for line in svc.log_text().splitlines() if line.strip()]
    assert records and all({"time", "level", "service", "msg"} <= set(r) for r in records)
    assert any(r["msg"] == "request" and r["path"] == "/api/items" and r["status"] == 200 for r in records)
