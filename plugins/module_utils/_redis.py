# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis through the ``redis`` library: PING, INFO sections and queue lengths (read-only), and the
deletion of keys by pattern with SCAN + UNLINK (``delete_matching``).

Every problem the server has (down, wrong password, a database index it does not have, a queue key of
the wrong type) is a finding with a detail for the person on call, never an exception.
``RedisTarget`` owns the connection settings and the client for both.  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import time

from ansible_collections.runbook.ops.plugins.module_utils import _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, RedisKeysError
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

    @classmethod
    def from_params(cls, params):
        """From a module's _options.REDIS_OPTIONS parameters."""
        return cls(params["host"], params["port"], params["db"], params["username"], params["password"],
                   params["tls"], params["tls_ca_path"], params["tls_verify"], params["timeout"])

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


def has_literal(pattern):
    """Whether a Redis glob pattern has a literal character outside ``*``, ``?`` and ``[...]`` classes."""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            return index + 1 < len(pattern)
        if char == "[":
            end = pattern.find("]", index + 2)
            index = len(pattern) if end < 0 else end + 1
            continue
        if char not in "*?":
            return True
        index += 1
    return False


def check_pattern(pattern, allow_match_all=False):
    """Refuse an empty pattern, and one with no literal character (it matches nearly every key) unless asked."""
    if not pattern:
        raise ParameterError("pattern must not be empty")
    if not allow_match_all and not has_literal(pattern):
        raise ParameterError("pattern %r has no literal character, so it matches every key; give a prefix (for "
                             "example login_attempt:*) or set allow_match_all to delete them all" % pattern)


class Pacer:
    """Keeps deletions under ``rate`` keys a second by sleeping between batches (0: no limit)."""

    def __init__(self, rate, clock=time.monotonic, sleep=time.sleep):
        if rate < 0:
            raise ParameterError("max_rate must be 0 (no limit) or more, got %r" % rate)
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.started = clock()
        self.slept = 0.0

    def start(self):
        """The deletions begin now (counting before them does not earn credit)."""
        self.started = self.clock()

    def done(self, count):
        """After ``count`` keys in all: wait until that many are due at the rate."""
        if not self.rate:
            return
        wait = self.started + count / float(self.rate) - self.clock()
        if wait > 0:
            self.sleep(wait)
            self.slept += wait


def _scan(client, pattern, batch, key_type):
    kwargs = {"match": pattern, "count": batch}
    if key_type:
        kwargs["_type"] = key_type
    return client.scan_iter(**kwargs)


def count_matching(client, pattern, batch=1000, key_type=None, limit=None):
    """How many distinct keys match, counting no further than ``limit`` + 1 (SCAN may repeat a key)."""
    seen = set()
    for key in _scan(client, pattern, batch, key_type):
        seen.add(key)
        if limit is not None and len(seen) > limit:
            break
    return len(seen)


def delete_matching(client, pattern, max_keys, batch=500, pacer=None, key_type=None, dry_run=False, target=None,
                    samples=10, scan_count=1000):
    """Delete the keys matching ``pattern`` with SCAN + UNLINK in batches, never KEYS.

    First counts the matches (up to max_keys + 1): more than ``max_keys`` refuses before deleting anything,
    so a wrong pattern cannot empty a database.  Keys created after the count are deleted too, but never
    more than ``max_keys`` in all.  ``dry_run`` only counts.  UNLINK frees the values in the background,
    so the server is not blocked by large ones; a ``Pacer`` keeps the deletions under its rate.
    ``scan_count`` is SCAN's COUNT hint (work per call), ``batch`` the keys per UNLINK.
    Returns matched, deleted, batches, seconds, sample (a few key names).
    """
    if max_keys < 1:
        raise ParameterError("max_keys must be 1 or more, got %r" % max_keys)
    if batch < 1 or scan_count < 1:
        raise ParameterError("batch_size and scan_count must be 1 or more, got %r and %r" % (batch, scan_count))
    where = target.name if target else "the server"
    started = time.monotonic()
    try:
        matched = count_matching(client, pattern, scan_count, key_type, limit=max_keys)
        if matched > max_keys:
            raise RedisKeysError("more than %d keys match %r at %s (max_keys); nothing was deleted. Narrow the "
                                 "pattern or raise max_keys" % (max_keys, pattern, where))
        result = {"pattern": pattern, "matched": matched, "deleted": 0, "batches": 0, "sample": [],
                  "dry_run": dry_run, "max_keys": max_keys}
        if dry_run:
            result["sample"] = [_text(key) for key in _first(_scan(client, pattern, scan_count, key_type), samples)]
            result["seconds"] = round(time.monotonic() - started, 3)
            return result
        pacer = pacer or Pacer(0)
        pacer.start()
        pending = []
        for key in _scan(client, pattern, scan_count, key_type):
            if len(result["sample"]) < samples:
                result["sample"].append(_text(key))
            pending.append(key)
            if len(pending) >= min(batch, max_keys - result["deleted"]):
                _unlink(client, pending, result, pacer)
                if result["deleted"] >= max_keys:
                    break
        if pending and result["deleted"] < max_keys:
            _unlink(client, pending[:max_keys - result["deleted"]], result, pacer)
    except redis.exceptions.RedisError as exc:
        raise RedisKeysError(describe_error(exc, target) if target else str(exc))
    result["seconds"] = round(time.monotonic() - started, 3)
    result["slept"] = round(pacer.slept, 3)
    return result


def _first(keys, count):
    out = []
    for key in keys:
        if len(out) >= count:
            break
        out.append(key)
    return out


def _unlink(client, keys, result, pacer):
    # UNLINK answers how many of the keys still existed: a key SCAN returned twice, or one that expired
    # meanwhile, is not counted twice.
    result["deleted"] += int(client.unlink(*keys))
    result["batches"] += 1
    keys[:] = []
    pacer.done(result["deleted"])
