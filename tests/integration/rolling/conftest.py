# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the rolling restart and release_watch tests: the sample images and Compose projects
(deploy/deploy_testlib.py) and an nginx of the test's own in front of them (rolling_testlib.py)."""

from __future__ import annotations

from deploy.deploy_testlib import compose_project, sample_images  # noqa: F401  pylint: disable=unused-import
from rolling_testlib import nginx_proxy  # noqa: F401  pylint: disable=unused-import
