# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/rotate_secrets.yml (the rotate_secret role) against the real sample service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from harness import ansible_env
from rotation_testlib import PLAYBOOK, ArgvWatcher, ctl, env_value, inventory, record, role_vars, rotate, start_with_ctl


def decorate(svc):
    """Give the service's env file comments, quotes and an export prefix the rotation must keep."""
    lines = ["# sample service settings (edited by hand)", ""]
    for key, value in svc.settings.items():
        if key == "API_TOKEN":
            lines.append("export API_TOKEN=%s   # rotated by runbook.ops" % value)
        elif key == "VERSION":
            lines.append('VERSION="%s"' % value)
        else:
            lines.append("%s=%s" % (key, value))
    lines += ["", "# end"]
    with open(svc.env_file, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(svc.env_file, 0o640)
    with open(svc.env_file, "rb") as handle:
        return handle.read()


def test_token_rotation_end_to_end(tmp_path, sample_service):
    svc = sample_service(start=False)
    original = decorate(svc)
    start_with_ctl(svc)
    old = svc.token
    assert svc.api("GET", "/api/items", token=old).status == 200
    with ArgvWatcher() as watcher:
        run = rotate(tmp_path, svc, verbosity=3)
    assert run.rc == 0, run.output
    new = env_value(svc.env_file, "API_TOKEN")
    assert new != old and len(new) == 43
    assert svc.api("GET", "/api/items", token=old).status == 401
    assert svc.api("GET", "/api/items", token=new).status == 200
    with open(svc.env_file, "rb") as handle:
        assert handle.read() == original.replace(old.encode(), new.encode())
    assert oct(os.stat(svc.env_file).st_mode & 0o777) == "0o640"
    entry = record(svc.env_file)["keys"]["API_TOKEN"]
    assert entry["phase"] == "finished" and entry["backup"] is None
    assert [n for n in os.listdir(os.path.dirname(svc.env_file)) if n.startswith("app.env.")] == []  # backup removed
    names = [r["task"] for r in run.records]
    assert "Test the new values (overlap)" in names and "Restore the env file from its backup (byte-identical)" not in names
    # no value in -vvv output, results, the record or any process's arguments
    record_text = json.dumps(record(svc.env_file))
    for value in (old, new):
        assert value not in run.output and value not in json.dumps(run.records) and value not in record_text
        assert not watcher.contains(value)
    assert watcher.seen  # the watcher did look


def test_rotation_with_overlap_then_finish(tmp_path, sample_service):
    svc = start_with_ctl(sample_service(start=False))
    old = svc.token
    keys = [{"key": "API_TOKEN", "probe_path": "/api/items", "overlap": True}]
    run = rotate(tmp_path, svc, keys=keys, rotate_secret_grace_seconds=1)
    assert run.rc == 0, run.output
    new = env_value(svc.env_file, "API_TOKEN")
    overlap = [r for r in run.records if r["task"] == "Test the new values (overlap)"][-1]["result"]["results"][0]
    assert [c["name"] for c in overlap["checks"]] == ["new value accepted", "old value still accepted (overlap)"]
    assert all(c["state"] == "ok" for c in overlap["checks"])
    final = [r for r in run.records if r["task"] == "Test the new values (final)"][-1]["result"]["results"][0]
    assert [c["name"] for c in final["checks"]] == ["new value accepted", "old value refused"]
    assert env_value(svc.env_file, "API_TOKEN_PREVIOUS") is None
    assert svc.api("GET", "/api/items", token=old).status == 401
    assert svc.api("GET", "/api/items", token=new).status == 200


def write_fail_ready_restart(tmp_path, svc):
    """A restart command that brings the service up not ready (FAIL_READY) unless the token is the original one."""
    script = tmp_path / "restart_fail_ready.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "sys.path.insert(0, %r)\n"
        "from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile\n"
        "env = dict(os.environ)\n"
        "if EnvFile.load(%r).get('API_TOKEN') != open(%r).read():\n"
        "    env['FAIL_READY'] = 'true'\n"
        "sys.exit(subprocess.call([%r, 'restart', %r], env=env))\n"
        % (os.path.join(os.path.dirname(PLAYBOOK), "..", ".build", "collections"), svc.env_file, str(tmp_path / "orig"),
           os.path.join(os.path.dirname(PLAYBOOK), "..", "sample_service", "ctl.sh"), svc.env_file))
    (tmp_path / "orig").write_text(svc.token)
    return [sys.executable, str(script)]


