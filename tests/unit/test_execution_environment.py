# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""meta/execution-environment.yml through ansible-builder's own code, offline.

``ansible-builder create`` writes the build context (Containerfile, the requirement files, the scripts that run
inside the image) without a registry; ``ansible-builder build`` would then need the base image from its
registry, which the test machines cannot reach, so the image itself is not built here.  The second test runs
the context's introspect.py - the script the image build runs to collect the requirements of the collections
it installed - over this collection, the way it happens when a user's EE lists runbook.ops under
dependencies.galaxy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = os.path.join(os.path.dirname(sys.executable), "ansible-builder")


def lines(path):
    """The requirement lines of a file, without comments and blank lines."""
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]


def create(definition, context):
    if not os.path.exists(BUILDER):
        pytest.fail("ansible-builder is not installed next to %s (requirements-dev.txt)" % sys.executable)
    proc = subprocess.run([BUILDER, "create", "-f", definition, "-c", context, "--output-filename", "Containerfile"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(context, "Containerfile"), encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(name="definition")
def fixture_definition():
    with open(os.path.join(REPO, "meta", "execution-environment.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_create_builds_the_context_of_the_definition(tmp_path, definition):
    # The definition's paths are relative to the collection root: lay it out there, as its comment says.
    root = tmp_path / "root"
    root.mkdir()
    for name, source in (("execution-environment.yml", "meta/execution-environment.yml"),
                         ("requirements.txt", "requirements.txt"), ("bindep.txt", "bindep.txt")):
        os.symlink(os.path.join(REPO, source), root / name)
    containerfile = create(str(root / "execution-environment.yml"), str(tmp_path / "context"))

    build = tmp_path / "context" / "_build"
    assert lines(build / "requirements.txt") == lines(os.path.join(REPO, "requirements.txt"))
    assert lines(build / "bindep.txt") == lines(os.path.join(REPO, "bindep.txt"))
    assert 'EE_BASE_IMAGE="%s"' % definition["images"]["base_image"]["name"] in containerfile
    refs = "%s %s" % (definition["dependencies"]["ansible_core"]["package_pip"],
                      definition["dependencies"]["ansible_runner"]["package_pip"])
    assert 'ANSIBLE_INSTALL_REFS="%s"' % refs in containerfile
    assert "introspect.py introspect --user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    assert "/output/scripts/install-from-bindep" in containerfile


def test_an_ee_that_installs_the_collection_gets_its_requirements(tmp_path, definition):
    user = {
        "version": 3,
        "images": definition["images"],
        "dependencies": {
            "ansible_core": definition["dependencies"]["ansible_core"],
            "ansible_runner": definition["dependencies"]["ansible_runner"],
            "galaxy": {"collections": [{"name": "runbook-ops.tar.gz", "type": "file"}]},
        },
    }
    (tmp_path / "execution-environment.yml").write_text(yaml.safe_dump(user))
    containerfile = create(str(tmp_path / "execution-environment.yml"), str(tmp_path / "context"))
    build = tmp_path / "context" / "_build"
    assert "ansible-galaxy collection install" in containerfile
    assert "runbook-ops.tar.gz" in (build / "requirements.yml").read_text()

    # What the build then does with the installed collection: introspect it.  A copy with only the files
    # introspect reads (it takes a directory with galaxy.yml or MANIFEST.json for a collection), under the layout
    # ansible-galaxy installs to.
    collection = tmp_path / "collections" / "ansible_collections" / "runbook" / "ops"
    (collection / "meta").mkdir(parents=True)
    for name in ("galaxy.yml", "meta/execution-environment.yml", "requirements.txt", "bindep.txt"):
        shutil.copy(os.path.join(REPO, name), collection / name)
    proc = subprocess.run([sys.executable, str(build / "scripts" / "introspect.py"), "introspect",
                           str(tmp_path / "collections"), "--write-pip", str(tmp_path / "pip.txt"),
                           "--write-bindep", str(tmp_path / "bindep.txt")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wanted_pip = [line for line in lines(os.path.join(REPO, "requirements.txt"))
                  # ansible-builder leaves out what every image has (PyYAML comes with ansible-core)
                  if not line.lower().startswith("pyyaml")]
    got_pip = lines(tmp_path / "pip.txt")
    for line in wanted_pip:
        name = line.split()[0]
        assert any(got.startswith(name) and "# from collection runbook.ops" in got for got in got_pip), (name, got_pip)
    got_bindep = lines(tmp_path / "bindep.txt")
    for line in lines(os.path.join(REPO, "bindep.txt")):
        assert any(got.startswith(line.split("#")[0].strip()) for got in got_bindep), (line, got_bindep)
