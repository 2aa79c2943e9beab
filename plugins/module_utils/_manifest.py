# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup names, manifests, the catalog of a store, retention and durations.

A backup is a data object ``<service>/<id>.<ext>`` plus ``<service>/<id>.<ext>.manifest.json``,
written last.  The id is ``<engine>-<database label>-<UTC stamp>-<6 hex>``: it sorts by time,
names what it holds, and two backups taken in the same second never collide.

The label is the database name itself when that is made of letters, digits and '_' only;
any other name gets a readable part plus ``~`` and a hash of the exact name, so two names that
differ only in punctuation (``app.old`` and ``app_old``, ``qa-x`` and ``qa_x``) never share a
label.  The label only narrows a listing: which database a backup holds is the manifest's
exact ``engine`` and ``database``, which restore, verification and retention check.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field

from ansible_collections.runbook.ops.plugins.module_utils._errors import IntegrityError, ParameterError

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = "runbook.ops/backup-manifest"
MANIFEST_VERSION = 1
ENGINES = ("postgresql", "sqlite", "volume")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_ID_RE = re.compile(r"(?P<engine>postgresql|sqlite|volume)-(?P<label>[A-Za-z0-9_]+(?:~[0-9a-f]{10})?)"
                    r"-(?P<stamp>\d{8}T\d{6}Z)-[0-9a-f]{6}")
_PLAIN_LABEL_RE = re.compile(r"[A-Za-z0-9_]{1,63}|[A-Za-z0-9_]{1,40}~[0-9a-f]{10}")  # a label is its own label
_PLAIN_IDENTIFIER_RE = re.compile(r"[a-z_][a-z0-9_]*")
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

REQUIRED_FIELDS = ("format", "version", "id", "service", "engine", "database", "object", "size", "sha256",
                   "compression", "dump_format", "started", "finished", "row_counts")


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def check_service(service):
    if not service or not _SERVICE_RE.fullmatch(service):
        raise ParameterError("service must be 1-128 letters, digits, '.', '_' or '-' (starting with a letter or "
                             "digit), got %r" % (service,))
    return service


def legacy_label(database):
    """The label of backups taken before labels were injective: punctuation mapped to '_'."""
    label = re.sub(r"[^A-Za-z0-9_]", "_", database)[:63]
    return label or "db"


