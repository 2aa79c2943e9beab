# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""runbook.ops.env_secret through the real ansible-playbook."""

from __future__ import annotations

import json
import os
import pwd
import stat

ORIGINAL = (
    "# settings of the app\r\n"
    "\n"
    "export API_TOKEN=old-token-value-1   # rotated monthly\n"
    "SECRET_KEY='single quoted $x'\n"
    'JWT_SECRET="dq \\"esc\\" end"  # jwt\n'
    "  SPACED = spaced value  \n"
    "EMPTY=\n"
    "   # indented comment\n"
    "LAST=tail"
).encode("utf-8")


def make_env(tmp_path, data=ORIGINAL, mode=0o640):
    path = tmp_path / "app.env"
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def read_value(path, key):
    from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile
    return EnvFile.load(str(path)).get(key)


def others(tmp_path):
    return sorted(name for name in os.listdir(tmp_path) if name.startswith("app.env.") or name.startswith(".app.env"))


def test_present_four_passes(ansible_module, tmp_path):
    path = make_env(tmp_path)
    params = {"path": str(path), "key": "SESSION_SECRET", "generate": "hex", "length": 32}
    first = ansible_module("runbook.ops.env_secret", params, check=True, diff=True)
    assert first.result["changed"] is True, first.output
    assert path.read_bytes() == ORIGINAL and others(tmp_path) == []
    assert "SESSION_SECRET=sha256:" in json.dumps(first.result["diff"])
    second = ansible_module("runbook.ops.env_secret", params)
    assert second.result["changed"] is True
    value = read_value(path, "SESSION_SECRET")
    assert len(value) == 64 and second.result["fingerprint"].startswith("sha256:")
    assert path.read_bytes() == ORIGINAL.replace(b"LAST=tail", b"LAST=tail\nSESSION_SECRET=" + value.encode())
    after = path.read_bytes()
    third = ansible_module("runbook.ops.env_secret", params, check=True)
    fourth = ansible_module("runbook.ops.env_secret", params)
    assert third.result["changed"] is False and fourth.result["changed"] is False
    assert path.read_bytes() == after


