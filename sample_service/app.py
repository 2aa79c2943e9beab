# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The managed sample service of runbook.ops.

A small HTTP service that behaves like the services in the runbooks (S3Desk and friends):
liveness and readiness probes, a token-guarded Prometheus endpoint, an API whose secrets are
encrypted with ENCRYPTION_KEY, data in SQLite or PostgreSQL, a single-writer lock file in
DATA_DIR and job logs under DATA_DIR/logs/jobs/.  Configured only by environment variables
(optionally read from ``--env-file``).  See README.md next to this file.

Usage: python app.py [--env-file PATH] [serve|worker|migrate|check|healthcheck|settings|seed|reencrypt] ...
"""

import argparse
import datetime
import errno
import fcntl
import hmac
import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXIT_CONFIG = 2
EXIT_LOCKED = 3

HISTOGRAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_BODY_BYTES = 1024 * 1024
MAX_JOB_DURATION = 60.0
TRUE_WORDS = ("1", "true", "yes", "on")

# Migration 1: the original schema (CREATE ... IF NOT EXISTS, so a database made before migrations
# existed is adopted as head 1).
SCHEMA = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
        " secret_enc TEXT, created_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
        " status TEXT NOT NULL, created_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL, at TEXT NOT NULL)",
    ),
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS items (id SERIAL PRIMARY KEY, name TEXT NOT NULL, secret_enc TEXT, created_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS jobs (id SERIAL PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS audit_log (id SERIAL PRIMARY KEY, event TEXT NOT NULL, at TEXT NOT NULL)",
    ),
}


# Migration 2: a `tags` table with three rows and an `items.tag` column set on every item.  It writes rows,
# so a data-aware rollback can be seen: after restoring the pre-deploy backup they are gone.
MIGRATION_2 = {
    "sqlite": (
        "CREATE TABLE tags (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL)",
        "ALTER TABLE items ADD COLUMN tag TEXT",
    ),
    "postgresql": (
        "CREATE TABLE tags (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL)",
        "ALTER TABLE items ADD COLUMN tag TEXT",
    ),
}
MIGRATION_2_TAGS = ("default", "important", "archive")

MIGRATIONS_TABLE = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    "postgresql": "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
}
# Any constant: migrations on PostgreSQL take this transaction-level advisory lock, so two migrators serialise.
PG_MIGRATION_LOCK = 7130809


class ConfigError(Exception):
    """Bad or missing configuration: the process exits with EXIT_CONFIG."""


class DatabaseError(Exception):
    """The database cannot be reached or queried; the message is safe to show."""


class DecryptError(Exception):
    """A stored secret cannot be decrypted with the configured ENCRYPTION_KEY."""


class MigrationError(Exception):
    """A migration failed; its transaction was rolled back.  The message names the head the database stays at."""


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- configuration

def read_env_file(path):
    """Parse a dotenv file: KEY=VALUE lines, optional `export `, quotes, # comments."""
    values = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigError("cannot read env file %s: %s" % (path, exc.strerror)) from None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ConfigError("env file %s line %d is not KEY=VALUE" % (path, number))
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)
        values[key] = value
    return values


