# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgBackRest: configuration, command lines, info/repo-ls parsing, archive status, restore targets
and the recovery log, on output captured from pgBackRest 2.45 and PostgreSQL 15 (fixtures/pgbackrest)."""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _pgbackrest as pgbr
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, PitrError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pgbackrest")
UTC = datetime.timezone.utc
SECRET = "correct-horse-battery-staple"


def fixture(name, mode="r"):
    with open(os.path.join(FIXTURES, name), mode) as handle:
        return handle.read()


def at(epoch):
    return datetime.datetime.fromtimestamp(epoch, UTC)


# --- configuration ---------------------------------------------------------------------------

LOCAL_REPO = {"type": "posix", "path": "/var/lib/pgbackrest", "cipher_type": "aes-256-cbc", "cipher_pass": SECRET,
              "retention_full": 2, "retention_diff": 3}


def test_render_config_local_repo_with_cipher_and_retention():
    text = pgbr.render_config("app", "/var/lib/postgresql/15/main", LOCAL_REPO, pg_port=5433,
                              pg_socket_path="/var/run/postgresql", log_path="/var/log/pgbackrest",
                              lock_path="/tmp/pgbackrest", archive_timeout=30)
    lines = text.splitlines()
    assert lines[3] == "[global]"
    assert "repo1-type=posix" in lines and "repo1-path=/var/lib/pgbackrest" in lines
    assert "repo1-cipher-type=aes-256-cbc" in lines and "repo1-cipher-pass=" + SECRET in lines
    assert "repo1-retention-full=2" in lines and "repo1-retention-diff=3" in lines
    assert "archive-timeout=30" in lines and "log-level-file=detail" in lines
    section = lines[lines.index("[app]"):]
    assert section == ["[app]", "pg1-path=/var/lib/postgresql/15/main", "pg1-port=5433",
                       "pg1-socket-path=/var/run/postgresql"]


def test_render_config_s3_repo():
    repo = {"type": "s3", "path": "/pitr/app", "s3_bucket": "acme-pitr", "s3_endpoint": "s3.eu-west-1.amazonaws.com",
            "s3_region": "eu-west-1", "s3_key": "AKIA1", "s3_key_secret": SECRET, "s3_uri_style": "path",
            "storage_port": 9000, "storage_verify_tls": False}
    lines = pgbr.render_config("app", "/data", repo).splitlines()
    for line in ("repo1-type=s3", "repo1-s3-bucket=acme-pitr", "repo1-s3-endpoint=s3.eu-west-1.amazonaws.com",
                 "repo1-s3-region=eu-west-1", "repo1-s3-uri-style=path", "repo1-s3-key=AKIA1",
                 "repo1-s3-key-secret=" + SECRET, "repo1-storage-port=9000", "repo1-storage-verify-tls=n",
                 "log-level-file=off"):
        assert line in lines


@pytest.mark.parametrize("repo,message", [
    (dict(LOCAL_REPO, cipher_pass=None), "needs cipher_pass"),
    (dict(LOCAL_REPO, cipher_type="none"), "cipher_type is none"),
    (dict(LOCAL_REPO, cipher_type="rot13"), "cipher_type must be one of"),
    (dict(LOCAL_REPO, path="relative"), "must be absolute"),
    (dict(LOCAL_REPO, retention_full=0), "retention_full must be at least 1"),
    (dict(LOCAL_REPO, type="gcs"), "repo type must be one of"),
    ({"type": "s3", "path": "/p", "s3_bucket": "b", "s3_region": "r"}, "needs s3_endpoint"),
    ({"type": "s3", "path": "/p", "s3_bucket": "b", "s3_region": "r", "s3_endpoint": "e", "s3_key": "k"},
     "both s3_key and s3_key_secret"),
])
def test_repo_options_refuse_incomplete_settings(repo, message):
    with pytest.raises(ParameterError, match=message):
        pgbr.repo_options(repo)


def test_a_secret_spanning_lines_is_refused_without_showing_it():
    with pytest.raises(ParameterError) as caught:
        pgbr.render_config("app", "/data", dict(LOCAL_REPO, cipher_pass=SECRET + "\n[evil]"))
    assert "(hidden)" in str(caught.value) and SECRET not in str(caught.value)


def test_extra_options_cannot_smuggle_repository_or_cluster_settings():
    assert "buffer-size=1MiB" in pgbr.render_config("app", "/data", LOCAL_REPO, extra={"buffer-size": "1MiB"})
    for key in ("repo1-cipher-pass", "pg1-path", "stanza", "Bad Key"):
        with pytest.raises(ParameterError, match="not allowed"):
            pgbr.render_config("app", "/data", LOCAL_REPO, extra={key: "x"})


@pytest.mark.parametrize("stanza", ["", "-app", "a b", "x" * 65, "app\n"])
def test_bad_stanza_names(stanza):
    with pytest.raises(ParameterError, match="not a valid name"):
        pgbr.check_stanza(stanza)


def test_archive_command_and_settings():
    command = pgbr.archive_command("/usr/bin/pgbackrest", "/etc/pgbackrest/app.conf", "app")
    assert command == "/usr/bin/pgbackrest --config=/etc/pgbackrest/app.conf --stanza=app archive-push %p"
    text = pgbr.archive_settings(command, archive_timeout=60)
    assert "archive_mode = on\n" in text and "archive_command = '%s'\n" % command in text
    assert "archive_timeout = 60\n" in text
    for path in ("etc/x.conf", "/etc/my conf", "/etc/x;rm -rf", "/etc/../x"):
        with pytest.raises(ParameterError, match="absolute path"):
            pgbr.archive_command("/usr/bin/pgbackrest", path, "app")


def test_command_argv_runs_as_the_data_owner_and_never_carries_a_secret():
    argv = pgbr.command_argv("pgbackrest", "/etc/pgbackrest/app.conf", "backup", "app", ["--type=full"], "postgres")
    assert argv == ["runuser", "-u", "postgres", "--", "pgbackrest", "--config=/etc/pgbackrest/app.conf",
                    "--stanza=app", "--type=full", "backup"]
    assert pgbr.command_argv("pgbackrest", "/c", "repo-ls", "app", ["--output=json"], args=["archive/app"])[-2:] == \
        ["repo-ls", "archive/app"]
    with pytest.raises(ValueError):
        pgbr.command_argv("pgbackrest", "/c", "backup", "app", ["--repo1-cipher-pass=" + SECRET])
    with pytest.raises(ParameterError):
        pgbr.command_argv("pgbackrest", "/c", "backup", "app", run_as="root; id")


# --- info and repo-ls -----------------------------------------------------------------------------

def test_parse_info_three_backups():
    info = pgbr.parse_info(fixture("info_three.json"), "exp")
    assert info["ok"] and info["status"] == "ok" and info["cipher"] == "aes-256-cbc"
    assert [b["type"] for b in info["backups"]] == ["full", "diff", "incr"]
    full, diff, incr = info["backups"]
    assert full["label"] == "20261130-211032F" and full["prior"] is None
    assert diff["prior"] == full["label"] and incr["prior"] == diff["label"]
    assert info["latest"] == incr["label"]
    assert full["size"] == 22956398 and full["repo_size"] == 3057568
    assert full["wal_start"] == "000000010000000000000002" and full["lsn_stop"] == "0/3000050"
    assert full["started"] == "2026-11-30T21:10:32Z" and full["stop_epoch"] == 1796073035
    assert info["archive"] == {"id": "15-1", "min": "000000010000000000000001", "max": "00000001000000000000000B"}
    assert info["databases"][0]["version"] == "15"
    assert pgbr.info_problem(info) is None


def test_parse_info_missing_stanza():
    info = pgbr.parse_info(fixture("info_missing_stanza.json"), "nope")
    assert not info["ok"] and info["status_code"] == 1 and info["backups"] == []
    assert "missing stanza path" in pgbr.info_problem(info) and "stanza-create" in pgbr.info_problem(info)


def test_parse_info_wrong_passphrase_reads_raw_bytes_and_says_why():
    info = pgbr.parse_info(fixture("info_wrong_passphrase.bin", "rb"), "exp")
    assert info["status_code"] == 99
    problem = pgbr.info_problem(info)
    assert "unable to load info file" in problem and "wrong cipher passphrase" in problem
    assert all(ch.isprintable() for ch in problem) and len(problem) < 600


def test_parse_info_refusals():
    with pytest.raises(PitrError, match="does not list stanza other"):
        pgbr.parse_info(fixture("info_three.json"), "other")
    with pytest.raises(PitrError, match="did not answer JSON"):
        pgbr.parse_info("ERROR: [029]: unable to find", "exp")


def test_repo_ls_gives_the_time_a_segment_was_archived():
    listing = pgbr.parse_repo_ls(fixture("repo_ls_timeline.json"))
    assert pgbr.segment_time(listing, "000000010000000000000008") == 1796073091
    assert pgbr.segment_time(listing, "00000001000000000000000B") == 1796073194
    assert pgbr.segment_time(listing, "0000000100000000000000FF") is None
    assert pgbr.archive_dir("exp", "15-1", "000000010000000000000008") == "archive/exp/15-1/0000000100000000"


def test_next_segment():
    assert pgbr.next_segment("000000010000000000000008") == "000000010000000000000009"
    assert pgbr.next_segment("0000000100000000000000FF") == "000000010000000100000000"
    with pytest.raises(PitrError):
        pgbr.next_segment("xyz")


def test_new_backup_is_the_label_that_appeared():
    info = pgbr.parse_info(fixture("info_three.json"), "exp")
    labels = [b["label"] for b in info["backups"]]
    assert pgbr.new_backup(labels[:2], info)["label"] == labels[2]
    with pytest.raises(PitrError, match="no new backup"):
        pgbr.new_backup(labels, info)


def test_backup_options_and_the_missing_full():
    assert pgbr.backup_options("diff", start_fast=True, archive_timeout=10) == [
        "--type=diff", "--start-fast", "--archive-timeout=10"]
    with pytest.raises(ParameterError):
        pgbr.backup_options("snapshot")
    empty = pgbr.parse_info(fixture("info_missing_stanza.json"), "nope")
    assert pgbr.backup_needs_full("incr", empty) and not pgbr.backup_needs_full("full", empty)


# --- archive status against an RPO ----------------------------------------------------------------

INFO = pgbr.parse_info(fixture("info_three.json"), "exp")
LAST = 1796073194


@pytest.mark.parametrize("age,state", [(60, "ok"), (1799, "ok"), (1801, "warning"), (3601, "critical")])
def test_archive_age_against_the_rpo(age, state):
    check = pgbr.rate_archive(INFO, LAST, at(LAST + age), rpo=3600)
    assert check["state"] == state and check["age_seconds"] == age
    assert check["last_segment"] == "00000001000000000000000B"
    if state != "ok":
        assert "00000001000000000000000B is %ds old" % age in check["reasons"][0]


def test_archive_warning_level_given():
    assert pgbr.rate_archive(INFO, LAST, at(LAST + 100), rpo=3600, rpo_warning=60)["state"] == "warning"


def test_a_failing_archive_command_is_critical_even_when_the_last_segment_is_fresh():
    archiver = {"failed_count": 4, "last_failed_wal": "000000010000000000000009", "last_failed_time": at(LAST + 5),
                "last_archived_wal": "000000010000000000000008", "last_archived_time": at(LAST)}
    check = pgbr.rate_archive(INFO, LAST, at(LAST + 10), rpo=3600, archiver=archiver)
    assert check["state"] == "critical" and "archive_command is failing" in check["reasons"][0]
    recovered = dict(archiver, last_archived_time=at(LAST + 6))
    assert pgbr.rate_archive(INFO, LAST + 6, at(LAST + 10), rpo=3600, archiver=recovered)["state"] == "ok"


def test_nothing_archived_or_an_unusable_stanza_is_critical():
    missing = pgbr.parse_info(fixture("info_missing_stanza.json"), "nope")
    check = pgbr.rate_archive(missing, None, at(LAST), rpo=3600)
    assert check["state"] == "critical" and "stanza-create" in check["reasons"][0]
    empty = dict(INFO, archive={"id": None, "min": None, "max": None})
    assert "no WAL segment" in pgbr.rate_archive(empty, None, at(LAST), rpo=3600)["reasons"][0]


def test_backups_rating():
    latest_stop = INFO["backups"][-1]["stop_epoch"]
    assert pgbr.rate_backups(INFO, at(latest_stop + 10))["state"] == "ok"
    old = pgbr.rate_backups(INFO, at(latest_stop + 90000), max_backup_age=86400)
    assert old["state"] == "critical" and "over the limit" in old["reasons"][0]
    damaged = dict(INFO, backups=[dict(b, error=b["type"] == "diff") for b in INFO["backups"]])
    assert pgbr.rate_backups(damaged, at(latest_stop + 10))["state"] == "warning"
    assert pgbr.rate_backups(dict(INFO, backups=[]), at(latest_stop))["state"] == "critical"


def test_report_overall_state_and_message():
    result = pgbr.report(INFO, LAST, at(LAST + 4000), rpo=3600)
    assert result["state"] == "critical" and result["summary"]["critical"] == 1
    assert result["msg"].startswith("stanza exp - 1 of 2 checks ok, overall critical - wal_archive critical")


# --- restore targets ------------------------------------------------------------------------------

BACKUPS = INFO["backups"]
NOW = at(1796073200)


@pytest.mark.parametrize("text,expected", [
    ("2026-11-30 21:12:56.387678+00", "2026-11-30 21:12:56.387678+00"),
    ("2026-11-30T21:12:56Z", "2026-11-30 21:12:56.000000+00"),
    ("2026-11-30 22:12:56.5+01:00", "2026-11-30 21:12:56.500000+00"),
    ("2026-11-30 16:12:56-0500", "2026-11-30 21:12:56.000000+00"),
])
def test_parse_time(text, expected):
    assert pgbr.format_time(pgbr.parse_time(text)) == expected


@pytest.mark.parametrize("text", ["2026-11-30 21:12:56", "yesterday", "2026-13-01 00:00:00Z", ""])
def test_parse_time_refuses_local_or_malformed_times(text):
    with pytest.raises(ParameterError):
        pgbr.parse_time(text)


def test_time_target_picks_the_newest_backup_before_it():
    options, described = pgbr.restore_target("time", "2026-11-30 21:11:29+00", BACKUPS, now=NOW)
    # the diff ended at 21:11:28, the incr at 21:11:31: the diff is the newest that ended before the target
    assert options == ["--type=time", "--target=2026-11-30 21:11:29.000000+00", "--target-action=promote",
                       "--set=" + BACKUPS[1]["label"]]
    assert described["backup"] == BACKUPS[1]["label"] and described["target"] == "2026-11-30 21:11:29.000000+00"
    # the incr ended at 21:11:31 (whole seconds): a target within that second starts from the diff
    assert pgbr.restore_target("time", "2026-11-30 21:11:31.5+00", BACKUPS, now=NOW)[1]["backup"] == BACKUPS[1]["label"]
    assert pgbr.restore_target("time", "2026-11-30 21:11:32+00", BACKUPS, now=NOW)[1]["backup"] == BACKUPS[2]["label"]


def test_time_target_refusals():
    with pytest.raises(ParameterError, match="in the future"):
        pgbr.restore_target("time", "2027-01-01 00:00:00Z", BACKUPS, now=NOW)
    with pytest.raises(PitrError, match="no backup ends before"):
        pgbr.restore_target("time", "2026-11-30 21:10:33Z", BACKUPS, now=NOW)
    with pytest.raises(PitrError, match="no backup to restore"):
        pgbr.restore_target("time", "2026-11-30 21:10:33Z", [], now=NOW)


def test_other_targets():
    assert pgbr.restore_target("latest", None, BACKUPS)[0] == ["--type=default", "--set=" + BACKUPS[-1]["label"]]
    assert pgbr.restore_target("immediate", "", BACKUPS)[0][:2] == ["--type=immediate", "--target-action=promote"]
    options = pgbr.restore_target("lsn", "0/5000000", BACKUPS)[0]
    assert options[:2] == ["--type=lsn", "--target=0/5000000"] and options[-1] == "--set=" + BACKUPS[0]["label"]
    options = pgbr.restore_target("name", "before-migration", BACKUPS, backup_set=BACKUPS[0]["label"])[0]
    assert options == ["--type=name", "--target=before-migration", "--target-action=promote",
                       "--set=" + BACKUPS[0]["label"]]
    assert "--target-exclusive" in pgbr.restore_target("lsn", "0/5000000", BACKUPS, exclusive=True)[0]


def test_target_coverage_before_a_restore():
    # the archive's newest segment reached the repository at 21:13:14
    covered = pgbr.rate_target(INFO, LAST, NOW, "time", "2026-11-30 21:12:00+00")
    assert covered["state"] == "ok" and covered["backup"] == BACKUPS[2]["label"]
    assert covered["archive_end"] == "2026-11-30T21:13:14Z" and covered["target"] == "2026-11-30 21:12:00.000000+00"
    late = pgbr.rate_target(INFO, LAST, at(LAST + 60), "time", "2026-11-30 21:13:30+00")
    assert late["state"] == "critical" and "the WAL archive ends before the target" in late["reasons"][0]
    assert "pg_switch_wal" in late["reasons"][0] and late["backup"] == BACKUPS[2]["label"]
    early = pgbr.rate_target(INFO, LAST, NOW, "time", "2026-11-30 21:10:33Z")
    assert early["state"] == "critical" and "no backup ends before" in early["reasons"][0]
    future = pgbr.rate_target(INFO, LAST, NOW, "time", "2027-01-01 00:00:00Z")
    assert future["state"] == "critical" and "in the future" in future["reasons"][0]
    assert pgbr.rate_target(INFO, None, NOW, "time", "2026-11-30 21:12:00+00")["state"] == "critical"
    assert pgbr.rate_target(INFO, LAST, NOW, "latest")["state"] == "ok"
    assert pgbr.rate_target(INFO, LAST, NOW, "name", "x", backup_set="nope")["state"] == "critical"
    missing = pgbr.parse_info(fixture("info_missing_stanza.json"), "nope")
    assert "stanza-create" in pgbr.rate_target(missing, None, NOW, "latest")["reasons"][0]
    result = pgbr.report(INFO, LAST, at(LAST + 60), rpo=3600, target={
        "target_type": "time", "target": "2026-11-30 21:13:30+00"})
    assert result["state"] == "critical" and [c["name"] for c in result["checks"]] == ["wal_archive", "backups", "target"]
    assert "target critical: the WAL archive ends before the target" in result["msg"]


@pytest.mark.parametrize("kind,target,message", [
    ("latest", "0/1", "takes no target"), ("lsn", "5000000", "not an LSN"), ("name", "", "restore point name"),
    ("name", "it's", "restore point name"), ("name", "x" * 64, "restore point name"), ("pitr", None, "must be one of"),
    ("lsn", "0/1000000", "no backup ends before"),
])
def test_target_refusals(kind, target, message):
    with pytest.raises((ParameterError, PitrError), match=message):
        pgbr.restore_target(kind, target, BACKUPS, now=NOW)


def test_unknown_backup_set():
    with pytest.raises(PitrError, match="not in the repository"):
        pgbr.restore_target("latest", None, BACKUPS, backup_set="20990101-000000F")


def test_destination_rules():
    live = "/var/lib/postgresql/15/main"
    assert pgbr.check_destination("/srv/pitr/new", live, False, None, False) == "new"
    assert pgbr.check_destination("/srv/pitr/new", live, False, [], False) == "new"
    with pytest.raises(PitrError, match="live cluster's data directory"):
        pgbr.check_destination(live + "/", live, False, ["PG_VERSION"], False)
    assert pgbr.check_destination(live, live, True, ["PG_VERSION"], False) == "replace"
    with pytest.raises(PitrError, match="is running"):
        pgbr.check_destination(live, live, True, ["PG_VERSION"], True)
    with pytest.raises(PitrError, match="not empty"):
        pgbr.check_destination("/srv/other", live, False, ["x"], False)
    with pytest.raises(ParameterError):
        pgbr.check_destination("relative", live, False, None, False)


def test_restore_options_keep_a_copy_from_archiving():
    assert pgbr.restore_options("/srv/new", ["--type=default"], "new") == [
        "--pg1-path=/srv/new", "--type=default", "--archive-mode=off"]
    assert pgbr.restore_options("/srv/old", ["--type=default"], "replace", process_max=2)[-2:] == [
        "--delta", "--process-max=2"]


def test_start_argv_values_need_no_shell_quoting():
    argv = pgbr.start_argv("/usr/lib/postgresql/15/bin/pg_ctl", "/srv/new", "/srv/new.log", port=5499,
                           listen_addresses="127.0.0.1", socket_dir="/var/run/postgresql")
    assert argv[-3:] == ["-o", "-c port=5499 -c listen_addresses=127.0.0.1 -c unix_socket_directories=/var/run/"
                         "postgresql -c archive_mode=off", "start"]
    with pytest.raises(ParameterError):
        pgbr.start_argv("pg_ctl", "/srv/new", "/srv/new.log", listen_addresses="127.0.0.1;id")
    files = pgbr.new_cluster_files(5499)
    assert "port = 5499" in files["postgresql.conf"] and "127.0.0.1/32   scram-sha-256" in files["pg_hba.conf"]


# --- the recovery log -------------------------------------------------------------------------------

def test_recovery_log_of_a_promoted_time_recovery():
    found = pgbr.parse_recovery_log(fixture("recovery-time-promoted.log"))
    assert found["recovery_complete"] and found["ready"] and found["fatal"] is None
    assert found["new_timeline"] == 2
    assert found["last_transaction_time"] == "2026-11-30 21:13:11.812160+00"
    assert found["stop_time"] == "2026-11-30 21:13:14.292402+00"
    assert found["stopped"].startswith("recovery stopping before commit of transaction 741")
    reached = pgbr.recovered_to(found, {"type": "time", "target": "2026-11-30 21:13:13.053902+00"})
    assert reached["recovered_to"] == "2026-11-30 21:13:11.812160+00"
    assert reached["target_gap_seconds"] == pytest.approx(1.241742)


def test_recovery_log_of_a_target_never_reached():
    found = pgbr.parse_recovery_log(fixture("recovery-target-not-reached.log"))
    assert not found["recovery_complete"] and not found["ready"] and found["shut_down"]
    assert found["fatal"] == "recovery ended before configured recovery target was reached"
    assert found["last_restored_segment"] == "00000001000000000000000A"
    text = pgbr.recovery_failure(found, archive_max="00000001000000000000000C")
    assert "WAL segment 00000001000000000000000B is missing from the repository" in text
    text = pgbr.recovery_failure(found, archive_max="00000001000000000000000A")
    assert "the archive ends at 00000001000000000000000A" in text and "21:12:55.131448" in text


def test_clean_message_drops_binary_lines():
    text = pgbr.clean_message("ERROR: [029]: bad\nFormatError: found at line 1: \x01\x02\x03\ufffd\n#\ufffd\x02\nHINT: ok")
    assert text == "ERROR: [029]: bad FormatError: found at line 1: (unreadable data) HINT: ok"
    assert pgbr.clean_message("x" * 1000, 50).endswith("...") and len(pgbr.clean_message("x" * 1000, 50)) == 50


def test_config_pg_path_reads_the_stanza_section():
    text = pgbr.render_config("app", "/var/lib/postgresql/15/main", LOCAL_REPO)
    assert pgbr.config_pg_path(text, "app") == "/var/lib/postgresql/15/main"
    assert pgbr.config_pg_path(text, "other") is None and pgbr.config_pg_path(None, "app") is None


def test_write_owned_is_atomic_private_and_idempotent(tmp_path):
    import getpass
    import stat

    path = str(tmp_path / "conf" / "app.conf")
    user = getpass.getuser()
    assert pgbr.write_owned(path, "a=1\n", 0o600, user, check_mode=True)
    assert not os.path.exists(path)
    assert pgbr.write_owned(path, "a=1\n", 0o600, user)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert not pgbr.write_owned(path, "a=1\n", 0o600, user)
    os.chmod(path, 0o644)
    assert pgbr.write_owned(path, "a=1\n", 0o600, user) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(ParameterError, match="does not exist"):
        pgbr.write_owned(path, "a=1\n", 0o600, "no_such_user_rbops")


def test_postmaster_running_reads_the_pid_file(tmp_path):
    assert not pgbr.postmaster_running(str(tmp_path))
    (tmp_path / "postmaster.pid").write_text("%d\n/data\n" % os.getpid())
    assert pgbr.postmaster_running(str(tmp_path))
    (tmp_path / "postmaster.pid").write_text("999999999\n")
    assert not pgbr.postmaster_running(str(tmp_path))
