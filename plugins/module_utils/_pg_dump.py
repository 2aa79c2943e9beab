# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL client tools: pg_dump and pg_restore command lines, their environment, and
the exported snapshot pg_dump imports so that row counts and dump describe the same data.

The password reaches pg_dump and pg_restore through PGPASSFILE naming an anonymous in-memory
file (memfd) of this process, read by the child through /proc/<pid>/fd/<n>: never an argument
(visible in ps), never the child's environment, never a file on disk — and it vanishes with
this process however it ends (SIGKILL included).
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from ansible_collections.runbook.ops.plugins.module_utils._errors import DatabaseError
from ansible_collections.runbook.ops.plugins.module_utils._postgres import _pg_message, conninfo_quote, count_rows

try:
    import psycopg2
    import psycopg2.extensions
except ImportError:
    psycopg2 = None  # PgServer reports the missing library before a tool runs


def passfile_line(password):
    """A .pgpass line matching every host, port, database and user for ``password``."""
    return "*:*:*:*:%s\n" % str(password).replace("\\", "\\\\").replace(":", "\\:")


def _memory_passfile(content):
    """(path, fd) of a 0600 anonymous file holding ``content``, or None without memfd support.

    libpq stat()s PGPASSFILE (a regular file, no group/other bits) and opens it by path; the
    /proc path of our descriptor reaches the memfd from any child, however it was started (no
    pass_fds needed), and each pg_dump worker reopens it from the start."""
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.memfd_create("rbops-pgpass", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content.encode("utf-8"))
    except OSError:
        os.close(fd)
        return None
    return "/proc/%d/fd/%d" % (os.getpid(), fd), fd


@contextlib.contextmanager
def tool_env(server):
    """The environment for pg_dump/pg_restore of ``server``: the caller's minus its PG*
    variables, plus the connection settings and PGPASSFILE (see the module docstring)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(server.tool_settings())
    fd, passfile = None, None
    try:
        if server.password:
            memory = _memory_passfile(passfile_line(server.password))
            if memory:
                env["PGPASSFILE"], fd = memory
            else:  # no memfd (not Linux): a 0600 temp file, removed on exit, SIGTERM included
                handle, passfile = tempfile.mkstemp(prefix="rbops-pgpass-")
                with os.fdopen(handle, "w") as out:
                    out.write(passfile_line(server.password))
                env["PGPASSFILE"] = passfile
        yield env
    finally:
        if fd is not None:
            os.close(fd)
        if passfile:
            os.unlink(passfile)


class Snapshot:
    """A REPEATABLE READ transaction whose snapshot pg_dump imports with --snapshot, so the
    row counts taken here describe exactly the data in the dump."""

    def __init__(self, server, database):
        self._server = server
        self._database = database
        self.conn = None
        self.snapshot_id = None
        self.server_version = None

    def __enter__(self):
        self.conn = self._server.connect(self._database, autocommit=False)
        try:
            self.conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot(), current_setting('server_version')")
                self.snapshot_id, version = cur.fetchone()
            self.server_version = version.split()[0]
        except psycopg2.Error as exc:
            self.conn.close()
            raise DatabaseError("cannot open a snapshot on %s: %s"
                                % (self._server.describe(self._database), _pg_message(exc))) from None
        return self

    def row_counts(self):
        try:
            with self.conn.cursor() as cur:
                return count_rows(cur)
        except psycopg2.Error as exc:
            raise DatabaseError("counting rows in %s failed: %s"
                                % (self._server.describe(self._database), _pg_message(exc))) from None

    def __exit__(self, *exc_info):
        try:
            self.conn.rollback()
            self.conn.close()
        except psycopg2.Error:
            pass  # the server may be gone; the dump's own error is the one to report


def dump_argv(server, database, snapshot_id, dump_format, jobs=1, directory=None, extra_args=()):
    """pg_dump writing an uncompressed custom-format stream to stdout (we compress), or a
    directory-format dump with ``jobs`` workers into ``directory``."""
    argv = [server.tool("pg_dump"), "--no-password", "--dbname", "dbname=" + conninfo_quote(database),
            "--compress=0"]
    if snapshot_id:
        argv += ["--snapshot", snapshot_id]
    if dump_format == "directory":
        argv += ["--format=directory", "--jobs=%d" % jobs, "--file", directory]
    else:
        argv += ["--format=custom"]
    return argv + list(extra_args)


def restore_argv(server, database, clean, single_transaction, no_owner, jobs=1, directory=None, extra_args=()):
    """pg_restore reading a custom-format stream on stdin, or a directory-format dump."""
    argv = [server.tool("pg_restore"), "--no-password", "--exit-on-error",
            "--dbname", "dbname=" + conninfo_quote(database)]
    if clean:
        argv += ["--clean", "--if-exists"]
    if single_transaction:
        argv.append("--single-transaction")
    if no_owner:
        argv += ["--no-owner", "--no-privileges"]
    if jobs > 1:
        argv.append("--jobs=%d" % jobs)
    argv += list(extra_args)
    if directory:
        argv += ["--format=directory", directory]
    else:
        argv.append("--format=custom")
    return argv
