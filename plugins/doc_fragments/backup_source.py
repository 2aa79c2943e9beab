# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  service:
    description:
      - Name of the service whose backups these are; it is the folder of its backups in the store.
      - Letters, digits, C(.), C(_) and C(-).
    type: str
    required: true
  engine:
    description: Database engine of the backups.
    type: str
    required: true
    choices: [postgresql, sqlite]
  database:
    description:
      - Name of the PostgreSQL database. Required when O(engine=postgresql).
      - For SQLite the name is taken from O(path) (C(/data/app.db) is database C(app)).
    type: str
  path:
    description:
      - Absolute path of the SQLite database file. Required when O(engine=sqlite).
    type: path
  tmp_dir:
    description:
      - Directory for temporary files (the SQLite copy, directory-format dumps). Defaults to the system
        temporary directory. Temporary files are private (0600/0700) and always removed.
    type: path
"""
