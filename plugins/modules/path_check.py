#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: path_check
short_description: Check disk space, inodes, ownership and permissions of data directories
version_added: 0.1.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - A path that is a symbolic link is followed; its target is checked and the report says where the link points.
    A dangling or looping link is a finding with its reason, never an error.
  - For each path, reports the filesystem that holds it (size, free space, percent used, inodes, as C(df) counts
    them) against warning and critical levels, and optionally checks existence, type, owner, group and
    permissions, recursively with a limit on the number of entries.
  - Each path gets a state V(ok), V(warning) or V(critical) with human reasons; the overall state is the worst.
  - Read-only; it never changes anything and always reports C(changed=false).
extends_documentation_fragment:
  - runbook.ops.read_only_check
options:
  paths:
    description: The paths to check, for example the service's C(DATA_DIR).
    type: list
    elements: path
    required: true
    aliases: [path]
  warn_percent:
    description: A filesystem at least this full (percent of the space usable by unprivileged users) is a warning.
    type: float
    default: 80
  crit_percent:
    description: A filesystem at least this full is critical.
    type: float
    default: 90
  min_free_bytes:
    description: Critical when fewer bytes than this are free, whatever the percentage.
    type: int
  inode_warn_percent:
    description: Warning when at least this percent of the inodes are used.
    type: float
    default: 80
  inode_crit_percent:
    description: Critical when at least this percent of the inodes are used.
    type: float
    default: 90
  must_exist:
    description: A missing path is critical. With V(false), a missing path is reported and ok.
    type: bool
    default: true
  type:
    description: The kind of entry the path must be.
    type: str
    choices: [any, directory, file]
    default: any
  owner:
    description: The user (name or uid) that must own the path (and, with O(recurse), everything under it).
    type: str
  group:
    description: The group (name or gid) that must own the path (and, with O(recurse), everything under it).
    type: str
  mode:
    description:
      - The most permissive mode allowed, as an octal string such as V('0700'); an entry with any permission bit
        beyond these is an offender. V('0750') allows V(0700) and V(0750) but not V(0755).
      - Applies to directories, and to files too unless O(file_mode) is given.
      - An unquoted YAML V(755) arrives as the decimal number 755; a number above V(0o777) written only with the
        digits 0-7 is read as those octal digits (V(0755)) with a warning. Quote modes.
    type: raw
  file_mode:
    description:
      - The most permissive mode allowed for non-directories, for example V('0600').
      - Read like O(mode).
    type: raw
  recurse:
    description:
      - Check ownership and mode of everything under each directory too (symbolic links below it are not followed).
      - Entries removed while the walk runs are counted in RV(paths[].vanished), not reported as offenders.
    type: bool
    default: false
  max_files:
    description: Stop after checking this many entries per path; the result is a warning saying so.
    type: int
    default: 10000
  max_offenders:
    description: Return at most this many offending entries per path (the count is always complete).
    type: int
    default: 20
seealso:
  - module: ansible.builtin.file
    description: To fix the modes and owners this module reports.
'''

EXAMPLES = r'''
- name: DATA_DIR has room, belongs to the service user and is private
  runbook.ops.path_check:
    paths: [/srv/app/data]
    warn_percent: 80
    crit_percent: 90
    owner: app
    mode: "0700"
    file_mode: "0600"
    recurse: true

- name: Disk report for the daily check, never failing
  runbook.ops.path_check:
    paths: [/, /var/lib/docker, /srv/app/data]
    fail_on: never
  register: disks
'''

RETURN = r'''
state:
  description: The worst state of all paths.
  returned: always
  type: str
  sample: critical
summary:
  description: How many paths are in each state.
  returned: always
  type: dict
  sample: {total: 1, ok: 0, warning: 0, critical: 1}
msg:
  description: One line with the counts and the reasons of every path that is not ok.
  returned: always
  type: str
  sample: "0 of 1 paths ok, overall critical - /srv/app/data critical: 2 of 5 checked entries have wrong ownership or mode, ..."
