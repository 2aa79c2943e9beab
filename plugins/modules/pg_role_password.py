#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_role_password
short_description: Set, rotate, retire or revert a PostgreSQL role's password without sending the plaintext
version_added: 0.2.0
description:
  - Sets the password of a PostgreSQL login role by sending a SCRAM-SHA-256 verifier computed on the managed
    host (C(ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...')). The plaintext never reaches the server, its logs
    (even with C(log_statement = all)) or C(pg_stat_activity). The new password is then proven by logging in
    with it; a login that fails puts the previous verifier back when it could be read, and fails.
  - Idempotent where it can know. Connected as a superuser, the module reads the stored verifier from
    C(pg_authid) and reports no change when the given password already matches it. Without a superuser it
    cannot know, sets the password and says so (RV(known) false).
  - With O(env_file), the matching C(DATABASE_URL)-style key of a dotenv file is rewritten (user and
    password URL-encoded, every other line kept byte for byte) atomically, after a 0600 backup copy whose path
    is returned for O(state=reverted).
  - Alternating users (O(alternate_roles)) - two login roles, both members of one owner role that owns the
    service's objects. The role the env file does not use now gets a fresh password and C(LOGIN), the env file
    is switched to it, and the other keeps working until it is retired with O(state=disabled) once the service
    has been verified on the new one.
  - Passwords never appear in results, messages or diffs; only fingerprints (C(sha256:) and 12 hex digits).
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.secret_generation
options:
  login_host:
    description:
      - PostgreSQL server host name or address, or a directory holding its Unix socket.
      - When omitted, libpq's default (the local Unix socket) is used.
    type: str
    aliases: [host]
  login_port:
    description: PostgreSQL server port.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description: Role to connect as to change passwords; a superuser, or a role with C(CREATEROLE).
    type: str
    aliases: [user]
  login_password:
    description: Password of O(login_user). Never shown.
    type: str
    aliases: [password]
  ssl_mode:
    description: libpq C(sslmode) for the admin connection and the login checks.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  connect_timeout:
    description: Seconds to wait for a connection before giving up.
    type: int
    default: 10
  pg_bin_dir:
    description: Not used by this module (it runs no client tool); accepted so the shared connection options can be passed as they are.
    type: path
  state:
    description:
      - V(present) makes O(new_password) the role's password (unchanged when it already is, see above).
      - V(rotated) always sets a new password, O(new_password) or a generated one (O(generate), O(length)); a
        generated one needs O(env_file), where it is written.
      - V(disabled) retires O(role) - C(NOLOGIN), password C(NULL) - the last step of alternating users.
      - V(reverted) undoes a V(present) or V(rotated) run from its O(env_backup) - the env file back
        byte-identical; the previous password made valid again (single user) or O(role) disabled again
        (alternating users, where the backup's URL names the other role).
      - V(finished) marks the rotation recorded for O(env_file) finished, once the service was verified on the
        new credential (and, with alternating users, the old role disabled); see O(keep_backup).
      - With O(env_file), V(present) and V(rotated) keep a 0600 rotation record beside it
        (C(.<file>.rotation.json), the one of M(runbook.ops.env_secret)) with the phase, the fingerprints of the old
        and new password, the role and the backup path - never a password or verifier. It is written before the
        server or the file changes; see O(resume).
    type: str
    choices: [present, rotated, disabled, reverted, finished]
    default: present
  role:
    description:
      - The login role. Defaults to the user of the URL in O(env_file).
      - With O(alternate_roles) the module picks the role itself; with O(state=reverted), the role the
        reverted run changed (RV(role) of that run).
    type: str
  new_password:
    description:
      - The new password; without it V(rotated) generates one. Never shown.
      - Named so because C(password) is an alias of O(login_password).
    type: str
  alternate_roles:
    description:
      - Two login roles for the alternating-users strategy, for example V([app_a, app_b]). Both must exist and be
        members of one common role. Needs O(env_file) and O(state=rotated).
    type: list
    elements: str
  login_db:
    description: Database the module connects to as O(login_user).
    type: str
    default: postgres
  database:
    description: Database to prove the new password in. Defaults to the database of the URL in O(env_file), else O(login_db).
    type: str
  verify:
    description: Log in as the role with the new password after setting it.
    type: bool
    default: true
  env_file:
    description: A dotenv file whose O(env_key) holds the service's C(postgresql://) URL, rewritten to match.
    type: path
  env_key:
    description: The key of O(env_file) that holds the URL.
    type: str
    default: DATABASE_URL
  env_backup:
    description: With O(state=reverted), the backup of O(env_file) that the reverted run returned (RV(env_backup)).
    type: path
  resume:
    description:
      - With O(env_file), when the rotation record shows an unfinished rotation (a run killed before V(finished) or
        V(reverted)), V(rotated) and V(present) pick it up. If the env file already points at its new password,
        nothing is changed and RV(resumed) is true (restart and verify the service, then V(finished) or
        V(reverted) with RV(env_backup)). If it never reached the env file, the server side is reverted first (the
        old password re-set from the env file, or the switched-to role disabled again) and a fresh rotation follows.
      - Off by default so that callers which never use V(finished) keep rotating afresh each run; the
        C(runbook.ops.rotate_db_password) role turns it on.
    type: bool
    default: false
  keep_backup:
    description: With O(state=finished), keep the env file backup (it holds the old password); otherwise it is removed.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reports what would change; nothing is sent to the server and no file is written.
  diff_mode:
    support: none
    description: Passwords have nothing safe to show as a diff; RV(msg) names what changed.
  idempotent:
    support: partial
    description:
      - V(present) and V(disabled) are idempotent when O(login_user) is a superuser (it can read C(pg_authid)).
      - V(rotated) always changes.
requirements:
  - psycopg2 (Python library)
notes:
  - In the single-user strategy, connections the service opens between the password change and its restart on
    the new env file are refused; alternating users avoid that gap.
  - Disabling a role does not end its open sessions; the service's restart does.
  - With C(log_statement) set to V(ddl) or V(all) the server log shows the verifier (salted, 4096 PBKDF2
    iterations), never the password. A verifier still allows guessing a weak password offline, one more reason to
    let the module generate passwords.
seealso:
  - module: runbook.ops.env_secret
  - name: PostgreSQL ALTER ROLE
    description: Setting a password as a pre-encrypted SCRAM verifier.
    link: https://www.postgresql.org/docs/current/sql-alterrole.html
"""

EXAMPLES = r"""
- name: Rotate the service's database password (single user) and rewrite DATABASE_URL
  runbook.ops.pg_role_password:
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_admin_password }}"
    state: rotated
    env_file: /srv/app/.env
  register: db_password

- name: Switch the service to the idle one of two login roles with a fresh password
  runbook.ops.pg_role_password:
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_admin_password }}"
    state: rotated
    alternate_roles: [app_a, app_b]
    env_file: /srv/app/.env
  register: db_switch

