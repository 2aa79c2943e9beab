# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time recovery driven through pgBackRest.

pgBackRest does the work: base backups, WAL archiving, encryption, checksums, retention.  This
file decides what to ask it and reads what it answers: the configuration file, command lines,
``pgbackrest info --output=json`` and ``repo-ls`` output, the archive status against an RPO,
restore targets, the destination of a restore, and the recovery messages of the server log.
Plain Python; the only process it starts is pgBackRest (``PgBackRest``) and, for a restore,
``pg_ctl`` (``start_argv``/``stop_argv``, run by the module).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import time

from ansible_collections.runbook.ops.plugins.module_utils import _files as files
from ansible_collections.runbook.ops.plugins.module_utils import _status as status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, PitrError, RunbookError

BACKUP_TYPES = ("full", "diff", "incr")
TARGET_TYPES = ("latest", "time", "lsn", "name", "immediate")
CIPHER_TYPES = ("none", "aes-256-cbc")
REPO_TYPES = ("posix", "s3")
URI_STYLES = ("host", "path")

STANZA_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
OPTION_KEY_RE = re.compile(r"[a-z][a-z0-9-]*")
# Paths that go into archive_command and pg_ctl's -o string, both read by a shell: no quoting needed.
SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9_./+-]*")
LISTEN_RE = re.compile(r"[A-Za-z0-9.:,*-]+")
LSN_RE = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
SEGMENT_RE = re.compile(r"[0-9A-F]{24}")
OS_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s*"
                     r"(?:(Z|UTC|GMT)|([+-])(\d{2})(?::?(\d{2}))?)", re.IGNORECASE)

# Options whose values are secrets: written only to the 0600 configuration file, never to argv.
SECRET_OPTIONS = frozenset(("repo1-cipher-pass", "repo1-s3-key", "repo1-s3-key-secret", "repo1-s3-token"))

# ``pgbackrest info`` status codes (pgBackRest's info command documentation).
INFO_STATUS_HINTS = {
    1: "the stanza does not exist in the repository: create it (pgbackrest_stanza, stanza-create)",
    2: "the repository holds no valid backup yet",
    3: "the stanza's info files are missing from the repository",
    4: "the repositories use different cipher settings",
    99: "the repository could not be read",
}

# A default warning level for the WAL archive age: half the RPO leaves time to act before data
# older than the RPO is at risk.
RPO_WARNING_RATIO = 0.5


# --- configuration ---------------------------------------------------------------------------

def check_stanza(stanza):
    if not isinstance(stanza, str) or not STANZA_RE.fullmatch(stanza):
        raise ParameterError("stanza %r is not a valid name: letters, digits, '_', '.', '-', at most 64 characters"
                             % (stanza,))
    return stanza


def check_safe_path(path, what):
    if not isinstance(path, str) or not SAFE_PATH_RE.fullmatch(path) or "/../" in path + "/":
        raise ParameterError("%s %r must be an absolute path of letters, digits and _ . / + - only (it goes into "
                             "a command line PostgreSQL runs through a shell)" % (what, path))
    return path


def check_os_user(user):
    if not isinstance(user, str) or not OS_USER_RE.fullmatch(user):
        raise ParameterError("os_user %r is not a valid user name" % (user,))
    return user


def _ini_value(key, value):
    if isinstance(value, bool):
        return "y" if value else "n"
    text = str(value)
    if "\n" in text or "\r" in text or text != text.strip() or not text:
        shown = "(hidden)" if key in SECRET_OPTIONS else repr(text)
        raise ParameterError("the value of pgBackRest option %s %s is empty, spans lines or has surrounding "
                             "spaces" % (key, shown))
    return text


def repo_options(repo):
    """The ``repo1-*`` options of a repository described by the module's ``repo`` dict, in order."""
    kind = repo.get("type") or "posix"
    if kind not in REPO_TYPES:
        raise ParameterError("repo type must be one of %s, got %r" % (", ".join(REPO_TYPES), kind))
    if not repo.get("path") or not str(repo["path"]).startswith("/"):
        raise ParameterError("repo path must be absolute (a directory, or the key prefix in the bucket), got %r"
                             % (repo.get("path"),))
    pairs = [("repo1-type", kind), ("repo1-path", repo["path"])]
    if kind == "s3":
        for name in ("s3_bucket", "s3_endpoint", "s3_region"):
            if not repo.get(name):
                raise ParameterError("an s3 repo needs %s" % name)
        pairs += [("repo1-s3-bucket", repo["s3_bucket"]), ("repo1-s3-endpoint", repo["s3_endpoint"]),
                  ("repo1-s3-region", repo["s3_region"])]
        if repo.get("s3_uri_style"):
            if repo["s3_uri_style"] not in URI_STYLES:
                raise ParameterError("s3_uri_style must be host or path, got %r" % (repo["s3_uri_style"],))
            pairs.append(("repo1-s3-uri-style", repo["s3_uri_style"]))
        if repo.get("s3_key_type"):
            pairs.append(("repo1-s3-key-type", repo["s3_key_type"]))
        if repo.get("s3_key") or repo.get("s3_key_secret"):
            if not (repo.get("s3_key") and repo.get("s3_key_secret")):
                raise ParameterError("an s3 repo needs both s3_key and s3_key_secret, or neither (s3_key_type auto)")
            pairs += [("repo1-s3-key", repo["s3_key"]), ("repo1-s3-key-secret", repo["s3_key_secret"])]
        if repo.get("s3_token"):
            pairs.append(("repo1-s3-token", repo["s3_token"]))
        if repo.get("storage_port"):
            pairs.append(("repo1-storage-port", int(repo["storage_port"])))
        if repo.get("storage_verify_tls") is not None:
            pairs.append(("repo1-storage-verify-tls", bool(repo["storage_verify_tls"])))
        if repo.get("storage_ca_file"):
            pairs.append(("repo1-storage-ca-file", repo["storage_ca_file"]))
    cipher = repo.get("cipher_type") or "none"
    if cipher not in CIPHER_TYPES:
        raise ParameterError("cipher_type must be one of %s, got %r" % (", ".join(CIPHER_TYPES), cipher))
    if cipher != "none":
        if not repo.get("cipher_pass"):
            raise ParameterError("cipher_type %s needs cipher_pass (the repository passphrase)" % cipher)
        pairs += [("repo1-cipher-type", cipher), ("repo1-cipher-pass", repo["cipher_pass"])]
    elif repo.get("cipher_pass"):
        raise ParameterError("cipher_pass is set but cipher_type is none: say cipher_type: aes-256-cbc")
    full = repo.get("retention_full")
    if full is not None:
        if int(full) < 1:
            raise ParameterError("retention_full must be at least 1")
        pairs.append(("repo1-retention-full", int(full)))
        if repo.get("retention_full_type"):
            pairs.append(("repo1-retention-full-type", repo["retention_full_type"]))
    diff = repo.get("retention_diff")
    if diff is not None:
        if int(diff) < 1:
            raise ParameterError("retention_diff must be at least 1")
        pairs.append(("repo1-retention-diff", int(diff)))
    return pairs


