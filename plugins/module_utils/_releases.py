# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release history of one Compose project: what ran when, what came of it, and where to go back.

A release record keeps what actually ran (image ids and digests as inspected after ``up``), the hashes of
the compose files and the env file, the migration head before and after, the pre-deploy backup and the
outcome.  The history is one JSON file (0600, written atomically) with the records oldest first and a
``current`` pointer: the release whose containers run now (a failed one included, until it is rolled
back).  The event log beside it is append-only JSON lines.  Records hold the managed variables only
(the image tags), never another value of the env file.  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re

from ansible_collections.runbook.ops.plugins.module_utils import _files
from ansible_collections.runbook.ops.plugins.module_utils._errors import ComposeError

HISTORY_NAME = "releases.json"
EVENTS_NAME = "events.jsonl"
LOCK_NAME = "deploy.lock"
HISTORY_VERSION = 1
SUCCEEDED = "succeeded"
FAILED = "failed"
OUTCOMES = (SUCCEEDED, FAILED)
ID_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")
LABEL_CHARS = 40


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def stamp(when):
    """``2026-11-30T21:00:00Z``: the one time format of records and events."""
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_hash(value):
    """The first 12 hex digits of the sha256 of ``value`` (JSON-encoded when not bytes/str)."""
    if not isinstance(value, (bytes, str)):
        value = json.dumps(value, sort_keys=True)
    if isinstance(value, str):
        value = value.encode("utf-8")
    return hashlib.sha256(value).hexdigest()[:12]


