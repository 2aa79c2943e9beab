#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: compose_release
short_description: Deploy, roll back, restart, scale, stop or start a Docker Compose project, with a release history
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Manages one Compose project on the managed host through the Compose CLI (v2 C(docker compose) or v1
    C(docker-compose)) and inspects its containers through the Docker engine's API, by the labels Compose puts on them.
  - O(state=deployed) takes the project's deploy lock, sets the image variables in the env file, pulls what is missing
    (O(pull)), runs the migration command as a one-off container of the new image, runs C(up -d), waits until every
    container is healthy (C(State.Health)) and records the release - what actually runs (image ids and registry
    digests), the hashes of the compose and env files, the migration head before and after, the pre-deploy backup.
    A failed migration switches nothing (the env file and the containers stay as they were). A container that turns
    unhealthy after O(grace_period), restarts, exits, or is not healthy within O(health_timeout) fails the release
    - it is recorded as failed and the task fails, its result still carrying RV(release), RV(previous) and
    RV(containers) so a play can roll back. Deploying what already runs healthy changes nothing and runs no Compose
    command.
  - O(state=rolled_back) redeploys a succeeded release, O(release) or by default the newest succeeded one older than
    the current release that runs other image variables, puts its image references back on the image ids it recorded when a
    tag was rebuilt since, waits until healthy and checks that the running image ids are the recorded ones. The
    release left stays in the history (marked C(rolled_back_to)). RV(rollback_plan) says whether data must be
    rolled back as well; this module restores no data.
  - O(state=restarted) restarts O(services) (default all), with O(one_at_a_time) one container at a time, each
    healthy before the next. O(state=scaled) sets the number of containers per service (O(scale)).
    O(state=stopped) and O(state=started) stop and start O(services).
  - Compose gets the managed variables (the image variables, O(tag_variable) and those of the current release) only
    from the env file - they are removed from the environment it runs in, because a shell variable such as
    C(APP_TAG) would override the env file. A running image that still differs from the one asked for fails the
    release and names the variables.
  - Every change is appended to the project's event log (C(events.jsonl)), with a time, the event, the release
    and the outcome.
  - Compose v1 cannot run a one-off container of a service whose containers run with host networking (it links
    them). With v1 the migration commands then run under the project name C(<project>oneoff), which sees the same
    bind mounts and external volumes; a project with named volumes of its own is refused - give the migration its own
    service (for example one with a profile, which C(up) does not start) or use Compose v2.
  - Services with C(profiles) are not started by C(up -d) here and are not part of the health gate.
extends_documentation_fragment:
  - runbook.ops.compose_project
attributes:
  check_mode:
    support: full
    description:
      - Says what would change - the variables, the services that would be recreated, the images that would be
        pulled, the containers that would be restarted, scaled, stopped or started - and changes nothing; takes no lock.
  diff_mode:
    support: full
    description: The managed variables of the env file before and after (never another value of the env file).
  idempotent:
    support: full
    description: A release that already runs healthy, a scale already reached, services already stopped or started
      report no change.
options:
  state:
    description: What to do.
    type: str
    choices: [deployed, rolled_back, restarted, scaled, stopped, started]
    default: deployed
  tag:
    description: With O(state=deployed), the image tag to deploy, set as O(tag_variable) in the env file.
    type: str
  tag_variable:
    description: "The env file variable the compose files use as the image tag (for example C(image: app:${APP_TAG}))."
    type: str
    default: APP_TAG
  variables:
    description:
      - "With O(state=deployed), the image variables to set instead of (or beside) O(tag) - an image map such as
        C({API_IMAGE: app:1.4, WORKER_TAG: 1.4}). These are the managed variables, the only env file values
        that are recorded and returned."
    type: dict
    default: {}
  pull:
    description: V(missing) pulls images that are not on the host, V(always) pulls every service's image, V(never) fails
      when one is missing.
    type: str
    choices: [always, missing, never]
    default: missing
  migration_service:
    description: The service whose new image runs O(migration_command) and O(migration_head_command), as a one-off
      container (C(run --rm --no-deps)).
    type: str
  migration_command:
    description: With O(state=deployed), the migration, run in a one-off container of the new image before C(up -d).
      A non-zero exit fails the release before anything is switched.
    type: list
    elements: str
  migration_head_command:
    description: Prints the schema head (its last line is kept); run with the current image before the migration and
      with the new one after it, both recorded.
    type: list
    elements: str
  backup_id:
    description: The pre-deploy backup, kept in the release record for a data-aware rollback.
    type: str
  required_env_keys:
    description: Env file keys that must be present and non-empty; a missing one fails the task before any change.
    type: list
    elements: str
    default: []
  health_timeout:
    description: Seconds every container has to become healthy (or to run, without a health check).
    type: float
    default: 120
  grace_period:
    description: Seconds after a container's start during which an C(unhealthy) health status is still waited on;
      after them it fails the gate at once. C(starting) is waited on until O(health_timeout).
    type: float
    default: 0
  keep_releases:
    description: How many succeeded releases the history keeps. Failed releases never count; the newest succeeded
      release and the current one are always kept; a failed release older than the oldest kept succeeded one goes.
    type: int
    default: 10
  lock_timeout:
    description: Seconds to wait for the project's deploy lock when another deploy, rollback or restart holds it;
      V(0) fails at once.
    type: float
    default: 0
  release:
    description: With O(state=rolled_back), the id of the release to roll back to.
    type: str
  failed_gate:
    description:
      - With O(state=rolled_back), the gate that failed after this module's own health gate had passed (for
        example V(http), V(smoke) or V(watch) of the deploy role). The release left is then recorded as
        V(failed) with this gate and O(reason), so it is never chosen as a rollback target later.
    type: str
  reason:
    description: With O(failed_gate), why the release left failed (kept in its record and the event log).
    type: str
  services:
    description: With O(state=restarted), O(state=stopped) or O(state=started), the services (default all).
    type: list
    elements: str
    default: []
  one_at_a_time:
    description: With O(state=restarted), restart one container at a time, each healthy before the next.
    type: bool
    default: false
  scale:
    description: "With O(state=scaled), the number of containers per service, for example C({worker: 3})."
    type: dict
    default: {}