def render_config(stanza, pg_path, repo, pg_port=5432, pg_socket_path=None, log_path=None, lock_path=None,
                  archive_timeout=None, process_max=None, compress_type=None, extra=None):
    """The text of a pgBackRest configuration file for one stanza and one repository.

    It holds the repository secrets (cipher passphrase, S3 keys), so it is written with mode
    0600, owned by the user pgBackRest runs as.  ``extra`` adds global options by name
    (``{"buffer-size": "1MiB"}``); a secret can only come through ``repo``.
    """
    check_stanza(stanza)
    if not pg_path or not str(pg_path).startswith("/"):
        raise ParameterError("pg_path (the cluster's data directory) must be absolute, got %r" % (pg_path,))
    glob = repo_options(repo)
    for key, value in (("log-path", log_path), ("lock-path", lock_path), ("archive-timeout", archive_timeout),
                       ("process-max", process_max), ("compress-type", compress_type)):
        if value not in (None, ""):
            glob.append((key, value))
    glob.append(("log-level-file", "detail" if log_path else "off"))
    for key, value in sorted((extra or {}).items()):
        if not OPTION_KEY_RE.fullmatch(key) or key.startswith("repo") or key.startswith("pg") or key == "stanza":
            raise ParameterError("extra option %r is not allowed: give a global option such as buffer-size; the "
                                 "repository and cluster options have their own parameters" % (key,))
        glob.append((key, value))
    section = [("pg1-path", pg_path), ("pg1-port", int(pg_port))]
    if pg_socket_path:
        section.append(("pg1-socket-path", pg_socket_path))
    lines = ["# Managed by runbook.ops (pgbackrest_stanza); changes here are overwritten.",
             "# Holds the repository secrets: keep it mode 0600.", "", "[global]"]
    lines += ["%s=%s" % (key, _ini_value(key, value)) for key, value in glob]
    lines += ["", "[%s]" % stanza]
    lines += ["%s=%s" % (key, _ini_value(key, value)) for key, value in section]
    return "\n".join(lines) + "\n"


def archive_command(pgbackrest, config, stanza):
    """The archive_command that pushes each WAL segment into the stanza's repository."""
    return "%s --config=%s --stanza=%s archive-push %%p" % (
        check_safe_path(pgbackrest, "pgbackrest"), check_safe_path(config, "config"), check_stanza(stanza))


def archive_settings(command, archive_timeout=None):
    """A PostgreSQL include file (conf.d) that turns WAL archiving on with ``command``.

    ``archive_timeout`` forces a segment switch after that many seconds of low traffic, which
    bounds the data a lost server can take with it (the RPO) on a quiet database."""
    lines = ["# Managed by runbook.ops (pgbackrest_stanza): WAL archiving into pgBackRest.",
             "# archive_mode needs a server restart; archive_command and archive_timeout a reload.",
             "archive_mode = on",
             "archive_command = '%s'" % command.replace("'", "''")]
    if archive_timeout:
        lines.append("archive_timeout = %d" % int(archive_timeout))
    return "\n".join(lines) + "\n"


def command_argv(pgbackrest, config, command, stanza=None, options=(), run_as=None, args=()):
    """argv of one pgBackRest command (``args`` follow the command: repo-ls's path); ``run_as`` prefixes ``runuser -u <user> --`` (the module
    runs as root and pgBackRest must run as the owner of the data directory)."""
    argv = [pgbackrest, "--config=" + config]
    if stanza:
        argv.append("--stanza=" + check_stanza(stanza))
    argv += list(options)
    argv.append(command)
    argv += list(args)
    for arg in argv:
        if any(arg.startswith("--" + name) for name in SECRET_OPTIONS):
            raise ValueError("a secret option may not go on a command line")
    if run_as:
        argv = ["runuser", "-u", check_os_user(run_as), "--"] + argv
    return argv


# --- reading pgBackRest's answers ----------------------------------------------------------------

