#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: volume_backup
short_description: Back up a Docker named volume or a host directory as a tarball into a backup store
version_added: 0.1.0
description:
  - Copies a data directory, for example the data volume of a database container, with
    C(tar --numeric-owner), so owners, groups and modes are kept as numbers and restore exactly.
  - The tar stream goes through compression and a sha256 hash into the store, in constant memory and
    without a temporary copy. A C(tar) that fails (an unreadable file, a vanished directory) fails the
    task and leaves no backup.
  - Sparse files are stored as their data and a map of their holes (C(tar --sparse)), and come back sparse.
    Unix sockets cannot be stored; they are left out with a warning naming them.
  - A manifest is written last, beside the data object, with the same fields as a database backup of
    M(runbook.ops.db_backup) (engine C(volume), the volume or directory as the database) and C(files),
    the number of entries and bytes of file content in the tarball. M(runbook.ops.backup_info) lists
    these backups with O(runbook.ops.backup_info#module:engine=volume).
  - A database data directory is only consistent while its server is stopped, so the module refuses
    while a running container mounts the volume or directory, naming the containers, unless
    O(stop_containers=true) (stop them for the copy) or O(allow_running=true) (copy live).
  - The data volume of a Compose project's database is found with O(compose_project) and the volume's
    name in the Compose file.
  - Retention (O(keep_last), O(keep_days)) then deletes older complete backups of the same service and label.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.store
  - runbook.ops.volume_source
options:
  allow_running:
    description:
      - Back up even while running containers mount the directory. The copy of a live database data
        directory is not consistent; use this only for data that is safe to copy live.
      - C(tar) still fails when a file changes while it is read.
      - Excludes O(stop_containers).
    type: bool
    default: false
  stop_containers:
    description:
      - Stop the running containers that mount the volume or directory (C(docker stop)), copy it, and start
        them again (C(docker start)), also when the copy fails. RV(backup.stopped_containers) and
        RV(backup.started_containers) say what was done. A container that does not start again fails the
        task after the backup was stored (C(changed=true)).
      - Containers started with C(--rm) are refused, since stopping them would remove them. A container
        that starts using the directory while the others are stopped fails the task before the copy.
      - SIGTERM and SIGINT are held from the first C(docker stop) until the containers run again.
    type: bool
    default: false
  stop_timeout:
    description: Seconds C(docker stop) gives each container to stop before it is killed.
    type: int
    default: 30
  compression:
    description: Compression of the stored tarball.
    type: str
    choices: [zstd, gzip, none]
    default: zstd
  compression_level:
    description: Compression level; defaults to 1 for zstd (fastest, and on typical application data also the smallest) and 6 for gzip.
    type: int
  keep_last:
    description: Retention. Keep at least this many newest complete backups of this service and label.
    type: int
  keep_days:
    description:
      - Retention. Keep every complete backup younger than this many days.
      - With both O(keep_last) and O(keep_days), a backup is kept when either keeps it.
        With neither, nothing is deleted.
    type: int
attributes:
  check_mode:
    support: full
    description: Resolves the directory, checks that no running container uses it and that the store is
      writable, and reports the object it would write and the backups retention would delete, without
      writing or deleting anything.
  diff_mode:
    support: none
    description: A backup has nothing to show as a diff.
  idempotent:
    support: none
    description: Every run takes a new backup.
notes:
  - Run as root (C(become)) to read every file of a database data directory and to record its owners.
  - Backups and manifests are private files (0600) in a V(local) store.
seealso:
  - module: runbook.ops.volume_restore
  - module: runbook.ops.backup_info
  - module: runbook.ops.db_backup
"""

EXAMPLES = r"""
- name: Stop PostgreSQL, then back up its data volume to S3, keeping the last 7
  runbook.ops.volume_backup:
    service: tasktracker
    volume: tasktracker_postgres_staging_data
    store:
      type: s3
      bucket: acme-backups
      prefix: staging
    keep_last: 7
  become: true

- name: Back up the database volume of a Compose project, its containers stopped around the copy
  runbook.ops.volume_backup:
    service: tasktracker
    compose_project: tasktracker
    volume: pgdata
    stop_containers: true
    store:
      type: local
      path: /var/backups/runbook
  become: true

- name: Back up a host directory into a local store
  runbook.ops.volume_backup:
    service: s3desk
    path: /srv/s3desk/data
    store:
      type: local
      path: /var/backups/runbook
  become: true
"""

RETURN = r"""
backup:
  description: The manifest of the new backup (in check mode, the id and object it would have).
  returned: always
  type: dict
  contains:
    id:
      description: Backup id, usable with O(runbook.ops.volume_restore#module:backup_id).
      type: str
      sample: volume-pgdata-20261123T091500Z-3fa9c1
    object:
      description: Store key of the data object.
      type: str
      sample: app/volume-pgdata-20261123T091500Z-3fa9c1.tar.zst
    location:
      description: Where the object is, as a path or an s3:// URL.
      type: str
      sample: /var/backups/runbook/app/volume-pgdata-20261123T091500Z-3fa9c1.tar.zst
    directory:
      description: The directory that was (or would be) copied.
      type: str
      sample: /var/lib/docker/volumes/pgdata/_data
    size:
      description: Stored (compressed) size in bytes.
      type: int
      sample: 10485760
    raw_size:
      description: Size of the tarball before compression, in bytes.
      type: int
      sample: 52428800
    sha256:
      description: sha256 of the stored object.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    files:
      description: Entries (files, directories, links) in the tarball and bytes of file content.
      type: dict
      sample: {"count": 1520, "bytes": 52101120}
    duration_seconds:
      description: How long the backup took.
      type: float
      sample: 3.4
    running_containers:
      description: Running containers that used the directory (only with O(allow_running=true)).
      type: list
      elements: str
      sample: []
    volume:
      description: The Docker volume copied (the one found for O(compose_project)); null for O(path).
      type: str
      sample: tasktracker_pgdata
    stopped_containers:
      description: Containers stopped for the copy (O(stop_containers=true)); in check mode, those that would be.
      type: list
      elements: str
      sample: [tasktracker_db_1]
    started_containers:
      description: Containers started again after the copy; in check mode, those that would be.
      type: list
      elements: str
      sample: [tasktracker_db_1]
    skipped_sockets:
      description:
        - Unix sockets below the directory, relative to it. C(tar) leaves sockets out (the process that
          listens on one creates it); each run names them in a warning.
      type: list
      elements: str
      sample: [run/app.sock]
deleted:
  description: Ids of the backups retention deleted (in check mode, would delete).
  returned: always
  type: list
  elements: str
  sample: [volume-pgdata-20261020T091500Z-aa01bc]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _backup as backups
from ansible_collections.runbook.ops.plugins.module_utils import _volume as volumes
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import STORE_OPTIONS, VOLUME_SOURCE_OPTIONS, merged
from ansible_collections.runbook.ops.plugins.module_utils._store import store_from_params


def main():
    handle_termination()  # SIGTERM cleans up like Ctrl-C
    module = AnsibleModule(
        argument_spec=merged(
            STORE_OPTIONS, VOLUME_SOURCE_OPTIONS,
            allow_running={"type": "bool", "default": False},
            stop_containers={"type": "bool", "default": False},
            stop_timeout={"type": "int", "default": 30},
            compression={"type": "str", "choices": ["zstd", "gzip", "none"], "default": "zstd"},
            compression_level={"type": "int"},
            keep_last={"type": "int"},
            keep_days={"type": "int"},
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        backups.require_libraries(store_type=params["store"]["type"], compression=params["compression"])
        if params["keep_last"] is not None and params["keep_last"] < 1:
            raise ParameterError("keep_last must be at least 1")
        if params["keep_days"] is not None and params["keep_days"] < 0:
            raise ParameterError("keep_days must not be negative")
        source = volumes.VolumeSource(volume=params["volume"], path=params["path"], label=params["label"],
                                      docker_cli=params["docker_cli"], compose_project=params["compose_project"])
        spec = source.spec(params["service"], params["compression"], params["compression_level"])
        store = store_from_params(params["store"])
        if module.check_mode:
            planned = volumes.plan_volume_backup(store, source, spec, params["allow_running"], params["stop_containers"])
            expired = backups.expired_backups(store, spec, params["keep_last"], params["keep_days"])
            _warn_unchecked(module, planned)
            msg = "would back up %s (%s) to %s%s" % (source.describe(), planned["directory"], planned["location"],
                                                     _stopped_text(planned["stopped_containers"], True))
            module.exit_json(changed=True, backup=planned, deleted=[e.backup_id for e in expired], msg=msg)
        manifest = volumes.take_volume_backup(store, source, spec, params["allow_running"], params["stop_containers"],
                                              params["stop_timeout"])
        expired = backups.expired_backups(store, spec, params["keep_last"], params["keep_days"],
                                          protect={manifest["id"]})
        deleted = backups.delete_backups(store, expired)
    except RunbookError as exc:
        fail_with(module, exc)
    _warn_unchecked(module, manifest)
    deferred = manifest.pop("deferred_signals", None)
    if deferred:
        module.warn("%s arrived while containers were stopped for the copy: the backup was finished and the "
                    "containers started again first" % " and ".join(deferred))
    module.exit_json(changed=True, backup=manifest, deleted=deleted,
                     msg="backed up %s to %s (%d entries, %d bytes stored) in %.1fs%s%s"
                     % (source.describe(), manifest["location"], manifest["files"]["count"], manifest["size"],
                        manifest["duration_seconds"], _stopped_text(manifest.get("stopped_containers"), False),
                        "; retention deleted %d older backups" % len(deleted) if deleted else ""))


def _stopped_text(names, check_mode):
    if not names:
        return ""
    return "; %s container%s %s for the copy" % ("would stop and start again" if check_mode else "stopped and started again",
                                                 "s" if len(names) > 1 else "", ", ".join(names))


def _warn_unchecked(module, planned):
    if not planned["containers_checked"]:
        module.warn("Docker could not be asked which containers use %s; make sure no database server writes to it"
                    % planned["directory"])
    sockets = planned.get("skipped_sockets") or []
    if sockets:
        module.warn("%d Unix socket%s in %s cannot be backed up and %s left out (the process listening on a socket "
                    "creates it again): %s" % (len(sockets), "s" if len(sockets) > 1 else "", planned["directory"],
                                               "are" if len(sockets) > 1 else "is", ", ".join(sockets[:20])
                                               + (", ..." if len(sockets) > 20 else "")))


if __name__ == "__main__":
    main()
