# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compose projects of the sample service images for the deploy, rollback and rolling-restart tests.

Fixtures (import them into a conftest.py: ``from deploy_testlib import sample_images, compose_project``,
or from another directory ``from deploy.deploy_testlib import ...``):

    sample_images                        session: scripts/sample-images.sh once; rbops-sample:v1..v5 exist
    compose_project(tag="v1", ...)       factory -> ComposeProject (see its docstring); torn down after the test

    def test_x(compose_project):
        project = compose_project(tag="v1", worker=True)
        project.up()                                   # docker-compose up -d, waits until every container is healthy
        assert project.api("GET", "/api/items").status == 200
        project.set_env(APP_TAG="v2")
        project.compose("run", "--rm", "--no-deps", "api", "python3", "/app/app.py", "migrate")
        assert project.schema_head() == 2

The images (rbops-sample:v1..v5, rbops-base:bookworm) are kept as a cache; every container, volume and
database a project creates is removed at teardown, by the Compose project label even when Compose fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import uuid

import pytest

from sample_service_fixture import Response, free_port, http_request, new_fernet_key, pg_database_url

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
IMAGES_SCRIPT = os.path.join(REPO_ROOT, "scripts", "sample-images.sh")
SAMPLE_REPO = "rbops-sample"
SAMPLE_TAGS = ("v1", "v2", "v3", "v4", "v5")
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
APP_UID = 10001  # the user the images run the service as (scripts/sample-images.sh)
COMPOSE_COMMAND = ("docker-compose",)
HEALTH_TIMEOUT = 8  # seconds the containers of a release get to become healthy
MIGRATE = ["python3", "/app/app.py", "migrate"]

__all__ = ["sample_images", "compose_project", "ComposeProject", "docker", "wait_until", "SAMPLE_REPO", "SAMPLE_TAGS", "Response",
           "HEALTH_TIMEOUT", "project_vars"]


def docker(*args, check=True, timeout=120):
    """Run the docker CLI -> CompletedProcess (text); raises with its output when check and it fails."""
    proc = subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("docker %s failed (%d): %s" % (" ".join(args), proc.returncode, proc.stderr.strip() or proc.stdout.strip()))
    return proc


def require_docker():
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed: run the integration tests with `make integration`")
    if shutil.which(COMPOSE_COMMAND[0]) is None:
        pytest.fail("docker-compose is not installed: run `make system`")
    if docker("info", check=False).returncode != 0:
        pytest.fail("the Docker engine is not running: run the integration tests with `make integration`")


