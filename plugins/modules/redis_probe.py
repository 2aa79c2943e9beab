#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: redis_probe
short_description: Check a Redis server - PING, INFO sections and queue lengths
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Connects with the C(redis) Python library (no C(redis-cli)), sends PING, reads INFO sections (server, memory,
    clients, persistence, replication, keyspace) and the length of named queue keys (LLEN, XLEN or ZCARD by the
    key's type), each queue with its own warning and critical levels.
  - Every problem is a finding rated V(ok), V(warning) or V(critical) with a human detail, never a crash - Redis
    down, a wrong password, a database index the server does not have (V(16) on a 16-database server), a queue
    key that is a hash.
  - Read-only.
extends_documentation_fragment:
  - runbook.ops.redis
  - runbook.ops.read_only_check
options:
  info_sections:
    description: The INFO sections to read and return.
    type: list
    elements: str
    default: [server, memory, clients, persistence, replication, keyspace]
  queues:
    description:
      - Keys whose length is checked, as names or dicts C({key, warn, crit, type}). More items than C(warn) is a
        warning, more than C(crit) critical. C(type) V(auto) (default) measures a list with LLEN, a stream with XLEN
        and a sorted set with ZCARD; any other type is critical. A key that does not exist has 0 items.
    type: list
    elements: raw
    default: []
  queue_warn:
    description: The warning level of queues that do not give their own C(warn).
    type: int
    default: 100
  queue_crit:
    description: The critical level of queues that do not give their own C(crit).
    type: int
    default: 1000
  memory_warn_percent:
    description: Used memory at or over this percent of C(maxmemory) is a warning (no finding level without C(maxmemory)).
    type: float
    default: 80
  memory_crit_percent:
    description: Used memory at or over this percent of C(maxmemory) is critical.
    type: float
    default: 95
seealso:
  - module: runbook.ops.check_report
    description: Turns the findings into the daily report.
'''

EXAMPLES = r'''
- name: Queue backlog and Redis health
  runbook.ops.redis_probe:
    host: 127.0.0.1
    port: 6379
    db: 0
    password: "{{ vault_redis_password }}"
    queues:
      - jobs
      - {key: emails, warn: 50, crit: 500}
      - {key: events, type: stream}
    fail_on: never
  register: redis
'''

RETURN = r'''
state:
  description: The worst state of the findings.
  returned: always
  type: str
  sample: warning
findings:
  description: C(redis) (PING), C(redis memory), C(redis persistence), C(redis replication) (replicas) and one C(queue <key>) per queue.
  returned: always
  type: list
  elements: dict
  sample: [{check: redis, state: ok, value: 0.4, unit: ms, detail: "PING answered in 0.4 ms, Redis 7.0.15, role master"},
           {check: queue jobs, state: warning, value: 150, unit: items, detail: "150 items (warning over 100, critical over 1000)"}]
queues:
  description: Each queue's key, type, length and levels (length null when it could not be read).
  returned: always
  type: list
  elements: dict
  sample: [{key: jobs, type: list, length: 150, warn: 100, crit: 1000}]
info:
  description: The INFO sections read, as the server gave them (empty when Redis could not be reached).
  returned: always
  type: dict
  sample: {memory: {used_memory: 1112248, used_memory_human: 1.06M, maxmemory: 0}, keyspace: {db0: {keys: 3, expires: 0}}}
target:
  description: C(host:port/db).
  returned: always
  type: str
  sample: 127.0.0.1:6379/0
thresholds:
  description: One row per queue for a report's thresholds table.
  returned: always
  type: list
  elements: dict
  sample: [{metric: queue jobs, warning: 100, critical: 1000, unit: items}]
msg:
  description: One line with the counts and the problems.
  returned: always
  type: str
  sample: "3 of 4 checks ok, overall warning - queue jobs warning: 150 items (warning over 100, critical over 1000)"
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _options, _redis, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import exit_with_findings, fail_with


def main():
    module = AnsibleModule(
        argument_spec=_options.merged(_options.REDIS_OPTIONS, **{
            "info_sections": {"type": "list", "elements": "str", "default": list(_redis.INFO_SECTIONS)},
            "queues": {"type": "list", "elements": "raw", "default": []},
            "queue_warn": {"type": "int", "default": 100},
            "queue_crit": {"type": "int", "default": 1000},
            "memory_warn_percent": {"type": "float", "default": 80},
            "memory_crit_percent": {"type": "float", "default": 95},
            "fail_on": dict(_status.FAIL_ON_ARGSPEC),
        }),
        supports_check_mode=True,
    )
    if not _redis.HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"))
    params = module.params
    try:
        target = _redis.RedisTarget.from_params(params)
        queues = [_redis.Queue.from_spec(spec, params["queue_warn"], params["queue_crit"], index)
                  for index, spec in enumerate(params["queues"])]
        result = _redis.probe(target, queues, params["info_sections"], params["memory_warn_percent"],
                              params["memory_crit_percent"])
    except RunbookError as exc:
        fail_with(module, exc)
    result["thresholds"] = _redis.queue_thresholds(queues)
    exit_with_findings(module, result, params["fail_on"])


if __name__ == "__main__":
    main()