def redact_url(url):
    """DATABASE_URL without its password, for logs and messages."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)[1]
    user = parsed.username or ""
    return urllib.parse.urlunsplit((parsed.scheme, "%s:***@%s" % (user, netloc), parsed.path, parsed.query, parsed.fragment))


class Settings:
    """Everything the service reads from its environment."""

    def __init__(self, env):
        self.env = env
        self.data_dir = env.get("DATA_DIR", "").strip()
        if not self.data_dir:
            raise ConfigError("DATA_DIR is required")
        self.data_dir = os.path.abspath(self.data_dir)
        self.listen_host = env.get("LISTEN_HOST") or "127.0.0.1"
        port = env.get("PORT") or "8780"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("PORT must be a TCP port number, got %r" % port)
        self.port = int(port)
        self.service_name = env.get("SERVICE_NAME") or "app"
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.service_name):
            raise ConfigError("SERVICE_NAME may only contain letters, digits, '.', '_' and '-'")
        self.database_url = env.get("DATABASE_URL") or "sqlite:///%s/app.db" % self.data_dir.lstrip("/")
        self.api_token = env.get("API_TOKEN", "")
        self.api_token_previous = env.get("API_TOKEN_PREVIOUS", "")
        self.auth_disabled = env.get("AUTH_DISABLED", "").lower() in TRUE_WORDS
        self.encryption_key = env.get("ENCRYPTION_KEY", "")
        self.allowed_hosts = [h.strip().lower() for h in (env.get("ALLOWED_HOSTS") or "localhost,127.0.0.1").split(",") if h.strip()]
        self.metrics_secret = env.get("METRICS_SECRET", "")
        self.log_format = (env.get("LOG_FORMAT") or "text").lower()
        if self.log_format not in ("text", "json"):
            raise ConfigError("LOG_FORMAT must be text or json")
        self.version = env.get("VERSION") or "0.0.0-dev"
        try:
            self.startup_delay = float(env.get("STARTUP_DELAY") or 0)
        except ValueError:
            raise ConfigError("STARTUP_DELAY must be a number of seconds") from None
        self.fail_ready = env.get("FAIL_READY", "").lower() in TRUE_WORDS
        head = (env.get("SCHEMA_HEAD") or "1").strip()
        if not head.isdigit() or not 1 <= int(head) <= len(MIGRATIONS):
            raise ConfigError("SCHEMA_HEAD must be a migration number from 1 to %d, got %r" % (len(MIGRATIONS), head))
        self.schema_head = int(head)
        self.migration_fail = env.get("MIGRATION_FAIL", "").lower() in TRUE_WORDS
        crash_after = (env.get("CRASH_AFTER") or "").strip()
        try:
            self.crash_after = float(crash_after) if crash_after else 0.0
        except ValueError:
            raise ConfigError("CRASH_AFTER must be a number of seconds") from None

    @property
    def lock_path(self):
        return os.path.join(self.data_dir, ".%s.lock" % self.service_name)

    @property
    def jobs_log_dir(self):
        return os.path.join(self.data_dir, "logs", "jobs")

    def require_auth_config(self):
        if not self.api_token and not self.auth_disabled:
            raise ConfigError("API_TOKEN is required (set AUTH_DISABLED=true to run without authentication)")

    def accepted_tokens(self):
        return [token for token in (self.api_token, self.api_token_previous) if token]


def load_settings(env_file):
    env = dict(os.environ)
    if env_file:
        # The file is the explicit configuration: it wins over the inherited environment.
        env.update(read_env_file(env_file))
    return Settings(env)


# --------------------------------------------------------------------------- logging

class Logger:
    """Minimal structured logger to stderr.  Callers never pass secrets."""

    def __init__(self, service, fmt="text"):
        self.service = service
        self.fmt = fmt
        self.lock = threading.Lock()

    def log(self, level, msg, **fields):
        if self.fmt == "json":
            record = {"time": now_iso(), "level": level, "service": self.service, "msg": msg}
            record.update(fields)
            line = json.dumps(record, sort_keys=False, default=str)
        else:
            extra = "".join(" %s=%s" % (k, v) for k, v in fields.items())
            line = "%s %s %s: %s%s" % (now_iso(), level.upper(), self.service, msg, extra)
        with self.lock:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def info(self, msg, **fields):
        self.log("info", msg, **fields)

    def warning(self, msg, **fields):
        self.log("warning", msg, **fields)

    def error(self, msg, **fields):
        self.log("error", msg, **fields)


# --------------------------------------------------------------------------- files

def ensure_private_dir(path):
    """Create path (and parents) with mode 0700 where missing."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)


