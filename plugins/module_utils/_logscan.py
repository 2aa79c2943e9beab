# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Count the lines of recent logs that match a pattern: log files (globs and directories) and
container logs, text or JSON lines, within a time window.

Logs are hostile input: NUL runs after a crash, invalid UTF-8, a single line of hundreds of MB,
files rotated away while being read.  Lines are read as bytes with a cap per line and per source,
NUL bytes are dropped and invalid UTF-8 replaced before matching, and a file that disappears is
skipped with a note.  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import collections
import datetime
import fnmatch
import glob
import json
import os
import re
import time

from ansible_collections.runbook.ops.plugins.module_utils import _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError
from ansible_collections.runbook.ops.plugins.module_utils._findings import clip, finding

# Read unit: big enough that a 300 MB line costs ~300 reads, small enough to stay in cache.
CHUNK_SIZE = 1024 * 1024
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"\s*(\d+)\s*([smhdw]?)\s*")
# A leading ISO-8601 time, optionally in brackets: 2026-11-30T08:00:01.123+01:00, 2026-11-30 08:00:01Z.
_TEXT_TIME_RE = re.compile(
    rb"\s*\[?(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s?(Z|z|[+-]\d{2}:?\d{2})?")
TIME_FIELDS = ("time", "timestamp", "ts", "@timestamp", "asctime", "t")
FORMATS = ("auto", "text", "json")
GLOB_CHARS = frozenset("*?[")


def parse_duration(value, name="duration"):
    """Seconds of ``3600``, ``"90m"``, ``"24h"``, ``"2d"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = int(value)
    else:
        match = _DURATION_RE.fullmatch(str(value))
        if not match:
            raise ParameterError("%s must be seconds or a duration such as 90m, 24h, 2d; got %r" % (name, value))
        seconds = int(match.group(1)) * DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ParameterError("%s must be more than 0 seconds, got %r" % (name, value))
    return seconds


def _offset(text):
    if not text or text in ("Z", "z"):
        return datetime.timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return datetime.timezone(sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def text_time(line):
    """Epoch seconds of the ISO-8601 time a text line starts with (offsets honoured; none = UTC), or None."""
    match = _TEXT_TIME_RE.match(line)
    if not match:
        return None
    parts = [int(x) for x in match.groups()[:6]]
    fraction = match.group(7)
    zone = match.group(8)
    try:
        stamp = datetime.datetime(*parts, tzinfo=_offset(zone.decode("ascii") if zone else None))
    except ValueError:
        return None
    seconds = stamp.timestamp()
    if fraction:
        seconds += int(fraction) / (10 ** len(fraction))
    return seconds


def value_time(value):
    """Epoch seconds of a JSON time field: a number (seconds or milliseconds) or an ISO-8601 string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str):
        return text_time(value.encode("utf-8", "replace"))
    return None


def iter_lines(handle, max_line_bytes, max_bytes, chunk_size=CHUNK_SIZE):
    """Lines of a binary stream as ``(bytes, cut)``, NUL bytes dropped: at most ``max_line_bytes`` of each
    line are kept (``cut`` says more was dropped), and reading stops after ``max_bytes``.  The last line may lack a
    newline.  Memory stays within one chunk plus one capped line, whatever the input."""
    buf = bytearray()
    cut = False
    left = max_bytes
    while left > 0:
        data = handle.read(min(chunk_size, left))
        if not data:
            break
        left -= len(data)
        if b"\0" in data:
            # A crash leaves runs of NUL bytes (often megabytes, no newline) before the next real line:
            # they are not text and must not push that line past the cap.
            data = data.replace(b"\0", b"")
        start = 0
        while True:
            end = data.find(b"\n", start)
            piece_end = len(data) if end < 0 else end
            room = max_line_bytes - len(buf)
            if room > 0:
                buf += data[start:min(piece_end, start + room)]
            if piece_end - start > max(room, 0):
                cut = True
            if end < 0:
                break
            yield bytes(buf), cut
            buf = bytearray()
            cut = False
            start = end + 1
    if buf or cut:
        yield bytes(buf), cut


class Pattern:
    """What counts as a match: a regex (case-insensitive unless told), optionally an exclusion, and for
    JSON lines the fields to search."""

    def __init__(self, regex, ignore_case=True, exclude=None, fields=None):
        flags = re.IGNORECASE if ignore_case else 0
        try:
            self.regex = re.compile(regex, flags)
            self.exclude = re.compile(exclude, flags) if exclude else None
        except re.error as exc:
            raise ParameterError("the pattern %r is not a valid regular expression: %s" % (exclude or regex, exc)) from None
        self.fields = list(fields or ())

    def matches(self, text, record=None):
        subject = text
        if record is not None and self.fields:
            subject = " ".join(str(record.get(name, "")) for name in self.fields)
        if not self.regex.search(subject):
            return False
        return not (self.exclude and self.exclude.search(subject))


