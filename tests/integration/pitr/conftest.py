# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real PostgreSQL 15 cluster per test, made with pg_createcluster on a free loopback port (never
the shared one), with a pgBackRest stanza of its own under /var/lib/postgresql; dropped afterwards
with every restored copy."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import time

import pytest

PG_VERSION = "15"
PG_BIN = "/usr/lib/postgresql/%s/bin" % PG_VERSION
TESTS_ROOT = "/var/lib/postgresql/rbops-pitr-tests"
# A repository passphrase that must never show up in output, argv or any file but the 0600 config.
PASSPHRASE = "pitr-Passphrase-" + secrets.token_hex(12)


def free_port():
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres(argv, check=True, timeout=120):
    proc = subprocess.run(["runuser", "-u", "postgres", "--"] + list(argv), capture_output=True, text=True,
                          timeout=timeout, check=False, cwd="/")
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (argv, proc.returncode, proc.stdout, proc.stderr))
    return proc


class Cluster:
    """One throw-away cluster, its stanza's files and the connection the tests use."""

    def __init__(self):
        self.name = "rbops_pitr_" + secrets.token_hex(4)
        self.port = free_port()
        self.pg_data = "/var/lib/postgresql/%s/%s" % (PG_VERSION, self.name)
        self.conf_dir = "/etc/postgresql/%s/%s" % (PG_VERSION, self.name)
        self.base = os.path.join(TESTS_ROOT, self.name)
        self.config = os.path.join(self.base, "pgbackrest.conf")
        self.repo = os.path.join(self.base, "repo")
        self.stanza = "st_" + self.name
        self.user = "rbops_pitr"
        self.password = secrets.token_hex(16)

    def create(self):
        subprocess.run(["pg_createcluster", PG_VERSION, self.name, "-p", str(self.port), "--", "--no-sync"], check=True, capture_output=True, timeout=120)
        with open(os.path.join(self.conf_dir, "conf.d", "tests.conf"), "w", encoding="utf-8") as handle:
            # small and quick: no fsync for a throw-away cluster, loopback only
            handle.write("listen_addresses = '127.0.0.1'\nfsync = off\nshared_buffers = 16MB\n")
        subprocess.run(["pg_ctlcluster", PG_VERSION, self.name, "start"], check=True, capture_output=True, timeout=60)
        self.psql("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'" % (self.user, self.password))
        os.makedirs(TESTS_ROOT, exist_ok=True)
        shutil.chown(TESTS_ROOT, "postgres", "postgres")
        os.makedirs(self.base, mode=0o700)
        shutil.chown(self.base, "postgres", "postgres")
        return self

    def psql(self, sql, port=None):
        return as_postgres(["psql", "-X", "-q", "-At", "-p", str(port or self.port), "-d", "postgres",
                            "-v", "ON_ERROR_STOP=1", "-c", sql]).stdout.strip()

    def now(self):
        return self.psql("SELECT clock_timestamp()")

    def switch_wal(self):
        """Close the current WAL segment and wait until the repository has it."""
        segment = self.psql("SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.psql("SELECT coalesce(last_archived_wal, '') >= '%s' FROM pg_stat_archiver" % segment) == "t":
                return segment
            time.sleep(0.2)
        raise AssertionError("segment %s was not archived within 30 s" % segment)

    def stanza_params(self, s3=None, **extra):
        repo = {"path": self.repo, "cipher_type": "aes-256-cbc", "cipher_pass": PASSPHRASE, "retention_full": 2}
        if s3:
            repo.update(s3, path="/" + self.name)
        params = {"stanza": self.stanza, "config": self.config, "pg_data": self.pg_data, "pg_port": self.port,
                  "repo": repo,
                  "lock_path": os.path.join(self.base, "lock"), "log_path": os.path.join(self.base, "log"),
                  "archive_timeout": 20, "check_archive_timeout": 20, "process_max": 2,
                  "archive_settings_file": os.path.join(self.conf_dir, "conf.d", "pgbackrest.conf"),
                  "wal_archive_timeout": 60}
        params.update(extra)
        return params

    def restart_command(self):
        return ["pg_ctlcluster", PG_VERSION, self.name, "restart"]

    def restored_dir(self, label="copy"):
        return os.path.join(self.base, label)

    def drop(self):
        for pid_file in glob.glob(os.path.join(self.base, "*", "postmaster.pid")):
            as_postgres([os.path.join(PG_BIN, "pg_ctl"), "-D", os.path.dirname(pid_file), "-m", "immediate", "stop"],
                        check=False)
        subprocess.run(["pg_dropcluster", "--stop", PG_VERSION, self.name], capture_output=True, timeout=120,
                       check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(TESTS_ROOT)  # only when no other test's cluster is in it


def _require_tools():
    if os.geteuid() != 0 or not shutil.which("pg_createcluster") or not shutil.which("pgbackrest"):
        pytest.fail("the PITR tests need root, postgresql-common and pgbackrest (make test installs them)")


@pytest.fixture()
def pg_cluster():
    """A fresh cluster without WAL archiving."""
    _require_tools()
    cluster = Cluster()
    try:
        yield cluster.create()
    finally:
        cluster.drop()


class TlsS3:
    """pgBackRest 2.45 talks only HTTPS to S3 and the moto server speaks HTTP: nginx terminates TLS
    (a throw-away self-signed certificate) on a free loopback port and forwards to moto."""

    def __init__(self, endpoint, workdir):
        self.endpoint = endpoint
        self.workdir = str(workdir)
        self.port = free_port()
        self.bucket = "rbops-pitr-" + secrets.token_hex(5)

    def start(self):
        import boto3  # pylint: disable=import-outside-toplevel

        conf = os.path.join(self.workdir, "nginx.conf")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-keyout", os.path.join(self.workdir, "key.pem"), "-out", os.path.join(self.workdir, "cert.pem")],
                       check=True, capture_output=True, timeout=60)
        upstream = self.endpoint.split("://", 1)[1].rstrip("/")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write("""worker_processes 1;
error_log %(d)s/error.log;
pid %(d)s/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  client_max_body_size 0;
  server {
    listen 127.0.0.1:%(port)d ssl;
    ssl_certificate %(d)s/cert.pem;
    ssl_certificate_key %(d)s/key.pem;
    location / {
      proxy_pass http://%(up)s;
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_http_version 1.1;
    }
  }
}
""" % {"d": self.workdir, "port": self.port, "up": upstream})
        subprocess.run(["nginx", "-c", conf], check=True, capture_output=True, timeout=30)
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
        self.client.create_bucket(Bucket=self.bucket)
        return self

    def repo(self):
        return {"type": "s3", "s3_bucket": self.bucket, "s3_endpoint": "127.0.0.1", "s3_region": "us-east-1",
                "s3_key": "testing", "s3_key_secret": "testing", "s3_uri_style": "path", "storage_port": self.port,
                "storage_verify_tls": False}

    def keys(self, prefix=""):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def stop(self):
        pid_file = os.path.join(self.workdir, "nginx.pid")
        if os.path.exists(pid_file):
            with open(pid_file, encoding="ascii") as handle:
                os.kill(int(handle.read().strip()), 15)
        with contextlib.suppress(Exception):
            keys = self.keys()  # a backup is one object per file: delete them a thousand at a time
            for start in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True})
            self.client.delete_bucket(Bucket=self.bucket)


