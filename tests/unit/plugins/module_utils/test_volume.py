# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of _volume: parameters, the tar member counter (on real GNU tar and Python
tarfile streams), the tree walk it must agree with, the container matcher (on real
``docker inspect`` output), and the rename swap."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import tarfile
import time

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _volume as volumes
from ansible_collections.runbook.ops.plugins.module_utils._errors import BackupError, LockError, ParameterError, RestoreError

# `docker inspect --type container` of a busybox container started with
# `-v rbops-capture:/data -v /tmp/bbctx:/ctx:ro` on Docker 20.10.24 (Debian 12), cut to the keys
# _volume reads; values verbatim.
DOCKER_INSPECT = json.loads(r"""
[{"Id": "a5ceb77225d6c4b3552bfc41d17fb6cfa4fab6b78aaf7e240d5fd8d14ba2c741",
  "Name": "/rbops-capture-c",
  "State": {"Status": "running", "Running": true, "Paused": false, "Restarting": false, "OOMKilled": false,
            "Dead": false, "Pid": 5138, "ExitCode": 0, "Error": "",
            "StartedAt": "2026-11-23T09:22:56.412168584Z", "FinishedAt": "0001-01-01T00:00:00Z"},
  "Mounts": [
   {"Type": "bind", "Source": "/tmp/bbctx", "Destination": "/ctx", "Mode": "ro", "RW": false,
    "Propagation": "rprivate"},
   {"Type": "volume", "Name": "rbops-capture", "Source": "/var/lib/docker/volumes/rbops-capture/_data",
    "Destination": "/data", "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""}]}]
""")


# --- parameters -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of volume"),
    ({"volume": "pgdata", "path": "/srv/data"}, "not both"),
    ({"path": "srv/data"}, "absolute"),
    ({"path": "/"}, "cannot be backed up"),
    ({"volume": "../etc"}, "not a Docker volume name"),
    ({"volume": "-x"}, "not a Docker volume name"),
    ({"volume": "pgdata\n"}, "not a Docker volume name"),  # "$" with .match let a trailing newline through
    ({"volume": "pg data"}, "not a Docker volume name"),
])
def test_bad_sources_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        volumes.VolumeSource(**kwargs)


def test_labels_default_to_the_volume_or_the_last_path_component():
    assert volumes.VolumeSource(volume="tasktracker_pg.data").label == "tasktracker_pg_data"
    assert volumes.VolumeSource(path="/srv/app/data/").label == "data"
    assert volumes.VolumeSource(path="/srv/app/data", label="app-db").label == "app_db"
    assert volumes.VolumeSource(path="/srv/app/data/").path == "/srv/app/data"


def test_the_spec_is_a_volume_tarball_in_the_service_folder():
    spec = volumes.VolumeSource(volume="pgdata").spec("app", "gzip")
    assert (spec.engine, spec.database, spec.dump_format, spec.folder) == ("volume", "pgdata", "tar", "app/")
    assert spec.compression_level == 6
    with pytest.raises(ParameterError, match="service"):
        volumes.VolumeSource(volume="pgdata").spec("bad/service")
    with pytest.raises(ParameterError, match="a volume backup needs a label"):
        volumes.VolumeSpec("app", database="")


# --- counting tar members -----------------------------------------------------------------------

def make_tree(root):
    """Files of several kinds: nested dirs, a hard link, a symlink, an empty file, a fifo,
    a long name (GNU ././@LongLink), odd modes."""
    (root / "base" / "16384").mkdir(parents=True)
    (root / "base" / "16384" / "1259").write_bytes(os.urandom(70000))
    (root / "PG_VERSION").write_text("15\n")
    (root / "empty").write_bytes(b"")
    os.link(root / "PG_VERSION", root / "hardlink")
    os.symlink("PG_VERSION", root / "symlink")
    os.mkfifo(root / "fifo")
    long_dir = root / ("d" * 120)
    long_dir.mkdir()
    (long_dir / ("f" * 150)).write_bytes(b"x" * 513)
    os.chmod(root / "PG_VERSION", 0o600)
    os.chmod(root / "base", 0o700)
    return root


