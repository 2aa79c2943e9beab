# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readable streams that chain a dump process, compression and hashing in constant memory.

Everything here follows one pull model: a consumer calls ``read(size)`` on the outermost
reader until it returns ``b""``.  Errors surface from ``read`` so that the consumer (a store
upload, a restore sink) aborts instead of committing a partial object.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import tempfile
import zlib

from ansible_collections.runbook.ops.plugins.module_utils._errors import IntegrityError, RunbookError

try:
    import zstandard
except ImportError:  # modules should report missing_required_lib first; _need_zstandard() refuses otherwise
    zstandard = None

CHUNK_SIZE = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; Python 3.10+ names it
COMPRESSIONS = ("zstd", "gzip", "none")
# zstd level 1 by default.  Measured with bench/ on the application-like dataset (1.6 GiB, 2 cores,
# medians of 3): level 1 took 0.91x the pg_dump -Z0 floor and wrote 0.839x pg_dump -Fc's size;
# level 3 took 1.12x and wrote 0.921x.  A zstd worker thread gained nothing there (0.96x, +9 MiB):
# the dump, not the compressor, is the bottleneck at level 1.
DEFAULT_LEVELS = {"zstd": 1, "gzip": 6, "none": 0}
EXTENSIONS = {"zstd": ".zst", "gzip": ".gz", "none": ""}


class ProcessOutput:
    """The stdout of a child process as a reader.

    At end of stream it waits for the process; a non-zero exit raises ``error_cls`` with the
    tail of the process's stderr, so a dump that died half-way is never taken as complete.
    """

    def __init__(self, argv, env, error_cls, what, stdin=None, cwd=None):
        self._what = what
        self._error_cls = error_cls
        # stderr goes to a file, not a pipe: a chatty process can never block on a full pipe.
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                          stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                          env=env, cwd=cwd)
        except OSError as exc:
            self._stderr.close()
            raise error_cls("cannot start %s (%s): %s" % (what, argv[0], exc.strerror or exc)) from None
        _widen_pipe(self._proc.stdout)
        self._done = False
        self.size = 0

    def read(self, size=CHUNK_SIZE):
        if self._done:
            return b""
        data = self._proc.stdout.read(size if size and size > 0 else CHUNK_SIZE)
        if not data:
            self._finish()
        self.size += len(data)
        return data

    def _finish(self):
        self._done = True
        self._proc.stdout.close()
        code = self._proc.wait()
        if code != 0:
            raise self._error_cls("%s failed (%s): %s" % (self._what, exit_status(code), stderr_tail(self._stderr)))
        self._stderr.close()

    def kill(self):
        """Stop the process (after an error downstream) and reap it."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._done = True


def _widen_pipe(pipe):
    """A 1 MiB pipe lets the dump run on while we compress (measured: 9.3 s -> 8.1 s for 1 GiB)."""
    try:
        fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size for this user: the default pipe still works


def exit_status(code):
    """How a child process ended, for people: "exit 1" or "killed by signal 9" (Popen reports a
    death by signal N as -N)."""
    return "killed by signal %d" % -code if code < 0 else "exit %d" % code


def stderr_tail(handle, limit=2000):
    """The last ``limit`` bytes or so a process wrote to its stderr file, on one line.  When
    the output is longer, the tail starts at a line boundary (or, with one long line, a word
    boundary) after the cut, marked with "..."."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - limit))
    text = handle.read().decode("utf-8", "replace")
    if size > limit:
        newline = text.find("\n")
        if 0 <= newline < len(text.rstrip()) - 1:
            text = text[newline + 1:]
        else:
            space = text.find(" ")
            text = text[space + 1:] if space >= 0 else text
        text = "... " + text.lstrip()
    text = text.strip()
    return " | ".join(line.strip() for line in text.splitlines() if line.strip()) or "(no error output)"


