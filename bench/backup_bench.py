# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup benchmark: db_backup and backup_verify against pg_dump / pg_restore on a >= 1 GiB database.

See bench/README.md for what is measured and how.  Usage (services must be up: `make bench`):

    python bench/run.py backup [--sizes 1,2] [--runs 3] [--variants] [--clean]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _dataset
from _common import (COLLECTIONS, REPO, SCRATCH_DIR, BenchSetupError, human_bytes, machine_summary, median,
                     pg_settings, progress, render_table, require_env, write_results)

sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_engine_worker.py")
SERVICE = "bench"
MODULE_PROCESS_MARK = b"AnsiballZ_"
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGET_FLOOR_RATIO = 1.15
TARGET_SPEEDUP = 2.5
TARGET_RSS = 150 * 1000 * 1000
TARGET_VERIFY_RATIO = 1.2
QUIET_CORES = 0.3

# Variants of the engine tried with --variants (monkeypatched in the worker, see _engine_worker.py).
VARIANTS = [
    ("zstd level 3 (the old default)", {"compression_level": 3}),
    ("zstd level 2", {"compression_level": 2}),
    ("zstd level 1, 1 worker thread", {"variant": {"zstd_threads": 1}}),
    ("zstd level 3, 1 worker thread", {"compression_level": 3, "variant": {"zstd_threads": 1}}),
    ("zstd level 1, 2 worker threads", {"variant": {"zstd_threads": 2}}),
    ("no compression (sha256 only)", {"compression": "none"}),
    ("s3: default (2 x 8 MiB parts in flight)", {"store": "s3"}),
    ("read size 4 MiB", {"variant": {"chunk_size": 4 << 20}}),
    ("no row counting", {"variant": {"no_row_counts": True}}),
]


# --- measuring ------------------------------------------------------------------------------

def cpu_busy_seconds():
    """Busy CPU time of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


class PostgresCpu:
    """CPU time used by the PostgreSQL server: live children of the postmaster plus what the
    postmaster has reaped (cutime/cstime), so backends that start and end during a run count."""

    def __init__(self, data_directory):
        self.pid = None
        with contextlib.suppress(OSError, ValueError, IndexError, TypeError):
            with open(os.path.join(data_directory, "postmaster.pid"), encoding="ascii") as handle:
                self.pid = int(handle.readline())

    @staticmethod
    def _stat(pid):
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[1]), [int(x) for x in fields[11:15]]  # ppid; utime stime cutime cstime

    def seconds(self):
        if self.pid is None:
            return None
        try:
            total = sum(self._stat(self.pid)[1])
        except OSError:
            return None
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    ppid, times = self._stat(int(name))
                    if ppid == self.pid:
                        total += times[0] + times[1]
        return total / CLK_TCK


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(limit_seconds, threshold=QUIET_CORES):
    """Wait (up to ``limit_seconds``) until other work on the machine uses less than ``threshold``
    cores over one second; returns the last reading.  Other jobs on a 2-core machine would
    otherwise decide the figures."""
    deadline = time.monotonic() + limit_seconds
    while True:
        before = cpu_busy_seconds()
        time.sleep(1.0)
        busy = cpu_busy_seconds() - before
        if busy < threshold or time.monotonic() >= deadline:
            return busy


@contextlib.contextmanager
def timed(sample, postgres_cpu=None, quiet_wait=0):
    """Fill ``sample`` with wall seconds, our CPU (children of this process + PostgreSQL server)
    and the machine's CPU, whose difference is other work that ran at the same time."""
    sample["busy_before"] = wait_for_quiet(quiet_wait) if quiet_wait else None
    pg_before = postgres_cpu.seconds() if postgres_cpu else None
    client, cpu, clock = children_cpu_seconds(), cpu_busy_seconds(), time.monotonic()
    yield sample
    sample["seconds"] = time.monotonic() - clock
    sample["machine_cpu"] = cpu_busy_seconds() - cpu
    sample["client_cpu"] = children_cpu_seconds() - client
    if postgres_cpu:
        time.sleep(0.3)  # the postmaster reaps a finished backend asynchronously; then its CPU is in cutime
    pg_after = postgres_cpu.seconds() if postgres_cpu else None
    sample["server_cpu"] = pg_after - pg_before if pg_before is not None and pg_after is not None else None
    ours = sample["client_cpu"] + (sample["server_cpu"] or 0)
    sample["other_cores"] = max(0.0, sample["machine_cpu"] - ours) / sample["seconds"]


