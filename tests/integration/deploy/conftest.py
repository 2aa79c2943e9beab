# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the deploy and rollback tests: the sample images and Compose projects (deploy_testlib.py).

Another test directory gets the same fixtures with ``from deploy.deploy_testlib import sample_images, compose_project``
in its conftest.py (tests/integration is on pytest's pythonpath)."""

from __future__ import annotations

from deploy_testlib import compose_project, sample_images  # noqa: F401  pylint: disable=unused-import
