# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""files_sync through ansible-playbook against the moto S3 server: new, changed and deleted files in
both directions, check mode, idempotence, modes, symlinks, an interrupted sync that resumes, and the
failures an operator meets (missing bucket, refused credentials) without a secret in the output."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
import uuid

import boto3

from backup_testlib import failed, in_background, moto_server, ok, random_secret, secret_var, task
from filesync_testlib import tree, write
from harness import PlaybookRun

MODULE = "files_sync"


def keys(client, bucket, prefix="uploads/"):
    names = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        names.extend(item["Key"][len(prefix):] for item in page.get("Contents", []))
    return sorted(names)


def sync(name, store, path, direction, check=None, **options):
    return task(name, MODULE, dict({"path": str(path), "direction": direction, "store": store}, **options),
                check=check)


def test_new_changed_deleted_both_ways(tmp_path, sync_store, s3_client, run_tasks):
    source, restored = tmp_path / "uploads", tmp_path / "restored"
    write(source, "avatars/1.png", b"png-1")
    write(source, "avatars/2.png", b"png-2", 0o600)
    write(source, "docs/report.pdf", b"pdf" * 1000, 0o640)
    write(source, "run.sh", b"#!/bin/sh\n", 0o755)
    write(source, "cache/x.tmp", b"tmp")
    os.symlink("/etc", str(source / "escape"))
    store, bucket = sync_store, sync_store["bucket"]
    run = run_tasks([
        sync("up", store, source, "upload", exclude=["cache/*"]),
        sync("up again", store, source, "upload", exclude=["cache/*"]),
        sync("down", store, restored, "download"),
        sync("down again", store, restored, "download"),
    ])
    up = ok(run, "up")
    assert up["changed"] and up["counts"]["copied"] == 4 and up["counts"]["bytes"] == 5 + 5 + 3000 + 10
    assert up["left_out"] == [{"path": "escape", "reason": "symlink (not followed)"}]
    assert "symlinks are never followed" in json.dumps(run.task("up")["result"].get("warnings"))
    assert keys(s3_client, bucket) == [".files_sync.manifest.json", "avatars/1.png", "avatars/2.png",
                                       "docs/report.pdf", "run.sh"]
    head = s3_client.head_object(Bucket=bucket, Key="uploads/docs/report.pdf")
    assert head["Metadata"]["mode"] == "640" and len(head["Metadata"]["sha256"]) == 64
    again = ok(run, "up again")
    assert not again["changed"] and again["counts"]["copied"] == 0 and again["counts"]["unchanged"] == 4
    down = ok(run, "down")
    assert down["changed"] and down["counts"]["copied"] == 4
    assert 0 <= down["source_age_seconds"] < 120 and down["source_synced_at"].endswith("Z")
    expected = {key: value for key, value in tree(source).items() if not key.startswith("cache")}
    assert tree(restored) == expected  # content and modes: 0600, 0640 and 0755 came back
    assert os.stat(restored / "docs" / "report.pdf").st_mtime_ns == os.stat(source / "docs" / "report.pdf").st_mtime_ns
    assert stat.S_IMODE(os.stat(restored / ".files_sync.manifest.json").st_mode) == 0o600
    assert not ok(run, "down again")["changed"]

    # Change one file keeping its size, grow one, delete one, add one; chmod a restored file.
    write(source, "avatars/1.png", b"PNG-1")
    write(source, "docs/report.pdf", b"pdf" * 1001, 0o640)
    os.unlink(source / "run.sh")
    write(source, "avatars/3.png", b"png-3")
    os.chmod(restored / "avatars" / "2.png", 0o644)
    write(restored, "local-only.txt", b"mine")
    run = run_tasks([
        sync("keep", store, source, "upload"),
        sync("plan delete", store, source, "upload", check=True, delete=True),
        sync("delete", store, source, "upload", delete=True),
        sync("down keep", store, restored, "download"),
        sync("down delete", store, restored, "download", delete=True),
    ])
    keep = ok(run, "keep")
    assert sorted(item["path"] for item in keep["copied"]) == ["avatars/1.png", "avatars/3.png", "cache/x.tmp",
                                                               "docs/report.pdf"]
    assert {item["path"]: item["reason"] for item in keep["copied"]}["avatars/1.png"] == "content differs"
    assert keep["deleted"] == [] and keep["counts"]["deleted"] == 0  # "plan delete" below still finds run.sh
    plan = ok(run, "plan delete")
    assert plan["deleted"] == ["run.sh"] and plan["counts"]["copied"] == 0
    assert ok(run, "delete")["deleted"] == ["run.sh"] and "run.sh" not in keys(s3_client, bucket)
    down = ok(run, "down keep")
    assert down["mode_fixed"] == ["avatars/2.png"] and down["deleted"] == []
    assert stat.S_IMODE(os.stat(restored / "avatars" / "2.png").st_mode) == 0o600
    assert ok(run, "down delete")["deleted"] == ["local-only.txt", "run.sh"]
    assert tree(restored) == tree(source)