- name: Retire the role the service used before, once it is healthy on the new one
  runbook.ops.pg_role_password:
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_admin_password }}"
    state: disabled
    role: "{{ db_switch.previous_role }}"

- name: Put everything back after a failed health check
  runbook.ops.pg_role_password:
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_admin_password }}"
    state: reverted
    role: "{{ db_password.role }}"
    env_file: /srv/app/.env
    env_backup: "{{ db_password.env_backup }}"

- name: Make sure a role has a known password (no change when pg_authid already matches)
  runbook.ops.pg_role_password:
    login_user: postgres
    role: reporting
    new_password: "{{ vault_reporting_password }}"
"""

RETURN = r"""
role:
  description: The role whose password was set, disabled or reverted.
  returned: always
  type: str
  sample: app_b
previous_role:
  description: The user of the env file's URL before this run (with alternating users, the role to retire next).
  returned: when env_file is given
  type: str
  sample: app_a
active_role:
  description: The role the env file's URL names after this run.
  returned: when state is present or rotated
  type: str
  sample: app_b
owner_roles:
  description: The roles both alternate roles are members of.
  returned: with alternate_roles
  type: list
  elements: str
  sample: [app_owner]
fingerprint:
  description: Fingerprint of the new password (never the password).
  returned: when state is present or rotated
  type: str
  sample: sha256:7c211433f024
