#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: release_watch
short_description: Watch a Compose project for a while after a deploy - restarts, container health, HTTP error rate
version_added: 0.3.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Watches the containers of one Compose project, found by the C(com.docker.compose.project) label, for
    O(watch_seconds) seconds, polling every O(interval) seconds. This is the watch period of a deploy's health gate - a
    release that turns healthy and then crashes, or that answers with errors, is caught here.
  - "The task fails, naming what crossed which threshold and when (seconds since the watch began and the UTC time),
    when any of these happens:"
  - "B(restarts): a container restarted more than O(max_restarts) times since the first poll - the restart policy
    restarted it, it was restarted by hand, or Compose replaced it with a new container of the same name. Restarts
    before the watch do not count."
  - "B(health): a container is rated critical by the same rules as M(runbook.ops.container_health) - exited, restarting,
    paused, unhealthy, or its health check still starting O(start_grace) seconds after its start; a container that
    was there at the first poll is gone; a service of O(services) has no running container; the project has no
    containers; or the Docker engine cannot be reached."
  - "B(error_rate), with O(metrics_url): the increase of the request counters whose status label matches
    O(error_status) divided by the increase of all request counters between the first and the last scrape is above
    O(max_error_rate). The counter and its status label are O(error_counter) and O(status_label). Increases are
    summed per series between consecutive scrapes, so a counter reset (a restarted process) counts from zero, and a
    series that appears during the watch (the first C(500)) counts in full. Fewer than O(min_requests) requests are
    not judged."
  - "B(metrics), with O(metrics_url): the rate could not be measured - fewer than two good scrapes, or the counter
    is not in the scrape (a close name is suggested)."
  - By default the watch stops at the first restart or health breach (O(fail_fast)), so a rollback can start at once;
    the error rate is judged at the end of the period.
  - Each poll costs one container listing and one inspect per container, plus one scrape with O(metrics_url).
    A module cannot print progress while it runs; the polls come back in RV(samples).
  - Read-only; it never changes anything and always reports C(changed=false).
extends_documentation_fragment:
  - runbook.ops.http_target
  - runbook.ops.read_only_check.read_only
requirements:
  - docker (the Docker SDK for Python) 5.0 or later
