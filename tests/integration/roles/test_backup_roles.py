# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/backup.yml, list_backups.yml, verify_backups.yml and restore.yml with the backup,
backup_verify and restore roles, against the real sample service stopped and started by ctl.sh."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat

import pytest

from conftest import custom_stats


def assert_ok(run):
    assert run.rc == 0, run.output[-4000:]


def assert_failed(run, *fragments):
    assert run.rc != 0, run.output[-4000:]
    for fragment in fragments:
        assert fragment in run.output, "%r not in output:\n%s" % (fragment, run.output[-4000:])


def flip_byte(path):
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_sqlite_backup_list_verify_break_restore(managed_service, playbook):
    service = managed_service()
    service.add_items(12)
    host_vars = service.vars()

    backup = playbook("backup.yml", host_vars, extra_vars={"backup_verify_after": True, "backup_max_age": "1h"})
    assert_ok(backup)
    stats = custom_stats(backup, "runbook_backup")
    (manifest,) = service.manifests()
    assert stats["id"] == manifest["id"] and stats["size"] == manifest["size"] and stats["sha256"] == manifest["sha256"]
    assert stats["row_counts"]["items"] == 12
    assert custom_stats(backup, "runbook_backup_verify")["passed"] is True  # backup_verify_after ran the role
    assert "backup id: %s" % manifest["id"] in backup.output

    listing = playbook("list_backups.yml", host_vars, extra_vars={"backup_max_age": "1h"})
    assert_ok(listing)
    listed = custom_stats(listing, "runbook_backups")
    assert listed["complete"] == 1 and listed["latest"] == manifest["id"] and listed["rpo_ok"] is True

    verify = playbook("verify_backups.yml", host_vars, extra_vars={"backup_verify_assertions": [
        {"name": "twelve items", "query": "SELECT count(*) FROM items", "expected": 12}]})
    assert_ok(verify)
    report_path = os.path.join(service.report_dir, "localhost-app-%s.json" % manifest["id"])
    assert stat.S_IMODE(os.stat(report_path).st_mode) == 0o600
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["passed"] and report["checksum"] == "ok" and report["scratch_dropped"]
    assert {t["table"]: t["actual"] for t in report["tables"]}["items"] == 12
    assert report["assertions"][0]["ok"]

    service.delete_items_sqlite()
    assert service.item_count() == 0
    pid_before = service.pid

    # Without restore_force the pre-check refuses; nothing is stopped.
    refused = playbook("restore.yml", host_vars)
    assert_failed(refused, "refused, nothing was stopped or changed", "set restore_force: true")
    assert service.pid == pid_before and service.running and service.item_count() == 0

    # Check mode shows the plan and changes nothing.
    check = playbook("restore.yml", host_vars, extra_vars={"restore_force": True}, check=True)
    assert_ok(check)
    assert "would restore backup %s" % manifest["id"] in check.output
    assert custom_stats(check, "runbook_restore")["check_mode"] is True
    assert service.pid == pid_before and service.item_count() == 0
    assert service.manifests("app-pre-restore") == []
    assert not [n for n in os.listdir(service.svc.data_dir) if ".pre-restore-" in n]

    restore = playbook("restore.yml", host_vars, extra_vars={"restore_force": True, "restore_verify_min": 12})
    assert_ok(restore)
    assert service.running and service.pid != pid_before, "the service was not stopped and started again"
    assert service.healthy() and service.item_count() == 12
    assert service.svc.api("GET", "/api/items/1").json["secret"] == "s-0"
    restored = custom_stats(restore, "runbook_restore")
    assert restored["backup_id"] == manifest["id"] and restored["row_counts"]["items"] == 12
    # The safety backup holds the broken state, under its own service name (never "latest" of app).
    (safety,) = service.manifests("app-pre-restore")
    assert restored["safety_backup"] == safety["id"] and safety["row_counts"]["items"] == 0
    assert [m["id"] for m in service.manifests()] == [manifest["id"]]
    assert "rows (match the manifest): audit_log=" in restore.output


