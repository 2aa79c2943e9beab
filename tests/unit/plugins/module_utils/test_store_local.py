# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LocalStore: atomic, private writes; listings that never show a half-written object."""

from __future__ import annotations

import io
import os
import stat

import pytest

from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, StoreError
from ansible_collections.runbook.ops.plugins.module_utils._store import LocalStore, check_key, store_from_params
from ansible_collections.runbook.ops.plugins.module_utils._streams import CHUNK_SIZE


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class FailingReader:
    """Yields some chunks, then raises (a dump that dies half-way)."""

    def __init__(self, chunks=3, error=RuntimeError("the dump died")):
        self.left = chunks
        self.error = error

    def read(self, size=CHUNK_SIZE):
        if self.left == 0:
            raise self.error
        self.left -= 1
        return b"x" * size


def test_put_stream_writes_private_files_and_directories(tmp_path):
    root = tmp_path / "var" / "backups" / "runbook"  # none of these exist yet
    store = LocalStore(str(root))
    data = os.urandom(2 * CHUNK_SIZE + 5)
    assert store.put_stream("app/x.dump.zst", io.BytesIO(data)) == len(data)
    assert store.read_bytes("app/x.dump.zst") == data
    assert mode(root / "app" / "x.dump.zst") == 0o600
    for directory in (tmp_path / "var", tmp_path / "var" / "backups", root, root / "app"):
        assert mode(directory) == 0o700, directory
    assert store.location("app/x.dump.zst") == str(root / "app" / "x.dump.zst")


def test_existing_directories_keep_their_mode(tmp_path):
    tmp_path.chmod(0o755)
    LocalStore(str(tmp_path)).put_bytes("app/m.json", b"{}")
    assert mode(tmp_path) == 0o755 and mode(tmp_path / "app") == 0o700


def test_put_bytes_replaces_atomically(tmp_path):
    store = LocalStore(str(tmp_path))
    store.put_bytes("app/m.json", b"old")
    inode = os.stat(tmp_path / "app" / "m.json").st_ino
    store.put_bytes("app/m.json", b"new")
    assert store.read_bytes("app/m.json") == b"new"
    assert os.stat(tmp_path / "app" / "m.json").st_ino != inode, "replaced by rename, not rewritten in place"
    assert os.listdir(tmp_path / "app") == ["m.json"]


def test_failing_reader_leaves_nothing(tmp_path):
    store = LocalStore(str(tmp_path))
    with pytest.raises(RuntimeError, match="the dump died"):
        store.put_stream("app/x.dump.zst", FailingReader())
    assert os.listdir(tmp_path / "app") == []
    assert store.list("app/") == []


def test_failing_reader_keeps_an_older_object(tmp_path):
    store = LocalStore(str(tmp_path))
    store.put_bytes("app/x.dump.zst", b"complete")
    with pytest.raises(KeyboardInterrupt):
        store.put_stream("app/x.dump.zst", FailingReader(error=KeyboardInterrupt()))
    assert store.read_bytes("app/x.dump.zst") == b"complete"
    assert os.listdir(tmp_path / "app") == ["x.dump.zst"]


def test_listing_ignores_hidden_partial_files_and_folders(tmp_path):
    store = LocalStore(str(tmp_path))
    store.put_bytes("app/a.dump", b"12345")
    (tmp_path / "app" / ".a.dump.partial-1a2b3c4d").write_bytes(b"half")
    (tmp_path / "app" / "sub").mkdir()
    listed = store.list("app/")
    assert [(o.key, o.size) for o in listed] == [("app/a.dump", 5)]
    assert listed[0].modified == pytest.approx(os.stat(tmp_path / "app" / "a.dump").st_mtime)
    assert store.list("missing/") == []


def test_delete_and_missing_objects(tmp_path):
    store = LocalStore(str(tmp_path))
    store.put_bytes("app/a.dump", b"1")
    store.delete("app/a.dump")
    store.delete("app/a.dump")  # already gone: not an error (a concurrent retention run)
    with pytest.raises(StoreError, match="does not exist"):
        store.open("app/a.dump")


@pytest.mark.parametrize("key", ["../x", "app/../../x", "/etc/passwd", "app//x", "app/./x", ""])
def test_keys_cannot_escape_the_store(tmp_path, key):
    with pytest.raises(ParameterError, match="invalid store key"):
        LocalStore(str(tmp_path)).put_bytes(key, b"x")
    with pytest.raises(ParameterError):
        check_key(key)


@pytest.mark.parametrize("path", ["", None, "backups", "./backups", "~backups"])
def test_store_path_must_be_absolute(path):
    with pytest.raises(ParameterError, match="absolute"):
        LocalStore(path)


def test_check_access(tmp_path):
    LocalStore(str(tmp_path / "not" / "yet")).check_access(write=True)  # creatable below tmp_path
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        LocalStore(str(tmp_path / "file" / "below")).check_access(write=True)


def test_store_from_params():
    assert isinstance(store_from_params({"type": "local", "path": "/srv/backups"}), LocalStore)
    with pytest.raises(ParameterError, match="local' or 's3"):
        store_from_params({"type": "ftp"})
    with pytest.raises(ParameterError, match="bucket"):
        store_from_params({"type": "s3", "bucket": None})


def test_put_stream_sweeps_stale_partials_of_its_folder(tmp_path):
    store = LocalStore(str(tmp_path / "store"), partial_max_age=3600)
    store.put_bytes("svc/first", b"1")
    folder = tmp_path / "store" / "svc"
    stale, young = folder / ".old.zst.partial-0badf00d", folder / ".new.zst.partial-0000beef"
    for path in (stale, young):
        path.write_bytes(b"leftover")
    os.utime(stale, (0, 0))
    other = tmp_path / "store" / "other"
    other.mkdir()
    (other / ".x.partial-00000000").write_bytes(b"")
    os.utime(other / ".x.partial-00000000", (0, 0))
    store.put_bytes("svc/second", b"2")
    assert not stale.exists() and young.exists()
    assert (other / ".x.partial-00000000").exists(), "only the folder written to is swept"
    assert store.swept == [str(stale)]


def test_reading_a_store_that_does_not_exist(tmp_path):
    store = LocalStore(str(tmp_path / "missing"))
    with pytest.raises(StoreError, match="backup store directory .*missing does not exist"):
        store.check_access(write=False)
    store.check_access(write=True)  # writing creates it
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match="is not a directory"):
        LocalStore(str(tmp_path / "file")).check_access(write=False)


@pytest.mark.parametrize("key", ["a/", "a/b", "a/b/"])
def test_check_key_allows_one_trailing_slash(key):
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["a//", "//", "", "a/./b"])
def test_check_key_refuses_empty_and_dot_parts(key):
    with pytest.raises(ParameterError):
        check_key(key)


def test_missing_says_why_the_store_is_not_there(tmp_path):
    assert LocalStore(str(tmp_path)).missing() is None
    assert LocalStore(str(tmp_path / "nope")).missing() == "backup store directory %s does not exist" % (
        tmp_path / "nope")
    (tmp_path / "file").write_bytes(b"")
    assert "is not a directory" in LocalStore(str(tmp_path / "file")).missing()