def _status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid), encoding="ascii") as handle:
            return [int(x) for x in handle.read().split()]
    except OSError:
        return []


class ModulePeakMemory(threading.Thread):
    """Polls the process tree of ansible-playbook for the module process (the python running
    AnsiballZ_<module>.py; the module runs inside it) and records its VmHWM, the kernel's peak
    resident set size.  VmHWM only grows, so sampling every 50 ms loses at most what the process
    allocates in its last 50 ms.  pg_dump/pg_restore children are recorded separately."""

    def __init__(self, root_pid, module):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.mark = MODULE_PROCESS_MARK + module.encode()
        self.module_pid = None
        self.module_peak_kb = None
        self.tool_peak_kb = {}
        self._halt = threading.Event()

    def _find(self, pid, depth=0):
        for child in _children(pid):
            argv = _cmdline(child).split(b"\0")
            # the python that runs AnsiballZ_<module>.py, not the /bin/sh -c that started it
            if b"python" in os.path.basename(argv[0]) and any(self.mark in arg for arg in argv[1:]):
                return child
            if depth < 6:
                found = self._find(child, depth + 1)
                if found:
                    return found
        return None

    def run(self):
        while not self._halt.is_set():
            if self.module_pid is None:
                self.module_pid = self._find(self.root_pid)
            if self.module_pid is not None:
                peak = _status_kb(self.module_pid, "VmHWM")
                if peak:
                    self.module_peak_kb = max(self.module_peak_kb or 0, peak)
                for child in _children(self.module_pid):
                    name = os.path.basename(_cmdline(child).split(b"\0")[0]).decode(errors="replace")
                    peak = _status_kb(child, "VmHWM")
                    if name and peak:
                        self.tool_peak_kb[name] = max(self.tool_peak_kb.get(name, 0), peak)
            self._halt.wait(0.05)

    def stop(self):
        self._halt.set()
        self.join()


