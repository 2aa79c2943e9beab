"""docs/awx/ against the code: templates, surveys, credential types and schedules stay true to playbooks/ and roles/.

The AWX configuration in docs/awx/ is data an awx.awx user applies as it is, so every name in it must be a real
playbook or a real role variable, every survey default must be the role's (or the playbook's) own default, no
survey asks for a secret, and every secret a playbook's roles take comes from a credential type.
"""

import datetime
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AWX = ROOT / "docs" / "awx"
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml"))

# The full_restore role runs the restore role for the database part with the user's restore_* variables
# (playbooks/full_restore.yml says so); every other playbook's variables are those of the roles it includes.
DELEGATED_ROLES = {"full_restore.yml": [("restore", "main")]}

# A secret by name, after the role prefix: restore_login_password, health_check_metrics_token, rotate_secret_api_token.
SECRET_NAME = re.compile(r"(password|passphrase|token|secret|secrets)$")
SECRET_INPUT = re.compile(r"(password|passphrase|token|secret|secret_key|_pass)$")

SURVEY_TYPES = {
    "str": {"text", "textarea", "multiplechoice"},
    "path": {"text", "textarea"},
    "int": {"integer"},
    "float": {"float", "integer"},
    "bool": {"multiplechoice"},
    "list": {"multiselect"},
}


class _AwxLoader(yaml.SafeLoader):
    """Reads the `!unsafe` tag the playbooks use to keep AWX's injector templates away from Ansible."""


_AwxLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def _play_vars(name):
    plays = yaml.load((AWX / name).read_text(), Loader=_AwxLoader)  # noqa: S506 - a SafeLoader subclass
    assert isinstance(plays, list) and len(plays) == 1, "%s: one play expected" % name
    return plays[0]["vars"]


def _role_specs():
    specs = {}
    for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        entries = yaml.safe_load(path.read_text())["argument_specs"]
        specs[path.parts[-3]] = {entry: (spec.get("options") or {}) for entry, spec in entries.items()}
    return specs


SPECS = _role_specs()
ALL_OPTIONS = {name: (role, option) for role, entries in SPECS.items()
               for options in entries.values() for name, option in options.items()}
JOB_TEMPLATES = _play_vars("job_templates.yml")
CREDENTIAL_TYPES = _play_vars("credential_types.yml")
SCHEDULES = _play_vars("schedules.yml")
TEMPLATES = JOB_TEMPLATES["runbook_ops_job_templates"]
TEMPLATES_BY_PLAYBOOK = {t["playbook"]: t for t in TEMPLATES}


def _tasks(plays):
    for play in plays:
        for section in ("pre_tasks", "tasks", "post_tasks"):
            yield from _flatten(play.get(section) or [])


def _flatten(tasks):
    for task in tasks:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _flatten(task.get(key) or [])


def playbook_roles(path):
    """(role, entry point) pairs a playbook includes; a templated tasks_from counts every entry point."""
    roles = []
    for task in _tasks(yaml.safe_load(path.read_text())):
        for action in ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"):
            if action in task:
                name = task[action]["name"].split(".")[-1]
                tasks_from = task[action].get("tasks_from", "main")
                entries = list(SPECS[name]) if "{{" in tasks_from else [tasks_from]
                roles.extend((name, entry) for entry in entries)
    return roles + DELEGATED_ROLES.get(path.name, [])


def playbook_words(path):
    """The names a playbook's code uses (comments left out: a comment naming a variable does not read it)."""
    code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    return set(re.findall(r"\b[a-z_][a-z0-9_]*\b", code))


def playbook_variables(path):
    """name -> (role, option spec) for role variables; name -> None for variables only the playbook reads."""
    variables = {}
    for role, entry in playbook_roles(path):
        for name, option in SPECS[role][entry].items():
            variables[name] = (role, option)
    for word in playbook_words(path):
        variables.setdefault(word, ALL_OPTIONS.get(word))
    return variables


