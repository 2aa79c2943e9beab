# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_role_password against the real PostgreSQL, with log_statement = all on the test's database."""

from __future__ import annotations

import json
import os

from conftest import new_password

MODULE = "runbook.ops.pg_role_password"


def write_env(path, url):
    text = "# app settings\nexport DATABASE_URL='%s'  # rotated by runbook.ops\nAPI_TOKEN=abc\n" % url
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o640)
    return text.encode()


def env_url(path):
    from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile
    return EnvFile.load(str(path)).get("DATABASE_URL")


def test_rotate_single_user_never_sends_the_plaintext(tmp_path, pg_roles, ansible_module):
    old = new_password()
    role = pg_roles.create("app", password=old)
    pg_roles.grant_database(role)
    env_file = tmp_path / "app.env"
    before = write_env(env_file, pg_roles.url(role, old))
    run = ansible_module(MODULE, pg_roles.module_params(state="rotated", env_file=str(env_file)), verbosity=3)
    result = run.result
    assert not run.failed, run.output
    assert result["changed"] and result["verified"] and result["known"] and result["env_changed"]
    assert result["role"] == role and result["active_role"] == role and result["database"] == pg_roles.database
    new_url = env_url(env_file)
    from ansible_collections.runbook.ops.plugins.module_utils._pg_roles import url_credentials
    user, new = url_credentials(new_url)
    assert user == role and new != old
    assert pg_roles.can_login(role, new) and not pg_roles.can_login(role, old)
    verifier, _login = pg_roles.stored(role)
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    # every other byte of the env file is kept; mode too; the backup is the old file, 0600
    after = env_file.read_bytes()
    assert after == before.replace(pg_roles.url(role, old).encode(), new_url.encode())
    assert oct(os.stat(env_file).st_mode & 0o777) == "0o640"
    assert open(result["env_backup"], "rb").read() == before and os.stat(result["env_backup"]).st_mode & 0o777 == 0o600
    # the server log saw the ALTER ROLE (statement logging works) with the verifier, never a password
    log = pg_roles.log.text()
    assert "ALTER ROLE \"%s\" PASSWORD 'SCRAM-SHA-256$4096:" % role in log, log[-3000:]
    for secret in (new, old):
        assert secret not in log
        assert secret not in run.output and secret not in json.dumps(run.records)
    assert result["fingerprint"] in run.output


def test_present_is_idempotent_and_check_mode_changes_nothing(tmp_path, pg_roles, ansible_module):
    role = pg_roles.create("idem", password=new_password())
    wanted = new_password()
    params = pg_roles.module_params(state="present", role=role, new_password=wanted, database="postgres")
    check = ansible_module(MODULE, params, check=True)
    assert not check.failed and check.result["changed"], check.output
    assert not pg_roles.can_login(role, wanted, "postgres")
    stored_before = pg_roles.stored(role)
    first = ansible_module(MODULE, params)
    assert not first.failed and first.result["changed"] and first.result["verified"], first.output
    assert pg_roles.stored(role) != stored_before and pg_roles.can_login(role, wanted, "postgres")
    stored_after = pg_roles.stored(role)
    second = ansible_module(MODULE, params)
    assert not second.failed and not second.result["changed"] and second.result["known"], second.output
    assert pg_roles.stored(role) == stored_after  # same salt: nothing was sent
    assert wanted not in pg_roles.log.text()


def test_missing_role_is_a_clear_error_and_nothing_changes(tmp_path, pg_roles, ansible_module):
    env_file = tmp_path / "app.env"
    ghost = pg_roles.name("ghost")
    before = write_env(env_file, pg_roles.url(ghost, "pw"))
    run = ansible_module(MODULE, pg_roles.module_params(state="rotated", env_file=str(env_file)))
    assert run.failed
    assert run.result["msg"] == "role %s does not exist on 127.0.0.1:5432; create it first (nothing was changed)" % ghost
    assert env_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("app.env.")] == []


def test_failed_login_puts_the_old_verifier_back(tmp_path, pg_roles, ansible_module):
    old = new_password()
    role = pg_roles.create("nologin", password=old, login=False)
    stored = pg_roles.stored(role)
    env_file = tmp_path / "app.env"
    before = write_env(env_file, pg_roles.url(role, old))
    run = ansible_module(MODULE, pg_roles.module_params(state="rotated", env_file=str(env_file)))
    assert run.failed
    assert "login as %s failed" % role in run.result["msg"] and "the previous password was put back" in run.result["msg"]
    assert pg_roles.stored(role) == stored  # byte-identical verifier, same salt
    assert env_file.read_bytes() == before


