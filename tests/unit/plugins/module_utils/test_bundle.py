# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_bundle on real files in a temporary directory: caps and tails, the final scan's refusal, retention by
the module's own names, check-mode plans, and a Compose project's state with captured inspect output
(fixtures/docker, from a real engine) served by a stand-in engine."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import stat
import tarfile

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _bundle
from ansible_collections.runbook.ops.plugins.module_utils._bundle import BundleCollector, Limits, Project
from ansible_collections.runbook.ops.plugins.module_utils._errors import BundleError, ContainerError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "docker")
SECRET = "known-Secret-0123456789"


def members(path):
    with tarfile.open(path, "r:gz") as tar:
        names = [info.name for info in tar]
        assert len({n.split("/", 1)[0] for n in names}) == 1  # one top directory
        return {info.name.split("/", 1)[1]: tar.extractfile(info).read() for info in tar if info.isfile()}


def test_tail_bytes_keeps_the_newest_from_a_line_start():
    data, dropped = _bundle.tail_bytes([b"one\n", b"two\nthree\n", b"four\n"], 12)
    assert data == b"three\nfour\n" and dropped == 8
    assert _bundle.tail_bytes([b"a\nb\n"], 100) == (b"a\nb\n", 0)
    data, dropped = _bundle.tail_bytes([b"x" * 50], 10)  # one long line: the cut stays where it is
    assert data == b"x" * 10 and dropped == 40


def test_read_file_tail(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(b"line %03d\n" % i for i in range(100)))
    chunks, size, dropped = _bundle.read_file_tail(str(path), 95)
    data = b"".join(chunks)
    assert size == 900 and data.startswith(b"line 090\n") and data.endswith(b"line 099\n")
    assert dropped + len(data) == size
    chunks, size, dropped = _bundle.read_file_tail(str(path), 10000)
    assert b"".join(chunks) == path.read_bytes() and dropped == 0


def test_expand_globs_dedupes_and_keeps_the_newest(tmp_path):
    for index in range(5):
        (tmp_path / ("j%d.log" % index)).write_text("x")
        os.utime(tmp_path / ("j%d.log" % index), (1000 + index, 1000 + index))
    os.symlink(tmp_path / "j0.log", tmp_path / "link.log")
    (tmp_path / "dir.log").mkdir()
    found, notes = _bundle.expand_globs([str(tmp_path / "*.log"), str(tmp_path / "nothing*")], 3)
    assert [os.path.basename(p) for p in found] == ["j2.log", "j3.log", "j4.log"]
    assert "no file matches %s" % (tmp_path / "nothing*") in notes
    assert any("only the newest 3" in n for n in notes)


def test_limits_and_names_are_checked(tmp_path):
    with pytest.raises(BundleError, match="max_file_bytes must be a whole number of at least 1"):
        Limits(max_file_bytes=0)
    with pytest.raises(BundleError, match="label must be"):
        BundleCollector(str(tmp_path), label="../x")
    with pytest.raises(BundleError, match="keep must be"):
        BundleCollector(str(tmp_path), keep=-1)
    with pytest.raises(BundleError, match="invalid regular expression"):
        BundleCollector(str(tmp_path), secret_key_patterns=["("])
    with pytest.raises(BundleError, match="document name"):
        BundleCollector(str(tmp_path)).add_documents({"a/b": 1})


