# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HP5 through playbooks/health_check.yml: DATA_DIR behind a link, max_files, one-line disk details."""

from __future__ import annotations

import os

from harness import run_playbook

from health_testlib import HEALTH_PLAYBOOK, fact, findings_by_check, write_inventory

RESULT_TASK = "Work out the overall state"


def disk_only(**overrides):
    values = {"health_check_liveness_path": "", "health_check_readiness_path": "", "health_check_metrics_path": "",
              "health_check_disk_warn_percent": 100, "health_check_disk_crit_percent": 100}
    values.update(overrides)
    return values


def test_symlinked_data_dir_max_files_and_dangling_disk_path(tmp_path):
    real = tmp_path / "volume"
    (real / "logs").mkdir(parents=True)
    for index in range(5):
        (real / "logs" / ("%d.log" % index)).write_text("x")
        os.chmod(real / "logs" / ("%d.log" % index), 0o600)
    os.chmod(real, 0o700)
    os.chmod(real / "logs", 0o700)
    data = tmp_path / "data"
    data.symlink_to(real)
    dangling = tmp_path / "backups"
    dangling.symlink_to(tmp_path / "unmounted")
    run = run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, disk_only(
        health_check_data_dir=str(data), health_check_data_dir_mode="0700", health_check_data_dir_file_mode="0600",
        health_check_data_dir_recurse=True, health_check_data_dir_max_files=3,
        health_check_disk_paths=[str(dangling)], health_check_fail_on="never")))
    assert run.rc == 0, run.output
    checks = findings_by_check(fact(run, RESULT_TASK, "health_check_result"))
    data_dir = checks["data dir %s" % data]
    assert data_dir["state"] == "warning", data_dir
    assert "stopped after max_files=3" in data_dir["detail"] and "link to %s" % real in data_dir["detail"]
    assert "expected a directory" not in data_dir["detail"]
    disk = checks["disk %s" % dangling]
    assert disk["state"] == "critical" and "dangling link" in disk["detail"], disk
    assert disk["value"] is None


def test_disk_detail_is_said_once(tmp_path):
    run = run_playbook(tmp_path, HEALTH_PLAYBOOK, inventory=write_inventory(tmp_path, disk_only(
        health_check_disk_paths=["/"], health_check_disk_warn_percent=0.01, health_check_fail_on="never")))
    assert run.rc == 0, run.output
    detail = findings_by_check(fact(run, RESULT_TASK, "health_check_result"))["disk /"]["detail"]
    assert detail.startswith("filesystem / is ") and "at or over warning 0.01%" in detail, detail
    assert detail.count(" free") == 1 and "used on" not in detail, detail
