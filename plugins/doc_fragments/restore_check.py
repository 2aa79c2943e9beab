# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # RESTORE_CHECK_OPTIONS of module_utils/_options.py: the SQL checks run in a restored copy.
    DOCUMENTATION = r"""
options:
  assertions:
    description: Read-only SQL checks run in the restored copy.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the check in the report. Defaults to the query.
        type: str
      query:
        description: SQL whose first column of the first row is compared with O(assertions[].expected).
        type: str
        required: true
      expected:
        description: The expected value; numbers compare as numbers, anything else as text.
        type: raw
        required: true
"""
