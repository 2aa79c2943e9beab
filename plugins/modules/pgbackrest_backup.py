#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_backup
short_description: Take a pgBackRest backup (full, differential or incremental) and report it
version_added: 0.2.0
description:
  - Runs C(pgbackrest backup --type=<type>) for a stanza that M(runbook.ops.pgbackrest_stanza) set up, and reports
    the new backup from C(pgbackrest info) (label, type, the backup it builds on, size in the cluster and in the
    repository, WAL range, times) and the backups retention expired.
  - pgBackRest quietly takes a full backup when a V(diff) or V(incr) has nothing to build on; the module says so
    in a warning and in the C(type) of RV(backup).
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.pgbackrest
options:
  type:
    description: V(full) copies everything; V(diff) what changed since the last full; V(incr) since the last backup.
    type: str
    choices: [full, diff, incr]
    default: full
  start_fast:
    description: Ask PostgreSQL for an immediate checkpoint, so the backup starts at once instead of after the next
      scheduled checkpoint (more I/O at the start).
    type: bool
    default: true
  archive_timeout:
    description: Seconds to wait for the WAL the backup needs to reach the repository; empty for the config file's.
    type: int
attributes:
  check_mode:
    support: full
    description: Reads the repository and reports the backup it would take (and whether it would be a full one);
      takes none.
  diff_mode:
    support: none
    description: A backup has nothing to diff.
  idempotent:
    support: none
    description: Every run takes a new backup.
seealso:
  - module: runbook.ops.pgbackrest_stanza
  - module: runbook.ops.pgbackrest_info
"""

EXAMPLES = r"""
- name: Nightly differential backup
  runbook.ops.pgbackrest_backup:
    stanza: app
    config: /etc/pgbackrest/app.conf
    type: diff
  register: pitr_backup

- name: Show it
  ansible.builtin.debug:
    msg: "{{ pitr_backup.backup.label }}: {{ pitr_backup.backup.repo_size | human_readable }} in the repository"
"""

RETURN = r"""
backup:
  description: The new backup as C(pgbackrest info) lists it (in check mode, what would be taken).
  returned: always
  type: dict
  sample:
    label: 20261130-211032F_20261130-211126D
    type: diff
    prior: 20261130-211032F
    size: 22956398
    delta: 1536000
    repo_size: 3057568
    repo_delta: 180224
    started: "2026-11-30T21:11:26Z"
    finished: "2026-11-30T21:11:28Z"
    wal_start: "000000010000000000000006"
    wal_stop: "000000010000000000000006"
    error: false
duration_seconds:
  description: Wall time of the backup command.
  returned: success and not check mode
  type: float
expired:
  description: Labels of the backups retention removed after this one.
  returned: success and not check mode
  type: list
  elements: str
commands:
  description: The pgBackRest command lines run (they never hold a secret).
  returned: always
  type: list
  elements: list
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _pgbackrest as pgbr
from ansible_collections.runbook.ops.plugins.module_utils._errors import PitrError, RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import merged


def main():
    handle_termination()
    module = AnsibleModule(
        argument_spec=merged(
            pgbr.PGBACKREST_OPTIONS,
            type={"type": "str", "choices": list(pgbr.BACKUP_TYPES), "default": "full"},
            start_fast={"type": "bool", "default": True},
            archive_timeout={"type": "int"},
        ),
        supports_check_mode=True,
    )
    p = module.params
    pgbackrest = None
    try:
        pgbackrest = pgbr.pgbackrest_from_params(p, module.get_bin_path)
        options = pgbr.backup_options(p["type"], p["start_fast"], p["archive_timeout"])
        before = pgbackrest.info()
        problem = pgbr.info_problem(before)
        if problem:
            raise PitrError(problem)
        if pgbr.backup_needs_full(p["type"], before):
            module.warn("no full backup of stanza %s to build the %s backup on: pgBackRest takes a full one"
                        % (p["stanza"], p["type"]))
        if module.check_mode:
            kind = "full" if pgbr.backup_needs_full(p["type"], before) else p["type"]
            module.exit_json(changed=True, backup={"label": None, "type": kind, "prior": before["latest"]},
                             commands=pgbackrest.commands + [pgbackrest.argv("backup", options)],
                             msg="would take a %s backup of stanza %s" % (kind, p["stanza"]))
        clock = time.monotonic()
        pgbackrest.run("backup", options)
        duration = round(time.monotonic() - clock, 3)
        after = pgbackrest.info()
        labels = [b["label"] for b in before["backups"]]
        made = pgbr.new_backup(labels, after)
        remaining = {b["label"] for b in after["backups"]}
        expired = [label for label in labels if label not in remaining]
    except RunbookError as exc:
        fail_with(module, exc, changed=bool(pgbackrest and any("backup" in argv for argv in pgbackrest.commands)),
                  commands=pgbackrest.commands if pgbackrest else [])
    module.exit_json(changed=True, backup=made, duration_seconds=duration, expired=expired,
                     commands=pgbackrest.commands,
                     msg="%s backup %s of stanza %s in %.1fs: %d bytes, %d in the repository%s"
                         % (made["type"], made["label"], p["stanza"], duration, made["size"] or 0,
                            made["repo_size"] or 0, "; expired %s" % ", ".join(expired) if expired else ""))


if __name__ == "__main__":
    main()
