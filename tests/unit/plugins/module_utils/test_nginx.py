# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Marking a server of an nginx upstream up or down: the text edit, and the write/test/reload/revert
sequence with a recorded command runner (the real nginx runs in tests/integration/rolling)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _nginx
from ansible_collections.runbook.ops.plugins.module_utils._errors import NginxError

UPSTREAM = """# managed by the rolling_restart role
upstream app {
    zone app 64k;   # shared memory
    server 127.0.0.1:8781 max_fails=1 fail_timeout=2s;
    server 127.0.0.1:8782 down;
    server 127.0.0.1:8783 backup;
}

upstream "other" {
    server 127.0.0.1:9000;
}
"""
BOTH_UP = UPSTREAM.replace("8782 down;", "8782;")


def test_marking_down_adds_the_parameter_and_keeps_every_other_byte():
    text, servers, before = _nginx.set_server(UPSTREAM, "app", "127.0.0.1:8781", "down", allow_all_down=True)
    assert before == "up"
    assert text == UPSTREAM.replace("fail_timeout=2s;", "fail_timeout=2s down;")
    assert [s.as_dict() for s in servers] == [
        {"address": "127.0.0.1:8781", "down": False, "params": ["max_fails=1", "fail_timeout=2s"], "line": 4},
        {"address": "127.0.0.1:8782", "down": True, "params": ["down"], "line": 5},
        {"address": "127.0.0.1:8783", "down": False, "params": ["backup"], "line": 6}]


def test_marking_up_removes_the_parameter_and_an_unchanged_state_is_the_same_text():
    text, _servers, before = _nginx.set_server(UPSTREAM, "app", "127.0.0.1:8782", "up")
    assert before == "down"
    assert text == UPSTREAM.replace("server 127.0.0.1:8782 down;", "server 127.0.0.1:8782;")
    assert _nginx.set_server(UPSTREAM, "app", "127.0.0.1:8782", "down")[0] is UPSTREAM
    assert _nginx.set_server(text, "app", "127.0.0.1:8782", "up")[0] is text
    # Round trip: down then up gives the original back.
    down = _nginx.set_server(UPSTREAM, "app", "127.0.0.1:8781", "down", allow_all_down=True)[0]
    assert _nginx.set_server(down, "app", "127.0.0.1:8781", "up")[0] == UPSTREAM


def test_a_quoted_upstream_name_comments_and_nested_blocks():
    text = _nginx.set_server(UPSTREAM, "other", "127.0.0.1:9000", "down", allow_all_down=True)[0]
    assert "server 127.0.0.1:9000 down;" in text
    full = "http {\n  # upstream app { server 1.2.3.4:1; }\n  include mime.types;\n" \
           "  upstream app {\n    server 127.0.0.1:1; server 127.0.0.1:2;\n  }\n" \
           "  server { listen 127.0.0.1:80; location / { proxy_pass http://app; } }\n}\n"
    changed = _nginx.set_server(full, "app", "127.0.0.1:2", "down")[0]
    assert changed == full.replace("server 127.0.0.1:2;", "server 127.0.0.1:2 down;")


def test_the_last_server_up_is_not_marked_down_a_backup_does_not_count():
    # 8782 is down already and 8783 is only a backup: 8781 is the last one serving.
    with pytest.raises(NginxError, match="refusing to mark 127.0.0.1:8781 down: it is the last server of upstream app"
                                         " that is up, and nginx would answer every request with 502"):
        _nginx.set_server(UPSTREAM, "app", "127.0.0.1:8781", "down")
    assert "fail_timeout=2s down;" in _nginx.set_server(UPSTREAM, "app", "127.0.0.1:8781", "down", allow_all_down=True)[0]
    both_up = _nginx.set_server(UPSTREAM, "app", "127.0.0.1:8782", "up")[0]
    assert "8781 max_fails=1 fail_timeout=2s down;" in _nginx.set_server(both_up, "app", "127.0.0.1:8781", "down")[0]


def test_mistakes_are_named():
    with pytest.raises(NginxError, match=r"no upstream api in the file \(its upstreams: app, other\)"):
        _nginx.set_server(UPSTREAM, "api", "127.0.0.1:8781", "down")
    with pytest.raises(NginxError, match=r"upstream app has no server 127.0.0.1:9999 \(its servers: 127.0.0.1:8781, "):
        _nginx.set_server(UPSTREAM, "app", "127.0.0.1:9999", "down")
    with pytest.raises(NginxError, match="lists server 127.0.0.1:1 2 times"):
        _nginx.set_server("upstream a { server 127.0.0.1:1; server 127.0.0.1:1 down; }", "a", "127.0.0.1:1", "up")
    with pytest.raises(NginxError, match="defined 2 times"):
        _nginx.set_server("upstream a { server x:1; }\nupstream a { server x:2; }\n", "a", "x:1", "up")
    with pytest.raises(NginxError, match="never closed"):
        _nginx.set_server("upstream a { server x:1;\n", "a", "x:1", "up")
    with pytest.raises(NginxError, match="unexpected '}' at line 2"):
        _nginx.set_server("upstream a { server x:1; }\n}\n", "a", "x:1", "up")
    with pytest.raises(NginxError, match="unterminated quoted string starting at line 1"):
        _nginx.set_server('upstream "a { server x:1; }\n', "a", "x:1", "up")
    with pytest.raises(NginxError, match="state must be up or down"):
        _nginx.set_server(UPSTREAM, "app", "127.0.0.1:8781", "drain")


