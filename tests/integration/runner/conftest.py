# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the ansible-runner tests: the sample service under ctl.sh (managed_service.py), PostgreSQL login
roles (pg_roles.py) and the sample images' Compose projects (deploy/deploy_testlib.py), shared with the role,
rotation and deploy tests."""

from __future__ import annotations

import pytest

from deploy.deploy_testlib import compose_project, sample_images  # noqa: F401  pylint: disable=unused-import
from managed_service import managed_service  # noqa: F401  pylint: disable=unused-import
from pg_roles import pg_roles  # noqa: F401  pylint: disable=unused-import


@pytest.fixture()
def drop_kept_databases(pg_connect):
    """Drop the databases a swap restore keeps beside the restored one (<database>_pre_restore_<stamp>)."""
    names = []
    yield names
    with pg_connect("postgres").cursor() as cur:
        for name in names:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (name + "_pre_restore_%",))
            for (kept,) in cur.fetchall():
                cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % kept)