seealso:
  - module: runbook.ops.compose_release_info
  - module: runbook.ops.release_event
  - module: runbook.ops.container_health
'''

EXAMPLES = r'''
- name: Deploy v2 with its migration, recording the pre-deploy backup
  runbook.ops.compose_release:
    project_dir: /srv/app
    tag: v2
    migration_service: api
    migration_command: [python3, /app/app.py, migrate]
    migration_head_command: [python3, /app/app.py, migrate, --status]
    backup_id: "{{ backup.backup_id }}"
    required_env_keys: [API_TOKEN, DATABASE_URL]
    health_timeout: 60
  register: deploy

- name: Back to the previous succeeded release
  runbook.ops.compose_release:
    project_dir: /srv/app
    state: rolled_back

- name: Back to a named release
  runbook.ops.compose_release:
    project_dir: /srv/app
    state: rolled_back
    release: r20261130T210000Z-v1

- name: Restart the api containers one at a time
  runbook.ops.compose_release:
    project_dir: /srv/app
    state: restarted
    services: [api]
    one_at_a_time: true

- name: Three workers
  runbook.ops.compose_release:
    project_dir: /srv/app
    state: scaled
    scale:
      worker: 3
'''

RETURN = r'''
msg:
  description: One line saying what was done or would be done.
  returned: always
  type: str
  sample: release r20261130T210000Z-v2 deployed and healthy (APP_TAG=v2)
release:
  description:
    - The release record - the new one (O(state=deployed)), the target (O(state=rolled_back)) or the current one.
      Null when there is none yet, or in check mode for a deploy.
    - Returned on failure too (a failed release, recorded).
  returned: always
  type: dict
  contains:
    id:
      description: C(r<UTC time>-<tag or short hash>).
      type: str
      sample: r20261130T210000Z-v2
    outcome:
      description: V(succeeded) or V(failed).
      type: str
      sample: succeeded
    variables:
      description: The managed variables (never another env value).
      type: dict
      sample: {APP_TAG: v2}
    services:
      description: Per service, the image reference, the image id and the registry digests it ran.
      type: dict
      sample: {api: {image: "app:v2", image_id: "sha256:0c1f...", repo_digests: []}}
    compose_hash:
      description: sha256 over the compose files.
      type: str
    env_hash:
      description: sha256 of the env file.
      type: str
    migration_ran:
      description: Whether a migration command ran.
      type: bool
    migration_head_before:
      description: The head printed before the migration (null without O(migration_head_command)).
      type: str
      sample: "1"
    migration_head_after:
      description: The head printed after it.
      type: str
      sample: "2"
    backup_id:
      description: O(backup_id).
      type: str
    previous:
      description: The id of the release that ran before.
      type: str
    failure:
      description: For a failed release, C(gate) (V(migration), V(up), V(health), V(image)) and C(message).
      type: dict
    started:
      description: UTC start time.
      type: str
    finished:
      description: UTC end time.
      type: str
    rolled_back_to:
      description: Set on a release that was rolled back, the release that replaced it.
      type: str
previous:
  description: The release record that ran before (null for the first).
  returned: always
  type: dict
