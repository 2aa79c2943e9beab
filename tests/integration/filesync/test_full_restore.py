# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/backup_files.yml and playbooks/full_restore.yml against the real sample service (SQLite, a local
process stopped and started by its ctl.sh): back up the database and the uploads, break all three (rows,
files, configuration), then restore the whole service and check the data, the modes and the report."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from sample_service_fixture import CTL_PATH
from filesync_testlib import tree, write


def full_restore_vars(service, tmp_path, files_store, **extra):
    values = service.vars()
    values.update({
        "full_restore_service": "app",
        "full_restore_writer": "process",
        "full_restore_stop_command": [CTL_PATH, "stop", service.svc.env_file],
        "full_restore_start_command": [CTL_PATH, "start", service.svc.env_file],
        "full_restore_writer_environment": {"PYTHON": sys.executable},
        "full_restore_files_path": str(tmp_path / "uploads"),
        "full_restore_files_store": files_store,
        "full_restore_files_delete": True,
        "full_restore_config_src": str(tmp_path / "config-known-good"),
        "full_restore_config_dest": str(tmp_path / "config"),
        "full_restore_health_url": service.svc.url + "/readyz",
        "full_restore_health_timeout": 30,
        "full_restore_verify_url": service.svc.url + "/api/items",
        "full_restore_verify_api_token": service.svc.token,
        "full_restore_verify_json_path": "count",
        "full_restore_verify_min": 10,
        "full_restore_report_dir": str(tmp_path / "reports"),
        "backup_files_path": str(tmp_path / "uploads"),
        "backup_files_store": files_store,
    })
    values.update(extra)
    return values


def findings(stats):
    return {item["check"]: item for item in stats["findings"]}


def test_full_restore_of_the_sample_service(managed_service, playbook, tmp_path, sync_store, custom_stats):
    service = managed_service()
    service.add_items(10)
    uploads = tmp_path / "uploads"
    write(uploads, "avatars/1.png", b"png" * 100, 0o640)
    write(uploads, "docs/contract.pdf", os.urandom(20000), 0o600)
    write(uploads, "public/index.html", b"<html/>", 0o644)
    write(tmp_path / "config-known-good", "app.conf", b"workers = 4\n", 0o640)
    write(tmp_path / "config", "app.conf", b"workers = 4\n", 0o640)
    host_vars = full_restore_vars(service, tmp_path, sync_store)
    for name in ("backup.yml", "backup_files.yml"):
        run = playbook(name, host_vars)
        assert run.rc == 0, run.output[-3000:]
    assert custom_stats(run, "runbook_backup_files")["counts"]["copied"] == 3
    good = tree(uploads)

    # The disaster: rows deleted, files lost, changed and added, the configuration edited badly.
    service.delete_items_sqlite()
    os.unlink(uploads / "docs" / "contract.pdf")
    write(uploads, "avatars/1.png", b"PNG" * 100, 0o666)
    write(uploads, "stray.tmp", b"written after the backup")
    write(tmp_path / "config", "app.conf", b"workers = oops\n", 0o640)
    pid = service.pid

    # Check mode: the pre-checks and the plan, nothing stopped or changed.
    check = playbook("full_restore.yml", dict(host_vars, restore_force=True), check=True)
    assert check.rc == 0, check.output[-4000:]
    assert "check mode: nothing is stopped or changed" in check.output
    assert "check mode: would download" in check.output and "1 deleted" in check.output
    assert service.pid == pid and service.item_count() == 0 and (uploads / "stray.tmp").exists()
    assert not (tmp_path / "reports").exists()

    # Without restore_force the database pre-check refuses before anything is stopped.
    refused = playbook("full_restore.yml", host_vars)
    assert refused.rc != 0 and "refused at 'Check the database backup and the target'" in refused.output
    assert "nothing was stopped or changed" in refused.output and "restore_force" in refused.output
    assert service.pid == pid and service.running

    run = playbook("full_restore.yml", dict(host_vars, restore_force=True))
    assert run.rc == 0, run.output[-5000:]
    assert service.running and service.pid != pid, "the writers were not stopped and started again"
    assert service.healthy() and service.item_count() == 10
    assert tree(uploads) == good  # content and modes back, the stray file gone
    assert (tmp_path / "config" / "app.conf").read_bytes() == b"workers = 4\n"
    backups = [name for name in os.listdir(tmp_path / "config") if name.startswith("app.conf.")]
    assert len(backups) == 1 and (tmp_path / "config" / backups[0]).read_bytes() == b"workers = oops\n"
    stats = custom_stats(run, "runbook_full_restore")
    assert stats["state"] == "ok" and stats["failed_step"] == ""
    assert stats["files"]["copied"] == 2 and stats["files"]["deleted"] == 1
    found = findings(stats)
    for step in ("pre-check (nothing stopped)", "stop writers", "restore database", "restore uploaded files",
                 "restore configuration", "start writers", "health gate", "verify data", "RTO", "RPO database",
                 "RPO files"):
        assert found[step]["state"] == "ok", found[step]
    assert found["restore database"]["value"] > 0 and "items=10" in found["restore database"]["detail"]
    assert "3 match the store, 0 differ" in found["verify data"]["detail"]
    assert 0 <= found["RPO files"]["value"] < 300 and 0 <= found["RPO database"]["value"] < 300
    assert 0 < found["RTO"]["value"] < 300 and found["RTO"]["value"] > found["restore database"]["value"]
    markdown, report_json = stats["report_files"]["markdown"], stats["report_files"]["json"]
    for path in (markdown, report_json):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(report_json, encoding="utf-8") as handle:
        assert {item["check"] for item in json.load(handle)["findings"]} >= {"RTO", "RPO files", "restore database"}
    with open(markdown, encoding="utf-8") as handle:
        assert "RTO" in handle.read()
    assert service.svc.token not in run.output and "testing" not in json.dumps(stats)