def carries_secret(name, role, option):
    """no_log, a no_log sub-option, a secret by its name, or a store (S3 keys) whatever the spec declares."""
    if option is None:
        return name.endswith("_store")
    if option.get("no_log") or any(sub.get("no_log") for sub in (option.get("options") or {}).values()):
        return True
    if option.get("type") == "dict" and name.endswith("_store"):
        return True
    short = name[len(role) + 1:] if name.startswith(role + "_") else name
    return option.get("type", "str") in ("str", "list") and bool(SECRET_NAME.search(short))


def secrets_needed(path):
    return sorted(name for name, found in playbook_variables(path).items()
                  if (found is not None or name.endswith("_store"))
                  and carries_secret(name, *(found or (None, None))))


def literal_default(path, name):
    """The literal in `name | default(X)` (also `name | default(other | default(X))`) in a playbook."""
    match = re.search(r"\b%s\s*\|\s*default\((?:[a-z_]+\s*\|\s*default\()?('[^']*'|\"[^\"]*\"|[\w.%%-]+)(?:\s*,\s*true)?\)" % name,
                      path.read_text())
    assert match, "%s: %s is neither a role variable nor read with `| default(...)` by the playbook" % (path.name, name)
    if match.group(1) == "omit":  # left out when not given: the module's default, asked as an empty answer
        return ""
    return yaml.safe_load(match.group(1))


def survey_value(question, kind):
    """A survey default as the role receives it, in the type of the option."""
    value = question.get("default")
    if kind == "bool":
        return {"true": True, "false": False}[value]
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "list":
        return [item for item in (value or "").split("\n") if item]
    return "" if value is None else str(value)


def credential_types():
    return {t["name"]: t for t in CREDENTIAL_TYPES["runbook_ops_awx_credential_types"]}


def injected(template):
    types = credential_types()
    names = set()
    for key in template["credentials"]:
        type_name = JOB_TEMPLATES["runbook_ops_awx_credentials"][key]["credential_type"]
        if type_name in types:
            names.update(types[type_name]["injectors"]["extra_vars"])
    return names


def _id(path):
    return path.name


def test_every_playbook_has_a_job_template():
    missing = [p.name for p in PLAYBOOKS if "playbooks/%s" % p.name not in TEMPLATES_BY_PLAYBOOK]
    assert not missing, "playbooks without a job template in docs/awx/job_templates.yml: %s" % missing


def test_every_template_runs_an_existing_playbook_with_unique_name():
    for template in TEMPLATES:
        assert (ROOT / template["playbook"]).is_file(), template["playbook"]
    names = [t["name"] for t in TEMPLATES]
    assert len(names) == len(set(names)), "duplicate template names"


@pytest.mark.parametrize("path", PLAYBOOKS, ids=_id)
def test_survey_asks_real_variables_with_the_code_defaults(path):
    template = TEMPLATES_BY_PLAYBOOK["playbooks/%s" % path.name]
    assert template["survey_enabled"] is True
    questions = template["survey_spec"]["spec"]
    variables = playbook_variables(path)
    asked = [q["variable"] for q in questions]
    assert len(asked) == len(set(asked)), "%s: a variable asked twice" % path.name
    if "target_hosts" in playbook_words(path):
        assert "target_hosts" in asked, "%s takes -e target_hosts: the survey must ask it" % path.name
    for question in questions:
        name = question["variable"]
        assert name in variables, "%s: survey variable %s is not a variable of the playbook or its roles" % (
            path.name, name)
        assert question["type"] != "password", "%s: %s - secrets come from credentials" % (path.name, name)
        found = variables[name]
        if found is None:
            # Read only by the playbook: its `| default(...)` is the default.
            default = literal_default(path, name)
            kind = {bool: "bool", int: "int", float: "float"}.get(type(default), "str")
            assert survey_value(question, kind) == default, "%s: %s default %r, the playbook's is %r" % (
                path.name, name, question.get("default"), default)
            continue
        _role, option = found
        kind = option.get("type", "str")
        assert question["type"] in SURVEY_TYPES[kind], "%s: %s is %s, asked as %s" % (
            path.name, name, kind, question["type"])
        if option.get("required"):
            assert question["required"] is True, "%s: %s is required by the role" % (path.name, name)
        if "default" in option:
            assert survey_value(question, kind) == option["default"], "%s: %s default %r, the role's is %r" % (
                path.name, name, question.get("default"), option["default"])
        elif not option.get("required"):
            assert question.get("default") in (None, ""), "%s: %s has no default in the role" % (path.name, name)
        if question["type"] in ("multiplechoice", "multiselect"):
            choices = question["choices"]
            if kind == "bool":
                assert sorted(choices) == ["false", "true"], "%s: %s" % (path.name, name)
            elif option.get("choices"):
                assert set(choices) <= set(option["choices"]), "%s: %s choices %s not in the role's %s" % (
                    path.name, name, choices, option["choices"])
            if question.get("default") and question["type"] == "multiplechoice":
                assert question["default"] in choices


