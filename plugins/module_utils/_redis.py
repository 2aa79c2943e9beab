# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only Redis diagnostics through the ``redis`` library: PING, INFO sections, queue lengths.

Every problem the server has (down, wrong password, a database index it does not have, a queue key of
the wrong type) is a finding with a detail for the person on call, never an exception.
``RedisTarget`` owns the connection settings and the client, so later jobs (deletion by pattern with
SCAN + UNLINK) reuse it.  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import time

from ansible_collections.runbook.ops.plugins.module_utils import _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError
from ansible_collections.runbook.ops.plugins.module_utils._findings import finding, one_line

try:
    import redis
    HAS_REDIS = True
except ImportError:  # the module reports missing_required_lib before any work
    redis = None
    HAS_REDIS = False

INFO_SECTIONS = ("server", "memory", "clients", "persistence", "replication", "keyspace")
QUEUE_TYPES = ("auto", "list", "stream", "zset")
# The command that measures each queue type.
_LENGTH_COMMAND = {"list": "LLEN", "stream": "XLEN", "zset": "ZCARD"}


class RedisTarget:
    """Where and how to connect.  The password is only ever handed to the client."""

    def __init__(self, host="127.0.0.1", port=6379, db=0, username=None, password=None, tls=False,
                 tls_ca_path=None, tls_verify=True, timeout=5.0):
        if int(db) < 0:
            raise ParameterError("db must be 0 or more, got %r" % db)
        self.host = host
        self.port = int(port)
        self.db = int(db)
        self.username = username or None
        self.password = password or None
        self.tls = bool(tls)
        self.tls_ca_path = tls_ca_path or None
        self.tls_verify = tls_verify
        self.timeout = float(timeout)

    @property
    def name(self):
        return "%s:%d/%d" % (self.host, self.port, self.db)

    def client(self):
        kwargs = {"host": self.host, "port": self.port, "db": self.db, "username": self.username,
                  "password": self.password, "socket_timeout": self.timeout,
                  "socket_connect_timeout": self.timeout, "decode_responses": False, "retry_on_timeout": False}
        if self.tls:
            kwargs.update({"ssl": True, "ssl_cert_reqs": "required" if self.tls_verify else "none",
                           "ssl_ca_certs": self.tls_ca_path, "ssl_check_hostname": bool(self.tls_verify)})
        return redis.Redis(**kwargs)


class Queue:
    """A named key whose length is watched, with its own warning/critical levels (more items than
    the level)."""

    def __init__(self, key, warn, crit, kind="auto"):
        if kind not in QUEUE_TYPES:
            raise ParameterError("queue %r: type must be one of %s, got %r" % (key, ", ".join(QUEUE_TYPES), kind))
        if warn is not None and crit is not None and warn > crit:
            raise ParameterError("queue %r: the warning level %s is above the critical level %s" % (key, warn, crit))
        self.key = key
        self.warn = warn
        self.crit = crit
        self.kind = kind

    @classmethod
    def from_spec(cls, spec, warn, crit, index=0):
        if isinstance(spec, str):
            return cls(spec, warn, crit)
        if not isinstance(spec, dict) or not spec.get("key"):
            raise ParameterError("queues[%d] must be a key name or a dict with key (and warn, crit, type)" % index)
        unknown = set(spec) - {"key", "warn", "crit", "type"}
        if unknown:
            raise ParameterError("queues[%d]: unknown field(s) %s; use key, warn, crit, type" % (index, ", ".join(sorted(unknown))))

        def number(name, default):
            value = spec.get(name, default)
            if value is None:
                return None
            try:
                return int(value)
            except (TypeError, ValueError):
                raise ParameterError("queues[%d] %s: %s must be a whole number, got %r" % (index, spec["key"], name, value)) from None

        return cls(str(spec["key"]), number("warn", warn), number("crit", crit), spec.get("type") or "auto")

    def levels_text(self):
        parts = []
        if self.warn is not None:
            parts.append("warning over %d" % self.warn)
        if self.crit is not None:
            parts.append("critical over %d" % self.crit)
        return "(%s)" % ", ".join(parts) if parts else ""