def append_private_file(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(text)


class InstanceLock:
    """The single-writer lock DATA_DIR/.<service>.lock, held with flock AND lockf."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld("another instance holds %s (pid %s)" % (self.path, holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, ("%d\n" % os.getpid()).encode("ascii"), 0)
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops both the flock and the lockf lock
            self.fd = None


class LockHeld(Exception):
    """Another process holds the single-writer lock."""


class SchemaBehind(Exception):
    """The database's schema head is older than this build's SCHEMA_HEAD: serve/worker refuse to start."""


# --------------------------------------------------------------------------- database

class Database:
    """Thin layer over sqlite3 / psycopg2: one short-lived connection per operation."""

    def __init__(self, url):
        self.url = url
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "sqlite":
            # Paths are always absolute: sqlite:///abs/path and sqlite:////abs/path name the same file.
            if parsed.netloc or not parsed.path.strip("/"):
                raise ConfigError("sqlite DATABASE_URL must be sqlite:///absolute/path")
            self.kind = "sqlite"
            self.path = "/" + parsed.path.lstrip("/")
        elif parsed.scheme in ("postgresql", "postgres"):
            self.kind = "postgresql"
            self.path = None
        else:
            raise ConfigError("DATABASE_URL must start with sqlite:/// or postgresql://, got %s" % redact_url(url))

    @property
    def display(self):
        return redact_url(self.url)

    def _connect(self, create=False, ddl=False):
        if self.kind == "sqlite":
            if create and not os.path.exists(self.path):
                ensure_private_dir(os.path.dirname(self.path))
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            # mode=rw: a missing file is an error, not a new empty database.
            uri = "file:%s?mode=rw" % urllib.parse.quote(self.path)
            if ddl:
                # sqlite3 does not open a transaction before DDL by itself: begin one explicitly, so a
                # migration's CREATE/ALTER statements are rolled back with its rows when it fails.
                conn = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
                conn.execute("BEGIN IMMEDIATE")
                return conn
            return sqlite3.connect(uri, uri=True, timeout=10)
        try:
            import psycopg2  # pylint: disable=import-outside-toplevel
        except ImportError:
            raise DatabaseError("psycopg2 is required for a postgresql:// DATABASE_URL") from None
        return psycopg2.connect(self.url, connect_timeout=5)

    def _sql(self, statement):
        return statement.replace("?", "%s") if self.kind == "postgresql" else statement

    def run(self, work, create=False, ddl=False):
        """Call work(cursor, sql) in one transaction; commit on success, roll back on error.

        ddl=True: the transaction also covers schema changes (SQLite: BEGIN IMMEDIATE)."""
        try:
            conn = self._connect(create=create, ddl=ddl)
        except DatabaseError:
            raise
        except Exception as exc:  # sqlite3.Error, psycopg2.Error: both carry a safe message
            raise DatabaseError(self._describe(exc)) from None
        try:
            cursor = conn.cursor()
            result = work(cursor, self._sql)
            conn.commit()
            return result
        except (DecryptError, ValueError, MigrationError):
            conn.rollback()
            raise
        except Exception as exc:
            try:
                conn.rollback()
            except Exception:  # pylint: disable=broad-except
                pass
            if isinstance(exc, (sqlite3.Error,)) or type(exc).__module__.startswith("psycopg2"):
                raise DatabaseError(self._describe(exc)) from None
            raise
        finally:
            conn.close()

    def _describe(self, exc):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.kind == "postgresql":
            parsed = urllib.parse.urlsplit(self.url)
            if parsed.password:
                text = text.replace(parsed.password, "***")
        return text

    def init_schema(self, head=1):
        """Bootstrap a database without schema: apply the migrations up to head.

        A database that already has a schema (head >= 1) is left alone: moving it forward is `migrate`'s job."""
        if self.kind == "sqlite" and not os.path.exists(self.path):
            self.run(lambda cur, sql: None, create=True)
        if self.schema_head() == 0:
            self.migrate(head)

    def _read_head(self, cur):
        if self.kind == "sqlite":
            cur.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
        else:
            cur.execute("SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_migrations'")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT MAX(version) FROM schema_migrations")
        return cur.fetchone()[0] or 0

    def schema_head(self):
        """The newest applied migration; 0 for a database without schema (or a missing SQLite file)."""
        if self.kind == "sqlite" and not os.path.exists(self.path):
            return 0
        return self.run(lambda cur, _sql: self._read_head(cur))

    def migrate(self, head, fail_first=False):
        """Apply the migrations after the current head up to head, one transaction each.

        Returns (head_before, applied versions).  A database ahead of head is left alone (no downgrades).
        fail_first: the first pending migration fails half-way inside its transaction, after its changes
        (the MIGRATION_FAIL test knob), so the head stays where it was, wherever that is."""
        if self.kind == "sqlite" and not os.path.exists(self.path):
            self.run(lambda cur, sql: None, create=True)
        before = self.schema_head()
        applied = []
        for version in range(before + 1, head + 1):
            name, statements = MIGRATIONS[version - 1]

            def work(cur, sql, version=version, name=name, statements=statements):
                if self.kind == "postgresql":
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATION_LOCK,))
                cur.execute(MIGRATIONS_TABLE[self.kind])
                if self._read_head(cur) >= version:
                    return False  # another migrator applied it first
                statements(self, cur, sql)
                # MIGRATION_FAIL: a statement that violates a constraint (applied_at NOT NULL) after the changes.
                failing = fail_first and version == before + 1
                cur.execute(sql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
                            (version, name, None if failing else now_iso()))
                return True
            try:
                done = self.run(work, ddl=True)
            except (DatabaseError, MigrationError) as exc:
                raise MigrationError("migration %d (%s) failed and was rolled back, the database stays at head %d: %s%s"
                                     % (version, name, version - 1, exc, " (MIGRATION_FAIL is set)" if fail_first else "")) from None
            if done:
                applied.append(version)
        return before, applied

    def ping(self):
        """Raise DatabaseError unless the database answers a query on our schema; return the schema head."""
        def work(cur, _sql):
            cur.execute("SELECT COUNT(*) FROM items")
            cur.fetchone()
            return self._read_head(cur)
        return self.run(work)

    def insert(self, cur, sql, table, columns, values):
        placeholders = ", ".join(["?"] * len(values))
        statement = "INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), placeholders)
        if self.kind == "postgresql":
            cur.execute(sql(statement + " RETURNING id"), values)
            return cur.fetchone()[0]
        cur.execute(statement, values)
        return cur.lastrowid

    def audit(self, cur, sql, event):
        self.insert(cur, sql, "audit_log", ("event", "at"), (event, now_iso()))


def _migration_1(db, cur, _sql):
    for statement in SCHEMA[db.kind]:
        cur.execute(statement)


def _migration_2(db, cur, sql):
    for statement in MIGRATION_2[db.kind]:
        cur.execute(statement)
    for tag in MIGRATION_2_TAGS:
        db.insert(cur, sql, "tags", ("name", "created_at"), (tag, now_iso()))
    cur.execute(sql("UPDATE items SET tag = ?"), (MIGRATION_2_TAGS[0],))


# Migration 3 (only the v4 image targets it, and fails it): an `items.priority` column.
def _migration_3(_db, cur, _sql):
    cur.execute("ALTER TABLE items ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")


# (version - 1) -> (name, function(db, cursor, sql)): the migrations in order.
MIGRATIONS = (
    ("base schema", _migration_1),
    ("tags", _migration_2),
    ("priority", _migration_3),
)


# --------------------------------------------------------------------------- encryption

class SecretBox:
    """Fernet encryption of item secrets with ENCRYPTION_KEY."""

    def __init__(self, key):
        self.fernet = None
        if key:
            from cryptography.fernet import Fernet  # pylint: disable=import-outside-toplevel
            try:
                self.fernet = Fernet(key.encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                raise ConfigError("ENCRYPTION_KEY is not a valid Fernet key (32 url-safe base64-encoded bytes)") from None

    def encrypt(self, plaintext):
        if self.fernet is None:
            raise ValueError("cannot store a secret: ENCRYPTION_KEY is not configured")
        return self.fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token, what="secret"):
        from cryptography.fernet import InvalidToken  # pylint: disable=import-outside-toplevel
        if self.fernet is None:
            raise DecryptError("cannot decrypt %s: ENCRYPTION_KEY is not configured" % what)
        try:
            return self.fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise DecryptError("cannot decrypt %s: ENCRYPTION_KEY does not match the key it was encrypted with" % what) from None


