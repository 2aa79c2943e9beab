# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""requirements.txt, bindep.txt and the execution environment definition against the code.

The test reads the collection's code and derives what it needs, so a new import or a new external command
cannot land without its package:

* every third-party Python import under plugins/ (an AST walk; the standard library from
  ``sys.stdlib_module_names``; ansible and this collection left out) must map, through DISTRIBUTIONS, to a
  distribution listed in requirements.txt;
* every external program the modules and module_utils run (argument lists given to something that runs a
  process, ``get_bin_path``/``which``/``tool`` look-ups, option and parameter defaults that name a program,
  ``COMMANDS`` tables), and every literal program in the roles' and playbooks' command tasks, must map, through
  COMMAND_PACKAGES, to the Debian and RPM packages bindep.txt lists outside the ``test`` profile;
* meta/execution-environment.yml must point ansible-builder at those two files.

An import or a program missing from the maps fails too: the maps are where a person decides which package
provides it.  The reverse holds as well: a requirement or a runtime bindep package nothing needs fails, so the
image stays as small as the code allows.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import textwrap

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# import name -> the distributions that provide it (the first is the one requirements.txt should name)
DISTRIBUTIONS = {
    "boto3": ("boto3",),
    "botocore": ("botocore", "boto3"),  # boto3 depends on botocore: either satisfies it
    "cryptography": ("cryptography",),
    "docker": ("docker",),
    "jmespath": ("jmespath",),
    "psycopg2": ("psycopg2-binary", "psycopg2"),
    "redis": ("redis",),
    "yaml": ("PyYAML",),
    "zstandard": ("zstandard",),
}

# program -> {bindep platform: package}; None where that platform has no package for it
COMMAND_PACKAGES = {
    "pg_dump": {"dpkg": "postgresql-client", "rpm": "postgresql"},
    "pg_restore": {"dpkg": "postgresql-client", "rpm": "postgresql"},
    "psql": {"dpkg": "postgresql-client", "rpm": "postgresql"},
    # pgbackrest_stanza/pgbackrest_restore start and reload the cluster they manage with its own pg_ctl
    "pg_ctl": {"dpkg": "postgresql", "rpm": "postgresql-server"},
    "pgbackrest": {"dpkg": "pgbackrest", "rpm": "pgbackrest"},
    "runuser": {"dpkg": "util-linux", "rpm": "util-linux"},
    "tar": {"dpkg": "tar", "rpm": "tar"},
    "docker": {"dpkg": "docker.io", "rpm": "moby-engine"},
    "docker-compose": {"dpkg": "docker-compose", "rpm": "docker-compose"},
    "logrotate": {"dpkg": "logrotate", "rpm": "logrotate"},
    "nginx": {"dpkg": "nginx", "rpm": "nginx"},
}

# Names of the callables that take a program name as their first argument.
RESOLVERS = {"get_bin_path", "which", "tool", "tool_version", "pg_tool", "find_binary"}
# What starts a process: subprocess's functions, os.exec*/os.spawn*, AnsibleModule.run_command.  A function or
# class of the collection that hands its first parameter to one of these is a runner too (ProcessOutput,
# pipe_into, run_tool, ...): find_runners() derives them, so a new helper cannot hide an argument vector.
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
OS_CALL = re.compile(r"(exec|spawn)[lv]p?e?")
# A list literal assigned to a name like these is an argument vector.
ARGV_NAME = re.compile(r"(?i)(.*_)?(argv|cmd|cmdline|command_line)")
# Options, parameters and fields whose default is a program name.
PROGRAM_NAME = re.compile(r"(?i)(.*_)?(bin|binary|cli|program|executable|exe)")
# Module-level tables of programs (_compose.COMMANDS).
TABLE_NAME = re.compile(r"(?i)(.*_)?(commands?|programs?|binaries|tools?)")
PROGRAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


# --- reading the code -----------------------------------------------------------------------------------------
def python_files(*parts):
    top = os.path.join(REPO, *parts)
    for root, _dirs, files in os.walk(top):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(root, name)


