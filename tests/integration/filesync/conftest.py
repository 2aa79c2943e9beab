# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the files_sync tests: a bucket of its own per test on the moto server (the s3_bucket
fixture of tests/integration/conftest.py), store options for it, and multi-task playbooks."""

from __future__ import annotations

import os
import sys

import boto3
import pytest

from harness import run_playbook

# The helpers of the backup module tests (secret_var, task, ok, failed, moto_server): one copy.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "backup"))

from backup_testlib import SECRET_VARS  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture()
def run_tasks(tmp_path):
    """run_tasks([task(...), ...], env=None, check=False) -> PlaybookRun of one play on localhost."""
    def run(tasks, extra_vars=None, **kwargs):
        play = {"hosts": "localhost", "gather_facts": False, "tasks": list(tasks)}
        return run_playbook(tmp_path, [play], extra_vars=dict(SECRET_VARS, **(extra_vars or {})), **kwargs)
    return run


@pytest.fixture()
def s3_client(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


@pytest.fixture()
def sync_store(s3_endpoint, s3_bucket):
    """store options of files_sync for a fresh bucket, prefix uploads/."""
    return {"type": "s3", "bucket": s3_bucket, "prefix": "uploads", "endpoint_url": s3_endpoint,
            "access_key": "testing", "secret_key": "testing"}


def _load_role_fixtures():
    """The sample service run through ctl.sh and the playbook runner of tests/integration/roles (loaded under
    a name of its own: both files are called conftest.py)."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "roles", "conftest.py")
    spec = importlib.util.spec_from_file_location("roles_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ROLES = _load_role_fixtures()
managed_service = _ROLES.managed_service
playbook = _ROLES.playbook
sample_service = _ROLES.sample_service


@pytest.fixture()
def custom_stats():
    """custom_stats(run, key) -> this host's value of a set_stats key of the run."""
    return _ROLES.custom_stats
