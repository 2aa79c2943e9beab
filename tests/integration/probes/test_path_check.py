# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""path_check through ansible-playbook: links, unquoted modes, fail_on from the shared scale."""

from __future__ import annotations

import os

NO_DISK_LEVELS = {"warn_percent": 100, "crit_percent": 100}


def test_dangling_and_looping_links_are_findings_even_with_fail_on_never(ansible_module, tmp_path):
    dangling = tmp_path / "data"
    dangling.symlink_to(tmp_path / "moved-away")
    loop_a, loop_b = tmp_path / "a", tmp_path / "b"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    params = dict(NO_DISK_LEVELS, paths=[str(dangling), str(loop_a)], type="directory", mode="0700",
                  recurse=True, fail_on="never")
    run = ansible_module("runbook.ops.path_check", params)
    assert not run.failed, run.result
    assert "Errno" not in run.output and "Traceback" not in run.output
    gone, loop = run.result["paths"]
    assert gone["state"] == "critical" and "which does not exist (a dangling link)" in gone["reasons"][0]
    assert loop["state"] == "critical" and "that loops" in loop["reasons"][0]
    assert run.result["state"] == "critical" and run.result["summary"]["critical"] == 2

    failing = ansible_module("runbook.ops.path_check", dict(params, fail_on="critical"))
    assert failing.failed and failing.result["paths"][0]["link_target"] == str(tmp_path / "moved-away")


def test_a_symlinked_data_dir_is_checked_through_the_link(ansible_module, tmp_path):
    real = tmp_path / "volume" / "app"
    real.mkdir(parents=True)
    (real / "app.db").write_text("db")
    os.chmod(real, 0o700)
    os.chmod(real / "app.db", 0o644)
    link = tmp_path / "data"
    link.symlink_to(real)
    params = dict(NO_DISK_LEVELS, paths=[str(link)], type="directory", mode="0700", file_mode="0600", recurse=True)
    run = ansible_module("runbook.ops.path_check", params)
    assert run.failed
    report = run.result["paths"][0]
    assert report["link"] and report["resolved_path"] == str(real) and report["type"] == "directory"
    assert [o["path"] for o in report["offenders"]] == [str(real / "app.db")]

    os.chmod(real / "app.db", 0o600)
    fixed = ansible_module("runbook.ops.path_check", params)
    assert not fixed.failed and fixed.result["state"] == "ok", fixed.result
    assert fixed.result["paths"][0]["files_checked"] == 2


def test_an_unquoted_mode_is_octal_with_a_warning(ansible_module, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o755)
    run = ansible_module("runbook.ops.path_check", dict(NO_DISK_LEVELS, paths=[str(data)], mode=755))
    assert not run.failed and run.result["state"] == "ok", run.result
    assert any("mode 755 is a decimal number" in w and "0755" in w for w in run.result["warnings"]), run.result
    assert "1363" not in run.output

    os.chmod(data, 0o775)
    loose = ansible_module("runbook.ops.path_check", dict(NO_DISK_LEVELS, paths=[str(data)], mode=755))
    assert loose.failed
    assert loose.result["paths"][0]["offenders"][0]["problems"] == ["mode 0775 has bits 0020 beyond 0755"]


def test_fail_on_follows_the_shared_scale(ansible_module, tmp_path):
    full = {"paths": [str(tmp_path)], "warn_percent": 0, "crit_percent": 100}
    assert ansible_module("runbook.ops.path_check", dict(full, fail_on="warning")).failed
    assert not ansible_module("runbook.ops.path_check", dict(full, fail_on="critical")).failed
    bad = ansible_module("runbook.ops.path_check", dict(full, fail_on="sometimes"))
    assert bad.failed and "fail_on" in bad.result["msg"] and "critical, warning, never" in bad.result["msg"]
