# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of _backup and _restore: option checks, pg_dump selection parsing and its
patterns, the identity of a backup, row-count comparison, assertion values and stale scratch
databases."""

from __future__ import annotations

import datetime
import decimal
import os
import re

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _backup as b
from ansible_collections.runbook.ops.plugins.module_utils import _restore as r
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
NOW = datetime.datetime(2026, 11, 23, 12, 0, 0, tzinfo=datetime.timezone.utc)


def test_collection_version_is_galaxy_yml_version():
    with open(os.path.join(REPO, "galaxy.yml"), encoding="utf-8") as handle:
        version = re.search(r"^version:\s*['\"]?([^'\"\s]+)", handle.read(), re.MULTILINE).group(1)
    assert b.COLLECTION_VERSION == version


# --- options --------------------------------------------------------------------------------------

@pytest.mark.parametrize("compression, level, expected", [("zstd", None, 1), ("gzip", None, 6), ("none", None, 0),
                                                          ("zstd", 1, 1), ("zstd", 22, 22), ("gzip", 9, 9)])
def test_compression_levels_accepted(compression, level, expected):
    assert b.check_compression_level(compression, level) == expected


@pytest.mark.parametrize("compression, level, fragment", [("gzip", 10, "1 to 9"), ("gzip", 0, "1 to 9"),
                                                          ("zstd", 99, "1 to 22"), ("zstd", -1, "1 to 22"),
                                                          ("zstd", 0, "1 to 22"), ("none", 1, "compression: none"),
                                                          ("zstd", True, "1 to 22")])
def test_compression_levels_refused(compression, level, fragment):
    with pytest.raises(ParameterError, match=re.escape(fragment)):
        b.check_compression_level(compression, level)


@pytest.mark.parametrize("jobs", [0, -1, True])
def test_jobs_below_one_refused_with_the_right_message(jobs):
    with pytest.raises(ParameterError, match="at least 1"):
        b.check_jobs(jobs)


def test_jobs_bounded_by_cpus():
    assert b.check_jobs(1) == 1
    with pytest.raises(ParameterError, match="more than this host can use"):
        b.check_jobs(100000)


def test_custom_format_jobs_message():
    with pytest.raises(ParameterError, match="jobs 2 needs format: directory"):
        b.BackupSpec("app", "postgresql", database="app", server=object(), jobs=2)


def test_parse_pg_dump_options():
    args = ["--exclude-table-data=audit.*", "-T", "tmp_*", "-tpublic.a", "--schema", "s", "-N", "x", "--no-owner"]
    parsed, selection = b.parse_pg_dump_options(args)
    assert parsed == args
    assert selection == {"exclude_data": ["audit.*"], "exclude_table": ["tmp_*"], "table": ["public.a"],
                         "schema": ["s"], "exclude_schema": ["x"]}
    assert b.parse_pg_dump_options(["--no-owner"]) == (["--no-owner"], {})


@pytest.mark.parametrize("option", ["--file=/tmp/x", "-f/tmp/x", "-Fc", "--format=d", "-j4", "--jobs=2", "-s",
                                    "--schema-only", "--snapshot=x", "-dother", "--host=h", "-Z9"])
def test_parse_pg_dump_options_refuses_what_the_module_owns(option):
    with pytest.raises(ParameterError, match="may not contain"):
        b.parse_pg_dump_options([option])


def test_parse_pg_dump_options_needs_a_pattern():
    with pytest.raises(ParameterError, match="needs a pattern"):
        b.parse_pg_dump_options(["-T"])


@pytest.mark.parametrize("pattern, schema, name", [
    ("items", None, "^(items)$"),
    ("public.items", "^(public)$", "^(items)$"),
    ("Audit.*", "^(audit)$", "^(.*)$"),
    ("log_?", None, "^(log_.)$"),
    ('"My.Table"', None, r"^(My\.Table)$"),
    ('"a""b"', None, '^(a"b)$'),
    ("x$", None, r"^(x\$)$"),
    ("arr[1]", None, r"^(arr\[1\])$"),
])
def test_name_patterns_as_pg_dump_reads_them(pattern, schema, name):
    assert b.name_pattern_regexes(pattern) == (schema, name)


def test_identity_derives_the_sqlite_name_from_the_path():
    assert b.BackupIdentity("notes", "sqlite", path="/srv/app.v2.db").database == "app.v2"
    assert b.BackupSpec("notes", "sqlite", path="/srv/app.db", compression="none").dump_format == "sqlite"
    with pytest.raises(ParameterError, match="engine volume is backed up by its own module"):
        b.BackupIdentity("notes", "volume", database="pgdata")
    assert b.BackupIdentity("notes", "sqlite", path="/srv/app.db", database="other").database == "other"
    with pytest.raises(ParameterError, match="absolute"):
        b.BackupIdentity("notes", "sqlite", path="app.db")
    with pytest.raises(ParameterError, match="database is required"):
        b.BackupIdentity("notes", "postgresql")


# --- restore comparison ---------------------------------------------------------------------------

def test_row_mismatches():
    assert r._row_mismatches({"a": 1, "b": 2}, {"a": 1, "b": 2, "extra": 5}) == []  # pylint: disable=protected-access
    assert r._row_mismatches({"a": 1, "b": 2}, {"a": 3}) == [  # pylint: disable=protected-access
        "table a has 3 rows, manifest says 1", "table b is missing (manifest: 2 rows)"]
    assert r._row_mismatches({"a": 0}, {"a": 0}) == []  # pylint: disable=protected-access


def test_compare_counts_skips_excluded_data_and_lists_tables_outside_the_backup():
    manifest = {"row_counts": {"public.a": 2}, "data_excluded": ["audit.e"]}
    mismatches, extra = r._compare_counts(manifest, {"public.a": 2, "audit.e": 0, "public.late": 1})  # pylint: disable=protected-access
    assert mismatches == [] and extra == ["public.late"]
    mismatches, extra = r._compare_counts({"row_counts": {"public.a": 2}}, {"public.a": 1})  # pylint: disable=protected-access
    assert mismatches == ["table public.a has 1 rows, manifest says 2"] and extra == []


@pytest.mark.parametrize("actual, expected, result", [
    (3, 3, True), ("3", 3, True), (3.0, 3, True), (decimal.Decimal("2.50"), 2.5, True),
    (3, 4, False), ("abc", "abc", True), ("abc", "abd", False), (None, None, True), (None, 0, False), (0, None, False),
    (True, True, True), ("t", True, True), ("f", False, True), ("true", True, True), ("f", True, False),
    (False, True, False), ("1e3", 1000, True), ("x", 1, False),
])
def test_values_match(actual, expected, result):
    assert r.values_match(actual, expected) is result


# --- scratch databases ----------------------------------------------------------------------------

def test_scratch_name_carries_a_stamp_and_fits():
    name = r.scratch_name("Shop-DB.prod" * 10, NOW)
    assert name.startswith("rbops_verify_shop_db_prod") and "_20261123t120000z_" in name and len(name) <= 63
    assert r.stale_scratch_databases([name], set(), now=NOW + datetime.timedelta(days=2)) == [name]


def test_stale_scratch_databases_only_old_unconnected_and_of_our_naming():
    old = "rbops_verify_app_20261120t120000z_0123abcd"
    young = "rbops_verify_app_20261123t110000z_0123abcd"
    busy = "rbops_verify_app_20261101t000000z_89abcdef"
    legacy = "rbops_verify_app_0123abcd"  # no stamp: its age is unknown, so it is left alone
    foreign = "rbops_verify_app_20261101t000000z_0123abcd_mine"
    bad_date = "rbops_verify_app_20261399t000000z_0123abcd"
    names = [old, young, busy, legacy, foreign, bad_date, "app"]
    assert r.stale_scratch_databases(names, {busy}, now=NOW) == [old]
    assert r.stale_scratch_databases(names, set(), now=NOW, max_age=3600 * 2) == [busy, old]
    assert r.stale_scratch_databases(names, set(), now=NOW, max_age=1800) == [busy, old, young]


def test_derived_names_fit_postgres():
    name = r._derived_name("x" * 63, "_pre_restore_20261123T120000Z")  # pylint: disable=protected-access
    assert len(name.encode()) == 63 and name.endswith("_pre_restore_20261123T120000Z")


# --- the catalog of a real local store -------------------------------------------------------------

def _put_backup(store, service, engine, database, stamp, source=None, with_manifest=True):
    from ansible_collections.runbook.ops.plugins.module_utils import _manifest as m
    backup_id = m.new_backup_id(engine, database, stamp)
    key = "%s/%s.sqlite3" % (service, backup_id)
    store.put_bytes(key, b"data")
    manifest = {"format": m.MANIFEST_FORMAT, "version": 1, "id": backup_id, "service": service, "engine": engine,
                "database": database, "object": key, "size": 4, "sha256": "0" * 64, "compression": "none",
                "dump_format": "sqlite", "started": m.iso(stamp), "finished": m.iso(stamp), "row_counts": {}}
    if source:
        manifest["source"] = source
    if with_manifest:
        store.put_bytes(key + m.MANIFEST_SUFFIX, m.dump_manifest(manifest))
    return backup_id


def test_catalog_matches_exact_names_and_sources(tmp_path):
    from ansible_collections.runbook.ops.plugins.module_utils._errors import RestoreError, VerificationError
    from ansible_collections.runbook.ops.plugins.module_utils._store import LocalStore

    store = LocalStore(str(tmp_path))
    hour = datetime.timedelta(hours=1)
    app_old = _put_backup(store, "notes", "sqlite", "app", NOW - 3 * hour, "/srv/app.db")
    app_new = _put_backup(store, "notes", "sqlite", "app", NOW - 2 * hour, "/srv/app.db")
    app_elsewhere = _put_backup(store, "notes", "sqlite", "app", NOW - 4 * hour, "/other/app.db")
    dotted = _put_backup(store, "notes", "sqlite", "app.old", NOW - hour, "/srv/app.old.db")
    underscored = _put_backup(store, "notes", "sqlite", "app_old", NOW - 5 * hour, "/srv/app_old.db")
    legacy = _put_backup(store, "notes", "sqlite", "app", NOW - 6 * hour)  # a manifest older than "source"

    app = b.BackupIdentity("notes", "sqlite", path="/srv/app.db")
    assert [e.backup_id for e in b.matching_backups(store, app)] == [app_new, app_old, app_elsewhere, legacy]
    assert [e.backup_id for e in b.matching_backups(store, app, "/srv/app.db")] == [app_new, app_old, legacy]
    assert b.resolve_backup(store, app)[0].backup_id == app_new
    old = b.BackupIdentity("notes", "sqlite", path="/srv/app.old.db")
    assert b.resolve_backup(store, old)[0].backup_id == dotted
    assert b.resolve_backup(store, b.BackupIdentity("notes", "sqlite", database="app_old"))[0].backup_id == underscored
    with pytest.raises(VerificationError, match="source_database: app.old"):
        b.resolve_backup(store, app, dotted, VerificationError)
    with pytest.raises(RestoreError, match="no complete sqlite backup of nothing"):
        b.resolve_backup(store, b.BackupIdentity("notes", "sqlite", database="nothing"))
    listed = b.catalog_entries(store, "notes", "sqlite", "app.old")
    assert [e.backup_id for e in listed] == [dotted]

    spec = b.BackupSpec("notes", "sqlite", path="/srv/app.db", compression="none")
    expired = b.expired_backups(store, spec, keep_last=1)
    assert sorted(e.backup_id for e in expired) == sorted([app_old, legacy])
