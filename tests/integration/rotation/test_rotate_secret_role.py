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


# ---------------------------------------------------------------------------------------- encryption key (RT2)

def encryption_vars(tmp_path, svc, reencrypt=None):
    from sample_service_fixture import APP_PATH
    from rotation_testlib import CTL_PATH
    return {
        "rotate_procedure": "encryption_key",
        "rotate_secret_env_file": svc.env_file,
        "rotate_secret_stop_command": [CTL_PATH, "stop", svc.env_file],
        "rotate_secret_start_command": [CTL_PATH, "start", svc.env_file],
        "rotate_secret_reencrypt_command": reencrypt or [
            sys.executable, APP_PATH, "--env-file", svc.env_file, "reencrypt",
            "--old-key-env", "ENCRYPTION_KEY_PREVIOUS", "--new-key-env", "ENCRYPTION_KEY"],
        "rotate_secret_restart_environment": {"PYTHON": sys.executable},
        "rotate_secret_api_token": svc.token,
        "rotate_secret_base_url": svc.url,
        "rotate_secret_wait_timeout": 15,
        "rotate_secret_backup": {"service": "app", "engine": "sqlite", "path": svc.db_path,
                                 "store": {"type": "local", "path": str(tmp_path / "backups")}},
    }


def seed_secrets(svc, count=6):
    for number in range(count):
        body = {"name": "item-%d" % number}
        if number % 3:
            body["secret"] = "secret-%d" % number
        assert svc.api("POST", "/api/items", json=body).status == 201


def all_secrets(svc):
    items = svc.api("GET", "/api/items").json["items"]
    return {item["id"]: svc.api("GET", "/api/items/%d" % item["id"]).json.get("secret") for item in items}


def test_encryption_key_rotation(tmp_path, sample_service):
    from harness import run_playbook
    svc = start_with_ctl(sample_service(start=False))
    seed_secrets(svc)
    before = all_secrets(svc)
    old_key = svc.encryption_key
    with ArgvWatcher() as watcher:
        run = run_playbook(tmp_path, PLAYBOOK, inventory=inventory(tmp_path), extra_vars=encryption_vars(tmp_path, svc), verbosity=2)
    assert run.rc == 0, run.output
    new_key = env_value(svc.env_file, "ENCRYPTION_KEY")
    assert new_key != old_key and env_value(svc.env_file, "ENCRYPTION_KEY_PREVIOUS") is None
    assert all_secrets(svc) == before and sum(1 for v in before.values() if v) == 4
    decrypts = run.task("Check that every secret decrypts with the new key")["result"]
    assert decrypts["summary"]["ok"] == 4
    assert os.listdir(tmp_path / "backups" / "app")  # the safety backup
    for value in (old_key, new_key):
        assert value not in run.output and not watcher.contains(value)
    assert "secret-1" not in run.output


def test_encryption_key_rotation_failing_reencrypt_restores_backup(tmp_path, sample_service):
    from harness import run_playbook
    from sample_service_fixture import APP_PATH
    svc = sample_service(start=False)
    original = decorate(svc)
    start_with_ctl(svc)
    seed_secrets(svc)
    before = all_secrets(svc)
    # re-encrypts for real (the data is touched), then fails
    script = tmp_path / "reencrypt_then_fail.sh"
    script.write_text("#!/bin/sh\n\"$PYTHON\" %s --env-file %s reencrypt --old-key-env ENCRYPTION_KEY_PREVIOUS "
                      "--new-key-env ENCRYPTION_KEY || exit 3\necho 'disk full' >&2\nexit 1\n" % (APP_PATH, svc.env_file))
    script.chmod(0o755)
    run = run_playbook(tmp_path, PLAYBOOK, inventory=inventory(tmp_path),
                       extra_vars=encryption_vars(tmp_path, svc, reencrypt=[str(script)]))
    assert run.rc != 0
    assert "Re-encrypt every secret from the old key to the new one" in run.output
    assert "the data was restored from backup" in run.output
    with open(svc.env_file, "rb") as handle:
        assert handle.read() == original
    assert all_secrets(svc) == before  # decrypt with the old key again
    assert svc.get("/readyz").status == 200


