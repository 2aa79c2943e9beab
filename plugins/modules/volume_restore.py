#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: volume_restore
short_description: Restore a Docker named volume or a host directory from a tarball backup
version_added: 0.1.0
description:
  - Restores the latest complete backup made by M(runbook.ops.volume_backup) for a service and label,
    or the one named by O(backup_id).
  - The backup streams into C(tar -x --numeric-owner) in a new directory beside the target (on the same
    file system), so owners, groups and modes come back exactly. The target is replaced only when the
    object matched its manifest (size and sha256), C(tar) exited cleanly, and the unpacked tree has the
    number of entries and bytes the manifest records. A truncated or corrupt backup leaves the target as
    it was.
  - The replacement is two renames; the previous directory is kept as C(<dir>.pre-restore-<stamp>)
    (O(keep_previous)). For a Docker volume the target is the volume's C(Mountpoint) directory.
  - Refuses to restore over a non-empty directory unless O(force=true).
  - A running container keeps the directory it was started with, so it would not see a directory swapped
    in under it (and would go on writing to the replaced one). The module therefore refuses while a running
    container mounts the volume or directory, naming the containers, unless O(stop_containers=true). Then
    the backup is unpacked and checked first, the containers are stopped only for the swap, and they are
    started again afterwards whatever happens (an error or SIGTERM included).
  - An interrupted or failed restore removes its work directory. Work directories of a restore that was
    killed (SIGKILL, a power cut) are removed by a later restore into the same place once a day old.
  - O(verify_only=true) unpacks and checks the backup the same way, then removes it; the target is not touched.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.store
  - runbook.ops.volume_source
options:
  backup_id:
    description: Backup to restore. Defaults to the newest complete backup of the service and label.
    type: str
  force:
    description: Replace a directory that is not empty.
    type: bool
    default: false
  keep_previous:
    description:
      - Keep the replaced directory as C(<dir>.pre-restore-<stamp>) beside the target. Otherwise it is
        deleted after the swap.
    type: bool
    default: true
  stop_containers:
    description:
      - Stop the running containers that mount the volume or directory (C(docker stop)) just before the swap
        and start them again (C(docker start)) right after it, also when the swap fails. RV(stopped_containers)
        and RV(started_containers) say what was done. A container that does not start again fails the task,
        with C(changed=true) when the data was restored.
      - Containers started with C(--rm) are refused, since stopping them would remove them.
      - SIGTERM and SIGINT (a job cancel, C(timeout)) are held from the first C(docker stop) until the
        containers run again, so the swap is finished and reported as it happened (with a warning) instead
        of leaving a container stopped. Before that point they end the task and remove its work directory.
    type: bool
    default: false
  stop_timeout:
    description: Seconds C(docker stop) gives each container to stop before it is killed.
    type: int
    default: 30
  allow_running:
    description:
      - Deprecated; no longer has any effect. A restore never swaps a directory under a running container,
        which would keep seeing (and writing to) the replaced one; use O(stop_containers=true).
    type: bool
    default: false
  verify_only:
    description:
      - Unpack the backup beside the target, check sha256, size, C(tar) and the entry and byte counts
        against the manifest, then remove it. The target and its users are left alone.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Finds and checks the backup's manifest, the target and the containers that use it, and
      reports what would be restored where (and what would be refused) without changing anything.
  diff_mode:
    support: none
    description: Directory contents are not shown as a diff.
  idempotent:
    support: none
    description: Each run restores again (O(verify_only=true) changes nothing).
notes:
  - Run as root (C(become)) so that owners and groups can be restored.
seealso:
  - module: runbook.ops.volume_backup
  - module: runbook.ops.backup_info
"""

EXAMPLES = r"""
- name: Restore the latest backup of the PostgreSQL data volume, stopping its container for the swap
  runbook.ops.volume_restore:
    service: tasktracker
    volume: tasktracker_postgres_staging_data
    force: true
    stop_containers: true
    store:
      type: s3
      bucket: acme-backups
      prefix: staging
  become: true

- name: Restore the database volume of a Compose project (found by its Compose labels)
  runbook.ops.volume_restore:
    service: tasktracker
    compose_project: tasktracker
    volume: pgdata
    force: true
    stop_containers: true
    store:
      type: local
      path: /var/backups/runbook
  become: true

- name: Check that a given backup unpacks cleanly, without touching the directory
  runbook.ops.volume_restore:
    service: s3desk
    path: /srv/s3desk/data
    backup_id: volume-data-20261123T091500Z-3fa9c1
    verify_only: true
    store:
      type: local
      path: /var/backups/runbook
  become: true
