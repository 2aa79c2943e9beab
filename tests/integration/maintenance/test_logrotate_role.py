# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logrotate role with the real logrotate: the drop-in is validated with `logrotate -d` (a rejected
one keeps the installed file), check mode writes nothing, and `logrotate -f` with the installed drop-in
really rotates, compresses and keeps the count on a temp log directory."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import time

import pytest

from sample_service_fixture import CTL_PATH, clean_environ

pytestmark = pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")


def role_play(*more, **role_vars):
    """A play running the role with ``role_vars``, then once more with each dict of ``more``."""
    return [{"name": "logrotate", "hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "Run the logrotate role", "ansible.builtin.include_role": {"name": "runbook.ops.logrotate"},
                        "vars": each} for each in (role_vars,) + more]}]


@pytest.fixture()
def dirs(tmp_path):
    data = tmp_path / "data"
    (data / "logs" / "jobs").mkdir(parents=True)
    dest = tmp_path / "logrotate.d"
    dest.mkdir()
    return data, dest


def test_validation_failure_keeps_the_installed_drop_in(dirs, ansible_playbook):
    data, dest = dirs
    base = {"logrotate_name": "app", "logrotate_data_dir": str(data), "logrotate_dest": str(dest)}
    check = ansible_playbook(role_play(**base), check=True)
    assert check.rc == 0, check.output[-3000:]
    assert "would be installed" in check.task("Install the logrotate drop-in for app")["result"]["msg"]
    assert os.listdir(dest) == []

    first = ansible_playbook(role_play(**base), diff=True)
    assert first.rc == 0, first.output[-3000:]
    installed = (dest / "app").read_text()
    assert "%s/logs/*.log %s/logs/jobs/*.log {" % (data, data) in installed
    for directive in ("daily", "rotate 14", "compress", "missingok", "notifempty", "create 0600"):
        assert "\n    %s\n" % directive in installed
    assert "copytruncate" not in installed
    assert os.stat(dest / "app").st_mode & 0o777 == 0o644

    again = ansible_playbook(role_play(**base))
    assert again.rc == 0 and again.task("Install the logrotate drop-in for app")["result"]["changed"] is False

    # An unknown user: logrotate -d says "unknown user" and the old drop-in stays.
    bad = ansible_playbook(role_play(logrotate_su_user="rbops-no-such-user", **base))
    assert bad.rc != 0 and "unknown user 'rbops-no-such-user'" in bad.output, bad.output[-3000:]
    assert "the installed file is unchanged" in bad.task("Install the logrotate drop-in for app")["result"]["msg"]
    assert (dest / "app").read_text() == installed and os.listdir(dest) == ["app"]

    # Settings the role refuses before rendering anything.
    refused = ansible_playbook(role_play(**dict(base, logrotate_rotate=-1, logrotate_size="10 M")))
    assert refused.rc != 0 and "logrotate_rotate 0 or more" in refused.output
    assert (dest / "app").read_text() == installed

    copytruncate = ansible_playbook(role_play(logrotate_copytruncate=True, **base))
    assert copytruncate.rc == 0 and "\n    copytruncate\n" in (dest / "app").read_text()
    assert "create 0600" not in (dest / "app").read_text()


def test_real_rotation_compresses_and_keeps_the_count(dirs, tmp_path, ansible_playbook):
    data, dest = dirs
    marker = tmp_path / "postrotate-ran"
    run = ansible_playbook(role_play(logrotate_name="app", logrotate_data_dir=str(data), logrotate_dest=str(dest),
                                     logrotate_rotate=2, logrotate_frequency="size", logrotate_size="1",
                                     logrotate_postrotate="touch %s" % marker))
    assert run.rc == 0, run.output[-3000:]
    logs = data / "logs"
    state = tmp_path / "logrotate.state"
    for generation in range(4):
        (logs / "app.log").write_text("service line %d\n" % generation)
        (logs / "jobs" / "7.log").write_text("job line %d\n" % generation)
        proc = subprocess.run(["logrotate", "-f", "-s", str(state), str(dest / "app")], capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(os.listdir(logs)) == ["app.log", "app.log.1.gz", "app.log.2.gz", "jobs"]
    assert sorted(os.listdir(logs / "jobs")) == ["7.log", "7.log.1.gz", "7.log.2.gz"]
    # create: a new empty file with the mode given; the newest rotation holds the last lines written.
    assert (logs / "app.log").read_text() == "" and os.stat(logs / "app.log").st_mode & 0o777 == 0o600
    with gzip.open(logs / "app.log.1.gz", "rt") as handle:
        assert handle.read() == "service line 3\n"
    with gzip.open(logs / "jobs" / "7.log.2.gz", "rt") as handle:
        assert handle.read() == "job line 2\n"
    assert marker.exists()


def test_the_sample_services_process_log_needs_copytruncate(sample_service, tmp_path, ansible_playbook):
    """ctl.sh redirects the service's standard error into DATA_DIR/logs/app.log and the service never
    reopens it: after a rename the new lines do not reach app.log; with copytruncate they do."""
    svc = sample_service(start=False)
    env = clean_environ({"PYTHON": sys.executable})
    started = subprocess.run([CTL_PATH, "start", svc.env_file], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert started.returncode == 0, started.stdout + started.stderr
    logs = os.path.join(svc.data_dir, "logs")
    dest = tmp_path / "logrotate.d"
    dest.mkdir()
    state = str(tmp_path / "state")

    common = {"logrotate_paths": [logs + "/app.log"], "logrotate_dest": str(dest), "logrotate_notifempty": False}
    run = ansible_playbook(role_play(dict(common, logrotate_name="app-renamed"), logrotate_name="app-copied",
                                     logrotate_copytruncate=True, **common))
    assert run.rc == 0, run.output[-3000:]

    def rotate_then_request(copytruncate, marker):
        drop_in = dest / ("app-copied" if copytruncate else "app-renamed")
        proc = subprocess.run(["logrotate", "-f", "-s", state, str(drop_in)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert svc.get("/nothing-here-%s" % marker).status == 404
        assert svc.get("/nothing-here-%s-2" % marker).status == 404
        time.sleep(0.5)  # the request line is written after the response
        with open(os.path.join(logs, "app.log"), encoding="utf-8") as handle:
            return handle.read()

    # copytruncate first: the file the service holds open is the one truncated in place.
    assert "nothing-here-copied" in rotate_then_request(True, "copied")
    # Renamed: the service keeps writing into app.log.1, compressed and deleted; app.log gets nothing.
    assert "nothing-here-renamed" not in rotate_then_request(False, "renamed")
    assert sorted(os.listdir(logs)) == ["app.log", "app.log.1.gz", "app.log.2.gz", "jobs"]
