#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_info
short_description: List a store's backups of a service and check the age of the latest (RPO)
version_added: 0.1.0
description:
  - Lists the backups of a service in a store, newest first, complete or not, with their age.
  - A backup is complete when its data object and its manifest are both present; C(latest) is the newest
    complete one.
  - With O(max_age), fails (or warns, see O(max_age_action)) when the latest complete backup is older than
    the RPO, or when there is none.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.store
  - runbook.ops.read_only_check.read_only
options:
  service:
    description: Service whose backups to list.
    type: str
    required: true
  engine:
    description: Only backups of this engine (V(volume) for the tarballs of M(runbook.ops.volume_backup)).
    type: str
    choices: [postgresql, sqlite, volume]
  database:
    description:
      - Only backups of exactly this database (PostgreSQL name, or SQLite name such as C(app) for C(app.db)),
        as their manifests name it; databases whose names differ only in punctuation are told apart.
    type: str
  path:
    description:
      - Only backups of the SQLite database file at this path; its database name is the file name without its
        last extension (C(app.v2.db) is C(app.v2)), the rule M(runbook.ops.db_backup) uses. Mutually exclusive
        with O(database).
    type: path
  max_age:
    description:
      - RPO. The latest complete backup must be younger than this. Seconds, or a duration such as V(1h), V(26h).
    type: str
  max_age_action:
    description: What to do when the RPO is missed.
    type: str
    choices: [fail, warn]
    default: fail
  with_manifest:
    description: Return the manifest of the latest complete backup (one more read from the store).
    type: bool
    default: true
seealso:
  - module: runbook.ops.db_backup
"""

EXAMPLES = r"""
- name: Fail when the last good backup of app is older than 1 hour (RPO)
  runbook.ops.backup_info:
    service: app
    engine: postgresql
    database: app
    max_age: 1h
    store:
      type: s3
      bucket: acme-backups
      prefix: prod

- name: List backups, warning only
  runbook.ops.backup_info:
    service: s3desk
    max_age: 26h
    max_age_action: warn
    store:
      type: local
      path: /var/backups/runbook
  register: backups
"""

RETURN = r"""
backups:
  description: Backups of the service, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Backup id.
      type: str
      sample: postgresql-app-20261123T091500Z-3fa9c1
    engine:
      description: Database engine.
      type: str
      sample: postgresql
    database:
      description: Database name (as used in the id).
      type: str
      sample: app
    complete:
      description: Whether both the data object and the manifest are present.
      type: bool
      sample: true
    created:
      description: When the backup was started (UTC).
      type: str
      sample: "2026-11-23T09:15:00.000000Z"
    age_seconds:
      description: Age in seconds.
      type: int
      sample: 3600
    age:
      description: Age for people.
      type: str
      sample: 1h
    object:
      description: Store key of the data object (null when missing).
      type: str
      sample: app/postgresql-app-20261123T091500Z-3fa9c1.dump.zst
    size:
      description: Size of the data object in bytes.
      type: int
      sample: 1048576
    manifest:
      description: Store key of the manifest (null for an incomplete backup).
      type: str
      sample: app/postgresql-app-20261123T091500Z-3fa9c1.dump.zst.manifest.json
latest:
  description: The newest complete backup (as in RV(backups)), with its manifest under C(details) when
    O(with_manifest=true); null when there is none.
  returned: always
  type: dict
  sample: {"id": "postgresql-app-20261123T091500Z-3fa9c1", "age_seconds": 3600, "complete": true}
latest_age_seconds:
  description: Age of the newest complete backup, null when there is none.
  returned: always
  type: int
  sample: 3600
database:
  description: The database the listing was narrowed to (O(database), or the name derived from O(path)).
  returned: always
  type: str
  sample: app.v2
rpo_ok:
  description: Whether the newest complete backup is within O(max_age) (true when no O(max_age)).
  returned: always
  type: bool
  sample: true
count:
  description: Counts of complete and incomplete backups.
  returned: always
  type: dict
  sample: {"complete": 30, "incomplete": 1}
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _backup as backups
from ansible_collections.runbook.ops.plugins.module_utils import _manifest as manifests
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import STORE_OPTIONS, merged
from ansible_collections.runbook.ops.plugins.module_utils._store import store_from_params


def main():
    module = AnsibleModule(
        argument_spec=merged(
            STORE_OPTIONS,
            service={"type": "str", "required": True},
            engine={"type": "str", "choices": list(manifests.ENGINES)},
            database={"type": "str"},
            path={"type": "path"},
            max_age={"type": "str"},
            max_age_action={"type": "str", "choices": ["fail", "warn"], "default": "fail"},
            with_manifest={"type": "bool", "default": True},
        ),
        mutually_exclusive=[["database", "path"]],
        supports_check_mode=True,
    )
    params = module.params
    try:
        backups.require_libraries(store_type=params["store"]["type"])
        service = manifests.check_service(params["service"])
        database = params["database"] or (manifests.sqlite_database_name(params["path"]) if params["path"] else None)
        max_age = manifests.parse_duration(params["max_age"], "max_age")
        store = store_from_params(params["store"])
        now = manifests.utcnow()
        entries = backups.catalog_entries(store, service, params["engine"], database)
        latest_entry = manifests.find_entry(entries)
        latest = None
        if latest_entry:
            latest = latest_entry.describe(now)
            if params["with_manifest"]:
                latest["details"] = backups.entry_manifest(store, latest_entry)
    except RunbookError as exc:
        fail_with(module, exc)

    latest_age = latest["age_seconds"] if latest else None
    rpo_ok = max_age is None or (latest is not None and latest_age <= max_age)
    complete = sum(e.complete for e in entries)
    result = {
        "backups": [entry.describe(now) for entry in entries],
        "latest": latest,
        "latest_age_seconds": latest_age,
        "rpo_ok": rpo_ok,
        "database": database,
        "count": {"complete": complete, "incomplete": sum(not e.complete for e in entries)},
        "changed": False,
    }
    what = "%sbackups of %s%s" % ("%s " % params["engine"] if params["engine"] else "", service,
                                  " database %s" % database if database else "")
    if latest is None:
        summary = "no complete %s in %s" % (what, store.location(service + "/"))
        if store.missing():  # a store path that does not exist is an error, not "no backups yet"
            module.fail_json(msg="%s%s: %s" % ("" if rpo_ok else "RPO missed: ", summary, store.missing()), **result)
    else:
        summary = "latest of %d complete %s is %s, %s old" % (complete, what if complete != 1 else
                                                              what.replace("backups", "backup", 1),
                                                              latest["id"], latest["age"])
    if not rpo_ok:
        summary = "RPO missed: %s (max_age %s)" % (summary, manifests.human_duration(max_age))
        if params["max_age_action"] == "fail":
            module.fail_json(msg=summary, **result)
        module.warn(summary)
    module.exit_json(msg=summary, **result)


if __name__ == "__main__":
    main()
