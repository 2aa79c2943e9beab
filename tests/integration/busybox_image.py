# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One small image for tests that need a container but not the sample service.

No registry is reachable, so it is built FROM scratch with Debian's static busybox.  Its tag is a hash
of its inputs, so it is built once and kept, like the sample service's images: test workers running in
parallel share it instead of building and removing copies of their own.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile

BUSYBOX = "/bin/busybox"
DOCKERFILE = 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
LOCK = os.path.join(tempfile.gettempdir(), "rbops-busybox-image.lock")


def busybox_tag():
    digest = hashlib.sha256(DOCKERFILE.encode())
    with open(BUSYBOX, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "rbops-busybox:" + digest.hexdigest()[:12]


def ensure_busybox_image():
    """The tag of the busybox image, built now if it is missing."""
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        raise RuntimeError("the Docker engine is not running: run the integration tests with `make integration`")
    tag = busybox_tag()
    with open(LOCK, "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        present = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0
        if not present:
            with tempfile.TemporaryDirectory(prefix="rbops-busybox-") as context:
                shutil.copy2(BUSYBOX, os.path.join(context, "busybox"))
                with open(os.path.join(context, "Dockerfile"), "w", encoding="utf-8") as handle:
                    handle.write(DOCKERFILE)
                subprocess.run(["docker", "build", "-q", "--network", "host", "-t", tag, context],
                               check=True, capture_output=True)
    return tag
