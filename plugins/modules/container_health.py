#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: container_health
short_description: Rate the state and health of Docker containers, by name or Compose project
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Inspects containers through the Docker engine's API (the Docker SDK for Python), by name or id and/or by the
    labels Compose (v1 and v2) puts on a project's containers, and rates each V(ok), V(warning) or V(critical).
  - Running and healthy, or running without a health check, is V(ok) (a V(warning) with O(require_healthcheck)).
    A health check still starting is a V(warning) within O(start_grace) seconds of the start and V(critical) after.
    Unhealthy, exited, dead, created but never started, restarting, paused, or a named container that does not
    exist is V(critical). An OOM kill is reported.
  - Restarts are judged from what the engine keeps, the restart count of the restart policy (C(RestartCount)) and
    the time of the latest start (C(State.StartedAt)). A running container that has restarted and whose latest
    start lies within O(restart_window) seconds is a V(warning), and V(critical) once its count reaches
    O(restart_crit_count) (a crash loop). An OOM kill before the latest start is a V(warning) within the window.
    With O(previous), the restarts since that earlier observation are counted instead.
  - One-off containers (C(docker compose run)) never count; O(ignore_services) lists services whose containers
    do not count either (migrations and other one-shot jobs).
  - An engine that cannot be reached is a V(critical) finding, not an error, so reports are still written.
  - Read-only; it never changes anything and always reports C(changed=false).
extends_documentation_fragment:
  - runbook.ops.read_only_check
requirements:
  - docker (the Docker SDK for Python) 5.0 or later
options:
  containers:
    description: Containers to check, by name or id.
    type: list
    elements: str
    default: []
  compose_project:
    description: A Compose project whose containers (running or not) are checked; none at all is V(critical).
    type: str
  compose_services:
    description: Services of O(compose_project) that must have a running container.
    type: list
    elements: str
    default: []
  ignore_services:
    description: Services of O(compose_project) whose containers do not count (one-shot jobs such as migrations).
    type: list
    elements: str
    default: []
  require_healthcheck:
    description: A running container without a health check is a V(warning) instead of V(ok).
    type: bool
    default: false
  start_grace:
    description: Seconds after its start during which a health check still V(starting) is only a V(warning).
    type: float
    default: 120
  restart_window:
    description: A restart whose start lies within this many seconds raises the container's state.
    type: float
    default: 600
  restart_crit_count:
    description: A container restarted within O(restart_window) with at least this many restarts is V(critical).
    type: int
    default: 3
  previous:
    description:
      - The RV(containers) result of an earlier run (for example the previous daily check). For a container found
        there (same id), the restarts since that observation are counted instead of judging the latest start - any
        is a V(warning), O(restart_crit_count) or more V(critical) - however long each run lasted.
      - Each entry needs C(id) and C(restart_count); C(observed_at) makes the message say how long ago it was.
    type: list
    elements: dict
    default: []
  docker_host:
    description:
      - The Docker engine's address, for example V(unix:///var/run/docker.sock) or V(tcp://127.0.0.1:2375).
      - Without it, C(DOCKER_HOST) and the other C(DOCKER_*) environment variables, else the default socket.
    type: str
  timeout:
    description: Seconds allowed for each call to the engine.
    type: int
    default: 30
seealso:
  - module: runbook.ops.http_probe
    description: To check what the containers serve.
'''

EXAMPLES = r'''
- name: The web and worker services of the app project run and are healthy
  runbook.ops.container_health:
    compose_project: app
    compose_services: [web, worker]
    ignore_services: [migrate]

- name: A container by name, for a report that never fails
  runbook.ops.container_health:
    containers: [nginx]
    require_healthcheck: true
    fail_on: never
  register: containers
'''

RETURN = r'''
state:
  description: The worst state of all findings.
  returned: always
  type: str
  sample: critical
summary:
  description: How many findings are in each state.
  returned: always
  type: dict
  sample: {total: 3, ok: 2, warning: 0, critical: 1}
msg:
  description: One line with the counts and the detail of every finding that is not ok.
  returned: always
  type: str
  sample: "2 of 3 checks ok, overall critical - container app_worker_1 critical: running, unhealthy (failing streak 7,
    last check exit code 1: queue stuck)"