def test_revert_single_user_restores_file_and_old_password(tmp_path, pg_roles, ansible_module):
    old = new_password()
    role = pg_roles.create("rev", password=old)
    pg_roles.grant_database(role)
    env_file = tmp_path / "app.env"
    before = write_env(env_file, pg_roles.url(role, old))
    rotated = ansible_module(MODULE, pg_roles.module_params(state="rotated", env_file=str(env_file))).result
    assert rotated["changed"] and not pg_roles.can_login(role, old)
    params = pg_roles.module_params(state="reverted", role=role, env_file=str(env_file), env_backup=rotated["env_backup"])
    check = ansible_module(MODULE, params, check=True)
    assert check.result["changed"] and env_file.read_bytes() != before and not pg_roles.can_login(role, old)
    revert = ansible_module(MODULE, params)
    assert not revert.failed and revert.result["changed"], revert.output
    assert env_file.read_bytes() == before
    assert pg_roles.can_login(role, old)
    again = ansible_module(MODULE, params)
    assert not again.failed and not again.result["changed"], again.output


def test_alternating_users(tmp_path, pg_roles, ansible_module):
    owner = pg_roles.create("owner", login=False)
    pg_roles.grant_database(owner)
    pass_a = new_password()
    role_a = pg_roles.create("a", password=pass_a, member_of=owner, owner_default=True)
    role_b = pg_roles.create("b", password=new_password(), member_of=owner, owner_default=True)
    env_file = tmp_path / "app.env"
    before = write_env(env_file, pg_roles.url(role_a, pass_a))
    params = pg_roles.module_params(state="rotated", alternate_roles=[role_a, role_b], env_file=str(env_file))
    switch = ansible_module(MODULE, params)
    result = switch.result
    assert not switch.failed, switch.output
    assert (result["active_role"], result["previous_role"], result["owner_roles"]) == (role_b, role_a, [owner])
    from ansible_collections.runbook.ops.plugins.module_utils._pg_roles import url_credentials
    user, pass_b = url_credentials(env_url(env_file))
    assert user == role_b and pg_roles.can_login(role_b, pass_b)
    assert pg_roles.can_login(role_a, pass_a)  # the old one keeps working until it is retired
    # revert: back to a, b disabled again
    revert_params = pg_roles.module_params(state="reverted", role=role_b, env_file=str(env_file), env_backup=result["env_backup"])
    revert = ansible_module(MODULE, revert_params)
    assert not revert.failed and revert.result["changed"], revert.output
    assert env_file.read_bytes() == before and not pg_roles.can_login(role_b, pass_b)
    assert pg_roles.stored(role_b) == (None, False)
    # switch again, then retire a
    result = ansible_module(MODULE, params).result
    assert result["active_role"] == role_b
    retire = ansible_module(MODULE, pg_roles.module_params(state="disabled", role=role_a))
    assert not retire.failed and retire.result["changed"]
    assert pg_roles.stored(role_a) == (None, False) and not pg_roles.can_login(role_a, pass_a)
    assert not ansible_module(MODULE, pg_roles.module_params(state="disabled", role=role_a)).result["changed"]
    # the next rotation switches back to a (LOGIN again, fresh password)
    back = ansible_module(MODULE, params).result
    assert (back["active_role"], back["previous_role"]) == (role_a, role_b)
    user, new_a = url_credentials(env_url(env_file))
    assert user == role_a and pg_roles.can_login(role_a, new_a) and new_a != pass_a


def test_alternating_roles_without_a_shared_owner_are_refused(tmp_path, pg_roles, ansible_module):
    role_a = pg_roles.create("x", password="pw-x-123456")
    role_b = pg_roles.create("y", password="pw-y-123456")
    env_file = tmp_path / "app.env"
    before = write_env(env_file, pg_roles.url(role_a, "pw-x-123456"))
    run = ansible_module(MODULE, pg_roles.module_params(state="rotated", alternate_roles=[role_a, role_b],
                                                        env_file=str(env_file)))
    assert run.failed and "are not members of one owner role" in run.result["msg"]
    assert env_file.read_bytes() == before and pg_roles.can_login(role_a, "pw-x-123456", "postgres")
    assert not pg_roles.can_login(role_b, "anything", "postgres")


def test_without_a_superuser_it_cannot_know_and_says_so(tmp_path, pg_roles, ansible_module):
    admin_pw = new_password()
    admin = pg_roles.create("adm", password=admin_pw)
    with pg_roles.admin.cursor() as cur:
        cur.execute('ALTER ROLE "%s" CREATEROLE' % admin)
    role = pg_roles.create("plain", password=new_password())
    wanted = new_password()
    params = pg_roles.module_params(state="present", role=role, new_password=wanted, database="postgres",
                                    login_user=admin, login_password=admin_pw, login_db="postgres")
    for _attempt in range(2):
        run = ansible_module(MODULE, params)
        assert not run.failed, run.output
        result = run.result
        assert result["changed"] and not result["known"] and result["verified"]
        assert "cannot be known without a superuser" in result["msg"]
    assert pg_roles.can_login(role, wanted, "postgres")
