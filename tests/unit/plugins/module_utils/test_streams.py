# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readers of _streams: hashing, verification against a manifest, compression, child processes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys

import pytest
import zstandard

from ansible_collections.runbook.ops.plugins.module_utils import _streams as s
from ansible_collections.runbook.ops.plugins.module_utils._errors import BackupError, IntegrityError

# Poorly compressible and well compressible parts, a few chunks long.
DATA = os.urandom(3 * s.CHUNK_SIZE + 12345) + b"runbook " * 100000


def drain(reader, size=s.CHUNK_SIZE):
    out = io.BytesIO()
    if size == s.CHUNK_SIZE:
        assert s.copy_to(reader, out.write) == len(out.getvalue())
        return out.getvalue()
    while True:
        data = reader.read(size)
        if not data:
            return out.getvalue()
        out.write(data)


def test_hashing_reader_counts_and_hashes():
    reader = s.HashingReader(io.BytesIO(DATA))
    assert drain(reader, 777) == DATA
    assert reader.size == len(DATA) and reader.sha256 == hashlib.sha256(DATA).hexdigest()


def verifying(data, expected=DATA, size=None):
    return s.VerifyingReader(io.BytesIO(data), len(expected) if size is None else size,
                             hashlib.sha256(expected).hexdigest(), "store/app/x.dump.zst")


def test_verifying_reader_accepts_the_right_bytes():
    reader = verifying(DATA)
    assert drain(reader) == DATA and reader.verified


def test_verifying_reader_finish_drains_and_checks():
    reader = verifying(DATA)
    reader.read(10)
    reader.finish()
    assert reader.verified and reader.size == len(DATA)


def test_verifying_reader_truncated():
    reader = verifying(DATA[:-1])
    with pytest.raises(IntegrityError, match="truncated") as info:
        drain(reader)
    assert "store/app/x.dump.zst" in str(info.value) and not reader.verified


def test_verifying_reader_oversized_fails_as_soon_as_it_is_too_long():
    source = io.BytesIO(DATA + b"x" * (5 * s.CHUNK_SIZE))
    reader = s.VerifyingReader(source, len(DATA), hashlib.sha256(DATA).hexdigest(), "obj")
    with pytest.raises(IntegrityError, match="larger than its manifest"):
        drain(reader)
    assert source.tell() < len(DATA) + 2 * s.CHUNK_SIZE, "it read far past the expected size"


