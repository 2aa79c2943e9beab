# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_compose: CLI output parsing on captured Compose v1 output and documented v2 formats (fixtures/compose),
the command lines and environments given to Compose, and the health gate on captured inspect output
(fixtures/docker)."""

from __future__ import annotations

import copy
import datetime
import json
import os

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _compose, _docker
from ansible_collections.runbook.ops.plugins.module_utils._errors import ComposeError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture(name):
    with open(os.path.join(FIXTURES, "compose", name), encoding="utf-8") as handle:
        return handle.read()


def inspected(name):
    with open(os.path.join(FIXTURES, "docker", name + ".json"), encoding="utf-8") as handle:
        return json.load(handle)[0]


# parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("v1-version.txt", (1, 29, 2)),
    ("v1-version-short.txt", (1, 29, 2)),
    ("v2-version.txt", (2, 24, 5)),
    ("v2-version-short.txt", (2, 24, 5)),
])
def test_versions_of_both_compose_generations(name, expected):
    assert _compose.parse_version(fixture(name)) == expected


def test_no_version_in_an_error_or_nothing():
    assert _compose.parse_version(fixture("docker-without-compose-plugin.txt")) is None
    assert _compose.parse_version("") is None
    assert _compose.parse_version("v2.3") == (2, 3, 0)


@pytest.mark.parametrize("name", ["v1-config-services.txt", "v2-config-services.txt"])
def test_config_services(name):
    assert _compose.parse_lines(fixture(name)) == ["api", "worker"]


def test_ps_ids_and_image_lists():
    ids = _compose.parse_lines(fixture("v1-ps-q.txt"))
    assert len(ids) == 2 and all(len(i) == 64 for i in ids)
    assert _compose.parse_lines(fixture("v2-config-images.txt")) == ["rbops-cr-capture:v1"] * 2


@pytest.mark.parametrize("name", ["v2.20-ps-format-json.txt", "v2.24-ps-format-json.txt"])
def test_ps_json_array_and_lines(name):
    found = _compose.parse_ps_json(fixture(name))
    assert [(e["Service"], e["State"], e["Health"]) for e in found] == [("api", "running", "healthy"),
                                                                        ("worker", "running", "starting")]


def test_ps_json_empty_and_broken():
    assert _compose.parse_ps_json("") == []
    with pytest.raises(ComposeError, match="not JSON"):
        _compose.parse_ps_json("{not json")


@pytest.mark.parametrize("name", ["v1-config.txt", "v2-config.txt"])
def test_config_keeps_images_and_drops_the_environment(name):
    services = _compose.parse_config_services(fixture(name))
    assert services == {"api": {"image": "rbops-cr-capture:v1", "build": False, "profiles": []},
                        "worker": {"image": "rbops-cr-capture:v1", "build": False, "profiles": []}}
    assert "example-not-a-secret" not in json.dumps(services)


def test_config_errors_name_no_content():
    with pytest.raises(ComposeError, match="no services"):
        _compose.parse_config_services("version: '2.4'\n")
    with pytest.raises(ComposeError, match="YAML error at line") as caught:
        _compose.parse_config_services("services:\n  api: [secret-value\n")
    assert "secret-value" not in str(caught.value)


def test_a_service_that_builds():
    found = _compose.parse_config_services("services:\n  app:\n    build: {context: .}\n  db:\n    image: pg\n"
                                           "  migrate:\n    image: app\n    profiles: [tools]\n")
    assert found == {"app": {"image": None, "build": True, "profiles": []},
                     "db": {"image": "pg", "build": False, "profiles": []},
                     "migrate": {"image": "app", "build": False, "profiles": ["tools"]}}


def test_named_volumes_scoped_by_the_project_name():
    assert _compose.project_scoped_volumes(fixture("v2-config.txt")) == ["cache"]
    assert _compose.project_scoped_volumes(fixture("v1-config.txt")) == []
    assert _compose.project_scoped_volumes("volumes:\n  a: {external: true}\n  b:\n") == ["b"]


@pytest.mark.parametrize("directory, v1, v2", [
    ("/srv/my-app_2", "myapp2", "my-app_2"),
    ("/srv/App", "app", "app"),
    ("/srv/_odd.name/", "oddname", "oddname"),
])
def test_default_project_names(directory, v1, v2):
    assert _compose.default_project_name(directory, "v1") == v1
    assert _compose.default_project_name(directory, "v2") == v2


def test_file_discovery(tmp_path):
    with pytest.raises(ComposeError, match="no compose file"):
        _compose.discover_files(str(tmp_path))
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    assert _compose.discover_files(str(tmp_path)) == [str(tmp_path / "docker-compose.yml")]
    (tmp_path / "docker-compose.override.yml").write_text("services: {}\n")
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    assert _compose.discover_files(str(tmp_path)) == [str(tmp_path / "compose.yaml")]
    (tmp_path / "compose.override.yaml").write_text("services: {}\n")
    assert _compose.discover_files(str(tmp_path))[1] == str(tmp_path / "compose.override.yaml")


def test_files_hash_follows_content_and_order(tmp_path):
    one, two = tmp_path / "a.yml", tmp_path / "b.yml"
    one.write_text("x")
    two.write_text("y")
    first = _compose.files_hash([str(one), str(two)])
    assert first.startswith("sha256:") and first != _compose.files_hash([str(two), str(one)])
    one.write_text("z")
    assert _compose.files_hash([str(one), str(two)]) != first
    with pytest.raises(ComposeError, match="cannot read"):
        _compose.files_hash([str(tmp_path / "missing.yml")])


def test_mask_hides_env_values_but_not_short_ones():
    text = "connect postgres://u:hunter22@db failed; token abcdef; flag on"
    assert _compose.mask(text, ["hunter22", "abcdef", "on", ""]) == "connect postgres://u:***@db failed; token ***; flag on"


def test_tail_keeps_the_last_lines_on_one_line():
    assert _compose.tail("a\n\nb\nc\n", 2) == "b | c"


def test_tail_drops_compose_progress_but_not_errors():
    v1 = "Creating app_api_run ... \nCreating app_api_run ... done\nmigration failed\nStarting db ... error\n"
    assert _compose.tail(v1) == "migration failed | Starting db ... error"
    v2 = " Container app-api-1  Recreate\n Container app-api-1  Started\n Container app-db-1  Error\n"
    assert _compose.tail(v2) == "Container app-db-1  Error"


# the command line --------------------------------------------------------------------------------
class Recorder:
    """Answers Compose commands from a table and records every call (argv, env)."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, env, cwd, timeout):
        self.calls.append({"argv": argv, "env": env, "cwd": cwd})
        for prefix, answer in self.answers:
            if argv[:len(prefix)] == prefix or (prefix[0] == "*" and prefix[1] in argv):
                return answer
        return 0, "", ""