def test_failed_readiness_reverts_byte_identical(tmp_path, sample_service):
    svc = sample_service(start=False)
    original = decorate(svc)
    start_with_ctl(svc)
    run = rotate(tmp_path, svc, rotate_secret_restart_method="command",
                 rotate_secret_restart_command=write_fail_ready_restart(tmp_path, svc), rotate_secret_wait_timeout=3)
    assert run.rc != 0
    assert "Wait until the service is ready (overlap)" in run.output
    assert "the env file was restored byte-identical" in run.output
    with open(svc.env_file, "rb") as handle:
        assert handle.read() == original
    assert oct(os.stat(svc.env_file).st_mode & 0o777) == "0o640"
    assert svc.get("/readyz").status == 200
    assert svc.api("GET", "/api/items", token=svc.token).status == 200
    assert record(svc.env_file)["keys"]["API_TOKEN"]["phase"] == "reverted"
    assert [n for n in os.listdir(os.path.dirname(svc.env_file)) if n.startswith("app.env.")] == []


def test_failed_restart_reverts(tmp_path, sample_service):
    """A new ENCRYPTION_KEY that is not a Fernet key: the service refuses to start; the revert brings it back."""
    svc = sample_service(start=False)
    original = decorate(svc)
    start_with_ctl(svc)
    keys = [{"key": "API_TOKEN", "probe_path": "/api/items"}, {"key": "ENCRYPTION_KEY", "generate": "hex"}]
    run = rotate(tmp_path, svc, keys=keys)
    assert run.rc != 0
    assert "Restart the service (new values)" in run.output
    with open(svc.env_file, "rb") as handle:
        assert handle.read() == original
    assert svc.api("GET", "/api/items", token=svc.token).status == 200
    keys_state = record(svc.env_file)["keys"]
    assert keys_state["API_TOKEN"]["phase"] == keys_state["ENCRYPTION_KEY"]["phase"] == "reverted"


def test_check_mode_changes_nothing(tmp_path, sample_service):
    svc = sample_service(start=False)
    original = decorate(svc)
    start_with_ctl(svc)
    pid = open(os.path.join(svc.data_dir, "app.pid"), encoding="ascii").read().strip()
    run = rotate(tmp_path, svc, check=True)
    assert run.rc == 0, run.output
    assert "would rotate API_TOKEN" in run.output
    with open(svc.env_file, "rb") as handle:
        assert handle.read() == original
    assert sorted(os.listdir(os.path.dirname(svc.env_file))) == ["app.env", "data"]
    assert open(os.path.join(svc.data_dir, "app.pid"), encoding="ascii").read().strip() == pid


def test_interrupted_rotation_is_finished_by_the_next_run(tmp_path, sample_service):
    svc = start_with_ctl(sample_service(start=False))
    old = svc.token
    # the first run is killed during its restart (a restart that hangs), after the new value was set
    extra = role_vars(svc, rotate_secret_restart_method="command", rotate_secret_restart_command=["sleep", "120"])
    vars_file = tmp_path / "interrupted.json"
    vars_file.write_text(json.dumps(extra))
    proc = subprocess.Popen(["ansible-playbook", PLAYBOOK, "-i", inventory(tmp_path), "-e", "@" + str(vars_file)],
                            env=ansible_env(), cwd=os.path.dirname(PLAYBOOK), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if record(svc.env_file)["keys"]["API_TOKEN"]["phase"] == "set":
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the first run never staged the new value")
        time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    staged = record(svc.env_file)["keys"]["API_TOKEN"]
    assert staged["phase"] == "set"
    assert svc.api("GET", "/api/items", token=old).status == 200  # the service still runs on the old token
    run = rotate(tmp_path, svc)
    assert run.rc == 0, run.output
    assert "resuming the unfinished rotation" in run.output
    new = env_value(svc.env_file, "API_TOKEN")
    from ansible_collections.runbook.ops.plugins.module_utils._secrets import fingerprint
    assert fingerprint(new) == staged["pending"]
    assert svc.api("GET", "/api/items", token=old).status == 401
    assert svc.api("GET", "/api/items", token=new).status == 200
    assert record(svc.env_file)["keys"]["API_TOKEN"]["phase"] == "finished"


def test_interrupted_rotation_that_fails_is_reverted_by_the_next_run(tmp_path, sample_service):
    svc = sample_service(start=False)
    original = decorate(svc)
    start_with_ctl(svc)
    # simulate the killed run: the set step alone, as the role runs it
    from harness import run_module
    staged = run_module(tmp_path, "runbook.ops.env_secret", {"path": svc.env_file, "key": "API_TOKEN", "state": "rotated"})
    assert staged.result["changed"] is True
    run = rotate(tmp_path, svc, rotate_secret_restart_method="command",
                 rotate_secret_restart_command=write_fail_ready_restart(tmp_path, svc), rotate_secret_wait_timeout=3)
    assert run.rc != 0
    assert run.task("Stage the new values (set)")["result"]["results"][0]["resumed"] is True
    with open(svc.env_file, "rb") as handle:
        assert handle.read() == original
    assert svc.get("/readyz").status == 200
    assert ctl(svc, "status").returncode == 0
