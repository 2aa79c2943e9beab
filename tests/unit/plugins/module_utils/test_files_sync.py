# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""files_sync's pure logic: filters, the tree scan, the two-pass plan, manifests and the hash cache,
verified downloads, snapshots and retention.  The S3 side runs against moto in
tests/integration/filesync."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _files_sync as fs
from ansible_collections.runbook.ops.plugins.module_utils._errors import IntegrityError, ParameterError, StoreError
from ansible_collections.runbook.ops.plugins.module_utils._files import atomic_write
from ansible_collections.runbook.ops.plugins.module_utils._store import LocalStore, StoredObject

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc)


def sha(data):
    return hashlib.sha256(data).hexdigest()


# --- filters ----------------------------------------------------------------------------------

def test_filter_excludes_files_dirs_and_our_manifest():
    flt = fs.PathFilter(exclude=["*.tmp", "cache/*", "cache"])
    assert flt.wants_file("a/b.png")
    assert not flt.wants_file("a/b.tmp")
    assert not flt.wants_dir("cache")
    assert flt.wants_dir("avatars")
    assert not flt.wants_file(fs.MANIFEST_NAME)
    assert not flt.wants_file("2026-11-30/" + fs.MANIFEST_NAME)


def test_filter_include_limits_files():
    flt = fs.PathFilter(include=["*.pdf"])
    assert flt.wants_file("docs/x.pdf")
    assert not flt.wants_file("docs/x.png")
    assert flt.wants_dir("docs")  # include never prunes directories


@pytest.mark.parametrize("pattern", ["", "/abs/*"])
def test_filter_refuses_bad_patterns(pattern):
    with pytest.raises(ParameterError, match="relative paths"):
        fs.PathFilter(exclude=[pattern])


# --- scanning ---------------------------------------------------------------------------------

def test_scan_reports_symlinks_and_special_files_and_skips_partials(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_bytes(b"1")
    (tmp_path / "a" / ".one.txt.partial-0a1b2c3d").write_bytes(b"half")
    os.chmod(tmp_path / "a" / "one.txt", 0o640)
    (tmp_path / "outside").symlink_to("/etc")
    (tmp_path / "a" / "link.txt").symlink_to(tmp_path / "a" / "one.txt")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "x").write_bytes(b"x")
    files, skipped = fs.scan_tree(str(tmp_path), fs.PathFilter(exclude=["skip"]))
    assert list(files) == ["a/one.txt"]
    assert files["a/one.txt"].mode == 0o640 and files["a/one.txt"].size == 1
    reasons = {item.key: item.reason for item in skipped}
    assert reasons == {"outside": "symlink (not followed)", "a/link.txt": "symlink (not followed)",
                       "fifo": "not a regular file"}


def test_scan_of_a_missing_directory_is_empty(tmp_path):
    assert fs.scan_tree(str(tmp_path / "nothing"), fs.PathFilter()) == ({}, [])


def test_scan_reports_names_s3_cannot_hold(tmp_path):
    os.makedirs(str(tmp_path).encode() + b"/d")
    with open(str(tmp_path).encode() + b"/d/bad-\xff.txt", "wb") as handle:
        handle.write(b"x")
    files, skipped = fs.scan_tree(str(tmp_path), fs.PathFilter())
    assert files == {}
    assert skipped[0].reason.startswith("name is not valid UTF-8")


def test_remote_listing_drops_unsafe_keys_and_folder_markers():
    objects = [StoredObject("a/b.txt", 3, 0.0, "e1"), StoredObject("../evil", 1, 0.0, "e2"),
               StoredObject("dir/", 0, 0.0, "e3"), StoredObject("x//y", 1, 0.0, "e4"),
               StoredObject("x.tmp", 1, 0.0, "e5")]
    files, skipped = fs.remote_files(objects, fs.PathFilter(exclude=["*.tmp"]))
    assert list(files) == ["a/b.txt"]
    assert sorted(item.key for item in skipped) == ["../evil", "x//y"]


# --- planning ---------------------------------------------------------------------------------

def local(key, data, mode=0o644, mtime_ns=1):
    return fs.LocalFile(key, len(data), mtime_ns, mode)


def remote(key, data, mode=0o644, sha256=True):
    return fs.RemoteFile(key, len(data), "etag-" + key, sha(data) if sha256 else None, mode)


