# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_sqlite on real SQLite files: online copies, integrity, the writer lock, replacing a database
with its WAL side files."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _sqlite as sq
from ansible_collections.runbook.ops.plugins.module_utils._errors import DatabaseError


def make_db(path, rows=50, wal=True):
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute('CREATE TABLE "odd ""name""" (x)')
    conn.executemany("INSERT INTO items (name) VALUES (?)", [("n%d" % i,) for i in range(rows)])
    conn.commit()
    return conn


def test_online_copy_is_consistent_and_private(tmp_path):
    source = str(tmp_path / "app.db")
    writer = make_db(source)
    writer.execute("INSERT INTO items (name) VALUES ('in the wal')")
    writer.commit()  # still only in app.db-wal while the connection is open
    copy = str(tmp_path / "copy.sqlite3")
    sq.online_copy(source, copy)
    writer.close()
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o600
    assert sq.row_counts(copy) == {"items": 51, 'odd "name"': 0}
    assert sq.integrity_problems(copy) == [] and sq.integrity_problems(copy, thorough=True) == []


def test_online_copy_refuses_what_is_not_a_database_file(tmp_path):
    with pytest.raises(DatabaseError, match="does not exist"):
        sq.online_copy(str(tmp_path / "missing.db"), str(tmp_path / "copy"))
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(DatabaseError, match="is a directory"):
        sq.online_copy(str(tmp_path / "dir.db"), str(tmp_path / "copy"))
    assert not os.path.exists(tmp_path / "copy")


def test_online_copy_never_overwrites(tmp_path):
    source = str(tmp_path / "app.db")
    make_db(source).close()
    (tmp_path / "copy").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        sq.online_copy(source, str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == b"keep"


def test_integrity_problems_of_a_damaged_file(tmp_path):
    path = tmp_path / "bad.db"
    make_db(str(path), rows=2000, wal=False).close()
    data = bytearray(path.read_bytes())
    page = len(data) // 4096 - 1
    data[page * 4096:page * 4096 + 12] = b"\x0d\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"  # a leaf's header
    path.write_bytes(bytes(data))
    assert sq.integrity_problems(str(path), thorough=True) != []
    (tmp_path / "text.db").write_text("not a database at all, but long enough to have a header " * 10)
    assert sq.integrity_problems(str(tmp_path / "text.db")) != []


def test_table_count(tmp_path):
    assert sq.table_count(str(tmp_path / "none.db")) == 0
    make_db(str(tmp_path / "app.db")).close()
    assert sq.table_count(str(tmp_path / "app.db")) == 2


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
if sys.argv[2] == "flock":
    fcntl.flock(fd, fcntl.LOCK_EX)
else:
    fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("kind", ["flock", "fcntl"])
def test_lock_holder_sees_both_kinds_of_lock(tmp_path, kind):
    lock = str(tmp_path / ".app.lock")
    assert sq.lock_holder(lock) is None  # no file: free
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, lock, kind], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert sq.lock_holder(lock) == proc.pid
        with pytest.raises(Exception, match="taken by another process"):
            with sq.WriterLock(lock):
                pass
    finally:
        proc.kill()
        proc.wait()
    assert sq.lock_holder(lock) is None
    with sq.WriterLock(lock):
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_default_lock_path():
    assert sq.default_lock_path("/srv/data/app.v2.db") == "/srv/data/.app.lock"


def test_replace_database_moves_wal_side_files_with_the_old_file(tmp_path):
    target = str(tmp_path / "app.db")
    old = make_db(target, rows=5)
    old.execute("INSERT INTO items (name) VALUES ('only in the wal')")
    old.commit()
    assert os.path.exists(target + "-wal")
    os.chmod(target, 0o640)
    new = str(tmp_path / ".new.sqlite3")
    make_db(new, rows=9, wal=False).close()
    # Copy the old state (db + wal) as a snapshot of what was live, then close it uncleanly-ish.
    previous = sq.replace_database(new, target, target + ".pre-restore")
    old.close()  # the old connection goes away after the swap, as a stopped service would
    assert previous == target + ".pre-restore"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640, "the mode of the replaced file carries over"
    assert not os.path.exists(new)
    assert sq.row_counts(target) == {"items": 9, 'odd "name"': 0}, "a leftover WAL was replayed into the restore"
    assert sq.row_counts(previous)["items"] == 6, "the kept copy lost what was in its WAL"


def test_replace_database_without_keeping_the_previous(tmp_path):
    target = str(tmp_path / "app.db")
    make_db(target, rows=3).close()
    (tmp_path / "app.db-wal").write_bytes(b"stale wal")
    (tmp_path / "app.db-shm").write_bytes(b"stale shm")
    new = str(tmp_path / ".new.sqlite3")
    make_db(new, rows=4, wal=False).close()
    assert sq.replace_database(new, target, None) is None
    assert sorted(os.listdir(tmp_path)) == ["app.db"]
    assert sq.row_counts(target)["items"] == 4


def test_replace_database_of_a_new_target(tmp_path):
    new = str(tmp_path / ".new.sqlite3")
    make_db(new, rows=2, wal=False).close()
    assert sq.replace_database(new, str(tmp_path / "fresh.db"), str(tmp_path / "fresh.db.old")) is None
    assert sorted(os.listdir(tmp_path)) == ["fresh.db"]