def test_a_failed_step_starts_the_writers_and_is_reported(managed_service, playbook, tmp_path, sync_store,
                                                          custom_stats):
    service = managed_service()
    service.add_items(10)
    write(tmp_path / "uploads", "a.txt", b"a")
    write(tmp_path / "config-known-good", "app.conf", b"ok\n")
    (tmp_path / "not-a-dir").write_bytes(b"a file where the configuration directory should be")
    host_vars = full_restore_vars(service, tmp_path, sync_store, restore_force=True,
                                  full_restore_config_dest=str(tmp_path / "not-a-dir" / "config"))
    for name in ("backup.yml", "backup_files.yml"):
        assert playbook(name, host_vars).rc == 0
    missing = dict(sync_store, bucket=sync_store["bucket"] + "-missing")
    refused = playbook("full_restore.yml", dict(host_vars, full_restore_files_store=missing))
    assert refused.rc != 0 and "nothing was stopped or changed" in refused.output
    assert "does not exist" in refused.output
    pid = service.pid
    assert service.running

    run = playbook("full_restore.yml", host_vars)
    assert run.rc != 0
    assert service.running and service.pid != pid and service.healthy(), "the writers were not started again"
    found = findings(custom_stats(run, "runbook_full_restore"))
    assert found["restore configuration"]["state"] == "critical"
    assert "Copy the configuration back" in found["restore configuration"]["detail"]
    assert found["restore database"]["state"] == "ok" and found["start writers"]["state"] == "ok"
    assert found["health gate"]["state"] == "ok" and found["RTO"]["state"] == "critical"
    assert custom_stats(run, "runbook_full_restore")["report_files"]["json"].endswith(".json")


@pytest.mark.parametrize("extra, message", [
    ({"full_restore_writer": "process", "full_restore_stop_command": []}, "'process' needs full_restore_stop_command"),
    ({"full_restore_database": False, "full_restore_files_path": "", "full_restore_config_src": ""},
     "restore at least one of"),
    ({"full_restore_files_store": {"type": "s3"}}, "full_restore_files_store needs type"),
    ({"full_restore_writer": "systemd"}, "full_restore_writer must be one of"),
])
def test_preflight_refuses_bad_variables(managed_service, playbook, tmp_path, extra, message):
    service = managed_service()
    run = playbook("full_restore.yml", full_restore_vars(service, tmp_path, {"type": "s3", "bucket": "b"}, **extra))
    assert run.rc != 0 and message in run.output, run.output[-3000:]