paths:
  description: One report per path, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The absolute path.
      type: str
      sample: /srv/app/data
    exists:
      description: Whether the path exists.
      type: bool
      sample: true
    type:
      description: V(directory), V(file) or V(other) (of the link's target for a link); null when missing.
      type: str
      sample: directory
    link:
      description: Whether the path is a symbolic link.
      type: bool
      sample: false
    link_target:
      description: Where the link points, as written in the link.
      returned: when the path is a symbolic link
      type: str
      sample: /mnt/data/app
    resolved_path:
      description: The link's target with every link resolved; the path that was checked.
      returned: when the path is a symbolic link that resolves
      type: str
      sample: /mnt/data/app
    vanished:
      description: How many entries disappeared while O(recurse) walked the directory (not checked, not offenders).
      type: int
      sample: 0
    owner:
      description: The owning user.
      type: str
      sample: app
    group:
      description: The owning group.
      type: str
      sample: app
    mode:
      description: The permission bits, in octal.
      type: str
      sample: "0700"
    filesystem:
      description: The filesystem holding the path (null when missing).
      type: dict
      sample: {mount: /, total_bytes: 105089261568, used_bytes: 52544630784, free_bytes: 47166558208,
               used_percent: 52.7, inodes_total: 6553600, inodes_free: 6012345, inodes_used_percent: 8.3}
    offenders:
      description: Entries with the wrong owner, group or mode (at most O(max_offenders)).
      type: list
      elements: dict
      sample: [{path: /srv/app/data/app.db, owner: app, group: app, mode: "0644",
                problems: ["mode 0644 has bits 0044 beyond 0600"]}]
    offenders_count:
      description: How many offenders there were in all.
      returned: when owner, group, mode or file_mode is given and the path exists
      type: int
      sample: 1
    files_checked:
      description: How many entries had their ownership and mode checked.
      type: int
      sample: 5
    truncated:
      description: Whether the walk stopped at O(max_files).
      type: bool
      sample: false
    state:
      description: V(ok), V(warning) or V(critical).
      type: str
      sample: warning
    reasons:
      description: Why the path is not ok.
      type: list
      elements: str
      sample: ["filesystem / is 83.2% full, at or over warning 80% (15.1 GiB free)"]
    notes:
      description: Facts worth saying that do not change the state (a followed link, entries that vanished).
      type: list
      elements: str
      sample: ["/srv/app/data is a symbolic link to /mnt/data/app; checked /mnt/data/app"]
    detail:
      description: One line for reports; the reasons, then the filesystem use (binary units) and owner and mode when
        they were checked, each said once.
      type: str
      sample: "filesystem / is 83.2% full, at or over warning 80% (15.1 GiB free)"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils import _pathcheck
from ansible_collections.runbook.ops.plugins.module_utils._status import FAIL_ON_ARGSPEC, fails


def main():
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "path", "required": True, "aliases": ["path"]},
            "warn_percent": {"type": "float", "default": 80},
            "crit_percent": {"type": "float", "default": 90},
            "min_free_bytes": {"type": "int"},
            "inode_warn_percent": {"type": "float", "default": 80},
            "inode_crit_percent": {"type": "float", "default": 90},
            "must_exist": {"type": "bool", "default": True},
            "type": {"type": "str", "choices": ["any", "directory", "file"], "default": "any"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "mode": {"type": "raw"},
            "file_mode": {"type": "raw"},
            "recurse": {"type": "bool", "default": False},
            "max_files": {"type": "int", "default": 10000},
            "max_offenders": {"type": "int", "default": 20},
            "fail_on": dict(FAIL_ON_ARGSPEC),
        },
        supports_check_mode=True,
    )
    try:
        policy = _pathcheck.PathPolicy.from_dict(module.params)
        report = _pathcheck.check_paths(module.params["paths"], policy)
    except RunbookError as exc:
        fail_with(module, exc)
    for warning in policy.warnings:
        module.warn(warning)
    if fails(report["state"], module.params["fail_on"]):
        module.fail_json(changed=False, **report)
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
