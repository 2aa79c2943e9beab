# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by the backup modules, and the objects built from them.

POSTGRES_OPTIONS, STORE_OPTIONS, BACKUP_SOURCE_OPTIONS, VOLUME_SOURCE_OPTIONS, REDIS_OPTIONS and
RESTORE_CHECK_OPTIONS are each documented once, in the doc fragment of the same name
(plugins/doc_fragments/postgres.py, store.py, backup_source.py, volume_source.py, redis.py, restore_check.py).
"""

from __future__ import annotations

from ansible_collections.runbook.ops.plugins.module_utils._postgres import PgServer
from ansible_collections.runbook.ops.plugins.module_utils._secrets import DEFAULT_LENGTH, KINDS
from ansible_collections.runbook.ops.plugins.module_utils._store import (
    PARTIAL_MAX_AGE, S3_CONNECT_TIMEOUT, S3_READ_TIMEOUT, S3_RETRIES)

# How env_secret, pg_role_password and redis_credential generate a secret (doc fragment
# runbook.ops.secret_generation).
SECRET_GENERATION_OPTIONS = {
    "generate": {"type": "str", "default": "urlsafe", "choices": list(KINDS)},
    "length": {"type": "int", "default": DEFAULT_LENGTH},
}

# Where and how to reach a Redis server: redis_probe and redis_keys (doc fragment runbook.ops.redis).
REDIS_OPTIONS = {
    "host": {"type": "str", "default": "127.0.0.1"},
    "port": {"type": "int", "default": 6379},
    "db": {"type": "int", "default": 0},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "tls": {"type": "bool", "default": False},
    "tls_ca_path": {"type": "path"},
    "tls_verify": {"type": "bool", "default": True},
    "timeout": {"type": "float", "default": 5},
}

# The SQL checks run in a restored copy: backup_verify and pgbackrest_restore (doc fragment runbook.ops.restore_check).
RESTORE_CHECK_OPTIONS = {
    "assertions": {"type": "list", "elements": "dict", "default": [], "options": {
        "name": {"type": "str"},
        "query": {"type": "str", "required": True},
        "expected": {"type": "raw", "required": True},
    }},
}

POSTGRES_OPTIONS = {
    "login_host": {"type": "str", "aliases": ["host"]},
    "login_port": {"type": "int", "default": 5432, "aliases": ["port"]},
    "login_user": {"type": "str", "aliases": ["user"]},
    "login_password": {"type": "str", "no_log": True, "aliases": ["password"]},
    "ssl_mode": {"type": "str", "choices": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]},
    "connect_timeout": {"type": "int", "default": 10},
    "pg_bin_dir": {"type": "path"},
}

STORE_OPTIONS = {
    "store": {
        "type": "dict", "required": True,
        "options": {
            "type": {"type": "str", "required": True, "choices": ["local", "s3"]},
            "path": {"type": "path"},
            "bucket": {"type": "str"},
            "prefix": {"type": "str", "default": ""},
            "endpoint_url": {"type": "str"},
            "region": {"type": "str"},
            "access_key": {"type": "str", "no_log": False},
            "secret_key": {"type": "str", "no_log": True},
            "session_token": {"type": "str", "no_log": True},
            "profile": {"type": "str"},
            "sse": {"type": "str", "choices": ["AES256", "aws:kms"]},
            "kms_key_id": {"type": "str", "no_log": False},
            "validate_certs": {"type": "bool", "default": True},
            "connect_timeout": {"type": "int", "default": S3_CONNECT_TIMEOUT},
            "read_timeout": {"type": "int", "default": S3_READ_TIMEOUT},
            "retries": {"type": "int", "default": S3_RETRIES},
            "partial_max_age": {"type": "int", "default": PARTIAL_MAX_AGE},
        },
        "required_if": [["type", "local", ["path"]], ["type", "s3", ["bucket"]]],
    },
}

BACKUP_SOURCE_OPTIONS = {
    "service": {"type": "str", "required": True},
    "engine": {"type": "str", "required": True, "choices": ["postgresql", "sqlite"]},
    "database": {"type": "str"},
    "path": {"type": "path"},
    "tmp_dir": {"type": "path"},
}

# volume_backup and volume_restore: which directory, and how to ask Docker about it.
VOLUME_SOURCE_OPTIONS = {
    "service": {"type": "str", "required": True},
    "volume": {"type": "str"},
    "path": {"type": "path"},
    "label": {"type": "str"},
    "docker_cli": {"type": "str", "default": "docker"},
    "compose_project": {"type": "str"},
}


def merged(*specs, **extra):
    spec = {}
    for part in specs:
        spec.update(part)
    spec.update(extra)
    return spec


def pg_server(params):
    """The PgServer the options describe, or None when the engine is not postgresql."""
    if params.get("engine", "postgresql") != "postgresql":
        return None
    return PgServer(host=params["login_host"], port=params["login_port"], user=params["login_user"],
                    password=params["login_password"], ssl_mode=params["ssl_mode"],
                    connect_timeout=params["connect_timeout"], bin_dir=params["pg_bin_dir"])
