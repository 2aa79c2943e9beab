# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which backup is whose: databases whose names differ only in punctuation never share a catalog
(retention, latest, restore, verify), a backup of another database is refused unless named with
source_database, and list_backups.yml finds SQLite files with several dots in their name."""

from __future__ import annotations

import os
import uuid

from backup_testlib import failed, make_sqlite_sample, manifest_of, ok, pg_counts, pg_params, sqlite_counts, task
from harness import run_playbook

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_sqlite_names_differing_in_punctuation_keep_apart(local_store, tmp_path, run_tasks):
    data = tmp_path / "data"
    data.mkdir()
    app, old = str(data / "app.db"), str(data / "app.old.db")
    app_counts = make_sqlite_sample(app, rows=30)
    old_counts = make_sqlite_sample(old, rows=9)
    common = {"service": "notes", "engine": "sqlite", "store": local_store.params}
    run = run_tasks([
        task("backup app", "db_backup", dict(common, path=app, keep_last=1)),
        task("backup app.old", "db_backup", dict(common, path=old, keep_last=1)),
        task("info app", "backup_info", dict(common, path=app)),
        task("info app.old", "backup_info", dict(common, path=old)),
    ])
    app_backup, old_backup = ok(run, "backup app")["backup"], ok(run, "backup app.old")["backup"]
    assert ok(run, "backup app.old")["deleted"] == [], "retention of app.old.db deleted app.db's backup"
    assert app_backup["id"] != old_backup["id"]
    assert manifest_of(local_store, app_backup)["database"] == "app"
    assert manifest_of(local_store, old_backup)["database"] == "app.old"
    assert ok(run, "info app")["latest"]["id"] == app_backup["id"]
    assert ok(run, "info app.old")["latest"]["id"] == old_backup["id"]
    assert ok(run, "info app")["count"]["complete"] == 1

    # Break app.db; a forced restore of the latest backup must load app.db's rows, never app.old.db's.
    make_sqlite_sample(str(data / "scratch.db"), rows=1)
    os.replace(str(data / "scratch.db"), app)
    restore = {"service": "notes", "engine": "sqlite", "path": app, "force": True, "store": local_store.params}
    run = run_tasks([
        task("restore latest", "db_restore", restore),
        task("restore other id", "db_restore", dict(restore, backup_id=old_backup["id"])),
        task("verify other id", "backup_verify", {"service": "notes", "engine": "sqlite", "path": app,
                                                  "backup_id": old_backup["id"], "store": local_store.params}),
    ])
    assert ok(run, "restore latest")["backup"]["id"] == app_backup["id"]
    assert sqlite_counts(app) == app_counts
    failed(run, "restore other id", "database 'app.old'", "source_database")
    failed(run, "verify other id", "database 'app.old'", "source_database")
    assert sqlite_counts(app) == app_counts

    # Named explicitly, the other database's backup is used.
    run = run_tasks([task("restore with source_database", "db_restore",
                          dict(restore, backup_id=old_backup["id"], source_database="app.old"))])
    ok(run, "restore with source_database")
    assert sqlite_counts(app) == old_counts


def test_postgresql_names_differing_in_punctuation_keep_apart(local_store, pg_conn_params, pg_connect, run_tasks):
    base = "rbops_t_" + uuid.uuid4().hex[:8]
    dashed, underscored = base + "-x", base + "_x"
    admin = pg_connect("postgres")
    try:
        with admin.cursor() as cur:
            for name, rows in ((dashed, 3), (underscored, 7)):
                cur.execute('CREATE DATABASE "%s"' % name)
                with pg_connect(name).cursor() as db:
                    db.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, %s)", (rows,))
        common = {"service": "qa", "store": local_store.params}
        run = run_tasks([
            task("backup dashed", "db_backup", pg_params(pg_conn_params, dashed, keep_last=1, **common)),
            task("backup underscored", "db_backup", pg_params(pg_conn_params, underscored, keep_last=1, **common)),
            task("verify dashed", "backup_verify", pg_params(pg_conn_params, dashed, **common)),
            task("verify underscored", "backup_verify", pg_params(pg_conn_params, underscored, **common)),
        ])
        dashed_backup = ok(run, "backup dashed")["backup"]
        underscored_backup = ok(run, "backup underscored")["backup"]
        assert ok(run, "backup underscored")["deleted"] == []
        assert dashed_backup["row_counts"] == {"public.t": 3} and underscored_backup["row_counts"] == {"public.t": 7}
        assert ok(run, "verify dashed")["report"]["backup_id"] == dashed_backup["id"]
        assert ok(run, "verify underscored")["report"]["backup_id"] == underscored_backup["id"]
        assert {key for key in local_store.keys("qa") if key.endswith(".manifest.json")} == {
            dashed_backup["object"] + ".manifest.json", underscored_backup["object"] + ".manifest.json"}

        # A restore into the dashed database by id of the other one is refused and changes nothing.
        run = run_tasks([task("restore other id", "db_restore", pg_params(
            pg_conn_params, dashed, force=True, backup_id=underscored_backup["id"], **common))])
        failed(run, "restore other id", "database %r" % underscored, "source_database")
        assert pg_counts(pg_connect(dashed)) == {"public.t": 3}
    finally:
        with admin.cursor() as cur:
            for name in (dashed, underscored):
                cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def test_list_backups_playbook_finds_a_file_with_several_dots(local_store, tmp_path, run_tasks):
    path = str(tmp_path / "app.v2.db")
    make_sqlite_sample(path, rows=5)
    run = run_tasks([task("backup", "db_backup", {"service": "notes", "engine": "sqlite", "path": path,
                                                  "store": local_store.params})])
    backup = ok(run, "backup")["backup"]
    listing = run_playbook(tmp_path, os.path.join(REPO, "playbooks", "list_backups.yml"), extra_vars={
        "target_hosts": "localhost", "backup_service": "notes", "backup_engine": "sqlite", "backup_path": path,
        "backup_store": local_store.params, "backup_max_age": "1h"})
    assert listing.rc == 0, listing.output[-3000:]
    assert "latest of 1 complete sqlite backup of notes database app.v2 is %s" % backup["id"] in listing.output


BLOCK_ZSTANDARD = '''
import sys


class _BlockZstandard:
    """The test's stand-in for a host without the zstandard library."""

    def find_spec(self, name, path=None, target=None):
        if name == "zstandard" or name.startswith("zstandard."):
            raise ImportError("No module named 'zstandard' (blocked by the test)")
        return None


sys.meta_path.insert(0, _BlockZstandard())
'''


def test_without_zstandard_restore_and_verify_say_missing_required_lib(local_store, tmp_path, run_tasks):
    path = str(tmp_path / "app.db")
    make_sqlite_sample(path, rows=4)
    common = {"service": "notes", "engine": "sqlite", "path": path, "store": local_store.params}
    ok(run_tasks([task("backup", "db_backup", common)]), "backup")
    blocker = tmp_path / "no_zstandard"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_ZSTANDARD)
    before = sqlite_counts(path)
    run = run_tasks([
        task("restore", "db_restore", dict(common, force=True)),
        task("restore (check)", "db_restore", dict(common, force=True), check=True),
        task("verify", "backup_verify", common),
        task("backup", "db_backup", common),
    ], env={"PYTHONPATH": str(blocker)})
    for name in ("restore", "restore (check)", "verify", "backup"):
        msg = failed(run, name, "zstandard")
        assert "Failed to import the required Python library (zstandard)" in msg, msg
        assert "AttributeError" not in run.output
    assert sqlite_counts(path) == before