def parse(path):
    with open(path, encoding="utf-8") as handle:
        return ast.parse(handle.read(), filename=path)


def third_party_imports(tree):
    """{top-level import name: [line, ...]} of the imports that are not stdlib, ansible or this collection."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in ("ansible", "ansible_collections", "__future__"):
                continue
            found.setdefault(top, []).append(node.lineno)
    return found


def _name(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _string(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _program(value):
    return value if value and PROGRAM.fullmatch(value) else None


def _argv_head(node):
    """The literal program of an argument vector expression: ``["tar", ...]``, ``["tar"] + args``, ``("docker", "compose")``."""
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        node = node.left
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        return _program(_string(node.elts[0]))
    return None


def _literal_dict(node):
    """{key: value node} of ``{"type": "str", ...}`` or ``dict(type="str", ...)``; {} for anything else."""
    if isinstance(node, ast.Dict):
        return {_string(k): v for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.Call) and _name(node.func) == "dict":
        return {kw.arg: kw.value for kw in node.keywords if kw.arg}
    return {}


def _defaults(args):
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
    pairs += [(arg, default) for arg, default in zip(args.kwonlyargs, args.kw_defaults) if default is not None]
    return pairs


def _starts_process(call, runners):
    func = call.func
    receiver = _name(func.value) if isinstance(func, ast.Attribute) else ""
    name = _name(func)
    if receiver == "subprocess":
        return name in SUBPROCESS_CALLS
    if receiver == "os":
        return bool(OS_CALL.fullmatch(name))
    # runners are module-level names: called bare or through their module (restores.pipe_into), never on self
    return name == "run_command" or (name in runners and receiver not in ("self", "cls"))


def _argv_arguments(call):
    return call.args[:1] + [kw.value for kw in call.keywords if kw.arg in ("args", "argv")]


def _passes(node, param):
    """True when ``node`` is ``param``, ``list(param)``, ``tuple(param)`` or ``[...] + param``."""
    if isinstance(node, ast.Name):
        return node.id == param
    if isinstance(node, ast.Call) and _name(node.func) in ("list", "tuple") and node.args:
        return _passes(node.args[0], param)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _passes(node.left, param) or _passes(node.right, param)
    return False


def find_runners(trees):
    """Names of the collection's module-level functions and classes whose first parameter becomes a process's
    argv (methods and nested functions are left out: their short names, such as ``run``, mean many things)."""
    runners = set()
    while True:
        before = len(runners)
        for tree in trees:
            for node in tree.body:
                function = node
                if isinstance(node, ast.ClassDef):
                    function = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
                elif not isinstance(node, ast.FunctionDef):
                    continue
                if function is None or node.name in runners:
                    continue
                params = [a.arg for a in function.args.posonlyargs + function.args.args]
                params = params[1:] if isinstance(node, ast.ClassDef) else params
                if params and any(isinstance(call, ast.Call) and _starts_process(call, runners)
                                  and any(_passes(arg, params[0]) for arg in _argv_arguments(call))
                                  for call in ast.walk(function)):
                    runners.add(node.name)
        if len(runners) == before:
            return runners


def programs_in_python(tree, runners=None):
    """{program: [line, ...]} of the external programs a module or module_utils file runs or looks up;
    ``runners`` from find_runners() over the whole collection (default: over this tree)."""
    runners = find_runners([tree]) if runners is None else runners
    found = {}

    def add(value, node):
        if value:
            found.setdefault(value, []).append(node.lineno)

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            first = node.args[0] if node.args else None
            if name in RESOLVERS and first is not None:
                add(_program(_string(first)), node)
            if _starts_process(node, runners):
                for arg in _argv_arguments(node):
                    add(_argv_head(arg), node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [_name(target) for target in targets]
            if node.value is None:
                continue
            if any(ARGV_NAME.fullmatch(name) for name in names):
                add(_argv_head(node.value), node)
            if any(PROGRAM_NAME.fullmatch(name) for name in names):
                add(_program(_string(node.value)), node)
            if any(TABLE_NAME.fullmatch(name) for name in names) and isinstance(node.value, ast.Dict):
                for value in node.value.values:
                    add(_argv_head(value), node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for arg, default in _defaults(node.args):
                value = _program(_string(default))
                if value and (PROGRAM_NAME.fullmatch(arg.arg) or value == arg.arg):
                    add(value, default)
        if isinstance(node, ast.Dict):
            # argument specs: {"logrotate": {"type": "path", "default": "logrotate"}, "nginx_binary": {...}}
            options = [(_string(key), value) for key, value in zip(node.keys, node.values) if key is not None]
        elif isinstance(node, ast.Call) and _name(node.func) == "dict":
            options = [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
        else:
            continue
        for option, value in options:
            spec = _literal_dict(value)
            default = _program(_string(spec.get("default")))
            if option and default and "choices" not in spec and (PROGRAM_NAME.fullmatch(option) or default == option):
                add(default, value)
    return found


COMMAND_MODULES = {"command", "ansible.builtin.command", "ansible.legacy.command",
                   "shell", "ansible.builtin.shell", "ansible.legacy.shell"}


def _tasks(items):
    for task in items or ():
        if not isinstance(task, dict):
            continue
        yield task
        for section in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            if isinstance(task.get(section), list):
                yield from _tasks(task[section])


def programs_in_yaml(path):
    """{program: [task name]} of the literal programs command/shell tasks in a task file or playbook run."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    found = {}
    for task in _tasks(data if isinstance(data, list) else []):
        for key in COMMAND_MODULES & set(task):
            args = task[key]
            head = None
            if isinstance(args, str):
                head = args.split()[0] if args.split() else None
            elif isinstance(args, dict):
                if isinstance(args.get("argv"), list) and args["argv"]:
                    head = args["argv"][0]
                elif isinstance(args.get("cmd"), str) and args["cmd"].split():
                    head = args["cmd"].split()[0]
            if isinstance(head, str) and "{{" not in head:
                found.setdefault(os.path.basename(head), []).append(task.get("name", "?"))
    return found