options:
  project_name:
    description: The Compose project to watch (the value of the C(com.docker.compose.project) label of its containers).
    type: str
    required: true
  services:
    description:
      - Watch only the containers of these services; each must have a running container. Default - every service.
    type: list
    elements: str
    default: []
  ignore_services:
    description: Services whose containers are not watched (one-shot jobs such as migrations). One-off containers
      (C(docker compose run)) never count.
    type: list
    elements: str
    default: []
  watch_seconds:
    description: How long to watch. The first poll is at once and the last one at the end, so V(0) is a single poll.
    type: float
    default: 60
  interval:
    description: Seconds between polls, kept on a fixed grid from the start so a slow poll does not stretch the watch.
    type: float
    default: 2
  max_restarts:
    description: Restarts of any one container allowed during the watch.
    type: int
    default: 0
  start_grace:
    description: Seconds after a container's start during which a health check still V(starting) is not a breach.
    type: float
    default: 60
  fail_fast:
    description:
      - Stop at the first restart or health breach. With V(false) the whole period is watched and every breach is
        reported, each with the time it was first crossed.
    type: bool
    default: true
  metrics_url:
    description:
      - A Prometheus metrics URL of the service, for example V(http://127.0.0.1:8000/metrics). Without it, only the
        containers are watched.
      - The connection, token, C(Host) and TLS options below apply to it, as in M(runbook.ops.metrics_probe).
    type: str
  error_counter:
    description: The request counter, by sample name.
    type: str
    default: app_http_requests_total
  status_label:
    description: The label of O(error_counter) that holds the HTTP status (V(status), V(code), V(status_code)).
    type: str
    default: status
  error_status:
    description: An anchored regular expression of the statuses that count as errors.
    type: str
    default: '5..'
  max_error_rate:
    description: The highest error rate (errors / requests, 0 to 1) that passes.
    type: float
    default: 0.01
  min_requests:
    description: Below this many requests during the watch the error rate is reported but not judged.
    type: int
    default: 1
  docker_host:
    description:
      - The Docker engine's address, for example V(unix:///var/run/docker.sock).
      - Without it, C(DOCKER_HOST) and the other C(DOCKER_*) environment variables, else the default socket.
    type: str
  docker_timeout:
    description: Seconds allowed for each call to the Docker engine.
    type: int
    default: 30
notes:
  - O(timeout) is the timeout of each scrape; O(docker_timeout) that of each call to the engine.
seealso:
  - module: runbook.ops.container_health
    description: The container rules, for one look.
  - module: runbook.ops.metrics_probe
    description: One scrape with thresholds.
'''

EXAMPLES = r'''
- name: Watch the app for two minutes after the deploy; no restart, at most 1 % errors
  runbook.ops.release_watch:
    project_name: app
    services: [api, worker]
    watch_seconds: 120
    interval: 5
    metrics_url: http://127.0.0.1:8000/metrics
    api_token: "{{ app_api_token }}"
    max_error_rate: 0.01
    min_requests: 50
  register: watch

- name: Another exporter's counter, and the whole period even after a breach (for a report)
  runbook.ops.release_watch:
    project_name: shop
    watch_seconds: 300
    fail_fast: false
    metrics_url: http://127.0.0.1:9113/metrics
    error_counter: http_requests_total
    status_label: code
    max_restarts: 1
  ignore_errors: true
  register: watch
'''

RETURN = r'''
msg:
  description: One line - passed or failed, the figures, and every breach with when it happened.
  returned: always
  type: str
  sample: "Compose project app failed the watch and it stopped early (7 polls over 12 s, 1 restart) - restarts at +12 s
    (2026-11-30T21:40:12Z): container app_api_1 restarted 1 time since the watch began (max_restarts 0)"
passed:
  description: Whether no threshold was crossed.
  returned: always
  type: bool
  sample: false
breaches:
  description: The thresholds crossed, in the order they were first crossed (each kind and target once).
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: V(restarts), V(health), V(error_rate) or V(metrics).
      type: str
      sample: restarts
    target:
      description: What crossed it, for example C(container app_api_1), C(service api), C(error rate).
      type: str
      sample: container app_api_1
    value:
      description: The figure (restarts, the rate, the health status), or null.
      type: raw
      sample: 1
    threshold:
      description: The limit it crossed (O(max_restarts), O(max_error_rate), V(critical)), or null.
      type: raw
      sample: 0
    at_seconds:
      description: Seconds since the watch began at the poll that first saw it.
      type: float
      sample: 12.0
    time:
      description: The UTC time of that poll.
      type: str
      sample: "2026-11-30T21:40:12Z"
    detail:
      description: A sentence for people.
      type: str
      sample: container app_api_1 restarted 1 time since the watch began (max_restarts 0)
project:
  description: The project watched.
  returned: always
  type: str
  sample: app
started:
  description: When the watch began (UTC).
  returned: always
  type: str
  sample: "2026-11-30T21:40:00Z"
finished:
  description: When it ended (UTC).
  returned: always
  type: str
  sample: "2026-11-30T21:40:12Z"
duration:
  description: Seconds watched.
  returned: always
  type: float
  sample: 12.0
polls:
  description: How many polls were made.
  returned: always
  type: int
  sample: 7
stopped_early:
  description: Whether the watch ended before O(watch_seconds) (a breach with O(fail_fast)).
  returned: always
  type: bool
  sample: true
restarts:
  description: Restarts since the first poll, by container name.
  returned: always
  type: dict
  sample: {app_api_1: 1, app_worker_1: 0}
restarts_total:
  description: The sum of RV(restarts).
  returned: always
  type: int
  sample: 1
error_rate:
  description: Errors / requests between the first and the last scrape; null without O(metrics_url), without two
    good scrapes or without requests.
  returned: always
  type: float
  sample: 0.0021
requests:
  description: The increase of all O(error_counter) series during the watch; null without O(metrics_url).
  returned: always
  type: float
  sample: 4810
errors:
  description: The increase of its series whose O(status_label) matches O(error_status); null without O(metrics_url).
  returned: always
  type: float
  sample: 10
scrapes:
  description: Scrapes made and good ones (C(total), C(good)); null without O(metrics_url).
  returned: always
  type: dict
  sample: {total: 7, good: 7}
containers:
  description: The watched containers at the last poll (name, service, id, status, health, state, restart_count,
    started_at).
  returned: always
  type: list
  elements: dict
  sample: [{name: app_api_1, service: api, id: 4f0c3d2b5e6a, status: running, health: starting, state: warning,
            restart_count: 1, started_at: "2026-11-30T21:40:11.52Z"}]
samples:
  description:
    - The polls - at most 120, the first and the latest ones - each with C(at_seconds), C(time), C(containers) (by
      name - status, health, state, restarts since the start) and, with O(metrics_url), C(metrics) (C(scrape) V(ok)
      with the C(requests) and C(errors) counted so far, or V(failed) with a C(reason)).
  returned: always
  type: list
  elements: dict
  sample: [{at_seconds: 0.0, time: "2026-11-30T21:40:00Z",
            containers: {app_api_1: {status: running, health: healthy, state: ok, restarts: 0}},
            metrics: {scrape: ok, requests: 0, errors: 0}}]
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _docker, _http, _probe_target, _prometheus, _watch
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def argument_spec():
    spec = dict(_probe_target.CONNECTION_ARGSPEC)
    spec.update(
        project_name={"type": "str", "required": True},
        services={"type": "list", "elements": "str", "default": []},
        ignore_services={"type": "list", "elements": "str", "default": []},
        watch_seconds={"type": "float", "default": 60},
        interval={"type": "float", "default": 2},
        max_restarts={"type": "int", "default": 0},
        start_grace={"type": "float", "default": 60},
        fail_fast={"type": "bool", "default": True},
        metrics_url={"type": "str"},
        error_counter={"type": "str", "default": "app_http_requests_total"},
        status_label={"type": "str", "default": "status"},
        error_status={"type": "str", "default": "5.."},
        max_error_rate={"type": "float", "default": 0.01},
        min_requests={"type": "int", "default": 1},
        docker_host={"type": "str"},
        docker_timeout={"type": "int", "default": 30},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if not _docker.HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker"), exception=_docker.DOCKER_IMPORT_ERROR)
    try:
        settings = _watch.WatchSettings.from_dict(params)
        scrape = None
        if params["metrics_url"]:
            target_spec = {key: params[key] for key in _probe_target.CONNECTION_ARGSPEC}
            target_spec["url"] = params["metrics_url"]
            target = _probe_target.ProbeTarget.from_dict(target_spec)
            if not _http.HAS_CRYPTOGRAPHY and target.scheme == "https":
                module.fail_json(msg=missing_required_lib("cryptography", reason="to read the certificate of an https url"))

            def scrape():
                return _prometheus.scrape(target)

        engine = _docker.DockerEngine(params["docker_host"], params["docker_timeout"])
        labels = {_docker.COMPOSE_PROJECT_LABEL: settings.project}
        result = _watch.watch(settings, lambda: engine.with_labels(labels), scrape)
    except RunbookError as exc:
        fail_with(module, exc, changed=False)
    if not result["passed"]:
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
