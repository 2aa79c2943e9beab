# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""volume_backup and volume_restore where they used to go wrong: a restore under a running
container, sparse files and sockets, names with a trailing newline, a host without zstandard,
SIGTERM half-way and the work directories a killed restore leaves."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import sys
import time
import uuid

import yaml

from volume_testlib import (container_running, docker, failed, fill_tree, in_background, ok, processes_with,
                            restore_workdirs, snapshot, task, wait_for, warnings_of)


def read_in(container, name):
    return docker("exec", container, "/bin/busybox", "cat", "/data/" + name).stdout


def test_restore_under_a_running_container_stops_it_or_is_refused(run_tasks, docker_volume, local_store,
                                                                  busybox_image):
    """A container's mount keeps the directory it was started with: a rename swap under it reported
    success while the container read (and wrote) the replaced directory."""
    volume, mountpoint, start = docker_volume
    data = pathlib.Path(mountpoint)
    parent = os.path.dirname(mountpoint)
    (data / "marker").write_text("from the backup\n")
    params = {"service": "vt", "volume": volume, "store": local_store, "force": True}
    ok(run_tasks([task("backup", "volume_backup", {"service": "vt", "volume": volume, "store": local_store})]),
       "backup")
    (data / "marker").write_text("live\n")
    container = start()
    ephemeral = "rbops-t-rm-" + uuid.uuid4().hex[:8]
    docker("run", "-d", "--rm", "--network", "host", "--name", ephemeral, "-v", volume + ":/data", busybox_image,
           "/bin/busybox", "sleep", "300")
    try:
        run = run_tasks([
            task("allow_running", "volume_restore", dict(params, allow_running=True)),
            task("allow_running, keep_previous false", "volume_restore",
                 dict(params, allow_running=True, keep_previous=False)),
            task("stop an --rm container", "volume_restore", dict(params, stop_containers=True)),
        ])
    finally:
        docker("rm", "-f", ephemeral, check=False)
    for name in ("allow_running", "allow_running, keep_previous false"):
        msg = failed(run, name)["msg"]
        assert container in msg and ephemeral in msg and "stop_containers: true" in msg, msg
    assert "deprecated" in " ".join(warnings_of(run, "allow_running"))
    msg = failed(run, "stop an --rm container")["msg"]
    assert ephemeral in msg and "--rm" in msg and container not in msg, msg
    assert container_running(container) and read_in(container, "marker") == "live\n"
    assert os.listdir(parent) == ["_data"]  # nothing unpacked, nothing renamed

    run = run_tasks([task("check", "volume_restore", dict(params, stop_containers=True), check=True)])
    check = ok(run, "check")
    assert check["stopped_containers"] == [container] and check["started_containers"] == []
    assert "would stop and start again container %s" % container in check["msg"]
    assert container_running(container) and read_in(container, "marker") == "live\n"

    run = run_tasks([task("restore", "volume_restore", dict(params, stop_containers=True, stop_timeout=1))])
    restored = ok(run, "restore")
    assert restored["running_containers"] == [container]
    assert restored["stopped_containers"] == [container] and restored["started_containers"] == [container]
    assert "stopped and started again container %s" % container in restored["msg"]
    assert container_running(container)
    assert read_in(container, "marker") == "from the backup\n"  # the container sees the restored data
    # and what it writes now lands in the restored directory, not in the one kept aside
    docker("exec", container, "/bin/busybox", "sh", "-c", "echo after > /data/after")
    assert (data / "after").read_text() == "after\n"
    previous = pathlib.Path(restored["previous"])
    assert (previous / "marker").read_text() == "live\n" and not (previous / "after").exists()
    assert restore_workdirs(parent) == []

    # Without keep_previous the replaced directory goes, but only what the stopped container used.
    run = run_tasks([task("restore again", "volume_restore", dict(params, stop_containers=True, stop_timeout=1,
                                                                  keep_previous=False))])
    again = ok(run, "restore again")
    assert again["previous"] is None and again["started_containers"] == [container]
    assert container_running(container) and read_in(container, "marker") == "from the backup\n"
    assert docker("exec", container, "/bin/busybox", "ls", "/data").stdout.split() == ["marker"]
    assert sorted(os.listdir(parent)) == sorted(["_data", previous.name])


def test_sparse_files_are_stored_as_holes_and_restored_sparse(tmp_path, run_tasks, local_store):
    data = tmp_path / "sparse"
    data.mkdir()
    big = data / "big"
    with open(big, "wb") as handle:
        handle.truncate(1 << 30)
        handle.seek(500_000_000)
        handle.write(b"hello")
    assert os.stat(big).st_blocks * 512 < 1 << 20, "this file system does not keep files sparse"
    target = tmp_path / "restored" / "sparse"
    target.parent.mkdir()
    clock = time.monotonic()
    run = run_tasks([
        task("backup", "volume_backup", {"service": "sp", "path": str(data), "store": local_store}),
        task("restore", "volume_restore", {"service": "sp", "path": str(target), "label": "sparse",
                                           "store": local_store}),
    ])
    elapsed = time.monotonic() - clock
    backup = ok(run, "backup")["backup"]
    assert backup["raw_size"] < 1 << 20, "the holes were read and stored as zeros: %d bytes" % backup["raw_size"]
    assert backup["files"] == {"count": 1, "bytes": 1 << 30}
    restored = ok(run, "restore")
    assert restored["files"] == backup["files"]
    info = os.stat(target / "big")
    assert info.st_size == 1 << 30
    assert info.st_blocks * 512 < 1 << 20, "restored fully allocated: %d blocks" % info.st_blocks
    with open(target / "big", "rb") as handle:
        handle.seek(500_000_000 - 3)
        assert handle.read(10) == b"\0\0\0hello\0\0"
    assert elapsed < 120, "a 1 GiB sparse file took %.0f s" % elapsed