class Bench:
    def __init__(self, args, data_directory):
        self.args = args
        self.pg = pg_settings()
        self.s3_endpoint = require_env("RBOPS_TEST_S3_ENDPOINT")
        self.scratch = Path(tempfile.mkdtemp(prefix="backup-", dir=SCRATCH_DIR))
        self.local_store = self.scratch / "store"
        self.bucket = "rbops-bench-" + secrets.token_hex(4)
        self.samples = {}  # label -> list of sample dicts
        self.postgres_cpu = PostgresCpu(data_directory)
        self.env = dict(os.environ, PGHOST=self.pg["host"], PGPORT=str(self.pg["port"]), PGUSER=self.pg["user"],
                        PGPASSWORD=self.pg["password"])

    # stores -----------------------------------------------------------------------------------
    def store_params(self, kind):
        if kind == "local":
            return {"type": "local", "path": str(self.local_store)}
        return {"type": "s3", "bucket": self.bucket, "endpoint_url": self.s3_endpoint,
                "access_key": "testing", "secret_key": "testing", "validate_certs": False}

    def s3_client(self):
        import boto3  # pylint: disable=import-outside-toplevel
        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def empty_stores(self):
        """Delete every benchmark backup: they are 0.7 GB each."""
        shutil.rmtree(self.local_store, ignore_errors=True)
        client = self.s3_client()
        with contextlib.suppress(Exception):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                for item in page.get("Contents", []):
                    client.delete_object(Bucket=self.bucket, Key=item["Key"])

    def record(self, label, sample):
        self.samples.setdefault(label, []).append(sample)
        extra = ""
        if sample.get("bytes") is not None:
            extra += ", %s" % human_bytes(sample["bytes"])
        if sample.get("rss_bytes"):
            extra += ", peak RSS %s" % human_bytes(sample["rss_bytes"])
        progress("  %-40s %6.2fs%s" % (label, sample["seconds"], extra))

    # baselines --------------------------------------------------------------------------------
    def pg_dump_floor(self, database):
        sample = {}
        with timed(sample, self.postgres_cpu, self.args.quiet_wait):
            subprocess.run(["pg_dump", "-Fc", "-Z0", "--no-sync", "-f", "/dev/null", database],
                           env=self.env, check=True)
        return sample

    def pg_dump_custom(self, database):
        target = self.scratch / "pg_dump.dump"
        sample = {}
        with timed(sample, self.postgres_cpu, self.args.quiet_wait):
            subprocess.run(["pg_dump", "-Fc", "-f", str(target), database], env=self.env, check=True)
        sample["bytes"] = target.stat().st_size
        target.unlink()
        return sample

    # the engine in a fresh python process ------------------------------------------------------
    def engine(self, action, database, store_kind, **options):
        job = {"action": action, "pg": self.pg, "store": self.store_params(store_kind), "service": SERVICE,
               "database": database}
        job.update(options)
        sample = {}
        with timed(sample, self.postgres_cpu, self.args.quiet_wait):
            proc = subprocess.run([sys.executable, WORKER], input=json.dumps(job), capture_output=True, text=True,
                                  check=False)
        if proc.returncode != 0:
            raise RuntimeError("engine worker failed: %s" % proc.stderr[-3000:])
        result = json.loads(proc.stdout)
        sample.update({"process_seconds": sample["seconds"], "seconds": result["seconds"],
                       "rss_bytes": result["max_rss_bytes"], "bytes": result.get("size"),
                       "raw_bytes": result.get("raw_size"), "worker_cpu": result["cpu_seconds"], "result": result})
        return sample

    # the module through ansible-playbook ------------------------------------------------------
    def ansible(self, module, database, store_kind):
        from harness import run_playbook  # pylint: disable=import-outside-toplevel
        params = {"service": SERVICE, "engine": "postgresql", "database": database,
                  "login_host": self.pg["host"], "login_port": self.pg["port"], "login_user": self.pg["user"],
                  "login_password": "{{ bench_pg_password }}", "store": self.store_params(store_kind)}
        play = {"hosts": "localhost", "gather_facts": False,
                "tasks": [{"name": "module under test", "runbook.ops." + module: params}]}
        workdir = Path(tempfile.mkdtemp(prefix="play-", dir=self.scratch))
        sample = {}
        poller = ModulePeakMemory(os.getpid(), module)
        poller.start()
        try:
            with timed(sample, self.postgres_cpu, self.args.quiet_wait):
                run = run_playbook(workdir, [play], extra_vars={"bench_pg_password": self.pg["password"]},
                                   env={"ANSIBLE_COLLECTIONS_PATH": COLLECTIONS})
        finally:
            poller.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        if run.rc != 0:
            raise RuntimeError("ansible-playbook failed (rc %s):\n%s" % (run.rc, run.output[-3000:]))
        result = run.result
        sample["rss_bytes"] = poller.module_peak_kb * 1024 if poller.module_peak_kb else None
        sample["tool_rss_bytes"] = {name: kb * 1024 for name, kb in poller.tool_peak_kb.items()}
        if module == "db_backup":
            sample["bytes"] = result["backup"]["size"]
            sample["raw_bytes"] = result["backup"]["raw_size"]
            sample["engine_seconds"] = result["backup"]["duration_seconds"]
        else:
            sample["engine_seconds"] = result["report"]["restore_seconds"] if "report" in result else None
        return sample

    # raw restore: what backup_verify replaces -------------------------------------------------
    def raw_restore(self, dump_path):
        """zstd -dc | pg_restore into a fresh database, count every table's rows, drop it."""
        name = "rbops_bench_raw_" + secrets.token_hex(4)
        sample = {}
        with timed(sample, self.postgres_cpu, self.args.quiet_wait):
            with contextlib.closing(_dataset._admin(self.pg)) as conn, conn.cursor() as cur:  # pylint: disable=protected-access
                cur.execute('CREATE DATABASE "%s" TEMPLATE template0' % name)
            unpack = subprocess.Popen(["zstd", "-dcq", str(dump_path)], stdout=subprocess.PIPE)
            restore = subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--single-transaction",
                                      "--exit-on-error", "-d", name], stdin=unpack.stdout, env=self.env, check=False)
            unpack.stdout.close()
            if unpack.wait() != 0 or restore.returncode != 0:
                raise RuntimeError("raw zstd | pg_restore failed")
            with contextlib.closing(_dataset._admin(self.pg, name)) as conn, conn.cursor() as cur:  # pylint: disable=protected-access
                cur.execute("SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables")
                for (table,) in cur.fetchall():
                    cur.execute("SELECT count(*) FROM " + table)
                    cur.fetchone()
            _dataset.drop_database(self.pg, name)
        return sample

    # suites -----------------------------------------------------------------------------------
    def backup_rounds(self, database):
        runs = self.args.runs
        progress("warm-up: one unmeasured pg_dump so every run starts with the database in the page cache")
        self.pg_dump_floor(database)
        for round_no in range(1, runs + 1):
            progress("backup round %d/%d on %s" % (round_no, runs, database))
            self.record("pg_dump -Fc -Z0 -f /dev/null (floor)", self.pg_dump_floor(database))
            self.record("pg_dump -Fc (defaults, file)", self.pg_dump_custom(database))
            self.record("db_backup engine, local", self.engine("backup", database, "local"))
            self.empty_stores()
            self.record("db_backup ansible-playbook, local", self.ansible("db_backup", database, "local"))
            self.empty_stores()
            self.record("db_backup engine, s3 (moto)", self.engine("backup", database, "s3"))
            self.empty_stores()

    def verify_rounds(self, database):
        progress("taking the backup that the verify rounds restore")
        backup = self.engine("backup", database, "local")["result"]
        dump_path = backup["location"]
        for round_no in range(1, self.args.runs + 1):
            progress("verify round %d/%d" % (round_no, self.args.runs))
            self.record("zstd -dc | pg_restore + count rows", self.raw_restore(dump_path))
            self.record("backup_verify engine", self.engine("verify", database, "local"))
            self.record("backup_verify ansible-playbook", self.ansible("backup_verify", database, "local"))
        self.empty_stores()

    def memory_rounds(self, database):
        for round_no in range(1, self.args.runs + 1):
            progress("memory round %d/%d on %s" % (round_no, self.args.runs, database))
            self.record("db_backup ansible-playbook, local [%s]" % database,
                        self.ansible("db_backup", database, "local"))
            self.empty_stores()
            self.record("db_backup engine, local [%s]" % database, self.engine("backup", database, "local"))
            self.empty_stores()

    def variant_rounds(self, database, with_floor=False):
        for round_no in range(1, self.args.runs + 1):
            progress("variant round %d/%d" % (round_no, self.args.runs))
            if with_floor:
                self.record("pg_dump -Fc -Z0 -f /dev/null (floor)", self.pg_dump_floor(database))
            self.record("variant: default (zstd level 1)", self.engine("backup", database, "local"))
            self.empty_stores()
            for label, options in VARIANTS:
                options = dict(options)
                store = options.pop("store", "local")
                self.record("variant: " + label, self.engine("backup", database, store, **options))
                self.empty_stores()

    def create_bucket(self):
        self.s3_client().create_bucket(Bucket=self.bucket)

    def drop_bucket(self):
        with contextlib.suppress(Exception):
            self.empty_stores()
            self.s3_client().delete_bucket(Bucket=self.bucket)

    def close(self):
        self.drop_bucket()
        shutil.rmtree(self.scratch, ignore_errors=True)


