#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: logrotate_config
short_description: Install a logrotate drop-in only after C(logrotate -d) accepted it
version_added: 0.4.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Writes O(content) to a temp file beside O(path), runs C(logrotate -d) on it, and installs it atomically
    (mode 0644) only when logrotate reported no error. A rejected drop-in leaves the installed one as it was and
    fails with logrotate's messages.
  - C(logrotate -d) exits 0 for some mistakes it merely skips (an unknown option is "ignoring line", so the rest of
    the block would run without it); the module treats any C(error:) line as a rejection, except a log file that
    does not exist yet.
  - The M(ansible.builtin.template) module's C(validate) checks only the exit status and does not validate in check
    mode; this module validates in check mode too.
requirements:
  - logrotate on the managed host
options:
  path:
    description: The drop-in file, for example C(/etc/logrotate.d/app). Its directory must exist.
    type: path
    required: true
  content:
    description: The drop-in's text (the runbook.ops.logrotate role renders it from a template).
    type: str
    required: true
  logrotate:
    description: The logrotate command.
    type: path
    default: logrotate
attributes:
  check_mode:
    support: full
    description: Validates the new content and says whether it would be installed; writes nothing.
  diff_mode:
    support: full
    description: The drop-in before and after.
  idempotent:
    support: full
    description: The same content installs nothing the second time.
seealso:
  - name: logrotate(8)
    description: The drop-in's directives.
    link: https://man7.org/linux/man-pages/man8/logrotate.8.html
'''

EXAMPLES = r'''
- name: Rotate the app's file logs
  runbook.ops.logrotate_config:
    path: /etc/logrotate.d/app
    content: |
      /srv/app/data/logs/*.log /srv/app/data/logs/jobs/*.log {
        daily
        rotate 14
        compress
        delaycompress
        missingok
        notifempty
        su app app
        create 0600 app app
      }
'''

RETURN = r'''
path:
  description: The drop-in file.
  returned: always
  type: str
  sample: /etc/logrotate.d/app
msg:
  description: What was done or would be done.
  returned: always
  type: str
  sample: "/etc/logrotate.d/app installed (logrotate -d accepted it)"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._logrotate import DropIn
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "content": {"type": "str", "required": True},
            "logrotate": {"type": "path", "default": "logrotate"},
        },
        supports_check_mode=True,
    )
    params = module.params
    logrotate = module.get_bin_path(params["logrotate"], required=True)
    try:
        drop_in = DropIn(params["path"], lambda argv: module.run_command(argv), logrotate)  # pylint: disable=unnecessary-lambda
        outcome = drop_in.apply(params["content"], module.check_mode)
    except RunbookError as exc:
        fail_with(module, exc, path=params["path"])
    if not outcome["changed"]:
        msg = "%s is up to date (logrotate -d accepts it)" % params["path"]
    elif module.check_mode:
        msg = "check mode: %s would be installed (logrotate -d accepts it)" % params["path"]
    else:
        msg = "%s installed (logrotate -d accepted it)" % params["path"]
    result = {"changed": outcome["changed"], "path": params["path"], "msg": msg}
    if module._diff:  # pylint: disable=protected-access
        result["diff"] = {"before": outcome["before"], "after": outcome["after"],
                          "before_header": params["path"], "after_header": params["path"]}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