def clean_message(text, limit=400):
    """A pgBackRest message fit for a person: lines that are mostly binary (a decrypted-with-the-
    wrong-key info file, for example) are dropped, whitespace collapsed, length bounded."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    kept = []
    for line in str(text or "").splitlines():
        cut = next((i for i, ch in enumerate(line) if not ch.isprintable() or ch == "\ufffd"), None)
        if cut is not None:
            # Garbage lines are dropped; a message line that runs into garbage keeps its words.
            line = line[:cut].rstrip() + " (unreadable data)" if cut >= 20 else ""
        if line.strip():
            kept.append(" ".join(line.split()))
    joined = " ".join(kept)
    return joined if len(joined) <= limit else joined[:limit - 3] + "..."


def _load_json(text, what):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        return json.loads(text, strict=False)  # pgBackRest copies raw file bytes into messages
    except ValueError as exc:
        raise PitrError("%s did not answer JSON (%s): %s" % (what, exc, clean_message(text, 200))) from None


def _iso(epoch):
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _backup(entry):
    info = entry.get("info") or {}
    repo = info.get("repository") or {}
    stamps = entry.get("timestamp") or {}
    archive = entry.get("archive") or {}
    lsn = entry.get("lsn") or {}
    return {
        "label": entry.get("label"), "type": entry.get("type"), "prior": entry.get("prior"),
        "started": _iso(stamps.get("start")), "finished": _iso(stamps.get("stop")),
        "start_epoch": stamps.get("start"), "stop_epoch": stamps.get("stop"),
        "size": info.get("size"), "delta": info.get("delta"),
        "repo_size": repo.get("size"), "repo_delta": repo.get("delta"),
        "wal_start": archive.get("start"), "wal_stop": archive.get("stop"),
        "lsn_start": lsn.get("start"), "lsn_stop": lsn.get("stop"),
        "error": bool(entry.get("error")), "database_id": (entry.get("database") or {}).get("id"),
    }


def parse_info(text, stanza):
    """The stanza's part of ``pgbackrest info --output=json``: status, backups (oldest first)
    and the WAL archive range of the current database."""
    data = _load_json(text, "pgbackrest info")
    if not isinstance(data, list):
        raise PitrError("pgbackrest info answered %s, not a list of stanzas" % type(data).__name__)
    entry = next((item for item in data if isinstance(item, dict) and item.get("name") == stanza), None)
    if entry is None:
        raise PitrError("pgbackrest info does not list stanza %s (it lists: %s)"
                        % (stanza, ", ".join(str(item.get("name")) for item in data) or "none"))
    state = entry.get("status") or {}
    code = state.get("code", 99)
    repos = [{"key": repo.get("key"), "cipher": repo.get("cipher"), "status_code": (repo.get("status") or {}).get("code"),
              "status": clean_message((repo.get("status") or {}).get("message"))}
             for repo in entry.get("repo") or []]
    message = clean_message(state.get("message"))
    if message == "other" and repos:
        message = "; ".join(repo["status"] for repo in repos if repo["status_code"])
    dbs = [{"id": db.get("id"), "version": db.get("version"), "system_id": db.get("system-id")}
           for db in entry.get("db") or []]
    current_db = max((db["id"] for db in dbs if db["id"] is not None), default=None)
    archives = [arc for arc in entry.get("archive") or [] if (arc.get("database") or {}).get("id") == current_db]
    archive = archives[-1] if archives else {}
    backups = sorted((_backup(item) for item in entry.get("backup") or []),
                     key=lambda b: (b["stop_epoch"] or 0, b["label"] or ""))
    return {
        "stanza": stanza, "status_code": code, "status": message, "ok": code == 0,
        "hint": INFO_STATUS_HINTS.get(code), "cipher": entry.get("cipher"),
        "backup_running": bool(((state.get("lock") or {}).get("backup") or {}).get("held")),
        "repos": repos, "databases": dbs,
        "archive": {"id": archive.get("id"), "min": archive.get("min"), "max": archive.get("max")},
        "backups": backups, "latest": backups[-1]["label"] if backups else None,
    }


def info_problem(info):
    """One sentence on why a stanza cannot be used, or None when its status is ok (or only
    lacks backups)."""
    if info["ok"] or info["status_code"] == 2:
        return None
    text = "stanza %s: %s" % (info["stanza"], info["status"] or "status code %s" % info["status_code"])
    if "unable to load info file" in (info["status"] or ""):
        text += " (a wrong cipher passphrase or cipher type, or a damaged repository)"
    elif info["hint"]:
        text += " (%s)" % info["hint"]
    return text


def archive_dir(stanza, archive_id, segment):
    """The repository path ``repo-ls`` lists for the WAL directory holding ``segment``."""
    if not SEGMENT_RE.fullmatch(segment or ""):
        raise PitrError("%r is not a WAL segment name" % (segment,))
    return "archive/%s/%s/%s" % (check_stanza(stanza), archive_id, segment[:16])


def parse_repo_ls(text):
    """``pgbackrest repo-ls --output=json``: {name: {type, size, time}}."""
    data = _load_json(text, "pgbackrest repo-ls")
    if not isinstance(data, dict):
        raise PitrError("pgbackrest repo-ls answered %s, not an object" % type(data).__name__)
    return data


def segment_time(listing, segment):
    """Epoch at which ``segment`` reached the repository (its file's time), or None."""
    for name, entry in listing.items():
        base = name.rsplit("/", 1)[-1]
        if base.startswith(segment + "-") or base in (segment, segment + ".gz"):
            return entry.get("time")
    return None


def next_segment(segment, segment_size=16 << 20):
    """The WAL segment after ``segment`` (same timeline)."""
    if not SEGMENT_RE.fullmatch(segment or ""):
        raise PitrError("%r is not a WAL segment name" % (segment,))
    per_log = 0x100000000 // segment_size
    timeline, log, seg = segment[:8], int(segment[8:16], 16), int(segment[16:], 16)
    seg += 1
    if seg >= per_log:
        log, seg = log + 1, 0
    return "%s%08X%08X" % (timeline, log, seg)


def new_backup(before_labels, info):
    """The backup a backup command just made: the newest label not in ``before_labels``."""
    made = [b for b in info["backups"] if b["label"] not in set(before_labels)]
    if not made:
        raise PitrError("pgbackrest backup ended without error but the repository lists no new backup of stanza %s"
                        % info["stanza"])
    return made[-1]


def backup_options(backup_type, start_fast=True, archive_timeout=None):
    if backup_type not in BACKUP_TYPES:
        raise ParameterError("type must be one of %s, got %r" % (", ".join(BACKUP_TYPES), backup_type))
    options = ["--type=" + backup_type]
    if start_fast:
        options.append("--start-fast")
    if archive_timeout:
        options.append("--archive-timeout=%d" % int(archive_timeout))
    return options


def backup_needs_full(backup_type, info):
    """A diff or incr backup needs a full one to build on; pgBackRest would quietly take a full
    one instead, so say it."""
    return backup_type != "full" and not any(b["type"] == "full" for b in info["backups"])


# --- archive status against an RPO -------------------------------------------------------------

def _check(name, state, reasons, **fields):
    return dict({"name": name, "state": state, "reasons": reasons}, **fields)


def _epoch(moment):
    if moment is None:
        return None
    if isinstance(moment, (int, float)):
        return float(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def rate_archive(info, last_segment_epoch, now, rpo=None, rpo_warning=None, archiver=None):
    """The WAL archive against the RPO: the age of the newest segment in the repository, and
    (with ``archiver``, a pg_stat_archiver row) whether archive_command is failing now."""
    segment = info["archive"]["max"]
    fields = {"last_segment": segment, "last_segment_at": _iso(last_segment_epoch), "age_seconds": None,
              "rpo_seconds": rpo}
    problem = info_problem(info)
    if problem:
        return _check("wal_archive", "critical", [problem], **fields)
    if not segment:
        return _check("wal_archive", "critical", ["no WAL segment has been archived into the repository yet"], **fields)
    reasons, state = [], "ok"
    if last_segment_epoch is not None:
        age = max(0.0, _epoch(now) - last_segment_epoch)
        fields["age_seconds"] = int(age)
        if rpo:
            warn = rpo_warning if rpo_warning is not None else rpo * RPO_WARNING_RATIO
            state = status.level(age, warn, rpo)
            if state != "ok":
                reasons.append("the newest archived WAL segment %s is %ds old (%s level %ds, RPO %ds): writes since "
                               "then are not yet in the repository" % (segment, age, state, warn if state == "warning"
                                                                       else rpo, rpo))
    elif rpo:
        state = "warning"
        reasons.append("the time of the newest archived segment %s could not be read" % segment)
    if archiver:
        fields["failed_count"] = archiver.get("failed_count")
        fields["last_failed_wal"] = archiver.get("last_failed_wal")
        failed_at, archived_at = _epoch(archiver.get("last_failed_time")), _epoch(archiver.get("last_archived_time"))
        if failed_at is not None and (archived_at is None or failed_at > archived_at):
            state = "critical"
            reasons.append("archive_command is failing: segment %s failed at %s and nothing was archived since "
                           "(%s failures since the statistics were reset)"
                           % (archiver.get("last_failed_wal"), _iso(failed_at), archiver.get("failed_count")))
    return _check("wal_archive", state, reasons, **fields)


def rate_backups(info, now, max_backup_age=None):
    """The backups: at least one, the newest younger than ``max_backup_age``, none with errors."""
    backups = info["backups"]
    problem = info_problem(info)
    if problem:
        return _check("backups", "critical", [problem], count=len(backups))
    if not backups:
        return _check("backups", "critical", ["the repository holds no backup of stanza %s" % info["stanza"]], count=0)
    latest = backups[-1]
    age = max(0.0, _epoch(now) - latest["stop_epoch"])
    reasons, state = [], "ok"
    if max_backup_age and age > max_backup_age:
        state = "critical"
        reasons.append("the newest backup %s finished %ds ago, over the limit of %ds"
                       % (latest["label"], age, max_backup_age))
    damaged = [b["label"] for b in backups if b["error"]]
    if damaged:
        state = status.worst([state, "warning"])
        reasons.append("pgBackRest found page checksum errors in backup(s) %s" % ", ".join(damaged))
    if info["backup_running"]:
        reasons.append("a backup is running now")
    return _check("backups", state, reasons, count=len(backups), latest=latest["label"],
                  latest_finished=latest["finished"], latest_age_seconds=int(age))


def rate_target(info, last_segment_epoch, now, target_type, target=None, exclusive=False, backup_set=None):
    """Whether the repository covers a recovery target before anything is stopped: a backup to
    start from (restore_target's choice and refusals) and, for a time target, WAL that reached the
    repository after the target; an archive that ends earlier cannot reach it."""
    fields = {"target_type": target_type, "target": target or None, "backup": None,
              "archive_end": _iso(last_segment_epoch), "last_segment": info["archive"]["max"]}
    problem = info_problem(info)
    if problem:
        return _check("target", "critical", [problem], **fields)
    try:
        _options, described = restore_target(target_type, target, info["backups"], now, exclusive, backup_set)
    except (ParameterError, PitrError) as exc:
        return _check("target", "critical", [str(exc)], **fields)
    fields.update(target=described["target"], backup=described["backup"], backup_finished=described["backup_finished"])
    reasons = []
    if target_type == "time" and (last_segment_epoch is None
                                  or last_segment_epoch < parse_time(described["target"]).timestamp()):
        reasons.append("the WAL archive ends before the target %s (the newest segment %s reached the repository at "
                       "%s): writes up to the target are not in the repository, recovery could not reach it. Archive "
                       "the current WAL first (SELECT pg_switch_wal()) or choose an earlier target"
                       % (described["target"], info["archive"]["max"] or "none", _iso(last_segment_epoch) or "no time"))
    return _check("target", "critical" if reasons else "ok", reasons, **fields)


def report(info, last_segment_epoch, now, rpo=None, rpo_warning=None, archiver=None, max_backup_age=None,
           target=None):
    """Both checks (and ``target``, a dict of rate_target's arguments, as a third), the overall
    state and a one-line message (through _status.overview)."""
    checks = [rate_archive(info, last_segment_epoch, now, rpo, rpo_warning, archiver),
              rate_backups(info, now, max_backup_age)]
    if target:
        checks.append(rate_target(info, last_segment_epoch, now, **target))
    view = status.overview(checks, "checks")
    return {"state": view["state"], "summary": view["summary"], "msg": "stanza %s - %s" % (info["stanza"], view["msg"]),
            "checks": checks}


# --- restore -------------------------------------------------------------------------------------

def parse_time(text, what="time"):
    """An aware datetime from 'YYYY-MM-DD HH:MM:SS[.ffffff]<offset>' (offset required: Z, +00,
    +02:00); PostgreSQL's log times read the same way."""
    if isinstance(text, datetime.datetime):
        if text.tzinfo is None:
            raise ParameterError("%s %s has no time zone" % (what, text))
        return text
    match = TIME_RE.fullmatch(str(text or "").strip())
    if not match:
        raise ParameterError("%s %r is not a timestamp with a time zone, such as '2026-11-30 21:10:40+00' or "
                             "'2026-11-30T21:10:40.25Z'" % (what, text))
    year, month, day, hour, minute, second, fraction, utc, sign, off_h, off_m = match.groups()
    if utc:
        zone = datetime.timezone.utc
    else:
        offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m or 0))
        zone = datetime.timezone(-offset if sign == "-" else offset)
    try:
        return datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                                 int((fraction or "0").ljust(6, "0")), tzinfo=zone)
    except ValueError as exc:
        raise ParameterError("%s %r: %s" % (what, text, exc)) from None


