# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/rotate_db_password.yml killed between set and test: the next run finishes or reverts it.

The restart command of the killed run touches a marker and sleeps; the test SIGKILLs the whole
ansible-playbook process group once the marker is there (the password is set, the env file points
at it, the service is not verified yet)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid

import yaml

from conftest import new_password
from harness import VENV_BIN, ansible_env
from test_rotate_db_password_role import (PLAYBOOK, assert_no_secret, credentials, rotate, service_on,
                                          write_fail_ready_restart)


def record(svc):
    path = os.path.join(os.path.dirname(svc.env_file), ".%s.rotation.json" % os.path.basename(svc.env_file))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, encoding="utf-8") as handle:
        return path, json.load(handle)["keys"]["DATABASE_URL"]


def backups(svc):
    return [n for n in os.listdir(os.path.dirname(svc.env_file)) if n.startswith(os.path.basename(svc.env_file) + ".")]


def killed_run(tmp_path, svc, pg_roles, **extra):
    """Start the playbook with a restart command that never ends, SIGKILL its process group during the restart."""
    marker = tmp_path / ("restarting-%s" % uuid.uuid4().hex[:8])
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
        "rotate_db_password_login_db": pg_roles.database,
        "rotate_db_password_restart_method": "command",
        "rotate_db_password_restart_command": ["sh", "-c", 'touch "$0"; exec sleep 300', str(marker)],
        "rotate_db_password_base_url": svc.url,
        "rotate_db_password_wait_timeout": 15,
    }
    values.update(extra)
    vars_file = tmp_path / ("vars-%s.json" % uuid.uuid4().hex[:8])
    vars_file.write_text(json.dumps(values))
    proc = subprocess.Popen([os.path.join(VENV_BIN, "ansible-playbook"), PLAYBOOK, "-i", str(inventory), "-e", "@" + str(vars_file)],
                            env=ansible_env(str(tmp_path / "killed.jsonl")), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, "the playbook ended (rc %s) before its restart step" % proc.returncode
            assert time.monotonic() < deadline, "the restart step never started"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    _path, entry = record(svc)
    assert entry["phase"] == "set"  # killed between set and test
    return entry


def test_killed_rotation_is_finished_by_the_next_run(tmp_path, pg_roles, sample_service):
    old = new_password()
    role = pg_roles.create("kf", password=old)
    pg_roles.grant_database(role)
    svc = service_on(sample_service, pg_roles, role, old)
    entry = killed_run(tmp_path, svc, pg_roles)
    user, staged = credentials(svc)
    assert user == role and staged != old and pg_roles.can_login(role, staged)
    assert entry["role"] == role and entry["backup"] and os.path.exists(entry["backup"])

    check = rotate(tmp_path, svc, pg_roles, check=True)
    assert check.rc == 0, check.output
    assert "would resume the unfinished rotation of %s" % role in check.output
    assert record(svc)[1] == entry and credentials(svc) == (role, staged)  # check mode changed nothing

    run = rotate(tmp_path, svc, pg_roles)
    assert run.rc == 0, run.output
    assert "resuming the unfinished rotation of %s" % role in run.output
    assert credentials(svc) == (role, staged)  # finished the staged rotation, no second one on top
    assert pg_roles.can_login(role, staged) and not pg_roles.can_login(role, old)
    assert svc.get("/readyz").status == 200 and svc.api("GET", "/api/items").status == 200
    path, done = record(svc)
    assert done["phase"] == "finished" and done["backup"] is None and backups(svc) == []
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert old not in text and staged not in text and "SCRAM" not in text
    assert_no_secret(run, pg_roles, old, staged)

    again = rotate(tmp_path, svc, pg_roles)  # a later run rotates afresh
    assert again.rc == 0, again.output
    assert "resuming" not in again.output and credentials(svc)[1] != staged


def test_killed_rotation_is_reverted_when_the_service_fails_on_it(tmp_path, pg_roles, sample_service):
    old = new_password()
    role = pg_roles.create("kr", password=old)
    pg_roles.grant_database(role)
    svc = service_on(sample_service, pg_roles, role, old)
    with open(svc.env_file, "rb") as handle:
        original = handle.read()
    restart = write_fail_ready_restart(tmp_path, svc)
    killed_run(tmp_path, svc, pg_roles)
    assert not pg_roles.can_login(role, old)

    run = rotate(tmp_path, svc, pg_roles, rotate_db_password_restart_method="command",
                 rotate_db_password_restart_command=restart, rotate_db_password_wait_timeout=3)
    assert run.rc != 0
    assert "resuming the unfinished rotation of %s" % role in run.output
    assert "the old credential was put back, the env file restored byte-identical" in run.output
    with open(svc.env_file, "rb") as handle:
        assert handle.read() == original
    assert pg_roles.can_login(role, old)
    assert svc.get("/readyz").status == 200 and svc.api("GET", "/api/items").status == 200
    assert record(svc)[1]["phase"] == "reverted" and backups(svc) == []
    assert_no_secret(run, pg_roles, old)


def test_killed_before_the_env_file_was_written_is_reverted_then_rotated(tmp_path, pg_roles, sample_service):
    """The state of a run killed between ALTER ROLE and the env write: the record says pending, the
    server holds the new verifier, the env file the old password.  Made by rolling a finished run's
    env file and record back, since no task boundary falls between the two."""
    old = new_password()
    role = pg_roles.create("kp", password=old)
    pg_roles.grant_database(role)
    svc = service_on(sample_service, pg_roles, role, old)
    with open(svc.env_file, "rb") as handle:
        original = handle.read()
    killed_run(tmp_path, svc, pg_roles)
    path, entry = record(svc)
    _user, staged = credentials(svc)
    with open(svc.env_file, "wb") as handle:
        handle.write(original)
    entry["phase"] = "pending"
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"version": 1, "keys": {"DATABASE_URL": entry}}, handle)
    assert not pg_roles.can_login(role, old)

    run = rotate(tmp_path, svc, pg_roles)
    assert run.rc == 0, run.output
    assert "reverted the unfinished rotation of %s" % role in run.output
    user, new = credentials(svc)
    assert user == role and new not in (old, staged)
    assert pg_roles.can_login(role, new) and not pg_roles.can_login(role, old) and not pg_roles.can_login(role, staged)
    assert svc.get("/readyz").status == 200
    assert record(svc)[1]["phase"] == "finished" and backups(svc) == []
    assert_no_secret(run, pg_roles, old, staged, new)


