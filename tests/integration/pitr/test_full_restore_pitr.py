# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/full_restore.yml with point-in-time recovery as the database source, over the live cluster's
data directory, and the configuration from a git ref: the sample service (a local process, its ctl.sh the
writer) on a cluster of this module's own (pg_createcluster, a pgBackRest stanza in a local repository);
the refusals before anything stops, the restore to a time between two writes, a failed start."""

from __future__ import annotations

import datetime
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import PASSPHRASE, PG_VERSION, Cluster, _require_tools
from harness import run_module
from sample_service_fixture import CTL_PATH, clean_environ, http_request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PLAYBOOK = os.path.join(REPO, "playbooks", "full_restore.yml")


@pytest.fixture(scope="module", name="live")
def live_cluster(tmp_path_factory):
    """One cluster for the module: WAL archived by a stanza in a local encrypted repository, a full backup, and
    a database `app` for the sample service."""
    _require_tools()
    cluster = Cluster()
    tmp = tmp_path_factory.mktemp("live")
    try:
        cluster.create()
        setup = run_module(tmp, "runbook.ops.pgbackrest_stanza",
                           cluster.stanza_params(restart_command=cluster.restart_command()))
        assert not setup.failed and setup.result["check"] == "ok", setup.output[-3000:]
        backup = run_module(tmp, "runbook.ops.pgbackrest_backup", {"stanza": cluster.stanza, "config": cluster.config})
        assert not backup.failed, backup.output[-3000:]
        cluster.psql("CREATE DATABASE app OWNER %s" % cluster.user)
        cluster.log_file = "/var/log/postgresql/postgresql-%s-%s.log" % (PG_VERSION, cluster.name)
        yield cluster
    finally:
        cluster.drop()


class Writer:
    """The sample service on the cluster's database `app`, started and stopped by its ctl.sh."""

    def __init__(self, sample_service, cluster):
        url = "postgresql://%s:%s@127.0.0.1:%d/app" % (cluster.user, cluster.password, cluster.port)
        self.svc = sample_service(database_url=url, start=False)
        self.argv = {action: [CTL_PATH, action, self.svc.env_file] for action in ("start", "stop")}

    def ctl(self, action):
        return subprocess.run([CTL_PATH, action, self.svc.env_file], env=clean_environ({"PYTHON": sys.executable}),
                              capture_output=True, text=True, timeout=60, check=False)

    @property
    def pid(self):
        with open(os.path.join(self.svc.data_dir, "app.pid"), encoding="ascii") as handle:
            return int(handle.read().strip() or 0)

    def add(self, prefix, count):
        for i in range(count):
            resp = self.svc.api("POST", "/api/items", json={"name": "%s-%d" % (prefix, i), "secret": "s"})
            assert resp.status == 201, resp

    def names(self):
        return sorted(item["name"] for item in self.svc.api("GET", "/api/items").json["items"])

    def healthy(self):
        try:
            return http_request(self.svc.url + "/readyz", timeout=2).status == 200
        except OSError:
            return False


@pytest.fixture(name="writer")
def started_writer(sample_service, live):
    started = Writer(sample_service, live)
    proc = started.ctl("start")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield started
    started.ctl("stop")


def pitr_vars(cluster, writer, tmp_path, **extra):
    values = {
        "target_hosts": "localhost",
        "full_restore_service": "app",
        "full_restore_writer": "process",
        "full_restore_stop_command": writer.argv["stop"],
        "full_restore_start_command": writer.argv["start"],
        "full_restore_writer_environment": {"PYTHON": sys.executable},
        "full_restore_db_source": "pitr",
        "full_restore_pitr_stanza": cluster.stanza,
        "full_restore_pitr_config": cluster.config,
        "full_restore_pitr_pg_data": cluster.pg_data,
        "full_restore_pitr_pg_port": cluster.port,
        "full_restore_pitr_stop_command": ["pg_ctlcluster", PG_VERSION, cluster.name, "stop"],
        "full_restore_pitr_start_command": ["pg_ctlcluster", PG_VERSION, cluster.name, "start"],
        "full_restore_pitr_log_file": cluster.log_file,
        "full_restore_pitr_recovery_timeout": 120,
        "full_restore_health_url": writer.svc.url + "/readyz",
        "full_restore_health_timeout": 20,
        "full_restore_report_dir": str(tmp_path / "reports"),
    }
    values.update(extra)
    return values


def custom_stats(run):
    for record in reversed(run.records):
        if record["action"] in ("ansible.builtin.set_stats", "set_stats") and record["status"] == "ok":
            data = record["result"].get("ansible_stats", {}).get("data", {})
            if "runbook_full_restore" in data:
                return data["runbook_full_restore"]["localhost"]
    raise AssertionError("no set_stats runbook_full_restore in the run:\n%s" % run.output[-3000:])


def findings(stats):
    return {item["check"]: item for item in stats["findings"]}


