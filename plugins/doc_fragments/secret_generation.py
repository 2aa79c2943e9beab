# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """How the rotation modules generate a new secret (_options.SECRET_GENERATION_OPTIONS)."""

    DOCUMENTATION = r"""
options:
  generate:
    description: What to generate when no new value is given.
    type: str
    choices: [hex, base64, urlsafe, alnum, fernet]
    default: urlsafe
  length:
    description:
      - Random bytes for V(hex) (two characters each), V(base64) and V(urlsafe); characters for V(alnum).
        Ignored for V(fernet) (always a 32-byte key).
      - At least 16 bytes (22 characters for V(alnum)).
    type: int
    default: 32
"""