# --------------------------------------------------------------------------- metrics

def _escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Counters and a histogram, rendered by hand in Prometheus text format 0.0.4."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}
        self.bucket_counts = [0] * len(HISTOGRAM_BUCKETS)
        self.duration_sum = 0.0
        self.duration_count = 0
        self.start_time = time.time()

    def observe(self, method, path, status, seconds):
        with self.lock:
            key = (method, path, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            for index, bound in enumerate(HISTOGRAM_BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[index] += 1
            self.duration_sum += seconds
            self.duration_count += 1

    def render(self, settings, gauges):
        out = []
        with self.lock:
            out.append("# HELP app_http_requests_total HTTP requests handled, by method, route and status.")
            out.append("# TYPE app_http_requests_total counter")
            for (method, path, status), count in sorted(self.requests.items()):
                out.append('app_http_requests_total{method="%s",path="%s",status="%s"} %d'
                           % (_escape_label(method), _escape_label(path), _escape_label(status), count))
            out.append("# HELP app_http_request_duration_seconds Time spent handling HTTP requests.")
            out.append("# TYPE app_http_request_duration_seconds histogram")
            for bound, count in zip(HISTOGRAM_BUCKETS, self.bucket_counts):
                out.append('app_http_request_duration_seconds_bucket{le="%s"} %d' % (repr(bound), count))
            out.append('app_http_request_duration_seconds_bucket{le="+Inf"} %d' % self.duration_count)
            out.append("app_http_request_duration_seconds_sum %s" % repr(self.duration_sum))
            out.append("app_http_request_duration_seconds_count %d" % self.duration_count)
        for name, help_text, value in gauges:
            out.append("# HELP %s %s" % (name, help_text))
            out.append("# TYPE %s gauge" % name)
            out.append("%s %s" % (name, value))
        out.append("# HELP app_build_info Build information; the value is always 1.")
        out.append("# TYPE app_build_info gauge")
        out.append('app_build_info{version="%s",service="%s"} 1' % (_escape_label(settings.version), _escape_label(settings.service_name)))
        out.append("# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.")
        out.append("# TYPE process_start_time_seconds gauge")
        out.append("process_start_time_seconds %s" % repr(round(self.start_time, 3)))
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- application

class Application:
    """State shared by the request handlers and the job worker."""

    def __init__(self, settings, logger):
        self.settings = settings
        self.logger = logger
        self.db = Database(settings.database_url)
        self.box = SecretBox(settings.encryption_key)
        self.metrics = Metrics()
        self.job_wakeup = threading.Event()
        self.stopping = threading.Event()
        self.durations_lock = threading.Lock()
        self.durations = {}  # job id -> seconds, for jobs created by this process

    # items ------------------------------------------------------------------
    def list_items(self):
        def work(cur, _sql):
            cur.execute("SELECT id, name, created_at, secret_enc IS NOT NULL FROM items ORDER BY id")
            return [{"id": r[0], "name": r[1], "created_at": r[2], "has_secret": bool(r[3])} for r in cur.fetchall()]
        return self.db.run(work)

    def create_item(self, name, secret):
        secret_enc = self.box.encrypt(secret) if secret is not None else None
        created_at = now_iso()

        def work(cur, sql):
            item_id = self.db.insert(cur, sql, "items", ("name", "secret_enc", "created_at"), (name, secret_enc, created_at))
            self.db.audit(cur, sql, "item.created id=%s" % item_id)
            return item_id
        item_id = self.db.run(work)
        return {"id": item_id, "name": name, "created_at": created_at, "has_secret": secret is not None}

    def get_item(self, item_id):
        def work(cur, sql):
            cur.execute(sql("SELECT id, name, secret_enc, created_at FROM items WHERE id = ?"), (item_id,))
            return cur.fetchone()
        row = self.db.run(work)
        if row is None:
            return None
        secret = self.box.decrypt(row[2], "secret of item %s" % row[0]) if row[2] is not None else None
        return {"id": row[0], "name": row[1], "secret": secret, "created_at": row[3]}

    # jobs -------------------------------------------------------------------
    def job_log(self, job_id, message):
        ensure_private_dir(self.settings.jobs_log_dir)
        append_private_file(os.path.join(self.settings.jobs_log_dir, "%s.log" % job_id), "%s %s\n" % (now_iso(), message))

    def create_job(self, kind, duration):
        created_at = now_iso()

        def work(cur, sql):
            job_id = self.db.insert(cur, sql, "jobs", ("kind", "status", "created_at"), (kind, "queued", created_at))
            self.db.audit(cur, sql, "job.created id=%s kind=%s" % (job_id, kind))
            return job_id
        # Held across the insert so the worker never sees the row before its duration.
        with self.durations_lock:
            job_id = self.db.run(work)
            self.durations[job_id] = duration
        self.job_log(job_id, "job %s created kind=%s duration=%s" % (job_id, kind, duration))
        self.job_wakeup.set()
        return {"id": job_id, "kind": kind, "status": "queued", "created_at": created_at}

    def list_jobs(self):
        def work(cur, _sql):
            cur.execute("SELECT id, kind, status, created_at FROM jobs ORDER BY id")
            return [{"id": r[0], "kind": r[1], "status": r[2], "created_at": r[3]} for r in cur.fetchall()]
        return self.db.run(work)

    def set_job_status(self, job_id, status):
        def work(cur, sql):
            cur.execute(sql("UPDATE jobs SET status = ? WHERE id = ?"), (status, job_id))
        self.db.run(work)

    def next_queued_job(self):
        """Claim the oldest queued job (status running); None when there is none or another worker won it."""
        def work(cur, sql):
            cur.execute(sql("SELECT id, kind FROM jobs WHERE status = ? ORDER BY id LIMIT 1"), ("queued",))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(sql("UPDATE jobs SET status = ? WHERE id = ? AND status = ?"), ("running", row[0], "queued"))
            return tuple(row) if cur.rowcount == 1 else None
        return self.db.run(work)

    def job_worker(self):
        """Run queued jobs one at a time; a job 'works' for its duration, then succeeds."""
        while not self.stopping.is_set():
            try:
                with self.durations_lock:
                    row = self.next_queued_job()
                    duration = self.durations.pop(row[0], 0.0) if row else 0.0
            except DatabaseError as exc:
                self.logger.warning("job worker cannot read the queue", error=str(exc))
                row = None
            if row is None:
                self.job_wakeup.wait(1.0)
                self.job_wakeup.clear()
                continue
            job_id, kind = row
            try:
                self.set_job_status(job_id, "running")
                self.job_log(job_id, "job %s started" % job_id)
                if self.stopping.wait(duration):
                    self.set_job_status(job_id, "failed")
                    self.job_log(job_id, "job %s interrupted by shutdown" % job_id)
                    break
                self.set_job_status(job_id, "succeeded")
                self.job_log(job_id, "job %s succeeded" % job_id)
                self.logger.info("job finished", job=job_id, kind=kind, status="succeeded")
            except (DatabaseError, OSError) as exc:
                self.logger.error("job failed", job=job_id, error=str(exc))
                time.sleep(1.0)

    def mark_interrupted_jobs(self):
        def work(cur, sql):
            cur.execute(sql("UPDATE jobs SET status = ? WHERE status = ?"), ("failed", "running"))
        self.db.run(work)

    # probes -----------------------------------------------------------------
    def readiness_problem(self):
        """None when ready, else a human reason."""
        if self.settings.fail_ready:
            return "FAIL_READY is set"
        try:
            head = self.db.ping()
        except DatabaseError as exc:
            return "database: %s" % exc
        if head < self.settings.schema_head:
            return "schema: the database is at head %d, this build needs %d (run app.py migrate)" % (head, self.settings.schema_head)
        return None

    def gauges(self):
        def work(cur, sql):
            cur.execute("SELECT COUNT(*) FROM items")
            items = cur.fetchone()[0]
            cur.execute(sql("SELECT COUNT(*) FROM jobs WHERE status = ?"), ("queued",))
            return items, cur.fetchone()[0]
        try:
            items, queued = self.db.run(work)
            up = 1
        except DatabaseError:
            items, queued, up = "NaN", "NaN", 0
        return [
            ("app_database_up", "1 when the database answered the last scrape's queries.", up),
            ("app_items", "Number of items stored.", items),
            ("app_jobs_queued", "Number of jobs waiting to run.", queued),
            ("app_uptime_seconds", "Seconds since the process started.", repr(round(time.time() - self.metrics.start_time, 3))),
        ]


ITEM_PATH = re.compile(r"^/api/items/(\d+)$")
ROUTES = ("/healthz", "/readyz", "/ready", "/metrics", "/version", "/api/items", "/api/jobs")


def route_label(path):
    """Bounded label for metrics: the route template, never raw ids or unknown paths."""
    if path in ROUTES:
        return path
    if ITEM_PATH.match(path):
        return "/api/items/{id}"
    return "other"


class RequestHandler(BaseHTTPRequestHandler):
    server_version = "runbook-sample-service"
    sys_version = ""
    app = None  # set by make_server
    timeout = 30  # seconds a client may idle on its socket; bounds how long shutdown waits for it
    _status = 500  # status of the response sent, for metrics and the access log

    # plumbing ----------------------------------------------------------------
    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        """Silence http.server's own access log; handle() logs without headers or query strings."""

    def _send(self, status, body, content_type="application/json", headers=None):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._status = status

    def _json(self, status, payload):
        self._send(status, json.dumps(payload) + "\n")

    def _text(self, status, text):
        self._send(status, text + "\n", "text/plain; charset=utf-8")

    def _error(self, status, message):
        self._json(status, {"error": message})

    def _host_allowed(self):
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        else:
            host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return host in self.app.settings.allowed_hosts

    def _presented_token(self):
        token = self.headers.get("X-Api-Token")
        if token:
            return token.strip()
        auth = self.headers.get("Authorization") or ""
        scheme, _sep, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None

    def _authorized(self, allow_metrics_secret=False):
        settings = self.app.settings
        if settings.auth_disabled and not settings.api_token:
            return True
        if allow_metrics_secret and settings.metrics_secret:
            given = self.headers.get("X-Metrics-Secret")
            if given and hmac.compare_digest(given.encode("utf-8"), settings.metrics_secret.encode("utf-8")):
                return True
        token = self._presented_token()
        if not token:
            return False
        # compare_digest against every accepted token (current and, during rotation, previous).
        matches = [hmac.compare_digest(token.encode("utf-8"), accepted.encode("utf-8")) for accepted in settings.accepted_tokens()]
        return any(matches)

    def _guard(self, allow_metrics_secret=False):
        """403 for a Host not in ALLOWED_HOSTS, 401 for a missing/wrong token; True when allowed."""
        if not self._host_allowed():
            self._error(403, "host not allowed: add it to ALLOWED_HOSTS")
            return False
        if not self._authorized(allow_metrics_secret):
            self._error(401, "missing or invalid API token (X-Api-Token or Authorization: Bearer)")
            return False
        return True

    def _read_json(self):
        length = self.headers.get("Content-Length")
        if not length or not length.isdigit():
            return {}
        if int(length) > MAX_BODY_BYTES:
            raise ValueError("request body too large")
        raw = self.rfile.read(int(length))
        if not raw.strip():
            return {}
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ValueError("request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise ValueError("request body must be a JSON object")
        return payload

    def _dispatch(self):
        started = time.monotonic()
        self._status = 500
        path = urllib.parse.urlsplit(self.path).path
        try:
            self._route(path)
        except DatabaseError as exc:
            self._error(503, "database error: %s" % exc)
        except DecryptError as exc:
            self._error(500, str(exc))
        except ValueError as exc:
            self._error(400, str(exc))
        except Exception as exc:  # pylint: disable=broad-except
            self.app.logger.error("unhandled error", path=route_label(path), error=type(exc).__name__)
            self._error(500, "internal error")
        finally:
            elapsed = time.monotonic() - started
            label = route_label(path)
            self.app.metrics.observe(self.command, label, self._status, elapsed)
            if label not in ("/healthz", "/readyz", "/ready", "/metrics"):
                self.app.logger.info("request", method=self.command, path=path, status=self._status, duration_ms=round(elapsed * 1000, 1))

    def do_GET(self):  # pylint: disable=invalid-name
        self._dispatch()

    def do_HEAD(self):  # pylint: disable=invalid-name
        self._dispatch()

    def do_POST(self):  # pylint: disable=invalid-name
        self._dispatch()

    # routes -----------------------------------------------------------------
    def _route(self, path):
        app = self.app
        method = "GET" if self.command == "HEAD" else self.command
        if path == "/healthz" and method == "GET":
            # The pid lets ctl.sh tell its own process from another one answering on the same port.
            return self._send(200, "ok\n", "text/plain; charset=utf-8", {"X-Process-Id": str(os.getpid())})
        if path == "/readyz" and method == "GET":
            problem = app.readiness_problem()
            return self._text(503, "not ready: %s" % problem) if problem else self._text(200, "ok")
        if path == "/ready" and method == "GET":
            problem = app.readiness_problem()
            if problem is None:
                return self._json(200, {"status": "ready", "checks": {"database": "ok"}})
            database = "error: %s" % problem[len("database: "):] if problem.startswith("database: ") else "ok"
            return self._json(503, {"status": "not_ready", "reason": problem, "checks": {"database": database}})
        if path == "/version" and method == "GET":
            return self._json(200, {"service": app.settings.service_name, "version": app.settings.version})
        if path == "/metrics" and method == "GET":
            if self._guard(allow_metrics_secret=True):
                self._send(200, app.metrics.render(app.settings, app.gauges()), "text/plain; version=0.0.4; charset=utf-8")
            return None
        if path.startswith("/api/"):
            return self._route_api(path, method)
        return self._error(404, "not found")

    def _route_api(self, path, method):
        app = self.app
        if not self._guard():
            return None
        if path == "/api/items":
            if method == "GET":
                items = app.list_items()
                return self._json(200, {"items": items, "count": len(items)})
            if method == "POST":
                payload = self._read_json()
                name = payload.get("name")
                secret = payload.get("secret")
                if not isinstance(name, str) or not name.strip():
                    raise ValueError("field 'name' (non-empty string) is required")
                if secret is not None and not isinstance(secret, str):
                    raise ValueError("field 'secret' must be a string")
                return self._json(201, app.create_item(name.strip(), secret))
            return self._error(405, "method not allowed")
        match = ITEM_PATH.match(path)
        if match:
            if method != "GET":
                return self._error(405, "method not allowed")
            item = app.get_item(int(match.group(1)))
            return self._json(200, item) if item else self._error(404, "item %s not found" % match.group(1))
        if path == "/api/jobs":
            if method == "GET":
                jobs = app.list_jobs()
                return self._json(200, {"jobs": jobs, "count": len(jobs)})
            if method == "POST":
                payload = self._read_json()
                kind = payload.get("kind", "noop")
                duration = payload.get("duration", 0)
                if not isinstance(kind, str) or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", kind):
                    raise ValueError("field 'kind' must be 1-64 letters, digits, '.', '_' or '-'")
                if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 <= duration <= MAX_JOB_DURATION:
                    raise ValueError("field 'duration' must be a number of seconds between 0 and %d" % MAX_JOB_DURATION)
                return self._json(201, app.create_job(kind, float(duration)))
            return self._error(405, "method not allowed")
        return self._error(404, "not found")


class SampleServer(ThreadingHTTPServer):
    # Let in-flight requests finish on shutdown instead of killing their threads.
    daemon_threads = False
    block_on_close = True


def make_server(app):
    handler = type("BoundRequestHandler", (RequestHandler,), {"app": app})
    return SampleServer((app.settings.listen_host, app.settings.port), handler)


# --------------------------------------------------------------------------- commands

def prepare_data_dir(settings):
    ensure_private_dir(settings.data_dir)
    ensure_private_dir(settings.jobs_log_dir)


def take_lock(settings):
    lock = InstanceLock(settings.lock_path)
    lock.acquire()
    return lock


def require_schema(db, settings, logger):
    """Bootstrap an empty database to SCHEMA_HEAD; refuse (SchemaBehind) a database behind it."""
    db.init_schema(settings.schema_head)
    head = db.schema_head()
    if head < settings.schema_head:
        raise SchemaBehind("the database is at schema head %d, this build (version %s) needs head %d: run `app.py migrate` first"
                           % (head, settings.version, settings.schema_head))
    if head > settings.schema_head:
        logger.warning("the database is ahead of this build", database_head=head, build_head=settings.schema_head)
    return head


def start_crash_timer(settings, logger):
    """CRASH_AFTER test knob: the process exits with status 1 that many seconds after it started."""
    if settings.crash_after <= 0:
        return

    def crash():
        logger.error("CRASH_AFTER=%g reached: exiting with status 1 (test knob)" % settings.crash_after)
        os._exit(1)  # pylint: disable=protected-access
    timer = threading.Timer(settings.crash_after, crash)
    timer.daemon = True
    timer.start()


def cmd_serve(settings, logger, _args):
    settings.require_auth_config()
    prepare_data_dir(settings)
    lock = take_lock(settings)
    try:
        app = Application(settings, logger)
        require_schema(app.db, settings, logger)
        app.mark_interrupted_jobs()
        app.db.run(lambda cur, sql: app.db.audit(cur, sql, "startup version=%s" % settings.version))
        if settings.startup_delay > 0:
            logger.info("startup delay", seconds=settings.startup_delay)
            time.sleep(settings.startup_delay)
        try:
            server = make_server(app)
        except OSError as exc:
            raise ConfigError("cannot listen on %s:%d: %s" % (settings.listen_host, settings.port, exc.strerror)) from None

        def on_signal(signum, _frame):
            logger.info("shutting down", signal=signal.Signals(signum).name)
            app.stopping.set()
            app.job_wakeup.set()
            # shutdown() waits for serve_forever() to return: call it from another thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        worker = threading.Thread(target=app.job_worker, name="job-worker", daemon=True)
        worker.start()
        logger.info("listening", host=settings.listen_host, port=server.server_address[1], version=settings.version,
                    database=app.db.display, data_dir=settings.data_dir, pid=os.getpid())
        start_crash_timer(settings, logger)
        server.serve_forever(poll_interval=0.2)
        server.server_close()  # joins the request threads still running
        worker.join(timeout=5)
        try:
            app.db.run(lambda cur, sql: app.db.audit(cur, sql, "shutdown"))
        except DatabaseError:
            pass
        logger.info("stopped")
    finally:
        lock.release()
    return 0


def cmd_worker(settings, logger, _args):
    """Only the job worker, without HTTP and without the single-writer lock: several may run at once."""
    prepare_data_dir(settings)
    app = Application(settings, logger)
    require_schema(app.db, settings, logger)

    def on_signal(signum, _frame):
        logger.info("shutting down", signal=signal.Signals(signum).name)
        app.stopping.set()
        app.job_wakeup.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logger.info("worker started", version=settings.version, database=app.db.display, pid=os.getpid())
    start_crash_timer(settings, logger)
    app.job_worker()
    logger.info("stopped")
    return 0


def cmd_migrate(settings, logger, args):
    """Apply the migrations up to SCHEMA_HEAD (or --head), one transaction each; --status prints the head."""
    db = Database(settings.database_url)
    if args.status:
        print(db.schema_head())
        return 0
    target = args.head if args.head is not None else settings.schema_head
    if not 1 <= target <= len(MIGRATIONS):
        raise ConfigError("--head must be a migration number from 1 to %d" % len(MIGRATIONS))
    if db.kind == "sqlite":
        prepare_data_dir(settings)
    before, applied = db.migrate(target, fail_first=settings.migration_fail)
    after = applied[-1] if applied else before
    if applied:
        logger.info("migrated", database=db.display, head_before=before, head_after=after, applied=",".join(map(str, applied)))
    else:
        logger.info("nothing to migrate", database=db.display, head=before, target=target)
    print(json.dumps({"head_before": before, "head_after": after, "applied": applied}))
    return 0


def cmd_check(settings, logger, _args):
    db = Database(settings.database_url)
    try:
        db.ping()
    except DatabaseError as exc:
        logger.error("database check failed", database=db.display, error=str(exc))
        return 1
    logger.info("database reachable", database=db.display)
    return 0


def cmd_healthcheck(settings, _logger, args):
    host = settings.listen_host if settings.listen_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = "[%s]" % host
    url = "http://%s:%d%s" % (host, settings.port, args.path)
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:  # nosec - loopback probe
            body = response.read(200).decode("utf-8", "replace").strip()
            answered_by = response.headers.get("X-Process-Id")
            print("%s %s" % (response.status, body))
            if args.expect_pid and answered_by != str(args.expect_pid):
                print("answered by pid %s, not %s" % (answered_by, args.expect_pid))
                return 1
            return 0
    except urllib.error.HTTPError as exc:
        print("%s %s" % (exc.code, exc.read(200).decode("utf-8", "replace").strip()))
    except (urllib.error.URLError, OSError) as exc:
        print("unreachable: %s" % getattr(exc, "reason", exc))
    return 1


def cmd_settings(settings, _logger, _args):
    """Non-secret settings as KEY=VALUE lines (ctl.sh reads them)."""
    for key, value in (("DATA_DIR", settings.data_dir), ("LISTEN_HOST", settings.listen_host), ("PORT", settings.port),
                       ("SERVICE_NAME", settings.service_name), ("LOCK_FILE", settings.lock_path)):
        print("%s=%s" % (key, value))
    return 0


def cmd_seed(settings, logger, args):
    if args.items < 0:
        raise ConfigError("--items must be >= 0")
    prepare_data_dir(settings)
    lock = take_lock(settings)
    try:
        app = Application(settings, logger)
        app.db.init_schema(settings.schema_head)

        def work(cur, sql):
            for number in range(1, args.items + 1):
                secret = app.box.encrypt("seed-secret-%d" % number) if app.box.fernet else None
                app.db.insert(cur, sql, "items", ("name", "secret_enc", "created_at"), ("seed-item-%d" % number, secret, now_iso()))
            app.db.audit(cur, sql, "seed items=%d" % args.items)
        app.db.run(work)
    finally:
        lock.release()
    logger.info("seeded", items=args.items)
    return 0


def cmd_reencrypt(settings, logger, args):
    old_key = os.environ.get(args.old_key_env) or settings.env.get(args.old_key_env, "")
    new_key = os.environ.get(args.new_key_env) or settings.env.get(args.new_key_env, "")
    if not old_key or not new_key:
        raise ConfigError("reencrypt needs both keys in the environment: %s and %s must be set" % (args.old_key_env, args.new_key_env))
    old_box = SecretBox(old_key)
    new_box = SecretBox(new_key)
    prepare_data_dir(settings)
    lock = take_lock(settings)
    try:
        db = Database(settings.database_url)
        db.init_schema(settings.schema_head)

        def work(cur, sql):
            cur.execute("SELECT id, secret_enc FROM items WHERE secret_enc IS NOT NULL ORDER BY id")
            rows = cur.fetchall()
            for item_id, secret_enc in rows:
                plaintext = old_box.decrypt(secret_enc, "secret of item %s with %s" % (item_id, args.old_key_env))
                cur.execute(sql("UPDATE items SET secret_enc = ? WHERE id = ?"), (new_box.encrypt(plaintext), item_id))
            db.audit(cur, sql, "reencrypt items=%d" % len(rows))
            return len(rows)
        count = db.run(work)
    finally:
        lock.release()
    logger.info("re-encrypted secrets", items=count)
    print(json.dumps({"reencrypted": count}))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="app.py", description="runbook.ops managed sample service")
    parser.add_argument("--env-file", help="dotenv file (KEY=VALUE) whose values override the environment")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP service (default)")
    sub.add_parser("worker", help="run only the job worker (no HTTP, no single-writer lock)")
    migrate = sub.add_parser("migrate", help="apply the schema migrations up to SCHEMA_HEAD, one transaction each")
    migrate.add_argument("--status", action="store_true", help="print the current schema head as a bare integer and exit")
    migrate.add_argument("--head", type=int, help="migrate to this head instead of SCHEMA_HEAD")
    sub.add_parser("check", help="exit 0 when the database answers a query")
    probe = sub.add_parser("healthcheck", help="GET a probe path of the running service; exit 0 on 2xx")
    probe.add_argument("--path", default="/healthz")
    probe.add_argument("--timeout", type=float, default=3.0)
    probe.add_argument("--expect-pid", type=int, help="fail unless /healthz is answered by this process id")
    sub.add_parser("settings", help="print the non-secret settings as KEY=VALUE")
    seed = sub.add_parser("seed", help="insert test items")
    seed.add_argument("--items", type=int, required=True)
    reencrypt = sub.add_parser("reencrypt", help="re-encrypt all secrets from one key to another in one transaction")
    reencrypt.add_argument("--old-key-env", required=True, help="name of the environment variable holding the current key")
    reencrypt.add_argument("--new-key-env", required=True, help="name of the environment variable holding the new key")
    return parser


COMMANDS = {
    "serve": cmd_serve,
    "worker": cmd_worker,
    "migrate": cmd_migrate,
    "check": cmd_check,
    "healthcheck": cmd_healthcheck,
    "settings": cmd_settings,
    "seed": cmd_seed,
    "reencrypt": cmd_reencrypt,
}


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    os.umask(0o077)
    logger = Logger("app")
    try:
        settings = load_settings(args.env_file)
        logger = Logger(settings.service_name, settings.log_format)
        return COMMANDS[command](settings, logger, args)
    except ConfigError as exc:
        logger.error("configuration error: %s" % exc)
        return EXIT_CONFIG
    except SchemaBehind as exc:
        logger.error("%s refused: %s" % (command, exc))
        return EXIT_CONFIG
    except LockHeld as exc:
        logger.error(str(exc))
        return EXIT_LOCKED
    except MigrationError as exc:
        logger.error("migrate failed: %s" % exc)
        return 1
    except (DatabaseError, DecryptError) as exc:
        logger.error("%s failed: %s" % (command, exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
