# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PITR benchmark: point-in-time recovery of a ~1 GiB cluster through playbooks/pitr_restore.yml.

    python bench/pitr_bench.py [--size-gib 1] [--wal-mib 128] [--process-max 2] [--keep]

Needs root, postgresql-common (pg_createcluster) and pgbackrest.  It makes a throw-away cluster
(``pg_createcluster 15 rbops_pitr_bench_<hex>`` on a free loopback port), fills it with
high-entropy rows, sets it up and takes a full backup with playbooks/pitr_backup.yml, writes
``--wal-mib`` of WAL in rows stamped with their commit time, notes a target time in the middle of
those writes, then restores to that target with playbooks/pitr_restore.yml into a new cluster and
verifies the row count.  It prints the restore time (RTO, split into ``pgbackrest restore`` and
start + WAL replay + promotion) and the recovered-to time against the target; the report also
goes to bench/results/pitr-<date>.md.  Everything is dropped afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)

from _common import BenchSetupError, human_bytes, machine_summary, progress, write_results  # noqa: E402

PG_VERSION = "15"
ROOT = "/var/lib/postgresql/rbops-pitr-bench"
# Rows of about 190 bytes of hex digests: compression cannot make the figures look good.
ROW_SQL = ("INSERT INTO big (id, a, b, c) SELECT g, md5(random()::text) || md5(random()::text), "
           "md5(random()::text) || md5(random()::text), md5(random()::text) FROM generate_series(%d, %d) g")
ROWS_PER_BATCH = 500000


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def psql(port, sql):
    proc = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-At", "-p", str(port),
                           "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, check=False, cwd="/")
    if proc.returncode != 0:
        raise BenchSetupError("psql failed: %s" % proc.stderr.strip())
    return proc.stdout.strip()


def playbook(name, extra_vars, workdir):
    vars_file = os.path.join(workdir, "vars-%s.json" % secrets.token_hex(4))
    with open(vars_file, "w", encoding="utf-8") as handle:
        json.dump(extra_vars, handle)
    inventory = os.path.join(workdir, "inventory.yml")
    with open(inventory, "w", encoding="utf-8") as handle:
        handle.write("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                     "      ansible_python_interpreter: %s\n" % sys.executable)
    results = os.path.join(workdir, "results-%s.jsonl" % secrets.token_hex(4))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
               ANSIBLE_CONFIG=os.path.join(REPO, "tests", "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               # the test harness's callback writes every task result to a JSON-lines file
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "tests", "integration", "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="result_file", RBOPS_RESULT_FILE=results)
    clock = time.monotonic()
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                           os.path.join(REPO, "playbooks", name), "-i", inventory, "-e", "@" + vars_file],
                          capture_output=True, text=True, env=env, check=False)
    wall = time.monotonic() - clock
    if proc.returncode != 0:
        raise BenchSetupError("%s failed:\n%s" % (name, (proc.stdout + proc.stderr)[-3000:]))
    with open(results, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()], wall


def stats(records, key):
    """The localhost value of a set_stats key."""
    for record in reversed(records):
        data = record["result"].get("ansible_stats", {}).get("data", {})
        if record["status"] == "ok" and key in data:
            return data[key]["localhost"]
    raise BenchSetupError("no set_stats %s in the run" % key)


