# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_pg_dump: pg_dump/pg_restore command lines and the tools' environment (no server needed)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _pg_dump as pg_dump
from ansible_collections.runbook.ops.plugins.module_utils._postgres import PgServer

SECRET = "s3cr:et\\pass word"


@pytest.fixture()
def server(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        path = bin_dir / tool
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return PgServer(host="127.0.0.1", port=5433, user="backup", password=SECRET, ssl_mode="require",
                    connect_timeout=7, bin_dir=str(bin_dir))


def test_dump_argv_custom(server):
    argv = pg_dump.dump_argv(server, "shop's db", "00000003-1", "custom", extra_args=["--exclude-table=x"])
    assert argv == [os.path.join(server.bin_dir, "pg_dump"), "--no-password", "--dbname", "dbname='shop\\'s db'",
                    "--compress=0", "--snapshot", "00000003-1", "--format=custom", "--exclude-table=x"]


def test_dump_argv_directory_without_snapshot(server):
    argv = pg_dump.dump_argv(server, "shop", None, "directory", jobs=4, directory="/tmp/x/dump")
    assert "--snapshot" not in argv
    assert argv[-4:] == ["--format=directory", "--jobs=4", "--file", "/tmp/x/dump"]


def test_restore_argv_options(server):
    argv = pg_dump.restore_argv(server, "shop", clean=True, single_transaction=True, no_owner=True)
    assert argv == [os.path.join(server.bin_dir, "pg_restore"), "--no-password", "--exit-on-error",
                    "--dbname", "dbname='shop'", "--clean", "--if-exists", "--single-transaction",
                    "--no-owner", "--no-privileges", "--format=custom"]
    argv = pg_dump.restore_argv(server, "shop", clean=False, single_transaction=False, no_owner=False, jobs=3,
                                directory="/tmp/d", extra_args=["--disable-triggers"])
    assert argv[5:] == ["--jobs=3", "--disable-triggers", "--format=directory", "/tmp/d"]


def test_argv_never_holds_the_password(server):
    for argv in (pg_dump.dump_argv(server, "shop", "1", "custom"),
                 pg_dump.restore_argv(server, "shop", True, True, True)):
        assert not any(SECRET in arg for arg in argv)


def test_passfile_line_escapes_colon_and_backslash():
    assert pg_dump.passfile_line(SECRET) == "*:*:*:*:s3cr\\:et\\\\pass word\n"


def test_tool_env_password_in_anonymous_memory(server, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "leaked")
    monkeypatch.setenv("PGDATABASE", "other")
    with pg_dump.tool_env(server) as env:
        assert SECRET not in "".join(env.values())
        assert "PGPASSWORD" not in env and "PGDATABASE" not in env
        assert env["PGHOST"] == "127.0.0.1" and env["PGPORT"] == "5433" and env["PGUSER"] == "backup"
        assert env["PGSSLMODE"] == "require" and env["PGCONNECT_TIMEOUT"] == "7"
        passfile = env["PGPASSFILE"]
        assert os.readlink(passfile).startswith("/memfd:rbops-pgpass")
        assert stat.S_IMODE(os.stat(passfile).st_mode) == 0o600 and stat.S_ISREG(os.stat(passfile).st_mode)
        # A child reads it by path, as libpq does, without inheriting any descriptor.
        out = subprocess.run([sys.executable, "-c", "import sys; print(open(sys.argv[1]).read(), end='')", passfile],
                             capture_output=True, text=True, check=True, close_fds=True).stdout
        assert out == pg_dump.passfile_line(SECRET)
    assert not os.path.exists(passfile), "the password outlived the tools' environment"


def test_tool_env_without_memfd_uses_a_private_temp_file(server, monkeypatch, tmp_path):
    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(pg_dump.tempfile, "tempdir", None)
    with pg_dump.tool_env(server) as env:
        passfile = env["PGPASSFILE"]
        assert passfile.startswith(str(tmp_path)) and stat.S_IMODE(os.stat(passfile).st_mode) == 0o600
    assert not os.path.exists(passfile)


def test_tool_env_without_password(server):
    server._password = None  # pylint: disable=protected-access
    with pg_dump.tool_env(server) as env:
        assert "PGPASSFILE" not in env
