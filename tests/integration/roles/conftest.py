# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the role and playbook tests: the sample service run through its ctl.sh (as the
restore role's `command` writer stops and starts it) and an inventory describing it."""

from __future__ import annotations

import os
import sys

import pytest
import yaml

from harness import REPO, run_playbook
from sample_service_fixture import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import
from managed_service import ManagedService, managed_service  # noqa: F401  pylint: disable=unused-import

PLAYBOOKS = os.path.join(REPO, "playbooks")


def write_inventory(path, host_vars):
    path.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {"localhost": dict(
        host_vars, ansible_connection="local", ansible_python_interpreter=sys.executable)}}}}}))
    return str(path)


@pytest.fixture()
def playbook(tmp_path):
    """playbook(name, host_vars, extra_vars=None, check=False, ...) -> PlaybookRun of playbooks/<name>."""
    counter = [0]

    def run(name, host_vars, extra_vars=None, **kwargs):
        counter[0] += 1
        inventory = write_inventory(tmp_path / ("inventory-%d.yml" % counter[0]), host_vars)
        return run_playbook(tmp_path, os.path.join(PLAYBOOKS, name), inventory=inventory, extra_vars=extra_vars,
                            **kwargs)
    return run


def custom_stats(run, key):
    """This host's value of a set_stats key of the run."""
    return run.custom_stats(key)