def yaml_files(*parts):
    top = os.path.join(REPO, *parts)
    for root, _dirs, files in os.walk(top):
        for name in sorted(files):
            if name.endswith((".yml", ".yaml")):
                yield os.path.join(root, name)


def collection_programs():
    """{program: ["path:line", ...]} over modules, module_utils, role tasks and handlers, and playbooks."""
    found = {}
    trees = {path: parse(path) for path in list(python_files("plugins", "modules")) + list(python_files("plugins", "module_utils"))}
    runners = find_runners(trees.values())
    for path, tree in trees.items():
        for program, lines in programs_in_python(tree, runners).items():
            found.setdefault(program, []).extend("%s:%d" % (os.path.relpath(path, REPO), line) for line in lines)
    task_files = [p for p in yaml_files("roles") if os.sep + "tasks" + os.sep in p or os.sep + "handlers" + os.sep in p]
    for path in task_files + list(yaml_files("playbooks")):
        for program, names in programs_in_yaml(path).items():
            found.setdefault(program, []).extend("%s (%s)" % (os.path.relpath(path, REPO), name) for name in names)
    return found


# --- reading the requirement files ----------------------------------------------------------------------------
def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path):
    """Canonical distribution names in a pip requirements file (``-r`` followed)."""
    names = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line.startswith(("-r ", "--requirement ")):
                names |= requirements(os.path.join(os.path.dirname(path), line.split(None, 1)[1]))
            elif line and not line.startswith("-"):
                names.add(canonical(re.match(r"[A-Za-z0-9._-]+", line).group(0)))
    return names