def plan(direction, mine, theirs, delete=False):
    first, compare = fs.first_pass(direction, mine, theirs, delete)
    for key in compare:  # what _resolve_hashes does with real files
        mine[key].sha256 = sha(CONTENT[(direction, key)])
    return fs.second_pass(first, direction, mine, theirs, compare)


CONTENT = {}


def sides(direction, local_files, remote_files):
    for key, data in local_files.items():
        CONTENT[(direction, key)] = data[0]
    mine = {key: local(key, data, mode) for key, (data, mode) in local_files.items()}
    theirs = {key: remote(key, data, mode, sha256) for key, (data, mode, sha256) in remote_files.items()}
    return mine, theirs


def test_upload_plan_new_changed_same_size_mode_and_deleted():
    mine, theirs = sides("upload", {
        "new": (b"n", 0o644), "bigger": (b"12345", 0o644), "same-size": (b"abc", 0o644),
        "same": (b"xyz", 0o644), "chmod": (b"m", 0o600), "foreign": (b"f", 0o644),
    }, {
        "bigger": (b"123", 0o644, True), "same-size": (b"abd", 0o644, True), "same": (b"xyz", 0o644, True),
        "chmod": (b"m", 0o644, True), "foreign": (b"f", None, False), "gone": (b"g", 0o644, True),
    })
    result = plan("upload", mine, theirs, delete=False)
    assert result.copy == ["bigger", "chmod", "foreign", "new", "same-size"]
    assert result.reasons == {"new": "new", "bigger": "size differs", "same-size": "content differs",
                              "chmod": "mode differs", "foreign": "no sha256 in the object's metadata"}
    assert result.unchanged == ["same"]
    assert result.delete == []
    assert plan("upload", dict(mine), dict(theirs), delete=True).delete == ["gone"]


def test_download_plan_fixes_modes_without_copying():
    mine, theirs = sides("download", {"a": (b"aaa", 0o644), "b": (b"bbb", 0o600), "extra": (b"e", 0o644)},
                         {"a": (b"aaa", 0o644, True), "b": (b"bbb", 0o640, True), "c": (b"c", 0o644, True)})
    result = plan("download", mine, theirs, delete=True)
    assert result.copy == ["c"]
    assert result.chmod == ["b"]
    assert result.unchanged == ["a"]
    assert result.delete == ["extra"]


# --- manifests, cache, metadata ---------------------------------------------------------------

def test_manifest_round_trip_and_garbage_is_ignored():
    files = {"a": {"size": 1, "sha256": "0" * 64}}
    document = fs.manifest_document(files, "upload", "s3://b/p/", "t0", "t1", {})
    assert fs.load_manifest(json.dumps(document).encode()) == files
    for garbage in (None, b"", b"not json", b"[]", json.dumps({"format_version": 99, "files": files}).encode(),
                    json.dumps({"format_version": 1, "files": []}).encode()):
        assert fs.load_manifest(garbage) == {}


def test_local_cache_needs_same_size_and_mtime():
    entry = fs.LocalFile("a", 3, 111, 0o644)
    assert fs.cached_local_sha(entry, {"a": {"size": 3, "mtime_ns": 111, "sha256": "s"}}) == "s"
    assert fs.cached_local_sha(entry, {"a": {"size": 3, "mtime_ns": 112, "sha256": "s"}}) is None
    assert fs.cached_local_sha(entry, {"a": {"size": 4, "mtime_ns": 111, "sha256": "s"}}) is None
    assert fs.cached_local_sha(entry, {}) is None


def test_remote_manifest_entry_counts_only_for_the_same_etag():
    manifest = {"a": {"size": 3, "etag": "E1", "sha256": "s" * 64, "mode": 0o600, "mtime_ns": 5}}
    entry = fs.RemoteFile("a", 3, "E1")
    assert fs.known_remote(entry, manifest) and entry.mode == 0o600 and entry.mtime_ns == 5
    assert not fs.known_remote(fs.RemoteFile("a", 3, "E2"), manifest)  # rewritten by someone else
    assert not fs.known_remote(fs.RemoteFile("a", 4, "E1"), manifest)


