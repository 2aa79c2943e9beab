#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: log_scan
short_description: Count error lines in recent log files and container logs
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Counts the lines matching a pattern within a time window in log files (globs, files, or directories searched
    recursively, for example the job logs C(DATA_DIR/logs/jobs/*.log)) and in container logs (Docker SDK, C(since)),
    and returns the counts, the last matching lines and one finding per source rated V(ok), V(warning) or V(critical).
  - Lines are text or JSON. A line's own time (a leading ISO-8601 time in text, a time field in JSON; offsets
    honoured, no offset read as UTC) decides whether it is in the window; lines without a time take the time of the
    line before them, and before any time they count when the file changed within the window. Files not changed
    within the window are not read.
  - Logs are read as bytes. NUL bytes (left by a crash) are dropped and invalid UTF-8 is replaced before matching,
    each line is cut at O(max_line_bytes) and each source at O(max_file_bytes) (the newest part of a file is read).
    A file removed between listing and reading is skipped with a note.
  - A O(paths) entry that does not exist or matches no file is a finding in state O(missing_state), never ok.
  - Read-only.
extends_documentation_fragment:
  - runbook.ops.read_only_check
options:
  paths:
    description:
      - Log files, directories (searched recursively for O(file_patterns)) or globs such as V(/srv/app/data/logs/jobs/*.log).
    type: list
    elements: str
    default: []
  file_patterns:
    description: File name patterns of the log files searched in directories.
    type: list
    elements: str
    default: ["*.log"]
  containers:
    description: Names or ids of Docker containers whose logs (stdout and stderr) are searched. Needs the Docker SDK for Python.
    type: list
    elements: str
    default: []
  docker_host:
    description: The Docker daemon to ask, for example V(unix:///var/run/docker.sock); default from the environment.
    type: str
  pattern:
    description: The regular expression (Python syntax, searched anywhere in the line) that makes a line count.
    type: str
    default: "error|fatal|panic|traceback"
  exclude:
    description: Lines matching this regular expression do not count even when they match O(pattern).
    type: str
  ignore_case:
    description: Match O(pattern) and O(exclude) without regard to case.
    type: bool
    default: true
  format:
    description:
      - V(text) reads every line as text; V(json) reads JSON object lines (their time from O(time_fields)); V(auto)
        treats lines starting with C({) as JSON when they parse and the others as text.
    type: str
    choices: [auto, text, json]
    default: auto
  json_fields:
    description: For JSON lines, match O(pattern) against these fields (for example V([level, msg])) instead of the whole line.
    type: list
    elements: str
    default: []
  time_fields:
    description: For JSON lines, the fields that may hold the line's time, first found wins (ISO-8601 or epoch seconds or milliseconds).
    type: list
    elements: str
    default: [time, timestamp, ts, "@timestamp", asctime, t]
  since:
    description: The window, as seconds or a duration such as V(90m), V(24h), V(2d), counted back from now.
    type: str
    default: 24h
  warn_count:
    description: At least this many matching lines in a source is a warning.
    type: int
    default: 1
  crit_count:
    description: At least this many matching lines in a source is critical.
    type: int
    default: 100
  missing_state:
    description: The state of a O(paths) entry that does not exist or matches no file.
    type: str
    choices: [warning, critical]
    default: critical
  max_files:
    description: Read at most this many files, the most recently changed first.
    type: int
    default: 500
  max_line_bytes:
    description: Keep at most this many bytes of each line; the rest of a longer line is skipped without being kept.
    type: int
    default: 65536
  max_file_bytes:
    description: Read at most this many bytes of each file (its newest part) or container log.
    type: int
    default: 67108864
  sample_lines:
    description: Return this many of the last matching lines.
    type: int
    default: 5
  sample_chars:
    description: Cut each returned line at this many characters.
    type: int
    default: 500
requirements:
  - docker (the Docker SDK for Python) when O(containers) is given
seealso:
  - module: runbook.ops.check_report
    description: Turns the findings into the daily report.
'''

EXAMPLES = r'''
- name: Errors in the job logs and the web container of the last day
  runbook.ops.log_scan:
    paths: [/srv/app/data/logs/jobs/*.log]
    containers: [app-web-1]
    since: 24h
    pattern: "error|fatal|panic|traceback"
    fail_on: never
  register: logs

- name: JSON logs, errors by level only
  runbook.ops.log_scan:
    paths: [/var/log/app]
    format: json
    json_fields: [level]
    pattern: "^(error|critical)$"
'''

RETURN = r'''
state:
  description: The worst state of the findings.
  returned: always
  type: str
  sample: warning
findings:
  description:
    - One finding per source kind, in the shape every diagnostic module returns. C(log files) counts all files;
      C(log path <entry>) says a O(paths) entry has no file; C(container <name> logs) counts one container.
    - C(samples) holds the last matching lines.
  returned: always
  type: list
  elements: dict
  sample: [{check: log files, state: warning, value: 2, unit: lines, detail: "2 matching lines in the last 24h in 3 files (/srv/app/data/logs/jobs/a.log: 2)",
            samples: ["/srv/app/data/logs/jobs/a.log: 2026-11-30T08:00:01Z ERROR job failed"]}]
sources:
  description: What was read of each file and container.
  returned: always
  type: list
  elements: dict
  sample: [{source: /srv/app/data/logs/jobs/a.log, kind: file, matches: 2, lines: 120, bytes_read: 9000, lines_cut: 0,
            truncated: false, note: null}]
matches:
  description: Matching lines in all sources.
  returned: always
  type: int
  sample: 2
notes:
  description: Files skipped (removed while being read, unreadable).
  returned: always
  type: list
  elements: str
  sample: ["/srv/app/data/logs/jobs/old.log removed before it could be read (rotated?); skipped"]
since:
  description: The start of the window, UTC.
  returned: always
  type: str
  sample: "2026-11-29T08:00:00Z"
msg:
  description: One line with the counts and the problems.
  returned: always
  type: str
  sample: "1 of 2 checks ok, overall warning - log files warning: 2 matching lines in the last 24h in 3 files"
'''

import datetime
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _findings, _logscan, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import exit_with_findings, fail_with

try:
    import docker
    import docker.errors
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()


def container_reader(docker_host, since):
    """``read(name)``: an iterator of log chunks of a container since ``since`` (epoch seconds)."""
    state = {}

    def client():
        if "client" not in state:
            try:
                state["client"] = docker.DockerClient(base_url=docker_host) if docker_host else docker.from_env()
            except docker.errors.DockerException as exc:
                raise OSError("cannot reach the Docker engine: %s" % _findings.one_line(exc, 300)) from None
        return state["client"]

    def read(name):
        try:
            container = client().containers.get(name)
        except docker.errors.NotFound:
            raise LookupError("container %s does not exist: its logs cannot be read" % name) from None
        except docker.errors.DockerException as exc:
            raise OSError("cannot ask the Docker engine about %s: %s" % (name, _findings.one_line(exc, 300))) from None
        start = datetime.datetime.fromtimestamp(int(since), datetime.timezone.utc).replace(tzinfo=None)
        return container.logs(stdout=True, stderr=True, stream=True, follow=False, since=start)

    return read


def main():
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "str", "default": []},
            "file_patterns": {"type": "list", "elements": "str", "default": ["*.log"]},
            "containers": {"type": "list", "elements": "str", "default": []},
            "docker_host": {"type": "str"},
            "pattern": {"type": "str", "default": "error|fatal|panic|traceback"},
            "exclude": {"type": "str"},
            "ignore_case": {"type": "bool", "default": True},
            "format": {"type": "str", "choices": list(_logscan.FORMATS), "default": "auto"},
            "json_fields": {"type": "list", "elements": "str", "default": []},
            "time_fields": {"type": "list", "elements": "str", "default": list(_logscan.TIME_FIELDS)},
            "since": {"type": "str", "default": "24h"},
            "warn_count": {"type": "int", "default": 1},
            "crit_count": {"type": "int", "default": 100},
            "missing_state": {"type": "str", "choices": ["warning", "critical"], "default": "critical"},
            "max_files": {"type": "int", "default": 500},
            "max_line_bytes": {"type": "int", "default": 65536},
            "max_file_bytes": {"type": "int", "default": 64 * 1024 * 1024},
            "sample_lines": {"type": "int", "default": 5},
            "sample_chars": {"type": "int", "default": 500},
            "fail_on": dict(_status.FAIL_ON_ARGSPEC),
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["containers"] and not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker"), exception=DOCKER_IMPORT_ERROR)
    try:
        window = _logscan.parse_duration(params["since"], "since")
        since = _logscan.now() - window
        pattern = _logscan.Pattern(params["pattern"], params["ignore_case"], params["exclude"], params["json_fields"])
        scanner = _logscan.LogScanner(pattern, since, params["format"], params["time_fields"], params["max_line_bytes"],
                                      params["max_file_bytes"], params["sample_lines"], params["sample_chars"])
        window_text = params["since"].strip()
        if window_text.isdigit():
            window_text = _findings.duration(window)
        result = _logscan.scan(scanner, window_text, params["warn_count"], params["crit_count"],
                               params["paths"], params["file_patterns"], params["max_files"], params["missing_state"],
                               params["containers"],
                               container_reader(params["docker_host"], since) if params["containers"] else None)
    except RunbookError as exc:
        fail_with(module, exc)
    if not result["findings"]:
        module.fail_json(msg="log_scan: give paths or containers to search")
    exit_with_findings(module, result, params["fail_on"])


if __name__ == "__main__":
    main()
