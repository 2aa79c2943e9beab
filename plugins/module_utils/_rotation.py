# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rotation of one key of a dotenv file: the steps of AWS Secrets Manager's rotation protocol.

    set (state rotated)  stage a new value; the old one kept as <KEY>_PREVIOUS when asked, and
                         always in a 0600 backup of the whole file
    test (state tested)  the running service accepts the new value, and refuses (or, during an
                         overlap, still accepts) the old one
    finish               drop <KEY>_PREVIOUS; remove the backup when asked
    revert               put the backup back byte-identical

A small 0600 record beside the file, ``.<file name>.rotation.json``, says where each key's
rotation is (phase, fingerprints of the pending/current/previous values, started/finished, the
backup path) - never a value.  A run killed between set and test leaves phase ``set``: the next
``rotated`` run resumes it (the staged value is tested, then finished or reverted) instead of
stacking a second rotation on top.  Plain Python.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os

from ansible_collections.runbook.ops.plugins.module_utils import _files, _probe, _probe_target, _secrets
from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile, check_key, restore_backup
from ansible_collections.runbook.ops.plugins.module_utils._errors import RotationError

RECORD_VERSION = 1
PREVIOUS_SUFFIX = "_PREVIOUS"
PHASES = ("pending", "set", "tested", "finished", "reverted")
# "pending" is recorded (with the backup) before the env file is written, so a run killed between the
# two is recognised: the file then holds either the pending value (resume) or the current one (start afresh).
IN_PROGRESS = ("pending", "set", "tested")
PREVIOUS_CHECKS = ("refused", "accepted", "skip")
TOKEN_HEADERS = {"x-api-token": "api_token", "bearer": "bearer_token", "x-metrics-secret": "metrics_secret"}
LOCK_TIMEOUT = 30.0


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def record_path(env_path):
    directory, name = os.path.split(os.path.abspath(env_path))
    return os.path.join(directory, ".%s.rotation.json" % name)


def previous_key(key):
    return key + PREVIOUS_SUFFIX


class RotationRecord:
    """The ``.<file>.rotation.json`` record: ``{"version": 1, "keys": {KEY: entry}}``."""

    def __init__(self, path, data=None):
        self.path = path
        self.data = data or {"version": RECORD_VERSION, "keys": {}}

    @classmethod
    def load(cls, env_path):
        path = record_path(env_path)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise RotationError("rotation record %s cannot be read (%s); move it aside to start afresh"
                                % (path, getattr(exc, "strerror", None) or "not JSON")) from None
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION or not isinstance(data.get("keys"), dict):
            raise RotationError("rotation record %s has an unknown format; move it aside to start afresh" % path)
        return cls(path, data)

    def entry(self, key):
        return self.data["keys"].get(key)

    def put(self, key, entry):
        self.data["keys"][key] = entry

    def next_seq(self):
        """Order of the rotations staged in this file (times have one-second resolution)."""
        return 1 + max([entry.get("seq") or 0 for entry in self.data["keys"].values()] or [0])

    def save(self):
        payload = (json.dumps(self.data, indent=2, sort_keys=True) + "\n").encode("utf-8")
        _files.atomic_write(self.path, data=payload, mode=_files.PRIVATE_FILE, keep_attributes=False)