# --- report ---------------------------------------------------------------------------------

def _med(samples, key):
    values = [s[key] for s in samples if s.get(key) is not None]
    return median(values)


def _max(samples, key):
    values = [s[key] for s in samples if s.get(key) is not None]
    return max(values) if values else None


def _fmt(value):
    return None if value is None else "%.2f" % value


def verdict(ok):
    return "PASS" if ok else "MISS"


def build_report(bench, databases, generation, micro):
    s = bench.samples
    floor = _med(s.get("pg_dump -Fc -Z0 -f /dev/null (floor)", []), "seconds")
    custom = _med(s.get("pg_dump -Fc (defaults, file)", []), "seconds")
    custom_bytes = _med(s.get("pg_dump -Fc (defaults, file)", []), "bytes")
    raw = _med(s.get("zstd -dc | pg_restore + count rows", []), "seconds")
    local_engine = _med(s.get("db_backup engine, local", []), "seconds")

    rows = []
    for label, samples in s.items():
        seconds = _med(samples, "seconds")
        size = _med(samples, "bytes")
        ratios = []
        if label.startswith(("db_backup", "variant", "pg_dump")) and "[" not in label and floor:
            ratios.append("%.2fx floor" % (seconds / floor))
        if label.startswith(("db_backup", "variant")) and "[" not in label and custom:
            ratios.append("%.2fx faster than -Fc" % (custom / seconds))
        if label.startswith("backup_verify") and raw:
            ratios.append("%.2fx raw" % (seconds / raw))
        if label == "db_backup engine, s3 (moto)" and local_engine:
            ratios.append("%.2fx local" % (seconds / local_engine))
        if size and custom_bytes and label.startswith(("db_backup", "variant")) and "[" not in label:
            ratios.append("size %.3fx -Fc" % (size / custom_bytes))
        rss = _max(samples, "rss_bytes")
        client, server, other = (_med(samples, key) for key in ("client_cpu", "server_cpu", "other_cores"))
        rows.append([label, len(samples), "%.2f" % seconds, _fmt(client), _fmt(server), _fmt(other),
                     "%d" % size if size else None, "; ".join(ratios) or None, human_bytes(rss) if rss else None])
    lines = ["# Backup benchmark, %s" % time.strftime("%Y-%m-%d %H:%M"), "",
             "Machine: %s. PostgreSQL %s. Medians of %d runs; page cache warm (the database fits in RAM)."
             % (machine_summary(), databases[0]["server_version"], bench.args.runs), ""]
    for db in databases:
        gen = "generated in %.0fs" % db["generation_seconds"] if db["generation_seconds"] else "reused"
        lines.append("- `%s`: pg_database_size %s (%d bytes), rows %s; %s; raw custom dump %s."
                     % (db["name"], human_bytes(db["size"]), db["size"], db["rows"], gen,
                        human_bytes(db.get("raw_dump_bytes"))))
    lines += ["", "seconds: median wall time (engine rows: the take_backup/verify_backup call in a fresh python "
              "process; ansible rows: the whole ansible-playbook run). client CPU: core-seconds of the processes "
              "the benchmark started (pg_dump; the engine worker and its pg_dump; ansible-playbook and the "
              "module). server CPU: core-seconds of the PostgreSQL server. other load: cores busy with work "
              "that was not ours during the run (other jobs on the machine; 2 cores in all). peak RSS: max over "
              "runs of the module process (VmHWM).", "",
              render_table(["measurement", "runs", "seconds", "client CPU s", "server CPU s", "other load",
                            "output bytes", "ratios", "peak RSS"], rows), ""]

    targets = []
    for label in ("db_backup ansible-playbook, local", "db_backup engine, local"):
        seconds = _med(s.get(label, []), "seconds")
        size = _med(s.get(label, []), "bytes")
        if seconds and floor:
            targets.append(["%s <= %.2fx floor" % (label, TARGET_FLOOR_RATIO), "%.2fx" % (seconds / floor),
                            verdict(seconds / floor <= TARGET_FLOOR_RATIO)])
        if seconds and custom:
            targets.append(["%s >= %.1fx faster than pg_dump -Fc" % (label, TARGET_SPEEDUP),
                            "%.2fx" % (custom / seconds), verdict(custom / seconds >= TARGET_SPEEDUP)])
        if size and custom_bytes:
            targets.append(["%s output <= pg_dump -Fc output" % label, "%d vs %d bytes (%.3fx)"
                            % (size, custom_bytes, size / custom_bytes), verdict(size <= custom_bytes)])
    for label, samples in s.items():
        if label.startswith("db_backup") or label.startswith("variant: s3"):
            rss = _max(samples, "rss_bytes")
            if rss:
                targets.append(["peak RSS of %s <= 150 MB" % label, human_bytes(rss), verdict(rss <= TARGET_RSS)])
    for label in ("backup_verify ansible-playbook", "backup_verify engine"):
        seconds = _med(s.get(label, []), "seconds")
        if seconds and raw:
            targets.append(["%s <= %.1fx raw pg_restore + counts" % (label, TARGET_VERIFY_RATIO),
                            "%.2fx" % (seconds / raw), verdict(seconds / raw <= TARGET_VERIFY_RATIO)])
    lines += ["## Targets", "", render_table(["target", "measured", "result"], targets), ""]

    tools = {}
    for samples in s.values():
        for sample in samples:
            for name, size in (sample.get("tool_rss_bytes") or {}).items():
                tools[name] = max(tools.get(name, 0), size)
    if tools:
        lines += ["Peak RSS of the tools the module ran (separate processes, not counted above): "
                  + ", ".join("%s %s" % (name, human_bytes(size)) for name, size in sorted(tools.items())), ""]
    ansible = _med(s.get("db_backup ansible-playbook, local", []), "seconds")
    inside = _med(s.get("db_backup ansible-playbook, local", []), "engine_seconds")
    if ansible and inside:
        lines += ["Ansible's fixed cost: the ansible-playbook run took %.2fs, of which the module's own "
                  "duration_seconds was %.2fs." % (ansible, inside), ""]
    if micro:
        lines += ["## Single-core throughput on a %s sample of the raw dump" % human_bytes(micro["sample_bytes"]), "",
                  render_table(["stage", "MB/s (1 core)", "output ratio"],
                               [[k, "%.0f" % v[0], "%.3f" % v[1] if v[1] else None] for k, v in micro["rates"].items()]),
                  ""]
    return "\n".join(lines)