class HashingReader:
    """Counts and sha256-hashes what passes through it."""

    def __init__(self, source):
        self._source = source
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, size=CHUNK_SIZE):
        data = self._source.read(size)
        if data:
            self._hash.update(data)
            self.size += len(data)
        return data

    @property
    def sha256(self):
        return self._hash.hexdigest()


class VerifyingReader(HashingReader):
    """A HashingReader that knows what it must see: it fails as soon as the stream is longer
    than ``expected_size`` and, at the end, when size or sha256 differ from the manifest."""

    def __init__(self, source, expected_size, expected_sha256, name):
        super().__init__(source)
        self._expected_size = expected_size
        self._expected_sha256 = expected_sha256
        self._name = name
        self.verified = False

    def read(self, size=CHUNK_SIZE):
        data = super().read(size)
        if self.size > self._expected_size:
            raise IntegrityError("backup object %s is larger than its manifest says (%d bytes): refusing it"
                                 % (self._name, self._expected_size))
        if not data:
            self._check()
        return data

    def finish(self):
        """Drain what a consumer left unread (hashing it) and check size and sha256."""
        while not self.verified:
            self.read(CHUNK_SIZE)

    def _check(self):
        if self.verified:
            return
        if self.size != self._expected_size:
            raise IntegrityError("backup object %s is %d bytes but its manifest says %d: it is truncated or "
                                 "was replaced; refusing it" % (self._name, self.size, self._expected_size))
        if self.sha256 != self._expected_sha256:
            raise IntegrityError("backup object %s has sha256 %s but its manifest says %s: it is corrupt; "
                                 "refusing it" % (self._name, self.sha256, self._expected_sha256))
        self.verified = True


class _ZlibReader:
    """gzip compression or decompression of a reader with zlib (wbits=31 is the gzip container)."""

    def __init__(self, source, compress, level=6):
        self._source = source
        self._compress = compress
        self._codec = zlib.compressobj(level, zlib.DEFLATED, 31) if compress else zlib.decompressobj(31)
        self._eof = False

    def read(self, size=CHUNK_SIZE):
        while not self._eof:
            raw = self._source.read(CHUNK_SIZE)
            try:
                if raw:
                    out = self._codec.compress(raw) if self._compress else self._codec.decompress(raw)
                else:
                    self._eof = True
                    out = self._codec.flush()
                    if not self._compress and not self._codec.eof:
                        raise IntegrityError("gzip stream ends early: the backup object is truncated")
            except zlib.error as exc:
                raise IntegrityError("gzip data is corrupt: %s" % exc) from None
            if out:
                return out
        return b""


def _need_zstandard():
    if zstandard is None:
        raise RunbookError("zstd compression needs the Python library zstandard on the managed host")


class _ZstdDecompressingReader:
    """zstd decompression that reports corruption as IntegrityError rather than a library error."""

    def __init__(self, source):
        _need_zstandard()
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            source, read_size=CHUNK_SIZE, read_across_frames=True, closefd=False)

    def read(self, size=CHUNK_SIZE):
        try:
            return self._reader.read(size)
        except zstandard.ZstdError as exc:
            raise IntegrityError("zstd data is corrupt: %s" % exc) from None


def compressing_reader(source, compression, level=None):
    """Wrap ``source`` so that reading it yields compressed bytes."""
    if level is None:
        level = DEFAULT_LEVELS[compression]
    if compression == "zstd":
        _need_zstandard()
        # write_checksum adds a per-frame xxhash: corruption shows during decompression too.
        cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        return cctx.stream_reader(source, read_size=CHUNK_SIZE, closefd=False)
    if compression == "gzip":
        return _ZlibReader(source, compress=True, level=level)
    return source


def decompressing_reader(source, compression):
    if compression == "zstd":
        return _ZstdDecompressingReader(source)
    if compression == "gzip":
        return _ZlibReader(source, compress=False)
    return source


def copy_to(reader, write):
    """Copy a reader into a ``write`` callable; returns the number of bytes copied."""
    total = 0
    while True:
        data = reader.read(CHUNK_SIZE)
        if not data:
            return total
        write(data)
        total += len(data)
