# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# The attributes of a module that only reads; both fragments below share them.
_READ_ONLY_ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: Runs normally in check mode; it only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything.
"""


class ModuleDocFragment:
    # Modules that only look (probes, checks) and rate what they see ok, warning or critical.
    DOCUMENTATION = r"""
options:
  fail_on:
    description:
      - The overall state that fails the task. V(never) always returns the results without failing,
        for reports and incident playbooks that evaluate them later.
    type: str
    choices: [critical, warning, never]
    default: critical
""" + _READ_ONLY_ATTRIBUTES

    # runbook.ops.read_only_check.read_only: modules that only read but rate nothing (no fail_on).
    READ_ONLY = _READ_ONLY_ATTRIBUTES
