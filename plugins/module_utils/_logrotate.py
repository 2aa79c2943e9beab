# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A logrotate drop-in installed only after ``logrotate -d`` accepted it.

``logrotate -d`` exits 0 for some mistakes it only skips (an unknown option is "ignoring line"), so
the validation is its exit status AND no ``error:`` line in its output.  The candidate is validated in a
temp file beside the drop-in, then written atomically; a rejected candidate leaves the installed drop-in
as it was.  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import os
import tempfile

from ansible_collections.runbook.ops.plugins.module_utils import _files
from ansible_collections.runbook.ops.plugins.module_utils._errors import LogrotateError

# logrotate refuses (as root) a config file writable by group or others; drop-ins are 0644 like the distribution's.
DROP_IN_MODE = 0o644
# Lines of `logrotate -d` that are not about the config itself: a log file that does not exist yet, or
# the state file of a machine where logrotate never ran.
NOT_CONFIG_ERRORS = ("error: stat of ", "error: error opening state file")


def validation_errors(rc, output):
    """The problems `logrotate -d` reported (empty when the config is valid)."""
    errors = [line.strip() for line in output.splitlines() if line.strip().lower().startswith("error:")
              and not line.strip().startswith(NOT_CONFIG_ERRORS)]
    if rc != 0 and not errors:
        errors = ["logrotate -d exited with status %d: %s" % (rc, " ".join(output.split())[-500:] or "no output")]
    return errors


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


class DropIn:
    """One drop-in file; ``run(argv) -> (rc, stdout, stderr)`` runs logrotate."""

    def __init__(self, path, run, logrotate="logrotate"):
        if not os.path.isabs(path):
            raise LogrotateError("the drop-in path must be absolute, got %r" % path)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise LogrotateError("the drop-in directory %s does not exist" % directory)
        self.path = path
        self.run = run
        self.logrotate = logrotate

    def validate(self, content):
        """Write ``content`` to a temp file in the drop-in's directory (a hidden name logrotate skips),
        run `logrotate -d` on it, remove it; raise LogrotateError with logrotate's errors."""
        fd, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(self.path), suffix=".validate",
                                    dir=os.path.dirname(self.path))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
            os.chmod(temp, DROP_IN_MODE)
            rc, out, err = self.run([self.logrotate, "-d", temp])
        finally:
            _files.unlink_quietly(temp)
        errors = [line.replace(temp, self.path) for line in validation_errors(rc, (out or "") + "\n" + (err or ""))]
        if errors:
            raise LogrotateError("logrotate -d rejected the new %s, the installed file is unchanged: %s"
                                 % (self.path, "; ".join(errors[:5])))

    def apply(self, content, check_mode=False):
        """Validate, then install when different -> {changed, before, after}. Check mode validates only."""
        if not content.endswith("\n"):
            content += "\n"
        before = read(self.path)
        self.validate(content)
        changed = before != content
        if changed and not check_mode:
            _files.atomic_write(self.path, data=content.encode("utf-8"), mode=DROP_IN_MODE, keep_attributes=False)
        return {"changed": changed, "before": before or "", "after": content}
