# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup ids, manifests, the catalog of a store, retention and durations."""

from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _manifest as m
from ansible_collections.runbook.ops.plugins.module_utils._errors import IntegrityError, ParameterError
from ansible_collections.runbook.ops.plugins.module_utils._store import StoredObject

NOW = datetime.datetime(2026, 11, 23, 12, 0, 0, tzinfo=datetime.timezone.utc)


def stamp(**ago):
    return (NOW - datetime.timedelta(**ago)).strftime(m.STAMP_FORMAT)


# --- ids -----------------------------------------------------------------------------------------

def test_new_backup_id_round_trips_and_is_unique():
    first = m.new_backup_id("postgresql", "app-db.prod", NOW)
    second = m.new_backup_id("postgresql", "app-db.prod", NOW)
    assert first != second
    label = m.database_label("app-db.prod")
    assert first.startswith("postgresql-%s-20261123T120000Z-" % label)
    engine, parsed_label, when = m.parse_backup_id(first)
    assert (engine, parsed_label, when) == ("postgresql", label, NOW)


def test_ids_sort_by_time():
    ids = [m.new_backup_id("sqlite", "app", NOW - datetime.timedelta(days=d)) for d in (0, 3, 1)]
    assert sorted(ids) == [ids[1], ids[2], ids[0]]


@pytest.mark.parametrize("bad", ["", None, "foo", "../../etc/passwd", "mysql-app-20261123T120000Z-abcdef",
                                 "sqlite-app-20261123T120000Z-abcdeg", "sqlite-app-20261123T120000Z-abcdef/..",
                                 "sqlite-a-b-20261123T120000Z-abcdef", "sqlite-app-2026112T120000Z-abcdef",
                                 "sqlite-app-20261123T120000Z-abcdef\n", "sqlite-app-20261399T120000Z-abcdef"])
def test_parse_backup_id_rejects(bad):
    with pytest.raises(ParameterError, match="malformed backup id"):
        m.parse_backup_id(bad)


def test_database_label_is_safe():
    assert m.database_label("my-app.db").startswith("my_app_db~")
    assert m.database_label("x" * 63) == "x" * 63
    assert m.database_label("x" * 100).startswith("x" * 40 + "~")
    assert m.legacy_label("") == "db"
    for name in ("../../etc", "a/b", "ü", "a b", "a-b"):
        label = m.database_label(name)
        assert "/" not in label and "-" not in label and "." not in label
        m.parse_backup_id("sqlite-%s-20261123T120000Z-abcdef" % label)


@pytest.mark.parametrize("first, second", [("app.db", "app_db"), ("app.old", "app_old"), ("qa_lbl-x", "qa_lbl_x"),
                                           ("qa_lbl-x", "qa_lbl.x"), ("x" * 64, "x" * 65), ("a.b", "a-b")])
def test_database_label_is_injective(first, second):
    assert m.database_label(first) != m.database_label(second)


def test_plain_names_keep_their_label_so_old_backups_stay_found():
    assert m.database_label("app") == "app" == m.legacy_label("app")
    assert m.candidate_labels("qa_lbl-x") == {m.database_label("qa_lbl-x"), "qa_lbl_x"}
    assert m.database_label(m.database_label("qa-x")) == m.database_label("qa-x")


@pytest.mark.parametrize("path, name", [("/srv/app.db", "app"), ("/srv/app.old.db", "app.old"),
                                        ("/srv/app.v2.db", "app.v2"), ("/srv/app", "app"), ("/srv/.hidden", ".hidden"),
                                        ("relative/x.sqlite3", "x")])
def test_sqlite_database_name(path, name):
    assert m.sqlite_database_name(path) == name


def test_table_keys_are_injective_and_plain_names_unchanged():
    assert m.table_key("public", "items") == "public.items"
    assert m.table_key("x.y", "z") == '"x.y".z'
    assert m.table_key("x", "y.z") == 'x."y.z"'
    assert m.table_key("Sales", 'a"b') == '"Sales"."a""b"'
    assert len({m.table_key("x.y", "z"), m.table_key("x", "y.z")}) == 2