def test_rotate_keeps_every_other_byte_mode_and_owner(ansible_module, tmp_path):
    path = make_env(tmp_path)
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    params = {"path": str(path), "key": "API_TOKEN", "state": "rotated", "keep_previous": True}
    check = ansible_module("runbook.ops.env_secret", params, check=True, diff=True)
    assert check.result["changed"] is True and path.read_bytes() == ORIGINAL and others(tmp_path) == []
    run = ansible_module("runbook.ops.env_secret", params, diff=True)
    assert run.result["changed"] is True, run.output
    new = read_value(path, "API_TOKEN")
    expected = ORIGINAL.replace(b"old-token-value-1   # rotated monthly\n",
                                new.encode() + b"   # rotated monthly\nAPI_TOKEN_PREVIOUS=old-token-value-1\n")
    assert path.read_bytes() == expected
    info = os.stat(path)
    assert stat.S_IMODE(info.st_mode) == 0o640 and (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    backup = run.result["backup"]
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    with open(backup, "rb") as handle:
        assert handle.read() == ORIGINAL
    record = tmp_path / ".app.env.rotation.json"
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
    entry = json.loads(record.read_text())["keys"]["API_TOKEN"]
    assert entry["phase"] == "set" and entry["backup"] == backup and entry["overlap"] is True
    assert entry["pending"] == run.result["fingerprint"]
    # revert: byte-identical, mode and owner kept; the second revert is no change
    revert = ansible_module("runbook.ops.env_secret", {"path": str(path), "key": "API_TOKEN", "state": "reverted"})
    assert revert.result["changed"] is True, revert.output
    assert path.read_bytes() == ORIGINAL
    info = os.stat(path)
    assert stat.S_IMODE(info.st_mode) == 0o640 and (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    again = ansible_module("runbook.ops.env_secret", {"path": str(path), "key": "API_TOKEN", "state": "reverted"})
    assert again.result["changed"] is False


def test_finish_drops_previous_then_is_idempotent(ansible_module, tmp_path):
    path = make_env(tmp_path)
    base = {"path": str(path), "key": "API_TOKEN"}
    ansible_module("runbook.ops.env_secret", dict(base, state="rotated", keep_previous=True))
    staged = path.read_bytes()
    check = ansible_module("runbook.ops.env_secret", dict(base, state="finished", keep_backup=False), check=True)
    assert check.result["changed"] is True and path.read_bytes() == staged
    done = ansible_module("runbook.ops.env_secret", dict(base, state="finished", keep_backup=False))
    assert done.result["changed"] is True and done.result["previous_fingerprint"] is None
    assert b"API_TOKEN_PREVIOUS" not in path.read_bytes()
    assert not os.path.exists(done.result["backup_removed"])
    assert done.result["rotation"]["phase"] == "finished"
    for check_mode in (True, False):
        assert ansible_module("runbook.ops.env_secret", dict(base, state="finished", keep_backup=False),
                              check=check_mode).result["changed"] is False


def test_absent_and_given_value(ansible_module, tmp_path):
    path = make_env(tmp_path)
    base = {"path": str(path), "key": "SECRET_KEY"}
    given = ansible_module("runbook.ops.env_secret", dict(base, state="rotated", value="it's given"))
    assert given.result["changed"] is True
    assert b"SECRET_KEY=\"it's given\"\n" in path.read_bytes()
    same = ansible_module("runbook.ops.env_secret", dict(base, state="rotated", value="it's given", resume=False))
    assert same.result["changed"] is False
    gone = ansible_module("runbook.ops.env_secret", dict(base, state="absent"))
    assert gone.result["changed"] is True and b"SECRET_KEY" not in path.read_bytes()
    assert ansible_module("runbook.ops.env_secret", dict(base, state="absent")).result["changed"] is False


def test_new_file_is_private(ansible_module, tmp_path):
    path = tmp_path / "fresh.env"
    run = ansible_module("runbook.ops.env_secret", {"path": str(path), "key": "ENCRYPTION_KEY", "generate": "fernet"})
    assert run.result["changed"] is True and run.result["backup"] is None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(read_value(path, "ENCRYPTION_KEY")) == 44


def test_no_value_in_verbose_output_diff_or_record(ansible_module, tmp_path):
    path = make_env(tmp_path)
    given = "GIVEN-secret-value-9d1f"
    runs = [
        ansible_module("runbook.ops.env_secret", {"path": str(path), "key": "API_TOKEN", "state": "rotated",
                                                  "keep_previous": True}, diff=True, verbosity=3),
        ansible_module("runbook.ops.env_secret", {"path": str(path), "key": "SECRET_KEY", "state": "rotated",
                                                  "value": given}, diff=True, verbosity=3),
        ansible_module("runbook.ops.env_secret", {"path": str(path), "key": "API_TOKEN", "state": "finished"},
                       diff=True, verbosity=3),
    ]
    values = [read_value(path, "API_TOKEN"), given, "old-token-value-1", "single quoted $x"]
    record = (tmp_path / ".app.env.rotation.json").read_text()
    for run in runs:
        assert not run.failed, run.output
        for value in values:
            assert value not in run.output
            assert value not in json.dumps(run.records)
    for value in values:
        assert value not in record


def test_bad_line_refused_with_its_number_not_its_text(ansible_module, tmp_path):
    data = b"A=1\n# fine\nthis-line-is-a-leaked-secret-7f3a\nB=2\n"
    path = make_env(tmp_path, data)
    run = ansible_module("runbook.ops.env_secret", {"path": str(path), "key": "A", "state": "rotated"}, verbosity=3)
    assert run.failed
    assert "line 3" in run.result["msg"]
    assert "leaked-secret-7f3a" not in run.output
    assert path.read_bytes() == data and others(tmp_path) == [".app.env.rotation.json.lock"]


def test_bad_key_and_short_length_refused(ansible_module, tmp_path):
    path = make_env(tmp_path)
    bad_key = ansible_module("runbook.ops.env_secret", {"path": str(path), "key": "1BAD"})
    assert bad_key.failed and "not a valid env key" in bad_key.result["msg"]
    short = ansible_module("runbook.ops.env_secret", {"path": str(path), "key": "X", "length": 8})
    assert short.failed and "too short" in short.result["msg"]
    assert path.read_bytes() == ORIGINAL


def test_tested_against_the_sample_service(ansible_module, sample_service):
    svc = sample_service()
    old = svc.token
    base = {"path": svc.env_file, "key": "API_TOKEN"}
    probe = {"url": svc.url + "/api/items", "wait_timeout": 5}
    rotated = ansible_module("runbook.ops.env_secret", dict(base, state="rotated", keep_previous=True))
    assert rotated.result["changed"] is True
    svc.restart()
    overlap = ansible_module("runbook.ops.env_secret", dict(base, state="tested", probe=dict(probe, previous="accepted")))
    assert not overlap.failed, overlap.output
    assert [c["name"] for c in overlap.result["checks"]] == ["new value accepted", "old value still accepted (overlap)"]
    assert overlap.result["rotation"]["phase"] == "tested"
    # the old token is still accepted, so "refused" must fail, naming the check
    strict = dict(probe, previous="refused", wait_timeout=1)
    refused = ansible_module("runbook.ops.env_secret", dict(base, state="tested", probe=strict))
    assert refused.failed and "old value refused" in refused.result["msg"]
    new = read_value(svc.env_file, "API_TOKEN")
    for run in (rotated, overlap, refused):
        assert old not in run.output and new not in run.output
    ansible_module("runbook.ops.env_secret", dict(base, state="finished"))
    svc.restart()
    final = ansible_module("runbook.ops.env_secret", dict(base, state="tested", probe=probe))
    assert not final.failed, final.output
    assert svc.api("GET", "/api/items", token=old).status == 401
    assert svc.api("GET", "/api/items", token=new).status == 200
