#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_keys
short_description: Delete Redis keys by pattern - SCAN and UNLINK in batches, capped and rate-limited
version_added: 0.4.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Deletes the keys of one database that match a pattern (for example the login lockout keys
    C(login_attempt:*) of an incident), the way C(redis-cli --scan | xargs redis-cli unlink) does, but safely -
    SCAN in batches (never KEYS, which blocks the server), UNLINK (the values are freed in the background),
    a cap, a rate limit and a dry run.
  - The matches are counted first. When more than O(max_keys) keys match, nothing is deleted and the task fails;
    a pattern that is wider than meant cannot empty a database. Keys created after the count are deleted too,
    but never more than O(max_keys) in all.
  - A pattern without a literal character (V(*), V(?*)) is refused unless O(allow_match_all) is set.
  - Check mode is the dry run - it counts the matching keys and returns a few of their names, deleting nothing.
extends_documentation_fragment:
  - runbook.ops.redis
options:
  pattern:
    description:
      - The keys to delete, as a Redis glob pattern (C(*), C(?), C([abc]), C(\\) to escape).
    type: str
    required: true
  state:
    description: V(absent) deletes the matching keys.
    type: str
    choices: [absent]
    default: absent
  max_keys:
    description: The most keys the task may delete. More matches than this fails before deleting any.
    type: int
    default: 10000
  max_rate:
    description:
      - Keys deleted per second at most, so a large deletion does not crowd out the service's own commands.
        V(0) deletes as fast as the server answers.
    type: int
    default: 5000
  batch_size:
    description: Keys deleted per UNLINK call.
    type: int
    default: 500
  scan_count:
    description:
      - SCAN's COUNT hint - how many slots of the keyspace the server looks at per call. Larger is fewer round
        trips; each call blocks the server a little longer.
    type: int
    default: 1000
  key_type:
    description: Only keys of this type (SCAN's TYPE filter, Redis 6 and later).
    type: str
    choices: [string, list, set, zset, hash, stream]
  allow_match_all:
    description: Allow a pattern that matches every key of the database.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Counts the matching keys and deletes nothing.
  diff_mode:
    support: none
    description: Key values are not read, so there is nothing to show.
  idempotent:
    support: full
    description: A second run finds no matching keys and changes nothing.
seealso:
  - module: runbook.ops.redis_probe
    description: Queue lengths and the server's state before and after.
'''

EXAMPLES = r'''
- name: How many login lockout keys are there? (dry run)
  runbook.ops.redis_keys:
    pattern: "login_attempt:*"
    password: "{{ vault_redis_password }}"
  check_mode: true
  register: lockouts

- name: Clear the login lockouts, at most 20000 keys, 2000 a second
  runbook.ops.redis_keys:
    pattern: "login_attempt:*"
    password: "{{ vault_redis_password }}"
    max_keys: 20000
    max_rate: 2000
'''

RETURN = r'''
pattern:
  description: The pattern.
  returned: always
  type: str
  sample: "login_attempt:*"
matched:
  description: Distinct keys that matched when they were counted, before any deletion.
  returned: success
  type: int
  sample: 10000
deleted:
  description: Keys deleted (0 in check mode).
  returned: success
  type: int
  sample: 10000
batches:
  description: UNLINK calls made.
  returned: success
  type: int
  sample: 20
seconds:
  description: How long counting and deleting took.
  returned: success
  type: float
  sample: 2.1
slept:
  description: Seconds spent waiting to keep under O(max_rate).
  returned: success
  type: float
  sample: 1.2
sample:
  description: Up to 10 of the matching key names.
  returned: success
  type: list
  elements: str
  sample: ["login_attempt:alice", "login_attempt:bob"]
dry_run:
  description: Whether this was a check-mode count.
  returned: success
  type: bool
  sample: false
target:
  description: C(host:port/db).
  returned: always
  type: str
  sample: 127.0.0.1:6379/0
msg:
  description: What was done, in one line.
  returned: always
  type: str
  sample: "deleted 10000 keys matching 'login_attempt:*' at 127.0.0.1:6379/0 in 20 batches, 2.1 s"
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _options, _redis
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def main():
    module = AnsibleModule(
        argument_spec=_options.merged(_options.REDIS_OPTIONS, **{
            "pattern": {"type": "str", "required": True},
            "state": {"type": "str", "default": "absent", "choices": ["absent"]},
            "max_keys": {"type": "int", "default": 10000, "no_log": False},
            "max_rate": {"type": "int", "default": 5000},
            "batch_size": {"type": "int", "default": 500},
            "scan_count": {"type": "int", "default": 1000},
            "key_type": {"type": "str", "choices": ["string", "list", "set", "zset", "hash", "stream"]},
            "allow_match_all": {"type": "bool", "default": False},
        }),
        supports_check_mode=True,
    )
    if not _redis.HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"))
    params = module.params
    try:
        _redis.check_pattern(params["pattern"], params["allow_match_all"])
        target = _redis.RedisTarget.from_params(params)
        result = _redis.delete_matching(target.client(), params["pattern"], params["max_keys"], params["batch_size"],
                                        _redis.Pacer(params["max_rate"]), params["key_type"], module.check_mode, target,
                                        scan_count=params["scan_count"])
    except RunbookError as exc:
        fail_with(module, exc, pattern=params["pattern"])
    result["target"] = target.name
    if module.check_mode:
        result["msg"] = "%d keys match %r at %s; nothing deleted (check mode)" % (result["matched"], params["pattern"], target.name)
    else:
        result["msg"] = "deleted %d keys matching %r at %s in %d batches, %.1f s" % (
            result["deleted"], params["pattern"], target.name, result["batches"], result["seconds"])
    module.exit_json(changed=result["deleted"] > 0, **result)


if __name__ == "__main__":
    main()