def release_id(when, variables, tag_variable, taken=()):
    """``r20261130T210000Z-v2``: the time and the tag (or a short hash of the variables), unique among ``taken``."""
    label = variables.get(tag_variable) if tag_variable else None
    label = ID_LABEL.sub("-", label).strip("-")[:LABEL_CHARS] if label else ""
    if not label:
        label = short_hash(variables)[:8]
    base = "r%s-%s" % (when.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"), label)
    candidate, number = base, 2
    while candidate in taken:
        candidate = "%s-%d" % (base, number)
        number += 1
    return candidate


def succeeded(record):
    return bool(record) and record.get("outcome") == SUCCEEDED


def retention(records, keep, protect=()):
    """``(kept, removed)`` of ``records`` (oldest first) under ``keep_releases``.

    The ``keep`` newest succeeded releases stay, and so does every failed release newer than the oldest
    of them (failed releases never count).  The newest succeeded release always stays, whatever ``keep``,
    and so do the ids in ``protect`` (the current release).  Older records go, failed or not.
    """
    if keep < 1:
        raise ComposeError("keep_releases must be at least 1, got %s" % keep)
    good = [index for index, record in enumerate(records) if succeeded(record)]
    kept_good = set(good[-keep:])
    oldest = min(kept_good) if kept_good else 0
    kept, removed = [], []
    for index, record in enumerate(records):
        if index in kept_good or (not succeeded(record) and index >= oldest) or record.get("id") in protect:
            kept.append(record)
        else:
            removed.append(record)
    return kept, removed


def moved(record):
    """Whether ``record``'s migration moved the schema head: True, False, or None when unknown."""
    before, after = record.get("migration_head_before"), record.get("migration_head_after")
    if before is None or after is None:
        return None if record.get("migration_ran") else False
    return before != after


class ReleaseHistory:
    """``<state_dir>/releases.json``: the records, oldest first, and the ``current`` pointer."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, HISTORY_NAME)
        self.records = []
        self.current_id = None
        self.exists = False

    @classmethod
    def load(cls, state_dir):
        history = cls(state_dir)
        try:
            with open(history.path, "rb") as handle:
                data = json.loads(handle.read().decode("utf-8"))
        except FileNotFoundError:
            return history
        except (OSError, ValueError) as exc:
            raise ComposeError("cannot read the release history %s: %s" % (history.path, getattr(exc, "strerror", None) or exc)) from None
        if not isinstance(data, dict) or not isinstance(data.get("releases"), list):
            raise ComposeError("the release history %s is not a runbook.ops release history (no releases list)" % history.path)
        history.records = [record for record in data["releases"] if isinstance(record, dict) and record.get("id")]
        history.current_id = data.get("current")
        history.exists = True
        return history

    def save(self):
        _files.make_private_dirs(self.state_dir)
        data = {"version": HISTORY_VERSION, "current": self.current_id, "releases": self.records}
        try:
            _files.atomic_write(self.path, data=(json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"),
                                mode=_files.PRIVATE_FILE)
        except OSError as exc:
            raise ComposeError("cannot write the release history %s: %s" % (self.path, exc.strerror or exc)) from None

    # reading ---------------------------------------------------------------------------------
    def ids(self):
        return [record["id"] for record in self.records]

    def newest_first(self):
        return list(reversed(self.records))

    def get(self, release):
        for record in self.records:
            if record["id"] == release:
                return record
        return None

    def current(self):
        """The release whose containers run now: the pointer, else the newest record."""
        return self.get(self.current_id) if self.current_id else (self.records[-1] if self.records else None)

    def last_successful(self):
        for record in reversed(self.records):
            if succeeded(record):
                return record
        return None

    def rollback_target(self, release=None):
        """The record to roll back to: ``release`` by id (it must have succeeded), else the newest succeeded
        release older than the current one that does not run the same variables."""
        if release:
            record = self.get(release)
            if record is None:
                raise ComposeError("release %s is not in the history %s (known: %s)"
                                   % (release, self.path, ", ".join(reversed(self.ids())) or "none"))
            if not succeeded(record):
                raise ComposeError("release %s %s; only a succeeded release can be rolled back to"
                                   % (release, "failed" if record.get("outcome") == FAILED else "never finished"))
            return record
        current = self.current() or {}
        # Only releases older than the current one: after a rollback from a release that deployed healthy
        # (and then failed a later gate, such as a watch period), that newer release is not a way back.
        older = self.records[:self.records.index(current)] if current in self.records else self.records
        for record in reversed(older):
            if not succeeded(record) or (current and record.get("variables") == current.get("variables")):
                continue
            return record
        raise ComposeError("no succeeded release to roll back to in %s (current: %s)"
                           % (self.path, current.get("id") or "none"))

    def rollback_plan(self, target, leaving=None):
        """What rolling back from ``leaving`` (default: the current release) to ``target`` involves.

        Data must be rolled back when a release after ``target`` up to the one being left moved the
        migration head (or may have: a migration ran and its head is unknown); the backup to restore is the
        pre-deploy backup of the first such release.
        """
        leaving = leaving or self.current()
        ids = self.ids()
        plan = {"target": target["id"], "from": leaving["id"] if leaving else None, "data_rollback_needed": False,
                "backup_id": None, "moved_by": [], "reason": ""}
        if leaving is None or leaving["id"] == target["id"]:
            plan["reason"] = "release %s already runs" % target["id"]
            return plan
        start, end = ids.index(target["id"]), ids.index(leaving["id"])
        if end < start:
            plan["reason"] = "a roll forward from %s to %s; no data to roll back" % (leaving["id"], target["id"])
            return plan
        unknown = []
        for record in self.records[start + 1:end + 1]:
            verdict = moved(record)
            if verdict:
                plan["moved_by"].append(record["id"])
            elif verdict is None:
                unknown.append(record["id"])
        heads = (target.get("migration_head_after"), leaving.get("migration_head_after"))
        if plan["moved_by"] or unknown:
            first = self.get((plan["moved_by"] or unknown)[0])
            plan.update(data_rollback_needed=True, backup_id=first.get("backup_id"))
            plan["reason"] = "the migration head moved in %s (head %s -> %s)%s; restore the pre-deploy backup %s" % (
                ", ".join(plan["moved_by"]) or "none known", heads[0], heads[1],
                ("; the head after %s is unknown" % ", ".join(unknown)) if unknown else "",
                first.get("backup_id") or "(none was recorded)")
        else:
            plan["reason"] = "no release after %s moved the migration head (head %s); the images alone go back" % (
                target["id"], heads[0])
        return plan

    # changing --------------------------------------------------------------------------------
    def add(self, record, current=True):
        if self.get(record["id"]) is not None:
            raise ComposeError("release %s is already in the history" % record["id"])
        self.records.append(record)
        if current:
            self.current_id = record["id"]

    def prune(self, keep):
        """Apply ``keep_releases``; returns the ids removed."""
        self.records, removed = retention(self.records, keep, protect=(self.current_id,))
        return [record["id"] for record in removed]


def summary(record):
    """The fields of a record the event log repeats (no env value other than the managed variables)."""
    if not record:
        return None
    return {key: record.get(key) for key in ("id", "outcome", "variables")}


def event_line(event, outcome, release=None, detail=None, when=None):
    """One JSON line of the event log."""
    entry = {"time": stamp(when or utc_now()), "event": event, "outcome": outcome, "release": release,
             "detail": detail or {}}
    return json.dumps(entry, sort_keys=True, default=str) + "\n"


def append_event(state_dir, event, outcome, release=None, detail=None, when=None):
    """Append one event to ``<state_dir>/events.jsonl`` (created 0600); returns the entry written."""
    line = event_line(event, outcome, release, detail, when)
    path = os.path.join(state_dir, EVENTS_NAME)
    try:
        _files.make_private_dirs(state_dir)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _files.PRIVATE_FILE)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ComposeError("cannot append to the event log %s: %s" % (path, exc.strerror or exc)) from None
    return json.loads(line)


def read_events(state_dir, limit=None):
    """The events of ``<state_dir>/events.jsonl``, oldest first (the last ``limit`` ones); a torn last line is skipped."""
    path = os.path.join(state_dir, EVENTS_NAME)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events[-limit:] if limit else events
