# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files that must never be seen half-written: atomic replace, private copies, locks.

Every file the collection writes that matters after a crash (backups in a local store, SQLite
swaps, env files, release history, rotation state) goes through ``atomic_write``: a hidden,
uniquely named temp file in the same directory, fsync, rename over the target, fsync of the
directory.  A reader sees the old file or the new one, never a mixture; a crash leaves at most
a hidden ``.<name>.partial-<hex>`` that ``sweep_partials`` removes later.  Plain Python.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import stat
import time

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
CHUNK_SIZE = 1024 * 1024
PARTIAL_MARK = ".partial-"


def fsync_dir(directory):
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def make_private_dirs(directory):
    """Create ``directory`` and every missing parent with mode 0700 (os.makedirs applies its mode
    to the last level only)."""
    missing, level = [], directory
    while level and not os.path.isdir(level):
        missing.append(level)
        level = os.path.dirname(level)
    for path in reversed(missing):
        try:
            os.mkdir(path, PRIVATE_DIR)
        except FileExistsError:
            if not os.path.isdir(path):
                raise


def partial_name(path):
    """The hidden temp name ``atomic_write`` uses for ``path``: listings skip dot files, and the
    random part keeps concurrent writers apart."""
    directory, name = os.path.split(path)
    return os.path.join(directory, ".%s%s%s" % (name, PARTIAL_MARK, secrets.token_hex(4)))


def is_partial(name):
    return name.startswith(".") and PARTIAL_MARK in name


def _copy_attributes(source_stat, fd):
    os.fchmod(fd, source_stat.st_mode & 0o7777)
    try:
        os.fchown(fd, source_stat.st_uid, source_stat.st_gid)
    except PermissionError:
        pass  # not root: the file stays ours, which is who wrote it


def atomic_write(path, data=None, reader=None, mode=None, keep_attributes=True):
    """Write ``data`` (bytes) or everything ``reader.read(n)`` yields to ``path`` atomically.

    ``mode`` applies to a new file (default 0600); with ``keep_attributes`` an existing file's
    mode and owner carry over to its replacement.  Returns the number of bytes written.  On any
    error or interruption (KeyboardInterrupt, SystemExit from a signal handler) the temp file is
    removed and the target is untouched.
    """
    if (data is None) == (reader is None):
        raise ValueError("give exactly one of data and reader")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        existing = os.stat(path) if keep_attributes else None
    except FileNotFoundError:
        existing = None
    temp = partial_name(path)
    size = 0
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            if existing is not None:
                _copy_attributes(existing, handle.fileno())
            elif mode is not None:
                os.fchmod(handle.fileno(), mode)  # the umask narrowed the mode given to open()
            if data is not None:
                handle.write(data)
                size = len(data)
            else:
                while True:
                    chunk = reader.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    handle.write(chunk)
                    size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        fsync_dir(directory)
    except BaseException:
        unlink_quietly(temp)
        raise
    return size


def create_partial(path, mode=PRIVATE_FILE):
    """A new hidden partial file for ``path`` (see ``partial_name``), open for binary writing, with ``mode``:
    ``(temp_path, handle)``.  For a writer that must check what it wrote before ``publish_partial``."""
    temp = partial_name(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)
    return temp, os.fdopen(fd, "wb")


def publish_partial(temp, path):
    """Give a closed, fsynced partial file its final name, durably."""
    os.replace(temp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def private_copy(path, suffix=None):
    """A 0600 copy of ``path`` beside it, named ``<name>.<suffix>`` (default: a UTC stamp and a
    random part), written atomically.  Returns the copy's path.  For reverting a change to a file
    that may hold secrets."""
    suffix = suffix or "%s-%s.bak" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), secrets.token_hex(3))
    copy = "%s.%s" % (path, suffix)
    with open(path, "rb") as source:
        atomic_write(copy, reader=source, mode=PRIVATE_FILE, keep_attributes=False)
    return copy


def restore_copy(copy, path):
    """Put a ``private_copy`` back byte-identical, keeping the current file's mode and owner."""
    with open(copy, "rb") as source:
        atomic_write(path, reader=source)


def sweep_stale(directory, is_ours, older_than_seconds, now=None):
    """Remove the entries of ``directory`` that ``is_ours(name, lstat)`` claims and that are older
    than the limit: what a run killed by SIGKILL or a power cut left behind.  Younger ones may
    belong to a run still going.  Directories go with their contents.  Returns the removed paths."""
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
            if not is_ours(name, info) or now - info.st_mtime < older_than_seconds:
                continue
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def sweep_partials(directory, older_than_seconds, now=None):
    """Remove ``atomic_write`` leftovers in ``directory`` older than the limit."""
    return sweep_stale(directory, lambda name, info: is_partial(name) and not stat.S_ISDIR(info.st_mode),
                       older_than_seconds, now)


class FileLock:
    """An exclusive ``flock`` on ``path`` (created 0600), held for a ``with`` block.

    ``timeout`` 0 fails at once when another process holds it; a positive value waits that many
    seconds.  Raises ``TimeoutError`` naming the path.  The kernel releases the lock when the
    process dies, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, path, timeout=0.0, poll=0.1):
        self.path = path
        self.timeout = timeout
        self.poll = poll
        self._fd = None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        deadline = time.monotonic() + max(0.0, self.timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    os.close(fd)
                    raise TimeoutError("%s is locked by another run" % self.path) from None
                time.sleep(self.poll)
        self._fd = fd
        return self

    def __exit__(self, *exc_info):
        os.close(self._fd)
        self._fd = None
