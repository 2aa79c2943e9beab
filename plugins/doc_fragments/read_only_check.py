# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Both fragments carry the same attributes block: ansible-test's yamllint reads doc fragments as plain
    # string literals, so the block cannot be one shared string concatenated into both.

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

    # runbook.ops.read_only_check.read_only: modules that only read but rate nothing (no fail_on).
    READ_ONLY = r"""
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
