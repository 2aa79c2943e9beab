# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as users get it: `ansible-galaxy collection build`, installed into a fresh virtualenv.

The build runs on a copy of the files git would ship (tracked, plus untracked ones that are not ignored), into
which the test plants the local state a developer's checkout holds (demo data, virtualenvs, caches, test
output, an older tarball): the tarball must carry none of it, nor the tests, benchmarks and tooling galaxy.yml's
build_ignore leaves out.  The installed copy then runs from a virtualenv that has only ansible-core and
requirements.txt, with ANSIBLE_COLLECTIONS_PATH naming only the install directory and HOME a private
directory (so neither this checkout nor ~/.ansible/collections can stand in for it): a backup of a SQLite
database through `ansible-playbook runbook.ops.backup`, the listing through `runbook.ops.list_backups`, and
ansible-doc of a module and a role.  pip installs from the machine's configured index and reuses its cache.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import time

import pytest
import yaml

from harness import CALLBACKS, REPO, VENV_BIN

# Top-level entries a tarball may hold; anything new needs a decision here and in galaxy.yml's build_ignore.
SHIPPED_TOP = {"MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "LICENSE", "COPYING", "LICENSES",
               "requirements.txt", "bindep.txt", "meta", "plugins", "roles", "playbooks", "docs", "inventories",
               "changelogs"}
REQUIRED = ["MANIFEST.json", "README.md", "requirements.txt", "bindep.txt", "meta/runtime.yml",
            "meta/execution-environment.yml", "plugins/modules/db_backup.py", "plugins/module_utils/_backup.py",
            "plugins/doc_fragments/store.py", "roles/backup/tasks/main.yml", "roles/backup/meta/argument_specs.yml",
            "playbooks/backup.yml", "playbooks/list_backups.yml", "changelogs/changelog.yaml",
            "inventories/example"]
# What a developer's checkout holds besides the shipped files (planted into the copy before the build).
LOCAL_STATE = [".demo/data/app.db", ".demo/backups/app/sqlite-app-x.sqlite3.zst", ".build/collections/x",
               ".venv/bin/python3", ".pytest_cache/v/cache/lastfailed", "plugins/modules/__pycache__/db_backup.cpython-311.pyc",
               "tests/output/junit/sanity.xml", "bench/results/backup.json", "runbook-ops-0.0.1.tar.gz",
               "changelogs/.plugin-cache.yaml"]
LEFT_OUT = re.compile(r"(tests|bench|molecule|scripts|sample_service|\.ci|\.demo|\.build|\.venv|\.pytest_cache"
                      r"|Makefile|pytest\.ini|requirements-dev\.txt|\.ansible-lint|\.gitignore|inventories/local"
                      r"|changelogs/fragments)(/.*)?|.*(__pycache__|\.pyc|\.tar\.gz)(/.*)?")
TIMINGS = {}