def test_restore_of_a_corrupted_backup_restarts_the_service_with_its_data(managed_service, playbook):
    service = managed_service()
    service.add_items(5, prefix="old")
    host_vars = service.vars()
    assert_ok(playbook("backup.yml", host_vars))
    (manifest,) = service.manifests()
    flip_byte(os.path.join(service.store_dir, manifest["object"]))
    service.add_items(3, prefix="new")  # the live data now differs from the backup
    names_before, pid_before = service.item_names(), service.pid

    # The pre-check reads the whole backup: refused before the service is stopped, no downtime.
    run = playbook("restore.yml", host_vars, extra_vars={"restore_force": True})
    assert run.rc != 0 and "sha256" in run.output, run.output[-4000:]
    assert service.pid == pid_before, "the service was stopped for a backup the pre-check could refuse"
    assert service.item_names() == names_before
    assert service.manifests("app-pre-restore") == []

    # Without that read, the restore step itself refuses it, after the writers stopped: they start again.
    run = playbook("restore.yml", host_vars, extra_vars={"restore_force": True, "restore_precheck_checksum": False})
    assert_failed(run, "failed at 'Restore backup %s'" % manifest["id"], "The writers were started again",
                  "the service is healthy", "holds its previous data")
    assert "sha256" in run.output
    assert service.running and service.pid != pid_before, "the writers were not started again"
    assert service.healthy()
    assert service.item_names() == names_before and len(names_before) == 8
    # A failed restore's record: the start task ran, and the safety backup exists for the operator.
    assert run.task("Start the writers again")["status"] == "ok"
    assert len(service.manifests("app-pre-restore")) == 1


def test_verify_failure_is_reported_and_fails_unless_told_not_to(managed_service, playbook):
    service = managed_service()
    service.add_items(2)
    host_vars = service.vars()
    assert_ok(playbook("backup.yml", host_vars))
    (manifest,) = service.manifests()
    flip_byte(os.path.join(service.store_dir, manifest["object"]))

    failed = playbook("verify_backups.yml", host_vars)
    assert_failed(failed, "backup verification failed for app", manifest["id"])
    with open(os.path.join(service.report_dir, "localhost-app-%s.json" % manifest["id"]), encoding="utf-8") as handle:
        report = json.load(handle)
    assert report["passed"] is False and report["checksum"] == "failed"

    report_only = playbook("verify_backups.yml", host_vars, extra_vars={"backup_verify_fail": False})
    assert_ok(report_only)
    assert custom_stats(report_only, "runbook_backup_verify")["passed"] is False


def test_list_backups_fails_when_the_rpo_is_missed(managed_service, playbook):
    service = managed_service()
    host_vars = service.vars()
    none_yet = playbook("list_backups.yml", host_vars, extra_vars={"backup_max_age": "1h"})
    assert_failed(none_yet, "RPO missed", "no complete")
    assert_ok(playbook("backup.yml", host_vars))
    assert_ok(playbook("list_backups.yml", host_vars, extra_vars={"backup_max_age": "1h"}))


def test_postgresql_with_command_writer(managed_service, playbook, pg_conn_params, pg_database, pg_connect):
    from sample_service_fixture import pg_database_url

    service = managed_service(database_url=pg_database_url(pg_conn_params, pg_database))
    service.add_items(7)
    host_vars = service.vars(engine="postgresql", pg=pg_conn_params, database=pg_database)
    password = pg_conn_params["login_password"]

    backup = playbook("backup.yml", host_vars, extra_vars={"backup_verify_after": True}, verbosity=3)
    assert_ok(backup)
    assert password not in backup.output
    assert custom_stats(backup, "runbook_backup")["row_counts"]["public.items"] == 7

    conn = pg_connect(pg_database)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM items")
    assert service.item_count() == 0
    pid_before = service.pid

    check = playbook("restore.yml", host_vars, extra_vars={"restore_force": True}, check=True)
    assert_ok(check)
    assert service.pid == pid_before and service.item_count() == 0

    restore = playbook("restore.yml", host_vars, extra_vars={"restore_force": True, "restore_verify_min": 7},
                       verbosity=3)
    assert_ok(restore)
    assert password not in restore.output
    assert service.running and service.pid != pid_before and service.healthy()
    assert service.item_count() == 7
    restored = custom_stats(restore, "runbook_restore")
    assert restored["row_counts"]["public.items"] == 7 and restored["safety_backup"]
    (safety,) = service.manifests("app-pre-restore")
    assert safety["row_counts"]["public.items"] == 0
    # The default replace mode swapped databases and kept the previous one (with no items) until dropped.
    previous = restored["previous_database"]
    assert restored["mode"] == "swap" and previous.startswith(pg_database + "_pre_restore_")
    assert "previous database kept as %s" % previous in restore.output
    try:
        with pg_connect(previous).cursor() as cur:
            cur.execute("SELECT count(*) FROM items")
            assert cur.fetchone()[0] == 0
    finally:
        with pg_connect("postgres").cursor() as cur:
            cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % previous)