class Scan:
    """Counting state of one source (a file or a container)."""

    def __init__(self, name, kind, samples):
        self.name = name
        self.kind = kind
        self.matches = 0
        self.lines = 0
        self.bytes_read = 0
        self.lines_cut = 0
        self.truncated = False
        self.note = None
        self.samples = collections.deque(maxlen=samples) if samples > 0 else None

    def as_dict(self):
        return {"source": self.name, "kind": self.kind, "matches": self.matches, "lines": self.lines,
                "bytes_read": self.bytes_read, "lines_cut": self.lines_cut, "truncated": self.truncated,
                "note": self.note}


class LogScanner:
    """Reads sources and counts matching lines newer than ``since`` (epoch seconds)."""

    def __init__(self, pattern, since, line_format="auto", time_fields=TIME_FIELDS, max_line_bytes=65536,
                 max_bytes=64 * 1024 * 1024, samples=5, sample_chars=500):
        if line_format not in FORMATS:
            raise ParameterError("format must be one of %s, got %r" % (", ".join(FORMATS), line_format))
        if max_line_bytes < 1 or max_bytes < 1:
            raise ParameterError("max_line_bytes and max_file_bytes must be at least 1")
        self.pattern = pattern
        self.since = since
        self.format = line_format
        self.time_fields = list(time_fields)
        self.max_line_bytes = max_line_bytes
        self.max_bytes = max_bytes
        self.samples = samples
        self.sample_chars = sample_chars
        self.recent = collections.deque(maxlen=samples) if samples > 0 else None

    def _record(self, raw):
        if self.format == "text" or not raw.lstrip().startswith(b"{"):
            return None
        try:
            record = json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def _line_time(self, raw, record):
        if record is not None:
            for name in self.time_fields:
                if name in record:
                    return value_time(record[name])
            return None
        if self.format == "json":
            return None
        return text_time(raw)

    def feed(self, scan, lines, default_in_window=True):
        """Count ``lines`` (``(bytes, cut)`` pairs) into ``scan``.  A line without a time of its own takes
        the time of the line before it (a traceback's continuation lines); before any time, it counts
        when ``default_in_window`` (the source changed within the window)."""
        in_window = default_in_window
        for raw, cut in lines:
            scan.bytes_read += len(raw) + 1
            if not raw.strip():
                continue
            scan.lines += 1
            if cut:
                scan.lines_cut += 1
            record = self._record(raw) if self.format != "text" else None
            stamp = self._line_time(raw, record)
            if stamp is not None:
                in_window = stamp >= self.since
            if not in_window:
                continue
            text = raw.decode("utf-8", "replace")
            if self.pattern.matches(text, record):
                scan.matches += 1
                if scan.samples is not None:
                    line = clip(" ".join(text.split()), self.sample_chars)
                    scan.samples.append(line)
                    self.recent.append("%s: %s" % (scan.name, line))

    def scan_file(self, path, mtime=None):
        """Count one file: its last ``max_bytes`` are read.  A file removed or unreadable between listing
        and reading is skipped with a note."""
        scan = Scan(path, "file", self.samples)
        try:
            handle = open(path, "rb")  # pylint: disable=consider-using-with
        except FileNotFoundError:
            scan.note = "removed before it could be read (rotated?); skipped"
            return scan
        except OSError as exc:
            scan.note = "cannot be read: %s" % (exc.strerror or exc)
            return scan
        with handle:
            try:
                info = os.fstat(handle.fileno())
                if info.st_size > self.max_bytes:
                    handle.seek(info.st_size - self.max_bytes)
                    handle.readline()  # start at a line boundary
                    scan.truncated = True
                lines = iter_lines(handle, self.max_line_bytes, self.max_bytes)
                self.feed(scan, lines, default_in_window=(mtime if mtime is not None else info.st_mtime) >= self.since)
            except OSError as exc:
                scan.note = "read failed: %s" % (exc.strerror or exc)
        return scan

    def scan_stream(self, name, chunks, kind="container"):
        """Count a stream of byte chunks (container logs)."""
        scan = Scan(name, kind, self.samples)
        reader = _ChunkReader(chunks)
        self.feed(scan, iter_lines(reader, self.max_line_bytes, self.max_bytes))
        scan.truncated = reader.more()
        return scan