def timed(name, argv, **kwargs):
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    TIMINGS[name] = TIMINGS.get(name, 0.0) + time.monotonic() - started
    assert proc.returncode == 0, "%s failed (exit %d):\n%s\n%s" % (name, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def shipped_files():
    """The files a clean checkout holds: tracked, plus untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return [p for p in out.split("\0") if p and os.path.isfile(os.path.join(REPO, p))
            and not p.startswith((".venv/", ".build/", ".demo/"))]


@pytest.fixture(scope="module", name="work")
def fixture_work(tmp_path_factory):
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="module", name="tarball")
def fixture_tarball(work):
    copy = work / "checkout"
    files = shipped_files()
    for path in files:
        target = copy / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(os.path.join(REPO, path), "rb") as src:
            target.write_bytes(src.read())
    for path in LOCAL_STATE:
        (copy / path).parent.mkdir(parents=True, exist_ok=True)
        (copy / path).write_text("local state\n")
    timed("build", [os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path",
                    str(work / "dist"), str(copy)])
    built = glob.glob(str(work / "dist" / "runbook-ops-*.tar.gz"))
    assert len(built) == 1, built
    return built[0], files


@pytest.fixture(scope="module", name="installed")
def fixture_installed(work, tarball):
    """(environment, venv bin directory, collections directory) of a fresh virtualenv with the tarball installed."""
    venv = work / "venv"
    timed("venv", [sys.executable, "-m", "venv", str(venv)])
    with open(os.path.join(REPO, "requirements-dev.txt"), encoding="utf-8") as handle:
        core = re.search(r"^(ansible-core\S*)", handle.read(), re.M).group(1)
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    timed("pip install", [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          core, "-r", os.path.join(REPO, "requirements.txt")], env=pip_env)

    home = work / "home"
    home.mkdir()
    collections = work / "collections"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({
        "HOME": str(home),
        "PATH": str(venv / "bin") + os.pathsep + os.pathsep.join(
            p for p in env.get("PATH", "").split(os.pathsep) if os.path.abspath(p) != os.path.abspath(VENV_BIN)),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,  # the test suite's result recorder, not part of the collection
        "ANSIBLE_CALLBACKS_ENABLED": "result_file",
    })
    (work / "ansible.cfg").write_text("[defaults]\nhost_key_checking = False\nretry_files_enabled = False\n")
    timed("galaxy install", [str(venv / "bin" / "ansible-galaxy"), "collection", "install", tarball[0],
                             "-p", str(collections)], env=env, cwd=str(work))
    return env, venv / "bin", collections


def test_tarball_carries_the_collection_and_nothing_else(tarball):
    path, files = tarball
    with tarfile.open(path) as archive:
        members = {m.name.rstrip("/") for m in archive.getmembers()}
    for name in REQUIRED:
        assert name in members, "%s is missing from the tarball" % name
    assert any(m.startswith("docs/") and m.endswith(".md") for m in members), "no docs in the tarball"
    unexpected = sorted(m for m in members if m.split("/")[0] not in SHIPPED_TOP or LEFT_OUT.fullmatch(m))
    assert not unexpected, "the tarball holds what build_ignore should leave out: %s" % unexpected[:20]
    # and build_ignore leaves out nothing a user needs: every shipped-area file of the checkout is there
    user_files = [f for f in files if f.split("/")[0] in SHIPPED_TOP and not LEFT_OUT.fullmatch(f)]
    missing = sorted(set(user_files) - members)
    assert not missing, "files build_ignore drops by mistake: %s" % missing[:20]
    with tarfile.open(path) as archive:
        manifest = json.load(archive.extractfile("MANIFEST.json"))
    assert manifest["collection_info"]["namespace"] == "runbook"
    assert manifest["collection_info"]["name"] == "ops"


def test_only_the_installed_copy_is_visible(installed):
    env, bin_dir, collections = installed
    proc = timed("collection list", [str(bin_dir / "ansible-galaxy"), "collection", "list", "runbook.ops",
                                     "--format", "json"], env=env, cwd=str(collections.parent))
    found = json.loads(proc.stdout)
    assert list(found) == [str(collections / "ansible_collections")], found
    assert list(found[str(collections / "ansible_collections")]) == ["runbook.ops"]


def test_ansible_doc_renders_from_the_installed_copy(installed):
    env, bin_dir, collections = installed
    proc = timed("ansible-doc", [str(bin_dir / "ansible-doc"), "-t", "module", "runbook.ops.db_backup"], env=env,
                 cwd=str(collections.parent))
    assert str(collections / "ansible_collections" / "runbook" / "ops" / "plugins" / "modules" / "db_backup.py") in proc.stdout
    assert "Back up" in proc.stdout or "back up" in proc.stdout
    proc = timed("ansible-doc", [str(bin_dir / "ansible-doc"), "-t", "role", "runbook.ops.backup"], env=env,
                 cwd=str(collections.parent))
    assert "backup_service" in proc.stdout


def sample_database(path):
    conn = sqlite3.connect(str(path))
    with conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("CREATE TABLE audit_log (id INTEGER PRIMARY KEY, event TEXT)")
        conn.executemany("INSERT INTO items (name) VALUES (?)", [("item %d" % i,) for i in range(37)])
        conn.executemany("INSERT INTO audit_log (event) VALUES (?)", [("created",)] * 5)
    conn.close()
    return {"items": 37, "audit_log": 5}


def run_fqcn_playbook(installed, work, playbook, inventory, *extra):
    env, bin_dir, collections = installed
    results = work / ("results-%s.jsonl" % playbook.rsplit(".", 1)[-1])
    proc = timed("playbook " + playbook, [str(bin_dir / "ansible-playbook"), playbook, "-i", str(inventory)] + list(extra),
                 env=dict(env, RBOPS_RESULT_FILE=str(results)), cwd=str(collections.parent))
    with open(results, encoding="utf-8") as handle:
        return proc, [json.loads(line) for line in handle if line.strip()]


def test_backup_playbook_by_fqcn_from_the_installed_copy(installed, work):
    env, bin_dir, _collections = installed
    database = work / "app.db"
    counts = sample_database(database)
    store = work / "backups"
    inventory = work / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"app": {"hosts": {"localhost": {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(bin_dir / "python"),
        "backup_service": "pkgtest",
        "backup_engine": "sqlite",
        "backup_path": str(database),
        "backup_store": {"type": "local", "path": str(store)},
    }}}}}}))

    proc, records = run_fqcn_playbook(installed, work, "runbook.ops.backup", inventory, "-e", "backup_verify_after=true")
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout, proc.stdout[-3000:]
    # every module ran from the installed copy, none from elsewhere
    assert records and all(r["status"] in ("ok", "changed", "skipped") for r in records), records

    manifests = glob.glob(str(store / "pkgtest" / "*.manifest.json"))
    assert len(manifests) == 1, os.listdir(store)
    with open(manifests[0], encoding="utf-8") as handle:
        manifest = json.load(handle)
    data = manifests[0][:-len(".manifest.json")]
    with open(data, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert digest == manifest["sha256"]
    assert os.path.getsize(data) == manifest["size"]
    assert manifest["row_counts"] == counts, manifest

    proc, records = run_fqcn_playbook(installed, work, "runbook.ops.list_backups", inventory)
    shown = [r for r in records if r["task"] == "Show the backups"]
    assert shown and manifest["id"] in json.dumps(shown[-1]["result"]), shown
    assert "1 complete" in json.dumps(shown[-1]["result"]), shown
    print("packaging timings (s): " + ", ".join("%s %.1f" % item for item in TIMINGS.items()))