def format_time(moment):
    """UTC, microseconds, as PostgreSQL's recovery_target_time reads it."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def lsn_value(text):
    if not LSN_RE.fullmatch(str(text or "")):
        raise ParameterError("%r is not an LSN such as 0/3000050" % (text,))
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _choose_backup(backups, fits, what):
    usable = [b for b in backups if fits(b)]
    if not usable:
        oldest = backups[0]["label"] if backups else None
        raise PitrError("no backup ends before %s (the oldest, %s, is later): that point cannot be recovered from "
                        "this repository" % (what, oldest or "none"))
    return usable[-1]


def restore_target(target_type, target=None, backups=(), now=None, exclusive=False, backup_set=None):
    """Validate a recovery target and choose the backup to start from.

    Returns ``(options, described)``: pgBackRest restore options (type, target, promote,
    backup set) and what will be recovered to.  For a time or LSN target the newest backup that
    ended before the target is used, so that a target before the newest backup still works;
    ``backup_set`` overrides that.  A target in the future, or before every backup, is refused.
    """
    if target_type not in TARGET_TYPES:
        raise ParameterError("target_type must be one of %s, got %r" % (", ".join(TARGET_TYPES), target_type))
    backups = [b for b in backups if not b.get("error")] or list(backups)
    if not backups:
        raise PitrError("the repository holds no backup to restore from")
    described = {"type": target_type, "target": None, "exclusive": bool(exclusive)}
    options, chosen = [], backups[-1]
    if target_type in ("latest", "immediate"):
        if target not in (None, ""):
            raise ParameterError("target_type %s takes no target (got %r)" % (target_type, target))
        options.append("--type=" + ("default" if target_type == "latest" else "immediate"))
    elif target_type == "time":
        moment = parse_time(target, "target")
        now = now or datetime.datetime.now(datetime.timezone.utc)
        if moment > now:
            raise ParameterError("target %s is in the future (now %s): recovery could never reach it"
                                 % (format_time(moment), format_time(now)))
        stamp = moment.timestamp()
        # info's stop time is in whole seconds: a backup counts as ended before the target only when
        # the whole second it ended in is, so recovery never stops before its consistency point.
        chosen = _choose_backup(backups, lambda b: (b["stop_epoch"] or 0) + 1 <= stamp, format_time(moment))
        described["target"] = format_time(moment)
        options += ["--type=time", "--target=" + described["target"]]
    elif target_type == "lsn":
        wanted = lsn_value(target)
        chosen = _choose_backup(backups, lambda b: b["lsn_stop"] and lsn_value(b["lsn_stop"]) <= wanted,
                                "LSN %s" % target)
        described["target"] = target.upper()
        options += ["--type=lsn", "--target=" + described["target"]]
    else:
        name = str(target or "")
        if not name or len(name.encode("utf-8")) > 63 or any(not ch.isprintable() or ch in "'\\" for ch in name):
            raise ParameterError("target %r is not a restore point name (1-63 bytes, printable, no quotes or "
                                 "backslashes)" % (target,))
        described["target"] = name
        options += ["--type=name", "--target=" + name]
    if backup_set:
        chosen = next((b for b in backups if b["label"] == backup_set), None)
        if chosen is None:
            raise PitrError("backup set %s is not in the repository (it holds: %s)"
                            % (backup_set, ", ".join(b["label"] for b in backups)))
    if target_type != "latest":
        options.append("--target-action=promote")
    if exclusive:
        if target_type not in ("time", "lsn"):
            raise ParameterError("exclusive applies to time and lsn targets only")
        options.append("--target-exclusive")
    options.append("--set=" + chosen["label"])
    described["backup"] = chosen["label"]
    described["backup_finished"] = chosen["finished"]
    return options, described


def check_destination(data_dir, live_data_dir, force, entries, running):
    """Refuse a restore destination that would destroy something.

    ``entries``: names in ``data_dir`` (None when it does not exist); ``running``: a postmaster
    runs there.  Returns ``"new"`` (restore into a new or empty directory, start a new cluster)
    or ``"replace"`` (``force``: pgBackRest ``--delta`` over a stopped cluster's directory)."""
    if not data_dir or not os.path.isabs(data_dir):
        raise ParameterError("data_dir must be an absolute path, got %r" % (data_dir,))
    same = live_data_dir and os.path.realpath(data_dir) == os.path.realpath(live_data_dir)
    if running:
        raise PitrError("a PostgreSQL server is running in %s: stop it first; a restore never runs under a live "
                        "server" % data_dir)
    if same and not force:
        raise PitrError("data_dir %s is the live cluster's data directory (pg1-path of the stanza): refusing to "
                        "restore over it. Restore into a new directory (the default), or set force: true after "
                        "stopping the cluster" % data_dir)
    if entries and not force:
        raise PitrError("data_dir %s is not empty (%d entries): refusing to restore over it; choose a new "
                        "directory, or set force: true" % (data_dir, len(entries)))
    return "replace" if (same or entries) else "new"


def restore_options(data_dir, target_options, mode, process_max=None):
    options = ["--pg1-path=" + data_dir] + list(target_options)
    if mode == "new":
        options.append("--archive-mode=off")  # a copy must never push WAL into the live stanza's repository
    else:
        options.append("--delta")
    if process_max:
        options.append("--process-max=%d" % int(process_max))
    return options


def new_cluster_files(port, listen_addresses="127.0.0.1", socket_dir="/var/run/postgresql"):
    """postgresql.conf and pg_hba.conf for a restored copy whose data directory has none (a
    Debian cluster keeps them in /etc): the port and addresses go on pg_ctl's command line too."""
    conf = ("# Written by runbook.ops (pgbackrest_restore) for a restored copy.\n"
            "port = %d\nlisten_addresses = '%s'\nunix_socket_directories = '%s'\n"
            % (int(port), listen_addresses, socket_dir))
    hba = ("# Written by runbook.ops (pgbackrest_restore) for a restored copy.\n"
           "local   all   all                  peer\n"
           "host    all   all   127.0.0.1/32   scram-sha-256\n"
           "host    all   all   ::1/128        scram-sha-256\n")
    return {"postgresql.conf": conf, "pg_hba.conf": hba, "pg_ident.conf": ""}


def start_argv(pg_ctl, data_dir, log_file, port=None, listen_addresses=None, socket_dir=None, archive_off=True):
    """pg_ctl start without waiting (the caller watches recovery); pg_ctl hands -o to a shell,
    so every value in it is checked to need no quoting."""
    settings = []
    if port:
        settings.append("-c port=%d" % int(port))
    if listen_addresses is not None:
        if listen_addresses and not LISTEN_RE.fullmatch(listen_addresses):
            raise ParameterError("listen_addresses %r: addresses, host names, '*' separated by commas"
                                 % (listen_addresses,))
        settings.append("-c listen_addresses=%s" % (listen_addresses or "''"))
    if socket_dir:
        settings.append("-c unix_socket_directories=%s" % check_safe_path(socket_dir, "socket_dir"))
    if archive_off:
        settings.append("-c archive_mode=off")
    argv = [pg_ctl, "-D", check_safe_path(data_dir, "data_dir"), "-l", check_safe_path(log_file, "log_file")]
    if settings:
        argv += ["-o", " ".join(settings)]
    return argv + ["start"]


def stop_argv(pg_ctl, data_dir):
    return [pg_ctl, "-D", data_dir, "-m", "fast", "-w", "stop"]


# --- the recovery, as the server log tells it ----------------------------------------------------

_LOG_LINE = re.compile(r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+) \[\d+\] (?P<level>[A-Z]+):\s+"
                       r"(?P<text>.*)$")
