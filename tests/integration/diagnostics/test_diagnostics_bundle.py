# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""diagnostics_bundle through ansible-playbook against a real container: a known secret planted in its
environment, its logs (with a JWT and a database URL), a job log (with a PEM key) and an env file; the
bundle holds the content and none of the secrets, in any member, raw or base64; the final scan refuses
a bundle with a secret the redactor was told not to touch; check mode writes nothing; caps truncate."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import subprocess
import tarfile
import time
import urllib.parse

import pytest

from harness import run_module, run_playbook

MODULE = "runbook.ops.diagnostics_bundle"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyYm9wcy10ZXN0In0.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDbundletestkey"


@pytest.fixture(scope="module")
def planted(busybox_image, tmp_path_factory):
    """A Compose-labelled container with the secrets in its env and logs, a project directory, job logs."""
    tag = secrets.token_hex(4)
    values = {"api_token": "tok-" + secrets.token_urlsafe(18), "db_password": "pw-" + secrets.token_hex(10),
              "extra": "xs-" + secrets.token_hex(12), "jwt": JWT, "pem": PEM_BODY,
              "redis_password": "rp-" + secrets.token_hex(8)}  # only in a URL: no rule knows it by value
    project = "rbopsbundle" + tag
    name = "rbops-bundle-%s" % tag
    script = ('echo "web starting, marker-%s"; echo "boot with $API_TOKEN ready"; '
              'echo "GET /api Authorization: Bearer %s"; echo "db postgres://app:$DB_PASSWORD@127.0.0.1:5432/app"; '
              'echo "cache redis://:%s@127.0.0.1:6379/0"; echo "session %s"; sleep 600') % (
                  tag, JWT, values["redis_password"], JWT)
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "host",
                    "--label", "com.docker.compose.project=" + project, "--label", "com.docker.compose.service=web",
                    "-e", "API_TOKEN=" + values["api_token"], "-e", "DB_PASSWORD=" + values["db_password"],
                    busybox_image, "sh", "-c", script], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 20
        while b"session" not in subprocess.run(["docker", "logs", name], capture_output=True, check=False).stdout:
            assert time.monotonic() < deadline, "the test container printed nothing"
            time.sleep(0.2)
        root = tmp_path_factory.mktemp("bundle")
        project_dir = root / "project"
        (project_dir / ".runbook").mkdir(parents=True)
        (project_dir / "docker-compose.yml").write_text(
            "services:\n  web:\n    image: app:${APP_TAG}\n    network_mode: host\n"
            "    environment:\n      DB_PASSWORD: %s\n" % values["db_password"])
        (project_dir / ".env").write_text("APP_TAG=1.4.2\nAPI_TOKEN=%s\n" % values["api_token"])
        release = {"id": "r1", "outcome": "succeeded", "variables": {"APP_TAG": "1.4.2"}}
        (project_dir / ".runbook" / "releases.json").write_text(json.dumps({"version": 1, "current": "r1",
                                                                            "releases": [release]}))
        (project_dir / ".runbook" / "events.jsonl").write_text(json.dumps(
            {"time": "2026-11-30T08:00:00Z", "event": "deploy", "outcome": "succeeded", "release": "r1",
             "detail": {}}) + "\n")
        jobs = root / "data" / "logs" / "jobs"
        jobs.mkdir(parents=True)
        (jobs / "import.log").write_text(
            "2026-11-30T08:00:00Z job import started marker-%s\n"
            "2026-11-30T08:00:01Z calling the API with %s\n"
            "2026-11-30T08:00:02Z extra value %s\n"
            "-----BEGIN PRIVATE KEY-----\n%s\nAAAAsecondlineofthekey\n-----END PRIVATE KEY-----\n"
            "2026-11-30T08:00:03Z job import done\n" % (tag, values["api_token"], values["extra"], PEM_BODY))
        (jobs / "big.log").write_text("".join("2026-11-30T08:00:00Z line %06d padding........\n" % i
                                              for i in range(20000)))
        secret_env = root / "secrets.env"
        secret_env.write_text("EXTRA_SECRET=%s\nPORT=8080\n" % values["extra"])
        yield {"tag": tag, "name": name, "project": project, "project_dir": str(project_dir), "jobs": str(jobs),
               "root": root, "secret_env": str(secret_env), "values": values}
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def forms(value):
    raw = value.encode()
    return {value, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="),
            urllib.parse.quote(value, safe="")}


def members(path):
    with tarfile.open(path, "r:gz") as tar:
        return {info.name.split("/", 1)[1]: tar.extractfile(info).read().decode("utf-8", "replace")
                for info in tar if info.isfile()}


def params(planted, dest, **extra):
    base = {"dest": str(dest), "label": "test", "compose_project": planted["project"],
            "project_dir": planted["project_dir"], "files": [planted["jobs"] + "/*.log"],
            "max_file_bytes": 100000, "disk_paths": ["/", planted["jobs"]],
            "documents": {"health": {"state": "critical", "detail": "readyz failed",
                                     "request": {"headers": {"X-Api-Token": planted["values"]["api_token"]}}}},
            "secrets": [planted["values"]["api_token"]], "env_files": [planted["secret_env"]],
            "env_public_keys": ["PORT"]}
    base.update(extra)
    return base