def test_manifest_matches_exact_engine_database_and_source():
    manifest = {"engine": "sqlite", "database": "app", "source": "/srv/app.db"}
    assert m.manifest_matches(manifest, "sqlite", "app")
    assert m.manifest_matches(manifest, "sqlite", "app", "/srv/app.db")
    assert not m.manifest_matches(manifest, "sqlite", "app", "/other/app.db")
    assert not m.manifest_matches(manifest, "sqlite", "app.old")
    assert not m.manifest_matches(manifest, "postgresql", "app")
    assert m.manifest_matches({"engine": "sqlite", "database": "app"}, "sqlite", "app", "/srv/app.db")


@pytest.mark.parametrize("service", ["app", "s3desk", "a.b-c_d", "A1"])
def test_check_service_accepts(service):
    assert m.check_service(service) == service


@pytest.mark.parametrize("service", ["", None, "../x", "a/b", ".hidden", "-x", "x" * 129, "sp ace", "app\n"])
def test_check_service_rejects(service):
    with pytest.raises(ParameterError, match="service must be"):
        m.check_service(service)


def test_object_names():
    assert m.object_name("id", "custom", ".zst") == "id.dump.zst"
    assert m.object_name("id", "directory", ".gz") == "id.tar.gz"
    assert m.object_name("id", "sqlite", "") == "id.sqlite3"


# --- durations -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value,seconds", [(None, None), ("", None), (90, 90.0), (1.5, 1.5), ("90", 90.0),
                                           ("2.5", 2.5), ("90s", 90.0), ("30m", 1800.0), ("1h", 3600.0),
                                           ("26h", 93600.0), ("1d12h", 129600.0), ("2w", 1209600.0),
                                           (" 1H 30M ", 5400.0), ("0s", 0.0)])
def test_parse_duration(value, seconds):
    assert m.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "1 fortnight", "1y", "h", "1h and more", "1h-", "--1h"])
def test_parse_duration_rejects(value):
    with pytest.raises(ParameterError, match="max_age .* is not a duration"):
        m.parse_duration(value, "max_age")


def test_parse_duration_rejects_negative_numbers():
    with pytest.raises(ParameterError, match="must not be negative"):
        m.parse_duration(-5, "max_age")


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (59, "59s"), (60, "1m"), (3600, "1h"), (5400, "1h30m"),
                                          (90061, "1d1h1m1s")])
def test_human_duration(seconds, text):
    assert m.human_duration(seconds) == text


# --- manifests -----------------------------------------------------------------------------------

def good_manifest(**changes):
    manifest = {field: "x" for field in m.REQUIRED_FIELDS}
    manifest.update(format=m.MANIFEST_FORMAT, version=m.MANIFEST_VERSION, size=1, row_counts={})
    manifest.update(changes)
    return manifest


def test_load_manifest_round_trip():
    manifest = good_manifest(row_counts={"public.items": 3})
    assert m.load_manifest(m.dump_manifest(manifest), "x.json") == manifest


@pytest.mark.parametrize("data,words", [
    (b"", "not valid JSON"),
    (b'{"format": ', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'"text"', "not a JSON object"),
    (json.dumps({"format": m.MANIFEST_FORMAT}).encode(), "lacks version, id"),
    (json.dumps(good_manifest(format="other/format")).encode(), "does not read"),
    (json.dumps(good_manifest(version=m.MANIFEST_VERSION + 1)).encode(), "does not read"),
])
def test_load_manifest_errors(data, words):
    with pytest.raises(IntegrityError, match=words) as info:
        m.load_manifest(data, "store/app/x.manifest.json")
    assert "store/app/x.manifest.json" in str(info.value)


# --- catalog and retention -----------------------------------------------------------------------

def listing(*backups, service="app"):
    """StoredObjects for (id, complete) pairs, plus noise that is not a backup."""
    objects = [StoredObject(service + "/README.txt", 5, 1.0), StoredObject(service + "/notes.manifest.json", 5, 1.0)]
    for number, (backup_id, complete) in enumerate(backups):
        objects.append(StoredObject("%s/%s.dump.zst" % (service, backup_id), 100 + number, float(number)))
        if complete:
            objects.append(StoredObject("%s/%s.dump.zst.manifest.json" % (service, backup_id), 10, number + 0.5))
    return objects