_STOP = re.compile(r"recovery stopping (?P<how>before|after) (?:commit|abort) of transaction \d+, time (?P<time>.+)")
_STOP_NAME = re.compile(r'recovery stopping at restore point "(?P<name>.*)", time (?P<time>.+)')
_STOP_LSN = re.compile(r'recovery stopping (?:before|after) WAL location \(LSN\) "(?P<lsn>[0-9A-F/]+)"')
_LAST_TX = re.compile(r"last completed transaction was at log time (?P<time>.+)")
_RESTORED = re.compile(r'restored log file "(?P<segment>[0-9A-F]{24})" from archive')
_TIMELINE = re.compile(r"selected new timeline ID: (?P<tli>\d+)")
_CONSISTENT = re.compile(r"consistent recovery state reached at (?P<lsn>\S+)")


def _log_time(text):
    try:
        return format_time(parse_time(text.strip(), "log time"))
    except ParameterError:
        return text.strip()


def parse_recovery_log(text):
    """What the server log says about a recovery: where it stopped, the last transaction it
    replayed, whether it promoted, and the first FATAL or PANIC."""
    found = {"stopped": None, "stop_time": None, "last_transaction_time": None, "last_restored_segment": None,
             "consistent_at": None, "new_timeline": None, "recovery_complete": False, "ready": False,
             "fatal": None, "shut_down": False}
    for line in (text or "").splitlines():
        match = _LOG_LINE.match(line)
        if not match:
            continue
        level, message = match.group("level"), match.group("text")
        if level in ("FATAL", "PANIC") and found["fatal"] is None:
            found["fatal"] = message.strip()
            continue
        for pattern in (_STOP, _STOP_NAME, _STOP_LSN):
            stop = pattern.match(message)
            if stop:
                found["stopped"] = message.strip()
                if "time" in stop.groupdict():
                    found["stop_time"] = _log_time(stop.group("time"))
        if _LAST_TX.match(message):
            found["last_transaction_time"] = _log_time(_LAST_TX.match(message).group("time"))
        elif _RESTORED.match(message):
            found["last_restored_segment"] = _RESTORED.match(message).group("segment")
        elif _TIMELINE.match(message):
            found["new_timeline"] = int(_TIMELINE.match(message).group("tli"))
        elif _CONSISTENT.match(message):
            found["consistent_at"] = _CONSISTENT.match(message).group("lsn")
        elif message.startswith("archive recovery complete"):
            found["recovery_complete"] = True
        elif message.strip() == "database system is ready to accept connections" and found["recovery_complete"]:
            found["ready"] = True
        elif message.strip() == "database system is shut down":
            found["shut_down"] = True
    return found


