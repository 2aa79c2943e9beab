# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""files_sync benchmark: many small files up and down, against a naive one-request-per-file loop.

    python bench/run.py files_sync [--files 10000] [--workers 8] [--runs 1]

A tree of --files small files (1-8 KiB of random bytes in 100 directories) is uploaded to a fresh
bucket on the moto S3 server (RBOPS_TEST_S3_ENDPOINT) and downloaded into an empty directory:

- by one `runbook.ops.files_sync` task (the whole `ansible-playbook` run, start-up included);
- by the naive loop a shell script of `aws s3 cp` per file amounts to, minus the process start of
  each command: boto3 `upload_file` / `download_file`, one file after the other, one client.

Also timed: a second files_sync upload with nothing changed (the daily case: listing, manifest,
no transfer).  Reported: seconds, files per second, and naive / files_sync.  Buckets and scratch
files are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import yaml

from _common import COLLECTIONS, REPO, SCRATCH_DIR, median, progress, render_table, require_env, write_results

ACCESS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def make_tree(root, count):
    rng = __import__("random").Random(20261130)
    total = 0
    for number in range(count):
        directory = os.path.join(root, "d%02d" % (number % 100))
        os.makedirs(directory, exist_ok=True)
        size = rng.randint(1024, 8192)
        with open(os.path.join(directory, "file-%05d.bin" % number), "wb") as handle:
            handle.write(os.urandom(size))
        total += size
    return total


def files_of(root):
    for directory, _dirs, names in os.walk(root):
        for name in names:
            if name != ".files_sync.manifest.json":
                yield os.path.join(directory, name)


def run_files_sync(workdir, endpoint, bucket, path, direction, workers):
    playbook = os.path.join(workdir, "sync-%s.yml" % uuid.uuid4().hex[:6])
    with open(playbook, "w", encoding="utf-8") as handle:
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [{
            "name": "sync", "runbook.ops.files_sync": {
                "path": path, "direction": direction, "workers": workers,
                "store": {"type": "s3", "bucket": bucket, "prefix": "sync", "endpoint_url": endpoint,
                          "access_key": "testing", "secret_key": "testing"}},
            "register": "result"}, {"ansible.builtin.copy": {
                "content": "{{ result | to_json }}", "dest": os.path.join(workdir, "result.json")}}]}], handle)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
               ANSIBLE_CONFIG=os.path.join(REPO, "tests", "ansible.cfg"))
    started = time.monotonic()
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
                    "-e", "ansible_python_interpreter=%s" % sys.executable, playbook],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    with open(os.path.join(workdir, "result.json"), encoding="utf-8") as handle:
        return elapsed, json.load(handle)["counts"]


def naive_upload(client, bucket, root):
    started = time.monotonic()
    for path in files_of(root):
        client.upload_file(path, bucket, "naive/" + os.path.relpath(path, root))
    return time.monotonic() - started


def naive_download(client, bucket, root):
    started = time.monotonic()
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix="naive/"):
        for item in page.get("Contents", []):
            target = os.path.join(root, item["Key"][len("naive/"):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            client.download_file(bucket, item["Key"], target)
    return time.monotonic() - started


def empty_bucket(client, bucket):
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def main(argv):  # pylint: disable=too-many-locals
    parser = argparse.ArgumentParser(prog="bench/run.py files_sync")
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    endpoint = require_env("RBOPS_TEST_S3_ENDPOINT")
    import boto3  # pylint: disable=import-outside-toplevel
    client = boto3.client("s3", endpoint_url=endpoint, **ACCESS)
    os.makedirs(SCRATCH_DIR, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="files-sync-", dir=SCRATCH_DIR)
    bucket = "rbops-bench-" + uuid.uuid4().hex[:8]
    client.create_bucket(Bucket=bucket)
    times = {name: [] for name in ("sync up", "sync up again", "sync down", "naive up", "naive down")}
    try:
        source = os.path.join(workdir, "source")
        total = make_tree(source, args.files)
        progress("%d files, %d bytes in %s" % (args.files, total, source))
        for run in range(args.runs):
            empty_bucket(client, bucket)
            elapsed, counts = run_files_sync(workdir, endpoint, bucket, source, "upload", args.workers)
            assert counts["copied"] == args.files, counts
            times["sync up"].append(elapsed)
            elapsed, counts = run_files_sync(workdir, endpoint, bucket, source, "upload", args.workers)
            assert counts["copied"] == 0 and counts["unchanged"] == args.files, counts
            times["sync up again"].append(elapsed)
            target = os.path.join(workdir, "down-%d" % run)
            elapsed, counts = run_files_sync(workdir, endpoint, bucket, target, "download", args.workers)
            assert counts["copied"] == args.files, counts
            times["sync down"].append(elapsed)
            times["naive up"].append(naive_upload(client, bucket, source))
            times["naive down"].append(naive_download(client, bucket, os.path.join(workdir, "naive-%d" % run)))
            progress("run %d: %s" % (run + 1, ", ".join("%s %.1f s" % (k, v[-1]) for k, v in times.items())))
        rows = []
        for label, ours, naive in (("upload", "sync up", "naive up"), ("download", "sync down", "naive down")):
            mine, theirs = median(times[ours]), median(times[naive])
            rows.append([label, "%.1f" % mine, "%.0f" % (args.files / mine), "%.1f" % theirs,
                         "%.0f" % (args.files / theirs), "%.1fx" % (theirs / mine)])
        again = median(times["sync up again"])
        rows.append(["upload, nothing changed", "%.1f" % again, "%.0f" % (args.files / again), "-", "-", "-"])
        table = render_table(["direction", "files_sync s", "files/s", "naive loop s", "files/s", "naive / files_sync"],
                             rows)
        text = ("files_sync vs a sequential boto3 loop, %d files (%d bytes), workers %d, moto S3 on loopback, "
                "medians of %d run(s)\n\n%s\n" % (args.files, total, args.workers, args.runs, table))
        print(text)
        write_results("files_sync", text)
    finally:
        empty_bucket(client, bucket)
        client.delete_bucket(Bucket=bucket)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
