# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A diagnostics bundle (runbook IN8): one tar.gz on the managed host with what an incident needs.

What goes in: a Compose project's state (release history, event log, compose files, its containers'
``docker inspect`` and the tail of their logs), files by glob with a cap per file and in total (the tail
of a file over its cap), the disk usage of paths, JSON documents the caller hands over (results of
``pg_activity``, ``redis_probe``, health checks), and ``manifest.json`` last: every member with its size,
what was truncated or skipped, and the redactions per rule (counts, never values).

Everything but the files asked for byte for byte (``raw_files``) passes through ``_redact.Redactor``.
The values it knows as secrets come from the caller (``secrets``), from env files whose every value is
one (``env_files``), and from the secret-looking variables of the project's env file and of the
containers' environments, so a token a container prints to its log is caught by value too.  The
bundle is written to a hidden partial file (0600) in a 0700 directory, read back whole and scanned for
every form of every known secret; one found means the partial is deleted and the run fails naming
the member.  Only a clean bundle gets its final name.  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import collections
import datetime
import glob
import hashlib
import io
import os
import re
import secrets as _random
import shutil
import socket
import tarfile
import tempfile

from ansible_collections.runbook.ops.plugins.module_utils import _docker, _files, _releases
from ansible_collections.runbook.ops.plugins.module_utils._compose import default_project_name, discover_files
from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile
from ansible_collections.runbook.ops.plugins.module_utils._errors import BundleError, ComposeError, ContainerError, EnvFileError
from ansible_collections.runbook.ops.plugins.module_utils._redact import RULES, KnownSecrets, Redactor, SecretScan, secret_name

FORMAT_VERSION = 1
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
DOCUMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
READ_CHUNK = 64 * 1024
SPOOL_BYTES = 4 * 1024 * 1024  # a member larger than this is spooled to a 0600 file in the bundle directory
PARTIAL_AGE = 3600  # partial bundles older than this were left by a killed run


def bundle_name_re(label):
    """The names this module gives bundles of ``label`` (retention touches no other file)."""
    return re.compile(r"diagnostics-%s-\d{8}T\d{6}Z-[0-9a-f]{6}\.tar\.gz" % re.escape(label))


class Limits:
    """Caps on what is read: container log lines and bytes, bytes per file and in total, files."""

    FIELDS = ("log_lines", "log_bytes", "max_file_bytes", "max_total_bytes", "max_files")

    def __init__(self, log_lines=1000, log_bytes=1024 * 1024, max_file_bytes=1024 * 1024,
                 max_total_bytes=32 * 1024 * 1024, max_files=200):
        self.log_lines = log_lines
        self.log_bytes = log_bytes
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.max_files = max_files
        for field in self.FIELDS:
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                raise BundleError("%s must be a whole number of at least 1, got %r" % (field, getattr(self, field)))

    def as_dict(self):
        return {field: getattr(self, field) for field in self.FIELDS}


class Member:
    """One file of the bundle: its name, where it came from, and how to make its bytes."""

    def __init__(self, name, kind, source, produce, mode="text", estimate=None):
        self.name = name
        self.kind = kind
        self.source = source
        self.produce = produce  # () -> iterator of byte chunks (for "text"/"raw") or a JSON value ("json")
        self.mode = mode
        self.estimate = estimate
        self.size = None
        self.truncated = False
        self.note = None
        self.redactions = 0

    def as_dict(self, with_size=True):
        entry = {"name": self.name, "kind": self.kind, "source": self.source, "size": self.size if with_size else self.estimate,
                 "truncated": self.truncated, "redacted": self.mode != "raw", "redactions": self.redactions}
        if self.note:
            entry["note"] = self.note
        return entry


def tail_bytes(chunks, limit):
    """The last ``limit`` bytes of a chunk stream, cut at a line start when there was more:
    ``(data, dropped_bytes)``."""
    kept = bytearray()
    dropped = 0
    for chunk in chunks:
        kept += chunk
        if len(kept) > 2 * limit:
            dropped += len(kept) - limit
            del kept[:len(kept) - limit]
    if len(kept) > limit:
        dropped += len(kept) - limit
        del kept[:len(kept) - limit]
    if dropped:
        newline = kept.find(b"\n")
        if 0 <= newline < len(kept) - 1:
            dropped += newline + 1
            del kept[:newline + 1]
    return bytes(kept), dropped