def bindep(path):
    """[(package, platforms, profiles)] of a bindep file; an empty platforms set means every platform."""
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            selectors = re.search(r"\[([^\]]*)\]", line)
            tokens = selectors.group(1).split() if selectors else []
            platforms = {t[len("platform:"):] for t in tokens if t.startswith("platform:")}
            profiles = {t for t in tokens if not t.startswith(("platform:", "!"))}
            entries.append((line.split()[0], platforms, profiles))
    return entries


def runtime_packages(entries, platform):
    """The packages bindep installs on ``platform`` outside the test profile (what ansible-builder installs)."""
    return {name for name, platforms, profiles in entries
            if "test" not in profiles and (not platforms or platform in platforms)}


# --- the checks -----------------------------------------------------------------------------------------------
def test_every_third_party_import_is_in_requirements_txt():
    imports = {}
    for path in python_files("plugins"):
        for name, lines in third_party_imports(parse(path)).items():
            imports.setdefault(name, []).extend("%s:%d" % (os.path.relpath(path, REPO), line) for line in lines)
    assert imports, "no third-party import found under plugins/: the walk is broken"
    unmapped = {name: where[:3] for name, where in imports.items() if name not in DISTRIBUTIONS}
    assert not unmapped, "imports with no distribution in DISTRIBUTIONS (add it there and to requirements.txt): %s" % unmapped
    listed = requirements(os.path.join(REPO, "requirements.txt"))
    missing = {name: where[:3] for name, where in imports.items()
               if not {canonical(d) for d in DISTRIBUTIONS[name]} & listed}
    assert not missing, "requirements.txt lacks the distribution of: %s" % missing
    needed = {canonical(d) for name in imports for d in DISTRIBUTIONS[name]}
    assert not listed - needed, "requirements.txt lists what no plugin imports: %s" % sorted(listed - needed)


def test_every_external_program_is_in_bindep_txt():
    programs = collection_programs()
    # The collection's well-known programs: if one of these is no longer found, the walk has lost a pattern.
    for known in ("pg_dump", "pg_restore", "tar", "docker", "docker-compose", "logrotate", "pgbackrest", "nginx"):
        assert known in programs, "%s no longer found in the code: the derivation missed a pattern" % known
    unmapped = {program: where[:3] for program, where in programs.items() if program not in COMMAND_PACKAGES}
    assert not unmapped, "programs with no package in COMMAND_PACKAGES (add it there and to bindep.txt): %s" % unmapped
    entries = bindep(os.path.join(REPO, "bindep.txt"))
    for platform in ("dpkg", "rpm"):
        present = runtime_packages(entries, platform)
        missing = {program: (COMMAND_PACKAGES[program][platform], where[:2]) for program, where in programs.items()
                   if COMMAND_PACKAGES[program][platform] and COMMAND_PACKAGES[program][platform] not in present}
        assert not missing, "bindep.txt [platform:%s] lacks, outside the test profile: %s" % (platform, missing)
        needed = {COMMAND_PACKAGES[program][platform] for program in programs}
        assert not present - needed, "bindep.txt [platform:%s] installs what no module runs: %s" % (
            platform, sorted(present - needed))


def test_execution_environment_points_at_the_requirement_files():
    with open(os.path.join(REPO, "meta", "execution-environment.yml"), encoding="utf-8") as handle:
        definition = yaml.safe_load(handle)
    assert definition["version"] == 3
    dependencies = definition["dependencies"]
    # Relative to the collection root: that is where ansible-builder looks when it installs the collection.
    assert dependencies["python"] == "requirements.txt"
    assert dependencies["system"] == "bindep.txt"
    assert definition["images"]["base_image"]["name"]
    with open(os.path.join(REPO, "requirements-dev.txt"), encoding="utf-8") as handle:
        dev = handle.read()
    core = re.search(r"^ansible-core\s*([^\s#]+)", dev, re.M).group(1)
    assert dependencies["ansible_core"]["package_pip"].replace(" ", "") == "ansible-core" + core, \
        "the EE's ansible-core differs from requirements-dev.txt's"
    assert dependencies["ansible_runner"]["package_pip"].startswith("ansible-runner")