def test_writes_a_private_bundle_with_files_documents_and_manifest(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("start\nusing %s now\nAPI_TOKEN=abc\nend\n" % SECRET)
    (logs / "big.log").write_bytes(b"".join(b"%05d\n" % i for i in range(10000)))
    dest = tmp_path / "out" / "b"
    bundle = BundleCollector(str(dest), label="unit", limits=Limits(max_file_bytes=1000))
    bundle.add_secrets([SECRET])
    bundle.add_files([str(logs / "*.log")])
    bundle.add_disk_usage([str(tmp_path), str(tmp_path / "missing")])
    bundle.add_documents({"probe": {"state": "ok", "password": "p", "note": "b64 " + base64.b64encode(SECRET.encode()).decode()}})
    result = bundle.write()
    path = result["path"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700 and stat.S_IMODE(os.stat(dest.parent).st_mode) == 0o700
    assert os.listdir(dest) == [os.path.basename(path)]
    content = members(path)
    a_name = "files%s/a.log" % logs
    big = "files%s/big.log" % logs
    assert set(content) == {a_name, big, "disk_usage.json", "documents/probe.json", "manifest.json"}
    assert content[a_name] == b"start\nusing [REDACTED:known_secret] now\nAPI_TOKEN=[REDACTED:secret_key]\nend\n"
    assert content[big].startswith(b"[runbook.ops diagnostics_bundle: this is the tail of")
    assert content[big].endswith(b"09999\n") and b"00000\n" not in content[big]
    assert result["truncated"] == [big]
    probe = json.loads(content["documents/probe.json"])
    assert probe == {"state": "ok", "password": "[REDACTED:secret_key]", "note": "b64 [REDACTED:known_secret]"}
    usage = json.loads(content["disk_usage.json"])
    assert usage[0]["total"] > 0 and "error" in usage[1]
    manifest = json.loads(content["manifest.json"])
    assert manifest["redactions"] == result["redactions"] == dict(
        {rule: 0 for rule in _bundle.RULES}, known_secret=2, secret_key=2)
    assert manifest["known_secrets"] == 1 and manifest["truncated"] == [big]
    assert [m["name"] for m in result["members"]][-1] == "manifest.json"
    sizes = {m["name"]: m["size"] for m in result["members"]}
    assert all(sizes[name] == len(data) for name, data in content.items())
    for data in content.values():
        assert SECRET.encode() not in data
    import hashlib
    with open(path, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == result["sha256"]


def test_total_cap_skips_the_rest(tmp_path):
    for name in ("a.log", "b.log", "c.log"):
        (tmp_path / name).write_bytes(b"z" * 600 + b"\n")
    bundle = BundleCollector(str(tmp_path / "out"), limits=Limits(max_file_bytes=1000, max_total_bytes=1000))
    bundle.add_files([str(tmp_path / "*.log")])
    result = bundle.write()
    assert [m["name"] for m in result["members"]] == ["files%s/a.log" % tmp_path, "files%s/b.log" % tmp_path,
                                                      "manifest.json"]
    assert result["members"][1]["truncated"]  # what was left of the total cap
    assert result["skipped"] == [{"source": str(tmp_path / "c.log"),
                                  "reason": "the total cap of 1000 bytes for files was reached"}]


def test_scan_refuses_and_deletes_a_bundle_with_a_known_secret(tmp_path):
    raw = tmp_path / "core.bin"
    raw.write_bytes(b"\x00\x01 user:" + SECRET.encode() + b" \x02")
    dest = tmp_path / "out"
    bundle = BundleCollector(str(dest))
    bundle.add_secrets([SECRET])
    bundle.add_files([str(raw)], raw=True)
    with pytest.raises(BundleError) as caught:
        bundle.write()
    assert str(caught.value) == "refused: secret value found in files%s; the bundle was deleted" % raw
    assert SECRET not in str(caught.value)
    assert os.listdir(dest) == []


def test_raw_files_without_known_secrets_are_copied_byte_for_byte(tmp_path):
    raw = tmp_path / "core.bin"
    raw.write_bytes(b"\xff\x00API_TOKEN=abc\n")
    bundle = BundleCollector(str(tmp_path / "out"))
    bundle.add_files([str(raw)], raw=True)
    result = bundle.write()
    assert members(result["path"])["files%s" % raw] == raw.read_bytes()
    assert result["members"][0]["redacted"] is False


def test_retention_touches_only_its_own_label_and_names(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    others = ["diagnostics-other-20260101T000000Z-abcdef.tar.gz", "diagnostics-unit-x.tar.gz", "notes.txt",
              ".diagnostics-unit-20260101T000000Z-abcdef.tar.gz.partial-1234abcd"]
    for name in others:
        (dest / name).write_text("x")
    old = []
    for index in range(3):
        name = "diagnostics-unit-2026010%dT000000Z-00000%d.tar.gz" % (index + 1, index)
        (dest / name).write_text("x")
        os.utime(dest / name, (1000 + index, 1000 + index))
        old.append(str(dest / name))
    bundle = BundleCollector(str(dest), label="unit", keep=2)
    bundle.add_documents({"n": 1})
    plan = bundle.plan()
    assert plan["removed"] == [old[1], old[0]]
    assert len(os.listdir(dest)) == 7  # the plan removed nothing
    result = bundle.write()
    assert result["removed"] == [old[1], old[0]]
    assert sorted(os.listdir(dest)) == sorted(others + [os.path.basename(old[2]), os.path.basename(result["path"])])
    assert BundleCollector(str(dest), label="unit", keep=0).retention() == []


def test_plan_reads_nothing_and_writes_nothing(tmp_path):
    (tmp_path / "a.log").write_text("x" * 5000)
    bundle = BundleCollector(str(tmp_path / "never"), limits=Limits(max_file_bytes=1000))
    bundle.add_files([str(tmp_path / "*.log")])
    bundle.add_documents({"d": {"x": 1}})
    plan = bundle.plan()
    assert not (tmp_path / "never").exists()
    assert [(m["name"], m["size"]) for m in plan["members"]] == [("files%s/a.log" % tmp_path, 1000),
                                                                 ("documents/d.json", None)]


class CapturedEngine:
    """Serves inspect objects captured from a real engine, and logs given by the test."""

    def __init__(self, inspected, logs=b"", fail_logs=False):
        self.inspected = inspected
        self.log_data = logs
        self.fail_logs = fail_logs
        self.asked = []

    def with_labels(self, labels):
        self.asked.append(labels)
        project = labels["com.docker.compose.project"]
        return [a for a in self.inspected if a["Config"]["Labels"].get("com.docker.compose.project") == project]

    def inspect(self, name):
        return next((a for a in self.inspected if a["Name"].lstrip("/") == name or a["Id"] == name), None)

    def logs(self, name, tail):
        assert tail == 1000  # Limits' default
        if self.fail_logs:
            raise ContainerError("reading the logs of container %s failed" % name)
        return iter([self.log_data[i:i + 7] for i in range(0, len(self.log_data), 7)])


def captured(with_secret=True):
    with open(os.path.join(FIXTURES, "compose-web.json"), encoding="utf-8") as handle:
        attrs = copy.deepcopy(json.load(handle)[0])
    if with_secret:
        attrs["Config"]["Env"] = attrs["Config"]["Env"] + ["SESSION_SECRET=" + SECRET, "WORKERS=4"]
    return attrs


def test_project_state_inspect_and_logs(tmp_path):
    project_dir = tmp_path / "rbopscap"
    (project_dir / ".runbook").mkdir(parents=True)
    (project_dir / "docker-compose.yml").write_text("services:\n  web:\n    environment:\n      API_KEY: abc\n")
    (project_dir / ".env").write_text("APP_TAG=1\nREDIS_PASSWORD=redis-pass-value\n")
    (project_dir / ".runbook" / "events.jsonl").write_text('{"event": "deploy"}\n')
    engine = CapturedEngine([captured()], logs=b"2026-11-30T08:00:00Z up " + SECRET.encode() + b" redis-pass-value\n" * 3)
    bundle = BundleCollector(str(tmp_path / "out"), limits=Limits(log_bytes=60), engine_factory=lambda: engine)
    bundle.add_project(Project(project_dir=str(project_dir)))
    assert engine.asked == [{"com.docker.compose.project": "rbopscap"}]
    assert "no release history in %s" % (project_dir / ".runbook") in bundle.notes
    result = bundle.write()
    content = members(result["path"])
    name = captured()["Name"].lstrip("/")
    assert set(content) == {"project/events.jsonl", "project/compose/docker-compose.yml", "project/containers.json",
                            "containers/%s/inspect.json" % name, "containers/%s/logs.txt" % name, "manifest.json"}
    inspect = json.loads(content["containers/%s/inspect.json" % name])
    assert "SESSION_SECRET=[REDACTED:known_secret]" in inspect["Config"]["Env"] and "WORKERS=4" in inspect["Config"]["Env"]
    logs = content["containers/%s/logs.txt" % name]
    assert SECRET.encode() not in logs and b"redis-pass-value" not in logs and b"[REDACTED:known_secret]" in logs
    assert "containers/%s/logs.txt" % name in result["truncated"]
    assert b"API_KEY: [REDACTED:secret_key]" in content["project/compose/docker-compose.yml"]
    assert json.loads(content["project/containers.json"])["containers"][0]["service"] == "web"
    assert result["known_secrets"] == 2


def test_failing_logs_are_skipped_not_fatal(tmp_path):
    engine = CapturedEngine([captured(False)], fail_logs=True)
    bundle = BundleCollector(str(tmp_path / "out"), engine_factory=lambda: engine)
    bundle.add_project(Project(name="rbopscap"))
    result = bundle.write()
    assert [s["reason"] for s in result["skipped"]] == ["reading the logs of container %s failed" % captured()["Id"]]
    assert any(m["kind"] == "inspect" for m in result["members"])


def test_missing_containers_and_projects_are_notes(tmp_path):
    engine = CapturedEngine([])
    bundle = BundleCollector(str(tmp_path / "out"), engine_factory=lambda: engine)
    bundle.add_project(Project(name="nothing"))
    bundle.add_containers(["ghost"])
    assert bundle.notes == ["no containers of Compose project nothing"]
    assert bundle.skipped == [{"source": "container ghost", "reason": "no such container"}]


def test_project_name_from_env_file_and_directory(tmp_path):
    project_dir = tmp_path / "My_App-1"
    project_dir.mkdir()
    # Compose v1 and v2 derive the same name here (both keep - and _; v2 also trims leading ones)
    assert Project(project_dir=str(project_dir)).names == ["my_app-1"]
    (project_dir / ".env").write_text("COMPOSE_PROJECT_NAME=named\n")
    assert Project(project_dir=str(project_dir)).names == ["named"]
    assert Project("given", str(project_dir)).names == ["given"]
    with pytest.raises(BundleError, match="is not a directory"):
        Project(project_dir=str(tmp_path / "none"))


def test_env_file_values(tmp_path):
    env = tmp_path / "app.env"
    env.write_text("API_TOKEN=tok-value-1\nPORT=8080\nAPP_TAG=1.2.3\nEMPTY=\n")
    assert _bundle.env_file_values(str(env), public_keys=["APP_TAG"]) == ["tok-value-1", "8080"]
    assert _bundle.env_file_values(str(env), secret_names_only=True) == ["tok-value-1"]
    with pytest.raises(BundleError, match="cannot read the env file"):
        _bundle.env_file_values(str(tmp_path / "missing.env"))


def test_env_secrets_of_a_container():
    assert _bundle.env_secrets(["A=1", "DB_PASSWORD=x y", "PATH=/bin", "NOVALUE", "TOKEN="]) == ["x y"]


def test_scan_reads_members_in_chunks():
    scan = _bundle.SecretScan(_bundle.KnownSecrets([SECRET]), chunk=5)
    assert scan.found(io.BytesIO(b"....." + SECRET.encode()))


def test_an_engine_that_cannot_answer_is_a_skipped_source(tmp_path):
    def down():
        raise ContainerError("cannot reach the Docker engine at the default socket: connection refused")
    bundle = BundleCollector(str(tmp_path / "out"), engine_factory=down)
    bundle.add_project(Project(name="app"))
    bundle.add_containers(["web"])
    bundle.add_documents({"d": 1})
    result = bundle.write()
    reason = "cannot reach the Docker engine at the default socket: connection refused"
    assert result["skipped"] == [{"source": "containers of Compose project app", "reason": reason},
                                 {"source": "container web", "reason": reason}]
    assert [m["name"] for m in result["members"]] == ["project/containers.json", "documents/d.json", "manifest.json"]