known:
  description: Whether the stored verifier could be read (a superuser connection), so that no change could be detected.
  returned: always
  type: bool
  sample: true
verified:
  description: Whether a login with the new password succeeded.
  returned: when state is present or rotated
  type: bool
  sample: true
database:
  description: The database the login was proven in.
  returned: when state is present or rotated
  type: str
  sample: app
resumed:
  description: Whether O(state=rotated) resumed an unfinished rotation of a killed run instead of starting one.
  returned: when state is present or rotated and env_file is given
  type: bool
  sample: false
reverted_unfinished:
  description: What was reverted of an unfinished rotation that never reached the env file, before rotating afresh.
  returned: when state is present or rotated and env_file is given
  type: str
  sample: null
env_changed:
  description: Whether the env file was (or, in check mode, would be) rewritten.
  returned: when env_file is given
  type: bool
  sample: true
env_backup:
  description: The 0600 copy of the env file taken before it was rewritten; give it to O(state=reverted).
  returned: when env_file is given
  type: str
  sample: /srv/app/.env.20261130T183000Z-a1b2c3.bak
msg:
  description: What was done, with fingerprints only.
  returned: always
  type: str
  sample: set the password of app to sha256:7c211433f024 (SCRAM verifier, login verified); pointed DATABASE_URL in /srv/app/.env
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _pg_roles
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import POSTGRES_OPTIONS, SECRET_GENERATION_OPTIONS, merged
from ansible_collections.runbook.ops.plugins.module_utils._postgres import PgServer


def run(module, params):
    server = PgServer(host=params["login_host"], port=params["login_port"], user=params["login_user"],
                      password=params["login_password"], ssl_mode=params["ssl_mode"],
                      connect_timeout=params["connect_timeout"])
    passwords = _pg_roles.RolePasswords(server, database=params["login_db"], check_mode=module.check_mode)
    credential = _pg_roles.DatabaseCredential(passwords, env_file=params["env_file"], env_key=params["env_key"])
    state = params["state"]
    if state == "disabled":
        result = passwords.disable(params["role"])
        verb = "would disable" if module.check_mode else "disabled"
        result["msg"] = ("%s %s (NOLOGIN, password NULL)" % (verb, params["role"]) if result["changed"]
                         else "%s is already disabled" % params["role"])
        return result
    if state == "reverted":
        return credential.revert(params["env_backup"], params["role"])
    if state == "finished":
        return credential.finish(keep_backup=params["keep_backup"])
    return credential.apply(role=params["role"], password=params["new_password"], generate=params["generate"],
                            length=params["length"], database=params["database"], verify=params["verify"],
                            force=state == "rotated", alternate=params["alternate_roles"], resume=params["resume"])


def main():
    handle_termination()
    module = AnsibleModule(
        argument_spec=merged(
            POSTGRES_OPTIONS, SECRET_GENERATION_OPTIONS,
            state={"type": "str", "default": "present", "choices": ["present", "rotated", "disabled", "reverted", "finished"]},
            role={"type": "str"},
            new_password={"type": "str", "no_log": True},
            alternate_roles={"type": "list", "elements": "str"},
            login_db={"type": "str", "default": "postgres"},
            database={"type": "str"},
            verify={"type": "bool", "default": True},
            env_file={"type": "path"},
            env_key={"type": "str", "default": "DATABASE_URL", "no_log": False},
            env_backup={"type": "path"},
            keep_backup={"type": "bool", "default": True},
            resume={"type": "bool", "default": False},
        ),
        required_if=[["state", "present", ["new_password"]], ["state", "disabled", ["role"]],
                     ["state", "reverted", ["role", "env_file", "env_backup"]],
                     ["state", "finished", ["env_file"]]],
        mutually_exclusive=[["role", "alternate_roles"]],
        supports_check_mode=True,
    )
    if _pg_roles.psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    params = module.params
    if params["alternate_roles"] and params["state"] != "rotated":
        module.fail_json(msg="alternate_roles goes with state=rotated (retire the old role with state=disabled)")
    try:
        result = run(module, params)
    except RunbookError as exc:
        fail_with(module, exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
