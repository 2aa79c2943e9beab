# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Until tests/integration/conftest.py registers the plugin, import the fixture here."""

from sample_service_fixture import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import
