# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sample images behave as the deploy tests rely on: v1 healthy at head 1; v2 refuses a head-1 database
and migrates it to head 2 (a table, a column and rows); v3 never healthy; v4's migration fails and leaves
head 1 untouched; v5 healthy, then crashes and is restarted.  The slow projects (v3, v5) start first and run
in the background while the migration sequence runs."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from deploy_testlib import IMAGES_SCRIPT, SAMPLE_REPO, SAMPLE_TAGS, ComposeProject, docker, wait_until


@pytest.fixture(scope="module")
def background_projects(sample_images, pg_conn_params, tmp_path_factory):
    """v3 and v5 projects started (not waited for) before the module's other tests run."""
    del sample_images
    projects = {}
    try:
        for tag in ("v3", "v5"):
            projects[tag] = ComposeProject(tmp_path_factory.mktemp("compose"), pg_conn_params, tag=tag)
            projects[tag].up(wait=False)
        yield projects
    finally:
        for project in projects.values():
            project.teardown()


def test_images_are_labelled_and_cached(sample_images):
    for tag in SAMPLE_TAGS:
        info = json.loads(docker("image", "inspect", "%s:%s" % (SAMPLE_REPO, tag)).stdout)[0]
        config = info["Config"]
        env = dict(item.split("=", 1) for item in config["Env"])
        assert env["VERSION"] == tag
        assert env["SCHEMA_HEAD"] == {"v1": "1", "v4": "3"}.get(tag, "2")
        assert config["Labels"]["org.runbook-ops.inputs"]
        assert config["Healthcheck"]["Test"] == ["CMD", "python3", "/app/app.py", "healthcheck", "--path", "/readyz"]
        assert config["Healthcheck"]["Interval"] == 1_000_000_000
        assert config["User"] == "10001:10001"
    # Everything is present and current: --check says so, and a plain run is fast and builds nothing.
    started = time.monotonic()
    proc = subprocess.run([IMAGES_SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    assert time.monotonic() - started < 5, proc.stdout  # about 0.2 s; slack for a busy machine
    assert "built" not in proc.stdout, proc.stdout
    assert subprocess.run([IMAGES_SCRIPT, "--check"], capture_output=True, check=False).returncode == 0


def test_v1_v2_v4_migrations_and_worker(background_projects, compose_project):
    del background_projects  # started first, so they run while this test does
    project = compose_project(tag="v1", worker=True)
    project.up(timeout=60)
    assert {c["service"] for c in project.containers()} == {"api", "worker"}
    assert project.schema_head() == 1
    assert project.get("/version").json["version"] == "v1"
    assert project.api("POST", "/api/items", json={"name": "before-v2", "secret": "s"}).status == 201
    v1_image = project.image_ids()["api"]

    # v2's api against the head-1 database refuses to start (exit 2, a clear message): never healthy.
    project.set_env(APP_TAG="v2")
    project.compose("up", "-d", "api")
    wait_until(lambda: [c for c in project.containers("api") if c["restarts"] >= 1], "v2 to exit and be restarted", timeout=30)
    assert project.containers("api")[0]["health"] != "healthy"
    assert "serve refused: the database is at schema head 1, this build (version v2) needs head 2" in project.logs("api")
    refused = project.run_once("python3", "/app/app.py", "serve", timeout=60)
    assert refused.returncode == 2, refused.stdout + refused.stderr

    # v4's migration fails half-way inside its transaction (its first pending one, 2): nothing of it is left, head stays 1.
    project.set_env(APP_TAG="v4")
    failed = project.migrate()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "migration 2 (tags) failed and was rolled back, the database stays at head 1" in failed.stderr
    assert project.schema_head() == 1
    assert "tags" not in project.tables()
    assert [r[0] for r in project.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'items'")].count("tag") == 0

    # v2 migrates to head 2: a new table with rows and a new column filled in.
    project.set_env(APP_TAG="v2")
    done = project.migrate()
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"head_before": 1, "head_after": 2, "applied": [2]}
    assert project.migrate_status() == 2
    assert project.query("SELECT name FROM tags ORDER BY id") == [("default",), ("important",), ("archive",)]
    assert project.query("SELECT name, tag FROM items") == [("before-v2", "default")]
    assert project.query("SELECT version FROM schema_migrations ORDER BY version") == [(1,), (2,)]

    project.up(timeout=60)
    assert project.get("/version").json["version"] == "v2"
    assert project.image_ids()["api"] != v1_image
    assert project.api("GET", "/api/items").json["count"] == 1
    # The worker service runs jobs without HTTP.
    job = project.api("POST", "/api/jobs", json={"kind": "noop", "duration": 0}).json
    wait_until(lambda: project.query("SELECT status FROM jobs WHERE id = %s", (job["id"],)) == [("succeeded",)], "the job to run")
    assert "worker started" in project.logs("worker")


def test_v3_never_healthy(background_projects):
    project = background_projects["v3"]
    project.wait_health("unhealthy", timeout=30)
    assert project.get("/healthz").status == 200
    ready = project.get("/readyz")
    assert ready.status == 503 and "FAIL_READY is set" in ready.text
    assert project.schema_head() == 2  # an empty database is bootstrapped to the image's head


def test_v5_healthy_then_crashes_and_restarts(background_projects):
    project = background_projects["v5"]
    first = project.wait_healthy(timeout=30)[0]
    wait_until(lambda: [c for c in project.containers() if c["restarts"] > first["restarts"]], "v5 to crash and restart", timeout=30)
    again = project.wait_healthy(timeout=20)[0]
    assert again["started_at"] != first["started_at"]
    assert "CRASH_AFTER=10 reached: exiting with status 1" in project.logs("api")


def test_two_replicas_on_a_sqlite_named_volume(compose_project):
    project = compose_project(tag="v1", database="sqlite", replicas=True)
    project.up(timeout=60)
    assert sorted(project.image_ids()) == ["api_a", "api_b"] and project.ports["api_a"] != project.ports["api_b"]
    assert project.api("POST", "/api/items", json={"name": "on-volume"}, service="api_a").status == 201
    assert project.api("GET", "/api/items", service="api_b").json["count"] == 1  # one database, two replicas
    volumes = docker("volume", "ls", "-q", "--filter", "label=com.docker.compose.project=%s" % project.name).stdout.split()
    assert volumes == [project.name + "_data"]
    assert project.migrate_status() == 1