def test_a_unix_socket_is_left_out_with_a_warning_naming_it(tmp_path, run_tasks, local_store):
    data = tmp_path / "withsock"
    (data / "run").mkdir(parents=True)
    (data / "kept").write_text("kept\n")
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(data / "run" / "app.sock"))
        params = {"service": "so", "path": str(data), "store": local_store}
        run = run_tasks([task("check", "volume_backup", params, check=True), task("backup", "volume_backup", params)])
    finally:
        listener.close()
    for name in ("check", "backup"):
        warnings = " ".join(warnings_of(run, name))
        assert "run/app.sock" in warnings and "socket" in warnings, warnings
    backup = ok(run, "backup")["backup"]
    assert backup["skipped_sockets"] == ["run/app.sock"]
    assert backup["files"]["count"] == 2  # run/ and kept


def blocked_interpreter(tmp_path, library):
    """An inventory whose Python cannot import ``library`` (a host without it)."""
    blocked = tmp_path / "blocked"
    blocked.mkdir(exist_ok=True)
    (blocked / (library + ".py")).write_text("raise ImportError('no module named %s (blocked by the test)')\n"
                                             % library)
    wrapper = tmp_path / ("python-without-" + library)
    wrapper.write_text("#!/bin/sh\nPYTHONPATH=%s exec %s \"$@\"\n" % (blocked, sys.executable))
    wrapper.chmod(0o755)
    inventory = tmp_path / ("inventory-without-%s.yml" % library)
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": str(wrapper)}}}}))
    return str(inventory)


def test_without_zstandard_missing_required_lib_before_any_work(tmp_path, run_tasks, local_store):
    data = fill_tree(tmp_path / "srv" / "data")
    original = snapshot(data)
    params = {"service": "zs", "path": str(data), "store": local_store}
    ok(run_tasks([task("zstd backup", "volume_backup", params)]), "zstd backup")
    inventory = blocked_interpreter(tmp_path, "zstandard")
    run = run_tasks([
        task("backup", "volume_backup", params),
        task("restore", "volume_restore", dict(params, force=True)),
        task("restore check", "volume_restore", dict(params, force=True), check=True),
        task("verify only", "volume_restore", dict(params, verify_only=True)),
        task("gzip backup", "volume_backup", dict(params, compression="gzip", label="gz")),
        task("gzip restore", "volume_restore", dict(params, force=True, label="gz", keep_previous=False)),
    ], inventory=inventory)
    for name in ("backup", "restore", "restore check", "verify only"):
        msg = failed(run, name)["msg"]
        assert "Failed to import the required Python library (zstandard)" in msg, (name, msg)
    assert snapshot(data) == original
    assert os.listdir(data.parent) == ["data"]  # nothing unpacked beside it
    ok(run, "gzip backup")  # gzip needs no library
    ok(run, "gzip restore")
    assert snapshot(data) == original


def test_without_boto3_an_s3_store_gets_missing_required_lib(tmp_path, run_tasks, s3_bucket, s3_endpoint):
    data = fill_tree(tmp_path / "srv" / "data")
    store = {"type": "s3", "bucket": s3_bucket, "endpoint_url": s3_endpoint, "access_key": "testing",
             "secret_key": "testing"}
    params = {"service": "nob", "path": str(data), "store": store}
    run = run_tasks([
        task("backup", "volume_backup", params),
        task("backup check", "volume_backup", params, check=True),
        task("restore", "volume_restore", dict(params, force=True)),
    ], inventory=blocked_interpreter(tmp_path, "boto3"))
    for name in ("backup", "backup check", "restore"):
        msg = failed(run, name)["msg"]
        assert "Failed to import the required Python library (boto3)" in msg, (name, msg)


def test_names_with_a_trailing_newline_are_refused(run_tasks, local_store):
    run = run_tasks([
        task("backup", "volume_backup", {"service": "nl", "volume": "pgdata\n", "store": local_store}),
        task("restore", "volume_restore", {"service": "nl", "volume": "pgdata\n", "store": local_store}),
    ])
    for name in ("backup", "restore"):
        msg = failed(run, name)["msg"]
        assert "is not a Docker volume name" in msg, msg


