#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: env_secret
short_description: Create, rotate, test, finish or revert one secret in a dotenv file
version_added: 0.2.0
description:
  - Manages one key of a dotenv file (C(KEY=VALUE) lines, as Docker Compose and most services read them);
    creates it when missing, rotates it, tests the running service with the new value, finishes the rotation,
    reverts it, or removes the key.
  - The steps follow AWS Secrets Manager's rotation protocol. O(state=rotated) stages a new value (the old one
    kept as C(<KEY>_PREVIOUS) with O(keep_previous), and always in a 0600 backup of the whole file);
    O(state=tested) checks the running service accepts the new value and refuses (or, during an overlap, still
    accepts) the old one; O(state=finished) drops C(<KEY>_PREVIOUS); O(state=reverted) puts the backup back
    byte-identical.
  - The file is rewritten atomically and only the key's own lines change; every other line, comment, blank
    line, quote style, C(export) prefix, inline comment, line ending, the order, owner and mode stay as they
    were. A new file is created with mode 0600.
  - A line that is not a comment, blank or C([export ]KEY=VALUE) (or a quoted value spanning lines) makes the
    module refuse, naming the line number but never its text; nothing is written.
  - A small 0600 record beside the file, C(.<file name>.rotation.json), holds the phase of each key's rotation,
    fingerprints of the pending, current and previous values, the times and the backup path, never a value.
    A rotation interrupted between O(state=rotated) and O(state=finished) is resumed by the next
    O(state=rotated) (see O(resume)).
  - Values never appear in results, diffs, messages or the record; only fingerprints do (C(sha256:) and the first
    12 hex digits of the value's SHA-256).
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.secret_generation
options:
  path:
    description: The dotenv file.
    type: path
    required: true
  key:
    description: The key to manage (letters, digits and C(_), not starting with a digit).
    type: str
    required: true
  state:
    description:
      - V(present) creates the key when it is missing and leaves an existing one alone (idempotent).
      - V(rotated) always sets a new value (O(value), or a generated one); see O(keep_previous) and O(resume).
      - V(tested) probes the running service with the new value and the old one (O(probe)); changes nothing.
      - V(finished) removes C(<KEY>_PREVIOUS) and marks the rotation finished; see O(keep_backup).
      - V(reverted) restores the backup made by the last V(rotated), byte-identical.
      - V(absent) removes the key.
    type: str
    choices: [present, rotated, tested, finished, reverted, absent]
    default: present
  value:
    description:
      - The value to set, instead of a generated one. Never shown.
      - With O(state=rotated), a value equal to the current one is no change.
    type: str
  keep_previous:
    description:
      - With O(state=rotated), keep the old value as C(<KEY>_PREVIOUS) (on the line after the key), for services
        that accept both during an overlap. Without it, a C(<KEY>_PREVIOUS) left from an earlier overlap is
        removed, so no older value stays valid.
    type: bool
    default: false
  resume:
    description:
      - With O(state=rotated), when the record shows an unfinished rotation of this key whose staged value is
        still in the file (a run interrupted between set and finish), report it (RV(resumed)) and change nothing,
        so the caller tests it and then finishes or reverts it. V(false) always stages a new value.
    type: bool
    default: true
  backup:
    description:
      - With O(state=present) or O(state=absent), keep the file as it was as a 0600 copy beside it (RV(backup)).
        O(state=rotated) always keeps one, for O(state=reverted).
    type: bool
    default: false
  keep_backup:
    description:
      - With O(state=finished), keep the backup of the file from before the rotation. The backup holds the old
        value; remove it (V(false)) once the service is verified on the new one.
    type: bool
    default: true
  force:
    description:
      - With O(state=reverted), revert even when the key no longer holds the value the rotation staged (someone
        changed it since).
    type: bool
    default: false
  probe:
    description: With O(state=tested), how to test the running service.
    type: dict
    suboptions:
      url:
        description: A URL that needs the secret, for example C(http://127.0.0.1:8780/api/items).
        type: str
        required: true
      header:
        description: How the value is sent, as C(X-Api-Token), as C(Authorization) C(Bearer), or as C(X-Metrics-Secret).
        type: str
        choices: [x-api-token, bearer, x-metrics-secret]
        default: x-api-token
      previous:
        description:
          - What the old value (C(<KEY>_PREVIOUS), else the key in the backup) must get. V(refused) after a rotation
            without overlap or after finishing, V(accepted) during an overlap, V(skip) not to test it.
        type: str
        choices: [refused, accepted, skip]
        default: refused
      accepted_status:
        description: Status codes that mean accepted.
        type: list
        elements: int
        default: [200]
      refused_status:
        description: Status codes that mean refused.
        type: list
        elements: int
        default: [401, 403]
      timeout:
        description: Seconds for each request.
        type: float
        default: 5
      wait_timeout:
        description: Keep probing until every check passes or this many seconds have passed (a service restarting).
        type: float
        default: 30
      validate_certs:
        description: Verify HTTPS certificates.
        type: bool
        default: true
attributes:
  check_mode:
    support: full
    description: Reports what would change without writing the file, the backup or the record. V(tested) does not probe.
  diff_mode:
    support: full
    description: The diff shows the key and C(<KEY>_PREVIOUS) with the fingerprints of their values, never the values.
  idempotent:
    support: partial
    description: V(present), V(finished), V(reverted) and V(absent) are idempotent; V(rotated) changes the value every time.
notes:
  - Values with a newline or another control character cannot be written to a dotenv line and are refused.
  - A key assigned on several lines is refused for changes (readers disagree on which line wins).
  - Runs on the same file are serialized with a lock file beside the record.
seealso:
  - module: runbook.ops.http_probe
  - module: runbook.ops.db_backup
    description: The encryption key rotation of the rotate_secret role takes a backup with it first.
"""

EXAMPLES = r"""
- name: Make sure the service has a session secret (created once, then left alone)
  runbook.ops.env_secret:
    path: /srv/app/.env
    key: SESSION_SECRET
    generate: hex
    length: 32

- name: Rotate the API token, keeping the old one valid during an overlap
  runbook.ops.env_secret:
    path: /srv/app/.env
    key: API_TOKEN
    state: rotated
    keep_previous: true
  register: rotated

- name: Test the restarted service - new token accepted, old one still accepted during the overlap
  runbook.ops.env_secret:
    path: /srv/app/.env
    key: API_TOKEN
    state: tested
    probe:
      url: http://127.0.0.1:8780/api/items
      previous: accepted

- name: Finish - drop API_TOKEN_PREVIOUS and the backup
  runbook.ops.env_secret:
    path: /srv/app/.env
    key: API_TOKEN
    state: finished
    keep_backup: false

- name: Or revert to the file as it was before the rotation
  runbook.ops.env_secret:
    path: /srv/app/.env
    key: API_TOKEN
    state: reverted

- name: Set a given SMTP password (never shown)
  runbook.ops.env_secret:
    path: /srv/app/.env
    key: SMTP_PASSWORD
    state: rotated
    value: "{{ vault_smtp_password }}"
"""

RETURN = r"""
env_file:
  description: The env file.
  returned: always
  type: str
  sample: /srv/app/.env
key:
  description: The key.
  returned: always
  type: str
  sample: API_TOKEN
fingerprint:
  description: Fingerprint of the key's value after the task (null when absent).
  returned: always
  type: str
  sample: sha256:5d41402abc4b
previous_fingerprint:
  description: Fingerprint of C(<KEY>_PREVIOUS) after the task (null when absent).
  returned: always
  type: str
  sample: sha256:7c211433f024
backup:
  description:
    - The 0600 copy of the file from before the change, for a byte-identical revert. Null in check mode, for a
      new file, and for V(present)/V(absent) without O(backup).
  returned: when state is present, rotated, reverted or absent
  type: str
  sample: /srv/app/.env.20261130T183000Z-a1b2c3.bak
resumed:
  description: With O(state=rotated), true when an unfinished rotation was found and nothing new was staged.
  returned: when state is rotated
  type: bool
  sample: false
rotation:
  description: This key's entry of the rotation record (no values).
  returned: always
  type: dict
  sample:
    phase: set
    pending: sha256:7c211433f024
    current: sha256:5d41402abc4b
    previous: sha256:5d41402abc4b
    overlap: true
    started: "2026-11-30T18:30:00+00:00"
    tested: null
    finished: null
    backup: /srv/app/.env.20261130T183000Z-a1b2c3.bak
checks:
  description: With O(state=tested), each check (name, state, reasons, status); tokens are never included.
  returned: when state is tested and not in check mode
  type: list
  elements: dict
  sample:
    - name: new value accepted
      state: ok
      status: 200
    - name: old value refused
      state: ok
      status: 401
backup_removed:
  description: With O(state=finished) and O(keep_backup=false), the backup that was removed.
  returned: when state is finished
  type: str
  sample: /srv/app/.env.20261130T183000Z-a1b2c3.bak
msg:
  description: What was done, with fingerprints.
  returned: always
  type: str
  sample: rotated API_TOKEN in /srv/app/.env (sha256:5d41402abc4b -> sha256:7c211433f024)
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _rotation
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import SECRET_GENERATION_OPTIONS

PROBE_OPTIONS = {
    "url": {"type": "str", "required": True},
    "header": {"type": "str", "choices": list(_rotation.TOKEN_HEADERS), "default": "x-api-token"},
    "previous": {"type": "str", "choices": list(_rotation.PREVIOUS_CHECKS), "default": "refused"},
    "accepted_status": {"type": "list", "elements": "int", "default": [200]},
    "refused_status": {"type": "list", "elements": "int", "default": [401, 403]},
    "timeout": {"type": "float", "default": 5.0},
    "wait_timeout": {"type": "float", "default": 30.0},
    "validate_certs": {"type": "bool", "default": True},
}


def main():
    handle_termination()  # SIGTERM cleans up like Ctrl-C
    module = AnsibleModule(
        argument_spec=dict(SECRET_GENERATION_OPTIONS, **{
            "path": {"type": "path", "required": True},
            "key": {"type": "str", "required": True, "no_log": False},
            "state": {"type": "str", "default": "present",
                      "choices": ["present", "rotated", "tested", "finished", "reverted", "absent"]},
            "value": {"type": "str", "no_log": True},
            "keep_previous": {"type": "bool", "default": False},
            "resume": {"type": "bool", "default": True},
            "backup": {"type": "bool", "default": False},
            "keep_backup": {"type": "bool", "default": True},
            "force": {"type": "bool", "default": False},
            "probe": {"type": "dict", "options": PROBE_OPTIONS},
        }),
        required_if=[["state", "tested", ["probe"]]],
        supports_check_mode=True,
    )
    params = module.params
    state = params["state"]
    try:
        secret = _rotation.EnvSecret(params["path"], params["key"], check_mode=module.check_mode)
        if state == "present":
            result = secret.present(params["value"], params["generate"], params["length"], backup=params["backup"])
        elif state == "rotated":
            result = secret.rotate(params["value"], params["generate"], params["length"],
                                   keep_previous=params["keep_previous"], resume=params["resume"])
        elif state == "tested":
            result = secret.test(params["probe"])
        elif state == "finished":
            result = secret.finish(keep_backup=params["keep_backup"])
        elif state == "reverted":
            result = secret.revert(force=params["force"])
        else:
            result = secret.absent(backup=params["backup"])
    except RunbookError as exc:
        fail_with(module, exc)
    diff = result.pop("diff", None)
    if module._diff and diff and result["changed"]:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