class _ChunkReader:
    """``read(n)`` over an iterator of byte chunks."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._pending = b""
        self._done = False

    def read(self, size):
        while len(self._pending) < size and not self._done:
            try:
                self._pending += next(self._chunks)
            except StopIteration:
                self._done = True
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def more(self):
        if self._pending:
            return True
        if self._done:
            return False
        try:
            self._pending = next(self._chunks)
        except StopIteration:
            self._done = True
        return bool(self._pending)


def list_files(spec, patterns):
    """Files of one ``paths`` entry: a glob, a directory (searched recursively for ``patterns``) or a
    file.  Returns ``(files, problem)``; ``problem`` says why nothing could be listed."""
    if GLOB_CHARS & set(spec):
        found = [path for path in glob.glob(spec, recursive=True) if os.path.isfile(path)]
        return found, None if found else "no file matches %s" % spec
    if os.path.isdir(spec):
        found = []
        errors = []
        for root, _dirs, names in os.walk(spec, onerror=errors.append):
            for name in names:
                if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                    found.append(os.path.join(root, name))
        if errors and not found:
            return [], "cannot list %s: %s" % (spec, errors[0].strerror or errors[0])
        return found, None
    if os.path.isfile(spec):
        return [spec], None
    if os.path.lexists(spec):
        return [], "%s is a dangling symbolic link or not a regular file" % spec
    return [], "%s does not exist" % spec


def newest(files, limit):
    """``[(path, mtime)]`` newest first, at most ``limit``; files gone since listing are dropped."""
    stamped = []
    for path in files:
        try:
            stamped.append((path, os.stat(path).st_mtime))
        except OSError:
            continue
    stamped.sort(key=lambda item: item[1], reverse=True)
    return stamped[:limit], len(stamped)


def scan_files(scanner, paths, patterns, max_files, missing_state="critical", window_text="window"):
    """Findings and per-file results of the ``paths`` entries."""
    findings, results, notes, listed = [], [], [], []
    for spec in paths:
        files, problem = list_files(spec, patterns)
        if problem:
            findings.append(finding("log path " + spec, missing_state, None, None,
                                    "%s: no log to read, so errors there cannot be seen" % problem,
                                    kind="logs", target=spec))
        listed.extend(files)
    files, total = newest(sorted(set(listed)), max_files)
    recent = [(path, mtime) for path, mtime in files if mtime >= scanner.since]
    for path, mtime in recent:
        scan = scanner.scan_file(path, mtime)
        if scan.note:
            notes.append("%s %s" % (path, scan.note))
        results.append(scan)
    extra = []
    if total > max_files:
        extra.append("only the newest %d of %d files read" % (max_files, total))
    return findings, results, notes, extra, len(recent)


def count_state(count, warn, crit):
    return _status.level(count, warn, crit, ">=")


def files_finding(results, read_count, paths, window_text, warn, crit, notes, extra, samples):
    total = sum(r.matches for r in results)
    if read_count == 0:
        state, detail = "ok", "no log files changed in the last %s" % window_text
    else:
        state = count_state(total, warn, crit)
        per_file = ["%s: %d" % (r.name, r.matches) for r in results if r.matches]
        detail = "%d matching lines in the last %s in %d files" % (total, window_text, read_count)
        if per_file:
            detail += " (%s%s)" % (", ".join(per_file[:10]), ", ..." if len(per_file) > 10 else "")
    cut = [r.name for r in results if r.truncated]
    if cut:
        extra = extra + ["only the last part of %d large file(s) read" % len(cut)]
    if extra:
        detail += "; " + "; ".join(extra)
    if notes:
        detail += "; " + "; ".join(notes[:5])
    return finding("log files", state, total, "lines", detail, kind="logs", target=", ".join(paths),
                   samples=list(samples))


def stream_finding(scan, window_text, warn, crit, problem=None):
    name = "container %s logs" % scan.name
    if problem:
        return finding(name, "critical", None, None, problem, kind="logs", target=scan.name)
    state = count_state(scan.matches, warn, crit)
    detail = "%d matching lines in the last %s" % (scan.matches, window_text)
    if scan.truncated:
        detail += "; stopped at the size limit, later lines not read"
    return finding(name, state, scan.matches, "lines", detail, kind="logs", target=scan.name,
                   samples=list(scan.samples or ()))


def scan(scanner, window_text, warn, crit, paths=(), patterns=("*.log",), max_files=500,
         missing_state="critical", containers=(), container_logs=None):
    """Everything ``log_scan`` returns: findings, per-source results, notes, totals.

    ``container_logs(name)`` returns an iterator of byte chunks of that container's logs since the
    window start, or raises ``LookupError``/``OSError`` with a message for the person on call.
    """
    findings, sources, notes = [], [], []
    total = 0
    if paths:
        path_findings, results, notes, extra, read_count = scan_files(scanner, paths, patterns, max_files,
                                                                      missing_state, window_text)
        findings.append(files_finding(results, read_count, list(paths), window_text, warn, crit, notes, extra,
                                      scanner.recent or ()))
        findings.extend(path_findings)
        sources.extend(r.as_dict() for r in results)
        total += sum(r.matches for r in results)
    for name in containers:
        if scanner.recent is not None:
            scanner.recent.clear()
        try:
            result = scanner.scan_stream(name, container_logs(name))
        except (LookupError, OSError) as exc:
            findings.append(stream_finding(Scan(name, "container", 0), window_text, warn, crit,
                                           problem=str(exc.args[0] if exc.args else exc)))
            continue
        findings.append(stream_finding(result, window_text, warn, crit))
        sources.append(result.as_dict())
        total += result.matches
    state = _status.worst(f["state"] for f in findings)
    return {"state": state, "findings": findings, "sources": sources, "notes": notes, "matches": total,
            "since": datetime.datetime.fromtimestamp(scanner.since, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def now():
    return time.time()
