# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # One Compose project on the managed host and where its release history lives.
    DOCUMENTATION = r"""
options:
  project_dir:
    description: The Compose project's directory; Compose runs there.
    type: path
    required: true
  files:
    description:
      - Compose files, relative to O(project_dir) or absolute, in the order Compose merges them.
      - Without it, Compose's own discovery - C(compose.yaml), C(compose.yml), C(docker-compose.yml) or
        C(docker-compose.yaml), with its C(.override) file when there is one.
    type: list
    elements: path
  project_name:
    description:
      - The Compose project name, which labels its containers.
      - Without it, C(COMPOSE_PROJECT_NAME) from the env file, else Compose's rule on the directory name.
    type: str
  env_file:
    description:
      - The env file Compose reads for variable substitution and where the image variables are set,
        relative to O(project_dir) or absolute. Given to Compose by path (C(--env-file)).
      - It holds secrets; only the managed variables (the image tags) ever appear in results, records and events.
    type: path
    default: .env
  compose_command:
    description:
      - V(v2) runs C(docker compose), V(v1) runs C(docker-compose), V(auto) the first of the two that answers.
    type: str
    choices: [auto, v2, v1]
    default: auto
  docker_host:
    description:
      - The Docker engine's address, for example V(unix:///var/run/docker.sock); given to Compose as C(DOCKER_HOST)
        and used for inspection.
      - Without it, C(DOCKER_HOST) from the environment, else the default socket.
    type: str
  state_dir:
    description:
      - Where the release history (C(releases.json), mode 0600), the event log (C(events.jsonl)) and the deploy lock
        (C(deploy.lock)) live.
      - Without it, C(.runbook) in O(project_dir).
    type: path
requirements:
  - docker (the Docker SDK for Python) 5.0 or later
  - Docker Compose v2 (C(docker compose)) or v1 (C(docker-compose)) on the managed host
"""