def on_path(name, path=None):
    return "/usr/bin/" + name


def not_found(name, path=None):
    return None


@pytest.fixture()
def project(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / ".env").write_text("APP_TAG=v1\nAPI_TOKEN=s3cret-token\n")
    return tmp_path


def test_auto_falls_back_to_v1(project):
    runner = Recorder([(["docker", "compose"], (1, "", fixture("docker-without-compose-plugin.txt"))),
                       (["docker-compose", "version"], (0, fixture("v1-version-short.txt"), ""))])
    cli = _compose.ComposeCLI(str(project), project_name="app", runner=runner, which=on_path, base_env={})
    assert cli.select() == ("v1", None)  # v1 is slow to start: its version is asked only when needed
    assert [c["argv"][:2] for c in runner.calls] == [["docker", "compose"]]
    assert cli.select(need_version=True) == ("v1", (1, 29, 2))
    assert cli.command_name == "docker-compose" and cli.version_text == "1.29.2"
    assert [c["argv"][:2] for c in runner.calls] == [["docker", "compose"], ["docker-compose", "version"]]


def test_neither_compose(project):
    runner = Recorder([(["docker", "compose"], (1, "", fixture("docker-without-compose-plugin.txt")))])
    cli = _compose.ComposeCLI(str(project), runner=runner, which=not_found, base_env={})
    with pytest.raises(ComposeError, match=r"docker compose \(v2\): docker: unknown command: docker compose; "
                                           r"docker-compose \(v1\): not found on the PATH"):
        cli.select()


