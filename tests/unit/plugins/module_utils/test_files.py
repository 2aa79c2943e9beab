# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic writes, private copies, partial-file sweeps and the file lock."""

from __future__ import annotations

import io
import os
import stat
import time

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _files


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_is_private_and_complete(tmp_path):
    target = tmp_path / "secret.env"
    assert _files.atomic_write(str(target), data=b"A=1\n") == 4
    assert target.read_bytes() == b"A=1\n"
    assert mode(target) == 0o600


def test_replacement_keeps_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "app.env"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    _files.atomic_write(str(target), reader=io.BytesIO(b"new" * 1000))
    assert target.read_bytes() == b"new" * 1000
    assert mode(target) == 0o640
    assert os.listdir(tmp_path) == ["app.env"]


def test_given_mode_applies_despite_umask(tmp_path):
    old = os.umask(0o077)
    try:
        _files.atomic_write(str(tmp_path / "f"), data=b"x", mode=0o644)
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == 0o644


class Dies:
    def __init__(self):
        self.calls = 0

    def read(self, size):
        self.calls += 1
        if self.calls > 2:
            raise KeyboardInterrupt
        return b"x" * 10


def test_interrupted_write_leaves_target_untouched_and_no_temp(tmp_path):
    target = tmp_path / "db"
    target.write_bytes(b"precious")
    with pytest.raises(KeyboardInterrupt):
        _files.atomic_write(str(target), reader=Dies())
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["db"]


def test_exactly_one_source():
    with pytest.raises(ValueError):
        _files.atomic_write("/nonexistent/x")
    with pytest.raises(ValueError):
        _files.atomic_write("/nonexistent/x", data=b"", reader=io.BytesIO())


def test_private_copy_and_restore_are_byte_identical(tmp_path):
    target = tmp_path / "app.env"
    target.write_bytes(b"# keep\nTOKEN='abc'\n")
    os.chmod(target, 0o644)
    copy = _files.private_copy(str(target))
    assert mode(copy) == 0o600
    target.write_bytes(b"TOKEN=changed\n")
    _files.restore_copy(copy, str(target))
    assert target.read_bytes() == b"# keep\nTOKEN='abc'\n"
    assert mode(target) == 0o644


def test_sweep_partials_removes_only_old_leftovers(tmp_path):
    old = _files.partial_name(str(tmp_path / "a.dump"))
    young = _files.partial_name(str(tmp_path / "b.dump"))
    for path in (old, young):
        with open(path, "wb") as handle:
            handle.write(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    (tmp_path / ".hidden").write_bytes(b"not ours")
    assert _files.sweep_partials(str(tmp_path), 3600) == [old]
    assert sorted(os.listdir(tmp_path)) == sorted([".hidden", os.path.basename(young)])
    assert _files.sweep_partials(str(tmp_path / "missing"), 0) == []


def test_make_private_dirs(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    _files.make_private_dirs(str(deep))
    assert mode(tmp_path / "a") == 0o700 and mode(deep) == 0o700
    _files.make_private_dirs(str(deep))  # exists: fine


def test_file_lock_excludes_a_second_holder(tmp_path):
    lock = str(tmp_path / "deploy.lock")
    with _files.FileLock(lock):
        with pytest.raises(TimeoutError, match="locked by another run"):
            with _files.FileLock(lock, timeout=0.2):
                pass
    with _files.FileLock(lock, timeout=0):
        pass
