# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""log_scan's engine on hostile log files: NUL runs, invalid UTF-8, huge lines, rotation races,
timestamps with offsets, JSON lines, missing paths."""

from __future__ import annotations

import io
import os
import time

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _logscan
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError

NOW = time.time()
DAY = 86400


def stamp(seconds_ago, offset="Z"):
    """An ISO time ``seconds_ago`` before now, written in the zone ``offset`` (Z or +HH:MM)."""
    value = NOW - seconds_ago
    if offset == "Z":
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    sign = 1 if offset[0] == "+" else -1
    shift = sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(value + shift)) + offset


def scanner(**kwargs):
    pattern = _logscan.Pattern(kwargs.pop("pattern", "error|fatal"), exclude=kwargs.pop("exclude", None),
                               fields=kwargs.pop("fields", None))
    return _logscan.LogScanner(pattern, NOW - kwargs.pop("window", DAY), **kwargs)


def run(tmp_path, files, **kwargs):
    """Write ``files`` {name: bytes} into a folder and scan it."""
    folder = tmp_path / "logs"
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    paths = kwargs.pop("paths", [str(folder)])
    missing_state = kwargs.pop("missing_state", "critical")
    return _logscan.scan(scanner(**kwargs), "24h", 1, 100, paths=paths, missing_state=missing_state)


def by_check(result):
    return {f["check"]: f for f in result["findings"]}


def test_error_after_nul_bytes_is_counted(tmp_path):
    data = b"%s INFO started\n" % stamp(60).encode() + b"\0" * 4096 + b"%s ERROR crashed\n" % stamp(30).encode()
    result = run(tmp_path, {"app.log": data})
    files = by_check(result)["log files"]
    assert files["value"] == 1 and files["state"] == "warning", files
    assert "ERROR crashed" in files["samples"][0] and "\0" not in files["samples"][0]


def test_a_nul_run_longer_than_the_line_cap_does_not_hide_the_next_line(tmp_path):
    data = b"%s INFO started\n" % stamp(60).encode() + b"\0" * 100000 + b"%s ERROR crashed\n" % stamp(30).encode()
    result = run(tmp_path, {"app.log": data}, max_line_bytes=1000)
    assert by_check(result)["log files"]["value"] == 1


def test_invalid_utf8_is_read_and_counted(tmp_path):
    data = b"%s ERROR bad bytes \xff\xfe\xc3( here\n%s info fine\n" % (stamp(10).encode(), stamp(5).encode())
    result = run(tmp_path, {"app.log": data})
    files = by_check(result)["log files"]
    assert files["value"] == 1
    assert "\ufffd" in files["samples"][0]


def test_offsets_are_honoured(tmp_path):
    # 23 h ago written at +05:00 is inside the window; 25 h ago written at -07:00 is outside.
    data = ("%s ERROR inside\n%s ERROR outside\n" % (stamp(23 * 3600, "+05:00"), stamp(25 * 3600, "-07:00"))).encode()
    result = run(tmp_path, {"app.log": data})
    files = by_check(result)["log files"]
    assert files["value"] == 1 and "inside" in files["samples"][0], files


def test_continuation_lines_take_the_previous_time(tmp_path):
    data = ("%s INFO old\nTraceback (most recent call last):\n%s INFO new\nTraceback again\n"
            % (stamp(3 * DAY), stamp(60))).encode()
    result = run(tmp_path, {"app.log": data}, pattern="traceback")
    files = by_check(result)["log files"]
    assert files["value"] == 1 and len(files["samples"]) == 1 and "again" in files["samples"][0], files


def test_lines_without_time_count_by_file_mtime(tmp_path):
    result = run(tmp_path, {"new.log": b"plain error line\n", "old.log": b"old error line\n"})
    folder = tmp_path / "logs"
    os.utime(folder / "old.log", (NOW - 3 * DAY, NOW - 3 * DAY))
    result = _logscan.scan(scanner(), "24h", 1, 100, paths=[str(folder)])
    files = by_check(result)["log files"]
    assert files["value"] == 1 and "1 files" in files["detail"]
    assert [s["source"] for s in result["sources"]] == [str(folder / "new.log")]


def test_json_lines_time_and_fields(tmp_path):
    lines = [
        '{"time": "%s", "level": "error", "msg": "db down"}' % stamp(60),
        '{"ts": %f, "level": "info", "msg": "error in message only"}' % (NOW - 30),
        '{"timestamp": %d, "level": "error", "msg": "too old"}' % int((NOW - 2 * DAY) * 1000),
        'not json but an error',
    ]
    result = run(tmp_path, {"app.log": "\n".join(lines).encode()}, fields=["level"], pattern="^error$")
    files = by_check(result)["log files"]
    assert files["value"] == 1 and "db down" in files["samples"][0], files


def test_exclusion(tmp_path):
    data = ("%s ERROR real\n%s ERROR expected noise\n" % (stamp(9), stamp(8))).encode()
    assert by_check(run(tmp_path, {"a.log": data}, exclude="noise"))["log files"]["value"] == 1


def test_missing_directory_and_empty_glob_are_findings_not_ok(tmp_path):
    result = run(tmp_path, {}, paths=[str(tmp_path / "nope"), str(tmp_path / "logs" / "*.log")])
    checks = by_check(result)
    assert checks["log path %s" % (tmp_path / "nope")]["state"] == "critical"
    assert "does not exist" in checks["log path %s" % (tmp_path / "nope")]["detail"]
    assert checks["log path %s" % (tmp_path / "logs" / "*.log")]["state"] == "critical"
    assert result["state"] == "critical"
    warn = run(tmp_path, {}, paths=[str(tmp_path / "nope")], missing_state="warning")
    assert warn["state"] == "warning"


def test_dangling_symlink_is_a_finding(tmp_path):
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "gone")
    result = run(tmp_path, {}, paths=[str(link)])
    assert by_check(result)["log path %s" % link]["state"] == "critical"


def test_file_removed_between_listing_and_reading_is_skipped(tmp_path):
    scan = scanner().scan_file(str(tmp_path / "rotated.log"), NOW)
    assert scan.matches == 0 and "removed" in scan.note


def test_rotation_race_inside_scan(tmp_path, monkeypatch):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.log").write_bytes(b"error a\n")
    (folder / "b.log").write_bytes(b"error b\n")
    real = _logscan.newest

    def listed_then_removed(files, limit):
        out = real(files, limit)
        os.unlink(folder / "b.log")
        return out

    monkeypatch.setattr(_logscan, "newest", listed_then_removed)
    result = _logscan.scan(scanner(), "24h", 1, 100, paths=[str(folder)])
    files = by_check(result)["log files"]
    assert files["value"] == 1 and "removed before it could be read" in files["detail"], files
    assert result["notes"] and result["state"] == "warning"


def test_long_lines_are_capped(tmp_path):
    data = b"x" * 200000 + b" error at the end\n" + b"error short\n"
    result = run(tmp_path, {"a.log": data}, max_line_bytes=1000)
    source = result["sources"][0]
    assert source["lines_cut"] == 1 and source["matches"] == 1
    assert all(len(line) < 1200 for line in by_check(result)["log files"]["samples"])


def test_file_cap_reads_the_newest_part(tmp_path):
    data = b"error old\n" * 1000 + b"error newest\n"
    result = run(tmp_path, {"a.log": data}, max_bytes=100)
    source = result["sources"][0]
    assert source["truncated"] and source["matches"] < 1001 and source["bytes_read"] <= 101
    assert "newest" in by_check(result)["log files"]["samples"][-1]


def test_a_300_mb_line_takes_seconds(tmp_path):
    path = tmp_path / "huge.log"
    block = b"a" * (1024 * 1024)
    with open(path, "wb") as handle:
        handle.write(b"%s ERROR start " % stamp(5).encode())
        for _block in range(300):
            handle.write(block)
        handle.write(b"\nerror after\n")
    started = time.monotonic()
    scan = scanner(max_bytes=400 * 1024 * 1024).scan_file(str(path), NOW)
    elapsed = time.monotonic() - started
    assert scan.matches == 2 and scan.lines_cut == 1
    assert elapsed < 10, elapsed


def test_iter_lines_keeps_memory_bounded():
    lines = list(_logscan.iter_lines(io.BytesIO(b"abc\n" + b"z" * 50 + b"\nlast"), 10, 10 ** 6, chunk_size=7))
    assert lines == [(b"abc", False), (b"z" * 10, True), (b"last", False)]


def test_stream_counts_container_chunks():
    chunks = iter([b"%s ERROR in" % stamp(3).encode(), b" two chunks\n\0\0\0error after nul\nok\n"])
    scan = scanner().scan_stream("web", chunks)
    assert scan.matches == 2 and scan.lines == 3


def test_container_problem_is_a_finding():
    def reader(name):
        raise LookupError("container %s does not exist: its logs cannot be read" % name)

    result = _logscan.scan(scanner(), "24h", 1, 100, containers=["ghost"], container_logs=reader)
    finding = result["findings"][0]
    assert finding["state"] == "critical" and "ghost does not exist" in finding["detail"]


@pytest.mark.parametrize("value,seconds", [("90m", 5400), ("24h", 86400), (" 2d ", 172800), ("3600", 3600), (60, 60)])
def test_parse_duration(value, seconds):
    assert _logscan.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "1y", "-5m", "0", "24 hours"])
def test_parse_duration_refuses(value):
    with pytest.raises(ParameterError):
        _logscan.parse_duration(value)


def test_bad_pattern_is_a_parameter_error():
    with pytest.raises(ParameterError, match="not a valid regular expression"):
        _logscan.Pattern("error(")
