"""The collection's documentation against the code.

- ansible-doc renders every module (doc, examples, return, the check_mode/diff_mode/idempotent attributes) and
  every role's argument spec, with no warning;
- every playbook has a page in docs/playbooks/ with the five sections a reader looks for;
- every procedure of docs/procedures.md is in its catalogue table and names playbooks, roles, modules and
  variables that exist, or says why it is not automated;
- antsibull-changelog accepts every fragment, and a release built from them in a copy mentions each one.

The ansible-doc tests need the collection on the collections path: ANSIBLE_COLLECTIONS_PATH as `make unit`
sets it, or .build/collections of this checkout.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml"))
PAGES = sorted((ROOT / "docs" / "playbooks").glob("*.md"))
SECTIONS = ("What it does", "Variables", "What it changes", "Check mode", "Failure modes and what is left behind")

# The procedures the collection covers (the runbooks' IDs): health and probing, backup and restore, rotation,
# deploy and rollback, incidents, maintenance.
PROCEDURES = (["HP%d" % i for i in range(1, 8)] + ["BK%d" % i for i in range(1, 11)] + ["RT%d" % i for i in range(1, 7)]
              + ["DR%d" % i for i in range(1, 6)] + ["IN%d" % i for i in range(1, 11)] + ["MT%d" % i for i in range(1, 4)])


def _tool(name):
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def _ansible_env():
    env = dict(os.environ)
    path = env.get("ANSIBLE_COLLECTIONS_PATH") or str(ROOT / ".build" / "collections")
    assert any((Path(p) / "ansible_collections" / "runbook" / "ops" / "galaxy.yml").is_file()
               for p in path.split(os.pathsep)), (
        "runbook.ops is not on ANSIBLE_COLLECTIONS_PATH=%s: run `make collection` or source env.sh" % path)
    env["ANSIBLE_COLLECTIONS_PATH"] = path
    env.setdefault("ANSIBLE_CONFIG", str(ROOT / "tests" / "ansible.cfg"))
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def _ansible_doc(*args):
    done = subprocess.run([_tool("ansible-doc"), *args], env=_ansible_env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    # ansible-doc exits 0 for a plugin it cannot find or load and only warns: any warning is a failure here.
    assert not done.stderr.strip(), done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def module_docs():
    return json.loads(_ansible_doc("--json", "-t", "module", *("runbook.ops.%s" % m for m in MODULES)))


def test_ansible_doc_renders_every_module(module_docs):
    assert sorted(module_docs) == ["runbook.ops.%s" % m for m in MODULES]
    for name, entry in module_docs.items():
        doc = entry["doc"]
        assert doc.get("short_description") and doc.get("description"), name
        assert isinstance(entry.get("examples"), str) and "runbook.ops.%s" % doc["module"] in entry["examples"], (
            "%s: EXAMPLES must call the module by its FQCN" % name)
        assert entry.get("return"), "%s: RETURN is empty" % name
        for attribute in ("check_mode", "diff_mode", "idempotent"):
            assert attribute in (doc.get("attributes") or {}), "%s: attribute %s missing" % (name, attribute)


def test_ansible_doc_text_output_renders_every_module():
    text = _ansible_doc("-t", "module", *("runbook.ops.%s" % m for m in MODULES))
    for module in MODULES:
        assert "runbook.ops.%s" % module in text, module


def test_every_public_role_has_an_argument_spec():
    missing = [r for r in ROLES if not r.startswith("_") and not (ROOT / "roles" / r / "meta" / "argument_specs.yml").is_file()]
    assert not missing, "roles without meta/argument_specs.yml: %s" % missing


def test_ansible_doc_renders_every_role_argument_spec():
    roles = [r for r in ROLES if (ROOT / "roles" / r / "meta" / "argument_specs.yml").is_file()]
    docs = json.loads(_ansible_doc("--json", "-t", "role", *("runbook.ops.%s" % r for r in roles)))
    assert sorted(docs) == ["runbook.ops.%s" % r for r in roles]
    for role in roles:
        specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        entry_points = docs["runbook.ops.%s" % role]["entry_points"]
        assert sorted(entry_points) == sorted(specs), role
        for name, entry in entry_points.items():
            assert entry.get("short_description"), "%s:%s has no short_description" % (role, name)
            assert sorted(entry.get("options") or {}) == sorted(specs[name].get("options") or {}), "%s:%s" % (role, name)
    text = _ansible_doc("-t", "role", *("runbook.ops.%s" % r for r in roles))
    for role in roles:
        assert "runbook.ops.%s" % role in text, role


def _headings(page):
    return [line[3:].strip() for line in page.read_text().splitlines() if line.startswith("## ")]


def _page_for(playbook):
    """The page whose title names playbooks/<name>.yml (pitr_backup and pitr_restore share pitr.md)."""
    for page in PAGES:
        title = page.read_text().splitlines()[0]
        if title.startswith("# ") and "playbooks/%s" % playbook.name in title:
            return page
    return None


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_every_playbook_has_a_page_with_the_five_sections(playbook):
    page = _page_for(playbook)
    assert page, "no page in docs/playbooks/ whose title names playbooks/%s" % playbook.name
    headings = [h.lower() for h in _headings(page)]
    missing = [s for s in SECTIONS if not any(s.lower() in h for h in headings)]
    assert not missing, "%s: sections missing: %s" % (page.name, missing)


def test_every_page_documents_a_playbook():
    names = {p.name for p in PLAYBOOKS}
    for page in PAGES:
        title = page.read_text().splitlines()[0]
        assert set(re.findall(r"playbooks/(\w+\.yml)", title)) & names, "%s: title names no playbook" % page.name


def _catalogue():
    """(ids, procedure, run by) for each row of the catalogue table; `RT1–RT3` stands for RT1, RT2, RT3."""
    rows = []
    for line in (ROOT / "docs" / "procedures.md").read_text().splitlines():
        match = re.match(r"\| \[([A-Z]{2}\d+)(?:[–-]([A-Z]{2})?(\d+))?\]\(#[\w-]+\) \| (.+?) \| (.+) \|$", line)
        if match:
            first, _prefix, last, procedure, run_by = match.groups()
            start = int(first[2:])
            ids = [first] if not last else ["%s%d" % (first[:2], i) for i in range(start, int(last) + 1)]
            rows.append((ids, procedure, run_by))
    return rows


def _known_variables():
    names = set()
    for path in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for spec in yaml.safe_load(path.read_text())["argument_specs"].values():
            names.update(spec.get("options") or {})
    for playbook in PLAYBOOKS:
        code = "\n".join(line for line in playbook.read_text().splitlines() if not line.lstrip().startswith("#"))
        names.update(re.findall(r"\b[a-z_][a-z0-9_]*\b", code))
    return names


def test_catalogue_covers_every_procedure():
    listed = [i for ids, _procedure, _run_by in _catalogue() for i in ids]
    assert sorted(set(PROCEDURES) - set(listed)) == [], "procedures missing from the docs/procedures.md table"
    assert len(listed) == len(set(listed)), "a procedure listed twice"


@pytest.mark.parametrize("row", _catalogue(), ids=lambda row: row[0][0])
def test_catalogue_row_names_what_exists(row):
    ids, _procedure, run_by = row
    if "not automated" in run_by or "not yet automated" in run_by:
        assert len(re.sub(r"not (yet )?automated", "", run_by).split()) >= 4, "%s: say why it is not automated" % ids
        return
    playbooks = re.findall(r"`(\w+\.yml)`", run_by)
    modules = re.findall(r"modules? `(\w+)`(?:, `(\w+)`)?", run_by)
    roles = re.findall(r"role `(\w+)`", run_by)
    assert playbooks or modules or roles, "%s: names no playbook, role or module" % ids
    for name in playbooks:
        assert (ROOT / "playbooks" / name).is_file(), "%s: playbooks/%s does not exist" % (ids, name)
    for pair in modules:
        for name in filter(None, pair):
            assert (ROOT / "plugins" / "modules" / ("%s.py" % name)).is_file(), "%s: module %s" % (ids, name)
    for name in roles:
        assert (ROOT / "roles" / name).is_dir(), "%s: role %s" % (ids, name)


ROLE_PREFIXES = tuple(sorted(ROLES + ["backup_files", "list_backups", "rotate"], key=len, reverse=True))


def test_catalogue_variables_exist():
    """Every role-prefixed name the catalogue puts in backquotes is a role option, a playbook variable or a module."""
    text = (ROOT / "docs" / "procedures.md").read_text()
    known = _known_variables()
    unknown = sorted({name for name in re.findall(r"`([a-z][a-z0-9_]+)(?::[^`]*)?`", text)
                      if name.startswith(tuple(p + "_" for p in ROLE_PREFIXES)) and name not in known
                      and name not in MODULES
                      and not (ROOT / "playbooks" / ("%s.yml" % name)).exists()})
    assert not unknown, "docs/procedures.md names variables nothing reads: %s" % unknown


def test_catalogue_variable_check_can_fail():
    known = _known_variables()
    assert "restore_force" in known and "restore_forced" not in known


def _fragments():
    return sorted((ROOT / "changelogs" / "fragments").glob("*.yml"))


def test_changelog_fragments_lint():
    done = subprocess.run([_tool("antsibull-changelog"), "lint"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def _normal(text):
    return re.sub(r"\s+", " ", text).strip()


def test_changelog_release_from_the_fragments_mentions_each(tmp_path):
    """A release built in a copy (the checkout keeps its fragments until a real release) names every fragment."""
    copy = tmp_path / "ansible_collections" / "runbook" / "ops"
    copy.mkdir(parents=True)
    for name in ("galaxy.yml", "changelogs", "plugins", "meta", "roles", "playbooks"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / name)
    config = yaml.safe_load((ROOT / "changelogs" / "config.yaml").read_text())
    done = subprocess.run([_tool("antsibull-changelog"), "release", "--version", "0.0.0-test", "--date", "2026-01-01"],
                          cwd=copy, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    changelog = _normal((copy / "changelogs" / config["changelog_filename_template"]).resolve().read_text())
    trivial = config.get("trivial_section_name", "trivial")
    for fragment in _fragments():
        for section, entries in (yaml.safe_load(fragment.read_text()) or {}).items():
            if section == trivial:
                continue
            for entry in entries if isinstance(entries, list) else [entries]:
                words = _normal(entry).split(" ")[:8]
                assert " ".join(words) in changelog, "%s: %r is not in the built changelog" % (fragment.name, words)


# Secret-named role variables are no_log in their argument specs: the spec validation then never shows them.
SECRET_NAME = re.compile(r"(^|_)(password|passphrase|token|secret)$|^value$")


def _secret_options_without_no_log(options, path=""):
    for name, option in (options or {}).items():
        if SECRET_NAME.search(name) and not option.get("no_log"):
            yield path + name
        yield from _secret_options_without_no_log(option.get("options"), path + name + ".")


def test_secret_role_variables_are_no_log():
    missing = []
    for spec_file in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        for entry, spec in yaml.safe_load(spec_file.read_text())["argument_specs"].items():
            missing += ["%s %s: %s" % (spec_file.parts[-3], entry, name)
                        for name in _secret_options_without_no_log(spec.get("options"))]
    assert not missing, "secret-named role variables without no_log: true: %s" % missing


def test_secret_role_variable_check_can_fail():
    assert list(_secret_options_without_no_log({"x_login_password": {"type": "str"},
                                                "x_keys": {"options": {"value": {"type": "str"}}},
                                                "x_token_check_path": {"type": "str"}})) == ["x_login_password", "x_keys.value"]