class EnvSecret:
    """One key of one env file, with its rotation record.  Methods return result dicts (no values)."""

    def __init__(self, path, key, check_mode=False):
        check_key(key)
        self.path = path
        self.key = key
        self.previous = previous_key(key)
        self.check_mode = check_mode

    def lock(self):
        """Serializes runs on one file; check mode takes no lock (it must not even create the lock file)."""
        if self.check_mode:
            return contextlib.nullcontext()
        return _files.FileLock(record_path(self.path) + ".lock", timeout=LOCK_TIMEOUT)

    # helpers -----------------------------------------------------------------------------------
    def _load(self, missing_ok=False):
        return EnvFile.load(self.path, missing_ok=missing_ok)

    def _fingerprints(self, env):
        return {"fingerprint": _secrets.fingerprint(env.get(self.key)),
                "previous_fingerprint": _secrets.fingerprint(env.get(self.previous))}

    def _diff(self, before, after):
        """Ansible diff of ``before`` (the text of ``_before_lines``) and the env ``after``: key names
        and fingerprints, never values."""
        return {"before_header": "%s (fingerprints)" % self.path, "after_header": "%s (fingerprints)" % self.path,
                "before": before, "after": self._before_lines(after)}

    def _before_lines(self, env):
        return "".join("%s=%s\n" % (key, _secrets.fingerprint(env.get(key))) for key in (self.key, self.previous) if key in env)

    def result(self, env, changed, msg, record=None, **extra):
        result = {"changed": changed, "msg": msg, "env_file": self.path, "key": self.key}
        result.update(self._fingerprints(env))
        entry = record.entry(self.key) if record else None
        result["rotation"] = dict(entry) if entry else {}
        result.update(extra)
        return result

    def _write(self, env, backup=True):
        if self.check_mode:
            return None
        return env.write(backup=backup)

    # states ------------------------------------------------------------------------------------
    def present(self, value=None, kind="urlsafe", length=_secrets.DEFAULT_LENGTH, backup=False):
        """Create the key when missing; an existing key (any value) is left alone.  With ``backup`` the
        file as it was is kept as a 0600 copy (a rotation always keeps one)."""
        with self.lock():
            env = self._load(missing_ok=True)
            if self.key in env:
                return self.result(env, False, "%s is present in %s" % (self.key, self.path))
            before = self._before_lines(env)
            env.set(self.key, value if value is not None else _secrets.generate(kind, length))
            backup = self._write(env, backup=backup)
            verb = "would create" if self.check_mode else "created"
            return self.result(env, True, "%s %s in %s" % (verb, self.key, self.path), backup=backup,
                               diff=self._diff(before, env))

    def absent(self, backup=False):
        """Remove the key; with ``backup`` the file as it was is kept as a 0600 copy."""
        with self.lock():
            env = self._load(missing_ok=True)
            if self.key not in env:
                return self.result(env, False, "%s is absent from %s" % (self.key, self.path))
            before = self._before_lines(env)
            env.remove(self.key)
            backup = self._write(env, backup=backup)
            verb = "would remove" if self.check_mode else "removed"
            return self.result(env, True, "%s %s from %s" % (verb, self.key, self.path), backup=backup,
                               diff=self._diff(before, env))

    def rotate(self, value=None, kind="urlsafe", length=_secrets.DEFAULT_LENGTH, keep_previous=False, resume=True):
        """Stage a new value (set).  An unfinished rotation whose staged value is still in the file is
        resumed instead (``resumed`` true, nothing written)."""
        with self.lock():
            env = self._load(missing_ok=True)
            record = RotationRecord.load(self.path)
            entry = record.entry(self.key) or {}
            current_fp = _secrets.fingerprint(env.get(self.key))
            if resume and entry.get("phase") in IN_PROGRESS and entry.get("pending") == current_fp \
                    and entry.get("backup") and os.path.exists(entry["backup"]):
                return self.result(env, False, "%s: resuming the unfinished rotation started %s (staged value %s)"
                                   % (self.key, entry.get("started"), current_fp), record, resumed=True,
                                   backup=entry["backup"])
            old = env.get(self.key)
            new = value if value is not None else _secrets.generate(kind, length)
            if value is not None and new == old and (not keep_previous or self.previous not in env):
                return self.result(env, False, "%s already holds the given value" % self.key, record)
            before = self._before_lines(env)
            env.set(self.key, new)
            if keep_previous and old:
                env.set(self.previous, old, after=self.key)
            else:
                env.remove(self.previous)  # a stale overlap would keep an older value alive
            new_fp = _secrets.fingerprint(new)
            if self.check_mode:
                return self.result(env, True, "would rotate %s in %s (%s -> %s)" % (self.key, self.path, current_fp, new_fp),
                                   record, resumed=False, backup=None, diff=self._diff(before, env))
            # a finished rotation's kept backup, or one of a rotation that never reached the file, is obsolete now
            stale_backup = entry.get("backup") if entry.get("phase") in ("finished", "pending") else None
            try:
                backup = _files.private_copy(self.path) if env.exists else None
            except OSError as exc:
                raise RotationError("cannot back up %s: %s" % (self.path, exc.strerror or exc)) from None
            new_entry = {
                "seq": record.next_seq(), "phase": "pending", "pending": new_fp, "current": current_fp, "previous": current_fp,
                "overlap": bool(keep_previous and old), "started": now_iso(), "tested": None, "finished": None,
                "backup": backup,
            }
            record.put(self.key, new_entry)
            record.save()
            env.write(backup=False)
            new_entry["phase"] = "set"
            record.save()
            if stale_backup and stale_backup != backup:
                _files.unlink_quietly(stale_backup)
            return self.result(env, True, "rotated %s in %s (%s -> %s)%s" % (
                self.key, self.path, current_fp, new_fp, "; the old value stays as %s" % self.previous if keep_previous and old else ""),
                record, resumed=False, backup=backup, diff=self._diff(before, env))

    def values_for_test(self):
        """(new value, old value or None) of an unfinished rotation, for ``tested``.  Internal: the
        values never leave the module."""
        env = self._load()
        record = RotationRecord.load(self.path)
        entry = record.entry(self.key) or {}
        new = env.get(self.key)
        if new is None:
            raise RotationError("%s is not in %s: nothing to test" % (self.key, self.path))
        old = env.get(self.previous)
        if old is None and entry.get("backup") and os.path.exists(entry["backup"]):
            old = EnvFile.load(entry["backup"]).get(self.key)
        if old == new:
            old = None
        return env, record, new, old

    def test(self, probe):
        """The test step: probe the running service with the new value and the old one (see
        ``probe_targets``); raises RotationError naming each failed check.  Changes nothing but the
        record's ``tested`` time.  The values stay inside this process."""
        env, record, new, old = self.values_for_test()
        if self.check_mode:
            return self.result(env, False, "would test %s against %s" % (self.key, probe["url"]), record)
        targets = [_probe_target.ProbeTarget.from_dict(target, index=index)
                   for index, target in enumerate(probe_targets(probe, new, old))]
        report = _probe.Prober(concurrency=2).run(targets, wait=True, wait_timeout=probe.get("wait_timeout") or 30.0,
                                                  wait_delay=0.5, wait_max_delay=2.0)
        checks = [{"name": r["name"], "state": r["state"], "reasons": r.get("reasons", []), "status": r.get("status")}
                  for r in report["targets"]]
        failed = [check for check in checks if check["state"] != "ok"]
        if failed:
            raise RotationError("rotation test of %s failed: %s" % (self.key, "; ".join(
                "%s: %s" % (check["name"], "; ".join(check["reasons"]) or check["state"]) for check in failed)),
                checks=checks, key=self.key, fingerprint=_secrets.fingerprint(new))
        self.mark_tested(env, record)
        return self.result(env, False, "%s: %s" % (self.key, ", ".join(check["name"] for check in checks)),
                           RotationRecord.load(self.path), checks=checks)

    def mark_tested(self, env, record):
        entry = record.entry(self.key)
        if self.check_mode or not entry or entry.get("phase") not in IN_PROGRESS:
            return
        if entry.get("pending") != _secrets.fingerprint(env.get(self.key)):
            return
        entry["phase"], entry["tested"] = "tested", now_iso()
        record.save()

    def finish(self, keep_backup=True):
        """Drop ``<KEY>_PREVIOUS`` and mark the rotation finished; with ``keep_backup`` false the
        backup (which holds the old value) is removed too."""
        with self.lock():
            env = self._load()
            record = RotationRecord.load(self.path)
            entry = record.entry(self.key)
            before = self._before_lines(env)
            file_changed = env.remove(self.previous)
            record_changed = bool(entry) and (entry.get("phase") != "finished" or
                                              bool(not keep_backup and entry.get("backup") and os.path.exists(entry["backup"])))
            changed = file_changed or record_changed
            if self.check_mode or not changed:
                verb = "would finish" if changed else "nothing to finish for"
                return self.result(env, changed, "%s %s in %s" % (verb, self.key, self.path), record,
                                   diff=self._diff(before, env) if file_changed else None)
            if file_changed:
                env.write(backup=False)
            removed = None
            if entry:
                entry["phase"] = "finished"
                entry["finished"] = entry.get("finished") or now_iso()
                entry["current"], entry["pending"] = _secrets.fingerprint(env.get(self.key)), None
                if not keep_backup and entry.get("backup"):
                    _files.unlink_quietly(entry["backup"])
                    removed, entry["backup"] = entry["backup"], None
                record.save()
            msg = "finished the rotation of %s in %s" % (self.key, self.path)
            if file_changed:
                msg += "; %s removed" % self.previous
            return self.result(env, True, msg, record, backup_removed=removed,
                               diff=self._diff(before, env) if file_changed else None)

    def revert(self, force=False):
        """Put the backup of this key's rotation back, byte-identical.  Refused when the key no longer
        holds the value this rotation staged (someone changed it since) unless ``force``."""
        with self.lock():
            env = self._load(missing_ok=True)
            record = RotationRecord.load(self.path)
            entry = record.entry(self.key)
            if not entry or entry.get("phase") == "reverted" or (entry.get("phase") == "finished" and not entry.get("backup")):
                return self.result(env, False, "no rotation of %s to revert in %s" % (self.key, self.path), record)
            backup = entry.get("backup")
            now_fp = _secrets.fingerprint(env.get(self.key))
            if entry.get("phase") == "pending" and now_fp == entry.get("current") and not self.check_mode:
                # killed before the file was written: there is nothing to put back
                if backup:
                    _files.unlink_quietly(backup)
                entry.update(phase="reverted", finished=now_iso(), pending=None, backup=None)
                record.save()
                return self.result(env, False, "%s in %s was never changed by its unfinished rotation" % (self.key, self.path), record)
            if not backup or not os.path.exists(backup):
                raise RotationError("cannot revert %s in %s: its backup %s is gone" % (self.key, self.path, backup))
            staged = entry.get("pending") or entry.get("current")
            if now_fp != staged and not force:
                raise RotationError("cannot revert %s in %s: the key holds %s, not the %s this rotation set; "
                                    "someone changed it since (force to revert anyway)" % (self.key, self.path, now_fp, staged))
            before = self._before_lines(env)
            restored = EnvFile.load(backup)
            if self.check_mode:
                return self.result(restored, True, "would revert %s in %s from %s" % (self.key, self.path, backup), record,
                                   backup=backup, diff=self._diff(before, restored))
            restore_backup(backup, self.path)
            seq = entry.get("seq") or 0
            for other_key, other in record.data["keys"].items():
                # keys staged after this one (in the same run) are undone by the same restore
                if other_key != self.key and other.get("phase") in IN_PROGRESS and (other.get("seq") or 0) > seq:
                    if other.get("backup"):
                        _files.unlink_quietly(other["backup"])
                    other.update(phase="reverted", finished=now_iso(), pending=None, backup=None)
            entry.update(phase="reverted", finished=now_iso(), pending=None, backup=None)
            record.save()
            _files.unlink_quietly(backup)
            return self.result(restored, True, "reverted %s in %s to its backup (byte-identical)" % (self.key, self.path),
                               record, backup=backup, diff=self._diff(before, restored))