# --- the derivation finds what a change would add --------------------------------------------------------------
@pytest.mark.parametrize("source", [
    'rsync = module.get_bin_path("rsync", required=True)',
    'path = shutil.which("rsync")',
    'subprocess.run(["rsync", "-a", src, dest], check=False)',
    'proc = subprocess.Popen(["rsync"] + args, stdout=subprocess.PIPE)',
    'rc, out, err = module.run_command(["rsync", src, dest])',
    'argv = ["rsync"]\nargv += options',
    'spec = {"rsync_bin": {"type": "str", "default": "rsync"}}',
    'spec = dict(rsync={"type": "path", "default": "rsync"})',
    'def sync(src, dest, rsync_binary="rsync"):\n    pass',
    'class Sync:\n    binary: str = "rsync"',
    # a helper of our own that runs its argument: found through find_runners(), over two levels
    'def _spawn(argv, timeout):\n    return subprocess.run(argv, timeout=timeout)\n'
    'def sync_tree(argv, what):\n    return _spawn(list(argv), 60)\n'
    'sync_tree(["rsync", "-a"], "sync")',
    'SYNC_COMMANDS = {"push": ("rsync", "-a")}',
])
def test_derivation_finds_a_new_program(source):
    assert "rsync" in programs_in_python(ast.parse(textwrap.dedent(source)))


@pytest.mark.parametrize("source", [
    'COMPRESSIONS = ("zstd", "gzip", "none")',
    'spec = {"compression": {"type": "str", "choices": ["zstd", "gzip"], "default": "zstd"}}',
    'def __init__(self, command="auto"):\n    pass',
    'message = ", ".join(["a", "b"])',
    'COMMAND_CHOICES = ("auto", "v2", "v1")',
    '_LENGTH_COMMAND = {"list": "LLEN", "stream": "XLEN"}',
    # Compose subcommands given to ComposeCLI.run, which builds the argv itself
    'class CLI:\n    def run(self, args):\n        return self.runner(self.argv(*args))\n'
    'cli.run(["pull"] + services)',
])
def test_derivation_ignores_what_is_not_a_program(source):
    assert not programs_in_python(ast.parse(textwrap.dedent(source)))


def test_derivation_reads_command_tasks(tmp_path):
    tasks = tmp_path / "main.yml"
    tasks.write_text(textwrap.dedent("""\
        - name: Outer
          block:
            - name: Sync
              ansible.builtin.command:
                argv: [rsync, -a, /src, /dest]
            - name: Templated
              ansible.builtin.command:
                argv: "{{ some_argv }}"
        - name: Shell
          ansible.builtin.shell: /usr/bin/du -s /srv
    """))
    assert set(programs_in_yaml(str(tasks))) == {"rsync", "du"}


def test_third_party_import_walk():
    tree = ast.parse("import os\nimport yaml\nfrom ansible.module_utils.basic import AnsibleModule\n"
                     "from ansible_collections.runbook.ops.plugins.module_utils import _files\n"
                     "try:\n    import rsync_lib.client\nexcept ImportError:\n    pass\nfrom . import x\n")
    assert set(third_party_imports(tree)) == {"yaml", "rsync_lib"}


def test_unit_test_requirements_cover_the_collection_and_the_tests():
    """tests/unit/requirements.txt (what `ansible-test units` installs) holds requirements.txt and the unit tests' imports."""
    listed = requirements(os.path.join(REPO, "tests", "unit", "requirements.txt"))
    needed = requirements(os.path.join(REPO, "requirements.txt"))
    for path in python_files("tests", "unit", "plugins"):
        for name in third_party_imports(parse(path)):
            if name not in ("pytest",):  # ansible-test brings pytest
                assert name in DISTRIBUTIONS, "%s imports %s: add it to DISTRIBUTIONS" % (os.path.relpath(path, REPO), name)
                needed.add(canonical(DISTRIBUTIONS[name][0]))
    assert not needed - listed, "tests/unit/requirements.txt lacks %s" % sorted(needed - listed)
