# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place where an engine error or a finding becomes a module result.

The only module_utils file that knows Ansible: every module's ``main()`` ends its ``try`` with
``except RunbookError as exc: fail_with(module, exc)``, so a missing library always reads as
Ansible's standard ``missing_required_lib`` message and every other error as its own words.
"""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _findings, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import MissingLibraryError


def fail_with(module, exc, **result):
    """Fail the task with ``exc`` (a RunbookError) and the structured details it carries;
    ``result`` adds fields of the task's own (e.g. ``changed``)."""
    if isinstance(exc, MissingLibraryError):
        module.fail_json(msg=missing_required_lib(exc.library), **result)
    module.fail_json(msg=str(exc), **dict(result, **exc.details))


def exit_with_findings(module, result, fail_on):
    """End a read-only diagnostic module: its one-line summary as ``msg``, and a failed task when
    the overall state reaches ``fail_on`` (the findings are returned either way)."""
    result["msg"] = _findings.overview(result["findings"], state=result["state"])["msg"]
    if _status.fails(result["state"], fail_on):
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)
