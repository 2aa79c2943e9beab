# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore and full_restore playbooks with Compose writers: a real Compose project of the sample image on
PostgreSQL; compose_release stops the api around the restore and starts it again, healthy."""

from __future__ import annotations

import yaml

from deploy_testlib import docker


def inventory(tmp_path):
    import sys
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    return str(path)


def items(project):
    return project.query("SELECT count(*) FROM items")[0][0]


def test_restore_and_full_restore_stop_and_start_compose_writers(compose_project, pg_conn_params, tmp_path,
                                                                 ansible_playbook):
    project = compose_project(tag="v1")
    project.up("api")
    for index in range(5):
        assert project.api("POST", "/api/items", json={"name": "item-%d" % index, "secret": "s"}).status == 201
    store = {"type": "local", "path": str(tmp_path / "store")}
    login = {key: pg_conn_params[key] for key in ("login_host", "login_port", "login_user", "login_password")}
    common = {"service": "app", "engine": "postgresql", "database": project.database, "store": store}
    common.update(login)
    host_vars = {"%s_%s" % (prefix, key): value for prefix in ("backup", "restore") for key, value in common.items()}
    compose = {"project_dir": project.dir, "project_name": project.name, "services": ["api"]}
    host_vars.update({"restore_writer": "compose", "restore_force": True, "restore_health_url": project.url() + "/readyz",
                      "restore_health_timeout": 60})
    host_vars.update({"restore_compose_" + key: value for key, value in compose.items()})
    inv = inventory(tmp_path)
    backup = ansible_playbook("playbooks/backup.yml", inventory=inv, extra_vars=host_vars)
    assert backup.rc == 0, backup.output[-3000:]
    api_before = project.container_ids("api")
    project.query("DELETE FROM items")

    restored = ansible_playbook("playbooks/restore.yml", inventory=inv, extra_vars=host_vars)
    assert restored.rc == 0, restored.output[-4000:]
    assert items(project) == 5
    assert "Stop or start the Compose services, stop api" in restored.output
    assert "Stop or start the Compose services, start api" in restored.output
    started = docker("inspect", "-f", "{{.State.Running}} {{.State.Health.Status}}", api_before[0]).stdout.split()
    assert started == ["true", "healthy"] and project.get("/readyz").status == 200

    # The full restore, database only, with the same writers.
    project.query("DELETE FROM items WHERE name <> 'item-0'")
    host_vars.update({"full_restore_service": "app", "full_restore_writer": "compose", "full_restore_files_path": "",
                      "full_restore_config_src": "", "full_restore_report_dir": "",
                      "full_restore_health_url": project.url() + "/readyz", "full_restore_health_timeout": 60})
    host_vars.update({"full_restore_compose_" + key: value for key, value in compose.items()})
    full = ansible_playbook("playbooks/full_restore.yml", inventory=inv, extra_vars=host_vars)
    assert full.rc == 0, full.output[-4000:]
    assert items(project) == 5 and project.get("/readyz").status == 200

    # A writer that cannot be stopped (no such service) refuses cleanly and changes nothing.
    project.query("DELETE FROM items WHERE name = 'item-4'")
    host_vars["restore_compose_services"] = ["nosuch"]
    refused = ansible_playbook("playbooks/restore.yml", inventory=inv, extra_vars=host_vars)
    assert refused.rc != 0 and "nosuch" in refused.output and "Traceback" not in refused.output
    assert items(project) == 4 and project.get("/readyz").status == 200
