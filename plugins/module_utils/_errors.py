# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One exception per area.  Each carries a message written for the person on call;
a module's main() catches RunbookError once and turns it into fail_json(msg=...)."""

from __future__ import annotations

import json
import signal
import sys


class RunbookError(Exception):
    """Base of every error the collection raises on purpose.

    ``details`` holds structured, secret-free data that a module may return beside ``msg``.
    """

    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


class ParameterError(RunbookError):
    """Options that do not make sense together or are malformed."""


class StoreError(RunbookError):
    """A backup store (local directory or S3) could not be read or written."""


class BackupError(RunbookError):
    """A dump could not be taken or stored."""


class RestoreError(RunbookError):
    """A backup could not be restored; the target was left as it was unless stated."""


class IntegrityError(RunbookError):
    """A backup object does not match its manifest (size, sha256, format)."""


class VerificationError(RunbookError):
    """A backup restored but failed a check (row counts, assertions, RPO, RTO)."""


class DatabaseError(RunbookError):
    """A database server or file could not be reached or queried."""


class LockError(RunbookError):
    """A single-writer lock is held by another process."""


class HostError(RunbookError):
    """The managed host's own figures (/proc memory, CPU, load) could not be read."""


class ProbeError(RunbookError):
    """A probe definition is invalid (bad URL, bad JMESPath, unknown comparison)."""


class EnvFileError(RunbookError):
    """A dotenv file could not be parsed or rewritten; it was left as it was.  Never names a value."""


class RotationError(RunbookError):
    """A secret rotation could not be staged, verified, finished or reverted."""


class PitrError(RunbookError):
    """pgBackRest could not configure, back up, report on or restore a cluster (point-in-time recovery)."""


class MissingLibraryError(RunbookError):
    """A Python library the task needs is not installed on the managed host; modules turn it
    into missing_required_lib(library)."""

    def __init__(self, library, message=None):
        super().__init__(message or "the Python library %s is required on the managed host" % library)
        self.library = library


class ContainerError(RunbookError):
    """The Docker engine could not be reached, or a container query is malformed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived.  A KeyboardInterrupt, so it unwinds exactly like Ctrl-C: every ``finally``
    and ``except BaseException`` cleanup runs (temp files, partial objects, multipart uploads,
    child processes, snapshot transactions, scratch databases)."""


def handle_termination():
    """Call first in a module's main(): turn SIGTERM (``timeout``, systemd, an AWX job cancel,
    ``kill``) into ``Terminated``, and report an interruption as a plain failure, not a traceback.

    A second SIGTERM while the first one's cleanup runs is ignored (SIGKILL still ends the
    process).  The ignoring handler is a Python one, so child processes started during cleanup
    get the default SIGTERM action back when they exec.
    """
    def ignore(_signum, _frame):
        pass

    def terminate(signum, _frame):
        signal.signal(signal.SIGTERM, ignore)
        raise Terminated("terminated by signal %d (SIGTERM)" % signum)

    def report(kind, value, traceback):
        if not issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, traceback)
            return
        what = "terminated (SIGTERM)" if issubclass(kind, Terminated) else "interrupted (SIGINT)"
        sys.stdout.write(json.dumps({"failed": True, "msg": "%s before the task finished; the cleanup of the "
                                                            "interrupted step ran" % what}) + "\n")
        sys.stdout.flush()

    signal.signal(signal.SIGTERM, terminate)
    sys.excepthook = report


class RedisKeysError(RunbookError):
    """Keys could not be deleted: too many matches for the cap, or Redis refused."""


class ComposeError(RunbookError):
    """A Compose project could not be deployed, rolled back, restarted, scaled, stopped or started, or its
    release history could not be read or written.  ``details`` may carry the release records and containers
    (never an env value other than the managed variables)."""


class WatchError(RunbookError):
    """A watch of a deployed project (release_watch) was asked for with options that make no sense."""


class NginxError(RunbookError):
    """An nginx upstream file could not be read, changed, tested or reloaded; a change that failed
    its test or reload was written back as it was."""


class MaintenanceError(RunbookError):
    """A maintenance step could not run or failed (lock not granted, no free space, a damaged file)."""


class LogrotateError(RunbookError):
    """A logrotate drop-in could not be validated or installed (the previous one is kept)."""


class BundleError(RunbookError):
    """A diagnostics bundle could not be collected or written, or was refused because a known secret
    value remained in it (the message names the member, never the value)."""