def micro_throughput(bench, database, sample_bytes=256 << 20):
    """Single-core speed of each stage of the pipeline on real dump bytes (explains the CPU budget)."""
    import hashlib  # pylint: disable=import-outside-toplevel
    import zlib  # pylint: disable=import-outside-toplevel

    import zstandard  # pylint: disable=import-outside-toplevel
    proc = subprocess.Popen(["pg_dump", "-Fc", "-Z0", database], stdout=subprocess.PIPE, env=bench.env)
    data = proc.stdout.read(sample_bytes)
    proc.kill()
    proc.wait()
    rates = {}

    def rate(name, func):
        clock = time.process_time()
        out = func()
        rates[name] = (len(data) / (time.process_time() - clock) / 1e6, (out / len(data)) if out else None)
    rate("sha256", lambda: hashlib.sha256(data).digest() and 0)
    for level in (1, 2, 3):
        rate("zstd level %d" % level,
             lambda level=level: len(zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)))
    rate("gzip level 6 (pg_dump -Fc default)", lambda: len(zlib.compress(data, 6)))
    return {"sample_bytes": len(data), "rates": rates}


def clean(settings):
    for name in _dataset.bench_databases(settings):
        progress("dropping %s" % name)
        _dataset.drop_database(settings, name)
    shutil.rmtree(SCRATCH_DIR, ignore_errors=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/run.py backup", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1,2",
                        help="database sizes in GiB, comma-separated; the first gets the full benchmark, the others "
                             "the memory rounds (default 1,2)")
    parser.add_argument("--dataset", choices=("app", "entropy", "both"), default="both",
                        help="app: pgbench tables plus md5 text and jsonb (about 1.3 GB, compresses like real data); "
                             "entropy: the --sizes databases of mostly random data; both (default)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; medians are reported (default 3)")
    parser.add_argument("--variants", action="store_true",
                        help="also run engine variants (zstd level 1, threads, read sizes, ...) to explain the figures")
    parser.add_argument("--variants-only", action="store_true",
                        help="only the floor and the engine variants (on the first size)")
    parser.add_argument("--skip-verify", action="store_true", help="leave out the backup_verify rounds")
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="before each run, wait up to this many seconds for other work on the machine to "
                             "drop below %.1f busy cores (default 60; 0 = do not wait)" % QUIET_CORES)
    parser.add_argument("--clean", action="store_true", help="drop the rbops_bench_* databases and exit")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        parser.error("--sizes takes whole GiB numbers, for example 1,2")
    if not args.sizes or min(args.sizes) < 1 or args.runs < 1:
        parser.error("--sizes needs at least one size >= 1 and --runs must be >= 1")
    return args