class Runner:
    """Records argv; answers from a list of (rc, stdout, stderr)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []
        self.seen_text = []
        self.path = None

    def __call__(self, argv):
        self.calls.append(argv)
        if self.path:
            with open(self.path, encoding="utf-8") as handle:
                self.seen_text.append(handle.read())
        return self.answers.pop(0) if self.answers else (0, "", "")


def upstream_file(tmp_path, runner, **commands):
    path = tmp_path / "upstream.conf"
    path.write_text(BOTH_UP)
    os.chmod(path, 0o644)
    runner.path = str(path)
    return path, _nginx.UpstreamFile(str(path), _nginx.NginxCommands(**commands), runner)


def test_apply_writes_tests_and_reloads_with_the_same_main_config(tmp_path):
    runner = Runner()
    path, upstream = upstream_file(tmp_path, runner, binary="/usr/sbin/nginx", config="/srv/nginx.conf",
                                   directives="pid /srv/nginx.pid;")
    plan = upstream.plan("app", "127.0.0.1:8781", "down")
    assert plan["server_before"] == "up" and plan["before"] == BOTH_UP
    assert upstream.apply(plan) == {"validated": True, "reloaded": True}
    assert runner.calls == [
        ["/usr/sbin/nginx", "-t", "-q", "-c", "/srv/nginx.conf", "-g", "pid /srv/nginx.pid;"],
        ["/usr/sbin/nginx", "-c", "/srv/nginx.conf", "-g", "pid /srv/nginx.pid;", "-s", "reload"]]
    assert runner.seen_text == [plan["after"], plan["after"]]  # the test saw the new text
    assert path.read_text() == plan["after"] and oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert not [name for name in os.listdir(tmp_path) if name != "upstream.conf"]


def test_a_failed_test_puts_the_old_text_back_and_does_not_reload(tmp_path):
    stderr = ("nginx: [emerg] host not found in upstream \"x:1\" in /srv/upstream.conf:4\n"
              "nginx: configuration file /srv/nginx.conf test failed\n")
    runner = Runner((1, "", stderr))
    path, upstream = upstream_file(tmp_path, runner)
    with pytest.raises(NginxError) as caught:
        upstream.apply(upstream.plan("app", "127.0.0.1:8781", "down"))
    assert str(caught.value).startswith("nginx -t rejected the change (nginx -t -q exited with 1): nginx: [emerg] host "
                                        "not found")
    assert str(caught.value).endswith("test failed; upstream.conf was put back as it was")
    assert path.read_text() == BOTH_UP and len(runner.calls) == 1


def test_a_failed_reload_puts_the_old_text_back_too(tmp_path):
    runner = Runner((0, "", ""), (1, "", 'nginx: [error] open() "/srv/nginx.pid" failed (2: No such file)'))
    path, upstream = upstream_file(tmp_path, runner, reload_command=["systemctl", "reload", "nginx"])
    with pytest.raises(NginxError, match=r"the reload failed \(systemctl reload nginx exited with 1\): nginx: \[error\]"
                                         r" open\(\) .* put back as it was \(nginx was not reloaded with the change\)"):
        upstream.apply(upstream.plan("app", "127.0.0.1:8781", "down"))
    assert path.read_text() == BOTH_UP

    def not_found(argv):
        raise FileNotFoundError(2, "No such file", argv[0])

    missing = _nginx.UpstreamFile(str(path), _nginx.NginxCommands(binary=str(tmp_path / "no-nginx")), not_found)
    with pytest.raises(NginxError, match="cannot run .*no-nginx"):
        missing.apply(missing.plan("app", "127.0.0.1:8781", "down"))
    assert path.read_text() == BOTH_UP


def test_without_validation_or_reload_and_a_missing_file(tmp_path):
    runner = Runner()
    _path, upstream = upstream_file(tmp_path, runner)
    assert upstream.apply(upstream.plan("app", "127.0.0.1:8781", "down"), validate=False, reload=False) == {
        "validated": False, "reloaded": False}
    assert runner.calls == []
    with pytest.raises(NginxError, match="does not exist: give the include file"):
        _nginx.UpstreamFile(str(tmp_path / "nope.conf"), _nginx.NginxCommands(), runner).read()
