# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options of VOLUME_SOURCE_OPTIONS (plugins/module_utils/_options.py): which directory
    # volume_backup copies and volume_restore replaces, and how Docker is asked about it.
    DOCUMENTATION = r"""
options:
  service:
    description:
      - Name of the service whose backups these are; it is the folder of its backups in the store.
      - Letters, digits, C(.), C(_) and C(-).
    type: str
    required: true
  volume:
    description:
      - Docker named volume (a local volume); its directory is the C(Mountpoint) from C(docker volume inspect).
      - Letters, digits, C(_), C(.) and C(-), starting with a letter or digit.
      - For a restore the volume must exist (C(docker volume create)).
      - With O(compose_project), the name of the volume in the Compose file instead.
      - Exactly one of O(volume) and O(path) is required.
    type: str
  compose_project:
    description:
      - Name of the Compose project whose volume O(volume) is. The Docker volume is the one Compose labelled
        C(com.docker.compose.project=<compose_project>) and C(com.docker.compose.volume=<volume>), whatever name
        Compose gave it (C(<project>_<volume>) by default, or the Compose file's C(name)). The task fails when
        there is none (the project was never brought up) or more than one.
      - O(label) defaults to C(<compose_project>_<volume>).
    type: str
  path:
    description:
      - Absolute path of a host directory. For a restore its parent directory must exist.
      - Exactly one of O(volume) and O(path) is required.
    type: path
  label:
    description:
      - Name of the backups in the catalog (the C(database) part of the backup id).
      - Defaults to O(volume), C(<compose_project>_<volume>) with O(compose_project), or the last component of O(path).
    type: str
  docker_cli:
    description:
      - The docker command used to find the volume and the containers that use it.
      - For O(path), the container check is skipped (with a warning) when Docker is not installed or not running.
    type: str
    default: docker
"""