def test_auto_prefers_v2(project):
    runner = Recorder([(["docker", "compose", "version"], (0, fixture("v2-version-short.txt"), ""))])
    cli = _compose.ComposeCLI(str(project), runner=runner, which=on_path, base_env={})
    assert cli.select() == ("v2", (2, 24, 5))
    assert len(runner.calls) == 1


def test_asked_for_v2_never_tries_v1(project):
    runner = Recorder([(["docker", "compose"], (1, "", fixture("docker-without-compose-plugin.txt")))])
    cli = _compose.ComposeCLI(str(project), command="v2", runner=runner, which=on_path, base_env={})
    with pytest.raises(ComposeError, match=r"no usable Compose command: docker compose \(v2\): docker: unknown command"):
        cli.select()
    assert len(runner.calls) == 1


def test_argv_is_explicit_and_the_environment_drops_managed_variables(project):
    runner = Recorder([(["docker-compose", "version"], (0, "1.29.2\n", ""))])
    cli = _compose.ComposeCLI(str(project), project_name="app", command="v1", runner=runner, which=on_path, docker_host="unix:///x.sock",
                              base_env={"APP_TAG": "v9", "PATH": "/bin", "OTHER": "1"})
    cli.managed = {"APP_TAG"}
    cli.run(["up", "-d"])
    call = runner.calls[-1]
    assert call["argv"] == ["docker-compose", "-p", "app", "-f", str(project / "docker-compose.yml"),
                            "--env-file", str(project / ".env"), "up", "-d"]
    assert call["env"] == {"PATH": "/bin", "OTHER": "1", "DOCKER_HOST": "unix:///x.sock"}
    assert call["cwd"] == str(project)
    cli.run(["config"], overrides={"APP_TAG": "v2"})
    assert runner.calls[-1]["env"]["APP_TAG"] == "v2"


def test_project_name_from_the_env_file_then_the_directory(project):
    runner = Recorder([(["docker-compose", "version"], (0, "1.29.2\n", ""))])
    cli = _compose.ComposeCLI(str(project), command="v1", runner=runner, which=on_path, base_env={})
    assert cli.project_name == _compose.default_project_name(str(project), "v1")
    (project / ".env").write_text("COMPOSE_PROJECT_NAME=named\n")
    assert cli.project_name == "named"


def test_a_failed_command_quotes_its_output_with_env_values_masked(project):
    runner = Recorder([(["docker-compose", "version"], (0, "1.29.2\n", "")),
                       (["*", "pull"], (1, "", "pulling\nERROR: auth failed with s3cret-token\n"))])
    cli = _compose.ComposeCLI(str(project), project_name="app", command="v1", runner=runner, which=on_path, base_env={})
    cli.masked = ("s3cret-token",)
    with pytest.raises(ComposeError) as caught:
        cli.run(["pull", "api"])
    assert str(caught.value) == "docker-compose pull failed (exit code 1): pulling | ERROR: auth failed with ***"
    assert caught.value.details["exit_code"] == 1


def test_v1_one_off_without_project_volumes_runs_under_another_project_at_once(project):
    runner = Recorder([(["docker-compose", "version"], (0, "1.29.2\n", "")),
                       (["*", "config"], (0, fixture("v1-config.txt"), ""))])
    cli = _compose.ComposeCLI(str(project), project_name="app", command="v1", runner=runner, which=on_path, base_env={})
    cli.services()
    cli.run_oneoff("api", ["migrate"])
    assert runner.calls[-1]["argv"][:3] == ["docker-compose", "-p", "apponeoff"] and len(runner.calls) == 2


def test_v1_one_off_beside_host_networked_containers_runs_under_another_project(project):
    links = (1, "", "ERROR: for api  Cannot create container for service api: conflicting options: "
                    "host type networking can't be used with links. This would result in undefined behavior\n")
    runner = Recorder([(["docker-compose", "version"], (0, "1.29.2\n", "")),
                       (["*", "config"], (0, fixture("v1-config.txt"), "")),
                       (["docker-compose", "-p", "app", "-f"], links),
                       (["docker-compose", "-p", "apponeoff"], (0, "2\n", ""))])
    cli = _compose.ComposeCLI(str(project), project_name="app", command="v1", runner=runner, which=on_path, base_env={})
    assert cli.run_oneoff("api", ["migrate"]) == (0, "2\n", "")
    assert runner.calls[-1]["argv"][-6:] == ["run", "--rm", "--no-deps", "-T", "api", "migrate"]