def bid(label="app", engine="postgresql", suffix="aaaaaa", **ago):
    return "%s-%s-%s-%s" % (engine, label, stamp(**ago), suffix)


def test_catalog_groups_objects_newest_first_and_filters():
    newest, middle, oldest = bid(hours=1), bid(days=1), bid(days=5)
    other_db, other_engine = bid("other", hours=2), bid(engine="sqlite", hours=3)
    entries = m.catalog(listing((oldest, True), (newest, False), (middle, True), (other_db, True),
                                (other_engine, True)), "app", "postgresql", "app")
    assert [e.backup_id for e in entries] == [newest, middle, oldest]
    assert [e.complete for e in entries] == [False, True, True]
    assert entries[1].data_key == "app/%s.dump.zst" % middle and entries[1].data_size == 102
    assert entries[1].manifest_key == entries[1].data_key + m.MANIFEST_SUFFIX
    assert len(m.catalog(listing((oldest, True), (other_db, True), (other_engine, True)), "app")) == 3
    # A file that only looks like a backup (impossible date) is ignored, not an error.
    assert m.catalog([StoredObject("app/sqlite-app-20261399T120000Z-abcdef.sqlite3", 1, 1.0)], "app") == []


def test_catalog_manifest_without_data_is_incomplete():
    backup_id = bid(hours=1)
    entries = m.catalog([StoredObject("app/%s.dump.zst.manifest.json" % backup_id, 10, 1.0)], "app")
    assert len(entries) == 1 and not entries[0].complete and entries[0].data_key is None


def test_catalog_same_second_orders_by_modification():
    first, second = bid(suffix="ffffff", hours=1), bid(suffix="000000", hours=1)
    entries = m.catalog(listing((first, True), (second, True)), "app")
    assert [e.backup_id for e in entries] == [second, first]


def test_describe():
    entry = m.catalog(listing((bid(hours=2), True)), "app")[0]
    described = entry.describe(NOW)
    assert described["age"] == "2h" and described["age_seconds"] == 7200 and described["complete"] is True
    assert described["created"] == "2026-11-23T10:00:00.000000Z"


def test_find_entry_latest_complete_or_by_id():
    incomplete, complete = bid(hours=1), bid(days=1)
    entries = m.catalog(listing((incomplete, False), (complete, True)), "app")
    assert m.find_entry(entries).backup_id == complete
    assert m.find_entry(entries, incomplete).backup_id == incomplete
    assert m.find_entry(entries, bid(days=9)) is None
    assert m.find_entry(m.catalog(listing((incomplete, False)), "app")) is None
    with pytest.raises(ParameterError):
        m.find_entry(entries, "../../etc/passwd")


def expired_ids(entries, **kwargs):
    return [e.backup_id for e in m.select_expired(entries, now=NOW, **kwargs)]


def test_select_expired():
    ids = [bid(hours=h) for h in (1, 30, 72, 240)]
    unfinished = bid(suffix="bbbbbb", days=30)
    entries = m.catalog(listing(*[(i, True) for i in ids], (unfinished, False)), "app")
    assert expired_ids(entries) == []
    assert expired_ids(entries, keep_days=2) == ids[2:]
    assert expired_ids(entries, keep_last=1) == ids[1:]
    assert expired_ids(entries, keep_last=3) == ids[3:]
    assert expired_ids(entries, keep_last=1, keep_days=2) == ids[2:]  # either rule keeps
    assert expired_ids(entries, keep_last=3, keep_days=2) == ids[3:]
    assert expired_ids(entries, keep_days=0) == ids
    assert expired_ids(entries, keep_days=0, protect={ids[0]}) == ids[1:]
    assert unfinished not in expired_ids(entries, keep_days=0, keep_last=0)


def test_timestamps_round_trip():
    assert m.parse_iso(m.iso(NOW)) == NOW