@pytest.mark.parametrize("path", PLAYBOOKS, ids=_id)
def test_secrets_come_from_credentials_never_from_surveys(path):
    template = TEMPLATES_BY_PLAYBOOK["playbooks/%s" % path.name]
    needed = secrets_needed(path)
    asked = {q["variable"] for q in template["survey_spec"]["spec"]}
    assert not asked & set(needed), "%s: the survey asks secrets %s" % (path.name, sorted(asked & set(needed)))
    exemptions = JOB_TEMPLATES["runbook_ops_awx_secret_exemptions"]
    missing = [name for name in needed if name not in injected(template) and name not in exemptions]
    assert not missing, "%s: no credential of the template injects %s" % (path.name, missing)


def test_secret_detection_sees_the_known_secrets():
    """The rule above must not be vacuous: these role variables are secrets and are found as such."""
    assert "restore_login_password" in secrets_needed(ROOT / "playbooks" / "restore.yml")
    assert "restore_store" in secrets_needed(ROOT / "playbooks" / "restore.yml")
    assert "health_check_metrics_token" in secrets_needed(ROOT / "playbooks" / "health_check.yml")
    assert "pitr_repo" in secrets_needed(ROOT / "playbooks" / "pitr_backup.yml")
    assert "backup_files_store" in secrets_needed(ROOT / "playbooks" / "backup_files.yml")
    assert "rotate_secret_api_token" in secrets_needed(ROOT / "playbooks" / "rotate_secrets.yml")
    assert "rotate_tls_private_key_src" not in secrets_needed(ROOT / "playbooks" / "rotate_tls.yml")


def test_exemptions_are_real_secret_variables_with_a_reason():
    for name, reason in JOB_TEMPLATES["runbook_ops_awx_secret_exemptions"].items():
        assert name in ALL_OPTIONS, name
        assert carries_secret(name, *ALL_OPTIONS[name]), name
        assert len(reason.split()) >= 5, "%s: say why no credential sets it" % name


def test_template_credentials_exist():
    types = credential_types()
    for key, credential in JOB_TEMPLATES["runbook_ops_awx_credentials"].items():
        assert credential["credential_type"] in set(types) | {"Machine"}, key
    for template in TEMPLATES:
        for key in template["credentials"]:
            assert key in JOB_TEMPLATES["runbook_ops_awx_credentials"], "%s: %s" % (template["name"], key)
        kinds = [JOB_TEMPLATES["runbook_ops_awx_credentials"][k]["credential_type"] for k in template["credentials"]]
        assert len(kinds) == len(set(kinds)), "%s: AWX takes one credential per type" % template["name"]
        # A credential a template's playbook never reads is a secret sent for nothing.
        variables = playbook_variables(ROOT / template["playbook"])
        for key in template["credentials"]:
            type_name = JOB_TEMPLATES["runbook_ops_awx_credentials"][key]["credential_type"]
            if type_name in types:
                assert set(types[type_name]["injectors"]["extra_vars"]) & set(variables), (
                    "%s: credential %s sets nothing its playbook reads" % (template["name"], key))