def count_stream(data, read_size):
    counter = volumes.TarCounter(io.BytesIO(data))
    while counter.read(read_size):
        pass
    assert counter.size == len(data)
    return counter.files()


@pytest.mark.parametrize("read_size", [1, 100, 511, 512, 4096, 1 << 20])
def test_the_counter_agrees_with_the_walk_on_gnu_tar_output(tmp_path, read_size):
    root = make_tree(tmp_path / "data")
    data = subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", "-", "."], check=True,
                          stdout=subprocess.PIPE).stdout
    expected = volumes.tree_files(str(root))
    # 10 entries below the root: base, base/16384, base/16384/1259, PG_VERSION, empty, hardlink, symlink,
    # fifo, the long dir and its file; bytes count the hard-linked file once.
    assert expected == {"count": 10, "bytes": 70000 + 3 + 513}
    assert count_stream(data, read_size) == expected


@pytest.mark.parametrize("segments", [1, 3, 4, 5, 30, 200])
def test_the_counter_reads_sparse_members_and_their_map_extensions(tmp_path, segments):
    """tar --sparse: an "S" member stores its data and counts its real size; more than 4 data
    segments put the rest of the map in extension blocks before the data."""
    root = tmp_path / "data"
    root.mkdir()
    with open(root / "sparse", "wb") as handle:
        for index in range(segments):
            handle.seek(index * (1 << 20))
            handle.write(b"d" * 5000)
        handle.truncate(segments * (1 << 20) + 12345)
    (root / "after").write_bytes(b"a" * 700)
    data = subprocess.run(["tar", "--sparse", "--numeric-owner", "-C", str(root), "-cf", "-", "."], check=True,
                          stdout=subprocess.PIPE).stdout
    assert len(data) < segments * 10000 + 20480  # holes are not in the stream
    expected = volumes.tree_files(str(root))
    assert expected == {"count": 2, "bytes": segments * (1 << 20) + 12345 + 700}
    for read_size in (1, 512, 4096, 1 << 20):
        assert count_stream(data, read_size) == expected


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_the_counter_skips_metadata_members_of_every_format(tmp_path, fmt):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        archive.addfile(root)
        for name, size in (("./a", 10), ("./b" + "é" * 3, 1024), ("./" + "n" * 90 + "/" + "m" * 60, 0)):
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, io.BytesIO(b"z" * size))
        link = tarfile.TarInfo("./c")
        link.type = tarfile.SYMTYPE
        link.linkname = "a"
        archive.addfile(link)
    assert count_stream(buffer.getvalue(), 700) == {"count": 4, "bytes": 1034}


def test_the_counter_ignores_what_follows_the_end_of_archive():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo("./a")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
    # tar pads to a 10 KiB record; anything after the two zero blocks is not a member.
    assert count_stream(buffer.getvalue() + b"junk" * 200, 333) == {"count": 1, "bytes": 3}


def test_tar_numbers_octal_and_base_256():
    assert volumes.tar_number(b"00000001750\0") == 1000
    assert volumes.tar_number(b"           \0") == 0
    big = 20 * (1 << 30)  # over the 8 GiB octal limit: GNU tar switches to base-256
    field = bytes([0x80]) + big.to_bytes(11, "big")
    assert volumes.tar_number(field) == big


# --- containers ---------------------------------------------------------------------------------

def test_containers_are_matched_by_volume_name_and_by_overlapping_paths():
    assert volumes.containers_using(DOCKER_INSPECT, "/var/lib/docker/volumes/rbops-capture/_data",
                                    "rbops-capture") == ["rbops-capture-c"]
    assert volumes.containers_using(DOCKER_INSPECT, "/elsewhere", "rbops-capture") == ["rbops-capture-c"]
    assert volumes.containers_using(DOCKER_INSPECT, "/tmp/bbctx") == ["rbops-capture-c"]
    assert volumes.containers_using(DOCKER_INSPECT, "/tmp/bbctx/sub/dir") == ["rbops-capture-c"]
    assert volumes.containers_using(DOCKER_INSPECT, "/tmp") == ["rbops-capture-c"]