def main(argv=()):
    args = parse_args(list(argv))
    settings = pg_settings()
    if args.clean:
        clean(settings)
        return 0
    for tool in ("pg_dump", "pg_restore", "zstd"):
        if not shutil.which(tool):
            raise BenchSetupError("%s is not on PATH (Debian: postgresql-client, zstd)" % tool)
    os.makedirs(SCRATCH_DIR, exist_ok=True)
    free = shutil.disk_usage(SCRATCH_DIR).free
    need = (max(args.sizes) + 2) * _dataset.GIB * 2
    progress("free disk on %s: %s (need about %s for databases and backups)"
             % (SCRATCH_DIR, human_bytes(free), human_bytes(need)))
    if free < need:
        raise BenchSetupError("not enough free disk space for the benchmark")
    for dataset in (("app", "entropy") if args.dataset == "both" else (args.dataset,)):
        run_dataset(args, settings, dataset)
    return 0


def run_dataset(args, settings, dataset):
    """The whole backup suite on one dataset: ``entropy`` (the --sizes databases of mostly
    high-entropy data) or ``app`` (pgbench tables plus md5 text and jsonb, like real data)."""
    progress("dataset %s" % dataset)
    databases = []
    data_directory = None
    generated = [_dataset.ensure_app_database(settings)] if dataset == "app" else \
        [_dataset.ensure_database(settings, size) for size in args.sizes]
    for name, db_size, seconds in generated:
        with contextlib.closing(_dataset._admin(settings, name)) as conn, conn.cursor() as cur:  # pylint: disable=protected-access
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
            with contextlib.suppress(Exception):
                cur.execute("SHOW data_directory")
                data_directory = cur.fetchone()[0]
        databases.append({"name": name, "size": db_size, "generation_seconds": seconds, "server_version": version,
                          "rows": _dataset.table_rows(settings, name)})
    bench = Bench(args, data_directory or "")
    micro = None
    # SIGTERM (and Ctrl-C) stop the rounds but still report what was measured and clean up.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        bench.create_bucket()
        main_db = databases[0]["name"]
        micro = micro_throughput(bench, main_db)
        progress("single-core rates (MB/s): " + ", ".join("%s %.0f" % (k, v[0]) for k, v in micro["rates"].items()))
        if args.variants_only:
            bench.variant_rounds(main_db, with_floor=True)
        else:
            bench.backup_rounds(main_db)
            if not args.skip_verify:
                bench.verify_rounds(main_db)
            for db in databases[1:]:
                bench.memory_rounds(db["name"])
            if args.variants:
                bench.variant_rounds(main_db)
    except KeyboardInterrupt:
        progress("interrupted: reporting what was measured so far")
    finally:
        bench.close()
    for index, db in enumerate(databases):
        raw_sizes = [smp.get("raw_bytes") for label, samples in bench.samples.items()
                     if label.startswith("db_backup") and (db["name"] in label if index else "[" not in label)
                     for smp in samples]
        db["raw_dump_bytes"] = median([x for x in raw_sizes if x])
    report = build_report(bench, databases, None, micro)
    print()
    print(report)
    path = write_results("backup-%s" % dataset, report)
    progress("results written to %s" % os.path.relpath(path, REPO))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(sys.argv[1:]))
