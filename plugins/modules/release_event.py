#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: release_event
short_description: Append an event to a Compose project's deploy event log
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Appends one JSON line (C(time), C(event), C(outcome), C(release), C(detail)) to the event log of a Compose project,
    C(events.jsonl) beside the release history of M(runbook.ops.compose_release) (mode 0600, created when missing).
  - For what the deploy and rollback roles decide - a gate's result, a rollback started, a restore - beside the
    deploys and rollbacks M(runbook.ops.compose_release) logs itself. The incident playbooks read the log.
  - Never put a secret in O(detail); the log is meant to be read by people on call.
attributes:
  check_mode:
    support: full
    description: Says the event would be appended and appends nothing.
  diff_mode:
    support: none
    description: No diff; the event is returned.
  idempotent:
    support: none
    description: Every run appends one event.
options:
  project_dir:
    description: The Compose project's directory; the log is in C(.runbook) there unless O(state_dir) says otherwise.
    type: path
    required: true
  state_dir:
    description: Where the release history and the event log live (as for M(runbook.ops.compose_release)).
    type: path
  event:
    description: What happened, a short word such as V(gate), V(rollback), V(restore), V(deploy).
    type: str
    required: true
  outcome:
    description: How it ended, for example V(succeeded), V(failed), V(started), V(skipped).
    type: str
    required: true
  release:
    description: The release id it concerns.
    type: str
  detail:
    description: Anything else worth keeping (no secrets), for example the gate's name and its measured values.
    type: dict
    default: {}
'''

EXAMPLES = r'''
- name: Record that the http gate failed
  runbook.ops.release_event:
    project_dir: /srv/app
    event: gate
    outcome: failed
    release: "{{ deploy.release.id }}"
    detail:
      gate: http
      url: http://127.0.0.1:8080/readyz
      status: 503
'''

RETURN = r'''
event:
  description: The event appended (or that would be, in check mode).
  returned: always
  type: dict
  sample: {time: "2026-11-30T21:00:05Z", event: gate, outcome: failed, release: r20261130T210000Z-v3,
           detail: {gate: http, status: 503}}
path:
  description: The event log.
  returned: always
  type: str
'''

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _releases
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def main():
    module = AnsibleModule(
        argument_spec={
            "project_dir": {"type": "path", "required": True},
            "state_dir": {"type": "path"},
            "event": {"type": "str", "required": True},
            "outcome": {"type": "str", "required": True},
            "release": {"type": "str"},
            "detail": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params
    state_dir = params["state_dir"] or os.path.join(params["project_dir"], ".runbook")
    path = os.path.join(state_dir, _releases.EVENTS_NAME)
    try:
        if module.check_mode:
            event = json.loads(_releases.event_line(params["event"], params["outcome"], params["release"], params["detail"]))
        else:
            event = _releases.append_event(state_dir, params["event"], params["outcome"], params["release"], params["detail"])
    except RunbookError as exc:
        fail_with(module, exc)
    module.exit_json(changed=True, event=event, path=path,
                     msg="%s %s: %s %s" % ("would append to" if module.check_mode else "appended to", path,
                                           params["event"], params["outcome"]))


if __name__ == "__main__":
    main()
