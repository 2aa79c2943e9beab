# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  stanza:
    description: The pgBackRest stanza, one per PostgreSQL cluster (letters, digits, C(_), C(.), C(-)).
    type: str
    required: true
  config:
    description:
      - The stanza's pgBackRest configuration file, as M(runbook.ops.pgbackrest_stanza) writes it (mode 0600,
        owned by O(os_user); it holds the repository secrets).
      - Every command runs with C(--config=) this file, so the repository passphrase never appears on a command line.
    type: path
    required: true
  os_user:
    description:
      - The operating system user pgBackRest and C(pg_ctl) run as, the owner of the data directory.
      - When the module runs as root, commands run through C(runuser -u <os_user> --).
    type: str
    default: postgres
  pgbackrest_bin:
    description: The C(pgbackrest) executable; a name is looked up on C(PATH).
    type: str
    default: pgbackrest
  command_timeout:
    description: Seconds one pgBackRest command may take before the module gives up on it.
    type: int
    default: 86400
requirements:
  - pgBackRest 2.40 or newer on the managed host (tested with 2.45)
"""
