# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk usage thresholds, ownership and mode checks of _pathcheck on real temporary files."""

from __future__ import annotations

import os
import pwd
from collections import namedtuple

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _pathcheck
from ansible_collections.runbook.ops.plugins.module_utils._errors import ProbeError
from ansible_collections.runbook.ops.plugins.module_utils._pathcheck import PathPolicy, check_path, check_paths

StatVFS = namedtuple("StatVFS", "f_blocks f_bfree f_bavail f_frsize f_files f_ffree f_favail")


def data_dir(tmp_path):
    root = tmp_path / "data"
    (root / "logs" / "jobs").mkdir(parents=True)
    (root / "app.db").write_text("x")
    (root / "logs" / "jobs" / "1.log").write_text("y")
    for path, mode in ((root, 0o700), (root / "logs", 0o700), (root / "logs" / "jobs", 0o755),
                       (root / "app.db", 0o644), (root / "logs" / "jobs" / "1.log", 0o600)):
        os.chmod(path, mode)
    return root


def test_parse_mode():
    assert _pathcheck.parse_mode("0700") == 0o700
    assert _pathcheck.parse_mode("750") == 0o750
    assert _pathcheck.parse_mode(0o700) == 0o700
    for bad in ("rwx", "0800", 99999, True):
        with pytest.raises(ProbeError):
            _pathcheck.parse_mode(bad)


def test_recursive_mode_offenders(tmp_path):
    root = data_dir(tmp_path)
    policy = PathPolicy.from_dict({"mode": "0700", "file_mode": "0600", "recurse": True, "warn_percent": 100,
                                   "crit_percent": 100, "inode_warn_percent": 100, "inode_crit_percent": 100})
    result = check_path(str(root), policy)
    assert result["state"] == "critical" and result["files_checked"] == 5
    assert [(o["path"], o["mode"], o["problems"]) for o in result["offenders"]] == [
        (str(root / "app.db"), "0644", ["mode 0644 has bits 0044 beyond 0600"]),
        (str(root / "logs" / "jobs"), "0755", ["mode 0755 has bits 0055 beyond 0700"]),
    ]
    assert "2 of 5 checked entries have wrong ownership or mode" in result["reasons"][0]


def test_owner_and_limits(tmp_path):
    root = data_dir(tmp_path)
    me = pwd.getpwuid(os.getuid()).pw_name
    ok = check_path(str(root), PathPolicy.from_dict({"owner": me, "recurse": True, "crit_percent": 100,
                                                     "warn_percent": 100}))
    assert ok["offenders"] == [] and ok["owner"] == me
    other = check_path(str(root), PathPolicy.from_dict({"owner": "12345", "recurse": True, "max_files": 3,
                                                        "max_offenders": 2, "crit_percent": 100, "warn_percent": 100}))
    assert other["truncated"] and other["files_checked"] == 3
    assert other["offenders_count"] == 3 and len(other["offenders"]) == 2
    assert other["offenders"][0]["problems"] == ["owner %s, expected 12345" % me]
    assert any("stopped after max_files=3" in r for r in other["reasons"])
    with pytest.raises(ProbeError, match="not a known user"):
        PathPolicy.from_dict({"owner": "no-such-user-rbops"})


def test_missing_path_and_type(tmp_path):
    assert check_path(str(tmp_path / "nope"), PathPolicy())["reasons"] == ["%s does not exist" % (tmp_path / "nope")]
    assert check_path(str(tmp_path / "nope"), PathPolicy(must_exist=False))["state"] == "ok"
    (tmp_path / "f").write_text("")
    wrong = check_path(str(tmp_path / "f"), PathPolicy(type="directory", warn_percent=100, crit_percent=100))
    assert wrong["state"] == "critical" and "is a file, expected a directory" in wrong["reasons"][0]


@pytest.mark.parametrize("free_blocks, inodes_free, state, reason", [
    (50, 500, "ok", None),
    (15, 500, "warning", "is 85.0% full, at or over warning 80%"),
    (5, 500, "critical", "is 95.0% full, at or over critical 90%"),
    (50, 50, "critical", "95.0% of inodes used, at or over critical 90%"),
])
def test_disk_thresholds(tmp_path, monkeypatch, free_blocks, inodes_free, state, reason):
    monkeypatch.setattr(os, "statvfs", lambda path: StatVFS(
        100, free_blocks, free_blocks, 4096, 1000,
        inodes_free, inodes_free))
    result = check_path(str(tmp_path), PathPolicy())
    assert result["state"] == state
    assert result["filesystem"]["free_bytes"] == free_blocks * 4096
    if reason:
        assert reason in result["reasons"][0]


def test_min_free_bytes_and_overall(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "statvfs", lambda path: StatVFS(1000, 500, 400, 1024, 10, 5, 5))
    report = check_paths([str(tmp_path)], PathPolicy.from_dict({"min_free_bytes": 1024 * 1024}))
    assert report["state"] == "critical" and report["summary"]["critical"] == 1
    assert "400.0 KiB free, under the minimum 1.0 MiB" in report["msg"]
    # used = 500 blocks, usable = used + 400 available -> 55.6 %
    assert report["paths"][0]["filesystem"]["used_percent"] == 55.6


def test_invalid_policy():
    with pytest.raises(ProbeError, match="warn_percent .* is above crit_percent"):
        PathPolicy.from_dict({"warn_percent": 95, "crit_percent": 90})
    with pytest.raises(ProbeError, match="between 0 and 100"):
        PathPolicy.from_dict({"crit_percent": 120})
