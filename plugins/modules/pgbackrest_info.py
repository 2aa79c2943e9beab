#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_info
short_description: Report a pgBackRest stanza's backups and WAL archive, rated against an RPO
version_added: 0.2.0
description:
  - Reads C(pgbackrest info --output=json) and the time the newest WAL segment reached the repository
    (C(pgbackrest repo-ls)), and rates them on the collection's V(ok) / V(warning) / V(critical) scale.
  - C(wal_archive) is V(critical) when the newest archived segment is older than O(rpo), V(warning) past
    O(rpo_warning) (half the RPO by default), and V(critical) when the stanza cannot be read (missing, wrong
    passphrase) or nothing was archived. With connection options, C(pg_stat_archiver) of the cluster is read too, and a
    failing C(archive_command) (a failure newer than the last success) is V(critical).
  - C(backups) is V(critical) without any backup or when the newest is older than O(max_backup_age), V(warning) when
    pgBackRest found page checksum errors in a backup.
  - On a quiet database no new WAL means no new segment; PostgreSQL's C(archive_timeout) (see
    M(runbook.ops.pgbackrest_stanza)) bounds that age, so keep it well below the RPO.
  - With O(login_user) or O(login_host), the module reads C(pg_stat_archiver) of the cluster over that connection
    to see failing archiving; without, only the repository is read.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.pgbackrest
  - runbook.ops.postgres
  - runbook.ops.read_only_check
options:
  rpo:
    description: Recovery point objective. Seconds, or a duration such as V(15m), V(1h).
    type: str
  rpo_warning:
    description: Archive age that is a warning; defaults to half the RPO.
    type: str
  max_backup_age:
    description: The newest backup may be at most this old, for example V(26h); empty for no limit.
    type: str
  target_type:
    description:
      - With a recovery target, a third check C(target) says whether the repository covers it before a restore is
        attempted (as M(runbook.ops.pgbackrest_restore) would choose) - a backup that ended before it and, for
        V(time), a WAL archive whose newest segment reached the repository after it. V(critical) when not.
    type: str
    choices: [latest, time, lsn, name, immediate]
  target:
    description: The target of O(target_type) V(time) (a timestamp with a time zone), V(lsn) or V(name).
    type: str
  exclusive:
    description: The target is exclusive (V(time) and V(lsn)).
    type: bool
    default: false
  backup_set:
    description: The backup label a restore would start from, instead of the one chosen for the target.
    type: str
seealso:
  - module: runbook.ops.pgbackrest_backup
  - module: runbook.ops.backup_info
"""

EXAMPLES = r"""
- name: Is the WAL archive within the RPO of one hour?
  runbook.ops.pgbackrest_info:
    stanza: app
    config: /etc/pgbackrest/app.conf
    rpo: 1h
    max_backup_age: 26h
    login_host: 127.0.0.1
    login_user: monitor
    login_password: "{{ vault_monitor_password }}"
  register: pitr_status
"""

RETURN = r"""
state:
  description: The overall state, the worse of the two checks.
  returned: always
  type: str
  sample: ok
checks:
  description: C(wal_archive) (last segment, its time and age, the RPO, archiver failures), C(backups) (count,
    newest, its age) and, with O(target_type), C(target) (the backup a restore starts from, the archive's end),
    each with a state and its reasons.
  returned: always
  type: list
  elements: dict
  sample:
    - {name: wal_archive, state: ok, reasons: [], last_segment: "00000001000000000000000B",
       last_segment_at: "2026-11-30T21:13:14Z", age_seconds: 42, rpo_seconds: 3600}
    - {name: backups, state: ok, reasons: [], count: 3, latest: 20261130-211032F_20261130-211129I,
       latest_finished: "2026-11-30T21:11:31Z", latest_age_seconds: 180}
    - {name: target, state: ok, reasons: [], target_type: time, target: "2026-11-30 21:12:00.000000+00",
       backup: 20261130-211032F_20261130-211129I, backup_finished: "2026-11-30T21:11:31Z",
       archive_end: "2026-11-30T21:13:14Z", last_segment: "00000001000000000000000B"}
info:
  description: The stanza as pgBackRest lists it, parsed; backups oldest first.
  returned: always
  type: dict
summary:
  description: Counts of checks per state.
  returned: always
  type: dict
msg:
  description: One line, for example C(stanza app - 2 of 2 checks ok, overall ok).
  returned: always
  type: str
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _pgbackrest as pgbr
from ansible_collections.runbook.ops.plugins.module_utils import _status as status
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._manifest import parse_duration
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import POSTGRES_OPTIONS, merged, pg_server

ARCHIVER_SQL = ("SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, "
                "last_failed_time FROM pg_catalog.pg_stat_archiver")


def main():
    handle_termination()
    module = AnsibleModule(
        argument_spec=merged(
            pgbr.PGBACKREST_OPTIONS, POSTGRES_OPTIONS,
            rpo={"type": "str"},
            rpo_warning={"type": "str"},
            max_backup_age={"type": "str"},
            target_type={"type": "str", "choices": list(pgbr.TARGET_TYPES)},
            target={"type": "str"},
            exclusive={"type": "bool", "default": False},
            backup_set={"type": "str"},
            fail_on=status.FAIL_ON_ARGSPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        rpo = parse_duration(p["rpo"], "rpo")
        rpo_warning = parse_duration(p["rpo_warning"], "rpo_warning")
        max_backup_age = parse_duration(p["max_backup_age"], "max_backup_age")
        pgbackrest = pgbr.pgbackrest_from_params(p, module.get_bin_path)
        info = pgbackrest.info()
        last = pgbackrest.last_segment_epoch(info) if pgbr.info_problem(info) is None else None
        archiver = None
        if p["login_user"] or p["login_host"]:
            rows = pg_server(p).query_rows("postgres", ARCHIVER_SQL)
            archiver = rows[0] if rows else None
        now = datetime.datetime.now(datetime.timezone.utc)
        target = None
        if p["target_type"]:
            target = {"target_type": p["target_type"], "target": p["target"], "exclusive": p["exclusive"],
                      "backup_set": p["backup_set"]}
        result = pgbr.report(info, last, now, rpo, rpo_warning, archiver, max_backup_age, target)
    except RunbookError as exc:
        fail_with(module, exc, changed=False)
    if archiver:
        for key, value in list(archiver.items()):
            if isinstance(value, datetime.datetime):
                archiver[key] = value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    result.update(info=info, archiver=archiver, changed=False)
    if status.fails(result["state"], p["fail_on"]):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