def read_file_tail(path, cap):
    """``(chunks, size, dropped)``: the file's last ``cap`` bytes from a line start, read in chunks."""
    handle = open(path, "rb")  # pylint: disable=consider-using-with
    size = os.fstat(handle.fileno()).st_size
    dropped = 0
    if size > cap:
        handle.seek(size - cap)
        skipped = handle.readline()  # start at a line boundary (a line longer than the cap: from the cut)
        if len(skipped) >= cap or not skipped.endswith(b"\n"):
            handle.seek(size - cap)
            skipped = b""
        dropped = size - cap + len(skipped)

    def chunks():
        with handle:
            while True:
                data = handle.read(READ_CHUNK)
                if not data:
                    return
                yield data
    return chunks(), size, dropped


def expand_globs(patterns, max_files):
    """Regular files matching ``patterns`` (each once, by real path), newest first when over ``max_files``:
    ``(paths, notes)``."""
    found, notes, seen = [], [], set()
    for pattern in patterns:
        matched = sorted(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
        if not matched:
            notes.append("no file matches %s" % pattern)
        for path in matched:
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                found.append(os.path.abspath(path))
    if len(found) > max_files:
        stamped = []
        for path in found:
            try:
                stamped.append((os.stat(path).st_mtime, path))
            except OSError:
                continue
        keep = {path for _m, path in sorted(stamped, reverse=True)[:max_files]}
        notes.append("%d files match; only the newest %d are in the bundle" % (len(found), max_files))
        found = [path for path in found if path in keep]
    return found, notes


def member_path(prefix, path):
    """``files/srv/app/x.log`` for ``/srv/app/x.log``: the absolute path under a prefix, no ``..``."""
    clean = os.path.normpath(os.path.abspath(path)).lstrip("/")
    return "%s/%s" % (prefix, clean)


def safe_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "unnamed"


def disk_usage(paths):
    usage = []
    for path in paths:
        try:
            total, used, free = shutil.disk_usage(path)
        except OSError as exc:
            usage.append({"path": path, "error": exc.strerror or str(exc)})
            continue
        usage.append({"path": path, "total": total, "used": used, "free": free,
                      "used_percent": round(100.0 * used / total, 1) if total else None})
    return usage


def env_secrets(env_entries):
    """Values of the secret-looking variables of ``NAME=value`` entries (a container's ``Config.Env``)."""
    values = []
    for entry in env_entries or ():
        name, sep, value = str(entry).partition("=")
        if sep and value and secret_name(name):
            values.append(value)
    return values


def env_file_values(path, public_keys=(), secret_names_only=False):
    """The values of an env file (those of ``public_keys`` left out); only the secret-looking ones
    with ``secret_names_only``."""
    try:
        env = EnvFile.load(path)
    except EnvFileError as exc:
        raise BundleError("cannot read the env file %s for its secret values: %s" % (path, exc)) from None
    return [value for key, value in env.as_dict().items()
            if value and key not in public_keys and (not secret_names_only or secret_name(key))]


class Project:
    """Where a Compose project's state is: its name(s), directory, state directory and env file."""

    def __init__(self, name=None, project_dir=None, state_dir=None, env_file=None):
        self.project_dir = os.path.abspath(project_dir) if project_dir else None
        if self.project_dir and not os.path.isdir(self.project_dir):
            raise BundleError("project_dir %s is not a directory" % self.project_dir)
        self.env_file = None
        if self.project_dir:
            self.env_file = os.path.join(self.project_dir, env_file or ".env")
        self.state_dir = state_dir or (os.path.join(self.project_dir, ".runbook") if self.project_dir else None)
        names = [name] if name else []
        if not names and self.project_dir:
            from_env = EnvFile.load(self.env_file, missing_ok=True).get("COMPOSE_PROJECT_NAME") if self._env_readable() else None
            names = [from_env] if from_env else sorted({default_project_name(self.project_dir, "v2"),
                                                        default_project_name(self.project_dir, "v1")})
        self.names = [n for n in names if n]

    def _env_readable(self):
        try:
            EnvFile.load(self.env_file, missing_ok=True)
        except EnvFileError:
            return False
        return True

    @property
    def name(self):
        return self.names[0] if self.names else None


class BundleCollector:
    """Plans and writes one bundle.

    ``engine_factory``: returns a ``_docker.DockerEngine`` (asked only when containers are wanted).
    """

    def __init__(self, dest, label="diagnostics", limits=None, keep=10, engine_factory=None, now=None,
                 secret_key_patterns=()):
        if not LABEL_RE.fullmatch(label or ""):
            raise BundleError("label must be letters, digits, '.', '_' or '-' (at most 63, starting with a letter or "
                              "digit), got %r" % label)
        if keep < 0:
            raise BundleError("keep must be 0 (keep every bundle) or more, got %d" % keep)
        self.dest = os.path.abspath(dest)
        self.label = label
        self.limits = limits or Limits()
        self.keep = keep
        self.engine_factory = engine_factory
        self._engine = None
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        stamp = self.now.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT)
        self.base = "diagnostics-%s-%s-%s" % (label, stamp, _random.token_hex(3))
        self.path = os.path.join(self.dest, self.base + ".tar.gz")
        try:
            self.extra_names = re.compile("|".join("(?:%s)" % p for p in secret_key_patterns), re.I) \
                if secret_key_patterns else None
        except re.error as exc:
            raise BundleError("secret_key_patterns holds an invalid regular expression: %s" % exc) from None
        self.known = KnownSecrets()
        self.members = []
        self.skipped = []
        self.notes = []
        self.sections = collections.OrderedDict()
        self.redactor = None

    @property
    def engine(self):
        if self._engine is None:
            if self.engine_factory is None:
                raise BundleError("containers were asked for but no Docker engine is configured")
            self._engine = self.engine_factory()
        return self._engine

    # secrets --------------------------------------------------------------------------------------
    def add_secrets(self, values):
        self.known.add(values)

    # planning -------------------------------------------------------------------------------------
    def add_json(self, name, kind, source, value):
        self.members.append(Member(name, kind, source, lambda: value, mode="json"))

    def add_project(self, project):
        """The project's release history, event log, compose files and containers (inspect and logs)."""
        if project.env_file and os.path.isfile(project.env_file):
            try:
                self.add_secrets(env_file_values(project.env_file, secret_names_only=True))
            except BundleError as exc:
                self.notes.append(str(exc))
        if project.state_dir:
            try:
                history = _releases.ReleaseHistory.load(project.state_dir)
            except ComposeError as exc:
                history = None
                self.notes.append(str(exc))
            if history is not None and history.exists:
                self.add_json("project/releases.json", "release_history", history.path,
                              {"current": history.current(), "last_successful": history.last_successful(),
                               "releases": history.newest_first()})
            elif history is not None:
                self.notes.append("no release history in %s" % project.state_dir)
            events = os.path.join(project.state_dir, _releases.EVENTS_NAME)
            if os.path.isfile(events):
                self.add_file(events, "project/events.jsonl", kind="event_log")
            else:
                self.notes.append("no event log in %s" % project.state_dir)
        if project.project_dir:
            try:
                for path in discover_files(project.project_dir):
                    self.add_file(path, "project/compose/" + os.path.basename(path), kind="compose_file")
            except ComposeError as exc:
                self.notes.append(str(exc))
        inspected = []
        for name in project.names:
            answered, inspected = self._ask("containers of Compose project %s" % name, "with_labels",
                                            {_docker.COMPOSE_PROJECT_LABEL: name})
            if inspected or not answered:
                break
        else:
            self.notes.append("no containers of Compose project %s" % " or ".join(project.names))
        inspected = inspected or []
        records = [dict(_docker.container_record(attrs), image_id=attrs.get("Image")) for attrs in inspected]
        self.add_json("project/containers.json", "project", project.name,
                      {"project": project.name, "project_dir": project.project_dir, "state_dir": project.state_dir,
                       "containers": records})
        for attrs in inspected:
            self.add_container(attrs)

    def _ask(self, source, method, *args):
        """``(answered, value)`` of an engine call; an engine that cannot answer (not running, no permission) is
        a skipped source, not a failed bundle: an incident may be exactly that."""
        try:
            return True, getattr(self.engine, method)(*args)
        except (BundleError, ContainerError) as exc:
            self.skipped.append({"source": source, "reason": str(exc)})
            return False, None

    def add_containers(self, names):
        for name in names:
            answered, attrs = self._ask("container " + name, "inspect", name)
            if not answered:
                continue
            if attrs is None:
                self.skipped.append({"source": "container " + name, "reason": "no such container"})
                continue
            if any(m.kind == "inspect" and m.source == attrs["Id"] for m in self.members):
                continue
            self.add_container(attrs)

    def add_container(self, attrs):
        name = safe_name((attrs.get("Name") or attrs["Id"][:12]).lstrip("/"))
        self.add_secrets(env_secrets((attrs.get("Config") or {}).get("Env")))
        self.members.append(Member("containers/%s/inspect.json" % name, "inspect", attrs["Id"], lambda: attrs, mode="json"))
        member = Member("containers/%s/logs.txt" % name, "container_logs", attrs["Id"], None)
        member.produce = lambda: self._container_logs(member, attrs["Id"])
        self.members.append(member)

    def _container_logs(self, member, container_id):
        data, dropped = tail_bytes(self.engine.logs(container_id, self.limits.log_lines), self.limits.log_bytes)
        if dropped:
            member.truncated = True
            member.note = "the last %d log lines were over %d bytes: the first %d bytes of them are left out" % (
                self.limits.log_lines, self.limits.log_bytes, dropped)
        return iter([data])

    def add_files(self, patterns, raw=False):
        paths, notes = expand_globs(patterns, self.limits.max_files)
        self.notes.extend(notes)
        for path in paths:
            if any(m.source == path and m.kind in ("file", "raw_file") for m in self.members):
                continue
            self.add_file(path, member_path("files", path), kind="raw_file" if raw else "file", raw=raw)

    def add_file(self, path, name, kind="file", raw=False):
        try:
            estimate = min(os.stat(path).st_size, self.limits.max_file_bytes)
        except OSError:
            estimate = None
        member = Member(name, kind, path, None, mode="raw" if raw else "text", estimate=estimate)
        member.produce = lambda: self._file(member, path)
        self.members.append(member)

    def _file(self, member, path):
        spent = sum(m.size or 0 for m in self.members if m.kind in ("file", "raw_file") and m is not member)
        cap = min(self.limits.max_file_bytes, self.limits.max_total_bytes - spent)
        if cap <= 0:
            raise _Skip("the total cap of %d bytes for files was reached" % self.limits.max_total_bytes)
        try:
            chunks, size, dropped = read_file_tail(path, cap)
        except FileNotFoundError:
            raise _Skip("removed before it could be read") from None
        except OSError as exc:
            raise _Skip("cannot be read: %s" % (exc.strerror or exc)) from None
        if dropped:
            member.truncated = True
            member.note = "%d bytes, over the cap of %d: the first %d bytes are left out" % (size, cap, dropped)
            header = ("[runbook.ops diagnostics_bundle: this is the tail of %s; its first %d of %d bytes are left out]\n"
                      % (path, dropped, size)).encode("utf-8", "surrogateescape")
            return _chain([header], chunks)
        return chunks

    def add_disk_usage(self, paths):
        if paths:
            self.members.append(Member("disk_usage.json", "disk_usage", ", ".join(paths), lambda: disk_usage(paths),
                                       mode="json"))

    def add_documents(self, documents):
        for name, value in (documents or {}).items():
            if not DOCUMENT_RE.fullmatch(str(name)):
                raise BundleError("document name %r must be letters, digits, '.', '_' or '-'" % name)
            self.add_json("documents/%s.json" % name, "document", name, value)

    # writing --------------------------------------------------------------------------------------
    def plan(self):
        """What would be collected (check mode): members without their content."""
        return {"path": self.path, "members": [m.as_dict(with_size=False) for m in self.members],
                "skipped": self.skipped, "notes": self.notes, "known_secrets": len(self.known),
                "removed": self.retention(dry_run=True)}

    def write(self):
        self.redactor = Redactor(self.known, self.extra_names)
        _files.make_private_dirs(self.dest)
        _files.sweep_partials(self.dest, PARTIAL_AGE)
        temp, handle = _files.create_partial(self.path)
        try:
            with handle:
                with tarfile.open(fileobj=handle, mode="w:gz") as tar:
                    written = []
                    for member in self.members:
                        if self._add(tar, member):
                            written.append(member)
                    self.members = written
                    manifest = self.manifest()
                    data = self.redactor.json_bytes(manifest, by_name=False, count=False)  # its own keys name rules
                    self._add_bytes(tar, "manifest.json", data)
                handle.flush()
                os.fsync(handle.fileno())
            digest, size = self.refuse_leaks(temp)
            _files.publish_partial(temp, self.path)
        except BaseException:
            _files.unlink_quietly(temp)
            raise
        removed = self.retention()
        return {"path": self.path, "size": size, "sha256": digest, "members": self.members_result(len(data)),
                "redactions": self.redaction_counts(), "truncated": [m.name for m in self.members if m.truncated],
                "skipped": self.skipped, "notes": self.notes, "known_secrets": len(self.known), "removed": removed}

    def members_result(self, manifest_size):
        entries = [m.as_dict() for m in self.members]
        entries.append({"name": "manifest.json", "kind": "manifest", "source": None, "size": manifest_size,
                        "truncated": False, "redacted": True, "redactions": 0})
        return entries

    def redaction_counts(self):
        return {rule: self.redactor.counts.get(rule, 0) for rule in RULES}

    def manifest(self):
        created = self.now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"format_version": FORMAT_VERSION, "created": created, "host": socket.gethostname(), "bundle": self.base,
                "members": [m.as_dict() for m in self.members], "truncated": [m.name for m in self.members if m.truncated],
                "skipped": self.skipped, "notes": self.notes, "redactions": self.redaction_counts(),
                "known_secrets": len(self.known), "limits": self.limits.as_dict()}

    def _add(self, tar, member):
        before = sum(self.redactor.counts.values())
        try:
            if member.mode == "json":
                chunks = [self.redactor.json_bytes(member.produce())]
            elif member.mode == "raw":
                chunks = member.produce()
            else:
                chunks = self.redactor.stream(member.produce())
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, dir=self.dest) as spool:
                for chunk in chunks:
                    spool.write(chunk)
                member.size = spool.tell()
                spool.seek(0)
                self._add_stream(tar, member.name, spool, member.size)
        except _Skip as exc:
            self.skipped.append({"source": member.source, "reason": str(exc)})
            return False
        except ContainerError as exc:
            self.skipped.append({"source": member.source, "reason": str(exc)})
            return False
        member.redactions = sum(self.redactor.counts.values()) - before
        return True

    def _add_bytes(self, tar, name, data):
        self._add_stream(tar, name, io.BytesIO(data), len(data))

    def _add_stream(self, tar, name, stream, size):
        info = tarfile.TarInfo("%s/%s" % (self.base, name))
        info.size = size
        info.mode = 0o600
        info.mtime = int(self.now.timestamp())
        tar.addfile(info, stream)

    def refuse_leaks(self, temp):
        """Read the written bundle back; a known secret in any member deletes it (the caller does) and fails.
        Returns ``(sha256, size)`` of the bundle."""
        scan = SecretScan(self.known)
        with tarfile.open(temp, "r:gz") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                with tar.extractfile(info) as stream:
                    if scan.found(stream):
                        name = info.name.split("/", 1)[-1]
                        raise BundleError("refused: secret value found in %s; the bundle was deleted" % name)
        digest = hashlib.sha256()
        size = 0
        with open(temp, "rb") as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
                size += len(block)
        return digest.hexdigest(), size

    def retention(self, dry_run=False):
        """Remove this label's oldest bundles beyond ``keep`` (the new one counts); returns their paths."""
        if not self.keep:
            return []
        pattern = bundle_name_re(self.label)
        mine = os.path.basename(self.path)
        stamped = []
        try:
            for name in os.listdir(self.dest):
                if pattern.fullmatch(name) and name != mine:
                    stamped.append((os.stat(os.path.join(self.dest, name)).st_mtime_ns, name))
        except OSError:
            return []
        names = [mine] + [name for _m, name in sorted(stamped, reverse=True)]  # newest first, the new one first
        old = [os.path.join(self.dest, n) for n in names[self.keep:]]
        if not dry_run:
            for path in old:
                _files.unlink_quietly(path)
        return old


class _Skip(Exception):
    """A member that cannot be collected: noted in the manifest, the rest goes on."""


def _chain(*iterables):
    for iterable in iterables:
        yield from iterable
