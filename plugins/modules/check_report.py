#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: check_report
short_description: Turn the findings of several checks into one report - state, counts, Markdown and JSON
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Takes the findings of the diagnostic modules and roles (each a dict C({check, state, value, unit, detail}),
    optionally C(section), C(target), C(kind), C(samples)), in lists, and works out the overall state (the worst),
    the counts per state and the problems, worst first.
  - With O(report_dir), writes the report as Markdown and JSON, each atomically with mode 0600, in a directory
    created with mode 0700. In check mode nothing is written; the message says what would be.
  - Never fails because of the findings; it returns RV(fails) under O(fail_on) and the caller decides when to fail.
options:
  findings:
    description: Lists of findings (one list per check task), or findings directly.
    type: list
    elements: raw
    required: true
  title:
    description: The report's title.
    type: str
    default: Checks
  host:
    description: The host the findings are about.
    type: str
  started:
    description: When the checks started (shown in the report).
    type: str
  sections:
    description: The report's sections in order, as C({id, title}); findings are grouped by their C(section). Without it, one table.
    type: list
    elements: dict
    default: []
  thresholds:
    description: Rows of the thresholds table, as C({metric, warning, critical, unit}).
    type: list
    elements: dict
    default: []
  noun:
    description: What is counted in the one-line message (V(checks) gives "3 of 4 checks ok").
    type: str
    default: checks
  report_dir:
    description: Write C(<report_name>.md) and C(<report_name>.json) here. Without it nothing is written.
    type: path
  report_name:
    description: The file name of the reports without extension; default C(report-<host>-<UTC stamp>).
    type: str
  fail_on:
    description:
      - The overall state from which RV(fails) is true (V(never) - never). The module itself does not fail; the
        caller fails on RV(fails) after its report is written.
    type: str
    choices: [critical, warning, never]
    default: critical
attributes:
  check_mode:
    support: full
    description: Works out the report but writes no file; the message says which files would be written.
  diff_mode:
    support: none
    description: The report files are new files; there is no diff.
  idempotent:
    support: none
    description: Each run writes new report files (with O(report_dir)).
'''

EXAMPLES = r'''
- name: The daily report on the controller
  runbook.ops.check_report:
    findings: ["{{ logs.findings }}", "{{ redis.findings }}"]
    title: Daily check
    host: "{{ inventory_hostname }}"
    sections: [{id: logs, title: "Errors in recent logs"}, {id: queue, title: Queue length}]
    thresholds: [{metric: queue length, warning: 100, critical: 1000, unit: items}]
    report_dir: /var/lib/runbook/reports
    report_name: "daily-check-{{ inventory_hostname }}"
  delegate_to: localhost
  register: report
'''

RETURN = r'''
state:
  description: The worst state of all findings (V(ok) for none).
  returned: always
  type: str
  sample: warning
fails:
  description: Whether the overall state reaches O(fail_on).
  returned: always
  type: bool
  sample: false
counts:
  description: How many findings are in each state.
  returned: always
  type: dict
  sample: {total: 12, ok: 10, warning: 2, critical: 0}
problems:
  description: The check, state and detail of each finding that is not ok, one line each, critical first.
  returned: always
  type: list
  elements: str
  sample: ["queue jobs warning: 150 items (warning over 100, critical over 1000)"]
findings:
  description: All findings, checked and in order, details on one line.
  returned: always
  type: list
  elements: dict
  sample: [{check: queue jobs, state: warning, value: 150, unit: items, detail: "150 items (warning over 100, critical over 1000)"}]
thresholds:
  description: The thresholds table rows.
  returned: always
  type: list
  elements: dict
  sample: [{metric: queue length, warning: 100, critical: 1000, unit: items}]
report:
  description: The whole report as written to the JSON file.
  returned: always
  type: dict
  sample: {title: Daily check, host: app1, state: warning, counts: {total: 12, ok: 10, warning: 2, critical: 0}}
report_files:
  description: The files written, or null when nothing was written (no O(report_dir), or check mode).
  returned: always
  type: dict
  sample: {markdown: /var/lib/runbook/reports/daily-check-app1.md, json: /var/lib/runbook/reports/daily-check-app1.json}
would_write:
  description: In check mode, the files a real run would write (null otherwise).
  returned: always
  type: dict
  sample: null
msg:
  description: One line with the counts and the problems, and where the report is.
  returned: always
  type: str
  sample: "10 of 12 checks ok, overall warning - queue jobs warning: 150 items (...); report in /var/lib/runbook/reports/daily-check-app1.md"
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _findings, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def main():
    module = AnsibleModule(
        argument_spec={
            "findings": {"type": "list", "elements": "raw", "required": True},
            "title": {"type": "str", "default": "Checks"},
            "host": {"type": "str"},
            "started": {"type": "str"},
            "sections": {"type": "list", "elements": "dict", "default": []},
            "thresholds": {"type": "list", "elements": "dict", "default": []},
            "noun": {"type": "str", "default": "checks"},
            "report_dir": {"type": "path"},
            "report_name": {"type": "str"},
            "fail_on": dict(_status.FAIL_ON_ARGSPEC),
        },
        supports_check_mode=True,
    )
    params = module.params
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        report = _findings.build(params["findings"], params["title"], params["host"], params["started"], finished,
                                 module.check_mode, params["thresholds"], params["sections"], params["noun"])
    except RunbookError as exc:
        fail_with(module, exc)
    result = {key: report[key] for key in ("state", "counts", "problems", "findings", "thresholds")}
    result.update(report=report, report_files=None, would_write=None, changed=False,
                  fails=_status.fails(report["state"], params["fail_on"]))
    msg = report["msg"]
    if params["report_dir"]:
        name = params["report_name"] or "report-%s-%s" % (params["host"] or "host", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        if "/" in name or name in (".", ".."):
            module.fail_json(msg="report_name must be a file name without a directory, got %r" % name)
        if module.check_mode:
            result["would_write"] = _findings.report_paths(params["report_dir"], name)
            msg += "; check mode: would write the report to %s (nothing written)" % result["would_write"]["markdown"]
            result["changed"] = True
        else:
            try:
                result["report_files"] = _findings.write(report, params["report_dir"], name)
            except OSError as exc:
                module.fail_json(msg="cannot write the report in %s: %s" % (params["report_dir"], exc.strerror or exc), **result)
            result["changed"] = True
            msg += "; report in %s" % result["report_files"]["markdown"]
    result["msg"] = msg
    module.exit_json(**result)


if __name__ == "__main__":
    main()
