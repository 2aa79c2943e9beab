# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Where and how to reach a Redis server (redis_probe, redis_keys): _options.REDIS_OPTIONS.
    DOCUMENTATION = r"""
options:
  host:
    description: The Redis server's address.
    type: str
    default: 127.0.0.1
  port:
    description: The Redis server's port.
    type: int
    default: 6379
  db:
    description: The database index to select.
    type: int
    default: 0
  username:
    description: The ACL user (Redis 6 and later); empty for the default user.
    type: str
  password:
    description: The password (of O(username), or C(requirepass)). Never returned or logged.
    type: str
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  tls_ca_path:
    description: A CA bundle to verify the server's certificate with, instead of the system's.
    type: path
  tls_verify:
    description: Verify the server's certificate and name when O(tls) is on.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the connection and for each answer.
    type: float
    default: 5
requirements:
  - redis (the Python library)
"""