def test_check_mode_lists_and_changes_nothing(tmp_path, sync_store, s3_client, run_tasks):
    source, restored = tmp_path / "uploads", tmp_path / "restored"
    for number in range(5):
        write(source, "f%d.txt" % number, b"x" * number)
    run = run_tasks([sync("plan up", sync_store, source, "upload", check=True, list_limit=3)])
    plan = ok(run, "plan up")
    assert plan["changed"] and plan["counts"]["copied"] == 5 and plan["counts"]["bytes"] == 10
    assert len(plan["copied"]) == 3 and plan["truncated"]
    assert plan["manifest"] == {"local": None, "remote": None}
    assert keys(s3_client, sync_store["bucket"]) == []
    assert not (source / ".files_sync.manifest.json").exists()
    run = run_tasks([sync("up", sync_store, source, "upload"),
                     sync("plan down", sync_store, restored, "download", check=True)])
    ok(run, "up")
    plan = ok(run, "plan down")
    assert plan["counts"]["copied"] == 5 and not restored.exists()
    assert "check mode: would download" in plan["msg"]


def test_snapshots_and_retention(tmp_path, sync_store, s3_client, run_tasks):
    source, restored = tmp_path / "uploads", tmp_path / "restored"
    write(source, "a.txt", b"a")
    bucket = sync_store["bucket"]
    for old in ("2020-01-01", "2020-01-02"):
        s3_client.put_object(Bucket=bucket, Key="uploads/%s/a.txt" % old, Body=b"old")
    run = run_tasks([
        sync("plan", sync_store, source, "upload", check=True, snapshot="today", retention_days=30),
        sync("today", sync_store, source, "upload", snapshot="today", retention_days=30),
        sync("latest", sync_store, restored, "download", snapshot="latest"),
        sync("bad", sync_store, source, "upload", snapshot="latest"),
    ])
    assert ok(run, "plan")["expired_snapshots"] == ["2020-01-01", "2020-01-02"]
    today = ok(run, "today")
    assert today["snapshot"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert today["expired_snapshots"] == ["2020-01-01", "2020-01-02"]
    assert keys(s3_client, bucket) == [today["snapshot"] + "/.files_sync.manifest.json", today["snapshot"] + "/a.txt"]
    assert ok(run, "latest")["snapshot"] == today["snapshot"] and (restored / "a.txt").read_bytes() == b"a"
    failed(run, "bad", "'latest' is for downloads")


def module_pids(marker):
    """The files_sync module processes started by our ansible-playbook (marked by an env variable)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/environ" % pid, "rb") as handle:
                if marker not in handle.read():
                    continue
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                if b"AnsiballZ_files_sync" in handle.read():
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def interrupt(run_tasks, tasks, progress, marker_name):
    """Start the playbook, wait until ``progress()`` says copying has begun, SIGTERM the module."""
    marker = uuid.uuid4().hex
    running = in_background(run_tasks, tasks, env={marker_name: marker})
    deadline = time.monotonic() + 60
    while not (progress() and module_pids(marker.encode())):
        assert time.monotonic() < deadline and not running.done(), "the sync never started copying"
        time.sleep(0.02)
    for pid in module_pids(marker.encode()):
        os.kill(pid, signal.SIGTERM)
    result = running.result(timeout=120)
    assert isinstance(result, PlaybookRun)
    return result


def test_interrupted_sync_resumes(tmp_path, sync_store, s3_client, run_tasks):
    source, restored = tmp_path / "uploads", tmp_path / "restored"
    total = 1500
    for number in range(total):
        write(source, "d%02d/file-%04d.bin" % (number % 20, number), os.urandom(512 + number % 700))
    bucket = sync_store["bucket"]
    options = {"workers": 2}
    run = interrupt(run_tasks, [sync("up", sync_store, source, "upload", **options)],
                    lambda: s3_client.list_objects_v2(Bucket=bucket, Prefix="uploads/", MaxKeys=50)["KeyCount"] >= 50,
                    "RBOPS_TEST_MARKER")
    failed(run, "up", "terminated (SIGTERM)")
    present = len(keys(s3_client, bucket))
    assert 0 < present < total, "the upload was not interrupted midway (%d of %d objects)" % (present, total)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    run = run_tasks([sync("resume", sync_store, source, "upload", **options)])
    resumed = ok(run, "resume")
    assert resumed["counts"]["copied"] == total - present and resumed["counts"]["unchanged"] == present

    run = interrupt(run_tasks, [sync("down", sync_store, restored, "download", **options)],
                    lambda: restored.exists() and sum(len(files) for _d, _s, files in os.walk(restored)) >= 50,
                    "RBOPS_TEST_MARKER")
    failed(run, "down", "terminated (SIGTERM)")
    partials = [name for _d, _s, files in os.walk(restored) for name in files if ".partial-" in name]
    assert partials == [], "an interrupted download left temporary files: %s" % partials[:5]
    have = sum(len(files) for _d, _s, files in os.walk(restored))
    assert 0 < have < total
    run = run_tasks([sync("down resume", sync_store, restored, "download", **options)])
    assert ok(run, "down resume")["counts"]["copied"] == total - have
    assert tree(restored) == tree(source)


def test_missing_bucket_and_unreachable_endpoint(tmp_path, s3_endpoint, run_tasks):
    source = tmp_path / "uploads"
    write(source, "a.txt", b"a")
    secret = random_secret(32)
    missing = {"type": "s3", "bucket": "rbops-missing-" + uuid.uuid4().hex[:8], "endpoint_url": s3_endpoint,
               "access_key": "testing", "secret_key": secret_var(secret)}
    run = run_tasks([sync("up", missing, source, "upload"), sync("down", missing, tmp_path / "r", "download"),
                     sync("local", {"type": "local", "path": str(tmp_path / "store")}, source, "upload"),
                     sync("relative", missing, "uploads", "upload")])
    for name in ("up", "down"):
        failed(run, name, missing["bucket"], "does not exist")
    failed(run, "local", "needs an s3 store")
    failed(run, "relative", "absolute")
    assert secret not in run.output and secret not in json.dumps(run.records)


def test_refused_credentials(tmp_path, run_tasks):
    source = tmp_path / "uploads"
    write(source, "a.txt", b"a")
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "4"}) as endpoint:
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
                 "aws_secret_access_key": random_secret(40)}
        boto3.client("s3", **setup).create_bucket(Bucket="auth-bucket")
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="sync")
        iam.put_user_policy(UserName="sync", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="sync")["AccessKey"]
        good = {"type": "s3", "bucket": "auth-bucket", "endpoint_url": endpoint, "access_key": key["AccessKeyId"],
                "secret_key": secret_var(key["SecretAccessKey"])}
        wrong = random_secret(40)
        run = run_tasks([sync("good", good, source, "upload"),
                         sync("wrong", dict(good, secret_key=secret_var(wrong)), source, "upload"),
                         sync("wrong down", dict(good, secret_key=secret_var(wrong)), tmp_path / "r", "download")],
                        verbosity=2)
    assert ok(run, "good")["counts"]["copied"] == 1
    for name in ("wrong", "wrong down"):
        failed(run, name, "refused", "check the store credentials")
    for value in (key["SecretAccessKey"], wrong):
        assert value not in run.output and value not in json.dumps(run.records)
