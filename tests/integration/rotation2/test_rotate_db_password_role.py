# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/rotate_db_password.yml end to end: the sample service on PostgreSQL, restarted through ctl.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from conftest import new_password
from harness import REPO, run_playbook
from sample_service_fixture import CTL_PATH, clean_environ

PLAYBOOK = os.path.join(REPO, "playbooks", "rotate_db_password.yml")


def ctl(svc, action):
    proc = subprocess.run([CTL_PATH, action, svc.env_file], env=clean_environ({"PYTHON": sys.executable}),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def env_url(svc):
    from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile
    return EnvFile.load(svc.env_file).get("DATABASE_URL")


def credentials(svc):
    from ansible_collections.runbook.ops.plugins.module_utils._pg_roles import url_credentials
    return url_credentials(env_url(svc))


def rotate(tmp_path, svc, pg_roles, check=False, **extra):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    params = pg_roles.params
    values = {
        "rotate_db_password_env_file": svc.env_file,
        "rotate_db_password_login_host": params["login_host"],
        "rotate_db_password_login_port": params["login_port"],
        "rotate_db_password_login_user": params["login_user"],
        "rotate_db_password_login_password": params["login_password"],
        "rotate_db_password_login_db": pg_roles.database,  # log_statement = all there
        "rotate_db_password_restart_method": "ctl",
        "rotate_db_password_ctl": CTL_PATH,
        "rotate_db_password_restart_environment": {"PYTHON": sys.executable},
        "rotate_db_password_base_url": svc.url,
        "rotate_db_password_wait_timeout": 15,
    }
    values.update(extra)
    return run_playbook(tmp_path, PLAYBOOK, inventory=str(inventory), extra_vars=values, check=check, verbosity=3)


def service_on(sample_service, pg_roles, role, password):
    svc = sample_service(database_url=pg_roles.url(role, password), start=False)
    ctl(svc, "start")
    assert svc.get("/readyz").status == 200
    assert svc.api("POST", "/api/items", json={"name": "before", "secret": "s"}).status == 201
    return svc


def assert_no_secret(run, pg_roles, *secrets):
    log = pg_roles.log.text()
    assert "ALTER ROLE" in log  # statement logging is on for the module's session
    for secret in secrets:
        assert secret not in run.output and secret not in json.dumps(run.records)
        assert secret not in log


def test_single_user_rotation_end_to_end(tmp_path, pg_roles, sample_service):
    old = new_password()
    role = pg_roles.create("svc", password=old)
    pg_roles.grant_database(role)
    svc = service_on(sample_service, pg_roles, role, old)
    check = rotate(tmp_path, svc, pg_roles, check=True)
    assert check.rc == 0, check.output
    assert credentials(svc) == (role, old) and pg_roles.can_login(role, old)

    run = rotate(tmp_path, svc, pg_roles)
    assert run.rc == 0, run.output
    user, new = credentials(svc)
    assert user == role and new != old
    assert pg_roles.can_login(role, new) and not pg_roles.can_login(role, old)  # the server refuses the old one
    assert svc.get("/readyz").status == 200
    items = svc.api("GET", "/api/items")
    assert items.status == 200 and [i["name"] for i in items.json["items"]] == ["before"]
    assert [n for n in os.listdir(os.path.dirname(svc.env_file)) if n.startswith("app.env.")] == []  # backup removed
    assert_no_secret(run, pg_roles, old, new)


def test_alternating_users_end_to_end(tmp_path, pg_roles, sample_service):
    owner = pg_roles.create("own", login=False)
    pg_roles.grant_database(owner)
    pass_a = new_password()
    role_a = pg_roles.create("sa", password=pass_a, member_of=owner, owner_default=True)
    role_b = pg_roles.create("sb", login=False, member_of=owner, owner_default=True)
    svc = service_on(sample_service, pg_roles, role_a, pass_a)
    run = rotate(tmp_path, svc, pg_roles, rotate_db_password_strategy="alternating",
                 rotate_db_password_roles=[role_a, role_b])
    assert run.rc == 0, run.output
    user, pass_b = credentials(svc)
    assert user == role_b and pg_roles.can_login(role_b, pass_b)
    assert not pg_roles.can_login(role_a, pass_a) and pg_roles.stored(role_a) == (None, False)  # retired after verification
    assert svc.get("/readyz").status == 200
    assert [i["name"] for i in svc.api("GET", "/api/items").json["items"]] == ["before"]  # objects belong to the owner
    names = [r["task"] for r in run.records]
    assert names.index("Wait until the service is ready (new credential)") < \
        names.index("Retire the role the service used before (alternating users, after verification)")
    assert_no_secret(run, pg_roles, pass_a, pass_b)


def write_fail_ready_restart(tmp_path, svc):
    """Restart through ctl.sh, but not ready (FAIL_READY) unless DATABASE_URL is the original one."""
    (tmp_path / "orig").write_text(env_url(svc))
    script = tmp_path / "restart_fail_ready.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "sys.path.insert(0, %r)\n"
        "from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile\n"
        "env = dict(os.environ)\n"
        "if EnvFile.load(%r).get('DATABASE_URL') != open(%r).read():\n"
        "    env['FAIL_READY'] = 'true'\n"
        "sys.exit(subprocess.call([%r, 'restart', %r], env=env))\n"
        % (os.path.join(REPO, ".build", "collections"), svc.env_file, str(tmp_path / "orig"), CTL_PATH, svc.env_file))
    return [sys.executable, str(script)]


def test_failed_verification_reverts_everything(tmp_path, pg_roles, sample_service):
    old = new_password()
    role = pg_roles.create("fr", password=old)
    pg_roles.grant_database(role)
    svc = service_on(sample_service, pg_roles, role, old)
    with open(svc.env_file, "rb") as handle:
        original = handle.read()
    stored = pg_roles.stored(role)
    run = rotate(tmp_path, svc, pg_roles, rotate_db_password_restart_method="command",
                 rotate_db_password_restart_command=write_fail_ready_restart(tmp_path, svc), rotate_db_password_wait_timeout=3)
    assert run.rc != 0
    assert 'failed at "Wait until the service is ready (new credential)' in run.output
    assert "the old credential was put back, the env file restored byte-identical and the service is ready on it" in run.output
    with open(svc.env_file, "rb") as handle:
        assert handle.read() == original
    assert pg_roles.can_login(role, old)
    assert pg_roles.stored(role)[0] != stored[0]  # the old password again, under a fresh salt
    assert svc.get("/readyz").status == 200 and svc.api("GET", "/api/items").status == 200
    assert [n for n in os.listdir(os.path.dirname(svc.env_file)) if n.startswith("app.env.")] == []
    assert_no_secret(run, pg_roles, old)