@pytest.fixture(scope="session")
def sample_images():
    """The sample service images rbops-sample:v1..v5 (built by scripts/sample-images.sh when missing or stale)."""
    require_docker()
    started = time.monotonic()
    proc = subprocess.run([IMAGES_SCRIPT], capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail("scripts/sample-images.sh failed (%d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))
    return {"tags": SAMPLE_TAGS, "repo": SAMPLE_REPO, "seconds": round(time.monotonic() - started, 1)}


def _admin_connection(pg_conn_params, dbname="postgres"):
    import psycopg2

    conn = psycopg2.connect(host=pg_conn_params["login_host"], port=pg_conn_params["login_port"],
                            user=pg_conn_params["login_user"], password=pg_conn_params["login_password"],
                            dbname=dbname, connect_timeout=10)
    conn.autocommit = True
    return conn


def _yaml_scalar(value):
    return json.dumps(str(value))  # JSON strings are YAML scalars


class ComposeProject:
    """One Compose v1 project of the sample service in its own directory.

    Attributes: ``name`` (the Compose project name = the directory's name), ``dir``, ``compose_file``,
    ``env_file`` (``.env``, 0600: APP_TAG, API_TOKEN, ENCRYPTION_KEY, DATABASE_URL), ``ports``
    ({service: port} of the HTTP services), ``port`` (the api's, or api_a's), ``token``, ``database``
    (PostgreSQL database name, None for SQLite), ``database_url``, ``services``.

    Services (all ``network_mode: host``, ``restart: unless-stopped``, image ``rbops-sample:${APP_TAG}``):
      api            HTTP on a free port, DATA_DIR bind mount ./data/api (owned by the image's user)
      api_a, api_b   instead of api with ``replicas=True``: two HTTP replicas on two ports
      worker         with ``worker=True``: `app.py worker` (job worker, no HTTP; health = `app.py check`),
                     DATA_DIR ./data/worker, scalable (no container_name, no port)
      migrate        ``scale: 0`` (``up`` starts none), command `app.py migrate`: the one-off migration container,
                     ``docker-compose run --rm migrate [--status]``.  Compose v1 cannot ``run`` a one-off container
                     of a host-network service while one of its containers runs ("host type networking can't be
                     used with links": it links one-off containers to the running ones), so migrations and other
                     one-off commands go through this service, never through ``api``.
    With ``database="sqlite"`` the database is /data/app.db in a named volume ``data`` mounted by every
    service instead of the bind mounts (a single-host project; PostgreSQL is the default).
    """

    def __init__(self, base_dir, pg_conn_params, tag="v1", worker=False, replicas=False, database="postgresql",
                 env=None, service_env=None, health_interval="1s"):
        self.name = "rbops-d-" + uuid.uuid4().hex[:10]
        self.dir = os.path.join(str(base_dir), self.name)
        os.makedirs(self.dir, mode=0o700)
        self.compose_file = os.path.join(self.dir, "docker-compose.yml")
        self.env_file = os.path.join(self.dir, ".env")
        self.token = "tok-" + secrets.token_urlsafe(16)
        self.pg_conn_params = pg_conn_params
        self.sqlite = database == "sqlite"
        if database not in ("postgresql", "sqlite"):
            raise ValueError("database must be postgresql or sqlite")
        self.database = None if self.sqlite else "rbops_d_" + uuid.uuid4().hex[:10]
        if self.sqlite:
            self.database_url = "sqlite:////data/app.db"
        else:
            admin = _admin_connection(pg_conn_params)
            try:
                with admin.cursor() as cur:
                    cur.execute('CREATE DATABASE "%s"' % self.database)
            finally:
                admin.close()
            self.database_url = pg_database_url(pg_conn_params, self.database)
        http_services = ("api_a", "api_b") if replicas else ("api",)
        self.ports = {service: free_port() for service in http_services}
        self.port = self.ports[http_services[0]]
        self.services = list(http_services) + (["worker"] if worker else [])
        self.all_services = self.services + ["migrate"]
        self.env = {"APP_TAG": tag, "API_TOKEN": self.token, "ENCRYPTION_KEY": new_fernet_key(), "DATABASE_URL": self.database_url}
        self.env.update(env or {})
        self.write_env()
        self._write_compose(service_env or {}, health_interval)
        self.torn_down = False

    # files ------------------------------------------------------------------------
    def write_env(self):
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("# written by the deploy test fixture\n")
            for key, value in self.env.items():
                handle.write("%s=%s\n" % (key, value))
        os.chmod(self.env_file, 0o600)

    def set_env(self, **values):
        """Change .env entries (None removes one): APP_TAG="v2" selects the next image."""
        for key, value in values.items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = str(value)
        self.write_env()

    def read_env(self):
        """The .env file as a dict (what is on disk, whoever wrote it)."""
        values = {}
        with open(self.env_file, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, _sep, value = line.partition("=")
                    values[key.strip()] = value.strip()
        return values

    def _data_dir(self, service):
        path = os.path.join(self.dir, "data", service)
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
        os.chown(path, APP_UID, APP_UID)
        return path

    def _write_compose(self, service_env, health_interval):
        lines = ['version: "2.4"', "services:"]
        for service in self.all_services:
            environment = {"DATA_DIR": "/data", "SERVICE_NAME": service, "API_TOKEN": "${API_TOKEN}",
                           "ENCRYPTION_KEY": "${ENCRYPTION_KEY}", "DATABASE_URL": "${DATABASE_URL}"}
            if service in self.ports:
                environment["PORT"] = str(self.ports[service])
                environment["LISTEN_HOST"] = "127.0.0.1"
            environment.update(service_env.get(service, {}))
            lines += ["  %s:" % service,
                      "    image: %s" % _yaml_scalar(SAMPLE_REPO + ":${APP_TAG}"),
                      "    network_mode: host",
                      "    restart: %s" % ('"no"' if service == "migrate" else "unless-stopped"),
                      "    stop_grace_period: 5s"]
            if service == "migrate":
                lines += ["    scale: 0", '    command: ["python3", "/app/app.py", "migrate"]']
            elif service == "worker":
                lines += ['    command: ["python3", "/app/app.py", "worker"]',
                          "    healthcheck:",
                          '      test: ["CMD", "python3", "/app/app.py", "check"]',
                          "      interval: %s" % health_interval, "      timeout: 5s", "      retries: 2"]
            else:
                lines += ["    healthcheck:",
                          '      test: ["CMD", "python3", "/app/app.py", "healthcheck", "--path", "/readyz"]',
                          "      interval: %s" % health_interval, "      timeout: 2s", "      retries: 2"]
            lines.append("    environment:")
            lines += ["      %s: %s" % (key, _yaml_scalar(value)) for key, value in environment.items()]
            lines.append("    volumes:")
            if self.sqlite:
                lines.append("      - data:/data")
            else:
                self._data_dir(service)
                lines.append("      - ./data/%s:/data" % service)
        if self.sqlite:
            lines += ["volumes:", "  data: {}"]
        with open(self.compose_file, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")

    # Compose ----------------------------------------------------------------------
    def compose(self, *args, check=True, timeout=180, env=None):
        """Run ``docker-compose ARGS`` in the project directory -> CompletedProcess (text)."""
        run_env = {k: v for k, v in os.environ.items() if k not in self.env and not k.startswith("COMPOSE_")}
        run_env.update(env or {})
        proc = subprocess.run(list(COMPOSE_COMMAND) + list(args), cwd=self.dir, env=run_env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("docker-compose %s failed (%d):\n%s%s" % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def up(self, *services, wait=True, timeout=60, scale=None):
        """``docker-compose up -d [SERVICES]``; wait=True waits until every container is healthy."""
        args = ["up", "-d"]
        for service, count in (scale or {}).items():
            args += ["--scale", "%s=%d" % (service, count)]
        self.compose(*(args + list(services)))
        if wait:
            self.wait_healthy(timeout=timeout)
        return self

    def run_once(self, *command, check=False, timeout=120):
        """``docker-compose run --rm -T migrate COMMAND...``: a one-off container of the .env tag's image."""
        return self.compose(*(["run", "--rm", "--no-deps", "-T", "migrate"] + list(command)), check=check, timeout=timeout)

    def migrate(self, check=False):
        """``app.py migrate`` in a one-off container of the image APP_TAG names."""
        return self.run_once("python3", "/app/app.py", "migrate", check=check)

    def migrate_status(self):
        """The schema head as the image's own ``migrate --status`` prints it."""
        proc = self.run_once("python3", "/app/app.py", "migrate", "--status", check=True)
        return int(proc.stdout.strip().splitlines()[-1])

    # containers -------------------------------------------------------------------
    def container_ids(self, service=None, all_states=True):
        """Ids of the project's containers (by the Compose project label), optionally of one service."""
        args = ["ps", "-q", "--no-trunc", "--filter", "label=%s=%s" % (PROJECT_LABEL, self.name)]
        if all_states:
            args.insert(1, "-a")
        if service:
            args += ["--filter", "label=%s=%s" % (SERVICE_LABEL, service)]
        return docker(*args).stdout.split()

    def inspect(self, service=None):
        """docker inspect of the project's containers -> list of dicts."""
        ids = self.container_ids(service)
        return json.loads(docker("inspect", *ids).stdout) if ids else []

    def containers(self, service=None):
        """[{name, service, state, health, restarts, image_id, image}] of the project's containers."""
        found = []
        for info in self.inspect(service):
            state = info["State"]
            found.append({"name": info["Name"].lstrip("/"), "service": info["Config"]["Labels"].get(SERVICE_LABEL),
                          "state": state["Status"], "health": (state.get("Health") or {}).get("Status"),
                          "restarts": info.get("RestartCount", 0), "image_id": info["Image"], "image": info["Config"]["Image"],
                          "started_at": state.get("StartedAt")})
        return sorted(found, key=lambda c: c["name"])

    def image_ids(self):
        """{service: image id} of the running containers (one id per service, or a list when they differ)."""
        ids = {}
        for container in self.containers():
            if container["state"] == "running":
                ids.setdefault(container["service"], set()).add(container["image_id"])
        return {service: (next(iter(found)) if len(found) == 1 else sorted(found)) for service, found in ids.items()}

    def wait_healthy(self, service=None, timeout=60):
        """Wait until every (or the service's) container runs and is healthy; fail with their logs otherwise."""
        deadline = time.monotonic() + timeout
        containers = []
        while time.monotonic() < deadline:
            containers = self.containers(service)
            if containers and all(c["state"] == "running" and c["health"] == "healthy" for c in containers):
                return containers
            time.sleep(0.3)
        raise AssertionError("%s did not become healthy within %ss: %s\n%s"
                             % (service or self.name, timeout, containers, self.logs(service)[-3000:]))

    def wait_health(self, status, service="api", timeout=60):
        """Wait until a container of the service reports health ``status`` (healthy, unhealthy, starting)."""
        deadline = time.monotonic() + timeout
        containers = []
        while time.monotonic() < deadline:
            containers = self.containers(service)
            if any(c["health"] == status for c in containers):
                return containers
            time.sleep(0.3)
        raise AssertionError("%s never reported %s within %ss: %s\n%s" % (service, status, timeout, containers, self.logs(service)[-3000:]))

    def logs(self, service=None):
        args = ["logs", "--no-color", "--tail", "200"] + ([service] if service else [])
        proc = self.compose(*args, check=False)
        return proc.stdout + proc.stderr

    # HTTP and database ------------------------------------------------------------
    def url(self, service=None):
        return "http://127.0.0.1:%d" % (self.ports[service] if service else self.port)

    def get(self, path, service=None, timeout=5):
        return http_request(self.url(service) + path, timeout=timeout)

    def api(self, method, path, json=None, service=None, token=None, timeout=10):
        """Call the api with the project's token -> Response (HTTP errors are responses)."""
        headers = {"X-Api-Token": token if token is not None else self.token}
        return http_request(self.url(service) + path, method=method, headers=headers, json=json, timeout=timeout)

    def query(self, sql, params=None):
        """Rows of a query on the project's PostgreSQL database (not for SQLite projects)."""
        if self.sqlite:
            raise RuntimeError("query() needs a PostgreSQL project")
        conn = _admin_connection(self.pg_conn_params, self.database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def schema_head(self):
        """The schema head read directly from PostgreSQL (0 without schema)."""
        if not self.query("SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = 'schema_migrations'"):
            return 0
        return self.query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0]

    def tables(self):
        return sorted(row[0] for row in self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))

    # teardown ---------------------------------------------------------------------
    def teardown(self):
        """Remove the containers, volumes and networks of the project and drop its database."""
        if self.torn_down:
            return
        self.torn_down = True
        problems = []
        try:
            proc = self.compose("down", "-v", "--timeout", "1", "--remove-orphans", check=False, timeout=120)
            if proc.returncode != 0:
                problems.append(proc.stderr.strip())
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(str(exc))
        # Whatever Compose could not remove (or created outside Compose's knowledge): by the project label.
        label = "label=%s=%s" % (PROJECT_LABEL, self.name)
        leftover = docker("ps", "-aq", "--filter", label, check=False).stdout.split()
        if leftover:
            docker("rm", "-f", "-v", *leftover, check=False)
        volumes = docker("volume", "ls", "-q", "--filter", label, check=False).stdout.split()
        if volumes:
            docker("volume", "rm", "-f", *volumes, check=False)
        if self.database:
            admin = _admin_connection(self.pg_conn_params)
            try:
                with admin.cursor() as cur:
                    cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.database)
            finally:
                admin.close()
        return problems


@pytest.fixture()
def compose_project(sample_images, pg_conn_params, tmp_path_factory):
    """Factory: compose_project(tag="v1", worker=False, replicas=False, database="postgresql", env=None,
    service_env=None, health_interval="1s") -> ComposeProject (not started: call .up()).  Torn down after the test."""
    del sample_images  # only needed built
    projects = []

    def factory(**kwargs):
        project = ComposeProject(tmp_path_factory.mktemp("compose"), pg_conn_params, **kwargs)
        projects.append(project)
        return project

    yield factory
    for project in reversed(projects):
        project.teardown()


def project_vars(project, **extra):
    """The deploy and rollback variables of one project (host variables)."""
    values = {
        "deploy_project_dir": project.dir,
        "deploy_project_name": project.name,
        "deploy_compose_command": "v1",
        "deploy_migration_service": "migrate",
        "deploy_migration_command": MIGRATE,
        "deploy_migration_head_command": MIGRATE + ["--status"],
        "deploy_required_env_keys": ["API_TOKEN", "ENCRYPTION_KEY", "DATABASE_URL"],
        "deploy_health_timeout": HEALTH_TIMEOUT,
        "deploy_http_timeout": 10,
        "deploy_base_url": project.url(),
        "deploy_smoke_targets": [{"name": "items", "url": project.url() + "/api/items", "api_token": project.token,
                                  "json": [{"path": "items", "op": "exists"}]}],
        "deploy_watch_seconds": 2,
        "deploy_watch_interval": 1,
        "rollback_project_dir": project.dir,
        "rollback_project_name": project.name,
        "rollback_compose_command": "v1",
        "rollback_health_timeout": HEALTH_TIMEOUT,
        "rollback_base_url": project.url(),
    }
    values.update(extra)
    return values


def wait_until(condition, what, timeout=30, interval=0.2):
    """Poll condition() until it returns something true -> that value; AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)