def database_label(database):
    """The part of a backup id that names the database: safe in a file name, no '-', and
    different for different names (the name itself, or a readable part + '~' + a hash)."""
    if _PLAIN_LABEL_RE.fullmatch(database or ""):
        return database
    digest = hashlib.sha256((database or "").encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return "%s~%s" % (legacy_label(database or "")[:40], digest)


def candidate_labels(database):
    """Labels a backup of ``database`` may carry: today's, and the one of older backups."""
    return {database_label(database), legacy_label(database)}


def sqlite_database_name(path):
    """The database name of a SQLite file: its file name without the last extension
    (``/srv/app.db`` -> ``app``, ``app.v2.db`` -> ``app.v2``, ``app.old.db`` -> ``app.old``).
    Every caller (db_backup, db_restore, backup_verify, backup_info) uses this one rule."""
    base = os.path.basename(os.path.normpath(path or ""))
    stem, _ext = os.path.splitext(base)
    return stem or base


def table_key(schema, table):
    """The row-count key of a table: ``schema.table``, each part double-quoted (as SQL does)
    unless it is a plain lower-case identifier, so ``"x.y".z`` and ``x."y.z"`` stay apart."""
    def quoted(part):
        return part if _PLAIN_IDENTIFIER_RE.fullmatch(part) else '"%s"' % part.replace('"', '""')
    return "%s.%s" % (quoted(schema), quoted(table))


def new_backup_id(engine, database, now=None):
    stamp = (now or utcnow()).strftime(STAMP_FORMAT)
    return "%s-%s-%s-%s" % (engine, database_label(database), stamp, secrets.token_hex(3))


def parse_backup_id(backup_id):
    """(engine, label, stamp datetime) of a backup id; ParameterError if it is not one."""
    match = _ID_RE.fullmatch(backup_id or "")
    try:
        stamp = datetime.datetime.strptime(match.group("stamp"), STAMP_FORMAT) if match else None
    except ValueError:  # 20261399T..., not a date
        stamp = None
    if stamp is None:
        raise ParameterError("malformed backup id %r: expected <engine>-<database>-<YYYYmmddTHHMMSSZ>-<6 hex>, "
                             "for example postgresql-app-20261123T091500Z-3fa9c1" % (backup_id,))
    return match.group("engine"), match.group("label"), stamp.replace(tzinfo=datetime.timezone.utc)


def object_name(backup_id, dump_format, extension):
    suffix = {"custom": ".dump", "directory": ".tar", "sqlite": ".sqlite3", "tar": ".tar"}[dump_format]
    return backup_id + suffix + extension


def parse_duration(value, what="duration"):
    """Seconds from an int/float or a string such as '90s', '30m', '1h', '26h', '1d12h', '2w'."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION_RE.findall(text)
            if not parts or _DURATION_RE.sub("", text).strip():
                raise ParameterError("%s %r is not a duration: use seconds or a string like '30m', '1h', '1d12h'"
                                     % (what, value))
            seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if seconds < 0:
        raise ParameterError("%s must not be negative" % what)
    return seconds


def human_duration(seconds):
    seconds = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds - (seconds // size) * size
            return "%d%s%s" % (seconds // size, unit, human_duration(rest) if rest else "")
    return "%ds" % seconds


def load_manifest(data, name):
    """Parse and sanity-check manifest bytes; IntegrityError says what is wrong."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError("manifest %s is not valid JSON (%s): the backup cannot be trusted" % (name, exc)) from None
    if not isinstance(manifest, dict):
        raise IntegrityError("manifest %s is not a JSON object" % name)
    missing = [f for f in REQUIRED_FIELDS if f not in manifest]
    if missing:
        raise IntegrityError("manifest %s lacks %s: the backup cannot be trusted" % (name, ", ".join(missing)))
    if manifest["format"] != MANIFEST_FORMAT or manifest["version"] > MANIFEST_VERSION:
        raise IntegrityError("manifest %s is format %s version %s, which this collection does not read"
                             % (name, manifest["format"], manifest["version"]))
    return manifest


def dump_manifest(manifest):
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


@dataclass
class CatalogEntry:
    """One backup in a store: its data object and, once complete, its manifest."""

    backup_id: str
    engine: str
    label: str
    stamp: datetime.datetime
    data_key: str = None
    data_size: int = None
    manifest_key: str = None
    modified: float = 0.0
    extra_keys: list = field(default_factory=list)
    manifest: dict = None  # once read (exact database, source, ...)

    @property
    def complete(self):
        return self.data_key is not None and self.manifest_key is not None

    def age_seconds(self, now):
        return max(0.0, (now - self.stamp).total_seconds())

    def describe(self, now):
        return {
            "id": self.backup_id,
            "engine": self.engine,
            "database": self.manifest["database"] if self.manifest else self.label,
            "complete": self.complete,
            "created": iso(self.stamp),
            "age_seconds": int(self.age_seconds(now)),
            "age": human_duration(self.age_seconds(now)),
            "object": self.data_key,
            "size": self.data_size,
            "manifest": self.manifest_key,
        }


def catalog(objects, service, engine=None, database=None):
    """Group a store listing into backups, newest first.  Objects that are not backups are ignored.

    With ``database``, only backups whose label may name it are kept: a candidate list, since an
    older backup's label may be shared by names that differ in punctuation.  The manifest's
    ``database`` says which backups really hold it (see manifest_matches)."""
    labels = candidate_labels(database) if database else None
    entries = {}
    for obj in objects:
        name = obj.key.rsplit("/", 1)[-1]
        backup_id = name.split(".", 1)[0]
        try:
            entry_engine, entry_label, stamp = parse_backup_id(backup_id)
        except ParameterError:
            continue
        if (engine and entry_engine != engine) or (labels and entry_label not in labels):
            continue
        entry = entries.setdefault(backup_id, CatalogEntry(backup_id, entry_engine, entry_label, stamp))
        entry.modified = max(entry.modified, obj.modified)
        if name.endswith(MANIFEST_SUFFIX):
            entry.manifest_key = obj.key
        elif entry.data_key is None:
            entry.data_key, entry.data_size = obj.key, obj.size
        else:
            entry.extra_keys.append(obj.key)
    # A manifest whose data object is gone is not a backup either: complete needs both.
    return sorted(entries.values(), key=lambda e: (e.stamp, e.modified, e.backup_id), reverse=True)


def manifest_matches(manifest, engine, database, source=None):
    """Whether a manifest describes a backup of exactly this engine and database (and, with
    ``source``, of this SQLite file or PostgreSQL server; manifests older than the ``source``
    field match any)."""
    if manifest.get("engine") != engine or manifest.get("database") != database:
        return False
    return source is None or manifest.get("source") in (None, source)


def select_expired(entries, keep_last=None, keep_days=None, now=None, protect=()):
    """Complete backups that no retention rule keeps.  A backup is kept when it is one of the
    ``keep_last`` newest complete ones OR younger than ``keep_days``; incomplete backups (which
    may be a dump still being written by another run) and ``protect``-ed ids are never selected."""
    if keep_last is None and keep_days is None:
        return []
    now = now or utcnow()
    complete = [e for e in entries if e.complete]
    expired = []
    for index, entry in enumerate(complete):
        kept_by_count = keep_last is not None and index < keep_last
        kept_by_age = keep_days is not None and entry.age_seconds(now) < keep_days * 86400
        if not (kept_by_count or kept_by_age) and entry.backup_id not in protect:
            expired.append(entry)
    return expired


def find_entry(entries, backup_id=None):
    """The requested backup (complete or not), or the newest complete one when no id is given."""
    if backup_id:
        parse_backup_id(backup_id)
        for entry in entries:
            if entry.backup_id == backup_id:
                return entry
        return None
    for entry in entries:
        if entry.complete:
            return entry
    return None
