#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: incident_record
short_description: Rate an incident from its diagnoses, propose remediations and write the incident record
version_added: 0.3.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Takes the registered results of the diagnostic modules an incident playbook ran (O(observations)), the
    remediations it ran (O(actions)) and the diagnostics bundle, and works out the findings, which diagnoses look
    wrong, the severity, the remediations the findings call for, and the incident record.
  - "Severity: V(SEV-1) when the service is down for its users - its own endpoints or the proxy in front of it are
    critical, or the database server or Redis cannot be reached; V(SEV-2) for any other critical finding (a container
    down or crash-looping, a lock pile-up, a queue over its critical level, a full disk, a failed migration, a
    diagnosis that could not run); V(SEV-3) for a warning, or a critical finding that does not reach users (the
    metrics endpoint); V(SEV-4) when nothing was found wrong. O(severity) overrides it, and the record keeps both."
  - Proposals are named actions with the reason for each (V(restart_service), V(scale_workers),
    V(cancel_blocking_sessions), V(cancel_long_queries), V(terminate_idle_in_transaction),
    V(terminate_idle_connections), V(delete_lockout_keys), V(docker_prune), V(maintenance_mode)), each with the
    module arguments that would carry it out. An action is marked to run only when O(remediate) is true and the
    action is in O(allowed_actions).
  - With O(record_dir), writes the record as Markdown (after the incident report template of the runbooks - summary,
    impact, root cause, timeline, detection, response, lessons learned, attachments) and JSON, each atomically with
    mode 0600 in a directory created 0700. Without it nothing is written (the assessment a playbook needs before it
    acts).
  - Never fails because of the findings.
options:
  incident_type:
    description: What kind of incident the playbook diagnosed.
    type: str
    required: true
    choices: [api_unavailable, database, queue_backlog, redis_unavailable, login_lockouts, metrics_auth, disk_full, tls,
              bad_gateway, service_wont_start, migration_failed, triage]
  observations:
    description:
      - One entry per diagnosis, C({diagnosis, source, time, result}) where C(source) names the module
        whose registered result C(result) is (V(http_probe), V(metrics_probe), V(container_health),
        V(log_scan), V(redis_probe), V(redis_keys), V(pg_activity), V(host_resources), V(path_check),
        V(compose_release_info), or V(docker_df) for the registered C(docker system df --format '{{json .}}')).
      - C({diagnosis, error}) records a diagnosis that could not run (a critical finding); C({diagnosis, skipped})
        one that was not configured (listed as not checked).
      - For V(redis_keys), C(levels) gives C(warn) and C(crit) match counts.
    type: list
    elements: dict
    default: []
  actions:
    description: The remediations run, each C({action, time, outcome, changed, check_mode, msg}).
    type: list
    elements: dict
    default: []
  settings:
    description:
      - "What the proposals depend on - C(compose_project_dir) (restart, scale and maintenance mode need a Compose
        project), C(worker_scale) (a map of service to container count), C(maintenance_services), C(proxy_service),
        C(long_query_seconds), C(idle_in_transaction_seconds), C(idle_connection_seconds), C(docker_prune_available)."
    type: dict
    default: {}
  remediate:
    description: Whether remediations may run at all.
    type: bool
    default: false
  allowed_actions:
    description: The actions that may run when O(remediate) is true.
    type: list
    elements: str
    default: []
  dry_run:
    description: The playbook runs in check mode; the record says so and that nothing changed.
    type: bool
    default: false
  started:
    description: When the playbook started (UTC, ISO 8601).
    type: str
  host:
    description: The host the incident is about.
    type: str
  service:
    description: The service the incident is about.
    type: str
  title:
    description: The record's title; by default the type and host.
    type: str
  incident_id:
    description: The incident's id; by default C(INC-<host>-<UTC stamp>).
    type: str
  severity:
    description: A severity declared by the operator, instead of the computed one.
    type: str
    choices: [SEV-1, SEV-2, SEV-3, SEV-4]
  bundle:
    description:
      - The diagnostics bundle, C({path, size, sha256, host_path, time}), or C({note}) saying why there is none.
    type: dict
  record_dir:
    description: Write C(<record_name>.md) and C(<record_name>.json) here. Without it nothing is written.
    type: path
  record_name:
    description: The file name of the record without extension; by default C(incident-<type>-<host>-<UTC stamp>).
    type: str
attributes:
  check_mode:
    description: Works out the record and writes no file (the result says which files it would write). A playbook that
      wants the record of a dry run runs this task with C(check_mode=false) and O(dry_run=true).
    support: full
  diff_mode:
    description: The record files are new files; there is no diff.
    support: none
  idempotent:
    description: Each run with O(record_dir) writes a new record.
    support: none
seealso:
  - module: runbook.ops.check_report
