# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the backup engine in a fresh Python process and report time and peak memory as JSON.

The benchmark starts this file once per measurement (``python _engine_worker.py < job.json``),
so that every run pays the same imports and ``ru_maxrss`` is the peak of this one run, not of
the benchmark driver.  The timed span is only the engine call (``take_backup`` or
``verify_backup``): interpreter start-up and imports are reported separately.

``variant`` options monkeypatch the module_utils in this process only (the files are not
touched) to test hypotheses: zstd threads, read sizes, no row counting.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

START = time.monotonic()

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".build", "collections"))

# pylint: disable=wrong-import-position
import zstandard  # noqa: E402

from ansible_collections.runbook.ops.plugins.module_utils import _backup as backups  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils import _pg_dump as pg_dump  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils import _postgres as postgres  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils import _restore as restores  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils import _store as stores  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils import _streams as streams  # noqa: E402


def apply_variant(variant):
    """Monkeypatch this process's module_utils to try one hypothesis."""
    chunk = variant.get("chunk_size")
    if chunk:
        streams.CHUNK_SIZE = chunk
        stores.CHUNK_SIZE = chunk
        original_read = streams.ProcessOutput.read

        def read(self, size=chunk):
            return original_read(self, chunk if size is None or size < chunk else size)
        streams.ProcessOutput.read = read
    if "zstd_threads" in variant:
        threads = variant["zstd_threads"]

        def compressing_reader(source, compression, level=None):
            if compression != "zstd":
                return streams.compressing_reader(source, compression, level)
            level = streams.DEFAULT_LEVELS["zstd"] if level is None else level
            cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=threads)
            return cctx.stream_reader(source, read_size=streams.CHUNK_SIZE, closefd=False)
        backups.compressing_reader = compressing_reader
    if variant.get("no_row_counts"):
        pg_dump.Snapshot.row_counts = lambda self: {}


def peak_rss_bytes():
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def main():
    job = json.load(sys.stdin)
    apply_variant(job.get("variant") or {})
    pg = job["pg"]
    server = postgres.PgServer(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"])
    store = stores.store_from_params(job["store"])
    spec = backups.BackupSpec(service=job["service"], engine="postgresql", database=job["database"], server=server,
                              compression=job.get("compression", "zstd"),
                              compression_level=job.get("compression_level"))
    imported = time.monotonic()
    if job["action"] == "backup":
        manifest = backups.take_backup(store, spec)
        result = {key: manifest[key] for key in ("id", "object", "size", "raw_size", "sha256", "duration_seconds")}
        result["location"] = store.location(manifest["object"])
    else:
        report = restores.verify_backup(store, spec, server=server)
        result = {"backup_id": report["backup_id"], "passed": report["passed"],
                  "restore_seconds": report["restore_seconds"], "tables": len(report["tables"])}
    finished = time.monotonic()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a worker started by a big
    # parent would report the parent's peak.  VmHWM belongs to this process image only.
    result.update({"seconds": finished - imported, "startup_seconds": imported - START,
                   "max_rss_bytes": peak_rss_bytes(),
                   "cpu_seconds": usage.ru_utime + usage.ru_stime,
                   "children_cpu_seconds": children.ru_utime + children.ru_stime})
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
