#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: restore_timeline
short_description: Rate a full restore's steps, its RTO and its RPO from its time marks and results
version_added: 0.4.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Takes what a full restore (the role C(runbook.ops.full_restore)) noted while it ran - a time mark when each step
    ended and the registered results of its modules - and returns its findings, one per step and one per objective,
    in the shape M(runbook.ops.check_report) takes. Runs anywhere (usually on the controller), reads and changes
    nothing.
  - "The steps, in order: C(precheck), C(stop) (the writers), C(database), C(files), C(config), C(start) (the
    writers), C(health) (the health gate), C(verify). A step's time runs from the end mark of the previous step that
    was part of the restore to its own end mark. A step that is not part of this restore is V(ok) with
    C(not part of this restore); in check mode every step but the pre-check is V(ok) with C(check mode: not run)."
  - A step between the writers' stop and start without its end mark failed there (V(critical), with O(failed_step)
    and O(error)). The writers' start is V(critical) when it did not succeed, the health gate takes the probe's state
    (V(critical) when it did not run), the data checks do not run after a failed step (V(warning)) and are
    V(critical) when the service's own check is critical or a restored file differs from the store.
  - "The RTO runs from mark C(begin) to mark C(health) (with the time the writers were stopped, from mark C(stop)):
    V(critical) after a failed step or with an unhealthy service, V(warning) over O(rto_seconds). The RPO of the
    database is the logical backup's age, or for point-in-time recovery how much earlier than a time target the
    last kept transaction committed (for target type V(latest) the newest archived WAL segment's age at the
    pre-check); the RPO of the files is the age of the last upload. Each is V(warning) over O(rpo_seconds); so is
    the unknown age of a logical backup or of the files, and a point-in-time recovery that did not promote."
