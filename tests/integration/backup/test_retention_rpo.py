# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention deletes only older complete backups of the same service and database; backup_info
enforces the RPO on the newest complete backup."""

from __future__ import annotations

import datetime

from backup_testlib import clone_backup, failed, make_sqlite_sample, ok, task

MANIFEST = ".manifest.json"


def ago(**delta):
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(**delta)


def test_retention(store, tmp_path, run_tasks):
    app, other = str(tmp_path / "app.db"), str(tmp_path / "other.db")
    make_sqlite_sample(app)
    make_sqlite_sample(other, rows=10)
    common = {"service": "notes", "engine": "sqlite", "path": app, "store": store.params}
    run = run_tasks([
        task("first", "db_backup", common),
        task("other database", "db_backup", dict(common, path=other)),
        task("other service", "db_backup", dict(common, service="elsewhere")),
    ])
    first = ok(run, "first")["backup"]
    # Older backups, written as db_backup would have written them back then.
    hour, day30, day3, day10 = (clone_backup(store, first, stamp) for stamp in
                                (ago(hours=1), ago(hours=30), ago(days=3), ago(days=10)))
    unfinished = clone_backup(store, first, ago(days=20), with_manifest=False)
    old_other_db = clone_backup(store, ok(run, "other database")["backup"], ago(days=40))
    old_other_service = clone_backup(store, ok(run, "other service")["backup"], ago(days=40))
    untouchable = [unfinished["object"]] + [b["object"] + suffix for b in (old_other_db, old_other_service)
                                            for suffix in ("", MANIFEST)]

    run = run_tasks([
        task("by age (check)", "db_backup", dict(common, keep_days=2), check=True),
        task("by age", "db_backup", dict(common, keep_days=2)),
    ])
    would, did = ok(run, "by age (check)"), ok(run, "by age")
    assert sorted(would["deleted"]) == sorted(did["deleted"]) == sorted([day3["id"], day10["id"]])
    keys = store.keys()
    assert not any(would["backup"]["id"] in key for key in keys), "check mode wrote a backup"
    for backup in (did["backup"], first, hour, day30):
        assert backup["object"] in keys and backup["object"] + MANIFEST in keys, backup["id"]
    for backup in (day3, day10):
        assert not any(backup["id"] in key for key in keys), "%s should have been deleted" % backup["id"]
    assert set(untouchable) <= set(keys), "retention touched an incomplete backup or another database/service"

    # The new backup is never deleted, even when a newer-stamped one fills keep_last.
    future = clone_backup(store, first, ago(days=-1))
    run = run_tasks([
        task("by count", "db_backup", dict(common, keep_last=1)),
        task("info", "backup_info", {"service": "notes", "engine": "sqlite", "database": "app", "store": store.params}),
    ])
    newest = ok(run, "by count")
    assert sorted(newest["deleted"]) == sorted(b["id"] for b in (did["backup"], first, hour, day30))
    info = ok(run, "info")
    assert [b["id"] for b in info["backups"] if b["complete"]] == [future["id"], newest["backup"]["id"]]
    assert [b["id"] for b in info["backups"] if not b["complete"]] == [unfinished["id"]]
    assert set(untouchable) <= set(store.keys())


def test_rpo(local_store, tmp_path, run_tasks):
    app = str(tmp_path / "app.db")
    make_sqlite_sample(app)
    common = {"service": "notes", "engine": "sqlite", "path": app, "store": local_store.params}
    info = {"service": "notes", "engine": "sqlite", "database": "app", "store": local_store.params, "max_age": "1h"}
    run = run_tasks([task("no backups", "backup_info", info), task("backup", "db_backup", common)])
    failed(run, "no backups", "RPO missed", "no complete sqlite backups of notes")
    assert run.task("no backups")["result"]["rpo_ok"] is False
    fresh = ok(run, "backup")["backup"]

    # Only a 3-hour-old complete backup, and a newer one that never got its manifest.
    old = clone_backup(local_store, fresh, ago(hours=3))
    unfinished = clone_backup(local_store, fresh, ago(minutes=1), with_manifest=False)
    for suffix in ("", MANIFEST):
        local_store.delete(fresh["object"] + suffix)
    run = run_tasks([
        task("rpo missed", "backup_info", info),
        task("rpo warn", "backup_info", dict(info, max_age_action="warn")),
        task("rpo met", "backup_info", dict(info, max_age="4h")),
        task("verify rpo", "backup_verify", dict(common, max_age="1h")),
        task("verify rpo met", "backup_verify", dict(common, max_age="1d")),
    ])
    msg = failed(run, "rpo missed", "RPO missed", old["id"], "3h")
    assert unfinished["id"] not in msg
    warned = ok(run, "rpo warn")
    assert warned["rpo_ok"] is False and any("RPO missed" in w for w in warned.get("warnings", []))
    met = ok(run, "rpo met")
    assert met["rpo_ok"] is True and met["latest"]["id"] == old["id"]
    assert 3 * 3600 - 60 <= met["latest_age_seconds"] <= 3 * 3600 + 600
    assert met["backups"][0]["id"] == unfinished["id"] and met["backups"][0]["complete"] is False
    failed(run, "verify rpo", "RPO", old["id"])
    report = ok(run, "verify rpo met")["report"]
    assert report["backup_id"] == old["id"] and report["rpo"]["ok"] is True
