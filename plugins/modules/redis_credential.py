#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_credential
short_description: Rotate a Redis password (requirepass or an ACL user) with an overlap, and the env key that holds it
version_added: 0.2.0
description:
  - Rotates the password of a Redis user on a running Redis 6 or later - V(default) for C(requirepass), or a named
    ACL user - without a moment in which the service's current password stops working.
  - O(state=rotated) adds a new password beside the current one (C(ACL SETUSER) with a C(#<sha256>) rule), proves
    that Redis accepts it, then rewrites the env key the service reads (a bare password or a C(redis://) URL,
    whose password part is percent-encoded) atomically, after a 0600 backup copy of the file. Both passwords work
    until O(state=finished).
  - O(state=finished), after the service was restarted and verified on the new password, removes every other
    password of the user (C(ACL SETUSER <user> !<sha256> ...)).
  - O(state=reverted) puts the env file back byte-identical from O(env_backup), makes Redis accept its password
    again and removes the newer one.
  - Passwords are sent as their SHA-256, the form Redis stores, never in clear; results and messages carry
    fingerprints only (C(sha256:) and 12 hex digits).
  - A Redis without ACL (before 6) or an admin user without permission for ACL commands is refused with a clear
    message and nothing changed.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.secret_generation
options:
  state:
    description: Which step of the rotation to run (see above).
    type: str
    choices: [rotated, finished, reverted]
    default: rotated
  login_host:
    description: Redis host (a loopback or private address).
    type: str
    default: 127.0.0.1
  login_port:
    description: Redis port.
    type: int
    default: 6379
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  username:
    description: The Redis user whose password is rotated; V(default) is the user of C(requirepass).
    type: str
    default: default
  admin_username:
    description:
      - User to run the ACL commands as. Without O(admin_username) and O(admin_password) the module connects as
        O(username) with its current password, which is enough for V(default) in a C(requirepass) setup.
    type: str
  admin_password:
    description: Password of O(admin_username) (or of the V(default) user when O(admin_username) is not given).
    type: str
  env_file:
    description: The service's dotenv file.
    type: path
    required: true
  env_key:
    description: The key of O(env_file) holding the password, or a C(redis://) / C(rediss://) URL with it.
    type: str
    default: REDIS_PASSWORD
  env_backup:
    description: With O(state=reverted), the backup the rotation returned (RV(env_backup)).
    type: path
  new_password:
    description: The new password; a generated one (O(generate), O(length)) when not given. Never shown.
    type: str
  persist:
    description:
      - How to make the ACL change survive a Redis restart. V(none) changes memory only (right when a config
        management tool writes the Redis configuration), V(config-rewrite) runs C(CONFIG REWRITE), V(acl-save)
        runs C(ACL SAVE) (for a Redis with an C(aclfile)).
    type: str
    choices: [none, config-rewrite, acl-save]
    default: none
  timeout:
    description: Seconds to wait for Redis.
    type: float
    default: 5.0
attributes:
  check_mode:
    support: full
    description: Reads the user's password hashes and reports what would change; sends no ACL change and writes no file.
  diff_mode:
    support: none
    description: Passwords have nothing safe to show as a diff; RV(msg) names what changed with fingerprints.
  idempotent:
    support: partial
    description: V(finished) and V(reverted) are idempotent; V(rotated) always adds a new password unless O(new_password) is already in place.
requirements:
  - redis (Python library)
seealso:
  - module: runbook.ops.env_secret
  - name: Redis ACL SETUSER
    description: Password rules, including C(#<hash>) and C(!<hash>).
    link: https://redis.io/docs/latest/commands/acl-setuser/
"""

EXAMPLES = r"""
- name: Add a new Redis password beside the current one and write it to the env file
  runbook.ops.redis_credential:
    state: rotated
    env_file: /srv/app/.env
    env_key: REDIS_URL
    username: app
    admin_username: ops
    admin_password: "{{ vault_redis_admin_password }}"
  register: redis_rotation

- name: Restart the service and check it (here with the sample service's ctl script)
  ansible.builtin.command:
    argv: [/srv/app/ctl.sh, restart, /srv/app/.env]
  changed_when: true

- name: End the overlap - only the new password works from now on
  runbook.ops.redis_credential:
    state: finished
    env_file: /srv/app/.env
    env_key: REDIS_URL
    username: app
    admin_username: ops
    admin_password: "{{ vault_redis_admin_password }}"

- name: Rotate requirepass (the default user), connecting with its current password from the env file
  runbook.ops.redis_credential:
    env_file: /srv/app/.env
    env_key: REDIS_PASSWORD
    persist: config-rewrite
"""

RETURN = r"""
username:
  description: The Redis user whose passwords changed.
  returned: always
  type: str
  sample: app
fingerprint:
  description: Fingerprint of the password the env file holds after this step.
  returned: always
  type: str
  sample: sha256:7c211433f024
previous_fingerprint:
  description: Fingerprint of the password the env file held before the rotation.
  returned: when state is rotated and something changed
  type: str
  sample: sha256:5d41402abc4b
env_backup:
  description: The 0600 copy of the env file taken before it was rewritten; give it to O(state=reverted).
  returned: when state is rotated or reverted
  type: str
  sample: /srv/app/.env.20261130T183000Z-a1b2c3.bak
passwords:
  description: How many passwords the user has after a rotation (2 during the overlap).
  returned: when state is rotated
  type: int
  sample: 2
removed:
  description: How many old passwords O(state=finished) removed.
  returned: when state is finished
  type: int
  sample: 1
msg:
  description: What was done, with fingerprints only.
  returned: always
  type: str
  sample: added sha256:7c211433f024 to Redis user app at 127.0.0.1:6379 (the old one still works until finished)
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _redis_auth
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import SECRET_GENERATION_OPTIONS


def main():
    handle_termination()
    module = AnsibleModule(
        argument_spec=dict(SECRET_GENERATION_OPTIONS, **{
            "state": {"type": "str", "default": "rotated", "choices": ["rotated", "finished", "reverted"]},
            "login_host": {"type": "str", "default": "127.0.0.1"},
            "login_port": {"type": "int", "default": 6379},
            "tls": {"type": "bool", "default": False},
            "username": {"type": "str", "default": "default"},
            "admin_username": {"type": "str"},
            "admin_password": {"type": "str", "no_log": True},
            "env_file": {"type": "path", "required": True},
            "env_key": {"type": "str", "default": "REDIS_PASSWORD", "no_log": False},
            "env_backup": {"type": "path"},
            "new_password": {"type": "str", "no_log": True},
            "persist": {"type": "str", "default": "none", "choices": list(_redis_auth.PERSIST)},
            "timeout": {"type": "float", "default": 5.0},
        }),
        required_if=[["state", "reverted", ["env_backup"]]],
        supports_check_mode=True,
    )
    if _redis_auth.redis is None:
        module.fail_json(msg=missing_required_lib("redis"))
    params = module.params
    try:
        auth = _redis_auth.RedisAuth(host=params["login_host"], port=params["login_port"], username=params["username"],
                                     admin_username=params["admin_username"], admin_password=params["admin_password"],
                                     tls=params["tls"], timeout=params["timeout"], check_mode=module.check_mode)
        credential = _redis_auth.RedisCredential(auth, params["env_file"], params["env_key"], persist=params["persist"])
        if params["state"] == "rotated":
            result = credential.rotate(params["new_password"], params["generate"], params["length"])
        elif params["state"] == "finished":
            result = credential.finish()
        else:
            result = credential.revert(params["env_backup"])
    except RunbookError as exc:
        fail_with(module, exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