def test_verifying_reader_corrupt():
    corrupt = bytearray(DATA)
    corrupt[len(corrupt) // 2] ^= 0x01
    reader = verifying(bytes(corrupt))
    with pytest.raises(IntegrityError, match="sha256 .* corrupt") as info:
        reader.finish()
    assert hashlib.sha256(DATA).hexdigest() in str(info.value)


@pytest.mark.parametrize("compression", s.COMPRESSIONS)
def test_compression_round_trip(compression):
    compressed = drain(s.compressing_reader(io.BytesIO(DATA), compression))
    if compression == "none":
        assert compressed == DATA
    else:
        assert len(compressed) < len(DATA)
    assert drain(s.decompressing_reader(io.BytesIO(compressed), compression), 4096) == DATA


def test_compressed_formats_are_standard():
    assert gzip.decompress(drain(s.compressing_reader(io.BytesIO(DATA), "gzip"))) == DATA
    zstd = drain(s.compressing_reader(io.BytesIO(DATA), "zstd", level=1))
    assert zstandard.ZstdDecompressor().decompressobj().decompress(zstd) == DATA


def test_empty_stream_round_trip():
    for compression in s.COMPRESSIONS:
        packed = drain(s.compressing_reader(io.BytesIO(b""), compression))
        assert drain(s.decompressing_reader(io.BytesIO(packed), compression)) == b""


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_corrupt_compressed_data_is_an_integrity_error(compression):
    packed = bytearray(drain(s.compressing_reader(io.BytesIO(DATA), compression)))
    packed[len(packed) // 2] ^= 0xFF
    with pytest.raises(IntegrityError, match="%s data is corrupt" % compression):
        drain(s.decompressing_reader(io.BytesIO(bytes(packed)), compression))


def test_truncated_gzip_is_an_integrity_error():
    packed = drain(s.compressing_reader(io.BytesIO(DATA), "gzip"))
    with pytest.raises(IntegrityError, match="truncated"):
        drain(s.decompressing_reader(io.BytesIO(packed[:-50]), "gzip"))


def test_process_output_streams_stdout():
    argv = [sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'x' * 3000000)"]
    reader = s.ProcessOutput(argv, None, BackupError, "writer")
    assert drain(reader) == b"x" * 3000000 and reader.size == 3000000


def test_process_output_failing_exit_raises_with_stderr_tail():
    argv = [sys.executable, "-c", "import sys; sys.stdout.write('partial'); sys.stdout.flush(); "
                                  "sys.stderr.write('noise\\n' * 5000 + 'pg_dump: error: connection lost\\n'); "
                                  "sys.exit(3)"]
    reader = s.ProcessOutput(argv, None, BackupError, "pg_dump of app")
    with pytest.raises(BackupError, match=r"pg_dump of app failed \(exit 3\): .*connection lost") as info:
        drain(reader)
    assert len(str(info.value)) < 3000


def test_process_output_missing_program():
    with pytest.raises(BackupError, match="cannot start pg_dump"):
        s.ProcessOutput(["/nonexistent/pg_dump"], None, BackupError, "pg_dump")


def test_process_output_kill_stops_the_child():
    reader = s.ProcessOutput([sys.executable, "-c", "import time; time.sleep(60)"], None, BackupError, "sleeper")
    reader.kill()
    assert reader.read() == b""


def test_a_failing_process_fails_the_whole_chain():
    """A dump that dies half-way must surface through compression and hashing to the consumer."""
    argv = [sys.executable, "-c", "import sys, os; sys.stdout.buffer.write(os.urandom(2500000)); sys.exit(1)"]
    chain = s.HashingReader(s.compressing_reader(s.ProcessOutput(argv, None, BackupError, "dump"), "zstd"))
    with pytest.raises(BackupError, match="exit 1"):
        drain(chain)


def test_stderr_tail_joins_lines():
    handle = io.BytesIO(b"first\n\n  second  \n")
    assert s.stderr_tail(handle) == "first | second"
    assert s.stderr_tail(io.BytesIO(b"")) == "(no error output)"


def test_process_killed_by_a_signal_says_so():
    argv = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    reader = s.ProcessOutput(argv, None, BackupError, "pg_dump of app")
    with pytest.raises(BackupError, match=r"pg_dump of app failed \(killed by signal 9\)"):
        drain(reader)


@pytest.mark.parametrize("code, text", [(0, "exit 0"), (1, "exit 1"), (-9, "killed by signal 9"),
                                        (-15, "killed by signal 15")])
def test_exit_status(code, text):
    assert s.exit_status(code) == text


def _stderr(data):
    handle = io.BytesIO(data)
    return handle


def test_stderr_tail_starts_at_a_line_boundary():
    lines = b"".join(b"pg_dump: detail number %05d of the failure\n" % i for i in range(200))
    tail = s.stderr_tail(_stderr(lines), limit=500)
    assert tail.startswith("... pg_dump: detail number ")
    assert tail.endswith("detail number 00199 of the failure")
    for part in tail[4:].split(" | "):
        assert part.startswith("pg_dump: detail number "), part


def test_stderr_tail_of_one_long_line_starts_at_a_word():
    words = b" ".join(b"word%04d" % i for i in range(1000))
    tail = s.stderr_tail(_stderr(words), limit=300)
    assert tail.startswith("... word") and tail.endswith("word0999")
    assert all(len(word) == 8 for word in tail[4:].split(" ")), tail


def test_stderr_tail_short_output_is_whole():
    assert s.stderr_tail(_stderr(b"error: one\nerror: two\n")) == "error: one | error: two"
    assert s.stderr_tail(_stderr(b"")) == "(no error output)"


def test_zstd_without_the_library_is_refused_plainly(monkeypatch):
    monkeypatch.setattr(s, "zstandard", None)
    with pytest.raises(s.RunbookError, match="needs the Python library zstandard"):
        s.decompressing_reader(io.BytesIO(b""), "zstd")
    with pytest.raises(s.RunbookError, match="needs the Python library zstandard"):
        s.compressing_reader(io.BytesIO(b""), "zstd")
