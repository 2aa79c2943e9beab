#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: files_sync
short_description: Keep a directory of uploaded files in step with an S3 prefix, in either direction
version_added: 0.2.0
description:
  - Copies the files of a local directory to an S3 prefix (O(direction=upload)) or back
    (O(direction=download)), incrementally - only files that are missing on the other side, or differ
    in size, or, sizes being equal, in sha256. Unchanged files cost no transfer.
  - The sha256 of each file travels in its object's metadata (C(x-amz-meta-sha256)), with its mode and
    modification time, so a download restores permissions and times. An ETag is not used as a checksum
    (it is not an MD5 for multipart uploads).
  - An upload writes a manifest, C(.files_sync.manifest.json), beside the objects (every object's size,
    sha256, mode and ETag, and the time of the sync). Later runs read each object's sha256 from it while
    the object's ETag is unchanged, so a sync of many files does not ask S3 about each one.
  - A local manifest (mode 0600, written atomically; O(manifest_path)) records the sha256 of each local
    file under its size and modification time, so unchanged files are not read again.
  - Copies are atomic. An upload is one PUT or a multipart upload completed only after the whole file
    was read; a download goes to a hidden temporary file in the same directory, is checked against the
    sha256 of the object, and only then renamed into place. An interrupted sync (SIGTERM, a cancelled
    job) leaves no half-written file, and the next run copies only what is still missing or different.
  - Files are streamed, never held whole in memory (one part of 8 MiB per file in flight at most), and at
    most O(workers) files are copied at a time.
  - Symlinks are never followed nor copied, and special files (sockets, FIFOs, devices) are not copied;
    both are listed in RV(left_out). A download never writes through a symlink or outside O(path).
  - Nothing is deleted unless O(delete=true).
  - With O(snapshot), each sync goes to (or comes from) a folder of the prefix named by its UTC date,
    for versioned copies, and O(retention_days) deletes the snapshots older than that.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.store
