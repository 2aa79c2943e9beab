# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - PostgreSQL server host name or address, or a directory holding its Unix socket.
      - When omitted, libpq's default (the local Unix socket) is used.
    type: str
    aliases: [host]
  login_port:
    description: PostgreSQL server port.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description: Role to connect as. The same credentials the service uses at runtime are enough for a backup.
    type: str
    aliases: [user]
  login_password:
    description:
      - Password of O(login_user).
      - It reaches C(pg_dump) and C(pg_restore) through an anonymous in-memory password file of the module
        process (mode 0600, never on disk), never through their command line or environment, and never
        appears in output.
    type: str
    aliases: [password]
  ssl_mode:
    description: libpq C(sslmode) for the connection.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  connect_timeout:
    description: Seconds to wait for a connection before giving up.
    type: int
    default: 10
  pg_bin_dir:
    description:
      - Directory holding C(pg_dump) and C(pg_restore), for example C(/usr/lib/postgresql/16/bin).
      - Use it when the server is newer than the client tools on C(PATH).
    type: path
requirements:
  - psycopg2 (Python library) on the managed host, and the PostgreSQL client tools for the modules that run pg_dump or pg_restore
"""
