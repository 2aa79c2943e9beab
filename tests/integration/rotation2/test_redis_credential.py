# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""redis_credential against a redis-server of the test's own (never the shared one)."""

from __future__ import annotations

import json
import os

MODULE = "runbook.ops.redis_credential"


def env_get(path, key):
    from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile
    return EnvFile.load(str(path)).get(key)


def write_env(path, text):
    path.write_text(text)
    os.chmod(path, 0o640)
    return path.read_bytes()


def test_requirepass_rotation_with_overlap(tmp_path, private_redis, ansible_module):
    old = "old-requirepass-8c1f0e"
    server = private_redis(password=old)
    env_file = tmp_path / "app.env"
    before = write_env(env_file, "# redis\nREDIS_HOST=127.0.0.1\nREDIS_PASSWORD=\"%s\"  # requirepass\nOTHER=1\n" % old)
    params = {"login_port": server.port, "env_file": str(env_file)}
    check = ansible_module(MODULE, dict(params, state="rotated"), check=True)
    assert not check.failed and check.result["changed"], check.output
    assert env_file.read_bytes() == before and server.client.execute_command("ACL", "GETUSER", "default")

    run = ansible_module(MODULE, dict(params, state="rotated"), verbosity=3)
    result = run.result
    assert not run.failed, run.output
    new = env_get(env_file, "REDIS_PASSWORD")
    assert new != old and result["passwords"] == 2
    assert env_file.read_bytes() == before.replace(old.encode(), new.encode())  # quote style and comment kept
    assert server.auth_ok(old) and server.auth_ok(new)  # overlap: both work
    assert oct(os.stat(env_file).st_mode & 0o777) == "0o640"

    finish = ansible_module(MODULE, dict(params, state="finished"), verbosity=3)
    assert not finish.failed and finish.result["changed"] and finish.result["removed"] == 1, finish.output
    assert server.auth_ok(new) and not server.auth_ok(old)
    again = ansible_module(MODULE, dict(params, state="finished"))
    assert not again.failed and not again.result["changed"]
    for value in (old, new):
        for out in (run, finish):
            assert value not in out.output and value not in json.dumps(out.records)


def test_acl_user_with_url_revert_and_finish(tmp_path, private_redis, ansible_module):
    server = private_redis(password="admin-pw-2f9e")
    server.client.execute_command("ACL", "SETUSER", "app", "on", ">app-old-pw-71c2", "~*", "+@all")
    url = "redis://app:app-old-pw-71c2@127.0.0.1:%d/0" % server.port
    env_file = tmp_path / "app.env"
    before = write_env(env_file, "REDIS_URL=%s\n" % url)
    params = {"login_port": server.port, "env_file": str(env_file), "env_key": "REDIS_URL", "username": "app",
              "admin_password": "admin-pw-2f9e", "new_password": "n3w/p@ss:word%"}
    rotated = ansible_module(MODULE, dict(params, state="rotated"))
    assert not rotated.failed, rotated.output
    new_url = env_get(env_file, "REDIS_URL")
    assert new_url == "redis://app:n3w%%2Fp%%40ss%%3Aword%%25@127.0.0.1:%d/0" % server.port
    assert server.auth_ok("n3w/p@ss:word%", "app") and server.auth_ok("app-old-pw-71c2", "app")
    same = ansible_module(MODULE, dict(params, state="rotated"))
    assert not same.failed and not same.result["changed"], same.output

    revert = ansible_module(MODULE, dict(params, state="reverted", env_backup=rotated.result["env_backup"]))
    assert not revert.failed and revert.result["changed"], revert.output
    assert env_file.read_bytes() == before
    assert server.auth_ok("app-old-pw-71c2", "app") and not server.auth_ok("n3w/p@ss:word%", "app")
    assert not ansible_module(MODULE, dict(params, state="reverted", env_backup=rotated.result["env_backup"])).result["changed"]

    # a revert after finish adds the old password back
    params.pop("new_password")
    rotated = ansible_module(MODULE, dict(params, state="rotated")).result
    assert ansible_module(MODULE, dict(params, state="finished")).result["removed"] == 1
    assert not server.auth_ok("app-old-pw-71c2", "app")
    revert = ansible_module(MODULE, dict(params, state="reverted", env_backup=rotated["env_backup"]))
    assert not revert.failed and env_file.read_bytes() == before and server.auth_ok("app-old-pw-71c2", "app")


def test_admin_without_acl_permission_is_refused(tmp_path, private_redis, ansible_module):
    server = private_redis(password="admin-pw-4d1a")
    server.client.execute_command("ACL", "SETUSER", "app", "on", ">app-pw-9e3b", "~*", "+@all", "-@admin")
    hashes = server.client.execute_command("ACL", "GETUSER", "app")
    env_file = tmp_path / "app.env"
    before = write_env(env_file, "REDIS_PASSWORD=app-pw-9e3b\n")
    run = ansible_module(MODULE, {"login_port": server.port, "env_file": str(env_file), "username": "app"})
    assert run.failed
    assert run.result["msg"] == ("cannot change the passwords of Redis user app at 127.0.0.1:%d: the admin user may not run ACL "
                                 "commands (it needs +acl or +@admin); nothing was changed" % server.port)
    assert env_file.read_bytes() == before
    assert server.client.execute_command("ACL", "GETUSER", "app") == hashes
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("app.env.")] == []


def test_wrong_admin_password_and_missing_key(tmp_path, private_redis, ansible_module):
    server = private_redis(password="admin-pw-6b0c")
    env_file = tmp_path / "app.env"
    before = write_env(env_file, "REDIS_PASSWORD=not-the-password\n")
    run = ansible_module(MODULE, {"login_port": server.port, "env_file": str(env_file)})
    assert run.failed and "refused the credentials of default" in run.result["msg"], run.output
    missing = ansible_module(MODULE, {"login_port": server.port, "env_file": str(env_file), "env_key": "REDIS_URL"})
    assert missing.failed and missing.result["msg"].startswith("REDIS_URL is not in ")
    assert env_file.read_bytes() == before