options:
  marks:
    description:
      - When each step ended, as epoch seconds by step id (C(precheck), C(stop), C(database), C(files), C(config),
        C(start), C(health), C(verify)), plus C(begin) (the start of the run, required) and for point-in-time recovery
        C(cluster_stop) (the database cluster stopped).
    type: dict
    required: true
  rto_seconds:
    description: The recovery time objective, in seconds.
    type: int
    required: true
  rpo_seconds:
    description: The recovery point objective (how old the restored data may be), in seconds.
    type: int
    required: true
  failed_step:
    description:
      - The name of the task that failed between the writers' stop and start (empty when none failed).
      - A name that starts with C(Recover the database) is the point-in-time recovery itself (the role's task), for
        RV(left_behind).
    type: str
    default: ''
  error:
    description: Why it failed (empty when nothing failed; not empty means the restore failed).
    type: str
    default: ''
  failed_changed:
    description: Whether the failed task had changed something (for point-in-time recovery, that the data directory
      was overwritten).
    type: bool
    default: false
  writers:
    description: The writers stopped before the restore and started after it.
    type: dict
    suboptions:
      enabled:
        description: Whether writers are stopped and started.
        type: bool
        default: false
      stop_argv:
        description: How they are stopped, as an argument list (shown in the report).
        type: list
        elements: str
        default: []
      start:
        description: How the start went, C({ok, detail}).
        type: dict
        default: {}
  database:
    description: The database part.
    type: dict
    suboptions:
      source:
        description: V(logical) (a backup of M(runbook.ops.db_backup)), V(pitr) (point-in-time recovery) or V(none).
        type: str
        choices: [none, logical, pitr]
        default: none
      backup:
        description: The logical backup restored, C({id, started, row_counts}) (the C(backup) M(runbook.ops.db_restore) returns).
        type: dict
        default: {}
      backup_age_seconds:
        description: Its age at the pre-check (from M(runbook.ops.backup_info)); null when unknown.
        type: raw
      pitr:
        description: The point-in-time recovery.
        type: dict
        suboptions:
          stanza:
            description: The pgBackRest stanza.
            type: str
          pg_data:
            description: The data directory restored over.
            type: str
          target_type:
            description: The recovery target's type.
            type: str
            choices: [latest, time, lsn, name, immediate]
            default: latest
          target:
            description: The recovery target.
            type: str
          plan:
            description: The C(target) check of M(runbook.ops.pgbackrest_info) at the pre-check (C(backup), C(target), C(archive_end)).
            type: dict
          archive_age_seconds:
            description: The newest archived WAL segment's age at the pre-check; null when unknown.
            type: raw
          result:
            description: The registered result of M(runbook.ops.pgbackrest_restore) (C(target), C(recovered_to),
              C(target_gap_seconds), C(restore_seconds), C(duration_seconds), C(promoted), C(verification)).
            type: dict
          port:
            description: The cluster's port (said when it runs after a failure).
            type: int
          log_file:
            description: Its server log (named when a failure left its data directory for inspection).
            type: str
          start_argv:
            description: The command that starts it (named when a failure left its data directory as it was).
            type: list
            elements: str
          cluster_probe:
            description: After a failure once the cluster was stopped (mark C(cluster_stop)), the registered result of
              a C(ansible.builtin.wait_for) on its port (C(state=started) when it runs); RV(left_behind) says what was
              left of the cluster.
            type: dict
  files:
    description: The uploaded files.
    type: dict
    suboptions:
      enabled:
        description: Whether the files are restored.
        type: bool
        default: false
      plan:
        description: The registered result of M(runbook.ops.files_sync) in check mode at the pre-check (C(counts),
          C(source_synced_at), C(source_age_seconds)).
        type: dict
      result:
        description: The registered result of the M(runbook.ops.files_sync) download (C(msg)).
        type: dict
  config:
    description: The configuration.
    type: dict
    suboptions:
      enabled:
        description: Whether the configuration is restored.
        type: bool
        default: false
      source:
        description: Where it comes from (a directory, or a repository at a ref).
        type: str
        default: ''
      dest:
        description: Where it is copied to.
        type: str
        default: ''
      files:
        description: The files copied.
        type: list
        elements: str
        default: []
      result:
        description: The registered result of the copy (C(changed)).
        type: dict
  health:
    description: The health gate.
    type: dict
    suboptions:
      enabled:
        description: Whether there is a health gate.
        type: bool
        default: false
      result:
        description: The registered result of M(runbook.ops.http_probe) (C(state), C(msg)).
        type: dict
  verify:
    description: The data checks after the health gate.
    type: dict
    suboptions:
      enabled:
        description: Whether the data are checked.
        type: bool
        default: false
      api:
        description: The registered result of M(runbook.ops.http_probe) on the service's own count (C(state), C(msg)).
        type: dict
      files:
        description: The registered result of M(runbook.ops.files_sync) in check mode comparing the files with the store (C(counts)).
        type: dict
attributes:
  check_mode:
    support: full
    description: Reads and changes nothing; in check mode the steps after the pre-check are rated as not run.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
  idempotent:
    support: full
    description: The same marks and results give the same findings.
seealso:
  - module: runbook.ops.check_report
'''

EXAMPLES = r'''
- name: Rate the steps and the objectives
  runbook.ops.restore_timeline:
    marks: "{{ marks }}"  # {begin: 1764559200.0, precheck: 1764559201.5, stop: 1764559202.1, ...}
    rto_seconds: 14400
    rpo_seconds: 3600
    failed_step: "{{ failed_step }}"
    error: "{{ error }}"
    writers: {enabled: true, stop_argv: [/srv/app/ctl.sh, stop], start: "{{ start_outcome }}"}
    database: {source: logical, backup: "{{ plan.backup }}", backup_age_seconds: "{{ age }}"}
    files: {enabled: true, plan: "{{ files_plan }}", result: "{{ files_download | default({}) }}"}
    health: {enabled: true, result: "{{ health | default({}) }}"}
  delegate_to: localhost
  register: timeline

- name: Write the report
  runbook.ops.check_report:
    findings: ["{{ timeline.findings }}"]
    sections: [{id: steps, title: Steps}, {id: objectives, title: RTO and RPO}]
    report_dir: /var/lib/runbook/reports
  delegate_to: localhost
'''

RETURN = r'''
findings:
  description: One finding per step (section C(steps), value the step's seconds) then the RTO, C(RPO database) and
    C(RPO files) (section C(objectives), value in seconds), each C({section, check, state, value, unit, detail}).
  returned: always
  type: list
  elements: dict
  sample: [{section: steps, check: restore database, state: ok, value: 4.12, unit: s,
            detail: "backup sqlite-app-20261201T031500Z-3fa9c1 (taken 2026-12-01T03:15:00Z); every table's row count matched its manifest (items=10)"},
           {section: objectives, check: RTO, state: ok, value: 21.4, unit: s, detail: "pre-check to healthy 21.4 s (target 14400 s); writers stopped 12.9 s"}]
state:
  description: The worst state of the findings.
  returned: always
  type: str
  sample: ok
left_behind:
  description: What a failure after the database cluster was stopped left of it (whether it runs, whether its data
    directory was overwritten); also at the end of the failed step's detail. Empty otherwise.
  returned: always
  type: str
  sample: "the cluster is stopped; its data directory /var/lib/postgresql/15/main was not changed by the restore"
msg:
  description: One line with the counts and the problems.
  returned: always
  type: str
  sample: "11 of 11 steps and objectives ok, overall ok"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _findings, _full_restore, _pgbackrest
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def _part(**options):
    return {"type": "dict", "options": options}


def main():
    module = AnsibleModule(
        argument_spec={
            "marks": {"type": "dict", "required": True},
            "rto_seconds": {"type": "int", "required": True},
            "rpo_seconds": {"type": "int", "required": True},
            "failed_step": {"type": "str", "default": ""},
            "error": {"type": "str", "default": ""},
            "failed_changed": {"type": "bool", "default": False},
            "writers": _part(enabled={"type": "bool", "default": False},
                             stop_argv={"type": "list", "elements": "str", "default": []},
                             start={"type": "dict", "default": {}}),
            "database": _part(source={"type": "str", "choices": list(_full_restore.DB_SOURCES), "default": "none"},
                              backup={"type": "dict", "default": {}},
                              backup_age_seconds={"type": "raw"},
                              pitr=_part(stanza={"type": "str"}, pg_data={"type": "str"},
                                         target_type={"type": "str", "default": "latest",
                                                      "choices": list(_pgbackrest.TARGET_TYPES)},
                                         target={"type": "str"}, plan={"type": "dict"},
                                         archive_age_seconds={"type": "raw"}, result={"type": "dict"},
                                         port={"type": "int"}, log_file={"type": "str"},
                                         start_argv={"type": "list", "elements": "str"}, cluster_probe={"type": "dict"})),
            "files": _part(enabled={"type": "bool", "default": False}, plan={"type": "dict"}, result={"type": "dict"}),
            "config": _part(enabled={"type": "bool", "default": False}, source={"type": "str", "default": ""},
                            dest={"type": "str", "default": ""}, files={"type": "list", "elements": "str", "default": []},
                            result={"type": "dict"}),
            "health": _part(enabled={"type": "bool", "default": False}, result={"type": "dict"}),
            "verify": _part(enabled={"type": "bool", "default": False}, api={"type": "dict"}, files={"type": "dict"}),
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        rated = _full_restore.rate(
            p["marks"], p["rto_seconds"], p["rpo_seconds"], check_mode=module.check_mode, failed_step=p["failed_step"],
            error=p["error"], failed_changed=p["failed_changed"], **{name: p[name] for name in _full_restore.PART_DEFAULTS})
    except RunbookError as exc:
        fail_with(module, exc)
    summary = _findings.overview(rated["findings"], "steps and objectives")
    module.exit_json(changed=False, findings=rated["findings"], left_behind=rated["left_behind"], state=summary["state"],
                     msg=summary["msg"])


if __name__ == "__main__":
    main()