def recovery_failure(found, archive_max=None):
    """A sentence on why a recovery did not finish, with the missing WAL segment when the log and
    the archive range tell which one it is."""
    fatal = found["fatal"] or "the server stopped during recovery"
    text = "recovery failed: %s" % fatal
    last = found["last_restored_segment"]
    if last:
        missing = next_segment(last)
        if archive_max and SEGMENT_RE.fullmatch(archive_max) and missing[8:] < archive_max[8:]:
            text += ("; WAL segment %s is missing from the repository (replay restored up to %s and the archive "
                     "goes on to %s)" % (missing, last, archive_max))
        else:
            text += "; the last WAL segment restored was %s (the archive ends at %s)" % (last, archive_max or "?")
    if found["last_transaction_time"]:
        text += "; replay had reached a transaction of %s" % found["last_transaction_time"]
    return text


def recovered_to(found, described):
    """The recovered-to time (the last transaction replayed) against the target, in seconds."""
    reached = found["last_transaction_time"]
    result = {"recovered_to": reached, "stop_time": found["stop_time"], "stop_reason": found["stopped"],
              "target_gap_seconds": None, "timeline": found["new_timeline"]}
    if reached and described["type"] == "time" and described.get("target"):
        gap = parse_time(described["target"]) - parse_time(reached)
        result["target_gap_seconds"] = round(gap.total_seconds(), 6)
    return result


# --- running pgBackRest --------------------------------------------------------------------------

class PgBackRest:
    """One stanza's pgBackRest, run as the data directory's owner; the secrets stay in the 0600
    configuration file, so neither argv nor the environment carries them."""

    def __init__(self, binary, config, stanza, os_user=None, timeout=None):
        self.binary = binary
        self.config = config
        self.stanza = check_stanza(stanza)
        self.run_as = check_os_user(os_user) if os_user and os.geteuid() == 0 else None
        self.timeout = timeout
        self.commands = []  # the argv of every command run, for the task result

    def argv(self, command, options=(), stanza=True, args=()):
        return command_argv(self.binary, self.config, command, self.stanza if stanza else None, options, self.run_as,
                            args)

    def run(self, command, options=(), stanza=True, args=()):
        argv = self.argv(command, options, stanza, args)
        self.commands.append(argv)
        env = {key: value for key, value in os.environ.items() if not key.startswith("PGBACKREST_")}
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                  cwd="/", env=env, timeout=self.timeout, check=False)
        except FileNotFoundError as exc:
            raise PitrError("cannot run %s: %s (is pgBackRest installed?)" % (argv[0], exc)) from None
        except subprocess.TimeoutExpired:
            raise PitrError("pgbackrest %s did not finish within %ss" % (command, self.timeout)) from None
        if proc.returncode != 0:
            raise PitrError("pgbackrest %s failed (exit %d): %s"
                            % (command, proc.returncode, clean_message(proc.stderr or proc.stdout, 800)),
                            exit_code=proc.returncode)
        return proc.stdout.decode("utf-8", "replace")

    def info(self):
        return parse_info(self.run("info", ["--output=json"]), self.stanza)

    def last_segment_epoch(self, info):
        segment = info["archive"]["max"]
        if not segment or not info["archive"]["id"]:
            return None
        listing = parse_repo_ls(self.run("repo-ls", ["--output=json"],
                                         args=[archive_dir(self.stanza, info["archive"]["id"], segment)]))
        return segment_time(listing, segment)


