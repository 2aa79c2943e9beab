# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest fixture `sample_service`: the managed sample service as a real subprocess on loopback.

    def test_x(sample_service):
        svc = sample_service()                       # SQLite in a tmp DATA_DIR, started
        svc = sample_service(database_url=url)       # PostgreSQL
        svc = sample_service(env={"VERSION": "2"}, start=False)
        resp = svc.api("POST", "/api/items", json={"name": "a", "secret": "s"})
        assert resp.status == 201 and resp.json["id"] == 1

Every instance is stopped at teardown.  Register with `pytest_plugins = ["sample_service_fixture"]`.
"""

from __future__ import annotations

import json as jsonlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_PATH = os.path.join(REPO_ROOT, "sample_service", "app.py")
CTL_PATH = os.path.join(REPO_ROOT, "sample_service", "ctl.sh")

# Settings the service reads: never inherited from the test runner's environment.
SERVICE_ENV_KEYS = ("LISTEN_HOST", "PORT", "DATA_DIR", "DATABASE_URL", "SERVICE_NAME", "API_TOKEN", "API_TOKEN_PREVIOUS",
                    "AUTH_DISABLED", "ENCRYPTION_KEY", "ALLOWED_HOSTS", "METRICS_SECRET", "LOG_FORMAT", "VERSION",
                    "STARTUP_DELAY", "FAIL_READY", "SCHEMA_HEAD", "MIGRATION_FAIL", "CRASH_AFTER")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_fernet_key():
    from cryptography.fernet import Fernet
    return Fernet.generate_key().decode("ascii")


def write_env_file(path, values):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# sample service settings written by the test fixture\n")
        for key, value in values.items():
            handle.write("%s=%s\n" % (key, value))


def clean_environ(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_KEYS}
    env.update(extra or {})
    return env


def process_alive(pid):
    """True while pid runs (a zombie waiting to be reaped counts as dead)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Response:
    """Status, headers and body of one HTTP exchange (HTTP errors are responses, not exceptions)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        return jsonlib.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.text[:200])


def http_request(url, method="GET", headers=None, json=None, timeout=10):
    data = None
    headers = dict(headers or {})
    if json is not None:
        data = jsonlib.dumps(json).encode("utf-8")
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Response(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, dict(exc.headers), exc.read())


_DEFAULT = object()


class SampleService:
    """One instance of sample_service/app.py, configured through its env file."""

    def __init__(self, base_dir, database_url=None, env=None, python=None):
        self.base_dir = str(base_dir)
        os.makedirs(self.base_dir, mode=0o700, exist_ok=True)
        self.data_dir = os.path.join(self.base_dir, "data")
        self.env_file = os.path.join(self.base_dir, "app.env")
        self.log_file = os.path.join(self.base_dir, "service.log")
        self.python = python or sys.executable
        self.port = free_port()
        self.token = "tok-" + secrets.token_urlsafe(16)
        self.encryption_key = new_fernet_key()
        self.settings = {
            "DATA_DIR": self.data_dir,
            "LISTEN_HOST": "127.0.0.1",
            "PORT": str(self.port),
            "API_TOKEN": self.token,
            "ENCRYPTION_KEY": self.encryption_key,
            "SERVICE_NAME": "app",
            "VERSION": "1.0.0",
        }
        if database_url:
            self.settings["DATABASE_URL"] = database_url
        self.settings.update(env or {})
        self._apply_settings()
        self.process = None

    # configuration ------------------------------------------------------------
    def _apply_settings(self):
        self.port = int(self.settings["PORT"])
        self.token = self.settings.get("API_TOKEN", "")
        self.encryption_key = self.settings.get("ENCRYPTION_KEY", "")
        write_env_file(self.env_file, self.settings)

    def set_env(self, **values):
        """Change settings in the env file (None removes one); takes effect at the next (re)start."""
        for key, value in values.items():
            if value is None:
                self.settings.pop(key, None)
            else:
                self.settings[key] = str(value)
        self._apply_settings()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def database_url(self):
        return self.settings.get("DATABASE_URL") or "sqlite:///%s/app.db" % self.data_dir.lstrip("/")

    @property
    def db_path(self):
        """The SQLite file (None in PostgreSQL mode)."""
        if "DATABASE_URL" in self.settings and not self.settings["DATABASE_URL"].startswith("sqlite:"):
            return None
        return "/" + self.database_url[len("sqlite:"):].lstrip("/")

    @property
    def lock_path(self):
        return os.path.join(self.data_dir, ".%s.lock" % self.settings.get("SERVICE_NAME", "app"))

    @property
    def pid(self):
        return self.process.pid if self.running else None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def log_text(self):
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    # process control ------------------------------------------------------------
    def command(self, *args, env=None, timeout=60):
        """Run `python app.py --env-file ENV ARGS...` to completion -> CompletedProcess (text)."""
        return subprocess.run([self.python, APP_PATH, "--env-file", self.env_file] + list(args), env=clean_environ(env),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, wait=True, timeout=20):
        if self.running:
            raise RuntimeError("sample service already running (pid %d)" % self.process.pid)
        log = open(self.log_file, "ab")  # pylint: disable=consider-using-with
        try:
            self.process = subprocess.Popen([self.python, APP_PATH, "--env-file", self.env_file, "serve"],  # pylint: disable=consider-using-with
                                            env=clean_environ(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("sample service exited with %s during start-up:\n%s" % (self.process.returncode, self.log_text()))
            try:
                if http_request(self.url + "/healthz", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("sample service did not answer /healthz within %ss:\n%s" % (timeout, self.log_text()))

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after timeout; returns the exit status (None if not running)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        status = self.process.returncode
        self.process = None
        return status

    def stop_strays(self, timeout=15):
        """Stop a process of ours not started by start() (ctl.sh, command("serve")): the lock file names it."""
        try:
            with open(self.lock_path, encoding="ascii") as handle:
                pid = int(handle.read().strip() or 0)
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                cmdline = handle.read().split(b"\0")
        except (OSError, ValueError):
            return
        if pid and self.env_file.encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def restart(self, wait=True):
        self.stop()
        return self.start(wait=wait)

    # HTTP -------------------------------------------------------------------------
    def get(self, path, headers=None):
        return http_request(self.url + path, headers=headers)

    def api(self, method, path, json=None, token=_DEFAULT, headers=None):
        """Call the service with `X-Api-Token: <token>` (default: the current token; None sends none)."""
        headers = dict(headers or {})
        if token is _DEFAULT:
            token = self.token
        if token is not None:
            headers["X-Api-Token"] = token
        return http_request(self.url + path, method=method, headers=headers, json=json)


@pytest.fixture()
def sample_service(tmp_path_factory):
    """Factory: sample_service(database_url=None, env=None, start=True) -> SampleService."""
    instances = []

    def factory(database_url=None, env=None, start=True):
        svc = SampleService(tmp_path_factory.mktemp("sample_service"), database_url=database_url, env=env)
        instances.append(svc)
        if start:
            svc.start()
        return svc

    yield factory
    for svc in instances:
        svc.stop()
        svc.stop_strays()


def pg_database_url(conn_params, dbname):
    """DATABASE_URL for the pg_conn_params / pg_database fixtures."""
    from urllib.parse import quote
    return "postgresql://%s:%s@%s:%d/%s" % (quote(conn_params["login_user"], safe=""), quote(conn_params["login_password"], safe=""),
                                            conn_params["login_host"], int(conn_params["login_port"]), dbname)
