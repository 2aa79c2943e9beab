#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pgbackrest_stanza
short_description: Set up pgBackRest for a PostgreSQL cluster (config file, WAL archiving, stanza, check)
version_added: 0.2.0
description:
  - Writes the stanza's pgBackRest configuration file (mode 0600, owned by O(os_user)) with the repository (a local
    directory or S3), its encryption with the O(repo.cipher_pass) passphrase, retention, and the cluster's data
    directory and port. The passphrase and the S3 secret key are written only to this file.
  - With O(archive_settings_file), writes a PostgreSQL include file (for example C(conf.d/pgbackrest.conf) of a
    Debian cluster) with C(archive_mode = on) and an C(archive_command) that runs C(pgbackrest archive-push), and
    reloads the server when it changed.
  - Creates the stanza in the repository (C(pgbackrest stanza-create)) when it does not exist yet, then runs
    C(pgbackrest check), which proves that a WAL segment reaches the repository.
  - Turning C(archive_mode) on needs a server restart. The module restarts only with O(restart_command);
    otherwise it returns RV(restart_required=true), skips the check and warns; the cluster keeps running unchanged.
author: runbook.ops contributors (!UNKNOWN)
extends_documentation_fragment:
  - runbook.ops.pgbackrest
options:
  pg_data:
    description: The cluster's data directory (pgBackRest's C(pg1-path)).
    type: path
    required: true
  pg_port:
    description: The cluster's port.
    type: int
    default: 5432
  pg_socket_path:
    description: Directory of the cluster's Unix socket; pgBackRest connects through it as O(os_user).
    type: path
    default: /var/run/postgresql
  repo:
    description: The repository (pgBackRest's C(repo1-*) options).
    type: dict
    required: true
    suboptions:
      type:
        description: V(posix) is a directory on this host, V(s3) an S3 bucket (pgBackRest talks HTTPS only).
        type: str
        choices: [posix, s3]
        default: posix
      path:
        description: Absolute directory of a V(posix) repository, or the key prefix (starting with C(/)) in the bucket.
        type: str
        required: true
      cipher_type:
        description: Encryption of everything in the repository.
        type: str
        choices: [none, aes-256-cbc]
        default: none
      cipher_pass:
        description:
          - Passphrase of the repository; required with O(repo.cipher_type=aes-256-cbc). Keep it in Ansible Vault.
          - Written only to the 0600 configuration file; never in a command line, the environment or output.
            Losing it makes every backup in the repository unreadable.
        type: str
      retention_full:
        description: Full backups to keep (C(repo1-retention-full)); older ones and their WAL expire after a backup.
        type: int
      retention_full_type:
        description: Whether O(repo.retention_full) counts backups or days.
        type: str
        choices: [count, time]
      retention_diff:
        description: Differential backups to keep (C(repo1-retention-diff)).
        type: int
      s3_bucket:
        description: Bucket of an V(s3) repository.
        type: str
      s3_endpoint:
        description: S3 endpoint host name, for example C(s3.eu-west-1.amazonaws.com).
        type: str
      s3_region:
        description: Region of the bucket.
        type: str
      s3_key:
        description: Access key id (with O(repo.s3_key_secret)); omit both to use O(repo.s3_key_type=auto).
        type: str
      s3_key_secret:
        description: Secret access key. Written only to the 0600 configuration file.
        type: str
      s3_token:
        description: Session token of temporary credentials. Written only to the 0600 configuration file.
        type: str
      s3_key_type:
        description: V(shared) (the keys above), V(auto) (instance role) or V(web-id).
        type: str
        choices: [shared, auto, web-id]
      s3_uri_style:
        description: V(host) (virtual-hosted buckets) or V(path) (most S3-compatible servers).
        type: str
        choices: [host, path]
      storage_port:
        description: Port of the S3 endpoint (C(repo1-storage-port)).
        type: int
      storage_verify_tls:
        description: Verify the endpoint's TLS certificate (C(repo1-storage-verify-tls)).
        type: bool
      storage_ca_file:
        description: CA bundle for the endpoint's certificate.
        type: path
  log_path:
    description: Directory of pgBackRest's own log files; empty turns its file logging off.
    type: path
  lock_path:
    description: Directory of pgBackRest's lock files (its default is C(/tmp/pgbackrest)).
    type: path
  archive_timeout:
    description: Seconds pgBackRest waits for a WAL segment to reach the repository (C(archive-timeout)).
    type: int
  process_max:
    description: Parallel processes for backup and restore (C(process-max)).
    type: int
  compress_type:
    description: Compression of backups and WAL in the repository.
    type: str
    choices: [none, gz, lz4, zst, bz2]
  extra_options:
    description:
      - Further global pgBackRest options by name, for example C(buffer-size) with V(1MiB).
      - Repository and cluster options have their own parameters and are refused here.
    type: dict
    default: {}
  archive_settings_file:
    description:
      - PostgreSQL include file to write the archive settings to, for example
        C(/etc/postgresql/15/main/conf.d/pgbackrest.conf). Empty leaves C(archive_mode) and C(archive_command) to you.
      - The pgBackRest executable and O(config) must be absolute paths of plain characters, as they go into
        C(archive_command).
    type: path
  wal_archive_timeout:
    description:
      - PostgreSQL's C(archive_timeout) in seconds, written with the archive settings. On a quiet database it bounds
        how old the newest archived WAL can get, so set it well below the RPO.
    type: int
  restart_command:
    description:
      - Command (a list, run without a shell) that restarts the cluster when C(archive_mode) must be turned on, for
        example C([pg_ctlcluster, "15", main, restart]). Empty never restarts.
    type: list
    elements: str
    default: []
  check:
    description: Run C(pgbackrest check) (a WAL switch and its archiving) after the setup.
    type: bool
    default: true
  check_archive_timeout:
    description: Seconds C(pgbackrest check) waits for the switched segment to be archived.
    type: int
    default: 60
  pg_bin_dir:
    description: Directory of C(pg_ctl) (for the reload); defaults to the one of the cluster's major version.
    type: path
attributes:
  check_mode:
    support: full
    description: Reports whether the files would change and whether the stanza would be created; writes, creates,
      reloads and checks nothing.
  diff_mode:
    support: none
    description: The configuration file holds secrets; only whether it changed is reported.
  idempotent:
    support: full
    description: A second run with the same options changes nothing (the check still runs).
notes:
  - Run it as root (C(become)); pgBackRest and C(pg_ctl) then run as O(os_user).
seealso:
  - module: runbook.ops.pgbackrest_backup
  - module: runbook.ops.pgbackrest_info
  - module: runbook.ops.pgbackrest_restore
"""

EXAMPLES = r"""
- name: Archive WAL of the main cluster into an encrypted local repository
  runbook.ops.pgbackrest_stanza:
    stanza: app
    config: /etc/pgbackrest/app.conf
    pg_data: /var/lib/postgresql/15/main
    pg_port: 5432
    repo:
      path: /var/lib/pgbackrest
      cipher_type: aes-256-cbc
      cipher_pass: "{{ vault_pgbackrest_passphrase }}"
      retention_full: 2
    archive_settings_file: /etc/postgresql/15/main/conf.d/pgbackrest.conf
    wal_archive_timeout: 300
    restart_command: [pg_ctlcluster, "15", main, restart]
"""

RETURN = r"""
config_changed:
  description: Whether the configuration file was (or would be) rewritten.
  returned: always
  type: bool
archive_settings_changed:
  description: Whether the archive settings file was (or would be) rewritten.
  returned: always
  type: bool
archive_command:
  description: The archive_command written (empty without O(archive_settings_file)).
  returned: always
  type: str
  sample: /usr/bin/pgbackrest --config=/etc/pgbackrest/app.conf --stanza=app archive-push %p
stanza_created:
  description: Whether C(stanza-create) ran (or would run).
  returned: always
  type: bool
reloaded:
  description: Whether the server was told to reload its configuration.
  returned: always
  type: bool
restart_required:
  description: C(archive_mode) is off in the running server; a restart is needed before WAL is archived.
  returned: always
  type: bool
restarted:
  description: Whether O(restart_command) ran.
  returned: always
  type: bool
check:
  description: V(ok), V(skipped) or V(restart required).
  returned: always
  type: str
  sample: ok
commands:
  description: The pgBackRest command lines run (they never hold a secret).
  returned: always
  type: list
  elements: list
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _pgbackrest as pgbr
from ansible_collections.runbook.ops.plugins.module_utils._errors import PitrError, RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._options import merged

REPO_SPEC = {
    "type": {"type": "str", "choices": list(pgbr.REPO_TYPES), "default": "posix"},
    "path": {"type": "str", "required": True},
    "cipher_type": {"type": "str", "choices": list(pgbr.CIPHER_TYPES), "default": "none"},
    "cipher_pass": {"type": "str", "no_log": True},
    "retention_full": {"type": "int"},
    "retention_full_type": {"type": "str", "choices": ["count", "time"]},
    "retention_diff": {"type": "int"},
    "s3_bucket": {"type": "str"},
    "s3_endpoint": {"type": "str"},
    "s3_region": {"type": "str"},
    "s3_key": {"type": "str", "no_log": False},
    "s3_key_secret": {"type": "str", "no_log": True},
    "s3_token": {"type": "str", "no_log": True},
    "s3_key_type": {"type": "str", "choices": ["shared", "auto", "web-id"]},
    "s3_uri_style": {"type": "str", "choices": list(pgbr.URI_STYLES)},
    "storage_port": {"type": "int"},
    "storage_verify_tls": {"type": "bool"},
    "storage_ca_file": {"type": "path"},
}

# A reload is a signal: give the server this long to read its files before checking again.
RELOAD_SETTLE_SECONDS = 1.0


def main():
    handle_termination()
    module = AnsibleModule(
        argument_spec=merged(
            pgbr.PGBACKREST_OPTIONS,
            pg_data={"type": "path", "required": True},
            pg_port={"type": "int", "default": 5432},
            pg_socket_path={"type": "path", "default": "/var/run/postgresql"},
            repo={"type": "dict", "required": True, "options": REPO_SPEC},
            log_path={"type": "path"},
            lock_path={"type": "path"},
            archive_timeout={"type": "int"},
            process_max={"type": "int"},
            compress_type={"type": "str", "choices": ["none", "gz", "lz4", "zst", "bz2"]},
            extra_options={"type": "dict", "default": {}},
            archive_settings_file={"type": "path"},
            wal_archive_timeout={"type": "int"},
            restart_command={"type": "list", "elements": "str", "default": []},
            check={"type": "bool", "default": True},
            check_archive_timeout={"type": "int", "default": 60},
            pg_bin_dir={"type": "path"},
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "config_changed": False, "archive_settings_changed": False, "archive_command": "",
              "stanza_created": False, "reloaded": False, "restart_required": False, "restarted": False,
              "check": "skipped", "commands": []}
    pgbackrest = None
    try:
        pgbackrest = pgbr.pgbackrest_from_params(p, module.get_bin_path)
        text = pgbr.render_config(p["stanza"], p["pg_data"], p["repo"], pg_port=p["pg_port"],
                                  pg_socket_path=p["pg_socket_path"], log_path=p["log_path"], lock_path=p["lock_path"],
                                  archive_timeout=p["archive_timeout"], process_max=p["process_max"],
                                  compress_type=p["compress_type"], extra=p["extra_options"])
        result["config_changed"] = pgbr.write_owned(p["config"], text, 0o600, p["os_user"], module.check_mode)
        if p["archive_settings_file"]:
            result["archive_command"] = pgbr.archive_command(pgbackrest.binary, p["config"], p["stanza"])
            settings = pgbr.archive_settings(result["archive_command"], p["wal_archive_timeout"])
            result["archive_settings_changed"] = pgbr.write_owned(p["archive_settings_file"], settings, 0o644,
                                                                  p["os_user"], module.check_mode)
        pg_ctl = pgbr.pg_tool("pg_ctl", p["pg_bin_dir"], p["pg_data"])
        if result["archive_settings_changed"] and not module.check_mode and pgbr.postmaster_running(p["pg_data"]):
            pgbr.run_tool([pg_ctl, "reload", "-D", p["pg_data"]], "pg_ctl reload", p["os_user"])
            result["reloaded"] = True
            time.sleep(RELOAD_SETTLE_SECONDS)
        if module.check_mode and result["config_changed"]:
            result["stanza_created"] = True  # the new file is not there to ask with; stanza-create is idempotent
        else:
            info = pgbackrest.info()
            result["stanza_created"] = pgbr.setup_stanza(pgbackrest, info, module.check_mode)
            problem = None if result["stanza_created"] else pgbr.info_problem(info)
            if problem:
                raise PitrError(problem)
        if p["check"] and not module.check_mode:
            state, why = pgbr.run_check(pgbackrest, p["check_archive_timeout"])
            if state == "restart" and p["restart_command"]:
                pgbr.run_tool(p["restart_command"], "restart_command %s" % p["restart_command"][0])
                result["restarted"] = True
                state, why = pgbr.run_check(pgbackrest, p["check_archive_timeout"])
            if state == "reload":
                raise PitrError("%s: archive_command of the running server is not pgBackRest's; set "
                                "archive_settings_file (or set archive_command yourself) and reload" % why)
            if state == "restart":
                result["restart_required"] = True
                result["check"] = "restart required"
                module.warn("archive_mode is off in the running server: restart the cluster (for example "
                            "pg_ctlcluster <version> <name> restart) so WAL archiving starts, or give restart_command")
            else:
                result["check"] = "ok"
    except RunbookError as exc:
        if pgbackrest is not None:
            result["commands"] = pgbackrest.commands
        result["changed"] = result["config_changed"] or result["archive_settings_changed"]
        fail_with(module, exc, **result)
    result["commands"] = pgbackrest.commands
    result["changed"] = any(result[key] for key in
                            ("config_changed", "archive_settings_changed", "stanza_created", "restarted"))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