containers:
  description: The project's containers (one-offs left out) after the task.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container name.
      type: str
    id:
      description: Container id.
      type: str
    service:
      description: Compose service.
      type: str
    status:
      description: C(State.Status).
      type: str
    health:
      description: C(State.Health.Status) or null.
      type: str
    restart_count:
      description: Restarts by the restart policy.
      type: int
    started_at:
      description: The latest start, as the engine reports it.
      type: str
      sample: "2026-11-30T21:00:04.123456789Z"
    state:
      description: V(ok), V(warning) or V(critical) by the container rules; null when not rated.
      type: str
    image:
      description: The image reference.
      type: str
    image_id:
      description: The image id it runs.
      type: str
    detail:
      description: One line on its state, from the container rules of runbook.ops.container_health.
      type: str
releases:
  description: Release ids in the history, newest first.
  returned: always
  type: list
  elements: str
rollback_plan:
  description: With O(state=rolled_back), C(target), C(from), C(data_rollback_needed), C(backup_id), C(moved_by), C(reason).
  returned: when state is rolled_back
  type: dict
would_recreate:
  description: In check mode with O(state=deployed), the services whose containers would be recreated.
  returned: when state is deployed and in check mode
  type: list
  elements: str
compose_command:
  description: The Compose command used, V(docker compose) or V(docker-compose); null when none ran.
  returned: always
  type: str
project_name:
  description: The Compose project name.
  returned: always
  type: str
restarted:
  description: With O(state=restarted), the containers restarted, in order.
  returned: when state is restarted
  type: list
  elements: str
scale:
  description: With O(state=scaled), the number of containers per service after the task.
  returned: when state is scaled
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _compose, _docker
from ansible_collections.runbook.ops.plugins.module_utils._errors import ComposeError, RunbookError, handle_termination
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def run(module):
    params = module.params
    state = params["state"]
    release = _compose.project_from_params(params, tag_variable=params["tag_variable"], check_mode=module.check_mode,
                                           lock_timeout=params["lock_timeout"])
    gate = {"health_timeout": params["health_timeout"], "grace_period": params["grace_period"]}
    if state == "deployed":
        variables = {key: str(value) for key, value in params["variables"].items()}
        if params["tag"]:
            variables[params["tag_variable"]] = params["tag"]
        return release.deploy(variables, pull=params["pull"], migration_service=params["migration_service"],
                              migration_command=params["migration_command"],
                              migration_head_command=params["migration_head_command"], backup_id=params["backup_id"],
                              required_env_keys=params["required_env_keys"], keep_releases=params["keep_releases"], **gate)
    if state == "rolled_back":
        return release.rollback(params["release"], pull=params["pull"], failed_gate=params["failed_gate"],
                                reason=params["reason"], **gate)
    if state == "restarted":
        return release.restart(params["services"], params["one_at_a_time"], **gate)
    if state == "scaled":
        return release.scale(params["scale"], **gate)
    if state == "stopped":
        return release.stop(params["services"])
    return release.start(params["services"], **gate)


def main():
    handle_termination()
    argument_spec = dict(_compose.PROJECT_ARGSPEC)
    argument_spec.update(
        state={"type": "str", "default": "deployed",
               "choices": ["deployed", "rolled_back", "restarted", "scaled", "stopped", "started"]},
        tag={"type": "str"},
        tag_variable={"type": "str", "default": "APP_TAG"},
        variables={"type": "dict", "default": {}},
        pull={"type": "str", "choices": list(_compose.PULL_POLICIES), "default": "missing"},
        migration_service={"type": "str"},
        migration_command={"type": "list", "elements": "str"},
        migration_head_command={"type": "list", "elements": "str"},
        backup_id={"type": "str"},
        required_env_keys={"type": "list", "elements": "str", "default": [], "no_log": False},
        health_timeout={"type": "float", "default": 120},
        grace_period={"type": "float", "default": 0},
        keep_releases={"type": "int", "default": 10},
        lock_timeout={"type": "float", "default": 0},
        release={"type": "str"},
        failed_gate={"type": "str"},
        reason={"type": "str"},
        services={"type": "list", "elements": "str", "default": []},
        one_at_a_time={"type": "bool", "default": False},
        scale={"type": "dict", "default": {}},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[("state", "scaled", ["scale"])])
    if not _docker.HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker"), exception=_docker.DOCKER_IMPORT_ERROR)
    try:
        params = module.params
        if params["state"] == "deployed" and not params["tag"] and not params["variables"]:
            raise ComposeError("state deployed needs tag or variables")
        for key in ("health_timeout", "grace_period", "lock_timeout"):
            if params[key] < 0:
                raise ComposeError("%s must be 0 or more seconds, got %s" % (key, params[key]))
        if params["keep_releases"] < 1:
            raise ComposeError("keep_releases must be at least 1, got %s" % params["keep_releases"])
        result = run(module)
    except RunbookError as exc:
        fail_with(module, exc)
    warnings = result.pop("warnings", None)
    for warning in warnings or ():
        module.warn(warning)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