"""

RETURN = r"""
backup:
  description: The backup that was (or would be) restored.
  returned: always
  type: dict
  contains:
    id:
      description: Backup id.
      type: str
      sample: volume-pgdata-20261123T091500Z-3fa9c1
    location:
      description: Where the data object is.
      type: str
      sample: s3://acme-backups/staging/tasktracker/volume-pgdata-20261123T091500Z-3fa9c1.tar.zst
    size:
      description: Stored size in bytes.
      type: int
      sample: 1048576
    sha256:
      description: sha256 the object matched.
      type: str
      sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    started:
      description: When the backup was taken (UTC).
      type: str
      sample: "2026-11-23T09:15:00.000000Z"
    files:
      description: Entries and bytes recorded in the manifest.
      type: dict
      sample: {"count": 1520, "bytes": 52101120}
target:
  description: The directory restored (a volume's Mountpoint, or O(path)).
  returned: always
  type: str
  sample: /var/lib/docker/volumes/pgdata/_data
previous:
  description: Where the replaced directory was (or would be) kept; null when there was none or it was deleted.
  returned: always
  type: str
  sample: /var/lib/docker/volumes/pgdata/_data.pre-restore-20261123T101500Z
verified:
  description: Whether the backup was unpacked and matched its manifest (false in check mode).
  returned: always
  type: bool
  sample: true
files:
  description: Entries and bytes of the unpacked tree.
  returned: success, not in check mode
  type: dict
  sample: {"count": 1520, "bytes": 52101120}
running_containers:
  description: Running containers that used the directory when the restore started.
  returned: always
  type: list
  elements: str
  sample: [tasktracker_postgres_1]
stopped_containers:
  description: Containers stopped for the swap (O(stop_containers=true)); in check mode, those that would be.
  returned: always
  type: list
  elements: str
  sample: [tasktracker_postgres_1]
started_containers:
  description: Containers started again after the swap; empty in check mode.
  returned: always
  type: list
  elements: str
  sample: [tasktracker_postgres_1]
duration_seconds:
  description: How long unpacking and swapping took.
  returned: success, not in check mode
  type: float
  sample: 2.1
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _backup as backups
from ansible_collections.runbook.ops.plugins.module_utils import _volume as volumes
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import STORE_OPTIONS, VOLUME_SOURCE_OPTIONS, merged
from ansible_collections.runbook.ops.plugins.module_utils._store import store_from_params


def main():
    handle_termination()  # SIGTERM cleans up like Ctrl-C
    module = AnsibleModule(
        argument_spec=merged(
            STORE_OPTIONS, VOLUME_SOURCE_OPTIONS,
            backup_id={"type": "str"},
            force={"type": "bool", "default": False},
            keep_previous={"type": "bool", "default": True},
            allow_running={"type": "bool", "default": False},
            stop_containers={"type": "bool", "default": False},
            stop_timeout={"type": "int", "default": 30},
            verify_only={"type": "bool", "default": False},
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["allow_running"]:
        module.warn("allow_running is deprecated for volume_restore and has no effect: a running container would "
                    "not see the restored directory; use stop_containers: true")
    try:
        backups.require_libraries(store_type=params["store"]["type"])
        source = volumes.VolumeSource(volume=params["volume"], path=params["path"], label=params["label"],
                                      docker_cli=params["docker_cli"], compose_project=params["compose_project"])
        spec = source.spec(params["service"])
        store = store_from_params(params["store"])
        result = volumes.restore_volume(
            store, source, spec, backup_id=params["backup_id"], force=params["force"],
            keep_previous=params["keep_previous"], stop_containers=params["stop_containers"],
            stop_timeout=params["stop_timeout"], verify_only=params["verify_only"], check_mode=module.check_mode)
    except RunbookError as exc:
        fail_with(module, exc)
    if not result["containers_checked"] and not params["verify_only"]:
        module.warn("Docker could not be asked which containers use %s; make sure no database server writes to it"
                    % result["target"])
    deferred = result.pop("deferred_signals", None)
    if deferred:
        module.warn("%s arrived while containers were stopped for the swap: the restore was finished and the "
                    "containers started again first" % " and ".join(deferred))
    left_behind = result.pop("left_behind", None)
    if left_behind:
        module.warn("interrupted while deleting the replaced directory %s after the restore; a later restore "
                    "beside it removes it once it is a day old" % left_behind)
    backup_id = result["backup"]["id"]
    if params["verify_only"]:
        verb = "would verify" if module.check_mode else "verified"
        msg = "%s backup %s (%s)" % (verb, backup_id, "unpacks cleanly and matches its manifest"
                                     if result["verified"] else "manifest found")
        module.exit_json(changed=False, msg=msg, **result)
    verb = "would restore" if module.check_mode else "restored"
    kept = "; previous directory kept as %s" % result["previous"] if result["previous"] else ""
    if result["stopped_containers"]:
        kept += "; %s container%s %s for the swap" % (
            "would stop and start again" if module.check_mode else "stopped and started again",
            "s" if len(result["stopped_containers"]) > 1 else "", ", ".join(result["stopped_containers"]))
    module.exit_json(changed=True, msg="%s backup %s into %s%s" % (verb, backup_id, result["target"], kept), **result)


if __name__ == "__main__":
    main()