def test_v1_one_off_refused_when_named_volumes_would_differ(project):
    links = (1, "", "host type networking can't be used with links")
    runner = Recorder([(["docker-compose", "version"], (0, "1.29.2\n", "")),
                       (["*", "config"], (0, fixture("v2-config.txt"), "")),
                       (["docker-compose", "-p", "app", "-f"], links)])
    cli = _compose.ComposeCLI(str(project), project_name="app", command="v1", runner=runner, which=on_path, base_env={})
    rc, _out, err = cli.run_oneoff("api", ["migrate"], what="migration")
    assert rc == 1 and "named volumes (cache)" in err and "give the migration its own service" in err
    assert not any("apponeoff" in c["argv"] for c in runner.calls)


def test_missing_project_dir_and_bad_command(tmp_path):
    with pytest.raises(ComposeError, match="is not a directory"):
        _compose.ComposeCLI(str(tmp_path / "nope"))
    with pytest.raises(ComposeError, match="compose_command must be one of"):
        _compose.ComposeCLI(str(tmp_path), command="v3")


def test_run_process_reports_a_missing_command(tmp_path):
    rc, _out, err = _compose.run_process(["/nonexistent/compose"], {}, str(tmp_path), 5)
    assert rc == 127 and "command not found" in err
    assert _compose.run_process(["sh", "-c", "echo hi"], {"PATH": "/usr/bin:/bin"}, str(tmp_path), 5) == (0, "hi\n", "")
    rc, _out, err = _compose.run_process(["sleep", "5"], {"PATH": "/usr/bin:/bin"}, str(tmp_path), 0.2)
    assert rc == 124 and "did not finish" in err


# the health gate -------------------------------------------------------------------------------
def facts(name, **changes):
    attrs = copy.deepcopy(inspected(name))
    record = _compose.container_facts(attrs)
    record.update(changes)
    return record


def started_plus(record, seconds):
    return _docker.parse_time(record["started_at"]) + datetime.timedelta(seconds=seconds)


def test_gate_healthy_and_no_healthcheck_pass():
    web, plain = facts("compose-web"), facts("compose-plain")
    verdict, problems = _compose.gate([web, plain], started_plus(web, 30), 0, {}, ["web", "plain"])
    assert (verdict, problems) == ("healthy", [])
    assert web["image_id"].startswith("sha256:") and web["detail"].startswith("running, healthy")


def test_gate_waits_on_starting():
    slow = facts("compose-slow")
    assert _compose.gate([slow], started_plus(slow, 5), 0, {}, ["slow"])[0] == "waiting"


def test_gate_unhealthy_waits_within_grace_then_fails():
    worker = facts("compose-worker")
    verdict, problems = _compose.gate([worker], started_plus(worker, 5), 60, {}, ["worker"])
    assert verdict == "waiting"
    verdict, problems = _compose.gate([worker], started_plus(worker, 5), 0, {}, ["worker"])
    assert verdict == "failed" and "unhealthy" in problems[0] and "queue stuck" in problems[0]


@pytest.mark.parametrize("name, words", [
    ("compose-job", "exited with code 3"), ("restarting", "restarting"), ("created", "created but never started"),
    ("paused", "paused")])
def test_gate_fails_a_container_that_does_not_run(name, words):
    record = facts(name, service="api")
    verdict, problems = _compose.gate([record], started_plus(facts("compose-web"), 5), 0, {record["id"]: 99}, ["api"])
    assert verdict == "failed" and words in problems[0]


def test_gate_counts_restarts_since_the_baseline():
    loop = facts("crashloop", service="api")
    now = started_plus(loop, 1)
    verdict, problems = _compose.gate([loop], now, 0, {}, ["api"])
    assert verdict == "failed" and "restarted 3 time(s)" in problems[0]
    assert _compose.gate([loop], now, 0, {loop["id"]: 3}, ["api"])[0] == "healthy"


def test_gate_fails_a_service_without_container():
    web = facts("compose-web")
    verdict, problems = _compose.gate([web], started_plus(web, 5), 0, {}, ["web", "worker"])
    assert verdict == "failed" and problems == ["service worker has no container"]