# The options every pgbackrest_* module shares (doc fragment runbook.ops.pgbackrest).
PGBACKREST_OPTIONS = {
    "stanza": {"type": "str", "required": True},
    "config": {"type": "path", "required": True},
    "os_user": {"type": "str", "default": "postgres"},
    "pgbackrest_bin": {"type": "str", "default": "pgbackrest"},
    "command_timeout": {"type": "int", "default": 86400},
}


def pgbackrest_from_params(params, find_binary):
    """The PgBackRest the module options describe; ``find_binary(name)`` resolves a bare name."""
    binary = params["pgbackrest_bin"]
    if "/" not in binary:
        binary = find_binary(binary) or binary
    return PgBackRest(binary, params["config"], params["stanza"], params["os_user"], params["command_timeout"])


# --- setting a stanza up -------------------------------------------------------------------------

# pgBackRest check's error codes that mean PostgreSQL has not taken the archive settings yet.
CHECK_NEEDS_RESTART = 87   # archive_mode must be enabled
CHECK_NEEDS_RELOAD = 68    # archive_command must contain pgbackrest


def owner_ids(user):
    import pwd  # pylint: disable=import-outside-toplevel

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ParameterError("os_user %s does not exist on this host" % user) from None
    return entry.pw_uid, entry.pw_gid


