# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BK9 on a real Compose project: the database volume is found by its Compose labels and backed up and
restored as a tarball with the database container stopped around it.

The database is the sample service's SQLite file on the project's named volume ``data`` (there is no
PostgreSQL image without a registry); what matters here is the volume of a running Compose service."""

from __future__ import annotations

from deploy.deploy_testlib import compose_project, docker, sample_images  # noqa: F401  pylint: disable=unused-import
from volume_testlib import failed, ok, task


def started_at(project):
    return [c["started_at"] for c in project.containers("api")]


def test_database_volume_of_a_compose_project_with_the_container_stopped_around_it(compose_project, run_tasks, local_store):
    project = compose_project(tag="v1", database="sqlite")
    project.up()
    assert project.api("POST", "/api/items", json={"name": "before-backup"}).status == 201
    api_container = project.containers("api")[0]["name"]
    source = {"service": "shop", "compose_project": project.name, "volume": "data", "store": local_store}
    first_start = started_at(project)

    run = run_tasks([
        task("live refused", "volume_backup", source),
        task("planned", "volume_backup", dict(source, stop_containers=True), check=True),
        task("missing volume", "volume_backup", dict(source, volume="nope", stop_containers=True)),
        task("both", "volume_backup", dict(source, stop_containers=True, allow_running=True)),
    ])
    assert "in use by running container %s" % api_container in failed(run, "live refused")["msg"]
    planned = ok(run, "planned")
    assert planned["changed"] and planned["backup"]["stopped_containers"] == [api_container]
    assert planned["backup"]["volume"] == project.name + "_data"
    assert "would stop and start again container %s for the copy" % api_container in planned["msg"]
    assert ("Compose project %s has no volume nope" % project.name) in failed(run, "missing volume")["msg"]
    assert "exclude each other" in failed(run, "both")["msg"]
    assert started_at(project) == first_start  # nothing above stopped it

    run = run_tasks([task("backup", "volume_backup", dict(source, stop_containers=True, stop_timeout=5))])
    backup = ok(run, "backup")["backup"]
    assert backup["volume"] == project.name + "_data"
    assert backup["stopped_containers"] == backup["started_containers"] == [api_container]
    assert backup["source"]["compose_project"] == project.name and backup["source"]["compose_volume"] == "data"
    assert backup["id"].startswith("volume-%s_data-" % project.name.replace("-", "_"))
    assert started_at(project) != first_start  # it was stopped and started again
    project.wait_healthy(timeout=30)

    assert project.api("POST", "/api/items", json={"name": "after-backup"}).status == 201
    run = run_tasks([task("restore", "volume_restore", dict(source, backup_id=backup["id"], force=True, stop_containers=True,
                                                            keep_previous=False, stop_timeout=5))])
    restored = ok(run, "restore")
    assert restored["stopped_containers"] == [api_container] and restored["started_containers"] == [api_container]
    project.wait_healthy(timeout=30)
    assert [item["name"] for item in project.api("GET", "/api/items").json["items"]] == ["before-backup"]
    mounts = docker("inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", api_container).stdout.strip()
    assert mounts == project.name + "_data"
