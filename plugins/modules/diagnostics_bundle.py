#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: diagnostics_bundle
short_description: Collect a redacted diagnostics bundle (one tar.gz) on the managed host
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Writes one C(tar.gz) in O(dest) holding what an incident needs, for M(ansible.builtin.fetch) to bring to the
    controller. The module does not fetch it.
  - For a Compose project (O(compose_project) and/or O(project_dir)) - its release history and event log (from
    O(state_dir)), its compose files, a summary of its containers, and for each container (found by the Compose
    project label, one-off containers included) its C(docker inspect) JSON and the last O(log_lines) lines of its logs
    (at most O(log_bytes) bytes). O(containers) adds containers by name.
  - Files by glob (O(files)), each capped at O(max_file_bytes) and all together at O(max_total_bytes); of a file over its
    cap the tail is kept, starting at a line, with a note at its top and in the manifest. O(raw_files) are copied byte for
    byte without redaction.
  - The disk usage of O(disk_paths), and JSON documents handed over in O(documents), for example the registered results
    of M(runbook.ops.pg_activity), M(runbook.ops.redis_probe) or M(runbook.ops.http_probe).
  - C(manifest.json), the last member, lists every member with its size and source, what was truncated or skipped, and
    the number of redactions per rule. It never holds a redacted value.
  - Everything except O(raw_files) is redacted - values of keys and variables whose names look secret (C(PASSWORD),
    C(SECRET), C(TOKEN), C(KEY), C(CREDENTIAL), C(PRIVATE), C(AUTH), C(DSN), C(DATABASE_URL) and the like) in
    environment entries (C(Config.Env) of inspect output), dotenv, YAML and JSON; the password of connection strings
    (C(scheme://user:password@host)); C(Authorization), C(X-Api-Token), C(X-Api-Key) and cookie headers; bearer tokens;
    JWTs; PEM private key blocks; the value after C(aws_secret_access_key); C(PASSWORD '...') in SQL text; and every known
    secret value, also base64-encoded, URL-encoded and JSON-escaped.
  - Known secret values are O(secrets), every value of the O(env_files), and the values of the secret-looking variables
    of the project's env file and of the containers' environments. Values shorter than 6 characters are not redacted (a
    warning says how many were left out).
  - Logs and files are read in chunks and redacted line by line; a line over 256 KiB is redacted in overlapping windows,
    so a secret across a read boundary is still found.
  - The bundle is written to a hidden temporary name (mode 0600) in O(dest) (created with mode 0700), then read back
    whole and scanned for every known secret value in every form. If one remains, the bundle is deleted and the task
    fails with a message that starts with C(refused) and names the member; the value is never shown. Only a clean bundle gets its final
    name C(diagnostics-<label>-<UTC time>-<random>.tar.gz).
  - Retention keeps the O(keep) newest bundles of the same O(label) in O(dest) and removes older ones; no other file is
    touched.
options:
  dest:
    description: The directory the bundle is written to; created with mode 0700 when missing.
    type: path
    required: true
  label:
    description: Part of the bundle's file name (for example the incident type); retention counts the bundles of one label.
    type: str
    default: incident
  keep:
    description: How many bundles of O(label) to keep in O(dest), the new one included; V(0) keeps all.
    type: int
    default: 10
  compose_project:
    description:
      - The Compose project whose containers (found by the C(com.docker.compose.project) label) go in the bundle.
      - Without it and with O(project_dir), C(COMPOSE_PROJECT_NAME) of the project's env file, else Compose's rule on the
        directory name.
    type: str
  project_dir:
    description: The Compose project's directory; its compose files and env file are read there.
    type: path
  state_dir:
    description: Where the release history (C(releases.json)) and event log (C(events.jsonl)) are; without it, C(.runbook)
      in O(project_dir).
    type: path
  env_file:
    description: The project's env file, relative to O(project_dir) or absolute. Not put in the bundle; its secret-looking
      values are treated as known secrets.
    type: path
    default: .env
  docker_host:
    description: The Docker engine's address, for example V(unix:///var/run/docker.sock); default from the environment.
    type: str
  containers:
    description: More containers (names or ids) whose inspect output and logs go in the bundle.
    type: list
    elements: str
    default: []
  log_lines:
    description: How many of the last lines of each container's logs (stdout and stderr, with timestamps) are read.
    type: int
    default: 1000
  log_bytes:
    description: At most this many bytes of those lines are kept (the newest).
    type: int
    default: 1048576
  files:
    description: Globs (C(**) allowed) of files to put in the bundle, redacted, for example V(/srv/app/data/logs/jobs/*.log).
    type: list
    elements: str
    default: []
  raw_files:
    description:
      - Globs of files copied byte for byte, without redaction, for files redaction would damage.
      - Only the final scan for known secret values protects them.
    type: list
    elements: str
    default: []
  max_file_bytes:
    description: The cap on each file; of a larger file the last part is kept.
    type: int
    default: 1048576
  max_total_bytes:
    description: The cap on all files together; files after it is reached are skipped with a note.
    type: int
    default: 33554432
  max_files:
    description: At most this many files (the newest) from O(files) and O(raw_files).
    type: int
    default: 200
  disk_paths:
    description: Paths whose file system usage (total, used, free) goes in C(disk_usage.json).
    type: list
    elements: path
    default: []
  documents:
    description:
      - JSON documents to add as C(documents/<name>.json), by name (letters, digits, C(.), C(_), C(-)); redacted like
        everything else.
    type: dict
    default: {}
  secrets:
    description: Secret values to take out wherever they appear, in any of the forms listed above.
    type: list
    elements: str
    default: []
  env_files:
    description: Env files whose every value is a known secret (the files themselves are not put in the bundle).
    type: list
    elements: path
    default: []
  env_public_keys:
    description: Variables of O(env_files) whose values are not secret (for example an image tag or a port).
    type: list
    elements: str
    default: []
  secret_key_patterns:
    description: More regular expressions (searched, case-insensitive) of key and variable names whose values are secret.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Lists the members it would collect (files by their size, containers by inspection) and the bundles
      retention would remove, without reading content or writing anything.
  diff_mode:
    support: none
    description: A new bundle has nothing to show as a diff.
  idempotent:
    support: none
    description: Every run writes a new bundle.
notes:
  - Fetch the bundle with M(ansible.builtin.fetch) (C(flat=true)) using RV(path).
  - A Docker engine that cannot be reached, a container without logs or a file that vanished is listed in RV(skipped)
    and the rest is still collected; an incident may be exactly that.
  - O(documents) are ordinary module arguments, shown by Ansible at C(-vvv) like any other; values given in O(secrets)
    are masked there too (they are C(no_log)), so put the secrets a document may hold in O(secrets).
  - Redaction is a safety net, not a guarantee; secrets in formats it does not know may remain, so treat a bundle as
    confidential.
requirements:
  - docker (the Docker SDK for Python) when a Compose project or containers are asked for
seealso:
  - module: runbook.ops.compose_release_info
  - module: runbook.ops.log_scan
'''

EXAMPLES = r'''
- name: Diagnose the API
  runbook.ops.pg_activity:
    login_host: 127.0.0.1
  register: pg

- name: Collect the bundle
  runbook.ops.diagnostics_bundle:
    dest: /var/lib/runbook/diagnostics
    label: api_unavailable
    project_dir: /srv/app
    files:
      - /srv/app/data/logs/jobs/*.log
    disk_paths: [/, /srv/app/data]
    documents:
      pg_activity: "{{ pg }}"
    secrets:
      - "{{ app_api_token }}"
    env_files: [/srv/app/.env]
    env_public_keys: [APP_TAG]
  register: bundle

- name: Bring it to the controller
  ansible.builtin.fetch:
    src: "{{ bundle.path }}"
    dest: "incidents/"
    flat: true
'''

RETURN = r'''
path:
  description: The bundle (in check mode, the name it would have).
  returned: always
  type: str
  sample: /var/lib/runbook/diagnostics/diagnostics-api_unavailable-20261130T221500Z-3fa9c1.tar.gz
size:
  description: Its size in bytes.
  returned: success, not in check mode
  type: int
  sample: 48211
sha256:
  description: Its sha256 (hex).
  returned: success, not in check mode
  type: str
  sample: 5f1c0e2b9d0f6a4e8c1b7a3d2e9f0c4b6a8d1e3f5a7c9b2d4e6f8a0c1e3b5d7f
members:
  description: What is in the bundle (in check mode, what would be), manifest last; names are relative to the
    bundle's top directory.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The member's name, for example C(containers/app-web-1/logs.txt) or C(files/srv/app/data/logs/jobs/a.log).
      type: str
    kind:
      description: C(release_history), C(event_log), C(compose_file), C(project), C(inspect), C(container_logs), C(file),
        C(raw_file), C(disk_usage), C(document) or C(manifest).
      type: str
    source:
      description: The path, container id or document name it came from.
      type: str
    size:
      description: Its size in the bundle (in check mode, the file size up to the cap, or null when unknown).
      type: int
    truncated:
      description: Whether only the tail of it is in the bundle.
      type: bool
    redacted:
      description: Whether it went through redaction (false for O(raw_files)).
      type: bool
    redactions:
      description: How many redactions were made in it.
      type: int
    note:
      description: What was left out, when something was.
      type: str
      returned: when there is one
  sample: [{name: containers/app-web-1/logs.txt, kind: container_logs, source: 4f1c..., size: 10240, truncated: false,
            redacted: true, redactions: 3}]
redactions:
  description: Redactions per rule (counts, never values).
  returned: success, not in check mode
  type: dict
  sample: {known_secret: 4, pem_private_key: 1, auth_header: 0, bearer_token: 1, jwt: 1, connection_string: 2,
           aws_secret_key: 0, sql_password: 0, secret_key: 12}
truncated:
  description: The members of which only the tail is in the bundle.
  returned: success, not in check mode
  type: list
  elements: str
  sample: [files/srv/app/data/logs/jobs/import.log]
skipped:
  description: Sources that could not be collected, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{source: /srv/app/data/logs/jobs/old.log, reason: removed before it could be read}]
notes:
  description: What was looked for and not found (no release history, no file matching a glob, ...).
  returned: always
  type: list
  elements: str
known_secrets:
  description: How many distinct secret values were searched for (never the values).
  returned: always
  type: int
removed:
  description: Older bundles retention removed (in check mode, would remove).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _bundle, _docker, _redact
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def argument_spec():
    return {
        "dest": {"type": "path", "required": True},
        "label": {"type": "str", "default": "incident"},
        "keep": {"type": "int", "default": 10},
        "compose_project": {"type": "str"},
        "project_dir": {"type": "path"},
        "state_dir": {"type": "path"},
        "env_file": {"type": "path", "default": ".env"},
        "docker_host": {"type": "str"},
        "containers": {"type": "list", "elements": "str", "default": []},
        "log_lines": {"type": "int", "default": 1000},
        "log_bytes": {"type": "int", "default": 1024 * 1024},
        "files": {"type": "list", "elements": "str", "default": []},
        "raw_files": {"type": "list", "elements": "str", "default": []},
        "max_file_bytes": {"type": "int", "default": 1024 * 1024},
        "max_total_bytes": {"type": "int", "default": 32 * 1024 * 1024},
        "max_files": {"type": "int", "default": 200},
        "disk_paths": {"type": "list", "elements": "path", "default": []},
        "documents": {"type": "dict", "default": {}},
        "secrets": {"type": "list", "elements": "str", "default": [], "no_log": True},
        "env_files": {"type": "list", "elements": "path", "default": []},
        "env_public_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
        "secret_key_patterns": {"type": "list", "elements": "str", "default": [], "no_log": False},
    }


def collector(params):
    limits = _bundle.Limits(log_lines=params["log_lines"], log_bytes=params["log_bytes"],
                            max_file_bytes=params["max_file_bytes"], max_total_bytes=params["max_total_bytes"],
                            max_files=params["max_files"])
    bundle = _bundle.BundleCollector(params["dest"], params["label"], limits, params["keep"],
                                     engine_factory=lambda: _docker.DockerEngine(params["docker_host"]),
                                     secret_key_patterns=params["secret_key_patterns"])
    bundle.add_secrets(params["secrets"])
    for path in params["env_files"]:
        bundle.add_secrets(_bundle.env_file_values(path, public_keys=params["env_public_keys"]))
    if params["compose_project"] or params["project_dir"]:
        bundle.add_project(_bundle.Project(params["compose_project"], params["project_dir"], params["state_dir"],
                                           params["env_file"]))
    bundle.add_containers(params["containers"])
    bundle.add_files(params["files"])
    bundle.add_files(params["raw_files"], raw=True)
    bundle.add_disk_usage(params["disk_paths"])
    bundle.add_documents(params["documents"])
    return bundle


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    wants_docker = bool(params["compose_project"] or params["project_dir"] or params["containers"])
    if wants_docker and not _docker.HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker"), exception=_docker.DOCKER_IMPORT_ERROR)
    try:
        bundle = collector(params)
        result = bundle.plan() if module.check_mode else bundle.write()
    except RunbookError as exc:
        fail_with(module, exc, changed=False)
    if bundle.known.ignored:
        module.warn("%d secret value(s) shorter than %d characters are not redacted or scanned for"
                    % (bundle.known.ignored, _redact.MIN_SECRET_CHARS))
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
