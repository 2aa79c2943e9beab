# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The validation of `logrotate -d` output (captured from logrotate 3.21 on Debian 12) and the install."""

from __future__ import annotations

import os

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _logrotate
from ansible_collections.runbook.ops.plugins.module_utils._errors import LogrotateError

UNKNOWN_OPTION = """warning: logrotate in debug mode does nothing except printing debug messages!
reading config file t.conf
error: t.conf:3 unknown option 'bogusoption' -- ignoring line
Handling 1 logs
"""
MISSING_LOG = """reading config file t.conf
error: stat of /tmp/lr/logs/*.log failed: No such file or directory
"""


def test_an_ignored_line_is_an_error_even_with_status_0_and_a_missing_log_is_not():
    assert _logrotate.validation_errors(0, UNKNOWN_OPTION) == ["error: t.conf:3 unknown option 'bogusoption' -- ignoring line"]
    assert _logrotate.validation_errors(1, MISSING_LOG) == [
        "logrotate -d exited with status 1: reading config file t.conf error: stat of /tmp/lr/logs/*.log failed: No such file "
        "or directory"]
    assert _logrotate.validation_errors(0, MISSING_LOG) == []


def test_a_rejected_drop_in_keeps_the_installed_one(tmp_path):
    path = str(tmp_path / "app")
    (tmp_path / "app").write_text("old\n")
    calls = []

    def run(argv):
        calls.append(argv)
        with open(argv[-1], encoding="utf-8") as handle:
            text = handle.read()
        return (0, "", "error: %s:1 unknown option 'x' -- ignoring line\n" % argv[-1]) if "x" in text else (0, "", "")

    drop_in = _logrotate.DropIn(path, run)
    with pytest.raises(LogrotateError, match="unknown option 'x'.*") as exc:
        drop_in.apply("x\n")
    assert path + ":1" in str(exc.value)
    assert (tmp_path / "app").read_text() == "old\n" and os.listdir(tmp_path) == ["app"]
    assert drop_in.apply("new", check_mode=True)["changed"] and (tmp_path / "app").read_text() == "old\n"
    assert drop_in.apply("new")["changed"] and (tmp_path / "app").read_text() == "new\n"
    assert os.stat(path).st_mode & 0o777 == 0o644 and os.listdir(tmp_path) == ["app"]
    assert not drop_in.apply("new\n")["changed"]
    assert len(calls) == 4


def test_the_path_must_be_absolute_in_an_existing_directory(tmp_path):
    with pytest.raises(LogrotateError, match="absolute"):
        _logrotate.DropIn("app", None)
    with pytest.raises(LogrotateError, match="does not exist"):
        _logrotate.DropIn(str(tmp_path / "no" / "app"), None)