def test_bundle_holds_the_content_and_no_secret(planted, tmp_path):
    dest = tmp_path / "out" / "bundles"
    run = run_module(tmp_path, MODULE, params(planted, dest), verbosity=3)
    result = run.result
    assert not run.failed, result
    assert result["changed"] is True
    path = result["path"]
    assert os.path.dirname(path) == str(dest)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    assert result["size"] == os.path.getsize(path)
    assert not [n for n in os.listdir(dest) if n.startswith(".")]  # no partial left

    content = members(path)
    logs = "containers/%s/logs.txt" % planted["name"]
    expected = {"project/releases.json", "project/events.jsonl", "project/compose/docker-compose.yml",
                "project/containers.json", "containers/%s/inspect.json" % planted["name"], logs,
                "files" + planted["jobs"] + "/import.log", "files" + planted["jobs"] + "/big.log",
                "disk_usage.json", "documents/health.json", "manifest.json"}
    assert expected <= set(content), sorted(content)
    assert {m["name"] for m in result["members"]} == set(content)
    tag = planted["tag"]
    assert "web starting, marker-%s" % tag in content[logs]
    assert "boot with [REDACTED:known_secret] ready" in content[logs]
    # the password is known from the container's DB_PASSWORD as well: one marker, both rules counted
    assert "postgres://app:[REDACTED:known_secret]@127.0.0.1:5432/app" in content[logs]
    assert "cache redis://:[REDACTED:connection_string]@127.0.0.1:6379/0" in content[logs]
    assert "session [REDACTED:jwt]" in content[logs]
    assert "job import started marker-%s" % tag in content["files" + planted["jobs"] + "/import.log"]
    assert "job import done" in content["files" + planted["jobs"] + "/import.log"]
    inspect = json.loads(content["containers/%s/inspect.json" % planted["name"]])
    assert sorted(inspect["Config"]["Env"])[:2] == ["API_TOKEN=[REDACTED:known_secret]", "DB_PASSWORD=[REDACTED:known_secret]"]
    assert inspect["Config"]["Labels"]["com.docker.compose.project"] == planted["project"]
    assert json.loads(content["project/releases.json"])["current"]["id"] == "r1"
    assert '"deploy"' in content["project/events.jsonl"]
    assert json.loads(content["documents/health.json"])["detail"] == "readyz failed"
    assert {u["path"] for u in json.loads(content["disk_usage.json"])} == {"/", planted["jobs"]}

    for name, text in content.items():
        for value in planted["values"].values():
            for form in forms(value):
                assert form not in text, "a form of a secret is in %s" % name
    for value in planted["values"].values():
        assert value not in run.output  # -vvv output
    redactions = result["redactions"]
    for rule in ("known_secret", "secret_key", "jwt", "connection_string", "pem_private_key"):
        assert redactions[rule] > 0, redactions
    manifest = json.loads(content["manifest.json"])
    assert manifest["redactions"] == redactions
    assert result["known_secrets"] == 3  # the token (given, in .env and in the env), the env file's value, DB_PASSWORD

    big = "files" + planted["jobs"] + "/big.log"
    assert result["truncated"] == [big]
    assert big in manifest["truncated"]
    assert content[big].startswith("[runbook.ops diagnostics_bundle: this is the tail of")
    assert content[big].rstrip().endswith("line 019999 padding........")
    assert "line 000000 " not in content[big]
    entry = next(m for m in result["members"] if m["name"] == big)
    assert entry["truncated"] and 90000 < entry["size"] < 101000 and "left out" in entry["note"]


def test_scan_refuses_a_secret_redaction_did_not_see(planted, tmp_path):
    dest = tmp_path / "bundles"
    raw = tmp_path / "raw" / "dump.bin"
    raw.parent.mkdir()
    raw.write_bytes(b"\x00\x01binary " + base64.b64encode(planted["values"]["extra"].encode()) + b"\x02\n")
    run = run_module(tmp_path, MODULE, {"dest": str(dest), "raw_files": [str(raw)],
                                        "env_files": [planted["secret_env"]], "documents": {"x": {"a": 1}}},
                     verbosity=3)
    assert run.failed
    assert run.result["msg"] == "refused: secret value found in files%s; the bundle was deleted" % raw
    assert os.listdir(dest) == []  # neither the bundle nor its partial
    assert planted["values"]["extra"] not in run.output


def test_check_mode_writes_nothing(planted, tmp_path):
    dest = tmp_path / "never"
    run = run_module(tmp_path, MODULE, params(planted, dest), check=True)
    result = run.result
    assert not run.failed, result
    assert not dest.exists()
    names = {m["name"] for m in result["members"]}
    assert "containers/%s/logs.txt" % planted["name"] in names
    assert "files" + planted["jobs"] + "/big.log" in names
    assert "size" not in result and "sha256" not in result


def test_retention_keeps_the_newest_of_its_label(tmp_path):
    dest = tmp_path / "bundles"
    dest.mkdir(mode=0o700)
    foreign = ["diagnostics-other-20260101T000000Z-abcdef.tar.gz", "notes.txt", "diagnostics-test-old.tar.gz"]
    for name in foreign:
        (dest / name).write_text("keep me")
    task = {"name": "bundle", MODULE: {"dest": str(dest), "label": "test", "keep": 2,
                                       "documents": {"n": "{{ item }}"}}, "loop": [1, 2, 3],
            "register": "made"}
    run = run_playbook(tmp_path, [{"hosts": "localhost", "gather_facts": False, "tasks": [task]}])
    assert run.rc == 0, run.output
    made = [r["path"] for r in run.task("bundle")["result"]["results"]]
    left = sorted(os.listdir(dest))
    assert sorted(foreign + [os.path.basename(p) for p in made[1:]]) == left
    assert run.task("bundle")["result"]["results"][2]["removed"] == [made[0]]
