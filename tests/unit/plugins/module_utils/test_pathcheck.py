# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk usage thresholds, ownership and mode checks of _pathcheck on real temporary files."""

from __future__ import annotations

import os
import pwd
import shutil
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


NO_DISK_LEVELS = {"warn_percent": 100, "crit_percent": 100, "inode_warn_percent": 100, "inode_crit_percent": 100}


def test_a_directory_vanishing_mid_walk_is_not_a_permission_finding(tmp_path, monkeypatch):
    root = data_dir(tmp_path)
    os.chmod(root / "app.db", 0o600)
    os.chmod(root / "logs" / "jobs", 0o700)
    real_walk = os.walk

    def walk_while_a_job_cleans_up(top, **kwargs):
        walker = real_walk(top, **kwargs)
        first = next(walker, None)
        assert first is not None
        os.remove(root / "app.db")  # listed, then gone before its lstat
        yield first
        shutil.rmtree(root / "logs")  # listed, then gone before the walk enters it
        yield from walker

    monkeypatch.setattr(os, "walk", walk_while_a_job_cleans_up)
    result = check_path(str(root), PathPolicy.from_dict(dict(NO_DISK_LEVELS, mode="0700", file_mode="0600",
                                                             recurse=True)))
    assert result["state"] == "ok", result
    assert result["offenders"] == [] and result["reasons"] == []
    assert result["vanished"] == 2
    assert "wrong ownership or mode" not in result["detail"]
    assert "2 entries vanished" in result["detail"]


def test_the_checked_directory_vanishing_before_its_walk_is_critical(tmp_path, monkeypatch):
    root = data_dir(tmp_path)
    real_walk = os.walk

    def walk_after_removal(top, **kwargs):
        shutil.rmtree(root)
        return real_walk(top, **kwargs)

    monkeypatch.setattr(os, "walk", walk_after_removal)
    result = check_path(str(root), PathPolicy.from_dict(dict(NO_DISK_LEVELS, mode="0777", recurse=True)))
    assert result["state"] == "critical"
    assert result["reasons"] == ["%s vanished while it was checked" % root]


def test_a_symlinked_data_dir_is_followed_and_its_contents_checked(tmp_path):
    root = data_dir(tmp_path)
    link = tmp_path / "current"
    link.symlink_to(root)
    policy = PathPolicy.from_dict(dict(NO_DISK_LEVELS, type="directory", mode="0700", file_mode="0600",
                                       recurse=True))
    result = check_path(str(link), policy)
    assert result["link"] is True and result["link_target"] == str(root)
    assert result["resolved_path"] == str(root) and result["type"] == "directory"
    assert result["files_checked"] == 5
    assert [o["path"] for o in result["offenders"]] == [str(root / "app.db"), str(root / "logs" / "jobs")]
    assert result["state"] == "critical" and not any("is a link" in r for r in result["reasons"])
    assert result["notes"] == ["%s is a symbolic link to %s; checked %s" % (link, root, root)]

    os.chmod(root / "app.db", 0o600)
    os.chmod(root / "logs" / "jobs", 0o700)
    clean = check_path(str(link), policy)
    assert clean["state"] == "ok" and clean["reasons"] == [], clean
    assert "link to %s" % root in clean["detail"]


@pytest.mark.parametrize("fail_on_missing", [True, False])
def test_dangling_and_looping_links_are_findings_not_exceptions(tmp_path, fail_on_missing):
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    loop_a, loop_b = tmp_path / "loop-a", tmp_path / "loop-b"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    policy = PathPolicy.from_dict(dict(NO_DISK_LEVELS, type="directory", mode="0700", recurse=True,
                                       must_exist=fail_on_missing))
    report = check_paths([str(dangling), str(loop_a), str(loop_a / "inside")], policy)
    gone, loop, below_loop = report["paths"]
    if fail_on_missing:
        assert gone["state"] == "critical"
        assert gone["reasons"] == ["%s is a symbolic link to %s, which does not exist (a dangling link)"
                                   % (dangling, tmp_path / "gone")]
    else:
        assert gone["state"] == "ok" and gone["notes"] == ["%s is a dangling symbolic link to %s"
                                                           % (dangling, tmp_path / "gone")]
    assert gone["exists"] is False and gone["link"] is True
    assert loop["state"] == "critical"
    assert loop["reasons"] == ["%s is a symbolic link to %s that loops (too many levels of links)" % (loop_a, loop_b)]
    assert below_loop["state"] == "critical"
    assert below_loop["reasons"] == ["cannot reach %s: a symbolic link on its way loops" % (loop_a / "inside")]
    assert "Errno" not in report["msg"]


def test_an_unquoted_decimal_mode_is_read_as_octal_with_a_warning(tmp_path):
    policy = PathPolicy.from_dict({"mode": 755, "file_mode": 420})
    assert policy.mode == 0o755  # `mode: 755` in YAML
    assert policy.file_mode == 0o644  # `file_mode: 0644` in YAML is the integer 420: taken as it is
    assert policy.warnings == ["mode 755 is a decimal number (an unquoted YAML value); read it as the octal mode "
                               "0755. Quote modes, for example mode: '0755'"]
    root = data_dir(tmp_path)
    os.chmod(root, 0o755)
    result = check_path(str(root), PathPolicy.from_dict(dict(NO_DISK_LEVELS, mode=755)))
    assert result["state"] == "ok" and result["offenders"] == [], result
    assert _pathcheck.parse_mode(2770) == 0o2770
    with pytest.raises(ProbeError, match="out of range"):
        _pathcheck.parse_mode(7778 * 10)


def test_disk_detail_says_each_fact_once_in_binary_units(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "statvfs", lambda path: StatVFS(1000, 500, 400, 1024, 10, 5, 5))
    low = check_path(str(tmp_path), PathPolicy.from_dict({"min_free_bytes": 1024 * 1024, "warn_percent": 50,
                                                          "inode_warn_percent": 100, "inode_crit_percent": 100}))
    mount = low["filesystem"]["mount"]
    assert low["detail"] == ("filesystem %s is 55.6%% full, at or over warning 50%%; "
                             "filesystem %s has 400.0 KiB free, under the minimum 1.0 MiB" % (mount, mount))
    assert "GiB" not in low["detail"] and low["detail"].count("KiB free") == 1
    quiet = check_path(str(tmp_path), PathPolicy.from_dict(NO_DISK_LEVELS))
    assert quiet["detail"] == "55.6%% used on %s, 400.0 KiB free" % mount
