# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Env values and error wording of _redis_auth (the server side is covered by tests/integration/rotation2)."""

from __future__ import annotations

import hashlib

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _redis_auth as ra


def test_password_hash_is_what_redis_stores():
    assert ra.password_hash("foobar") == hashlib.sha256(b"foobar").hexdigest()


@pytest.mark.parametrize("value, password", [
    ("plain-pw", "plain-pw"),
    ("redis://:s%40cret@127.0.0.1:6379/0", "s@cret"),
    ("rediss://app:pw@cache.internal:6380", "pw"),
    ("redis://127.0.0.1:6379/0", None),
    (None, None),
])
def test_value_password(value, password):
    assert ra.value_password(value) == password


def test_value_with_password_keeps_the_rest_of_the_url():
    assert ra.value_with_password("plain", "new") == "new"
    assert ra.value_with_password("redis://app:old@h:6379/2?x=1", "n/w@:") == "redis://app:n%2Fw%40%3A@h:6379/2?x=1"
    assert ra.value_with_password("redis://h:6379/0", "n", username="app") == "redis://app:n@h:6379/0"
    assert ra.value_with_password("redis://h:6379/0", "n", username="default") == "redis://:n@h:6379/0"


@pytest.mark.skipif(ra.redis is None, reason="redis library missing")
@pytest.mark.parametrize("text, reason", [
    ("ERR unknown command 'ACL', with args beginning with: 'SETUSER'", "this Redis has no ACL support"),
    ("NOPERM User app has no permissions to run the 'acl|setuser' command", "the admin user may not run ACL commands"),
])
def test_acl_errors_name_the_reason(text, reason):
    auth = ra.RedisAuth(port=1, username="app")
    message = auth._acl_message(ra.redis.ResponseError(text))
    assert reason in message and message.endswith("nothing was changed")