# comparing what runs -----------------------------------------------------------------------------
def test_image_mismatch_names_service_and_both_images():
    expected = {"api": {"image": "app:v2", "image_id": "sha256:" + "b" * 64},
                "worker": {"image": "app:v2", "image_id": "sha256:" + "b" * 64}}
    running = {"api": {"image": "app:v1", "image_id": "sha256:" + "a" * 64},
               "worker": {"image": "app:v2", "image_id": "sha256:" + "b" * 64}}
    text = _compose.image_mismatch(expected, running)
    assert text == "api runs app:v1 (sha256:aaaaaaaaaaaa) instead of app:v2 (sha256:bbbbbbbbbbbb)"
    assert _compose.image_mismatch(expected, dict(running, api=running["worker"])) == ""
    assert "runs nothing" in _compose.image_mismatch(expected, {})
    assert "APP_TAG" in _compose.override_hint({"APP_TAG": "v2"})


def test_drift_between_record_and_containers():
    current = {"services": {"api": {"image": "app:v2", "image_id": "sha256:b"}}}
    same = [{"service": "api", "image": "app:v2", "image_id": "sha256:b"}]
    other = [{"service": "api", "image": "app:v1", "image_id": "sha256:a"}]
    assert _compose.drift(current, same) == []
    assert _compose.drift(current, other) == [{"service": "api", "recorded_image": "app:v2", "recorded_image_id": "sha256:b",
                                               "running_image": "app:v1", "running_image_id": "sha256:a"}]
    assert _compose.drift(current, [])[0]["running_image_id"] is None
    assert _compose.drift(None, other) == []


def test_variables_text_is_what_the_diff_shows():
    assert _compose._variables_text({"B": "2", "A": None}) == "A=\nB=2\n"
    assert _compose._variables_text({"A": "1", "B": "2"}, " ") == "A=1 B=2"


# waiting for health ------------------------------------------------------------------------------
class Observations:
    """The containers a project shows on successive polls (captured inspect records), and a clock the polls move."""

    def __init__(self, polls):
        self.polls = list(polls)
        self.now = 0.0
        self.calls = 0

    def project_containers(self, project, services=None):
        self.calls += 1
        return copy.deepcopy(self.polls[min(self.calls, len(self.polls)) - 1])

    def sleep(self, seconds):
        self.now += seconds


def waiter(project, polls):
    seen = Observations(polls)
    cli = _compose.ComposeCLI(str(project), project_name="app", command="v1", runner=Recorder([]), which=on_path, base_env={})
    release = _compose.ComposeRelease(cli, lambda: seen, state_dir=str(project / "state"), clock=lambda: seen.now,
                                      sleep=seen.sleep)
    return release, seen


def test_wait_until_starting_turns_healthy(project):
    slow, web = facts("compose-slow", service="web"), facts("compose-web")
    release, seen = waiter(project, [[slow], [slow], [web]])
    healthy, records, why = release.wait_healthy(["web"], 10, 0)
    assert healthy and why == "" and records[0]["health"] == "healthy"
    assert seen.calls == 3 and seen.now == 2 * _compose.POLL_SECONDS


def test_wait_needs_two_polls_for_a_container_without_health_check(project):
    plain = facts("compose-plain")
    release, seen = waiter(project, [[plain], [plain]])
    healthy, records, why = release.wait_healthy(["plain"], 10, 0)
    assert healthy and why == "" and seen.calls == 2
    restarted = facts("compose-plain", started_at="2026-11-30T18:30:00.000000000Z")
    release, seen = waiter(project, [[plain], [restarted], [restarted]])
    assert release.wait_healthy(["plain"], 10, 0)[0] and seen.calls == 3  # a new start: seen twice again


def test_wait_stops_at_the_deadline_and_at_a_failure(project):
    slow = facts("compose-slow")
    release, seen = waiter(project, [[slow]])
    healthy, _records, why = release.wait_healthy(["slow"], 3, 0)
    assert not healthy and why.startswith("not healthy within 3 s: ") and "health check starting" in why
    assert seen.now >= 3
    worker = facts("compose-worker")
    release, seen = waiter(project, [[worker]])
    healthy, _records, why = release.wait_healthy(["worker"], 60, 0)
    assert not healthy and "unhealthy" in why and seen.calls == 1
