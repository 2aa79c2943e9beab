# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite: consistent online copies, row counts, integrity checks, atomic file replacement and
the service's single-writer lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import struct
import time
import urllib.parse

from ansible_collections.runbook.ops.plugins.module_utils._errors import DatabaseError, LockError
from ansible_collections.runbook.ops.plugins.module_utils._files import PRIVATE_FILE, fsync_dir

SIDE_FILES = ("-wal", "-shm", "-journal")


def _open(path, read_only=True, timeout=30):
    if read_only:
        uri = "file:%s?mode=ro" % urllib.parse.quote(os.path.abspath(path))
        return sqlite3.connect(uri, uri=True, timeout=timeout)
    return sqlite3.connect(path, timeout=timeout)


def online_copy(source, dest):
    """Copy a live database with SQLite's online backup API into ``dest`` (a new 0600 file).

    All pages are copied in one step under a read transaction, so the copy is a consistent
    snapshot even while the service keeps writing (WAL writers are not blocked at all; with a
    rollback journal they wait for the copy, and the copy retries while they hold the lock).
    """
    check_database_file(source)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    os.close(fd)
    try:
        with contextlib.closing(_open(source)) as src, contextlib.closing(_open(dest, read_only=False)) as dst:
            src.backup(dst, pages=-1, sleep=0.05)
    except sqlite3.Error as exc:
        raise DatabaseError("cannot copy SQLite database %s: %s" % (source, exc)) from None


def check_database_file(path):
    """Raise DatabaseError saying what ``path`` is when it is not a readable file."""
    if os.path.isdir(path):
        raise DatabaseError("SQLite database path %s is a directory, not a database file" % path)
    if not os.path.exists(path):
        raise DatabaseError("SQLite database %s does not exist" % path)
    if not os.path.isfile(path):
        raise DatabaseError("SQLite database path %s is not a regular file" % path)
    if not os.access(path, os.R_OK):
        raise DatabaseError("SQLite database %s is not readable" % path)


def row_counts(path):
    """Exact row count of every table (SQLite's own sqlite_* tables excluded)."""
    try:
        with contextlib.closing(_open(path)) as conn:
            names = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                "ORDER BY name")]
            return {name: conn.execute('SELECT count(*) FROM "%s"' % name.replace('"', '""')).fetchone()[0]
                    for name in names}
    except sqlite3.Error as exc:
        raise DatabaseError("cannot count rows in SQLite database %s: %s" % (path, exc)) from None


def integrity_problems(path, thorough=False):
    """[] when the file is a sound database, else what SQLite found wrong."""
    pragma = "PRAGMA integrity_check" if thorough else "PRAGMA quick_check"
    try:
        with contextlib.closing(_open(path)) as conn:
            result = [row[0] for row in conn.execute(pragma)]
    except sqlite3.Error as exc:
        return [str(exc)]
    return [] if result == ["ok"] else result


def table_count(path):
    """How many user tables the database has; a file SQLite cannot read counts as non-empty."""
    if not os.path.exists(path):
        return 0
    try:
        with contextlib.closing(_open(path)) as conn:
            return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").fetchone()[0]
    except sqlite3.Error:
        return -1


def run_scalar(path, query):
    try:
        with contextlib.closing(_open(path)) as conn:
            row = conn.execute(query).fetchone()
    except sqlite3.Error as exc:
        raise DatabaseError(str(exc)) from None
    return row[0] if row else None


def version():
    return sqlite3.sqlite_version


def default_lock_path(db_path):
    """DATA_DIR/.<name>.lock for DATA_DIR/<name>.db, the convention of the runbooks (.s3desk.lock)."""
    directory, name = os.path.split(os.path.abspath(db_path))
    return os.path.join(directory, ".%s.lock" % name.split(".", 1)[0])


def lock_holder(lock_path):
    """The pid holding the writer lock (or -1 when unknown), None when it is free.

    Services lock with flock() or fcntl() record locks; the two do not see each other on
    Linux, so both are tested.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockError("cannot open lock file %s: %s" % (lock_path, exc.strerror)) from None
    try:
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, query))
        if answer[0] != fcntl.F_UNLCK:
            return answer[4]
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return _flock_pid(lock_path)
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _flock_pid(lock_path):
    """The pid of a flock() holder from /proc/locks, -1 when it cannot be told."""
    try:
        inode = os.stat(lock_path).st_ino
        with open("/proc/locks", encoding="ascii") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return -1


class WriterLock:
    """Hold the service's writer lock (flock and fcntl) so it cannot start during a restore."""

    def __init__(self, lock_path):
        self.lock_path = lock_path
        self._fd = None

    def __enter__(self):
        self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise LockError("the writer lock %s was taken by another process (pid %s) just now"
                            % (self.lock_path, lock_holder(self.lock_path))) from None
        return self

    def __exit__(self, *exc_info):
        os.close(self._fd)  # closing releases both locks


def wait_for_release(lock_path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        pid = lock_holder(lock_path)
        if pid is None:
            return
        if time.monotonic() >= deadline:
            raise LockError("the writer lock %s is still held by pid %s %ds after the stop command"
                            % (lock_path, pid, timeout))
        time.sleep(0.2)


def remove_side_files(path):
    """Remove the -wal/-shm/-journal files of a database file no connection has open."""
    for suffix in SIDE_FILES:
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def replace_database(new_file, target, keep_previous_as):
    """Atomically put ``new_file`` in place of ``target``.

    The old database and its -wal/-shm/-journal files move aside together (a leftover WAL
    would otherwise be replayed into the restored file); ``keep_previous_as`` names the kept
    copy, or None to delete it after the swap.  Mode and owner of the old file carry over.
    """
    previous = None
    if os.path.exists(target):
        info = os.stat(target)
        os.chmod(new_file, info.st_mode & 0o7777)
        try:
            os.chown(new_file, info.st_uid, info.st_gid)
        except PermissionError:
            pass  # not root: the file stays ours, which is who ran the restore
        previous = keep_previous_as
    for suffix in SIDE_FILES:
        if os.path.exists(target + suffix):
            if previous:
                os.replace(target + suffix, previous + suffix)
            else:
                os.unlink(target + suffix)
    if previous:
        os.link(target, previous)  # the old file stays reachable until the swap is done
    os.replace(new_file, target)
    fsync_dir(os.path.dirname(os.path.abspath(target)))
    return previous
