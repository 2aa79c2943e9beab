# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the files_sync and full_restore tests: write files with a mode, read a tree back."""

from __future__ import annotations

import os
import stat


def write(root, relative, data, mode=0o644):
    path = os.path.join(str(root), relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


def tree(root):
    """{relative path: (bytes, mode)} of the regular files below root (hidden manifest excluded)."""
    found = {}
    for directory, _dirs, files in os.walk(str(root)):
        for name in files:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, str(root))
            if name == ".files_sync.manifest.json" or os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                found[relative] = (handle.read(), stat.S_IMODE(os.lstat(path).st_mode))
    return found