def test_killed_alternating_rotation_retires_the_old_role_on_the_next_run(tmp_path, pg_roles, sample_service):
    owner = pg_roles.create("kown", login=False)
    pg_roles.grant_database(owner)
    pass_a = new_password()
    role_a = pg_roles.create("ka", password=pass_a, member_of=owner, owner_default=True)
    role_b = pg_roles.create("kb", login=False, member_of=owner, owner_default=True)
    svc = service_on(sample_service, pg_roles, role_a, pass_a)
    alternating = {"rotate_db_password_strategy": "alternating", "rotate_db_password_roles": [role_a, role_b]}
    entry = killed_run(tmp_path, svc, pg_roles, **alternating)
    assert (entry["role"], entry["previous_role"], entry["strategy"]) == (role_b, role_a, "alternating")
    user, pass_b = credentials(svc)
    assert user == role_b and pg_roles.can_login(role_a, pass_a)  # not retired: the service was never verified

    run = rotate(tmp_path, svc, pg_roles, **alternating)
    assert run.rc == 0, run.output
    assert "resuming the unfinished rotation of %s" % role_b in run.output
    assert credentials(svc) == (role_b, pass_b) and pg_roles.can_login(role_b, pass_b)
    assert not pg_roles.can_login(role_a, pass_a) and pg_roles.stored(role_a) == (None, False)  # retired after verification
    assert svc.get("/readyz").status == 200 and record(svc)[1]["phase"] == "finished" and backups(svc) == []
    assert_no_secret(run, pg_roles, pass_a, pass_b)


def test_module_finished_and_refusals(tmp_path, pg_roles, ansible_module):
    """state finished closes the record (and removes the backup); resume is off unless asked; an env
    file changed by hand since the rotation is refused, nothing changed."""
    from test_pg_role_password import MODULE, env_url, write_env
    old = new_password()
    role = pg_roles.create("km", password=old)
    env_file = tmp_path / "app.env"
    write_env(env_file, pg_roles.url(role, old))
    params = pg_roles.module_params(env_file=str(env_file))
    nothing = ansible_module(MODULE, dict(params, state="finished")).result
    assert nothing["changed"] is False and "no unfinished rotation" in nothing["msg"]

    first = ansible_module(MODULE, dict(params, state="rotated")).result
    assert first["changed"] and first["resumed"] is False and os.path.exists(first["env_backup"])
    staged = env_url(env_file)
    fresh = ansible_module(MODULE, dict(params, state="rotated")).result  # resume off: a fresh rotation
    assert fresh["resumed"] is False and env_url(env_file) != staged
    again = ansible_module(MODULE, dict(params, state="rotated", resume=True)).result
    assert again["resumed"] is True and again["changed"] is False and again["env_backup"] == fresh["env_backup"]
    assert again["fingerprint"] == fresh["fingerprint"]

    checked = ansible_module(MODULE, dict(params, state="finished", keep_backup=False), check=True).result
    assert checked["changed"] and checked["msg"].startswith("would finish") and os.path.exists(fresh["env_backup"])
    done = ansible_module(MODULE, dict(params, state="finished", keep_backup=False)).result
    assert done["changed"] and not os.path.exists(fresh["env_backup"])
    assert ansible_module(MODULE, dict(params, state="finished")).result["changed"] is False

    third = ansible_module(MODULE, dict(params, state="rotated")).result
    write_env(env_file, pg_roles.url(role, old))  # changed by hand since
    before = env_file.read_bytes()
    refused = ansible_module(MODULE, dict(params, state="rotated", resume=True))
    assert refused.failed and "someone changed it since" in refused.result["msg"]
    assert env_file.read_bytes() == before and not pg_roles.can_login(role, old)  # the server was not touched either
    stuck = ansible_module(MODULE, dict(params, state="finished"))
    assert stuck.failed and "not the %s this rotation set" % third["fingerprint"] in stuck.result["msg"]
