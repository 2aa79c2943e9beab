# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""redis_keys against the real Redis server: 10,000 login lockout keys among 50,000 others, each test's
keys under a unique prefix so the shared server's other keys are never matched."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

MODULE = "runbook.ops.redis_keys"
LOCKOUTS, OTHERS = 10000, 50000


@pytest.fixture()
def keyspace(redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix = "rbops-t-%s:" % uuid.uuid4().hex[:10]
    pipe = client.pipeline(transaction=False)
    for index in range(LOCKOUTS):
        pipe.set("%slogin_attempt:user%d" % (prefix, index), index)
    for index in range(OTHERS):
        pipe.set("%ssession:user%d" % (prefix, index), index)
    pipe.rpush(prefix + "login_attempt_queue", *range(10))  # a list: only for the key_type filter
    pipe.execute()
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*", count=5000):
        client.unlink(key)
    client.close()


def count(client, pattern):
    return sum(1 for _key in client.scan_iter(match=pattern, count=5000))


def params(redis_url, pattern, **extra):
    parsed = redis.connection.parse_url(redis_url)
    out = {"host": parsed.get("host", "127.0.0.1"), "port": parsed.get("port", 6379), "db": parsed.get("db", 0),
           "pattern": pattern}
    out.update(extra)
    return out


def test_only_the_matching_keys_go_and_the_server_stays_responsive(keyspace, redis_url, ansible_module):
    client, prefix = keyspace
    pattern = prefix + "login_attempt:*"

    dry = ansible_module(MODULE, params(redis_url, pattern, max_keys=20000), check=True).result
    assert not dry["changed"] and dry["matched"] == LOCKOUTS and dry["deleted"] == 0 and dry["dry_run"]
    assert count(client, pattern) == LOCKOUTS and "nothing deleted (check mode)" in dry["msg"]

    capped = ansible_module(MODULE, params(redis_url, pattern, max_keys=LOCKOUTS - 1))
    assert capped.failed and "more than 9999 keys match" in capped.result["msg"]
    assert "nothing was deleted" in capped.result["msg"] and "Traceback" not in capped.output
    assert count(client, pattern) == LOCKOUTS

    # Latency of the service's own commands while the deletion runs: a client PINGs every 5 ms.
    latencies, stop = [], threading.Event()

    def ping():
        probe = redis.Redis.from_url(redis_url)
        while not stop.is_set():
            started = time.monotonic()
            probe.ping()
            latencies.append((time.monotonic() - started) * 1000.0)
            time.sleep(0.005)
        probe.close()

    pinger = threading.Thread(target=ping)
    pinger.start()
    try:
        run = ansible_module(MODULE, params(redis_url, pattern, max_keys=20000, max_rate=20000, batch_size=500))
    finally:
        stop.set()
        pinger.join()
    result = run.result
    assert result["changed"] and result["matched"] == LOCKOUTS and result["deleted"] == LOCKOUTS
    assert result["batches"] >= LOCKOUTS // 500
    assert count(client, pattern) == 0
    assert count(client, prefix + "session:*") == OTHERS
    assert client.llen(prefix + "login_attempt_queue") == 10
    # Generous for a loaded 2-core test machine; the closing note's figure comes from a quiet run.
    print("deleted %d of %d keys in %.2f s; PING latency max %.2f ms over %d pings"
          % (LOCKOUTS, LOCKOUTS + OTHERS, result["seconds"], max(latencies), len(latencies)))
    assert latencies and sorted(latencies)[len(latencies) // 2] < 20

    again = ansible_module(MODULE, params(redis_url, pattern)).result
    assert not again["changed"] and again["matched"] == 0 and again["deleted"] == 0


def test_rate_limit_type_filter_and_refused_patterns(keyspace, redis_url, ansible_module):
    client, prefix = keyspace
    slow = ansible_module(MODULE, params(redis_url, prefix + "login_attempt:user1?", max_rate=20, batch_size=5)).result
    # 10 keys at 20 a second in batches of 5: the second batch waits about half a second.
    assert slow["deleted"] == 10 and slow["slept"] >= 0.3 and slow["seconds"] >= 0.4

    typed = ansible_module(MODULE, params(redis_url, prefix + "login_attempt*", key_type="list")).result
    assert typed["deleted"] == 1 and client.exists(prefix + "login_attempt_queue") == 0
    assert count(client, prefix + "login_attempt:*") == LOCKOUTS - 10

    for pattern in ("*", "[a-z]*?"):
        refused = ansible_module(MODULE, params(redis_url, pattern))
        assert refused.failed and "matches every key" in refused.result["msg"]
    assert count(client, prefix + "*") == LOCKOUTS - 10 + OTHERS


def test_unreachable_redis_is_a_clear_failure(ansible_module):
    run = ansible_module(MODULE, {"host": "127.0.0.1", "port": 1, "pattern": "login_attempt:*", "timeout": 2,
                                  "password": "never-shown-9f3k"}, verbosity=3)
    assert run.failed and "unreachable" in run.result["msg"] and "Traceback" not in run.output
    assert "never-shown-9f3k" not in run.output