def read_text(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def write_owned(path, text, mode, user, check_mode=False):
    """Write ``text`` atomically (mode ``mode``, owned by ``user``) unless it is there already;
    a missing parent directory is created 0700 for ``user``.  Returns whether it changed."""
    uid, gid = owner_ids(user)
    current = read_text(path)
    try:
        info = os.stat(path)
        attributes_ok = info.st_uid == uid and (info.st_mode & 0o777) == mode
    except FileNotFoundError:
        attributes_ok = False
    if current == text and attributes_ok:
        return False
    if check_mode:
        return True
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        files.make_private_dirs(parent)
        os.chown(parent, uid, gid)
    files.atomic_write(path, text.encode("utf-8"), mode=mode, keep_attributes=False)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return True


def pg_tool(name, pg_bin_dir, data_dir):
    """``pg_ctl`` of the cluster's major version: ``pg_bin_dir``, else Debian's
    /usr/lib/postgresql/<PG_VERSION>/bin, else the one on PATH."""
    if pg_bin_dir:
        return os.path.join(pg_bin_dir, name)
    version = (read_text(os.path.join(data_dir, "PG_VERSION")) or "").strip()
    candidate = "/usr/lib/postgresql/%s/bin/%s" % (version, name)
    return candidate if version and os.path.exists(candidate) else name


def run_tool(argv, what, user=None, timeout=600):
    """Run a PostgreSQL tool (as ``user`` when we are root); PitrError with its output if it fails."""
    if user and os.geteuid() == 0:
        argv = ["runuser", "-u", check_os_user(user), "--"] + list(argv)
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              cwd="/", timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise PitrError("cannot run %s: %s" % (what, exc)) from None
    except subprocess.TimeoutExpired:
        raise PitrError("%s did not finish within %ss" % (what, timeout)) from None
    if proc.returncode != 0:
        raise PitrError("%s failed (exit %d): %s" % (what, proc.returncode, clean_message(proc.stdout, 800)))
    return argv


def postmaster_running(data_dir):
    """Whether a postmaster runs in ``data_dir`` (its postmaster.pid names a live process)."""
    text = read_text(os.path.join(data_dir, "postmaster.pid"))
    if not text:
        return False
    try:
        pid = int(text.split("\n", 1)[0])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def setup_stanza(pgbackrest, info, check_mode=False):
    """stanza-create when the repository does not know the stanza yet; returns whether it ran."""
    if info["status_code"] not in (1, 3):
        return False
    if not check_mode:
        pgbackrest.run("stanza-create")
    return True


def run_check(pgbackrest, archive_timeout=None):
    """``pgbackrest check``: ``ok``, ``restart`` (archive_mode is off in the running server),
    ``reload`` (archive_command is not pgBackRest's yet); any other failure raises."""
    options = ["--archive-timeout=%d" % int(archive_timeout)] if archive_timeout else []
    try:
        pgbackrest.run("check", options)
    except PitrError as exc:
        code = exc.details.get("exit_code")
        if code == CHECK_NEEDS_RESTART:
            return "restart", str(exc)
        if code == CHECK_NEEDS_RELOAD:
            return "reload", str(exc)
        raise
    return "ok", None


# --- restoring into a new cluster ----------------------------------------------------------------

# pg_ctl returns once the server accepts (read-only) connections; promotion follows. Poll for it this often.
RECOVERY_POLL_SECONDS = 0.25
# A promoted server finishes its end-of-recovery checkpoint before it accepts connections.
READY_WAIT_SECONDS = 60


def make_owned_dirs(path, user):
    """Create ``path`` and its missing parents with mode 0700, owned by ``user``."""
    uid, gid = owner_ids(user)
    missing, level = [], path
    while level and not os.path.isdir(level):
        missing.append(level)
        level = os.path.dirname(level)
    for directory in reversed(missing):
        files.make_private_dirs(directory)
        os.chown(directory, uid, gid)


def _read_from(path, offset):
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait_for_recovery(data_dir, log_file, offset, timeout, archive_max=None):
    """Wait until the restored server has promoted (recovery.signal gone, server running and,
    when its log is readable, ready for connections).  PitrError naming the cause (the FATAL,
    the missing WAL segment) when it stops instead, or when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        found = parse_recovery_log(_read_from(log_file, offset)) if log_file else parse_recovery_log("")
        running = postmaster_running(data_dir)
        signal_gone = not any(os.path.exists(os.path.join(data_dir, name))
                              for name in ("recovery.signal", "standby.signal"))
        if found["fatal"] or not running:
            raise PitrError(recovery_failure(found, archive_max) + "; the restored directory %s is left for "
                            "inspection (server log %s)" % (data_dir, log_file), recovery=found)
        if signal_gone and (found["ready"] or not log_file):
            return found
        if time.monotonic() > deadline:
            raise PitrError("recovery did not finish within %ds; the restored server in %s still runs (server log %s)"
                            % (timeout, data_dir, log_file), recovery=found)
        time.sleep(RECOVERY_POLL_SECONDS)


def restore_cluster(pgbackrest, data_dir, target_type, target=None, port=None, **opts):
    """The pgbackrest_restore flow: choose the backup for the target, check the destination,
    restore, start the copy and wait for it to promote.  Returns what was (or would be) done.

    ``opts``: exclusive, backup_set, listen_addresses, socket_dir, log_file, force, start,
    start_command, pg_bin_dir, live_data_dir, recovery_timeout, process_max, os_user, check_mode, now.
    """
    os_user = opts.get("os_user") or "postgres"
    info = pgbackrest.info()
    problem = info_problem(info)
    if problem:
        raise PitrError(problem)
    options, described = restore_target(target_type, target, info["backups"], opts.get("now"),
                                        opts.get("exclusive", False), opts.get("backup_set"))
    data_dir = os.path.normpath(data_dir or "")
    entries = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else None
    mode = check_destination(data_dir, opts.get("live_data_dir"), opts.get("force", False), entries,
                             bool(entries) and postmaster_running(data_dir))
    if mode == "new" and not port:
        raise ParameterError("port is required: the restored copy starts as a new cluster beside the live one")
    log_file = check_safe_path(opts.get("log_file") or data_dir + ".log", "log_file")
    argv = pgbackrest.argv("restore", restore_options(data_dir, options, mode, opts.get("process_max")))
    result = {"mode": mode, "data_dir": data_dir, "port": port, "target": described, "log_file": log_file,
              "started": False, "promoted": False, "restore_command": argv}
    if opts.get("check_mode"):
        return result
    try:
        return _restore_and_start(pgbackrest, info, options, described, mode, data_dir, port, log_file, result, opts)
    except RunbookError as exc:
        exc.details.setdefault("changed", True)  # files were written
        exc.details.setdefault("data_dir", data_dir)
        raise


def _restore_and_start(pgbackrest, info, options, described, mode, data_dir, port, log_file, result, opts):
    os_user = opts.get("os_user") or "postgres"
    started_at = time.monotonic()
    make_owned_dirs(data_dir, os_user)
    uid, gid = owner_ids(os_user)
    os.chown(data_dir, uid, gid)
    os.chmod(data_dir, 0o700)
    pgbackrest.run("restore", restore_options(data_dir, options, mode, opts.get("process_max")))
    result["restore_seconds"] = round(time.monotonic() - started_at, 3)
    if mode == "new":
        for name, text in new_cluster_files(port, opts.get("listen_addresses") or "127.0.0.1",
                                            opts.get("socket_dir") or "/var/run/postgresql").items():
            if not os.path.exists(os.path.join(data_dir, name)):
                write_owned(os.path.join(data_dir, name), text, 0o600, os_user)
    if not opts.get("start", True):
        result["duration_seconds"] = result["restore_seconds"]
        return result
    if opts.get("start_command") and not opts.get("log_file"):
        log_file = None  # the cluster's own start command logs where its configuration says
        result["log_file"] = None
    offset = os.path.getsize(log_file) if log_file and os.path.exists(log_file) else 0
    timeout = int(opts.get("recovery_timeout") or 3600)
    try:
        if opts.get("start_command"):
            run_tool(opts["start_command"], "start_command %s" % opts["start_command"][0], timeout=timeout)
        elif mode == "new" or os.path.exists(os.path.join(data_dir, "postgresql.conf")):
            if not os.path.exists(log_file):
                write_owned(log_file, "", 0o600, os_user)
            pg_ctl = pg_tool("pg_ctl", opts.get("pg_bin_dir"), data_dir)
            run_tool(start_argv(pg_ctl, data_dir, log_file, port, opts.get("listen_addresses"), opts.get("socket_dir"),
                                archive_off=mode == "new")[:-1] + ["-w", "-t", str(timeout), "start"],
                     "pg_ctl start", os_user, timeout=timeout + 30)
        else:
            result["note"] = ("%s has no postgresql.conf: start the cluster as usual (for example pg_ctlcluster); it "
                              "recovers to the target and promotes" % data_dir)
            result["duration_seconds"] = result["restore_seconds"]
            return result
    except PitrError:
        found = parse_recovery_log(_read_from(log_file, offset) if log_file else "")
        if found["fatal"]:
            raise PitrError(recovery_failure(found, info["archive"]["max"]) + "; the restored directory %s is left "
                            "for inspection (server log %s)" % (data_dir, log_file), recovery=found) from None
        raise
    result["started"] = True
    found = wait_for_recovery(data_dir, log_file, offset, max(1, timeout - (time.monotonic() - started_at)),
                              info["archive"]["max"])
    result["promoted"] = True
    result["duration_seconds"] = round(time.monotonic() - started_at, 3)
    result.update(recovered_to(found, described))
    return result


def verify_copy(server, database, expected_row_counts=None, assertions=(), restore_seconds=None,
                max_restore_seconds=None, connect_wait=READY_WAIT_SECONDS):
    """The backup_verify checks on a restored copy: row counts, SQL assertions, RTO.  Returns
    the report (``passed``, ``failures``, ``tables``, ``assertions``, ``rto``)."""
    from ansible_collections.runbook.ops.plugins.module_utils import _restore as restores  # pylint: disable=import-outside-toplevel
    from ansible_collections.runbook.ops.plugins.module_utils._errors import DatabaseError  # pylint: disable=import-outside-toplevel

    report = {"database": database, "tables": [], "assertions": [], "failures": []}
    deadline = time.monotonic() + connect_wait
    while True:
        try:
            actual = server.row_counts(database)
            break
        except DatabaseError as exc:
            if time.monotonic() > deadline:
                report["failures"].append("the restored copy could not be queried: %s" % exc)
                report["passed"] = False
                return report
            time.sleep(0.5)
    report["row_counts"] = actual
    answers = restores.ask(lambda query: server.run_scalar(database, query), assertions)
    restores.check_contents(report, expected_row_counts or {}, actual, assertions, answers,
                            source="expected_row_counts")
    report["rto"] = {"max_restore_seconds": max_restore_seconds, "restore_seconds": restore_seconds,
                     "ok": max_restore_seconds is None or (restore_seconds or 0) <= max_restore_seconds}
    if not report["rto"]["ok"]:
        report["failures"].append("restore took %.1fs, over the RTO of %ss" % (restore_seconds, max_restore_seconds))
    report["passed"] = not report["failures"]
    return report


def config_pg_path(text, stanza):
    """pg1-path of ``stanza`` in a pgBackRest configuration file's text (the live cluster)."""
    section = None
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == stanza and line.startswith("pg1-path="):
            return line.split("=", 1)[1].strip()
    return None