def test_containers_on_other_paths_or_volumes_do_not_match():
    assert volumes.containers_using(DOCKER_INSPECT, "/tmp/bbctx2") == []
    assert volumes.containers_using(DOCKER_INSPECT, "/var/lib/docker/volumes/other/_data", "other") == []
    assert volumes.containers_using([{"Name": "/x", "Mounts": None}], "/srv") == []


def test_running_users_are_refused_by_name_unless_allowed():
    source = volumes.VolumeSource(volume="pgdata")
    with pytest.raises(LockError, match=r"in use by running containers db, db2: .* stopped; stop them first"):
        volumes.refuse_running(source, ["db", "db2"], "copied", allow_running=False)
    volumes.refuse_running(source, ["db"], "copied", allow_running=True)
    volumes.refuse_running(source, [], "copied", allow_running=False)
    volumes.refuse_running(source, None, "copied", allow_running=False)


def test_auto_removed_containers_are_recognised():
    inspected = [dict(DOCKER_INSPECT[0], HostConfig={"AutoRemove": True})]
    assert volumes.matching_containers(inspected, "/tmp/bbctx") == [
        {"name": "rbops-capture-c", "id": DOCKER_INSPECT[0]["Id"], "auto_remove": True}]
    assert volumes.matching_containers(DOCKER_INSPECT, "/tmp/bbctx")[0]["auto_remove"] is False


def test_a_restore_under_running_containers_needs_stop_containers():
    source = volumes.VolumeSource(volume="pgdata")
    db = {"name": "db", "id": "1" * 64, "auto_remove": False}
    tmp = {"name": "tmp", "id": "2" * 64, "auto_remove": True}
    with pytest.raises(LockError, match=r"running containers db, tmp: .* would not see the restored data; .* "
                                        r"stop_containers: true"):
        volumes.refuse_running_restore(source, [db, tmp], stop_containers=False)
    with pytest.raises(LockError, match=r"container tmp \(started with --rm\) would be removed"):
        volumes.refuse_running_restore(source, [db, tmp], stop_containers=True)
    volumes.refuse_running_restore(source, [db], stop_containers=True)
    volumes.refuse_running_restore(source, [], stop_containers=False)
    volumes.refuse_running_restore(source, None, stop_containers=False)


def fake_docker(tmp_path, fail_on):
    """A docker CLI stand-in that logs its arguments and fails on one subcommand."""
    log = tmp_path / "docker.log"
    script = tmp_path / "docker"
    script.write_text("#!/bin/sh\necho \"$@\" >> %s\nif [ \"$1\" = %s ]; then echo \"Error: $1 refused\" >&2; exit 1; fi\n"
                      % (log, fail_on))
    script.chmod(0o755)
    return str(script), log


def test_stopped_containers_are_started_again_after_an_error(tmp_path):
    cli, log = fake_docker(tmp_path, "none")
    containers = [{"name": "db", "id": "abc", "auto_remove": False}, {"name": "web", "id": "def", "auto_remove": False}]
    with pytest.raises(RestoreError) as caught:
        with volumes.StoppedContainers(cli, containers, 5):
            raise RestoreError("the swap failed")
    assert log.read_text().splitlines() == ["stop --time 5 abc", "stop --time 5 def", "start abc", "start def"]
    assert str(caught.value) == "the swap failed; stopped and started again: db, web"
    assert caught.value.details == {"stopped_containers": ["db", "web"], "started_containers": ["db", "web"],
                                    "deferred_signals": []}


def test_a_container_that_does_not_start_again_is_reported(tmp_path):
    cli, _log = fake_docker(tmp_path, "start")
    with volumes.StoppedContainers(cli, [{"name": "db", "id": "abc", "auto_remove": False}], 5) as paused:
        pass
    assert paused.result() == {"stopped_containers": ["db"], "started_containers": [], "deferred_signals": []}
    assert paused.describe() == "did not start again: db (docker start db failed: Error: start refused)"