def checkouts():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "full-restore-config-*")))


def git(cwd, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@localhost", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@localhost")
    return subprocess.run(["git", "-C", str(cwd)] + list(args), check=True, capture_output=True, text=True,
                          env=env, timeout=30).stdout.strip()


def config_repo(path):
    """A repository with two commits of config/: the first (returned) is the known-good one."""
    (path / "config").mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "config" / "app.conf").write_text("workers = 4\n")
    (path / "README").write_text("not configuration\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "known good")
    good = git(path, "rev-parse", "HEAD")
    (path / "config" / "app.conf").write_text("workers = 8\n")
    (path / "config" / "extra.conf").write_text("added later\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "later")
    return good


def cluster_running(cluster):
    return subprocess.run(["pg_ctlcluster", PG_VERSION, cluster.name, "status"], capture_output=True,
                          timeout=30, check=False).returncode == 0


def postmaster_started(cluster):
    return cluster.psql("SELECT pg_postmaster_start_time()")


def test_refused_before_anything_stops(live, writer, ansible_playbook, tmp_path):
    cluster = live
    writer.add("before", 2)
    pid, started, names = writer.pid, postmaster_started(cluster), writer.names()
    before = checkouts()
    # a configuration ref the repository does not have: refused in the pre-check, checkout removed
    good = config_repo(tmp_path / "repo")
    base = pitr_vars(cluster, writer, tmp_path, full_restore_config_git_repo="file://%s" % (tmp_path / "repo"),
                     full_restore_config_git_ref=good, full_restore_config_git_subdir="config",
                     full_restore_config_dest=str(tmp_path / "config"))
    missing = ansible_playbook(PLAYBOOK, extra_vars=dict(base, full_restore_pitr_replace_live=True,
                                                         full_restore_config_git_ref="no-such-tag"))
    assert missing.rc != 0 and "refused at 'Check out the configuration's git ref'" in missing.output, \
        missing.output[-3000:]
    assert "ref no-such-tag of repository file://" in missing.output and "nothing was stopped" in missing.output

    # without the opt-in: refused before anything is stopped
    refused = ansible_playbook(PLAYBOOK, extra_vars=base)
    assert refused.rc != 0 and "set full_restore_pitr_replace_live: true" in refused.output, refused.output[-3000:]
    assert "refused at 'Check the opt-in to replace the live cluster', nothing was stopped or changed" in refused.output

    # a time target the WAL archive does not reach yet (written after the last archived segment)
    writer.add("unarchived", 1)
    time.sleep(0.2)
    target = cluster.now()
    late = ansible_playbook(PLAYBOOK, extra_vars=dict(base, full_restore_pitr_replace_live=True,
                                                      full_restore_pitr_target_type="time",
                                                      full_restore_pitr_target=target))
    assert late.rc != 0 and "refused at 'Check that the pgBackRest repository covers the target'" in late.output, \
        late.output[-3000:]
    assert "the WAL archive ends before the target" in late.output and "nothing was stopped" in late.output

    # check mode, opted in, latest: the plan with the configuration files it would copy; nothing stops
    check = ansible_playbook(PLAYBOOK, check=True, extra_vars=dict(base, full_restore_pitr_replace_live=True))
    assert check.rc == 0, check.output[-4000:]
    assert "check mode: nothing is stopped or changed" in check.output
    assert "database: point-in-time recovery of stanza %s to latest" % cluster.stanza in check.output
    assert "at %s (commit %s), directory config -> %s, 1 file(s)" % (good, good[:12], tmp_path / "config") in check.output
    assert not (tmp_path / "config").exists() and not (tmp_path / "reports").exists()

    for run in (missing, refused, late, check):
        assert PASSPHRASE not in run.output and cluster.password not in run.output
    assert writer.pid == pid and writer.healthy() and postmaster_started(cluster) == started
    assert writer.names() == sorted(names + ["unarchived-0"])
    assert checkouts() == before, "a temporary checkout of the configuration was left behind"


def test_full_restore_to_a_time_between_two_writes(live, writer, ansible_playbook, tmp_path):
    cluster = live
    writer.add("early", 3)
    time.sleep(1.1)
    target = cluster.now()
    time.sleep(1.1)
    writer.add("late", 2)
    cluster.switch_wal()
    kept = [name for name in writer.names() if not name.startswith("late-")]
    good = config_repo(tmp_path / "repo")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "app.conf").write_text("workers = oops\n")
    pid, started, before = writer.pid, postmaster_started(cluster), checkouts()

    run = ansible_playbook(PLAYBOOK, extra_vars=pitr_vars(
        cluster, writer, tmp_path, full_restore_pitr_replace_live=True, full_restore_pitr_target_type="time",
        full_restore_pitr_target=target, full_restore_pitr_database="app",
        full_restore_pitr_login_user=cluster.user, full_restore_pitr_login_password=cluster.password,
        full_restore_pitr_expected_row_counts={"public.items": len(kept)},
        full_restore_pitr_assertions=[{"name": "no late rows", "query": "SELECT count(*) FROM items WHERE name LIKE 'late-%'",
                                       "expected": 0}],
        full_restore_verify_url=writer.svc.url + "/api/items", full_restore_verify_api_token=writer.svc.token,
        full_restore_verify_json_path="count", full_restore_verify_min=len(kept),
        full_restore_config_git_repo=str(tmp_path / "repo"), full_restore_config_git_ref=good,
        full_restore_config_git_subdir="config", full_restore_config_dest=str(tmp_path / "config")))
    assert run.rc == 0, run.output[-5000:]
    # exactly the rows written before the target, the writers stopped and started, the cluster restarted
    assert writer.names() == kept and writer.healthy() and writer.pid != pid
    assert postmaster_started(cluster) != started and cluster.psql("SELECT pg_is_in_recovery()") == "f"
    # exactly the older commit's configuration, the replaced file kept, nothing else of the repository
    assert sorted(os.listdir(tmp_path / "config"))[0] == "app.conf"
    assert (tmp_path / "config" / "app.conf").read_text() == "workers = 4\n"
    (backup,) = [name for name in os.listdir(tmp_path / "config") if name.startswith("app.conf.")]
    assert (tmp_path / "config" / backup).read_text() == "workers = oops\n"
    assert sorted(os.listdir(tmp_path / "config")) == ["app.conf", backup]
    assert checkouts() == before

    stats = custom_stats(run)
    assert stats["state"] == "ok" and stats["failed_step"] == "", stats
    pitr = stats["pitr"]
    recovered = datetime.datetime.fromisoformat(pitr["recovered_to"].replace("+00", "+00:00"))
    wanted = datetime.datetime.fromisoformat(target.replace("+00", "+00:00"))
    assert recovered < wanted and 0 < pitr["target_gap_seconds"] < 5 and pitr["restore_seconds"] > 0
    assert pitr["verification"]["row_counts"]["public.items"] == len(kept)
    found = findings(stats)
    for step in ("pre-check (nothing stopped)", "stop writers", "restore database", "restore configuration",
                 "start writers", "health gate", "verify data", "RTO", "RPO database"):
        assert found[step]["state"] == "ok", found[step]
    assert "recovered to %s" % pitr["recovered_to"] in found["restore database"]["detail"]
    assert "assertions: 1 of 1 pass" in found["restore database"]["detail"]
    assert found["RPO database"]["value"] == pitr["target_gap_seconds"]
    assert 0 < found["restore database"]["value"] < found["RTO"]["value"]
    with open(stats["report_files"]["json"], encoding="utf-8") as handle:
        assert "recovered to %s" % pitr["recovered_to"] in json.dumps(json.load(handle))
    assert PASSPHRASE not in run.output and cluster.password not in run.output
    print("\nfull restore (PITR): restore database %.2f s (pgbackrest restore %.2f s, restore+start+recovery %.2f s), "
          "RTO %.1f s; recovered to %s, target %s, gap %.3f s"
          % (found["restore database"]["value"], pitr["restore_seconds"], pitr["duration_seconds"],
             found["RTO"]["value"], pitr["recovered_to"], target, pitr["target_gap_seconds"]))


def test_a_failed_start_leaves_the_cluster_stopped_and_says_so(live, writer, ansible_playbook, tmp_path):
    cluster = live
    run = ansible_playbook(PLAYBOOK, extra_vars=pitr_vars(
        cluster, writer, tmp_path, full_restore_pitr_replace_live=True, full_restore_health_timeout=3,
        full_restore_pitr_start_command=["false"],
        # without its database the service never answers: ctl.sh need not wait its usual 20 s for it
        full_restore_writer_environment={"PYTHON": sys.executable, "START_TIMEOUT": "3"}))
    try:
        assert run.rc != 0, run.output[-4000:]
        assert "Traceback" not in run.output
        stats = custom_stats(run)
        assert stats["failed_step"].startswith("Recover the database"), stats
        found = findings(stats)
        detail = found["restore database"]["detail"]
        assert found["restore database"]["state"] == "critical" and "start_command false failed" in detail, detail
        assert "left behind: the cluster is stopped; its data directory %s was overwritten" % cluster.pg_data in detail
        # the writers were started again (the service cannot be ready without its database)
        assert any(r["task"] == "Stop or start the writers with their command, start" and r["status"] != "skipped"
                   for r in run.records), [r["task"] for r in run.records]
        assert found["health gate"]["state"] == "critical" and not writer.healthy()
        assert not cluster_running(cluster)
    finally:
        subprocess.run(["pg_ctlcluster", PG_VERSION, cluster.name, "start"], check=True, capture_output=True,
                       timeout=120)
    assert cluster.psql("SELECT count(*) >= 0 FROM pg_database") == "t"