# --------------------------------------------------------------------------------------------------
# The test step: probe the running service with the new and the old value

def probe_targets(probe, new, old):
    """Target dicts for ``_probe_target.ProbeTarget.from_dict``: the new value must be accepted; the old
    one refused or accepted as ``probe['previous']`` says.  Names say what each check means."""
    header = probe.get("header") or "x-api-token"
    if header not in TOKEN_HEADERS:
        raise RotationError("probe header must be one of %s" % ", ".join(TOKEN_HEADERS))
    option = TOKEN_HEADERS[header]
    base = {"url": probe["url"], "timeout": probe.get("timeout") or 5.0}
    if probe.get("validate_certs") is not None:
        base["validate_certs"] = probe["validate_certs"]
    targets = [dict(base, name="new value accepted", status=list(probe.get("accepted_status") or [200]), **{option: new})]
    previous = probe.get("previous") or "refused"
    if previous not in PREVIOUS_CHECKS:
        raise RotationError("probe previous must be one of %s" % ", ".join(PREVIOUS_CHECKS))
    if old is not None and previous == "refused":
        targets.append(dict(base, name="old value refused", status=list(probe.get("refused_status") or [401, 403]), **{option: old}))
    elif old is not None and previous == "accepted":
        targets.append(dict(base, name="old value still accepted (overlap)", status=list(probe.get("accepted_status") or [200]),
                            **{option: old}))
    return targets