def test_a_failed_stop_starts_the_ones_already_stopped(tmp_path):
    cli, log = fake_docker(tmp_path, "stop")
    with pytest.raises(RestoreError, match=r"^docker stop db failed: Error: stop refused; nothing was restored; "
                                           r"stopped and started again: db$"):
        with volumes.StoppedContainers(cli, [{"name": "db", "id": "abc", "auto_remove": False}], 5):
            raise AssertionError("not reached")
    # a stop that failed may have stopped it all the same: it is started again (a no-op when running)
    assert log.read_text().splitlines() == ["stop --time 5 abc", "start abc"]


def test_sigterm_while_containers_are_stopped_is_held_until_they_run_again(tmp_path):
    cli, log = fake_docker(tmp_path, "none")

    def terminate(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        with volumes.StoppedContainers(cli, [{"name": "db", "id": "abc", "auto_remove": False}], 5) as paused:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            log.write_text(log.read_text() + "swap\n")  # reached: the signal did not interrupt the swap
        assert log.read_text().splitlines() == ["stop --time 5 abc", "swap", "start abc"]
        assert paused.deferred_signals == ["SIGTERM"]
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sweep_removes_only_old_work_directories_of_our_naming(tmp_path):
    now = 1_800_000_000
    names = {".rbops-restore-0badf00d": now - 90000, ".rbops-replaced-12345678": now - 90000,
             ".rbops-restore-0000beef": now - 60, ".rbops-restore-by-hand": now - 90000,
             ".rbops-restore-0badf00d\n": now - 90000, "data": now - 90000}
    for name, mtime in names.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_text("x")
        os.utime(tmp_path / name, (mtime, mtime))
    removed = volumes.sweep_workdirs(str(tmp_path), now=now)
    assert sorted(os.path.basename(path) for path in removed) == [".rbops-replaced-12345678",
                                                                  ".rbops-restore-0badf00d"]
    assert sorted(os.listdir(tmp_path)) == sorted(set(names) - {".rbops-replaced-12345678", ".rbops-restore-0badf00d"})
    assert volumes.sweep_workdirs(str(tmp_path / "missing"), now=now) == []


def test_unix_sockets_are_found_by_relative_path(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "file").write_text("x")
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(tmp_path / "run" / "db.sock"))
        assert volumes.unix_sockets(str(tmp_path)) == ["run/db.sock"]
    finally:
        listener.close()


def test_a_missing_docker_cli_is_tolerated_for_a_path_but_not_for_a_volume(tmp_path):
    path_source = volumes.VolumeSource(path=str(tmp_path), docker_cli=str(tmp_path / "no-docker"))
    assert path_source.running_users(RestoreError) is None
    volume_source = volumes.VolumeSource(volume="pgdata", docker_cli=str(tmp_path / "no-docker"))
    with pytest.raises(RestoreError, match="docker CLI .* is not installed"):
        volume_source.directory(RestoreError)


# --- swapping -----------------------------------------------------------------------------------

def test_swap_keeps_the_previous_directory(tmp_path):
    target, new = tmp_path / "data", tmp_path / ".new"
    target.mkdir()
    (target / "old").write_text("old")
    new.mkdir()
    (new / "restored").write_text("new")
    previous = volumes.previous_name(str(target))
    assert previous.startswith(str(target) + ".pre-restore-")
    assert volumes.swap_in(str(new), str(target), True, previous) == previous
    assert os.listdir(target) == ["restored"]
    assert os.listdir(previous) == ["old"]
    assert not new.exists()


