# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fail_with: a missing library reads as missing_required_lib, other errors as their own words,
with the task's own fields (changed) kept."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.ops.plugins.module_utils._errors import MissingLibraryError, ParameterError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


class Failed(Exception):
    pass


class Module:
    """What fail_with uses of AnsibleModule: fail_json, which does not return."""

    def fail_json(self, **result):
        raise Failed(result)


def failure(exc, **result):
    with pytest.raises(Failed) as caught:
        fail_with(Module(), exc, **result)
    return caught.value.args[0]


def test_missing_library_reads_as_missing_required_lib_and_keeps_changed():
    result = failure(MissingLibraryError("zstandard"), changed=True)
    assert "Failed to import the required Python library (zstandard)" in result["msg"]
    assert result["changed"] is True


def test_other_errors_keep_their_words():
    assert failure(ParameterError("jobs must be at least 1")) == {"msg": "jobs must be at least 1"}
    assert failure(ParameterError("x"), changed=False)["changed"] is False
