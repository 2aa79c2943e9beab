# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the incident tests: the PostgreSQL session fixtures of the diagnostics tests (a real blocking
lock), reused rather than written twice."""

from __future__ import annotations

import importlib.util
import os

_SPEC = importlib.util.spec_from_file_location(
    "diagnostics_sessions", os.path.join(os.path.dirname(os.path.dirname(__file__)), "diagnostics", "conftest.py"))
_SESSIONS = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_SESSIONS)

tag = _SESSIONS.tag
pg_session = _SESSIONS.pg_session
wait_for = _SESSIONS.wait_for
blocked_pair = _SESSIONS.blocked_pair
activity_of = _SESSIONS.activity_of