'''

EXAMPLES = r'''
- name: Assess what the diagnoses saw (nothing written)
  runbook.ops.incident_record:
    incident_type: api_unavailable
    observations:
      - {diagnosis: service, source: http_probe, time: "2026-11-30T22:00:01Z", result: "{{ probe }}"}
      - {diagnosis: containers, source: container_health, time: "2026-11-30T22:00:02Z", result: "{{ containers }}"}
    settings: {compose_project_dir: /srv/app}
    remediate: "{{ incident_remediate }}"
    allowed_actions: [restart_service]
  register: assessment

- name: Write the record on the controller
  runbook.ops.incident_record:
    incident_type: api_unavailable
    observations: "{{ observations }}"
    actions: "{{ actions }}"
    host: "{{ inventory_hostname }}"
    record_dir: /var/lib/runbook/incidents
  delegate_to: localhost
'''

RETURN = r'''
severity:
  description: V(SEV-1) to V(SEV-4).
  returned: always
  type: str
  sample: SEV-1
severity_reason:
  description: Why, in one sentence.
  returned: always
  type: str
  sample: "service down: readiness HTTP 503"
state:
  description: The worst state of the findings.
  returned: always
  type: str
  sample: critical
wrong:
  description: The diagnoses with a finding that is not ok.
  returned: always
  type: list
  elements: str
  sample: [service, logs]
problems:
  description: The findings that are not ok, one line each, critical first.
  returned: always
  type: list
  elements: str
findings:
  description: Every finding, with its C(diagnosis).
  returned: always
  type: list
  elements: dict
proposed:
  description: The remediations the findings call for, each C({action, why, args, allowed, will_run, note}).
  returned: always
  type: list
  elements: dict
  sample: [{action: delete_lockout_keys, why: "10000 keys match 'login_attempt:*'", args: {pattern: "login_attempt:*"},
            allowed: true, will_run: true, note: runs}]
to_run:
  description: The names of the proposed actions that will run.
  returned: always
  type: list
  elements: str
summary:
  description: One line for logs and AWX.
  returned: always
  type: str
  sample: "INC-app1-20261130T220000Z SEV-1 api_unavailable: investigating; wrong: service"
record:
  description: The whole record as written to the JSON file.
  returned: always
  type: dict
record_files:
  description: The files written, or null.
  returned: always
  type: dict
  sample: {markdown: /var/lib/runbook/incidents/incident-tls-app1-20261130T220000Z.md,
           json: /var/lib/runbook/incidents/incident-tls-app1-20261130T220000Z.json}
would_write:
  description: In check mode with O(record_dir), the files a real run would write.
  returned: always
  type: dict
msg:
  description: The summary, and where the record is.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _incident
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def main():
    module = AnsibleModule(
        argument_spec={
            "incident_type": {"type": "str", "required": True, "choices": list(_incident.INCIDENT_TYPES)},
            "observations": {"type": "list", "elements": "dict", "default": []},
            "actions": {"type": "list", "elements": "dict", "default": []},
            "settings": {"type": "dict", "default": {}},
            "remediate": {"type": "bool", "default": False},
            "allowed_actions": {"type": "list", "elements": "str", "default": []},
            "dry_run": {"type": "bool", "default": False},
            "started": {"type": "str"},
            "host": {"type": "str"},
            "service": {"type": "str"},
            "title": {"type": "str"},
            "incident_id": {"type": "str"},
            "severity": {"type": "str", "choices": list(_incident.SEVERITIES)},
            "bundle": {"type": "dict"},
            "record_dir": {"type": "path"},
            "record_name": {"type": "str"},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        record = _incident.build(params["incident_type"], params["observations"], params["actions"], params["settings"],
                                 params["remediate"], params["allowed_actions"], params["dry_run"] or module.check_mode,
                                 started=params["started"], host=params["host"], service=params["service"],
                                 title=params["title"], incident_id=params["incident_id"],
                                 declared_severity=params["severity"], bundle=params["bundle"])
    except RunbookError as exc:
        fail_with(module, exc)
    result = {key: record[key] for key in ("severity", "severity_reason", "state", "wrong", "problems", "findings",
                                           "proposed", "summary")}
    result.update(to_run=[p["action"] for p in record["proposed"] if p["will_run"]], record=record, record_files=None,
                  would_write=None, changed=False)
    msg = record["summary"]
    if params["record_dir"]:
        name = params["record_name"] or "incident-%s-%s-%s" % (
            params["incident_type"], params["host"] or "host", record["started"].replace("-", "").replace(":", ""))
        if module.check_mode:
            result["would_write"] = _incident.record_paths(params["record_dir"], name)
            msg += "; check mode: would write the record to %s" % result["would_write"]["markdown"]
        else:
            try:
                result["record_files"] = _incident.write(record, params["record_dir"], name)
            except RunbookError as exc:
                fail_with(module, exc, **result)
            except OSError as exc:
                module.fail_json(msg="cannot write the incident record in %s: %s"
                                 % (params["record_dir"], exc.strerror or exc), **result)
            record["record_files"] = result["record_files"]
            result["changed"] = True
            msg += "; record in %s" % result["record_files"]["markdown"]
    result["msg"] = msg
    module.exit_json(**result)


if __name__ == "__main__":
    main()
