# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""volume_backup and volume_restore through ansible-playbook: host directories and a real Docker
volume, local and S3 stores, owners and modes, refusals and failures."""

from __future__ import annotations

import glob
import json
import os
import pathlib
import sys

import yaml

from volume_testlib import change_tree, docker, failed, fill_tree, ok, snapshot, task


def files_in(store_dir):
    return sorted(os.listdir(store_dir)) if os.path.isdir(store_dir) else []


def test_host_directory_roundtrip_keeps_contents_modes_and_owners(tmp_path, run_tasks, store):
    data = fill_tree(tmp_path / "srv" / "data")
    original = snapshot(data)
    run = run_tasks([
        task("backup check", "volume_backup", {"service": "app", "path": str(data), "store": store}, check=True),
        task("backup", "volume_backup", {"service": "app", "path": str(data), "store": store, "compression": "gzip"}),
        task("info", "backup_info", {"service": "app", "engine": "volume", "database": "data", "store": store}),
    ])
    planned = ok(run, "backup check")
    assert planned["changed"] and planned["backup"]["directory"] == str(data)
    backup = ok(run, "backup")["backup"]
    assert backup["id"].startswith("volume-data-") and backup["object"].endswith(".tar.gz")
    assert backup["id"] != planned["backup"]["id"]
    # Entries below the root (the root itself is not counted) and file bytes, the hard link once.
    assert backup["files"] == {"count": len(original) - 1, "bytes": 300_000 + 24576 + 3 + 34 + 7}
    assert backup["engine"] == "volume" and backup["dump_format"] == "tar" and backup["row_counts"] == {}
    assert backup["containers_checked"] is True and backup["running_containers"] == []
    info = ok(run, "info")
    assert info["count"] == {"complete": 1, "incomplete": 0}
    assert info["latest"]["details"]["sha256"] == backup["sha256"]
    assert info["latest"]["details"]["files"] == backup["files"]
    assert snapshot(data) == original  # a backup changes nothing

    change_tree(data)
    changed = snapshot(data)
    assert changed != original
    params = {"service": "app", "path": str(data), "store": store}
    run = run_tasks([
        task("restore without force", "volume_restore", params),
        task("restore check", "volume_restore", dict(params, force=True), check=True),
        task("verify only", "volume_restore", dict(params, verify_only=True)),
    ])
    refused = failed(run, "restore without force")
    assert "is not empty" in refused["msg"] and "force: true" in refused["msg"]
    check = ok(run, "restore check")
    assert check["changed"] and check["verified"] is False and check["previous"].startswith(str(data) + ".pre-restore-")
    verified = ok(run, "verify only")
    assert not verified["changed"] and verified["verified"] and verified["files"] == backup["files"]
    assert snapshot(data) == changed
    assert sorted(os.listdir(data.parent)) == ["data"]  # no previous dir, no scratch left behind

    run = run_tasks([task("restore", "volume_restore", dict(params, force=True, backup_id=backup["id"]))])
    restored = ok(run, "restore")
    assert restored["changed"] and restored["verified"] and restored["files"] == backup["files"]
    assert snapshot(data) == original
    assert restored["previous"].startswith(str(data) + ".pre-restore-")
    assert snapshot(restored["previous"]) == changed
    assert sorted(os.listdir(data.parent)) == sorted(["data", os.path.basename(restored["previous"])])


def test_restore_into_a_missing_directory_and_without_keeping_the_previous_one(tmp_path, run_tasks, local_store):
    data = fill_tree(tmp_path / "data")
    original = snapshot(data)
    target = tmp_path / "new" / "data"
    target.parent.mkdir()
    run = run_tasks([
        task("backup", "volume_backup", {"service": "app", "path": str(data), "label": "appdata",
                                         "store": local_store, "compression": "none"}),
        task("restore elsewhere", "volume_restore", {"service": "app", "path": str(target), "label": "appdata",
                                                     "store": local_store}),
        task("restore again", "volume_restore", {"service": "app", "path": str(target), "label": "appdata",
                                                 "store": local_store, "force": True, "keep_previous": False}),
    ])
    assert ok(run, "backup")["backup"]["id"].startswith("volume-appdata-")
    assert ok(run, "restore elsewhere")["previous"] is None
    assert ok(run, "restore again")["previous"] is None
    assert snapshot(target) == original
    assert os.listdir(target.parent) == ["data"]


def test_docker_volume_is_refused_while_a_container_uses_it(tmp_path, run_tasks, docker_volume, store):
    volume, mountpoint, start = docker_volume
    fill_tree(pathlib.Path(mountpoint))  # filled from the host: no image needed for that
    original = snapshot(mountpoint)
    container = start()
    params = {"service": "tasktracker", "volume": volume, "store": store}
    run = run_tasks([
        task("backup while running", "volume_backup", params),
        task("backup check while running", "volume_backup", params, check=True),
    ])
    for name in ("backup while running", "backup check while running"):
        refused = failed(run, name)
        assert container in refused["msg"] and "stopped" in refused["msg"], refused["msg"]
    docker("stop", "-t", "1", container)
    run = run_tasks([task("backup", "volume_backup", dict(params, keep_last=1))])
    backup = ok(run, "backup")["backup"]
    assert backup["directory"] == mountpoint and backup["source"]["volume"] == volume
    assert backup["id"].startswith("volume-%s-" % volume.replace("-", "_"))
    assert backup["server_version"]  # the Docker engine's version

    change_tree(pathlib.Path(mountpoint))
    docker("start", container)
    run = run_tasks([task("restore while running", "volume_restore", dict(params, force=True))])
    refused = failed(run, "restore while running")
    assert container in refused["msg"]
    assert snapshot(mountpoint) != original
    docker("stop", "-t", "1", container)
    run = run_tasks([task("restore", "volume_restore", dict(params, force=True))])
    restored = ok(run, "restore")
    assert restored["target"] == mountpoint and snapshot(mountpoint) == original
    assert restored["previous"].startswith(mountpoint + ".pre-restore-")
    # The container sees the restored data through the volume.
    docker("start", container)
    seen = docker("exec", container, "/bin/busybox", "cat", "/data/PG_VERSION").stdout
    assert seen == "15\n"
    listing = docker("exec", container, "/bin/busybox", "ls", "-ln", "/data/PG_VERSION").stdout.split()
    assert listing[0] == "-rw-------" and listing[2:4] == ["999", "999"]


def test_a_flipped_byte_is_refused_and_the_directory_untouched(tmp_path, run_tasks, local_store):
    data = fill_tree(tmp_path / "srv" / "data")
    run = run_tasks([task("backup", "volume_backup", {"service": "app", "path": str(data), "store": local_store})])
    backup = ok(run, "backup")["backup"]
    change_tree(data)
    before = snapshot(data)
    with open(backup["location"], "r+b") as handle:
        handle.seek(backup["size"] // 2)
        byte = handle.read(1)
        handle.seek(backup["size"] // 2)
        handle.write(bytes([byte[0] ^ 0x01]))
    run = run_tasks([
        task("restore", "volume_restore", {"service": "app", "path": str(data), "store": local_store, "force": True}),
        task("verify", "volume_restore", {"service": "app", "path": str(data), "store": local_store,
                                          "verify_only": True}),
    ])
    for name in ("restore", "verify"):
        msg = failed(run, name)["msg"]
        assert backup["id"] in msg and ("corrupt" in msg or "sha256" in msg), msg
    assert snapshot(data) == before
    assert os.listdir(data.parent) == ["data"]  # no scratch directory, no previous

    with open(backup["location"], "r+b") as handle:  # truncated: caught by size before any unpacking
        handle.truncate(backup["size"] - 100)
    run = run_tasks([task("restore", "volume_restore", {"service": "app", "path": str(data),
                                                        "store": local_store, "force": True})])
    assert "truncated" in failed(run, "restore")["msg"]
    assert snapshot(data) == before


def test_a_source_tar_cannot_read_fails_and_stores_nothing(tmp_path, run_tasks, local_store):
    data = fill_tree(tmp_path / "data")
    secret = data / "base" / "16384" / "2619"
    os.chmod(secret, 0)
    # Root reads everything; drop the capabilities that let it, for the module's interpreter only.
    wrapper = tmp_path / "python-without-dac"
    wrapper.write_text("#!/bin/sh\nexec setpriv --bounding-set=-dac_override,-dac_read_search %s \"$@\"\n"
                       % sys.executable)
    wrapper.chmod(0o755)
    inventory = tmp_path / "inventory-nodac.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": str(wrapper)}}}}))
    backup = task("backup", "volume_backup", {"service": "app", "path": str(data), "store": local_store})
    # The data directory itself (0700, uid 999) is checked before tar starts.
    msg = failed(run_tasks([backup], inventory=str(inventory)), "backup")["msg"]
    assert msg == "directory %s is not readable" % data
    # A file deep inside: tar fails half-way, and the half-written object is discarded.
    for directory in (data, data / "base", data / "base" / "16384"):
        os.chmod(directory, 0o755)
    msg = failed(run_tasks([backup], inventory=str(inventory)), "backup")["msg"]
    assert "tar of %s failed" % data in msg and "Permission denied" in msg and "2619" in msg, msg
    store_dir = os.path.join(local_store["path"], "app")
    assert files_in(store_dir) == [] and glob.glob(os.path.join(store_dir, ".*")) == []


def test_bad_parameters_give_clear_messages(tmp_path, run_tasks, local_store):
    run = run_tasks([
        task("neither", "volume_backup", {"service": "app", "store": local_store}),
        task("both", "volume_backup", {"service": "app", "volume": "v", "path": "/srv/x", "store": local_store}),
        task("relative", "volume_backup", {"service": "app", "path": "srv/data", "store": local_store}),
        task("relative restore", "volume_restore", {"service": "app", "path": "srv/data", "store": local_store}),
        task("missing dir", "volume_backup", {"service": "app", "path": str(tmp_path / "nope"),
                                              "store": local_store}),
        task("missing volume", "volume_backup", {"service": "app", "volume": "rbops-no-such-volume",
                                                 "store": local_store}),
        task("no backup", "volume_restore", {"service": "app", "path": str(tmp_path / "nope"),
                                             "store": local_store}),
        task("bad id", "volume_restore", {"service": "app", "path": str(tmp_path / "nope"), "backup_id": "x",
                                          "store": local_store}),
        task("bad keep", "volume_backup", {"service": "app", "path": str(tmp_path), "keep_last": 0,
                                           "store": local_store}),
    ])
    expected = {
        "neither": "exactly one of volume", "both": "not both", "relative": "must be an absolute",
        "relative restore": "must be an absolute", "missing dir": "is not a directory",
        "missing volume": "Docker volume rbops-no-such-volume does not exist", "no backup": "no complete volume backup",
        "bad id": "malformed backup id", "bad keep": "keep_last must be at least 1",
    }
    for name, text in expected.items():
        msg = failed(run, name)["msg"]
        assert text in msg, (name, msg)
    assert json.dumps([r["result"] for r in run.records]).count("Traceback") == 0