def test_backup_role_checks_the_backup_it_wrote_not_the_latest(playbook, tmp_path):
    """Another backup of the same database finishing in between (here: one stamped in the future, as a
    concurrent run or a skewed clock leaves) must not make the role fail."""
    db_path = tmp_path / "app.db"
    conn = sqlite3.connect(str(db_path))
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO items VALUES (1), (2)")
    conn.commit()
    conn.close()
    store = tmp_path / "store"
    host_vars = {"backup_service": "notes", "backup_engine": "sqlite", "backup_path": str(db_path),
                 "backup_store": {"type": "local", "path": str(store)}}
    assert_ok(playbook("backup.yml", host_vars))
    (first,) = [name for name in os.listdir(store / "notes") if name.endswith(".manifest.json")]
    manifest = json.loads((store / "notes" / first).read_text())
    later_id = re.sub(r"\d{8}T\d{6}Z", "29991231T235959Z", manifest["id"])
    later_object = manifest["object"].replace(manifest["id"], later_id)
    (store / later_object).write_bytes((store / manifest["object"]).read_bytes())
    (store / (later_object + ".manifest.json")).write_text(json.dumps(dict(manifest, id=later_id, object=later_object)))

    run = playbook("backup.yml", host_vars)
    assert_ok(run)
    assert custom_stats(run, "runbook_backup")["id"] != later_id


@pytest.mark.parametrize("playbook_name, host_vars, message", [
    ("backup.yml", {}, "missing required arguments: backup_engine, backup_service, backup_store"),
    ("backup.yml", {"backup_service": "app", "backup_engine": "sqlite", "backup_store": {"type": "local", "path": "/tmp"}},
     "an absolute backup_path to the SQLite file for engine sqlite"),
    ("backup.yml", {"backup_service": "app", "backup_engine": "postgresql", "backup_database": "app",
                    "backup_store": {"type": "s3"}}, "backup_store needs type 'local' with an absolute path, or type 's3' with a bucket"),
    ("restore.yml", {"restore_service": "app", "restore_engine": "sqlite", "restore_path": "/tmp/app.db",
                     "restore_store": {"type": "s3"}},
     "restore: restore_store needs type 'local' with an absolute path, or type 's3' with a bucket"),
    ("verify_backups.yml", {"backup_verify_service": "app", "backup_verify_engine": "sqlite",
                            "backup_verify_database": "app", "backup_verify_store": {"type": "local", "path": "tmp"}},
     "backup_verify: backup_verify_store needs type 'local' with an absolute path"),
    ("restore.yml", {"restore_service": "app", "restore_engine": "postgresql", "restore_database": "app",
                     "restore_store": {"type": "local", "path": "/tmp"}, "restore_replace": "drop"},
     "value of restore_replace must be one of: swap, clean, got: drop"),
    ("verify_backups.yml", {"backup_verify_service": "app", "backup_verify_engine": "postgresql",
                            "backup_verify_store": {"type": "local", "path": "/tmp"}}, "backup_verify: set backup_verify_database"),
    ("restore.yml", {"restore_service": "app", "restore_engine": "sqlite", "restore_path": "/tmp/app.db",
                     "restore_store": {"type": "local", "path": "/tmp"}, "restore_writer": "command"},
     "restore_writer 'command' needs restore_stop_command and restore_start_command"),
    ("restore.yml", {"restore_service": "app", "restore_engine": "sqlite", "restore_path": "/tmp/app.db",
                     "restore_store": {"type": "local", "path": "/tmp"}, "restore_writer": "systemd"},
     "value of restore_writer must be one of: none, command, compose, got: systemd"),
    ("backup.yml", {"backup_service": "app\n", "backup_engine": "sqlite", "backup_path": "/tmp/app.db",
                    "backup_store": {"type": "local", "path": "/tmp"}},
     "backup: backup_service must be letters, digits, '.', '_', '-' (got \"app\\n\")"),
    ("verify_backups.yml", {"backup_verify_service": "app", "backup_verify_engine": "sqlite", "backup_verify_database": "app",
                            "backup_verify_backup_id": "x\n", "backup_verify_store": {"type": "local", "path": "/tmp"}},
     "backup_verify: backup_verify_backup_id is empty (latest) or a backup id"),
    ("restore.yml", {"restore_service": "app\n", "restore_engine": "sqlite", "restore_path": "/tmp/app.db",
                     "restore_store": {"type": "local", "path": "/tmp"}},
     "restore: restore_service must be letters, digits, '.', '_', '-'"),
    ("backup.yml", {"backup_service": "app", "backup_engine": "postgresql", "backup_database": "app",
                    "backup_store": {"type": "local", "path": "/tmp"}, "backup_jobs": 0},
     "backup: backup_jobs must be at least 1 (got backup_jobs 0"),
    ("backup.yml", {"backup_service": "app", "backup_engine": "postgresql", "backup_database": "app",
                    "backup_store": {"type": "local", "path": "/tmp"}, "backup_jobs": 2},
     "backup: backup_jobs above 1 needs backup_format 'directory' (got backup_jobs 2"),
])
def test_preflight_rejects_bad_variables(playbook, playbook_name, host_vars, message):
    run = playbook(playbook_name, host_vars)
    assert_failed(run, message)
    assert "Traceback" not in run.output
