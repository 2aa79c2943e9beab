# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time recovery through ansible-playbook against real clusters: the pitr playbooks end to
end, a missing WAL segment, the refusals, the RPO rating, and the passphrase kept out of output and argv."""

from __future__ import annotations

import datetime
import json
import os
import stat
import time

from conftest import PASSPHRASE, free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PLAYBOOKS = os.path.join(REPO, "playbooks")


def custom_stats(run, key):
    for record in reversed(run.records):
        if record["action"] in ("ansible.builtin.set_stats", "set_stats") and record["status"] == "ok":
            data = record["result"].get("ansible_stats", {}).get("data", {})
            if key in data:
                return data[key]["localhost"]
    raise AssertionError("no set_stats %s in the run:\n%s" % (key, run.output[-3000:]))


def assert_secret_kept(run):
    assert PASSPHRASE not in run.output
    assert PASSPHRASE not in json.dumps(run.records, default=str)


def test_backup_then_restore_to_a_time_between_two_writes(pg_cluster, ansible_playbook, tmp_path):
    cluster = pg_cluster
    common = {"target_hosts": "localhost", "pitr_stanza": cluster.stanza, "pitr_config": cluster.config}
    params = cluster.stanza_params()
    setup = dict(common, pitr_pg_data=cluster.pg_data, pitr_pg_port=cluster.port, pitr_repo=params["repo"],
                 pitr_lock_path=params["lock_path"], pitr_archive_timeout=20, pitr_check_archive_timeout=20,
                 pitr_archive_settings_file=params["archive_settings_file"], pitr_wal_archive_timeout=60,
                 pitr_rpo="1h")
    # Check mode: says what it would write, writes nothing
    checked = ansible_playbook(os.path.join(PLAYBOOKS, "pitr_backup.yml"), check=True, extra_vars=dict(
        setup, pitr_restart_command=cluster.restart_command()))
    assert checked.rc == 0, checked.output[-3000:]
    assert "check mode: the configuration would be written first" in checked.output
    assert not os.path.exists(cluster.config) and not os.path.exists(params["archive_settings_file"])
    assert not os.path.exists(cluster.repo) and cluster.psql("SHOW archive_mode") == "off"
    assert_secret_kept(checked)
    # Without pitr_restart_command the live cluster is never restarted: the role stops and says why.
    refused = ansible_playbook(os.path.join(PLAYBOOKS, "pitr_backup.yml"), verbosity=3, extra_vars=setup)
    assert refused.rc != 0 and "archive_mode is off in the running cluster" in refused.output, refused.output[-3000:]
    assert "check restart required" in refused.output
    assert_secret_kept(refused)
    assert cluster.psql("SHOW archive_mode") == "off"
    assert not any(r["action"] == "runbook.ops.pgbackrest_backup" for r in refused.records)

    backup = ansible_playbook(os.path.join(PLAYBOOKS, "pitr_backup.yml"), verbosity=3, extra_vars=dict(
        setup, pitr_restart_command=cluster.restart_command()))
    assert backup.rc == 0, backup.output[-4000:]
    assert "cluster restarted, check ok" in backup.output
    assert_secret_kept(backup)
    stats = custom_stats(backup, "runbook_pitr")
    assert stats["state"] == "ok" and stats["backup"]["type"] == "full", stats
    assert "stanza %s - 2 of 2 checks ok, overall ok" % cluster.stanza in backup.output
    info = os.stat(cluster.config)
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.stat(cluster.pg_data).st_uid
    with open(params["archive_settings_file"], encoding="utf-8") as handle:
        settings = handle.read()
    assert "archive_mode = on" in settings and PASSPHRASE not in settings
    assert cluster.psql("SHOW archive_mode") == "on"

    cluster.psql("CREATE TABLE items (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    for n in (1, 2, 3):
        cluster.psql("INSERT INTO items (n) VALUES (%d)" % n)
    time.sleep(1.1)
    target = cluster.now()
    time.sleep(1.1)
    for n in (4, 5):
        cluster.psql("INSERT INTO items (n) VALUES (%d)" % n)
    cluster.switch_wal()

    copy = cluster.restored_dir()
    report_dir = str(tmp_path / "reports")
    restore = ansible_playbook(os.path.join(PLAYBOOKS, "pitr_restore.yml"), verbosity=3, extra_vars=dict(
        common, pitr_restore_data_dir=copy, pitr_restore_port=free_port(),
        pitr_restore_target_type="time", pitr_restore_target=target, pitr_restore_database="postgres",
        pitr_restore_expected_row_counts={"public.items": 3},
        pitr_restore_assertions=[{"name": "only the early rows", "query": "SELECT max(n) FROM items", "expected": 3}],
        pitr_restore_login_user=cluster.user, pitr_restore_login_password=cluster.password,
        pitr_restore_max_restore_seconds=300, pitr_restore_recovery_timeout=120, pitr_report_dir=report_dir))
    assert restore.rc == 0, restore.output[-4000:]
    assert_secret_kept(restore)
    report = custom_stats(restore, "runbook_pitr_restore")
    assert report["passed"] and report["promoted"], report
    assert report["verification"]["row_counts"] == {"public.items": 3}
    assert [a["ok"] for a in report["verification"]["assertions"]] == [True]
    # The last replayed transaction is the third insert: before the target, and no later than the copy shows.
    port = report["port"]
    last_kept = cluster.psql("SELECT max(at) FROM items", port=port)
    recovered = datetime.datetime.fromisoformat(report["recovered_to"].replace("+00", "+00:00"))
    wanted = datetime.datetime.fromisoformat(target.replace("+00", "+00:00"))
    assert recovered < wanted and 0 < report["target_gap_seconds"] < 5
    assert abs((recovered - datetime.datetime.fromisoformat(last_kept.replace("+00", "+00:00"))).total_seconds()) < 0.01
    assert cluster.psql("SELECT string_agg(n::text, ',' ORDER BY n) FROM items", port=port) == "1,2,3"
    assert cluster.psql("SELECT pg_is_in_recovery()", port=port) == "f"
    assert cluster.psql("SHOW archive_mode", port=port) == "off"  # the copy never pushes into the live repository
    assert report["rto_seconds"] > 0 and "recovered to %s, target" % report["recovered_to"] in restore.output
    (written,) = os.listdir(report_dir)
    with open(os.path.join(report_dir, written), encoding="utf-8") as handle:
        assert json.load(handle)["recovered_to"] == report["recovered_to"]
    # the live cluster kept every row
    assert cluster.psql("SELECT count(*) FROM items") == "5"


def test_restore_module_argv_and_refusals(stanza, ansible_module):
    cluster = stanza
    base = {"stanza": cluster.stanza, "config": cluster.config}
    # check mode: the plan, with the argv it would run, and nothing written
    copy = cluster.restored_dir("planned")
    plan = ansible_module("runbook.ops.pgbackrest_restore", dict(base, data_dir=copy, restore_port=free_port()),
                          check=True, verbosity=3)
    assert not plan.failed, plan.output[-3000:]
    argv = plan.result["restore_command"]
    assert argv[:4] == ["runuser", "-u", "postgres", "--"] and argv[-1] == "restore"
    assert "--config=" + cluster.config in argv and "--archive-mode=off" in argv
    assert "--set=" + cluster.first_backup["label"] in argv
    assert not any(PASSPHRASE in arg or "cipher" in arg for arg in argv)
    assert not os.path.exists(copy)
    assert_secret_kept(plan)

    live = ansible_module("runbook.ops.pgbackrest_restore", dict(base, data_dir=cluster.pg_data, restore_port=cluster.port))
    assert live.failed and "is running" in live.result["msg"]
    cluster.psql("SELECT 1")  # untouched and still up
    # a stopped live cluster: refused as the live data directory unless force
    os.makedirs(copy)
    open(os.path.join(copy, "keep.txt"), "w", encoding="utf-8").close()
    busy = ansible_module("runbook.ops.pgbackrest_restore", dict(base, data_dir=copy, restore_port=free_port()))
    assert busy.failed and "is not empty" in busy.result["msg"] and os.listdir(copy) == ["keep.txt"]
    early = ansible_module("runbook.ops.pgbackrest_restore", dict(
        base, data_dir=cluster.restored_dir("early"), restore_port=free_port(), target_type="time",
        target="2000-01-01 00:00:00+00"))
    assert early.failed and "no backup ends before" in early.result["msg"]
    assert not os.path.exists(cluster.restored_dir("early"))
    # the repository is the S3 bucket (through TLS): the first backup is there, and restores from it ...
    assert any("/backup/%s/%s/" % (cluster.stanza, cluster.first_backup["label"]) in key for key in cluster.s3.keys())
    # ... to a named restore point: the row written after it is not there
    cluster.psql("CREATE TABLE marks (n int)")
    cluster.psql("INSERT INTO marks VALUES (1)")
    cluster.psql("SELECT pg_create_restore_point('before-bad-delete')")
    cluster.psql("INSERT INTO marks VALUES (2)")
    cluster.switch_wal()
    copy = cluster.restored_dir("named")
    restored = ansible_module("runbook.ops.pgbackrest_restore", dict(
        base, data_dir=copy, restore_port=free_port(), target_type="name", target="before-bad-delete",
        stop_after=True, database="postgres", login_user=cluster.user, login_password=cluster.password,
        expected_row_counts={"public.marks": 1},
        assertions=[{"name": "a promoted copy", "query": "SELECT NOT pg_is_in_recovery()", "expected": True}]))
    assert not restored.failed, restored.output[-3000:]
    assert restored.result["promoted"] and restored.result["stopped"] and restored.result["verification"]["passed"]
    assert restored.result["stop_reason"].startswith('recovery stopping at restore point "before-bad-delete"')
    assert restored.result["target"]["backup"] == cluster.first_backup["label"]
    assert not os.path.exists(os.path.join(copy, "postmaster.pid"))


def test_live_data_directory_is_refused_without_force(stanza, ansible_module):
    cluster = stanza
    import subprocess  # pylint: disable=import-outside-toplevel

    subprocess.run(["pg_ctlcluster", "15", cluster.name, "stop"], check=True, capture_output=True, timeout=60)
    refused = ansible_module("runbook.ops.pgbackrest_restore", {
        "stanza": cluster.stanza, "config": cluster.config, "data_dir": cluster.pg_data, "restore_port": cluster.port})
    assert refused.failed and "live cluster's data directory" in refused.result["msg"]
    assert refused.result.get("changed") is False
    subprocess.run(["pg_ctlcluster", "15", cluster.name, "start"], check=True, capture_output=True, timeout=60)
    assert cluster.psql("SELECT 1") == "1"


def test_info_rates_the_archive_against_the_rpo(stanza, ansible_module):
    cluster = stanza
    base = {"stanza": cluster.stanza, "config": cluster.config}
    fresh = ansible_module("runbook.ops.pgbackrest_info", dict(base, rpo="1h", login_host="127.0.0.1",
                                                               login_port=cluster.port, login_user=cluster.user,
                                                               login_password=cluster.password))
    assert not fresh.failed and fresh.result["state"] == "ok", fresh.output[-3000:]
    archive = fresh.result["checks"][0]
    assert archive["last_segment"] == fresh.result["info"]["archive"]["max"] and archive["age_seconds"] < 60
    assert fresh.result["archiver"]["archived_count"] >= 1
    # an incremental backup builds on the full one; retention keeps both
    incr = ansible_module("runbook.ops.pgbackrest_backup", dict(base, type="incr"))
    assert not incr.failed, incr.output[-3000:]
    assert incr.result["backup"]["type"] == "incr" and incr.result["backup"]["prior"] == cluster.first_backup["label"]
    assert incr.result["expired"] == [] and incr.result["changed"]
    time.sleep(2.1)
    stale = ansible_module("runbook.ops.pgbackrest_info", dict(base, rpo="2s"))
    assert stale.failed and stale.result["state"] == "critical"
    assert "is %ds old" % stale.result["checks"][0]["age_seconds"] in stale.result["msg"]
    # a wrong passphrase: the repository cannot be read, said plainly
    with open(cluster.config, encoding="utf-8") as handle:
        text = handle.read()
    wrong = os.path.join(cluster.base, "wrong.conf")
    with open(wrong, "w", encoding="utf-8") as handle:
        handle.write(text.replace(PASSPHRASE, "not-the-passphrase"))
    os.chmod(wrong, 0o600)
    os.chown(wrong, os.stat(cluster.config).st_uid, os.stat(cluster.config).st_gid)
    bad = ansible_module("runbook.ops.pgbackrest_info", dict(base, config=wrong, rpo="1h"))
    assert bad.failed and "wrong cipher passphrase" in bad.result["msg"]
    assert_secret_kept(bad)


def test_a_missing_wal_segment_fails_clearly(stanza, ansible_module):
    cluster = stanza
    cluster.psql("CREATE TABLE t (n int)")
    cluster.psql("INSERT INTO t VALUES (1)")
    first = cluster.switch_wal()
    cluster.psql("INSERT INTO t VALUES (2)")
    gone = cluster.switch_wal()
    cluster.psql("INSERT INTO t VALUES (3)")
    time.sleep(1.1)
    target = cluster.now()
    cluster.switch_wal()
    (victim,) = [key for key in cluster.s3.keys("%s/archive/" % cluster.name)
                 if os.path.basename(key).startswith(gone + "-")]
    cluster.s3.client.delete_object(Bucket=cluster.s3.bucket, Key=victim)
    assert first < gone
    run = ansible_module("runbook.ops.pgbackrest_restore", {
        "stanza": cluster.stanza, "config": cluster.config, "data_dir": cluster.restored_dir(),
        "restore_port": free_port(), "target_type": "time", "target": target,
        "recovery_timeout": 60})
    assert run.failed, run.output[-3000:]
    msg = run.result["msg"]
    assert "recovery ended before configured recovery target was reached" in msg, msg
    assert "WAL segment %s is missing from the repository" % gone in msg
    assert run.result["changed"] is True and run.result["data_dir"] == cluster.restored_dir()
