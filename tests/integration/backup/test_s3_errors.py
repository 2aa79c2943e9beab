# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An S3 store that cannot be used: endpoint down, bucket missing, credentials refused."""

from __future__ import annotations

import json
import time

import boto3

from backup_testlib import failed, free_port, make_sqlite_sample, moto_server, ok, random_secret, secret_var, task


def every_module(store, source, label):
    """One task per backup module against ``store``; the sqlite engine keeps the dump quick."""
    common = {"service": "notes", "engine": "sqlite", "path": source, "store": store}
    return [
        task(label + " backup", "db_backup", common),
        task(label + " info", "backup_info", {"service": "notes", "store": store}),
        task(label + " verify", "backup_verify", common),
        task(label + " restore", "db_restore", dict(common, path=source + ".restored", database="app")),
    ]


def test_endpoint_down_and_bucket_missing(s3_endpoint, tmp_path, run_tasks):
    source = str(tmp_path / "app.db")
    make_sqlite_sample(source)
    secret = random_secret(32)
    down = {"type": "s3", "bucket": "anything", "endpoint_url": "http://127.0.0.1:%d" % free_port(),
            "access_key": "testing", "secret_key": secret_var(secret)}
    missing = {"type": "s3", "bucket": "rbops-missing-" + random_secret(8).lower(), "endpoint_url": s3_endpoint,
               "access_key": "testing", "secret_key": secret_var(secret)}
    started = time.monotonic()
    run = run_tasks(every_module(down, source, "down"))
    assert time.monotonic() - started < 60, "an unreachable endpoint must fail quickly"
    for name in ("backup", "info", "verify", "restore"):
        failed(run, "down " + name, "cannot reach the S3 endpoint", down["endpoint_url"])
    run = run_tasks(every_module(missing, source, "missing"))
    for name in ("backup", "info", "verify", "restore"):
        failed(run, "missing " + name, missing["bucket"], "does not exist")
    assert secret not in run.output


def test_credentials_refused(tmp_path, run_tasks):
    source = str(tmp_path / "app.db")
    make_sqlite_sample(source)
    # moto checks signatures and IAM policies once its first (unauthenticated) actions are used up:
    # those make the bucket and a user allowed to use it.
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "4"}) as endpoint:
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
                 "aws_secret_access_key": random_secret(40)}
        boto3.client("s3", **setup).create_bucket(Bucket="auth-bucket")
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="backup")
        iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="backup")["AccessKey"]
        good = {"type": "s3", "bucket": "auth-bucket", "endpoint_url": endpoint,
                "access_key": key["AccessKeyId"], "secret_key": secret_var(key["SecretAccessKey"])}
        wrong = random_secret(40)
        wrong_secret = dict(good, secret_key=secret_var(wrong))
        unknown_key = dict(good, access_key="AKIA" + random_secret(16).upper())
        run = run_tasks(every_module(good, source, "good")[:2] + every_module(wrong_secret, source, "wrong")
                        + every_module(unknown_key, source, "unknown")[:2])
    assert ok(run, "good backup")["backup"]["row_counts"]["items"] == 300
    assert ok(run, "good info")["count"]["complete"] == 1
    for name in ("wrong backup", "wrong info", "wrong verify", "wrong restore", "unknown backup", "unknown info"):
        failed(run, name, "refused", "check the store credentials")
    for secret in (key["SecretAccessKey"], wrong):
        assert secret not in run.output