findings:
  description: One finding per counted container, missing container, required service without a running container,
    empty project or unreachable engine.
  returned: always
  type: list
  elements: dict
  contains:
    check:
      description: What was checked, for example C(container app_web_1), C(service web), C(compose project app),
        C(docker engine).
      type: str
      sample: container app_web_1
    kind:
      description: Always V(container).
      type: str
      sample: container
    target:
      description: The Compose service, else the container's name.
      type: str
      sample: web
    state:
      description: V(ok), V(warning) or V(critical).
      type: str
      sample: ok
    value:
      description: The health status, else the container status; null when there is no container.
      type: str
      sample: healthy
    detail:
      description: One line saying what was seen.
      type: str
      sample: running, healthy, up 3.0 h
    reasons:
      description: The detail when the state is not ok; empty when ok.
      type: list
      elements: str
      sample: []
containers:
  description: What was inspected, one record per container (counted or not).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The full container id.
      type: str
      sample: 4f0c3d2b5e6a
    name:
      description: The container's name.
      type: str
      sample: app_web_1
    image:
      description: The image the container was created from.
      type: str
      sample: app:1.4.2
    project:
      description: The Compose project label, or null.
      type: str
      sample: app
    service:
      description: The Compose service label, or an empty string.
      type: str
      sample: web
    oneoff:
      description: Whether Compose created it with C(run).
      type: bool
      sample: false
    counted:
      description: Whether its state counts (not a one-off, not an ignored service).
      type: bool
      sample: true
    status:
      description: C(State.Status), for example V(running), V(exited), V(restarting).
      type: str
      sample: running
    health:
      description: C(State.Health.Status), or null without a health check.
      type: str
      sample: healthy
    state:
      description: V(ok), V(warning) or V(critical).
      returned: when counted
      type: str
      sample: ok
    exit_code:
      description: The exit code of the latest run.
      type: int
      sample: 0
    oom_killed:
      description: Whether the kernel killed it for lack of memory (the engine keeps this after a restart).
      type: bool
      sample: false
    restart_count:
      description: Restarts made by the restart policy since the container was created.
      type: int
      sample: 0
    started_at:
      description: The latest start, as the engine reports it.
      type: str
      sample: "2026-11-30T18:24:50.696192798Z"
    finished_at:
      description: The end of the previous run, as the engine reports it.
      type: str
      sample: "0001-01-01T00:00:00Z"
    failing_streak:
      description: Consecutive failed health checks.
      type: int
      sample: 0
    last_health_exit:
      description: Exit code of the latest health check, or null.
      type: int
      sample: 0
    last_health_output:
      description: Output of the latest health check on one line, at most 200 characters.
      type: str
      sample: ""
    observed_at:
      description: When this run inspected it (UTC); give the records back as O(previous) to count restarts since.
      type: str
      sample: "2026-11-30T18:25:10.123456Z"
'''

import datetime

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _docker
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with
from ansible_collections.runbook.ops.plugins.module_utils._status import FAIL_ON_ARGSPEC, fails


def main():
    module = AnsibleModule(
        argument_spec={
            "containers": {"type": "list", "elements": "str", "default": []},
            "compose_project": {"type": "str"},
            "compose_services": {"type": "list", "elements": "str", "default": []},
            "ignore_services": {"type": "list", "elements": "str", "default": []},
            "require_healthcheck": {"type": "bool", "default": False},
            "start_grace": {"type": "float", "default": 120},
            "restart_window": {"type": "float", "default": 600},
            "restart_crit_count": {"type": "int", "default": 3},
            "previous": {"type": "list", "elements": "dict", "default": []},
            "docker_host": {"type": "str"},
            "timeout": {"type": "int", "default": 30},
            "fail_on": dict(FAIL_ON_ARGSPEC),
        },
        supports_check_mode=True,
    )
    if not _docker.HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker"), exception=_docker.DOCKER_IMPORT_ERROR)
    params = module.params
    try:
        if not params["containers"] and not params["compose_project"]:
            raise _docker.ContainerError("give containers, compose_project or both")
        if (params["compose_services"] or params["ignore_services"]) and not params["compose_project"]:
            raise _docker.ContainerError("compose_services and ignore_services need compose_project")
        if params["timeout"] < 1:
            raise _docker.ContainerError("timeout must be at least 1 second, got %s" % params["timeout"])
        rules = _docker.ContainerRules.from_dict(params)
        previous = _docker.previous_records(params["previous"])
        report = _docker.check_containers(
            lambda: _docker.DockerEngine(params["docker_host"], params["timeout"]), rules,
            datetime.datetime.now(datetime.timezone.utc), names=params["containers"],
            project=params["compose_project"], required_services=params["compose_services"],
            ignore_services=params["ignore_services"], previous=previous)
    except RunbookError as exc:
        fail_with(module, exc)
    if fails(report["state"], params["fail_on"]):
        module.fail_json(changed=False, **report)
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
