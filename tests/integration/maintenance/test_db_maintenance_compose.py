# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/db_maintenance.yml with `db_maintenance_writer: compose`: the sample service's container holds
the SQLite writer lock, so VACUUM only runs because compose_release stopped it; it is started again and
healthy after the window."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from deploy.deploy_testlib import compose_project, sample_images  # noqa: F401  pylint: disable=unused-import
from harness import REPO

PLAYBOOK = os.path.join(REPO, "playbooks", "db_maintenance.yml")


def inspect_api(project):
    ids = project.compose("ps", "-q", "api").stdout.split()
    return json.loads(subprocess.run(["docker", "inspect"] + ids, capture_output=True, text=True, check=True).stdout)[0]


def started_at(project):
    return inspect_api(project)["State"]


def test_compose_writer_is_stopped_for_vacuum_and_started_again(compose_project, tmp_path, ansible_playbook):
    project = compose_project(tag="v1", database="sqlite")
    project.up()
    volume = next(m["Source"] for m in inspect_api(project)["Mounts"] if m["Destination"] == "/data")
    db_path = os.path.join(volume, "app.db")
    with sqlite3.connect(db_path, timeout=10) as db:
        db.executemany("INSERT INTO items (name, secret_enc, created_at) VALUES (?, ?, ?)",
                       [("n%d" % i, "x" * 2000, "2026-01-01T00:00:00Z") for i in range(200)])
    with sqlite3.connect(db_path, timeout=10) as db:
        db.execute("DELETE FROM items")
    size = os.path.getsize(db_path)
    before = started_at(project)
    assert before["Running"]

    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "db_maintenance_service": "app", "db_maintenance_engine": "sqlite", "db_maintenance_path": db_path,
            "db_maintenance_lock_file": os.path.join(volume, ".api.lock"), "db_maintenance_backup": False,
            "db_maintenance_writer": "compose", "db_maintenance_compose_project_dir": project.dir,
            "db_maintenance_compose_project_name": project.name,
            "db_maintenance_compose_services": ["api"], "db_maintenance_report_dir": str(tmp_path / "reports"),
            "db_maintenance_health_urls": [project.url() + "/readyz"], "db_maintenance_health_timeout": 60}
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"app": {"hosts": {"localhost": host}}}))

    run = ansible_playbook(PLAYBOOK, inventory=str(inventory))
    assert run.rc == 0, run.output[-4000:]
    assert os.path.getsize(db_path) < size
    after = started_at(project)
    assert after["Running"] and after["StartedAt"] != before["StartedAt"]
    maintenance = run.task("Run the maintenance steps")["result"]
    assert [(s["action"], s["outcome"]) for s in maintenance["steps"]] == [
        ("integrity_check", "done"), ("vacuum", "done"), ("optimize", "done")]