def test_several_keys_in_one_run_with_a_given_value(tmp_path, sample_service):
    """API token with overlap, the metrics guard secret, and an SMTP password given by the provider: one run,
    each probed the way the service takes it; the given value never shows, even with -vvv."""
    svc = start_with_ctl(sample_service(start=False, env={"METRICS_SECRET": "metrics-old-1", "SMTP_PASSWORD": "smtp-old-1"}))
    given = "smtp-new-given-5e1c"
    keys = [
        {"key": "API_TOKEN", "probe_path": "/api/items", "overlap": True},
        {"key": "METRICS_SECRET", "generate": "hex", "probe_path": "/metrics", "probe_header": "x-metrics-secret"},
        {"key": "SMTP_PASSWORD", "value": given},
    ]
    run = rotate(tmp_path, svc, keys=keys, verbosity=3)
    assert run.rc == 0, run.output
    assert env_value(svc.env_file, "SMTP_PASSWORD") == given
    metrics = env_value(svc.env_file, "METRICS_SECRET")
    assert len(metrics) == 64
    assert svc.get("/metrics", headers={"X-Metrics-Secret": metrics}).status == 200
    assert svc.get("/metrics", headers={"X-Metrics-Secret": "metrics-old-1"}).status == 401
    token = env_value(svc.env_file, "API_TOKEN")
    for value in (given, "smtp-old-1", metrics, "metrics-old-1", token, svc.token):
        assert value not in run.output and value not in json.dumps(run.records)
    stats = record(svc.env_file)["keys"]
    assert {stats[k]["phase"] for k in ("API_TOKEN", "METRICS_SECRET", "SMTP_PASSWORD")} == {"finished"}


def test_rolling_rotation_of_a_shared_secret_across_two_hosts(tmp_path, sample_service):
    """A secret shared by several hosts (a signing key, a token clients use everywhere): the first run, one host at
    a time, stages the same given value with the old one still valid; the second run finishes on every host."""
    import yaml
    from harness import run_playbook
    from rotation_testlib import CTL_PATH
    services = [start_with_ctl(sample_service(start=False)) for _index in range(2)]
    old = [svc.token for svc in services]
    hosts = {"svc%d" % index: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                               "rotate_secret_env_file": svc.env_file, "rotate_secret_base_url": svc.url}
             for index, svc in enumerate(services)}
    inv = tmp_path / "two-hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": hosts}}}}))
    shared = "shared-signing-value-0123456789abcdef"
    common = {"rotate_secret_keys": [{"key": "API_TOKEN", "value": shared, "overlap": True, "probe_path": "/api/items"}],
              "rotate_secret_restart_method": "ctl", "rotate_secret_ctl": CTL_PATH,
              "rotate_secret_restart_environment": {"PYTHON": sys.executable}, "rotate_secret_wait_timeout": 15,
              "rotate_serial": 1}
    first = run_playbook(tmp_path, PLAYBOOK, inventory=str(inv), extra_vars=dict(common, rotate_secret_finish=False),
                         verbosity=3)
    assert first.rc == 0, first.output
    for svc, token in zip(services, old):
        assert svc.api("GET", "/api/items", token=shared).status == 200
        assert svc.api("GET", "/api/items", token=token).status == 200  # still valid until every host has the new one
        assert record(svc.env_file)["keys"]["API_TOKEN"]["phase"] == "tested"
    second = run_playbook(tmp_path, PLAYBOOK, inventory=str(inv), extra_vars=common)
    assert second.rc == 0, second.output
    for svc, token in zip(services, old):
        assert svc.api("GET", "/api/items", token=shared).status == 200
        assert svc.api("GET", "/api/items", token=token).status == 401
        assert env_value(svc.env_file, "API_TOKEN_PREVIOUS") is None
        assert record(svc.env_file)["keys"]["API_TOKEN"]["phase"] == "finished"
    assert shared not in first.output + second.output
    assert shared not in json.dumps(first.records) + json.dumps(second.records)
