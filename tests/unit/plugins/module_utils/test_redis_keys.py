# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pattern guard, the pacing and the batching of _redis.delete_matching; the real server is in
tests/integration/diagnostics/test_redis_keys.py."""

from __future__ import annotations

import fnmatch

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _redis
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, RedisKeysError


class Keyspace:
    """SCAN (returning every key twice, as SCAN may) and UNLINK over a dict: only the batching logic is tested here."""

    def __init__(self, keys):
        self.keys = set(keys)
        self.unlinks = []

    def scan_iter(self, match, count, _type=None):
        for key in sorted(self.keys):
            if fnmatch.fnmatchcase(key.decode(), match):
                yield key
                yield key

    def unlink(self, *keys):
        self.unlinks.append(len(keys))
        gone = self.keys.intersection(keys)
        self.keys -= gone
        return len(gone)


def keyspace(matching, others):
    return Keyspace([b"login_attempt:%d" % i for i in range(matching)] + [b"session:%d" % i for i in range(others)])


@pytest.mark.parametrize("pattern", ["*", "**", "?*", "[a-z]*", "[*]?"])
def test_patterns_matching_everything_are_refused(pattern):
    with pytest.raises(ParameterError, match="matches every key"):
        _redis.check_pattern(pattern)
    _redis.check_pattern(pattern, allow_match_all=True)


def test_an_empty_pattern_is_refused_and_a_prefix_is_fine():
    with pytest.raises(ParameterError, match="must not be empty"):
        _redis.check_pattern("", allow_match_all=True)
    _redis.check_pattern("login_attempt:*")


def test_only_matching_keys_go_in_batches_and_duplicates_count_once():
    space = keyspace(1050, 300)
    result = _redis.delete_matching(space, "login_attempt:*", max_keys=5000, batch=500)
    assert result["matched"] == 1050 and result["deleted"] == 1050
    assert space.keys == {b"session:%d" % i for i in range(300)}
    assert max(space.unlinks) <= 500 and result["batches"] == len(space.unlinks)
    assert len(result["sample"]) == 10 and all(name.startswith("login_attempt:") for name in result["sample"])


def test_more_matches_than_the_cap_deletes_nothing():
    space = keyspace(101, 5)
    with pytest.raises(RedisKeysError, match="more than 100 keys match 'login_attempt:\\*'.*nothing was deleted"):
        _redis.delete_matching(space, "login_attempt:*", max_keys=100)
    assert space.unlinks == [] and len(space.keys) == 106


def test_dry_run_counts_and_deletes_nothing():
    space = keyspace(30, 5)
    result = _redis.delete_matching(space, "login_attempt:*", max_keys=100, dry_run=True)
    assert result["matched"] == 30 and result["deleted"] == 0 and space.unlinks == []
    assert len(result["sample"]) == 10


def test_keys_created_after_the_count_never_take_it_over_the_cap():
    space = keyspace(10, 0)
    real_scan = space.scan_iter
    calls = []

    def growing_scan(match, count, _type=None):
        calls.append(match)
        if len(calls) == 2:  # the deletion pass: five more lockouts appeared since the count
            space.keys.update(b"login_attempt:new%d" % i for i in range(5))
        return real_scan(match, count, _type)

    space.scan_iter = growing_scan
    result = _redis.delete_matching(space, "login_attempt:*", max_keys=12, batch=4)
    assert result["matched"] == 10 and result["deleted"] == 12 and len(space.keys) == 3


class Clock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_pacer_keeps_under_the_rate():
    clock = Clock()
    pacer = _redis.Pacer(1000, clock=clock, sleep=clock.sleep)
    pacer.done(500)
    assert clock.sleeps == [0.5]
    clock.now += 2.0  # the next batch took longer than its share: no wait
    pacer.done(1000)
    assert clock.sleeps == [0.5] and pacer.slept == 0.5
    assert _redis.Pacer(0, clock=clock, sleep=clock.sleep).done(10 ** 6) is None and clock.sleeps == [0.5]
    with pytest.raises(ParameterError, match="max_rate"):
        _redis.Pacer(-1)


def test_bad_numbers_are_refused():
    with pytest.raises(ParameterError, match="max_keys"):
        _redis.delete_matching(keyspace(1, 0), "login_attempt:*", max_keys=0)
    with pytest.raises(ParameterError, match="batch_size and scan_count"):
        _redis.delete_matching(keyspace(1, 0), "login_attempt:*", max_keys=1, batch=0)


@pytest.mark.parametrize("pattern", ["a*", "*:lock", "\\**", "[ab]x*", "login_attempt:?"])
def test_patterns_with_a_literal_character_pass(pattern):
    assert _redis.has_literal(pattern)