def test_metadata_round_trip_and_malformed_values():
    entry = fs.LocalFile("a", 3, 1700000000123456789, 0o2750, sha(b"abc"))
    metadata = fs.object_metadata(entry)
    assert metadata == {"sha256": sha(b"abc"), "mode": "2750", "mtime-ns": "1700000000123456789"}
    back = fs.apply_metadata(fs.RemoteFile("a", 3, "e"), metadata)
    assert (back.sha256, back.mode, back.mtime_ns) == (sha(b"abc"), 0o2750, 1700000000123456789)
    bad = fs.apply_metadata(fs.RemoteFile("a", 3, "e"), {"sha256": "xyz", "mode": "99", "mtime-ns": "soon"})
    assert (bad.sha256, bad.mode, bad.mtime_ns) == (None, None, None)


# --- verified downloads -------------------------------------------------------------------------

def test_verifying_reader_passes_good_data(tmp_path):
    target = str(tmp_path / "f")
    reader = fs.VerifyingReader(io.BytesIO(b"hello"), "f", 5, sha(b"hello"))
    assert atomic_write(target, reader=reader, mode=0o640, keep_attributes=False) == 5
    assert reader.sha256 == sha(b"hello")
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o640)


@pytest.mark.parametrize("size, expected, message", [
    (5, sha(b"other"), "does not match the sha256"),
    (9, sha(b"hello"), "ended after 5 of 9 bytes"),
])
def test_verifying_reader_leaves_the_old_file_and_no_temp(tmp_path, size, expected, message):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(IntegrityError, match=message):
        atomic_write(str(target), reader=fs.VerifyingReader(io.BytesIO(b"hello"), "f", size, expected),
                     keep_attributes=False)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


# --- snapshots and retention -----------------------------------------------------------------

def test_snapshot_names():
    assert fs.snapshot_time("2026-11-30") == datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc)
    assert fs.snapshot_time("20261130T091500Z") == datetime.datetime(
        2026, 11, 30, 9, 15, tzinfo=datetime.timezone.utc)
    for name in ("2026-13-01", "latest", "2026-11-30x", "2026-11-30\n"):
        assert fs.snapshot_time(name) is None


def test_resolve_snapshot():
    existing = ["2026-11-28", "2026-11-29", "junk", "20261129T120000Z"]
    assert fs.resolve_snapshot(None, "upload", existing, NOW) is None
    assert fs.resolve_snapshot("today", "upload", existing, NOW) == "2026-11-30"
    assert fs.resolve_snapshot("latest", "download", existing, NOW) == "20261129T120000Z"
    assert fs.resolve_snapshot("2026-11-28", "download", existing, NOW) == "2026-11-28"
    with pytest.raises(ParameterError, match="for uploads"):
        fs.resolve_snapshot("today", "download", existing, NOW)
    with pytest.raises(ParameterError, match="for downloads"):
        fs.resolve_snapshot("latest", "upload", existing, NOW)
    with pytest.raises(ParameterError, match="must be 'today', 'latest'"):
        fs.resolve_snapshot("../x", "upload", existing, NOW)
    with pytest.raises(StoreError, match="no snapshot"):
        fs.resolve_snapshot("latest", "download", ["junk"], NOW)


def test_retention_keeps_young_newest_and_current():
    existing = ["2026-08-01", "2026-08-31", "2026-09-02", "2026-11-30", "other"]
    assert fs.expired_snapshots(existing, 90, NOW, keep={"2026-11-30"}) == ["2026-08-01", "2026-08-31"]
    assert fs.expired_snapshots(existing, None, NOW) == []
    assert fs.expired_snapshots(["2026-01-01"], 1, NOW) == []  # the only (newest) one stays


# --- parameters --------------------------------------------------------------------------------

class FakeS3:
    kind = "s3"
    partial_max_age = 86400


@pytest.mark.parametrize("kwargs, message", [
    ({"direction": "both"}, "direction must be upload or download"),
    ({"root": "relative"}, "absolute directory path"),
    ({"workers": 0}, "workers must be between 1 and 64"),
    ({"workers": 65}, "workers must be between"),
    ({"retention_days": 30}, "retention_days applies to uploads into snapshots"),
    ({"retention_days": 0, "snapshot": "today"}, "at least 1"),
])
def test_parameters_are_checked(kwargs, message):
    options = dict({"store": FakeS3(), "root": "/srv/uploads", "direction": "upload"}, **kwargs)
    with pytest.raises(ParameterError, match=message):
        fs.FilesSync(**options)


