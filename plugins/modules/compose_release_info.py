#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: compose_release_info
short_description: The release history of a Docker Compose project, what runs now, and a rollback plan
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Reads the release history that M(runbook.ops.compose_release) keeps for a Compose project and inspects the
    project's containers through the Docker engine's API.
  - Returns the records newest first, the current and the last succeeded release, the containers, the Compose command
    that would run, the services whose running image differs from the current record (RV(drift) - for example after
    someone ran Compose by hand with a shell variable overriding the env file's image tag), and the plan of a rollback
    to O(release) or to the default target - whether data must be rolled back too because a release being left
    moved the migration head, and which pre-deploy backup to restore.
  - Read-only.
extends_documentation_fragment:
  - runbook.ops.compose_project
  - runbook.ops.read_only_check.read_only
options:
  release:
    description: The release id a rollback would go to; without it, the default target of
      O(runbook.ops.compose_release#module:state=rolled_back).
    type: str
  containers:
    description: Inspect the project's containers (needs the Docker engine); V(false) reads the history only.
    type: bool
    default: true
seealso:
  - module: runbook.ops.compose_release
'''

EXAMPLES = r'''
- name: Where would a rollback go, and does it need the data back?
  runbook.ops.compose_release_info:
    project_dir: /srv/app
  register: releases

- name: Restore the pre-deploy backup first
  ansible.builtin.debug:
    msg: "restore {{ releases.rollback_plan.backup_id }}"
  when: releases.rollback_plan.data_rollback_needed
'''

RETURN = r'''
releases:
  description: Release records, newest first (see the RV(runbook.ops.compose_release#module:release) return value).
  returned: always
  type: list
  elements: dict
current:
  description: The release whose containers run now (a failed one until it is rolled back), or null.
  returned: always
  type: dict
last_successful:
  description: The newest succeeded release, or null.
  returned: always
  type: dict
containers:
  description: The project's containers (one-offs left out); empty with O(containers=false).
  returned: always
  type: list
  elements: dict
compose_command:
  description: V(docker compose) or V(docker-compose), whichever would run; null when neither answers (a warning says why).
  returned: always
  type: str
compose_version:
  description: Its version.
  returned: when a Compose command answers
  type: str
  sample: 1.29.2
project_name:
  description: The Compose project name.
  returned: always
  type: str
drift:
  description: Services whose running image id differs from the current record, each with C(service),
    C(recorded_image), C(recorded_image_id), C(running_image), C(running_image_id). Empty with O(containers=false).
  returned: always
  type: list
  elements: dict
rollback_plan:
  description: The rollback to O(release) or the default target, null without history.
  returned: always
  type: dict
  contains:
    target:
      description: The release a rollback goes to (null when there is none; C(reason) says why).
      type: str
    from:
      description: The release being left.
      type: str
    data_rollback_needed:
      description: Whether a release after the target, up to the one being left, moved the migration head (or ran a
        migration whose head is unknown).
      type: bool
    backup_id:
      description: The pre-deploy backup of the first such release, to restore.
      type: str
    moved_by:
      description: The releases that moved the head.
      type: list
      elements: str
    reason:
      description: One sentence.
      type: str
state_dir:
  description: Where the history and the event log are.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.ops.plugins.module_utils import _compose, _docker
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def main():
    argument_spec = dict(_compose.PROJECT_ARGSPEC)
    argument_spec.update(release={"type": "str"}, containers={"type": "bool", "default": True})
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if module.params["containers"] and not _docker.HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker"), exception=_docker.DOCKER_IMPORT_ERROR)
    try:
        project = _compose.project_from_params(module.params, check_mode=True)
        result = project.info(module.params["release"], with_containers=module.params["containers"])
    except RunbookError as exc:
        fail_with(module, exc)
    for warning in project.warnings:
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