def test_swap_without_keeping_deletes_the_old_directory(tmp_path):
    target, new = tmp_path / "data", tmp_path / ".new"
    target.mkdir()
    (target / "old").write_text("old")
    new.mkdir()
    assert volumes.swap_in(str(new), str(target), True, None) is None
    assert os.listdir(target) == []
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_a_failed_swap_puts_the_original_back(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(RestoreError, match="left as it was"):
        volumes.swap_in(str(tmp_path / "missing"), str(target), True, str(tmp_path / "kept"))
    assert os.listdir(target) == ["old"]
    assert not (tmp_path / "kept").exists()


def test_previous_names_never_collide(tmp_path):
    first = volumes.previous_name(str(tmp_path / "data"))
    os.mkdir(first)
    second = volumes.previous_name(str(tmp_path / "data"))
    assert second != first and second.startswith(first + "-")


# --- Compose project volumes and backups with stopped containers ---------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"compose_project": "App", "volume": "pgdata"}, "not a Compose project name"),
    ({"compose_project": "app\n", "volume": "pgdata"}, "not a Compose project name"),
    ({"compose_project": "app"}, "compose_project needs volume"),
    ({"compose_project": "app", "path": "/srv/data"}, "compose_project needs volume"),
])
def test_bad_compose_sources_are_refused(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        volumes.VolumeSource(**kwargs)


def fake_volume_ls(tmp_path, names):
    """A docker CLI stand-in whose `volume ls` prints ``names`` and logs its arguments."""
    log = tmp_path / "docker.log"
    script = tmp_path / "docker"
    script.write_text("#!/bin/sh\necho \"$@\" >> %s\nprintf '%s'\n" % (log, "".join(n + "\\n" for n in names)))
    script.chmod(0o755)
    return str(script), log


def test_a_compose_volume_is_found_by_its_labels(tmp_path):
    cli, log = fake_volume_ls(tmp_path, ["shop_pgdata"])
    source = volumes.VolumeSource(volume="pgdata", compose_project="shop", docker_cli=cli)
    assert source.label == "shop_pgdata" and source.kind == "volume"
    assert source.describe() == "volume pgdata of Compose project shop"
    assert source.resolve(BackupError) == "shop_pgdata"
    assert source.describe() == "volume pgdata of Compose project shop (Docker volume shop_pgdata)"
    assert log.read_text().split() == ["volume", "ls", "--quiet", "--filter", "label=com.docker.compose.project=shop",
                                       "--filter", "label=com.docker.compose.volume=pgdata"]
    source.resolve(BackupError)
    assert len(log.read_text().splitlines()) == 1  # asked once


@pytest.mark.parametrize("names, message", [
    ([], r"Compose project shop has no volume pgdata \(no Docker volume labelled com.docker.compose.project=shop "
         r"and com.docker.compose.volume=pgdata\): is the project up"),
    (["a_pgdata", "b_pgdata"], r"2 Docker volumes are labelled as volume pgdata of Compose project shop "
                               r"\(a_pgdata, b_pgdata\)"),
])
def test_a_compose_volume_must_be_found_exactly_once(tmp_path, names, message):
    cli, _log = fake_volume_ls(tmp_path, names)
    with pytest.raises(RestoreError, match=message):
        volumes.VolumeSource(volume="pgdata", compose_project="shop", docker_cli=cli).directory(RestoreError)


def test_stopped_containers_speak_as_a_backup_when_asked(tmp_path):
    cli, log = fake_docker(tmp_path, "stop")
    with pytest.raises(BackupError, match=r"^docker stop db failed: Error: stop refused; nothing was backed up; "
                                          r"stopped and started again: db$"):
        with volumes.StoppedContainers(cli, [{"name": "db", "id": "abc", "auto_remove": False}], 5,
                                       error_cls=BackupError, undone="nothing was backed up"):
            raise AssertionError("not reached")
    assert log.read_text().splitlines() == ["stop --time 5 abc", "start abc"]


def test_a_backup_refuses_to_stop_auto_removed_containers():
    with pytest.raises(LockError, match=r"container tmp \(started with --rm\) would be removed .* then backing up"):
        volumes.refuse_auto_removed([{"name": "tmp", "id": "2" * 64, "auto_remove": True}], "backing up")


def test_a_container_gone_between_ps_and_inspect_is_asked_again(tmp_path):
    """`docker ps` lists a container that exits before `docker inspect`: the second round succeeds."""
    state = tmp_path / "inspected"
    script = tmp_path / "docker"
    script.write_text("#!/bin/sh\nif [ \"$1\" = ps ]; then echo abc; exit 0; fi\n"
                      "if [ ! -e %s ]; then touch %s; echo 'Error: No such container: abc' >&2; exit 1; fi\n"
                      "echo '[]'\n" % (state, state))
    script.chmod(0o755)
    source = volumes.VolumeSource(path=str(tmp_path), docker_cli=str(script))
    assert source.running_containers(BackupError) == []