def main(argv):
    parser = argparse.ArgumentParser(prog="bench/pitr_bench.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--size-gib", type=float, default=1.0, help="size of the cluster's data (default 1)")
    parser.add_argument("--wal-mib", type=int, default=128, help="WAL written after the backup (default 128)")
    parser.add_argument("--process-max", type=int, default=2, help="pgBackRest processes (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the clusters and the repository")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not shutil.which("pg_createcluster") or not shutil.which("pgbackrest"):
        raise BenchSetupError("needs root, pg_createcluster (postgresql-common) and pgbackrest")

    name = "rbops_pitr_bench_" + secrets.token_hex(3)
    port, copy_port = free_port(), free_port()
    base = os.path.join(ROOT, name)
    conf_dir = "/etc/postgresql/%s/%s" % (PG_VERSION, name)
    workdir = tempfile.mkdtemp(prefix="rbops-pitr-bench-")
    lines = []
    try:
        progress("creating cluster %s on port %d" % (name, port))
        subprocess.run(["pg_createcluster", PG_VERSION, name, "-p", str(port)], check=True, capture_output=True)
        with open(os.path.join(conf_dir, "conf.d", "bench.conf"), "w", encoding="utf-8") as handle:
            handle.write("listen_addresses = '127.0.0.1'\nmax_wal_size = 4GB\n")
        subprocess.run(["pg_ctlcluster", PG_VERSION, name, "start"], check=True, capture_output=True)
        password = secrets.token_hex(16)
        psql(port, "CREATE ROLE rbops_bench LOGIN SUPERUSER PASSWORD '%s'" % password)
        os.makedirs(base, mode=0o700)
        shutil.chown(ROOT, "postgres", "postgres")
        shutil.chown(base, "postgres", "postgres")

        target_bytes = int(args.size_gib * (1 << 30))
        psql(port, "CREATE TABLE big (id bigint, a text, b text, c text)")
        progress("filling to %s (before archiving is on, as an existing database would be)" % human_bytes(target_bytes))
        clock, next_id = time.monotonic(), 1
        while int(psql(port, "SELECT pg_database_size('postgres')")) < target_bytes:
            psql(port, ROW_SQL % (next_id, next_id + ROWS_PER_BATCH - 1))
            next_id += ROWS_PER_BATCH
        psql(port, "ALTER TABLE big ADD PRIMARY KEY (id)")
        psql(port, "VACUUM (FREEZE, ANALYZE) big")
        size = int(psql(port, "SELECT pg_database_size('postgres')"))
        progress("%s in %d rows, %.0f s" % (human_bytes(size), next_id - 1, time.monotonic() - clock))

        config = os.path.join(base, "pgbackrest.conf")
        common = {"target_hosts": "localhost", "pitr_stanza": name, "pitr_config": config}
        repo = {"path": os.path.join(base, "repo"), "cipher_type": "aes-256-cbc",
                "cipher_pass": secrets.token_urlsafe(24), "retention_full": 1}
        progress("pitr_backup.yml: setup, restart for archive_mode, check, full backup")
        out, backup_wall = playbook("pitr_backup.yml", dict(
            common, pitr_pg_data="/var/lib/postgresql/%s/%s" % (PG_VERSION, name), pitr_pg_port=port,
            pitr_repo=repo, pitr_lock_path=os.path.join(base, "lock"), pitr_process_max=args.process_max,
            pitr_archive_settings_file=os.path.join(conf_dir, "conf.d", "pgbackrest.conf"),
            pitr_restart_command=["pg_ctlcluster", PG_VERSION, name, "restart"]), workdir)
        backup = stats(out, "runbook_pitr")
        progress("backup %s: %.1f s (%s in the repository), playbook %.1f s"
                 % (backup["backup"]["label"], backup["backup_seconds"], human_bytes(backup["backup"]["repo_size"]),
                    backup_wall))

        progress("writing %d MiB of WAL after the backup, target in the middle" % args.wal_mib)
        psql(port, "CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), "
                   "payload text)")
        start_lsn = psql(port, "SELECT pg_current_wal_lsn()")
        half = args.wal_mib * (1 << 20) // 2
        target, rows_at_target = None, None
        while True:
            psql(port, "INSERT INTO events (payload) SELECT md5(random()::text) || md5(random()::text) "
                       "FROM generate_series(1, 20000)")
            written = int(psql(port, "SELECT pg_current_wal_lsn() - '%s'::pg_lsn" % start_lsn))
            if target is None and written >= half:
                time.sleep(0.5)
                target = psql(port, "SELECT clock_timestamp()")
                rows_at_target = int(psql(port, "SELECT count(*) FROM events"))
                time.sleep(0.5)
            elif target is not None and written >= 2 * half:
                break
        psql(port, "SELECT pg_switch_wal()")
        time.sleep(2)
        progress("target %s with %d event rows before it" % (target, rows_at_target))

        copy = os.path.join(base, "copy")
        progress("pitr_restore.yml: restore to the target into a new cluster on port %d" % copy_port)
        out, restore_wall = playbook("pitr_restore.yml", dict(
            common, pitr_restore_data_dir=copy, pitr_restore_port=copy_port, pitr_restore_target_type="time",
            pitr_restore_target=target, pitr_restore_database="postgres",
            pitr_restore_expected_row_counts={"public.events": rows_at_target, "public.big": next_id - 1},
            pitr_restore_login_user="rbops_bench", pitr_restore_login_password=password,
            pitr_restore_stop_after=not args.keep), workdir)
        report = stats(out, "runbook_pitr_restore")
        replay = report["rto_seconds"] - report["restore_seconds"]
        lines = [
            "# PITR benchmark (%s)" % time.strftime("%Y-%m-%d %H:%M"),
            "",
            machine_summary(),
            "",
            "| measurement | value |",
            "|---|---|",
            "| cluster size | %s (%d rows of hex digests), archiving turned on after loading |" % (
                human_bytes(size), next_id - 1),
            "| full backup (pgBackRest, gz, process-max %d, aes-256-cbc) | %.1f s, %s in the repository |" % (
                args.process_max, backup["backup_seconds"], human_bytes(backup["backup"]["repo_size"])),
            "| WAL written after the backup | %d MiB, target after the first half |" % args.wal_mib,
            "| **RTO: restore + start + replay + promotion** | **%.1f s** |" % report["rto_seconds"],
            "| of which pgbackrest restore | %.1f s |" % report["restore_seconds"],
            "| of which start, WAL replay to the target, promotion | %.1f s |" % replay,
            "| pitr_restore.yml wall time (with verification and Ansible) | %.1f s |" % restore_wall,
            "| target | %s |" % report["target"]["target"],
            "| recovered to (last transaction replayed) | %s |" % report["recovered_to"],
            "| recovered-to before the target by | %.3f s |" % report["target_gap_seconds"],
            "| rows verified (events before the target, big) | %s |" % (
                ", ".join("%s=%s" % (t["table"], t["actual"]) for t in report["verification"]["tables"])),
            "| verification | %s |" % ("passed" if report["passed"] else "FAILED"),
        ]
        text = "\n".join(lines) + "\n"
        print(text, flush=True)
        write_results("pitr", text)
        return 0 if report["passed"] else 1
    finally:
        if not args.keep:
            for pid_dir in (os.path.join(base, "copy"),):
                if os.path.exists(os.path.join(pid_dir, "postmaster.pid")):
                    subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/%s/bin/pg_ctl" % PG_VERSION,
                                    "-D", pid_dir, "-m", "immediate", "stop"], capture_output=True, check=False)
            subprocess.run(["pg_dropcluster", "--stop", PG_VERSION, name], capture_output=True, check=False)
            shutil.rmtree(base, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(ROOT)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchSetupError as exc:
        print("pitr benchmark cannot run: %s" % exc, file=sys.stderr)
        sys.exit(2)