def test_a_local_store_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="needs an s3 store"):
        fs.FilesSync(LocalStore(str(tmp_path)), str(tmp_path), "upload")


def test_manifest_finished():
    document = fs.manifest_document({}, "upload", "s3://b/p/", "2026-11-30T03:00:00Z", "2026-11-30T03:00:12Z", {})
    assert fs.manifest_finished(json.dumps(document).encode()) == datetime.datetime(
        2026, 11, 30, 3, 0, 12, tzinfo=datetime.timezone.utc)
    for garbage in (None, b"{}", b"nope", json.dumps({"finished": "yesterday"}).encode()):
        assert fs.manifest_finished(garbage) is None


# --- request counting: what the manifests save ---------------------------------------------------

class CountingS3:
    """An in-memory stand-in with the S3Store calls FilesSync makes, counting them (the real store runs in
    tests/integration/filesync against moto)."""

    kind = "s3"
    partial_max_age = 86400

    def __init__(self):
        self.objects = {}  # key -> (bytes, metadata, etag)
        self.calls = {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def check_access(self, write):
        self._count("check_access")

    def folders(self, prefix):
        return sorted({key.split("/")[0] for key in self.objects if "/" in key})

    def list(self, prefix):
        self._count("list")
        folder = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        return [StoredObject(key, len(data), 0.0, etag) for key, (data, _meta, etag) in sorted(self.objects.items())
                if key.startswith(folder)]

    def read_bytes(self, key):
        return self.objects[key][0]

    def put_bytes(self, key, data):
        self._count("put_bytes")
        self.objects[key] = (data, {}, sha(data)[:32])

    def head(self, key):
        self._count("head")
        data, metadata, etag = self.objects[key]
        return {"size": len(data), "etag": etag, "metadata": metadata}

    def upload(self, key, reader, metadata=None):
        self._count("upload")
        chunks = []
        while True:
            chunk = reader.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        self.objects[key] = (data, dict(metadata or {}), sha(data)[:32])
        return len(data), self.objects[key][2]

    def location(self, key):
        return "s3://bucket/" + key


def test_unchanged_objects_cost_no_request_and_a_foreign_rewrite_is_noticed(tmp_path):
    root = tmp_path / "uploads"
    root.mkdir()
    for number in range(20):
        (root / ("f%02d" % number)).write_bytes(b"%02d" % number)
    store = CountingS3()
    first = fs.FilesSync(store, str(root), "upload").run()
    assert first["counts"]["copied"] == 20 and store.calls["upload"] == 20
    store.calls.clear()
    second = fs.FilesSync(store, str(root), "upload").run()
    assert second["counts"]["unchanged"] == 20 and not second["changed"]
    assert "head" not in store.calls and "upload" not in store.calls  # the manifest answered for every object
    # Another tool rewrites one object with the same size: new ETag, no sha256 of ours -> asked, then copied.
    store.objects["f03"] = (b"xx", {}, "foreign")
    store.calls.clear()
    third = fs.FilesSync(store, str(root), "upload").run()
    assert store.calls["head"] == 1 and third["copied"] == [{"path": "f03", "reason": "no sha256 in the object's metadata"}]
    assert store.objects["f03"][0] == b"03"


def test_local_manifest_spares_reading_unchanged_files(tmp_path, monkeypatch):
    root = tmp_path / "uploads"
    root.mkdir()
    (root / "a").write_bytes(b"aaa")
    store = CountingS3()
    fs.FilesSync(store, str(root), "upload").run()
    assert stat_mode(root / fs.MANIFEST_NAME) == 0o600
    hashed = []
    monkeypatch.setattr(fs, "file_sha256", lambda path: hashed.append(path) or sha(open(path, "rb").read()))
    fs.FilesSync(store, str(root), "upload").run()
    assert hashed == []
    os.utime(root / "a", ns=(1, 1))  # touched: same size, new mtime -> read again, still unchanged
    result = fs.FilesSync(store, str(root), "upload").run()
    assert hashed == [str(root / "a")] and result["counts"]["unchanged"] == 1


def stat_mode(path):
    return os.stat(path).st_mode & 0o777