@pytest.fixture(scope="module")
def stanza(tmp_path_factory):
    """One cluster per test file whose stanza archives into an S3 bucket on the moto server (through
    a TLS proxy), set up with a restart and a full backup; the tests that share it leave it running
    and readable (the last one damages its archive)."""
    _require_tools()
    if not shutil.which("nginx"):
        pytest.fail("the PITR tests need nginx (nginx-light) for TLS in front of the moto S3 server")
    from harness import run_module  # pylint: disable=import-outside-toplevel

    endpoint = os.environ.get("RBOPS_TEST_S3_ENDPOINT")
    if not endpoint:
        pytest.fail("RBOPS_TEST_S3_ENDPOINT is not set: run the integration tests with `make integration`")
    cluster = Cluster()
    tmp = tmp_path_factory.mktemp("stanza")
    s3 = TlsS3(endpoint, tmp_path_factory.mktemp("s3tls"))
    try:
        s3.start()
        cluster.s3 = s3
        cluster.create()
        run = run_module(tmp, "runbook.ops.pgbackrest_stanza",
                         cluster.stanza_params(s3=s3.repo(), restart_command=cluster.restart_command()), verbosity=3)
        assert not run.failed, run.output[-3000:]
        # the module task itself has no no_log: its options' no_log keeps the passphrase out of -vvv
        assert run.result["restarted"] and run.result["check"] == "ok"
        assert PASSPHRASE not in run.output and PASSPHRASE not in json.dumps(run.records, default=str)
        assert all(PASSPHRASE not in arg for argv in run.result["commands"] for arg in argv)
        with open(cluster.config, encoding="utf-8") as handle:
            assert "repo1-cipher-pass=%s\n" % PASSPHRASE in handle.read()  # the one place it is written
        backup = run_module(tmp, "runbook.ops.pgbackrest_backup", {"stanza": cluster.stanza, "config": cluster.config})
        assert not backup.failed, backup.output[-3000:]
        cluster.first_backup = backup.result["backup"]
        yield cluster
    finally:
        cluster.drop()
        s3.stop()