options:
  path:
    description:
      - The local directory, absolute. An upload needs it to exist; a download creates it.
    type: path
    required: true
  direction:
    description:
      - V(upload) makes the S3 prefix match O(path); V(download) makes O(path) match the S3 prefix.
    type: str
    required: true
    choices: [upload, download]
  delete:
    description:
      - Delete what the destination has and the source does not (objects on upload, files on download).
        Files left out by O(include)/O(exclude) are never deleted.
      - Directories a download deletion leaves empty are removed.
    type: bool
    default: false
  include:
    description:
      - Glob patterns (fnmatch, on paths relative to O(path) with C(/) separators). When given, only
        files matching one are synced. C(*) also matches C(/).
    type: list
    elements: str
    default: []
  exclude:
    description:
      - Glob patterns of files and directories to leave out, such as C(*.tmp) or C(cache/*). An excluded
        directory is not entered.
    type: list
    elements: str
    default: []
  workers:
    description: How many files are copied (or hashed, or asked about) at the same time.
    type: int
    default: 8
  manifest_path:
    description:
      - The local manifest. Defaults to C(.files_sync.manifest.json) in O(path), which is never synced nor
        deleted.
    type: path
  snapshot:
    description:
      - Sync with a folder of the prefix instead of the prefix itself (versioned copies).
      - V(today) (uploads) is the current UTC date, C(YYYY-MM-DD); V(latest) (downloads) is the newest
        existing snapshot; or a name such as C(2026-11-30) or C(20261130T091500Z).
      - A new snapshot folder is a full copy.
      - Keep snapshot and plain syncs in different prefixes; a plain sync sees the snapshot folders as files
        (and with O(delete=true) would delete them).
    type: str
  retention_days:
    description:
      - With O(snapshot) and O(direction=upload), delete the snapshot folders whose names are more than
        this many days old after a successful sync. The newest snapshot and the one just written are
        always kept.
    type: int
  list_limit:
    description: At most this many entries in each list of the result (the counts are always complete).
    type: int
    default: 100
attributes:
  check_mode:
    support: full
    description: Lists what would be copied, deleted and left out, without writing, deleting or writing a manifest.
  diff_mode:
    support: none
    description: The result lists the files instead.
  idempotent:
    support: full
    description: A second run with nothing changed on either side copies nothing and reports no change.
notes:
  - Only S3 stores (O(store.type=s3)); O(store.prefix) is the synced prefix.
  - Objects written by other tools carry no sha256; those of equal size are copied once, after which they do.
  - The sync is not a snapshot of a directory being written to; a file that changes while it is uploaded
    is reported in RV(failures) and copied by the next run.
seealso:
  - module: runbook.ops.volume_backup
  - module: runbook.ops.db_backup
"""

EXAMPLES = r"""
- name: Upload the service's uploads to S3 (daily; files deleted locally are deleted remotely)
  runbook.ops.files_sync:
    path: /srv/app/data/uploads
    direction: upload
    delete: true
    exclude: ['*.tmp', 'cache/*']
    store:
      type: s3
      bucket: acme-backups
      prefix: app/uploads
      access_key: "{{ s3_access_key }}"
      secret_key: "{{ s3_secret_key }}"

- name: Keep a dated copy per day for 90 days
  runbook.ops.files_sync:
    path: /srv/app/data/uploads
    direction: upload
    snapshot: today
    retention_days: 90
    store: "{{ backup_store | combine({'prefix': 'app/uploads-daily'}) }}"

- name: Show what a restore of the uploads would copy
  runbook.ops.files_sync:
    path: /srv/app/data/uploads
    direction: download
    delete: true
    store: "{{ backup_store | combine({'prefix': 'app/uploads'}) }}"
  check_mode: true
"""

RETURN = r"""
direction:
  description: O(direction).
  returned: always
  type: str
  sample: upload
location:
  description: The synced S3 folder.
  returned: always
  type: str
  sample: s3://acme-backups/app/uploads/
snapshot:
  description: The snapshot folder synced with, or null without O(snapshot).
  returned: always
  type: str
  sample: "2026-11-30"
counts:
  description: What the sync did (in check mode, would do). C(bytes) is the size of the copied files.
  returned: always
  type: dict
  sample: {"copied": 12, "deleted": 1, "unchanged": 9988, "mode_fixed": 0, "left_out": 1, "failed": 0,
           "bytes": 1048576, "local_files": 10000, "remote_objects": 10000}
copied:
  description: Files copied (or that would be), with why; at most O(list_limit).
  returned: always
  type: list
  elements: dict
  sample: [{"path": "avatars/7.png", "reason": "new"}, {"path": "docs/a.pdf", "reason": "content differs"}]
deleted:
  description: Files or objects deleted (or that would be); at most O(list_limit).
  returned: always
  type: list
  elements: str
  sample: [old/report.pdf]
mode_fixed:
  description: Downloaded files whose content matched but whose mode was set back.
  returned: always
  type: list
  elements: str
  sample: []
left_out:
  description: Entries left out (symlinks, special files, names an S3 key cannot hold), with why.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "current", "reason": "symlink (not followed)"}]
failures:
  description: Files that could not be copied (the others were); the task then fails.
  returned: always
  type: list
  elements: dict
  sample: [{"key": "locked.bin", "error": "Permission denied"}]
expired_snapshots:
  description: Snapshot folders deleted by O(retention_days) (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: ["2026-08-31"]
truncated:
  description: Whether a list was cut at O(list_limit).
  returned: always
  type: bool
  sample: false
manifest:
  description: Where the manifests were written (null in check mode; no remote one for a download).
  returned: always
  type: dict
  sample: {"local": /srv/app/data/uploads/.files_sync.manifest.json,
           "remote": s3://acme-backups/app/uploads/.files_sync.manifest.json}
source_synced_at:
  description:
    - For a download, when the upload that wrote the manifest beside the objects finished (UTC); null without one.
  returned: always
  type: str
  sample: "2026-11-30T03:00:12Z"
source_age_seconds:
  description: For a download, the age of RV(source_synced_at) in seconds (how old the restored files are).
  returned: always
  type: int
  sample: 20412
duration_seconds:
  description: How long the sync took.
  returned: always
  type: float
  sample: 3.2
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _files_sync as files_sync
from ansible_collections.runbook.ops.plugins.module_utils._backup import require_libraries
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import STORE_OPTIONS, merged
from ansible_collections.runbook.ops.plugins.module_utils._store import S3_PARTS_IN_FLIGHT, store_from_params


def main():
    handle_termination()  # SIGTERM cancels queued copies; running ones end cleanly
    module = AnsibleModule(
        argument_spec=merged(
            STORE_OPTIONS,
            path={"type": "path", "required": True},
            direction={"type": "str", "required": True, "choices": list(files_sync.DIRECTIONS)},
            delete={"type": "bool", "default": False},
            include={"type": "list", "elements": "str", "default": []},
            exclude={"type": "list", "elements": "str", "default": []},
            workers={"type": "int", "default": files_sync.DEFAULT_WORKERS},
            manifest_path={"type": "path"},
            snapshot={"type": "str"},
            retention_days={"type": "int"},
            list_limit={"type": "int", "default": files_sync.DEFAULT_LIST_LIMIT},
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        require_libraries(store_type=params["store"]["type"])
        workers = params["workers"] or 1
        store = store_from_params(params["store"], max_pool_connections=max(10, workers * S3_PARTS_IN_FLIGHT))
        sync = files_sync.FilesSync(
            store, params["path"], params["direction"], delete=params["delete"],
            path_filter=files_sync.PathFilter(params["include"], params["exclude"]), workers=params["workers"],
            manifest_path=params["manifest_path"], list_limit=params["list_limit"], snapshot=params["snapshot"],
            retention_days=params["retention_days"])
        result = sync.run(check_mode=module.check_mode)
    except RunbookError as exc:
        fail_with(module, exc)
    counts = result["counts"]
    if counts["left_out"]:
        module.warn("%d entr%s left out (symlinks are never followed): %s"
                    % (counts["left_out"], "y" if counts["left_out"] == 1 else "ies",
                       ", ".join("%s: %s" % (item["path"], item["reason"]) for item in result["left_out"][:10])))
    result["msg"] = "%s%s %s %s: %d copied (%d bytes), %d deleted, %d unchanged%s%s" % (
        "check mode: would " if module.check_mode else "", "upload" if params["direction"] == "upload" else "download",
        result["path"] if params["direction"] == "upload" else result["location"],
        "to " + result["location"] if params["direction"] == "upload" else "to " + result["path"],
        counts["copied"], counts["bytes"], counts["deleted"], counts["unchanged"],
        ", %d mode(s) set back" % counts["mode_fixed"] if counts["mode_fixed"] else "",
        ", %d expired snapshot(s) deleted" % len(result["expired_snapshots"]) if result["expired_snapshots"] else "")
    if counts["failed"]:
        module.fail_json(**dict(result, msg=files_sync.failure_message(result)))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