def test_credential_types_inject_real_role_variables_from_secret_inputs():
    all_words = set().union(*(playbook_words(p) for p in PLAYBOOKS))
    for name, ctype in credential_types().items():
        fields = {f["id"]: f for f in ctype["inputs"]["fields"]}
        for field_id, field in fields.items():
            if SECRET_INPUT.search(field_id):
                assert field.get("secret") is True, "%s: input %s must be secret" % (name, field_id)
        assert set(ctype["inputs"].get("required", [])) <= set(fields), name
        for variable, value in ctype["injectors"]["extra_vars"].items():
            assert variable in ALL_OPTIONS or variable in all_words, "%s injects %s, which nothing reads" % (
                name, variable)
            option = ALL_OPTIONS.get(variable, (None, None))[1]
            if isinstance(value, dict) and option and option.get("options"):
                assert set(value) <= set(option["options"]), "%s: %s keys %s" % (name, variable, sorted(value))
            text = yaml.safe_dump(value)
            for ref in re.findall(r"\{\{\s*([^}]*?)\s*\}\}", text):
                for word in re.findall(r"[a-z_]+", ref):
                    assert word in fields or word == "or", "%s: %s uses unknown input %s" % (name, variable, word)
        # Each secret input reaches at least one role variable, and only through the injectors.
        text = yaml.safe_dump(ctype["injectors"])
        for field_id, field in fields.items():
            if field.get("secret"):
                assert re.search(r"\{\{[^}]*\b%s\b" % field_id, text), "%s: secret %s injected nowhere" % (
                    name, field_id)


RRULE = re.compile(r"DTSTART(?:;TZID=(?P<tz>[A-Za-z_/+-]+))?:(?P<start>\d{8}T\d{6}Z?) RRULE:(?P<rule>[A-Z0-9=;,]+)")
RRULE_PARTS = {"FREQ": {"MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"}}
WEEKDAYS = {"MO", "TU", "WE", "TH", "FR", "SA", "SU"}


def parse_rrule(text):
    match = RRULE.fullmatch(text)
    assert match, "not DTSTART[;TZID=...]:YYYYMMDDTHHMMSS RRULE:...: %r" % text
    datetime.datetime.strptime(match.group("start").rstrip("Z"), "%Y%m%dT%H%M%S")
    parts = dict(part.split("=", 1) for part in match.group("rule").split(";"))
    assert parts.get("FREQ") in RRULE_PARTS["FREQ"], text
    assert int(parts.get("INTERVAL", "1")) >= 1, text
    assert set(parts.get("BYDAY", "MO").split(",")) <= WEEKDAYS, text
    assert set(parts) <= {"FREQ", "INTERVAL", "BYDAY", "BYHOUR", "BYMINUTE", "COUNT", "UNTIL", "BYMONTHDAY"}, text
    return parts


def test_schedules_launch_existing_templates_with_valid_rrules_and_survey_answers():
    by_name = {t["name"]: t for t in TEMPLATES}
    seen = {}
    for schedule in SCHEDULES["runbook_ops_awx_schedules"]:
        template = by_name.get(schedule["unified_job_template"])
        assert template, "schedule %s: no template %s" % (schedule["name"], schedule["unified_job_template"])
        parts = parse_rrule(schedule["rrule"])
        seen.setdefault(template["playbook"], set()).add(parts["FREQ"])
        # Without ask_variables_on_launch AWX accepts only survey answers as a schedule's extra data.
        asked = {q["variable"] for q in template["survey_spec"]["spec"]}
        assert set(schedule.get("extra_data") or {}) <= asked, schedule["name"]
        for name in schedule.get("extra_data") or {}:
            assert not carries_secret(name, *ALL_OPTIONS.get(name, (None, None))) if name in ALL_OPTIONS else True
    assert "DAILY" in seen.get("playbooks/backup.yml", set()), "a nightly backup schedule"
    assert "WEEKLY" in seen.get("playbooks/verify_backups.yml", set()), "a weekly verification schedule"
    assert "DAILY" in seen.get("playbooks/daily_check.yml", set()), "a daily check schedule"


def test_rrule_parser_refuses_malformed_rules():
    for bad in ("RRULE:FREQ=DAILY", "DTSTART:20261301T020000 RRULE:FREQ=DAILY",
                "DTSTART:20260101T020000 RRULE:FREQ=SOMETIMES", "DTSTART:20260101T020000 RRULE:FREQ=WEEKLY;BYDAY=XX"):
        with pytest.raises((AssertionError, ValueError)):
            parse_rrule(bad)