def big_tree(root, megabytes):
    root.mkdir(parents=True)
    for index in range(megabytes // 8):
        (root / ("f%03d" % index)).write_bytes(os.urandom(8 << 20))
    return root


def terminate(marker, module, running):
    pids = wait_for(lambda: [pid for pid, argv in processes_with(marker).items()
                             if any(("AnsiballZ_%s" % module).encode() in part for part in argv)],
                    "the %s module process" % module, running)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    return running.result(timeout=300)


def test_sigterm_mid_restore_leaves_no_work_directory(tmp_path, run_tasks, local_store):
    data = big_tree(tmp_path / "srv" / "data", 400)
    params = {"service": "term", "path": str(data), "store": local_store}
    ok(run_tasks([task("backup", "volume_backup", dict(params, compression="none"))]), "backup")
    (data / "after-backup").write_text("still here\n")
    before = snapshot(data)
    marker = "rbops-marker-" + uuid.uuid4().hex
    running = in_background(run_tasks, [task("restore", "volume_restore", dict(params, force=True))],
                            env={"RBOPS_TEST_MARKER": marker})
    workdir = wait_for(lambda: restore_workdirs(data.parent), "the restore's work directory", running)[0]
    wait_for(lambda: len(os.listdir(data.parent / workdir)) > 2, "files being unpacked", running)
    run = terminate(marker, "volume_restore", running)
    assert "terminated (SIGTERM)" in failed(run, "restore")["msg"]
    assert restore_workdirs(data.parent) == [], "SIGTERM left a partial extraction behind"
    assert os.listdir(data.parent) == ["data"]
    assert snapshot(data) == before
    assert processes_with(marker) == {}, "tar outlived the module"


def test_sigterm_mid_backup_leaves_nothing_in_the_store(tmp_path, run_tasks, local_store):
    data = big_tree(tmp_path / "srv" / "data", 400)
    params = {"service": "termb", "path": str(data), "store": local_store, "compression": "gzip"}
    marker = "rbops-marker-" + uuid.uuid4().hex
    running = in_background(run_tasks, [task("backup", "volume_backup", params)], env={"RBOPS_TEST_MARKER": marker})
    folder = pathlib.Path(local_store["path"]) / "termb"
    wait_for(lambda: folder.is_dir() and os.listdir(folder), "a partial object in the store", running)
    run = terminate(marker, "volume_backup", running)
    assert "terminated (SIGTERM)" in failed(run, "backup")["msg"]
    assert os.listdir(folder) == [], "SIGTERM left %s" % os.listdir(folder)
    assert processes_with(marker) == {}, "tar outlived the module"


def test_a_later_restore_sweeps_stale_work_directories(tmp_path, run_tasks, local_store):
    data = fill_tree(tmp_path / "srv" / "data")
    params = {"service": "sw", "path": str(data), "store": local_store}
    ok(run_tasks([task("backup", "volume_backup", params)]), "backup")
    parent = data.parent
    stale = [parent / ".rbops-restore-0badf00d", parent / ".rbops-replaced-0ddba11a"]
    young = parent / ".rbops-restore-0000beef"
    not_ours = parent / ".rbops-restore-by-hand"
    for directory in stale + [young, not_ours]:
        (directory / "base").mkdir(parents=True)
        (directory / "base" / "1259").write_bytes(b"x" * 1000)
    old = time.time() - 2 * 86400
    for directory in stale + [not_ours]:
        os.utime(directory, (old, old))
    run = run_tasks([task("verify", "volume_restore", dict(params, verify_only=True))])
    ok(run, "verify")
    for directory in stale:
        assert not directory.exists(), "%s (two days old) survived the next restore" % directory
    assert young.exists(), "a young work directory (maybe a running restore's) was removed"
    assert not_ours.exists(), "a directory not of our naming was removed"


def test_sigterm_while_a_container_is_being_stopped_finishes_the_swap_and_starts_it(run_tasks, docker_volume,
                                                                                    local_store):
    """The busybox container ignores SIGTERM (PID 1), so docker stop waits its full timeout: a
    SIGTERM to the module then must neither leave the container stopped nor misreport the swap."""
    volume, mountpoint, start = docker_volume
    data = pathlib.Path(mountpoint)
    (data / "marker").write_text("from the backup\n")
    params = {"service": "vs", "volume": volume, "store": local_store}
    ok(run_tasks([task("backup", "volume_backup", params)]), "backup")
    (data / "marker").write_text("live\n")
    container = start()
    marker = "rbops-marker-" + uuid.uuid4().hex
    running = in_background(run_tasks, [task("restore", "volume_restore", dict(
        params, force=True, stop_containers=True, stop_timeout=6))], env={"RBOPS_TEST_MARKER": marker})
    wait_for(lambda: [pid for pid, argv in processes_with(marker).items() if b"stop" in argv[1:3]],
             "docker stop", running)
    run = terminate(marker, "volume_restore", running)
    restored = ok(run, "restore")
    assert restored["stopped_containers"] == [container] == restored["started_containers"]
    assert "SIGTERM arrived while containers were stopped" in " ".join(warnings_of(run, "restore"))
    assert container_running(container)
    assert read_in(container, "marker") == "from the backup\n"
    assert restore_workdirs(os.path.dirname(mountpoint)) == []
