# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks run under ansible-runner the way AWX runs a job template.

Every job gets a private data dir of its own, laid out as AWX lays it out:

    project/playbooks/            the project checkout (the collection's playbooks, as the SCM update copies them)
    inventory/hosts               localhost in the group app (connection local, this virtualenv's python)
    inventory/group_vars/app.yml  the service's description, as the AWX inventory carries it: secrets only as
                                  references to vault_* variables (the names of inventories/example)
    env/extravars                 the survey answers, and the vault_* values that the job's credentials inject
                                  as extra variables
    env/envvars                   ANSIBLE_COLLECTIONS_PATH and ANSIBLE_CONFIG of this checkout's collection
    env/settings                  runner settings (no output on the terminal, a job timeout)

and runs through ``ansible_runner.run(private_data_dir=..., playbook=...)``.  Each job is checked for its status
and rc, its job events (the key module tasks ok, no failed task but the expected ones, the playbook_on_stats
event), the set_stats data ansible-runner hands AWX (``artifact_data`` of the playbook_on_stats event), and that
no secret value, nor its base64 or URL-encoded forms, appears in any file under artifacts/ (job events carry
module arguments and results: this is where a missing no_log shows).

Run with -s to see the time of each job."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import sys
import time
from urllib.parse import quote, quote_plus

import ansible_runner
import pytest
import yaml

from harness import REPO

from health.health_testlib import health_vars
from rotation.rotation_testlib import env_value, role_vars

VENV_BIN = os.path.dirname(sys.executable)


# the job ------------------------------------------------------------------------------------------------
def write_yaml(path, data, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)


def new_secret(kind):
    """A strong value no test data can contain by chance."""
    return "rbops-%s-%s" % (kind, secrets.token_urlsafe(24))


class Job:
    """One finished ansible-runner job: its Runner, events and artifacts."""

    def __init__(self, name, runner, private_data_dir, seconds):
        self.name = name
        self.runner = runner
        self.dir = private_data_dir
        self.seconds = seconds
        self.events = list(runner.events)

    @property
    def status(self):
        return self.runner.status

    @property
    def rc(self):
        return self.runner.rc

    @property
    def artifacts(self):
        return os.path.join(self.dir, "artifacts")

    def stdout_tail(self, size=6000):
        path = os.path.join(self.runner.config.artifact_dir, "stdout")
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-size:]

    def describe(self):
        return "job %s: status %s, rc %s; stdout tail:\n%s" % (self.name, self.status, self.rc, self.stdout_tail())

    def of(self, kind, action=None):
        """The events of one type (runner_on_ok, ...), optionally of one module (its FQCN)."""
        return [e for e in self.events if e["event"] == kind
                and (action is None or e["event_data"].get("resolved_action") == action)]

    def failed_tasks(self):
        """Names of the tasks that failed and were not ignored (a rescued failure counts)."""
        return [e["event_data"]["task"] for e in self.of("runner_on_failed") if not e["event_data"].get("ignore_errors")]

    def assert_ok(self, *actions):
        for action in actions:
            assert self.of("runner_on_ok", action), "no runner_on_ok event of %s in %s" % (action, self.describe())

    @property
    def stats_event(self):
        (event,) = self.of("playbook_on_stats")
        return event["event_data"]

    def custom_stats(self, key, host="localhost"):
        """This host's value of a set_stats key, as AWX receives it (the stats event's artifact_data)."""
        data = self.stats_event["artifact_data"]
        assert key in data, "no %s in artifact_data %s\n%s" % (key, sorted(data), self.describe())
        return data[key][host]


def run_job(tmp_path, name, playbook, group_vars, extravars=None, credentials=None, cmdline=None):
    """Run ``playbook`` (a path in the project, or a collection playbook's FQCN) as an AWX job would;
    ``cmdline`` carries ansible-playbook options (a job template of type check: ``--check``)."""
    data_dir = tmp_path / ("job-" + name)
    shutil.copytree(os.path.join(REPO, "playbooks"), data_dir / "project" / "playbooks")
    (data_dir / "inventory").mkdir()
    (data_dir / "inventory" / "hosts").write_text(
        "[app]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    write_yaml(data_dir / "inventory" / "group_vars" / "app.yml", group_vars)
    write_yaml(data_dir / "env" / "extravars", dict(extravars or {}, **(credentials or {})))
    write_yaml(data_dir / "env" / "envvars", {
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".build", "collections"),
        "ANSIBLE_CONFIG": os.path.join(REPO, "tests", "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
    })
    write_yaml(data_dir / "env" / "settings", {"suppress_ansible_output": True, "job_timeout": 600})
    if cmdline:
        (data_dir / "env" / "cmdline").write_text(cmdline)
    started = time.monotonic()
    runner = ansible_runner.run(private_data_dir=str(data_dir), playbook=playbook, ident=name, quiet=True)
    job = Job(name, runner, str(data_dir), round(time.monotonic() - started, 1))
    print("job %s: %s in %.1f s" % (name, job.status, job.seconds))  # the job's time, with -s
    if credentials:
        # The credentials did reach the job (the search below finds them in env/extravars) ...
        missing = set(credentials) - set(leaks(os.path.join(str(data_dir), "env"), credentials))
        assert not missing, "the search does not find %s in env/extravars" % sorted(missing)
    return job


def assert_status(job, status, rc=None):
    assert job.status == status and (rc is None or job.rc == rc), job.describe()


# the secret search ----------------------------------------------------------------------------------------
def encoded_forms(value):
    """The forms a secret may take in a file: as is, JSON-escaped, URL-encoded, and base64 (standard and URL-safe)
    at each of the three alignments it can have inside a longer encoded text."""
    raw = value.encode("utf-8")
    forms = {raw, json.dumps(value)[1:-1].encode(), quote(value, safe="").encode(), quote_plus(value).encode()}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        core = encoded[4 if shift else 0:-4]  # the characters that depend on the secret alone, wherever it sits
        forms.update((core, core.translate(bytes.maketrans(b"+/", b"-_"))))
    return {form for form in forms if len(form) >= 12}


def leaks(folder, secret_values):
    """{secret name: ["file (what)", ...]} of every file under ``folder`` holding a secret in any form."""
    found = {}
    patterns = {name: encoded_forms(value) for name, value in secret_values.items()}
    for root, _dirs, files in os.walk(folder):
        for filename in files:
            path = os.path.join(root, filename)
            with open(path, "rb") as handle:
                data = handle.read()
            for name, forms in patterns.items():
                if any(form in data for form in forms):
                    found.setdefault(name, []).append("%s%s" % (os.path.relpath(path, folder), event_label(path)))
    return found


def event_label(path):
    """' (event, task)' of a job event file, to say where a leak is."""
    if os.path.basename(os.path.dirname(path)) != "job_events":
        return ""
    with open(path, encoding="utf-8") as handle:
        event = json.load(handle)
    return " (%s, task %r)" % (event.get("event"), event.get("event_data", {}).get("task"))


def assert_no_secret_in_artifacts(job, secret_values):
    files = [os.path.join(root, name) for root, _dirs, names in os.walk(job.artifacts) for name in names]
    assert any(os.sep + "job_events" + os.sep in path for path in files), "no job events in %s" % job.artifacts
    found = leaks(job.artifacts, secret_values)
    assert not found, "secret values in the artifacts of job %s: %s" % (job.name, found)


# the jobs -------------------------------------------------------------------------------------------------
def s3_store(s3_endpoint, s3_bucket):
    """An S3 backup store whose secret key comes from a credential (vault_app_backup_s3_secret_key)."""
    return {"type": "s3", "bucket": s3_bucket, "prefix": "awx", "endpoint_url": s3_endpoint,
            "access_key": "rbops-runner-access-key", "secret_key": "{{ vault_app_backup_s3_secret_key }}"}


def test_backup_verify_daily_check_restore(tmp_path, managed_service, pg_conn_params, pg_database, pg_connect,
                                           drop_kept_databases, s3_endpoint, s3_bucket):
    """The nightly backup, the weekly verification and the morning check as scheduled jobs, then a restore after
    a bad DELETE, of the sample service on PostgreSQL with an S3 store."""
    from sample_service_fixture import pg_database_url

    drop_kept_databases.append(pg_database)
    service = managed_service(database_url=pg_database_url(pg_conn_params, pg_database))
    service.add_items(5)
    credentials = {"vault_app_db_password": pg_conn_params["login_password"],
                   "vault_app_backup_s3_secret_key": new_secret("s3-secret"),
                   "vault_app_api_token": service.svc.token}
    secret_values = dict(credentials, encryption_key=service.svc.encryption_key)
    store = s3_store(s3_endpoint, s3_bucket)
    login = dict(pg_conn_params, login_password="{{ vault_app_db_password }}")
    group_vars = service.vars(engine="postgresql", pg=login, database=pg_database)
    group_vars.update(backup_store=store, backup_verify_store=store, restore_store=store,
                      restore_verify_api_token="{{ vault_app_api_token }}")
    group_vars.update(health_vars(service.svc, health_check_metrics_token="{{ vault_app_api_token }}"))
    group_vars.update({
        "daily_check_log_dirs": [service.svc.base_dir],
        "daily_check_report_dir": str(tmp_path / "daily"),
        "daily_check_postgres_enabled": True,
        "daily_check_login_user": pg_conn_params["login_user"],
        "daily_check_login_password": "{{ vault_app_db_password }}",
        "daily_check_backup_service": "app",
        "daily_check_backup_engine": "postgresql",
        "daily_check_backup_database": pg_database,
        "daily_check_backup_store": store,
        # this machine's own load is not what the test is about: its CPU, memory or disk may be critical
        "daily_check_cpu_warn_percent": 100,
        "daily_check_cpu_crit_percent": 100,
        "daily_check_fail_on_critical": False,
    })

    # The nightly backup.
    backup = run_job(tmp_path, "backup", "playbooks/backup.yml", group_vars, credentials=credentials)
    assert_status(backup, "successful", 0)
    backup.assert_ok("runbook.ops.db_backup", "runbook.ops.backup_info", "ansible.builtin.set_stats")
    assert backup.failed_tasks() == []
    published = backup.custom_stats("runbook_backup")
    assert published["row_counts"]["public.items"] == 5 and published["location"].startswith("s3://%s/awx/" % s3_bucket)
    assert backup.stats_event["changed"] == {"localhost": 1} and backup.stats_event["failures"] == {}
    assert_no_secret_in_artifacts(backup, secret_values)

    # The weekly verification of the latest backup (a scratch database, always dropped).
    verify = run_job(tmp_path, "verify", "playbooks/verify_backups.yml", group_vars, credentials=credentials,
                     extravars={"backup_verify_assertions": [
                         {"name": "five items", "query": "SELECT count(*) FROM items", "expected": 5}]})
    assert_status(verify, "successful", 0)
    verify.assert_ok("runbook.ops.backup_verify")
    assert verify.failed_tasks() == []
    verified = verify.custom_stats("runbook_backup_verify")
    assert verified["passed"] is True and verified["backup_id"] == published["id"], verified
    assert_no_secret_in_artifacts(verify, secret_values)

    # The morning check, run by the collection playbook's FQCN.
    daily = run_job(tmp_path, "daily", "runbook.ops.daily_check", group_vars, credentials=credentials)
    assert_status(daily, "successful", 0)
    daily.assert_ok("runbook.ops.http_probe", "runbook.ops.metrics_probe", "runbook.ops.backup_info",
                    "runbook.ops.check_report")
    assert daily.failed_tasks() == []
    summary = daily.custom_stats("runbook_daily_check")
    with open(summary["report"]["json"], encoding="utf-8") as handle:
        findings = {f["check"]: f for f in json.load(handle)["findings"]}
    for check in ("liveness", "readiness", "postgresql", "last backup"):
        assert findings[check]["state"] == "ok", findings[check]
    assert summary["state"] in ("ok", "warning", "critical") and summary["counts"]["total"] == len(findings)
    assert_no_secret_in_artifacts(daily, secret_values)

    # A bad DELETE, then the restore (survey answers: force, at least five items afterwards).
    with pg_connect(pg_database).cursor() as cur:
        cur.execute("DELETE FROM items")
    pid_before = service.pid
    check = run_job(tmp_path, "restore-check", "playbooks/restore.yml", group_vars, credentials=credentials,
                    extravars={"restore_force": True}, cmdline="--check")
    assert_status(check, "successful", 0)
    assert check.custom_stats("runbook_restore")["check_mode"] is True and check.failed_tasks() == []
    assert service.pid == pid_before and service.item_count() == 0, "the check job changed the service"
    assert_no_secret_in_artifacts(check, secret_values)
    restore = run_job(tmp_path, "restore", "playbooks/restore.yml", group_vars, credentials=credentials,
                      extravars={"restore_force": True, "restore_verify_min": 5})
    assert_status(restore, "successful", 0)
    restored = restore.custom_stats("runbook_restore")
    restore.assert_ok("runbook.ops.db_restore", "runbook.ops.db_backup", "runbook.ops.http_probe")
    assert restore.failed_tasks() == []
    assert restored["backup_id"] == published["id"] and restored["row_counts"]["public.items"] == 5
    assert service.running and service.pid != pid_before and service.healthy() and service.item_count() == 5
    assert_no_secret_in_artifacts(restore, secret_values)


def test_rotate_secrets(tmp_path, managed_service):
    """rotate_secrets.yml: API_TOKEN generated, METRICS_SECRET given by a credential; the service restarted on both."""
    service = managed_service()
    old_metrics_secret = new_secret("metrics-old")
    service.svc.set_env(METRICS_SECRET=old_metrics_secret)
    assert service.ctl("restart").returncode == 0
    old_token = service.svc.token
    credentials = {"vault_new_metrics_secret": new_secret("metrics-new")}
    group_vars = role_vars(service.svc, keys=[{"key": "API_TOKEN", "probe_path": "/api/items"},
                                              {"key": "METRICS_SECRET", "value": "{{ vault_new_metrics_secret }}"}])

    job = run_job(tmp_path, "rotate", "playbooks/rotate_secrets.yml", group_vars, credentials=credentials)
    assert_status(job, "successful", 0)
    job.assert_ok("runbook.ops.env_secret", "ansible.builtin.command", "runbook.ops.http_probe")
    assert job.failed_tasks() == []
    new_token = env_value(service.svc.env_file, "API_TOKEN")
    assert new_token != old_token and env_value(service.svc.env_file, "METRICS_SECRET") == credentials["vault_new_metrics_secret"]
    assert service.svc.api("GET", "/api/items", token=old_token).status == 401
    assert service.svc.api("GET", "/api/items", token=new_token).status == 200
    rotation = job.custom_stats("runbook_rotation")
    assert sorted(rotation["rotated"]) == ["API_TOKEN", "METRICS_SECRET"]
    assert all(value.startswith("sha256:") for value in rotation["fingerprints"].values()), rotation
    assert_no_secret_in_artifacts(job, dict(credentials, old_token=old_token, new_token=new_token,
                                            old_metrics_secret=old_metrics_secret,
                                            encryption_key=service.svc.encryption_key))


def test_rotate_db_password(tmp_path, managed_service, pg_roles, pg_conn_params):
    """rotate_db_password.yml: the sample service's PostgreSQL role gets a new password (set as a SCRAM verifier
    by the admin connection a credential supplies), the env file's DATABASE_URL follows, the service restarts."""
    from ansible_collections.runbook.ops.plugins.module_utils._pg_roles import url_credentials
    from pg_roles import new_password

    old_password = new_password()
    role = pg_roles.create("svc", password=old_password)
    pg_roles.grant_database(role)
    service = managed_service(database_url=pg_roles.url(role, old_password))
    service.add_items(2)
    credentials = {"vault_pg_admin_password": pg_conn_params["login_password"]}
    group_vars = {
        "rotate_db_password_env_file": service.svc.env_file,
        "rotate_db_password_login_host": pg_conn_params["login_host"],
        "rotate_db_password_login_port": pg_conn_params["login_port"],
        "rotate_db_password_login_user": pg_conn_params["login_user"],
        "rotate_db_password_login_password": "{{ vault_pg_admin_password }}",
        "rotate_db_password_login_db": pg_roles.database,
        "rotate_db_password_restart_method": "ctl",
        "rotate_db_password_ctl": role_vars(service.svc)["rotate_secret_ctl"],
        "rotate_db_password_restart_environment": {"PYTHON": sys.executable},
        "rotate_db_password_base_url": service.svc.url,
        "rotate_db_password_wait_timeout": 15,
    }
    pid_before = service.pid

    job = run_job(tmp_path, "rotate-db", "playbooks/rotate_db_password.yml", group_vars, credentials=credentials)
    assert_status(job, "successful", 0)
    job.assert_ok("runbook.ops.pg_role_password", "ansible.builtin.command")
    assert job.failed_tasks() == []
    user, new_db_password = url_credentials(env_value(service.svc.env_file, "DATABASE_URL"))
    assert user == role and new_db_password != old_password
    assert not pg_roles.can_login(role, old_password) and pg_roles.can_login(role, new_db_password)
    assert service.pid != pid_before and service.healthy() and service.item_count() == 2
    rotation = job.custom_stats("runbook_db_password_rotation")
    assert rotation["active_role"] == role, rotation
    assert_no_secret_in_artifacts(job, dict(credentials, old_password=old_password, new_password=new_db_password,
                                            encryption_key=service.svc.encryption_key))


def test_deploy_with_automatic_rollback(tmp_path, compose_project, pg_conn_params, drop_kept_databases, s3_endpoint,
                                        s3_bucket):
    """deploy.yml in production: v1, then v3 (its migration moves the schema head, and it never becomes ready): the
    play fails at the health gate after the automatic rollback restored the pre-deploy backup and started v1."""
    from deploy.deploy_testlib import project_vars

    project = compose_project(tag="v1")
    drop_kept_databases.append(project.database)
    credentials = {"vault_app_api_token": project.token, "vault_app_db_password": pg_conn_params["login_password"],
                   "vault_app_backup_s3_secret_key": new_secret("s3-secret")}
    secret_values = dict(credentials, encryption_key=project.env["ENCRYPTION_KEY"])
    group_vars = project_vars(project, deploy_environment="production", deploy_smoke_targets=[
        {"name": "items", "url": project.url() + "/api/items", "api_token": "{{ vault_app_api_token }}",
         "json": [{"path": "items", "op": "exists"}]}])
    group_vars.update({"deploy_backup_service": project.name, "deploy_backup_database": project.database,
                       "deploy_backup_store": s3_store(s3_endpoint, s3_bucket),
                       "deploy_backup_login_host": pg_conn_params["login_host"],
                       "deploy_backup_login_port": pg_conn_params["login_port"],
                       "deploy_backup_login_user": pg_conn_params["login_user"],
                       "deploy_backup_login_password": "{{ vault_app_db_password }}"})

    first = run_job(tmp_path, "deploy-v1", "playbooks/deploy.yml", group_vars, credentials=credentials,
                    extravars={"deploy_tag": "v1"})
    assert_status(first, "successful", 0)
    first.assert_ok("runbook.ops.db_backup", "runbook.ops.compose_release", "runbook.ops.http_probe")
    assert first.failed_tasks() == []
    deployed = first.custom_stats("runbook_deploy")
    assert deployed["outcome"] == "deployed" and deployed["release"] and deployed["backup_id"], deployed
    assert_no_secret_in_artifacts(first, secret_values)
    assert project.api("POST", "/api/items", json={"name": "kept", "secret": "s"}).status == 201

    second = run_job(tmp_path, "deploy-v3", "playbooks/deploy.yml", group_vars, credentials=credentials,
                     extravars={"deploy_tag": "v3"})
    assert_status(second, "failed", 2)
    failed_tasks = second.failed_tasks()
    assert len(failed_tasks) == 2 and failed_tasks[0].startswith("Deploy the release"), second.describe()
    assert failed_tasks[1] == "Fail naming the gate", second.describe()
    second.assert_ok("runbook.ops.db_backup", "runbook.ops.db_restore")
    failed = second.custom_stats("runbook_deploy")
    assert failed["outcome"] == "failed" and failed["failed_gate"] == "health", failed
    assert failed["previous"] == deployed["release"]
    assert second.stats_event["failures"] == {"localhost": 1} and second.stats_event["rescued"] == {"localhost": 1}
    (message,) = [e["event_data"]["res"]["msg"] for e in second.of("runner_on_failed", "ansible.builtin.fail")]
    assert "failed at gate 'health'" in message and "rolled back from" in message, message
    assert_no_secret_in_artifacts(second, secret_values)

    # The real service: back on v1 with its database as before v3, every container healthy, the API answering.
    project.wait_healthy(timeout=30)
    api = [c for c in project.containers("api") if c["state"] == "running"]
    assert [c["image"] for c in api] == ["rbops-sample:v1"], api
    assert project.read_env()["APP_TAG"] == "v1" and project.schema_head() == 1
    assert project.get("/readyz").status == 200
    assert [item["name"] for item in project.api("GET", "/api/items").json["items"]] == ["kept"]


@pytest.mark.parametrize("value", ["rbops-x-" + "a" * 30, "p@ss w/rd+=:%-" + "b" * 20])
def test_the_secret_search_finds_every_form(tmp_path, value):
    """The search of the artifacts finds a secret as is, JSON-escaped, URL-encoded and base64 at any offset."""
    samples = [value.encode(), json.dumps({"v": value}).encode(), quote(value, safe="").encode(),
               quote_plus(value).encode()]
    samples += [base64.b64encode(prefix + value.encode() + b"tail") for prefix in (b"", b"x", b"xy", b"xyz")]
    samples += [base64.urlsafe_b64encode(b"x" + value.encode()), b"clean"]
    for number, sample in enumerate(samples):
        (tmp_path / ("f%d" % number)).write_bytes(b"before " + sample + b" after")
    found = leaks(str(tmp_path), {"value": value})
    assert sorted(found["value"]) == sorted("f%d" % n for n in range(len(samples) - 1))