def describe_error(exc, target):
    """One human sentence for a redis-py exception."""
    text = one_line(str(exc), 300) or type(exc).__name__
    if isinstance(exc, redis.exceptions.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text \
            or "invalid username-password" in text or "Authentication required" in text:
        return "authentication failed at %s:%d: %s" % (target.host, target.port, text)
    if isinstance(exc, redis.exceptions.ResponseError) and "DB index is out of range" in text:
        return ("database %d does not exist on the server at %s:%d (%s): queues there cannot be read"
                % (target.db, target.host, target.port, text))
    if isinstance(exc, redis.exceptions.TimeoutError):
        return "Redis at %s:%d did not answer within %.0f s: %s" % (target.host, target.port, target.timeout, text)
    if isinstance(exc, redis.exceptions.ConnectionError):
        return "Redis at %s:%d is unreachable: %s" % (target.host, target.port, text)
    return "Redis at %s answered with an error: %s" % (target.name, text)


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _percent(used, total):
    return round(100.0 * used / total, 1) if total else None


def info_findings(info, memory_warn, memory_crit):
    """Findings from INFO: memory against maxmemory, persistence errors, a replica without its primary."""
    out = []
    memory = info.get("memory") or {}
    used, limit = memory.get("used_memory"), memory.get("maxmemory")
    if used is not None:
        share = _percent(used, limit)
        if share is None:
            out.append(finding("redis memory", "ok", memory.get("used_memory_human"), None,
                               "%s used, no maxmemory limit" % memory.get("used_memory_human", used)))
        else:
            state = _status.level(share, memory_warn, memory_crit, ">=")
            out.append(finding("redis memory", state, share, "%",
                               "%s of maxmemory %s used (%.1f%%; warning at %s%%, critical at %s%%)"
                               % (memory.get("used_memory_human"), memory.get("maxmemory_human"), share,
                                  memory_warn, memory_crit)))
    persistence = info.get("persistence") or {}
    problems = []
    if persistence.get("rdb_last_bgsave_status") not in (None, "ok"):
        problems.append("the last RDB save failed")
    if persistence.get("aof_enabled") and persistence.get("aof_last_write_status") not in (None, "ok"):
        problems.append("the last AOF write failed")
    if persistence:
        out.append(finding("redis persistence", "warning" if problems else "ok", None, None,
                           "; ".join(problems) if problems else
                           "RDB %s, AOF %s" % (persistence.get("rdb_last_bgsave_status", "-"),
                                               "on" if persistence.get("aof_enabled") else "off")))
    replication = info.get("replication") or {}
    if replication.get("role") == "slave":
        link = replication.get("master_link_status")
        out.append(finding("redis replication", "ok" if link == "up" else "critical", link, None,
                           "replica of %s:%s, link %s" % (replication.get("master_host"), replication.get("master_port"), link)))
    return out


def probe(target, queues, sections=INFO_SECTIONS, memory_warn=80.0, memory_crit=95.0, client=None):
    """PING, INFO and queue lengths.  Returns the module result: state, findings, info, queues."""
    result = {"target": target.name, "info": {}, "queues": [], "findings": []}
    findings = result["findings"]
    try:
        client = client or target.client()
        started = time.monotonic()
        client.ping()
        latency_ms = round((time.monotonic() - started) * 1000.0, 1)
    except redis.exceptions.RedisError as exc:
        detail = describe_error(exc, target)
        findings.append(finding("redis", "critical", None, None, detail, kind="redis", target=target.name))
        for queue in queues:
            findings.append(finding("queue " + queue.key, "critical", None, "items",
                                    "not read: " + detail, kind="queue", target=target.name))
        result["state"] = "critical"
        return result
    for section in sections:
        try:
            result["info"][section] = client.info(section)
        except redis.exceptions.RedisError as exc:
            result["info"][section] = {}
            findings.append(finding("redis info " + section, "warning", None, None,
                                    "INFO %s failed: %s" % (section, describe_error(exc, target))))
    server = result["info"].get("server") or {}
    role = (result["info"].get("replication") or {}).get("role")
    about = "PING answered in %.1f ms" % latency_ms
    if server.get("redis_version"):
        about += ", Redis %s" % server["redis_version"]
    if role:
        about += ", role %s" % role
    findings.insert(0, finding("redis", "ok", latency_ms, "ms", about, kind="redis", target=target.name))
    findings.extend(info_findings(result["info"], memory_warn, memory_crit))
    for queue in queues:
        entry, item = queue_length(client, queue, target)
        result["queues"].append(entry)
        findings.append(item)
    result["state"] = _status.worst(f["state"] for f in findings)
    return result


def queue_length(client, queue, target):
    """The length of one queue key and its finding; a key of another type is critical."""
    name = "queue " + queue.key
    entry = {"key": queue.key, "type": None, "length": None, "warn": queue.warn, "crit": queue.crit}
    try:
        kind = _text(client.type(queue.key))
        entry["type"] = kind
        if kind == "none":
            entry["length"] = 0
            state = _status.level(0, queue.warn, queue.crit, ">")
            return entry, finding(name, state, 0, "items", "0 items (the key does not exist) %s" % queue.levels_text(),
                                  kind="queue", target=target.name)
        expected = None if queue.kind == "auto" else queue.kind
        if kind not in _LENGTH_COMMAND or (expected and kind != expected):
            want = expected or "a list, stream or sorted set"
            return entry, finding(name, "critical", None, "items",
                                  "the key is a %s, not %s: its length as a queue is unknown" % (kind, want),
                                  kind="queue", target=target.name)
        length = int(client.execute_command(_LENGTH_COMMAND[kind], queue.key))
    except redis.exceptions.RedisError as exc:
        return entry, finding(name, "critical", None, "items", describe_error(exc, target), kind="queue", target=target.name)
    entry["length"] = length
    state = _status.level(length, queue.warn, queue.crit, ">")
    return entry, finding(name, state, length, "items", "%d items %s" % (length, queue.levels_text()),
                          kind="queue", target=target.name)


def queue_thresholds(queues):
    """Rows for a report's thresholds table: one per queue."""
    return [{"metric": "queue " + q.key, "warning": q.warn, "critical": q.crit, "unit": "items"} for q in queues]
