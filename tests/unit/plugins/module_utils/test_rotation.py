# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The set/finish/revert steps and the rotation record (the test step is covered by the integration tests)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _rotation
from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile
from ansible_collections.runbook.ops.plugins.module_utils._errors import EnvFileError, RotationError
from ansible_collections.runbook.ops.plugins.module_utils._secrets import fingerprint

ORIGINAL = b"# app\nexport API_TOKEN=old-1  # note\nJWT_SECRET='jwt-1'\n"


@pytest.fixture()
def env_path(tmp_path):
    path = tmp_path / "app.env"
    path.write_bytes(ORIGINAL)
    os.chmod(path, 0o640)
    return str(path)


def secret(path, key="API_TOKEN", check_mode=False):
    return _rotation.EnvSecret(path, key, check_mode=check_mode)


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def record(path):
    with open(_rotation.record_path(path), encoding="utf-8") as handle:
        return json.load(handle)


def test_rotate_records_fingerprints_only(env_path):
    result = secret(env_path).rotate(keep_previous=True)
    new = EnvFile.load(env_path).get("API_TOKEN")
    assert result["changed"] and result["fingerprint"] == fingerprint(new)
    assert result["previous_fingerprint"] == fingerprint("old-1")
    entry = record(env_path)["keys"]["API_TOKEN"]
    assert entry["phase"] == "set" and entry["pending"] == fingerprint(new) and entry["current"] == fingerprint("old-1")
    text = open(_rotation.record_path(env_path), encoding="utf-8").read()
    assert new not in text and "old-1" not in text
    assert stat.S_IMODE(os.stat(_rotation.record_path(env_path)).st_mode) == 0o600
    assert "old-1" not in json.dumps(result) and new not in json.dumps(result)


def test_check_mode_writes_nothing(env_path, tmp_path):
    result = secret(env_path, check_mode=True).rotate(keep_previous=True)
    assert result["changed"] and result["backup"] is None
    assert "API_TOKEN_PREVIOUS=sha256:" in result["diff"]["after"]
    assert read(env_path) == ORIGINAL and sorted(os.listdir(tmp_path)) == ["app.env"]


def test_interrupted_rotation_is_resumed_not_stacked(env_path):
    first = secret(env_path).rotate()
    staged = read(env_path)
    again = secret(env_path).rotate()
    assert again["resumed"] is True and again["changed"] is False and again["backup"] == first["backup"]
    assert read(env_path) == staged
    fresh = secret(env_path).rotate(resume=False)
    assert fresh["changed"] is True and read(env_path) != staged


def test_stale_record_starts_afresh(env_path):
    secret(env_path).rotate()
    env = EnvFile.load(env_path)
    env.set("API_TOKEN", "changed-by-hand")
    env.write(backup=False)
    result = secret(env_path).rotate()
    assert result["resumed"] is False and result["changed"] is True


def test_revert_is_byte_identical_and_refuses_a_changed_key(env_path):
    secret(env_path).rotate(keep_previous=True)
    env = EnvFile.load(env_path)
    env.set("API_TOKEN", "someone-else")
    env.write(backup=False)
    with pytest.raises(RotationError, match="someone changed it since"):
        secret(env_path).revert()
    result = secret(env_path).revert(force=True)
    assert result["changed"] and read(env_path) == ORIGINAL
    assert stat.S_IMODE(os.stat(env_path).st_mode) == 0o640
    assert not os.path.exists(result["backup"])
    assert secret(env_path).revert()["changed"] is False


def test_reverting_the_first_key_undoes_the_keys_staged_after_it(env_path):
    secret(env_path, "API_TOKEN").rotate()
    secret(env_path, "JWT_SECRET").rotate()
    secret(env_path, "API_TOKEN").revert()
    assert read(env_path) == ORIGINAL
    keys = record(env_path)["keys"]
    assert keys["API_TOKEN"]["phase"] == keys["JWT_SECRET"]["phase"] == "reverted"
    assert secret(env_path, "JWT_SECRET").revert()["changed"] is False
    assert [n for n in os.listdir(os.path.dirname(env_path)) if n.endswith(".bak")] == []


def test_reverting_in_reverse_order_also_works(env_path):
    secret(env_path, "API_TOKEN").rotate()
    secret(env_path, "JWT_SECRET").rotate()
    secret(env_path, "JWT_SECRET").revert()
    secret(env_path, "API_TOKEN").revert()
    assert read(env_path) == ORIGINAL


def test_finish_drops_previous_and_can_remove_the_backup(env_path):
    rotated = secret(env_path).rotate(keep_previous=True)
    kept = secret(env_path).finish(keep_backup=True)
    assert kept["changed"] and "API_TOKEN_PREVIOUS" not in read(env_path).decode()
    assert os.path.exists(rotated["backup"])
    # after the finish the rotation can still be reverted (the service failed on the restart after it)
    assert secret(env_path, check_mode=True).revert()["changed"] is True
    done = secret(env_path).finish(keep_backup=False)
    assert done["changed"] and done["backup_removed"] == rotated["backup"] and not os.path.exists(rotated["backup"])
    assert secret(env_path).finish(keep_backup=False)["changed"] is False
    assert secret(env_path).revert()["changed"] is False  # nothing left to revert to


def test_rotation_without_overlap_drops_a_stale_previous(env_path):
    secret(env_path).rotate(keep_previous=True)
    secret(env_path).rotate(resume=False)
    assert EnvFile.load(env_path).get("API_TOKEN_PREVIOUS") is None


def test_present_and_absent(env_path):
    assert secret(env_path, "NEW_KEY").present(kind="hex", length=16)["changed"] is True
    assert len(EnvFile.load(env_path).get("NEW_KEY")) == 32
    assert secret(env_path, "NEW_KEY").present()["changed"] is False
    assert secret(env_path, "NEW_KEY").absent()["changed"] is True
    assert read(env_path) == ORIGINAL
    assert secret(env_path, "NEW_KEY").absent()["changed"] is False


def test_bad_record_refused(env_path):
    with open(_rotation.record_path(env_path), "w", encoding="utf-8") as handle:
        handle.write("{not json")
    with pytest.raises(RotationError, match="cannot be read"):
        secret(env_path).rotate()
    assert read(env_path) == ORIGINAL


def test_bad_env_line_refused_before_anything(env_path, tmp_path):
    with open(env_path, "ab") as handle:
        handle.write(b"oops no equals\n")
    with pytest.raises(EnvFileError, match="line 4"):
        secret(env_path).rotate()
    assert not os.path.exists(_rotation.record_path(env_path))


def test_probe_targets():
    targets = _rotation.probe_targets({"url": "http://127.0.0.1:1/api", "previous": "accepted"}, "new", "old")
    assert [t["name"] for t in targets] == ["new value accepted", "old value still accepted (overlap)"]
    assert targets[0]["api_token"] == "new" and targets[1]["status"] == [200]
    refused = _rotation.probe_targets({"url": "http://x/", "header": "bearer"}, "new", "old")
    assert refused[1]["status"] == [401, 403] and refused[1]["bearer_token"] == "old"
    assert len(_rotation.probe_targets({"url": "http://x/", "previous": "skip"}, "new", "old")) == 1
    assert len(_rotation.probe_targets({"url": "http://x/"}, "new", None)) == 1
    with pytest.raises(RotationError):
        _rotation.probe_targets({"url": "http://x/", "header": "cookie"}, "new", "old")
