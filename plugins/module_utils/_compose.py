# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One Docker Compose project on a host: the Compose CLI for what changes containers (up, pull, run,
stop, start, restart, scale) and the Docker SDK (``_docker.DockerEngine``) for what runs and how healthy
it is (runbooks DR1-DR5, HP7).

The CLI is Compose v2 (``docker compose``) or v1 (``docker-compose``), chosen automatically (v2 first)
or by name; it always gets argument lists, explicit ``-p``/``-f``/``--env-file`` and an environment from
which the managed variables (the image tags) are removed, so a shell variable such as ``APP_TAG`` never
overrides the env file.  Containers are found by the labels Compose puts on them and rated by the rules
of ``_docker`` (``container_record``, ``ContainerRules``).  The env file holds secrets: only the managed
variables ever leave this file (records, events, results, diffs); the env file is given to Compose by
path, and CLI output quoted in an error has every env value of the file masked.  Plain Python, no
Ansible imports.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import time

from ansible_collections.runbook.ops.plugins.module_utils import _docker, _files, _releases
from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile
from ansible_collections.runbook.ops.plugins.module_utils._errors import ComposeError

try:
    import yaml
    HAS_YAML = True
except ImportError:  # PyYAML comes with ansible-core; guarded all the same
    yaml = None
    HAS_YAML = False

COMMANDS = {"v2": ("docker", "compose"), "v1": ("docker-compose",)}
COMMAND_CHOICES = ("auto", "v2", "v1")
PULL_POLICIES = ("always", "missing", "never")
# Compose's own file discovery in a project directory: v2 looks for compose.yaml first, v1 only for
# docker-compose.y(a)ml; an override file beside the main one is merged by both.
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = {"compose.yaml": "compose.override.yaml", "compose.yml": "compose.override.yml",
                  "docker-compose.yml": "docker-compose.override.yml",
                  "docker-compose.yaml": "docker-compose.override.yaml"}
VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
POLL_SECONDS = 0.5
CLI_TIMEOUT = 900  # seconds for one Compose command (a pull of a large image included)
QUICK_TIMEOUT = 60  # version, config
OUTPUT_TAIL_LINES = 6
PROGRESS = re.compile(r"(Creating|Starting|Stopping|Removing|Recreating|Restarting|Pulling|Killing)\b.*\.\.\.( done)?|"
                      r"Container \S+ +(Creating|Created|Starting|Started|Stopping|Stopped|Removing|Removed|Recreate|Recreated)")
V1_HOST_LINKS = "host type networking can't be used with links"
MASK_MIN_CHARS = 4  # env values shorter than this are not masked in quoted output (they would mask everything)


# The options every compose module shares (documented by the runbook.ops.compose_project doc fragment).
PROJECT_ARGSPEC = {
    "project_dir": {"type": "path", "required": True},
    "files": {"type": "list", "elements": "path"},
    "project_name": {"type": "str"},
    "env_file": {"type": "path", "default": ".env"},
    "compose_command": {"type": "str", "choices": list(COMMAND_CHOICES), "default": "auto"},
    "docker_host": {"type": "str"},
    "state_dir": {"type": "path"},
}


def project_from_params(params, tag_variable=None, check_mode=False, lock_timeout=0.0):
    """A ComposeRelease for a module's ``params`` (PROJECT_ARGSPEC)."""
    cli = ComposeCLI(params["project_dir"], files=params["files"], project_name=params["project_name"],
                     env_file=params["env_file"], command=params["compose_command"], docker_host=params["docker_host"])
    return ComposeRelease(cli, lambda: ComposeEngine(params["docker_host"]), state_dir=params["state_dir"],
                          check_mode=check_mode, tag_variable=tag_variable, lock_timeout=lock_timeout)


# parsing the CLI's output --------------------------------------------------------------------------
def parse_version(text):
    """``(major, minor, patch)`` from ``docker compose version [--short]`` or ``docker-compose version
    [--short]`` output (``v2.24.5``, ``2.24.5``, ``Docker Compose version v2.24.5``, ``docker-compose
    version 1.29.2, build unknown``); None when there is no version in it."""
    for line in (text or "").splitlines():
        match = VERSION_RE.search(line)
        if match:
            return tuple(int(part or 0) for part in match.groups())
    return None


def parse_lines(text):
    """Non-blank lines, stripped: ``config --services``, ``config --images``, ``ps -q``, ``ps --services``."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def parse_ps_json(text):
    """``docker compose ps --format json``: a JSON array (v2 before 2.21) or one object per line (2.21 and later)."""
    text = (text or "").strip()
    if not text:
        return []
    try:
        if text.startswith("["):
            found = json.loads(text)
        else:
            found = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        raise ComposeError("cannot read the output of compose ps --format json (not JSON)") from None
    return [entry for entry in found if isinstance(entry, dict)]


def parse_config_services(text):
    """``{service: {"image": ref or None, "build": bool}}`` from ``config`` output (the resolved YAML of
    v1 and v2).  Only the image and whether the service builds are kept: the rest (environment included,
    which Compose fills from env files) is dropped at once."""
    if not HAS_YAML:
        raise ComposeError("the Python library PyYAML is needed to read compose config output")
    try:
        data = yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ComposeError("cannot read the output of compose config (YAML error%s)"
                           % (" at line %d" % (mark.line + 1) if mark else "")) from None
    services = (data or {}).get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise ComposeError("compose config printed no services")
    # "scale": 0 (a one-off service such as a migration, which `up` starts no container of) is kept only when set.
    return {name: dict({"image": (spec or {}).get("image"), "build": bool((spec or {}).get("build")),
                        "profiles": list((spec or {}).get("profiles") or [])},
                       **({"scale": 0} if (spec or {}).get("scale") == 0 else {}))
            for name, spec in services.items()}


def project_scoped_volumes(text):
    """Named volumes of ``config`` output whose engine name depends on the project name (no ``name``, not external)."""
    data = yaml.safe_load(text or "") if HAS_YAML else None
    volumes = (data or {}).get("volumes") if isinstance(data, dict) else None
    return sorted(name for name, spec in (volumes or {}).items()
                  if not (spec or {}).get("name") and not (spec or {}).get("external"))


def default_project_name(directory, flavor):
    """Compose's project name from the directory name."""
    return normalize_project_name(os.path.basename(os.path.normpath(directory)), flavor)


def normalize_project_name(name, flavor):
    """Both keep ``[a-z0-9_-]`` of the lower-cased name (v1's get_project_name); v2 also drops leading
    ``_`` and ``-`` (compose-go's NormalizeProjectName)."""
    name = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return name if flavor == "v1" else name.lstrip("_-")


def discover_files(project_dir):
    """The files Compose would read in ``project_dir``: the first default file and its override file."""
    for name in DEFAULT_FILES:
        path = os.path.join(project_dir, name)
        if os.path.isfile(path):
            override = os.path.join(project_dir, OVERRIDE_FILES[name])
            return [path] + ([override] if os.path.isfile(override) else [])
    raise ComposeError("no compose file in %s (looked for %s)" % (project_dir, ", ".join(DEFAULT_FILES)))


def files_hash(paths):
    """sha256 over the files' names and bytes, in order."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ComposeError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
        digest.update(os.path.basename(path).encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
    return "sha256:" + digest.hexdigest()


def mask(text, values):
    """``text`` with every one of ``values`` (at least MASK_MIN_CHARS long) replaced by ``***``."""
    for value in sorted({v for v in values if v and len(v) >= MASK_MIN_CHARS}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def tail(text, lines=OUTPUT_TAIL_LINES):
    """The last lines of a command's output on one line, without Compose's progress lines."""
    kept = [line.strip() for line in (text or "").splitlines() if line.strip() and not PROGRESS.fullmatch(line.strip())]
    return " | ".join(kept[-lines:])


def run_process(argv, env, cwd, timeout):
    """``(rc, stdout, stderr)`` of ``argv`` (a list, never a shell).  An interruption kills the child."""
    try:
        proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, "", "%s: command not found" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "", "%s did not finish within %d s" % (" ".join(argv[:3]), timeout)
    return proc.returncode, proc.stdout, proc.stderr


# the project ---------------------------------------------------------------------------------------
class ComposeCLI:
    """The Compose command line for one project."""

    def __init__(self, project_dir, files=None, project_name=None, env_file=None, command="auto",
                 docker_host=None, runner=run_process, base_env=None, which=shutil.which):
        if command not in COMMAND_CHOICES:
            raise ComposeError("compose_command must be one of %s, got %s" % (", ".join(COMMAND_CHOICES), command))
        self.project_dir = os.path.abspath(project_dir)
        if not os.path.isdir(self.project_dir):
            raise ComposeError("project_dir %s is not a directory" % self.project_dir)
        self.files = [os.path.join(self.project_dir, f) for f in files] if files else discover_files(self.project_dir)
        self.env_file = os.path.join(self.project_dir, env_file or ".env")
        self.requested = command
        self.docker_host = docker_host
        self.runner = runner
        self.which = which
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.managed = set()  # variables removed from the environment Compose gets
        self.masked = ()  # env values hidden in quoted output
        self.flavor = None
        self.version = None
        self.scoped_volumes = None
        self._project_name = project_name

    # which Compose ---------------------------------------------------------------------------
    def select(self, need_version=False):
        """Find the Compose CLI (once): ``(flavor, version)``.

        v2 answers ``docker compose version`` in milliseconds; v1 is a Python program that takes a second or more
        to start, so it is taken when ``docker-compose`` is on the PATH and asked its version only when
        ``need_version``.  A broken v1 then fails at its first real command, with its own message.
        """
        if self.flavor and (self.version or not need_version):
            return self.flavor, self.version
        tried = []
        for flavor in ((self.flavor,) if self.flavor else ("v2", "v1") if self.requested == "auto" else (self.requested,)):
            if flavor == "v1" and not need_version:
                if self.which(COMMANDS["v1"][0], path=self._env().get("PATH")):
                    self.flavor = flavor
                    return flavor, None
                tried.append("docker-compose (v1): not found on the PATH")
                continue
            rc, out, err = self.runner(list(COMMANDS[flavor]) + ["version", "--short"], self._env(), self.project_dir,
                                       QUICK_TIMEOUT)
            version = parse_version(out) if rc == 0 else None
            if version:
                self.flavor, self.version = flavor, version
                return flavor, version
            tried.append("%s (%s): %s" % (" ".join(COMMANDS[flavor]), flavor,
                                          (parse_lines(err or out) or ["exit code %d" % rc])[0]))
        raise ComposeError("no usable Compose command: " + "; ".join(tried))

    @property
    def command_name(self):
        return " ".join(COMMANDS[self.flavor]) if self.flavor else None

    @property
    def version_text(self):
        return ".".join(str(part) for part in self.version) if self.version else None

    @property
    def project_name(self):
        if self._project_name:
            return self._project_name
        env = EnvFile.load(self.env_file, missing_ok=True)
        from_env = env.get("COMPOSE_PROJECT_NAME")
        if from_env:
            return normalize_project_name(from_env, self.flavor or "v2")
        if not self.flavor and default_project_name(self.project_dir, "v1") != default_project_name(self.project_dir, "v2"):
            self.select()  # the two rules disagree on this directory's name: ask which Compose runs
        return default_project_name(self.project_dir, self.flavor or "v2")

    # running ---------------------------------------------------------------------------------
    def _env(self, overrides=None):
        env = {key: value for key, value in self.base_env.items() if key not in self.managed}
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        env.update(overrides or {})
        return env

    def argv(self, *args, project_name=None):
        flavor, _version = self.select()
        argv = list(COMMANDS[flavor]) + ["-p", project_name or self.project_name]
        for path in self.files:
            argv += ["-f", path]
        if os.path.exists(self.env_file):
            argv += ["--env-file", self.env_file]
        return argv + list(args)

    def run(self, args, overrides=None, timeout=CLI_TIMEOUT, what=None, check=True, project_name=None):
        """Run one Compose command; ``overrides`` set managed variables for this run only (a preview of
        values not yet written).  Raises ComposeError with the tail of its output (env values masked)."""
        argv = self.argv(*args, project_name=project_name)
        rc, out, err = self.runner(argv, self._env(overrides), self.project_dir, timeout)
        if rc != 0 and check:
            raise ComposeError("%s failed (exit code %d): %s" % (
                what or "%s %s" % (self.command_name, args[0]), rc, mask(tail(err or out), self.masked) or "no output"),
                exit_code=rc)
        return rc, out, err

    def services(self, overrides=None):
        """``{service: {"image", "build"}}`` as Compose resolves them (with ``overrides`` applied)."""
        _rc, out, _err = self.run(["config"], overrides, QUICK_TIMEOUT, what="%s config" % self.command_name)
        self.scoped_volumes = project_scoped_volumes(out)
        return parse_config_services(out)

    def run_oneoff(self, service, command, overrides=None, what="one-off command"):
        """``(rc, stdout, stderr)`` of ``command`` in a one-off container of ``service`` (``run --rm --no-deps -T``).

        Compose v1 links a one-off to the running containers of its own service, which host networking
        refuses ("host type networking can't be used with links"); v1 then runs it under the project name
        ``<project>oneoff``, where it has no running containers.  That one-off sees the same bind mounts but
        not the project's named volumes, so with such volumes it is refused instead.
        """
        args = ["run", "--rm", "--no-deps", "-T", service] + list(command)
        if self.flavor == "v1" and self.scoped_volumes == []:
            # known to be safe under the other name, and it cannot meet the links problem there
            return self.run(args, overrides, what=what, check=False, project_name=self.project_name + "oneoff")
        rc, out, err = self.run(args, overrides, what=what, check=False)
        if rc != 0 and self.flavor == "v1" and V1_HOST_LINKS in (err + out):
            if self.scoped_volumes is None:
                self.services(overrides)
            if self.scoped_volumes:
                return rc, out, err + "\nCompose v1 cannot run a one-off of %s while its containers run with host " \
                    "networking, and the project's named volumes (%s) would differ under another project name: give " \
                    "the %s its own service (for example with a profile) or use Compose v2" % (
                        service, ", ".join(self.scoped_volumes), what)
            rc, out, err = self.run(args, overrides, what=what, check=False, project_name=self.project_name + "oneoff")
        return rc, out, err


def container_facts(attrs):
    """``container_record`` of ``_docker`` plus the image id the container runs."""
    record = _docker.container_record(attrs)
    record["image_id"] = attrs.get("Image")
    record["stop_timeout"] = (attrs.get("Config") or {}).get("StopTimeout")
    return record


def public_container(record):
    """A container as the module returns it."""
    return {key: record.get(key) for key in ("name", "id", "service", "status", "health", "restart_count",
                                             "started_at", "image", "image_id", "state", "detail")}


def gate(records, now, grace, baseline, services, rules=None):
    """Where a health gate stands: ``("healthy" | "waiting" | "failed", problems)``.

    ``records``: the project's non-one-off containers (``container_facts``); ``services``: services that
    must have a container; ``baseline``: restart counts by container id before the change (a restart since
    fails the gate at once); ``grace``: seconds after a container's start during which ``unhealthy`` is
    still waited on.  Health ``starting`` is waited on (the caller has the deadline).  The wording of each
    problem is the container rules' (``_docker.ContainerRules.rate``).
    """
    rules = rules or _docker.ContainerRules(start_grace=float("inf"), restart_window=float("inf"), restart_crit_count=1)
    failed, waiting = [], []
    for service in services:
        if not any(r["service"] == service for r in records):
            failed.append("service %s has no container" % service)
    for record in records:
        record["state"], detail = rules.rate(record, now)
        record["detail"] = detail
        label = "%s (%s)" % (record["name"], record["service"])
        restarts = record["restart_count"] - baseline.get(record["id"], 0)
        started = _docker.parse_time(record["started_at"])
        up = (now - started).total_seconds() if started else 0.0
        if restarts > 0:
            failed.append("%s restarted %d time(s): %s" % (label, restarts, detail))
        elif record["status"] != "running":
            failed.append("%s is %s" % (label, detail))
        elif record["health"] == "unhealthy":
            (failed if up > grace else waiting).append("%s: %s" % (label, detail))
        elif record["health"] not in (None, "healthy"):
            waiting.append("%s: %s" % (label, detail))
    if failed:
        return "failed", failed
    return ("waiting" if waiting else "healthy"), waiting


class ComposeEngine(_docker.DockerEngine):
    """The engine side of a Compose project: its containers by label, images, per-container restarts."""

    def project_containers(self, project, services=None):
        """``container_facts`` of the project's containers (one-offs left out), sorted by service and name."""
        found = []
        for attrs in self.with_labels({_docker.COMPOSE_PROJECT_LABEL: project}):
            record = container_facts(attrs)
            if record["oneoff"] or (services and record["service"] not in services):
                continue
            found.append(record)
        return sorted(found, key=lambda r: (r["service"], r["name"]))

    def image(self, ref):
        """``{"id", "repo_digests"}`` of a local image (by reference or id), or None when it is not here."""
        try:
            attrs = self._call("inspecting image %s" % ref, self.client.api.inspect_image, ref)
        except _docker.docker_errors.NotFound:
            return None
        return {"id": attrs.get("Id"), "repo_digests": sorted(attrs.get("RepoDigests") or [])}

    def tag(self, image_id, ref):
        repository, _sep, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
        self._call("tagging image %s as %s" % (image_id, ref), self.client.api.tag, image_id, repository, tag, force=True)

    def restart(self, container_id, timeout):
        self._call("restarting container %s" % container_id, self.client.api.restart, container_id, timeout=timeout)


class ComposeRelease:
    """Deploy, roll back, restart, scale, stop and start one Compose project, with its release history.

    ``cli``: a ComposeCLI; ``engine_factory``: returns a ComposeEngine; ``state_dir``: where the history,
    the event log and the lock live; ``clock``/``sleep`` for tests.
    """

    def __init__(self, cli, engine_factory, state_dir=None, check_mode=False, tag_variable="APP_TAG",
                 lock_timeout=0.0, clock=time.monotonic, sleep=time.sleep):
        self.cli = cli
        self._engine_factory = engine_factory
        self._engine = None
        self.state_dir = state_dir or os.path.join(cli.project_dir, ".runbook")
        self.check_mode = check_mode
        self.tag_variable = tag_variable
        self.lock_timeout = lock_timeout
        self.clock = clock
        self.sleep = sleep
        self.history = _releases.ReleaseHistory.load(self.state_dir)
        self.warnings = []
        current = self.history.current()
        self.cli.managed = set((current or {}).get("variables") or {}) | ({tag_variable} if tag_variable else set())
        self.load_env()

    @property
    def engine(self):
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    # shared steps ----------------------------------------------------------------------------
    def lock(self):
        """The project's deploy lock; the history is read again once it is held (another run may have written
        it while this one waited).  A check takes no lock: it would leave a lock file behind."""
        if self.check_mode:
            return _NoLock()
        _files.make_private_dirs(self.state_dir)
        return _ProjectLock(os.path.join(self.state_dir, _releases.LOCK_NAME), self.lock_timeout, on_enter=self.reload)

    def reload(self):
        self.history = _releases.ReleaseHistory.load(self.state_dir)
        current = self.history.current()
        self.cli.managed |= set((current or {}).get("variables") or {})
        self.load_env()

    def load_env(self):
        """The env file; its values other than the managed variables are masked in any Compose output quoted."""
        env = EnvFile.load(self.cli.env_file, missing_ok=True)
        self.cli.masked = tuple(value for key, value in env.as_dict().items() if value and key not in self.cli.managed)
        return env

    def containers(self, services=None):
        return self.engine.project_containers(self.cli.project_name, services)

    def event(self, event, outcome, release=None, detail=None):
        if self.check_mode:
            return None
        return _releases.append_event(self.state_dir, event, outcome, release, detail)

    def wait_healthy(self, services, timeout, grace, baseline=None):
        """Poll until every container of ``services`` is healthy; ``(True, containers, "")`` or
        ``(False, containers, why)``."""
        deadline = self.clock() + timeout
        baseline = baseline or {}
        seen = None
        while True:
            records = self.containers(services)
            verdict, problems = gate(records, datetime.datetime.now(datetime.timezone.utc), grace, baseline, services)
            if verdict == "healthy":
                # A container without a health check counts once it was seen running on two polls in a row,
                # with the same start: one that exits at once is not taken for a healthy one.
                now_seen = {r["id"]: r["started_at"] for r in records}
                if all(r["health"] == "healthy" for r in records) or now_seen == seen:
                    return True, records, ""
                seen = now_seen
                self.sleep(POLL_SECONDS)
                continue
            seen = None
            if verdict == "failed":
                return False, records, "; ".join(problems)
            if self.clock() >= deadline:
                return False, records, "not healthy within %s s: %s" % (_seconds(timeout), "; ".join(problems))
            self.sleep(POLL_SECONDS)

    def running_images(self, records):
        """``{service: {image, image_id, repo_digests}}`` of what the containers run."""
        services = {}
        for record in records:
            entry = services.setdefault(record["service"], {
                "image": record["image"], "image_id": record["image_id"], "repo_digests": []})
            if entry["image_id"] != record["image_id"]:
                entry["image_id"] = "mixed"
        for entry in services.values():
            if entry["image_id"] and entry["image_id"] != "mixed":
                found = self.engine.image(entry["image_id"])
                entry["repo_digests"] = found["repo_digests"] if found else []
        return services

    def expected_images(self, config):
        """``{service: {"image": ref, "image_id": id or None}}`` for the services ``up`` starts (a service with
        profiles starts only when its profile is asked for, which ``up`` here never does; one with scale 0 never)."""
        expected = {}
        for service, spec in config.items():
            if spec.get("profiles") or spec.get("scale") == 0:
                continue
            found = self.engine.image(spec["image"]) if spec["image"] else None
            expected[service] = {"image": spec["image"], "image_id": found["id"] if found else None,
                                 "build": spec["build"]}
        return expected

    def pull(self, expected, policy, overrides):
        missing = [s for s, e in expected.items() if not e["image_id"] and not e["build"]]
        if policy == "always":
            targets = [s for s, e in expected.items() if not e["build"]]
        elif policy == "missing":
            targets = missing
        else:
            if missing:
                raise ComposeError("image(s) not on this host and pull is never: %s" % ", ".join(
                    sorted("%s (%s)" % (expected[s]["image"], s) for s in missing)))
            targets = []
        if targets and not self.check_mode:
            self.cli.run(["pull"] + sorted(targets), overrides, what="%s pull" % self.cli.command_name)
        return targets

    def scale_args(self, records):
        counts = {}
        for record in records:
            counts[record["service"]] = counts.get(record["service"], 0) + 1
        args = []
        for service, count in sorted(counts.items()):
            if count > 1:
                args += ["--scale", "%s=%d" % (service, count)]
        return args

    def result(self, changed, msg, release=None, previous=None, containers=None, **extra):
        result = {"changed": changed, "msg": msg, "release": release, "previous": previous,
                  "containers": [public_container(r) for r in (containers or [])],
                  "releases": list(reversed(self.history.ids())), "compose_command": self.cli.command_name,
                  "project_name": self.cli.project_name}
        if self.warnings:
            result["warnings"] = list(self.warnings)
        result.update(extra)
        return result

    def compose_hash(self):
        return files_hash(self.cli.files)

    def env_hash(self):
        return files_hash([self.cli.env_file]) if os.path.exists(self.cli.env_file) else None

    # state: deployed -------------------------------------------------------------------------
    def deploy(self, variables, pull="missing", migration_service=None, migration_command=None,
               migration_head_command=None, backup_id=None, required_env_keys=(), health_timeout=120.0,
               grace_period=0.0, keep_releases=10):
        if not variables:
            raise ComposeError("give tag (with tag_variable) or variables: the image variables to deploy")
        if pull not in PULL_POLICIES:
            raise ComposeError("pull must be one of %s, got %s" % (", ".join(PULL_POLICIES), pull))
        if migration_command and not migration_service:
            raise ComposeError("migration_command needs migration_service (the service whose image runs it)")
        if migration_head_command and not migration_service:
            raise ComposeError("migration_head_command needs migration_service")
        self.cli.managed |= set(variables)
        with self.lock():
            env = self.load_env()  # read under the lock: a run that held it may have changed the file
            missing = [key for key in required_env_keys if not env.get(key)]
            if missing:
                raise ComposeError("the env file %s lacks required key(s) or has them empty: %s; nothing was changed"
                                   % (self.cli.env_file, ", ".join(missing)))
            before = {key: env.get(key) for key in sorted(variables)}
            after = {key: str(value) for key, value in sorted(variables.items())}
            diff = {"before": _variables_text(before), "after": _variables_text(after),
                    "before_header": "%s (managed variables)" % self.cli.env_file,
                    "after_header": "%s (managed variables)" % self.cli.env_file}
            current = self.history.current()
            unchanged = self.unchanged(current, after, pull)
            if unchanged is not None:
                return self.result(False, "release %s already runs healthy: %s" % (current["id"], _variables_text(after, " ")),
                                   release=current, previous=self.history.get(current.get("previous")),
                                   containers=unchanged, diff={"before": diff["before"], "after": diff["before"]})
            config = self.cli.services(after)
            expected = self.expected_images(config)
            records = self.containers()
            changed_vars = sorted(key for key in after if before.get(key) != after[key])
            recreate = sorted(s for s, e in expected.items()
                              if not e["image_id"] or any(r["image_id"] != e["image_id"] for r in records if r["service"] == s)
                              or not any(r["service"] == s for r in records))
            if self.check_mode:
                pulls = self.pull(expected, pull, after)
                return self.result(True, "would deploy %s (%s): changed variables %s; services recreated %s; images pulled %s%s"
                                   % (_variables_text(after, " "), self.cli.project_name, ", ".join(changed_vars) or "none",
                                      ", ".join(recreate) or "none", ", ".join(pulls) or "none",
                                      "; migration %s would run" % " ".join(migration_command) if migration_command else ""),
                                   release=None, previous=current, containers=records, diff=diff,
                                   would_recreate=recreate, changed_variables=changed_vars)
            return self._deploy(env, before, after, config, expected, records, current, pull, migration_service,
                                migration_command, migration_head_command, backup_id, health_timeout, grace_period,
                                keep_releases, diff)

    def unchanged(self, current, after, pull):
        """The running containers when ``current`` already runs ``after`` healthy with the same files and
        pulls are not forced; None otherwise.  Needs no Compose command: the record says what to compare."""
        if pull == "always" or not _releases.succeeded(current) or current.get("variables") != after:
            return None
        if current.get("compose_hash") != self.compose_hash() or current.get("env_hash") != self.env_hash():
            return None
        services = current.get("services") or {}
        records = self.containers()
        if not services or {r["service"] for r in records} != set(services):
            return None
        for entry in services.values():
            local = self.engine.image(entry["image"]) if entry.get("image") else None
            if not local or local["id"] != entry["image_id"]:
                return None
        verdict, _problems = gate(records, datetime.datetime.now(datetime.timezone.utc), 0.0, {}, list(services))
        if verdict != "healthy" or any(r["image_id"] != services[r["service"]]["image_id"] for r in records):
            return None
        return records

    def _new_record(self, variables, current, backup_id, env_hash):
        when = _releases.utc_now()
        return {"id": _releases.release_id(when, variables, self.tag_variable, self.history.ids()),
                "kind": "deploy", "started": _releases.stamp(when), "finished": None, "outcome": None,
                "variables": dict(variables), "services": {}, "compose_hash": self.compose_hash(),
                "env_hash": env_hash, "compose_command": self.cli.command_name, "project": self.cli.project_name,
                "migration_ran": False, "migration_head_before": None, "migration_head_after": None,
                "backup_id": backup_id, "previous": current["id"] if current else None, "failure": None}

    def _head(self, service, command, overrides):
        rc, out, err = self.cli.run_oneoff(service, command, overrides, what="migration head command")
        if rc != 0:
            self.warnings.append("the migration head command failed (exit code %d): %s"
                                 % (rc, mask(tail(err or out, 2), self.cli.masked)))
            return None
        lines = parse_lines(out)
        return lines[-1] if lines else None

    def _fail(self, record, gate_name, message, records, current, keep_releases, save_current=True):
        record.update(outcome=_releases.FAILED, finished=_releases.stamp(_releases.utc_now()),
                      failure={"gate": gate_name, "message": message})
        self.history.add(record, current=save_current)
        self.history.prune(keep_releases)
        self.history.save()
        self.event("deploy", _releases.FAILED, record["id"], {
            "gate": gate_name, "message": message, "variables": record["variables"]})
        raise ComposeError("release %s failed at the %s gate: %s" % (record["id"], gate_name, message),
                           changed=True, release=record, previous=current,
                           containers=[public_container(r) for r in records], releases=list(reversed(self.history.ids())),
                           warnings=self.warnings)

    def _deploy(self, env, before, after, config, expected, records, current, pull, migration_service,
                migration_command, migration_head_command, backup_id, health_timeout, grace_period, keep_releases, diff):
        record = self._new_record(after, current, backup_id, None)
        self.event("deploy", "started", record["id"], {"variables": after, "previous": record["previous"]})
        pulled = self.pull(expected, pull, after)
        if pulled:
            expected = self.expected_images(config)
        if migration_head_command:
            record["migration_head_before"] = self._head(migration_service, migration_head_command, before_overrides(before))
        if migration_command:
            record["migration_ran"] = True
            rc, out, err = self.cli.run_oneoff(migration_service, migration_command, after, what="migration")
            if migration_head_command:
                record["migration_head_after"] = self._head(migration_service, migration_head_command, after)
            if rc != 0:
                record["env_hash"] = self.env_hash()
                record["services"] = self.running_images(records)
                self._fail(record, "migration", "the migration command exited with code %d: %s; nothing was switched "
                           "(env file and containers as before)" % (rc, mask(tail(err or out), self.cli.masked) or "no output"),
                           records, current, keep_releases, save_current=False)
        elif migration_head_command:
            record["migration_head_after"] = record["migration_head_before"]
        for key, value in after.items():
            env.set(key, value)
        copy = env.write(backup=True)
        try:
            self.cli.run(["up", "-d"] + self.scale_args(records), what="%s up -d" % self.cli.command_name)
        except ComposeError as exc:
            record["env_hash"] = self.env_hash()
            self._fail(record, "up", str(exc), self.containers(), current, keep_releases)
        finally:
            if copy:
                _files.unlink_quietly(copy)
        record["env_hash"] = self.env_hash()
        healthy, records, why = self.wait_healthy(sorted(expected), health_timeout, grace_period)
        record["services"] = self.running_images(records)
        if not healthy:
            self._fail(record, "health", why, records, current, keep_releases)
        mismatch = image_mismatch(expected, record["services"])
        if mismatch:
            self._fail(record, "image", mismatch + override_hint(after), records, current, keep_releases)
        record.update(outcome=_releases.SUCCEEDED, finished=_releases.stamp(_releases.utc_now()))
        self.history.add(record)
        removed = self.history.prune(keep_releases)
        self.history.save()
        self.event("deploy", _releases.SUCCEEDED, record["id"], {
            "variables": after, "previous": record["previous"], "migration_head_before": record["migration_head_before"],
            "migration_head_after": record["migration_head_after"], "backup_id": backup_id})
        return self.result(True, "release %s deployed and healthy (%s)" % (record["id"], _variables_text(after, " ")),
                           release=record, previous=current, containers=records, diff=diff, removed_releases=removed,
                           pulled=pulled)

    # state: rolled_back ----------------------------------------------------------------------
    def rollback(self, release=None, pull="missing", health_timeout=120.0, grace_period=0.0, failed_gate=None, reason=None):
        with self.lock():
            target = self.history.rollback_target(release)
            leaving = self.history.current()
            plan = self.history.rollback_plan(target, leaving)
            after = dict(target.get("variables") or {})
            self.cli.managed |= set(after)
            env = self.load_env()
            before = {key: env.get(key) for key in sorted(after)}
            diff = {"before": _variables_text(before), "after": _variables_text(after)}
            records = self.containers()
            services = target.get("services") or {}
            running = {r["service"]: r["image_id"] for r in records}
            ready = before == after and all(running.get(s) == e.get("image_id") for s, e in services.items()) \
                and gate(records, datetime.datetime.now(datetime.timezone.utc), 0.0, {}, list(services))[0] == "healthy"
            if ready and (leaving or {}).get("id") == target["id"]:
                return self.result(False, "release %s already runs healthy" % target["id"], release=target,
                                   previous=self.history.get(target.get("previous")), containers=records,
                                   rollback_plan=plan, diff=diff)
            retag = self.restore_tags(services, pull)
            if self.check_mode:
                return self.result(True, "would roll back %s to %s (%s); %s" % (
                    (leaving or {}).get("id"), target["id"], _variables_text(after, " "), plan["reason"]),
                    release=target, previous=leaving, containers=records, rollback_plan=plan, diff=diff, retagged=retag)
            self.event("rollback", "started", target["id"], {"from": (leaving or {}).get("id"), "plan": plan})
            for key, value in after.items():
                env.set(key, value)
            copy = env.write(backup=True)
            try:
                self.cli.run(["up", "-d"] + self.scale_args(records), what="%s up -d" % self.cli.command_name)
            except ComposeError as exc:
                self.event("rollback", _releases.FAILED, target["id"], {
                    "from": (leaving or {}).get("id"), "message": str(exc)})
                raise ComposeError("rollback to %s failed: %s" % (target["id"], exc), changed=True, release=target,
                                   previous=leaving, rollback_plan=plan) from None
            finally:
                if copy:
                    _files.unlink_quietly(copy)
            healthy, records, why = self.wait_healthy(sorted(services), health_timeout, grace_period)
            now = _releases.stamp(_releases.utc_now())
            if leaving and leaving["id"] != target["id"]:
                leaving.update(rolled_back_to=target["id"], rolled_back_at=now)
                if failed_gate and leaving.get("outcome") == _releases.SUCCEEDED:
                    # A later gate (the deploy role's HTTP, smoke or watch) failed it after our health gate passed.
                    leaving.update(outcome=_releases.FAILED, failure={"gate": failed_gate, "message": reason or ""})
            self.history.current_id = target["id"]
            target.setdefault("rollbacks", []).append({"time": now, "from": (leaving or {}).get("id")})
            mismatch = image_mismatch(services, self.running_images(records)) if healthy else None
            outcome = _releases.SUCCEEDED if healthy and not mismatch else _releases.FAILED
            target["rollbacks"][-1]["outcome"] = outcome
            self.history.save()
            message = why or (mismatch + override_hint(after) if mismatch else "")
            self.event("rollback", outcome, target["id"], {
                "from": (leaving or {}).get("id"), "message": message,
                "data_rollback_needed": plan["data_rollback_needed"]})
            if outcome == _releases.FAILED:
                raise ComposeError("rollback to %s failed: %s" % (target["id"], message), changed=True, release=target,
                                   previous=leaving, containers=[public_container(r) for r in records],
                                   rollback_plan=plan, releases=list(reversed(self.history.ids())))
            return self.result(True, "rolled back from %s to %s; running images verified (%s)" % (
                (leaving or {}).get("id"), target["id"], _variables_text(after, " ")), release=target, previous=leaving,
                containers=records, rollback_plan=plan, diff=diff, retagged=retag)

    def restore_tags(self, services, pull):
        """Point each image reference of a release back at the image id it recorded (a tag rebuilt since
        then); the image must still be on the host, or be pulled by digest."""
        retagged = []
        for service, entry in sorted(services.items()):
            ref, wanted = entry.get("image"), entry.get("image_id")
            if not ref or not wanted or wanted == "mixed":
                continue
            local = self.engine.image(ref)
            if local and local["id"] == wanted:
                continue
            if self.engine.image(wanted) is None:
                digests = entry.get("repo_digests") or []
                if not digests or pull == "never" or self.check_mode:
                    raise ComposeError("the image %s of service %s (%s) is no longer on this host%s" % (
                        wanted[:19], service, ref, "" if digests else " and the release recorded no registry digest"))
                self.cli.run(["pull", service], what="pull of %s" % digests[0])  # not reached without a registry
            if not self.check_mode:
                self.engine.tag(wanted, ref)
            retagged.append("%s -> %s" % (ref, wanted[:19]))
        return retagged

    # restarted, scaled, stopped, started -----------------------------------------------------
    def _service_list(self, services):
        """``services`` checked, or every service; Compose's config is read only when the containers cannot tell."""
        present = sorted({r["service"] for r in self.containers()})
        if services and all(s in present for s in services):
            return list(services)
        if not services and present:
            return present
        names = sorted(self.cli.services())
        unknown = [s for s in services or () if s not in names]
        if unknown:
            raise ComposeError("no such service in %s: %s (services: %s)" % (self.cli.project_name, ", ".join(unknown),
                                                                             ", ".join(names)))
        return list(services) if services else names

    def restart(self, services=None, one_at_a_time=False, health_timeout=120.0, grace_period=0.0):
        with self.lock():
            services = self._service_list(services)
            records = self.containers(services)
            if not records:
                raise ComposeError("no containers of %s to restart (services %s)" % (self.cli.project_name, ", ".join(services)))
            if self.check_mode:
                return self.result(True, "would restart %s%s" % (", ".join(r["name"] for r in records),
                                                                 " one at a time" if one_at_a_time else ""),
                                   release=self.history.current(), containers=records)
            baseline = {r["id"]: r["restart_count"] for r in records}
            order = []
            if one_at_a_time:
                for record in records:
                    self.engine.restart(record["id"], record.get("stop_timeout") or 10)
                    order.append(record["name"])
                    healthy, now_records, why = self.wait_healthy(
                        [record["service"]], health_timeout, grace_period, baseline)
                    if not healthy:
                        self.event("restart", _releases.FAILED, self.history.current_id, {"container": record["name"],
                                                                                          "message": why})
                        raise ComposeError("restart of %s failed: %s; the containers after it were not restarted"
                                           % (record["name"], why), changed=True,
                                           containers=[public_container(r) for r in now_records], restarted=order)
            else:
                self.cli.run(["restart"] + services, what="%s restart" % self.cli.command_name)
                order = [r["name"] for r in records]
            healthy, records, why = self.wait_healthy(services, health_timeout, grace_period, baseline)
            self.event("restart", _releases.SUCCEEDED if healthy else _releases.FAILED, self.history.current_id,
                       {"services": services, "one_at_a_time": one_at_a_time, "message": why})
            if not healthy:
                raise ComposeError("after the restart: %s" % why, changed=True,
                                   containers=[public_container(r) for r in records], restarted=order)
            return self.result(True, "restarted %s%s; healthy" % (", ".join(order), " one at a time" if one_at_a_time else ""),
                               release=self.history.current(), containers=records, restarted=order)

    def scale(self, scale, health_timeout=120.0, grace_period=0.0):
        if not scale:
            raise ComposeError("scale needs at least one service: count")
        for service, count in scale.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ComposeError("scale of %s must be a whole number of 0 or more, got %r" % (service, count))
        with self.lock():
            services = self._service_list(sorted(scale))
            records = self.containers(services)
            counts = {s: len([r for r in records if r["service"] == s and r["status"] == "running"]) for s in services}
            todo = {s: n for s, n in scale.items() if counts[s] != n or len([r for r in records if r["service"] == s]) != n}
            if not todo:
                return self.result(False, "already scaled: %s" % _counts(scale), release=self.history.current(),
                                   containers=records, scale=counts)
            if self.check_mode:
                return self.result(True, "would scale %s (now %s)" % (_counts(todo), _counts(counts)),
                                   release=self.history.current(), containers=records, scale=counts)
            args = ["up", "-d", "--no-deps", "--no-recreate"]
            for service, count in sorted(todo.items()):
                args += ["--scale", "%s=%d" % (service, count)]
            baseline = {r["id"]: r["restart_count"] for r in records}
            self.cli.run(args + sorted(todo), what="%s up --scale" % self.cli.command_name)
            waited = [s for s in sorted(todo) if todo[s] > 0]
            healthy, records, why = self.wait_healthy(waited, health_timeout, grace_period, baseline) if waited \
                else (True, [], "")
            records = self.containers(services)
            counts_after = {s: len([r for r in records if r["service"] == s]) for s in services}
            self.event("scale", _releases.SUCCEEDED if healthy else _releases.FAILED, self.history.current_id,
                       {"scale": todo, "before": counts, "message": why})
            if not healthy:
                raise ComposeError("after scaling %s: %s" % (_counts(todo), why), changed=True,
                                   containers=[public_container(r) for r in records], scale=counts_after)
            return self.result(True, "scaled %s (was %s)" % (_counts(todo), _counts({s: counts[s] for s in todo})),
                               release=self.history.current(), containers=records, scale=counts_after)

    def stop(self, services=None):
        with self.lock():
            services = self._service_list(services)
            records = self.containers(services)
            running = [r for r in records if r["status"] in ("running", "restarting", "paused")]
            if not running:
                return self.result(False, "already stopped: %s" % ", ".join(services), release=self.history.current(),
                                   containers=records)
            if self.check_mode:
                return self.result(True, "would stop %s" % ", ".join(r["name"] for r in running),
                                   release=self.history.current(), containers=records)
            self.cli.run(["stop"] + services, what="%s stop" % self.cli.command_name)
            self.event("stop", _releases.SUCCEEDED, self.history.current_id, {"services": services})
            return self.result(True, "stopped %s" % ", ".join(r["name"] for r in running),
                               release=self.history.current(), containers=self.containers(services))

    def start(self, services=None, health_timeout=120.0, grace_period=0.0):
        with self.lock():
            services = self._service_list(services)
            records = self.containers(services)
            stopped = [r for r in records if r["status"] != "running"]
            if records and not stopped:
                return self.result(False, "already running: %s" % ", ".join(services), release=self.history.current(),
                                   containers=records)
            if not records:
                raise ComposeError("no containers of %s to start (services %s); deploy first"
                                   % (self.cli.project_name, ", ".join(services)))
            if self.check_mode:
                return self.result(True, "would start %s" % ", ".join(r["name"] for r in stopped),
                                   release=self.history.current(), containers=records)
            self.cli.run(["start"] + services, what="%s start" % self.cli.command_name)
            healthy, records, why = self.wait_healthy(services, health_timeout, grace_period,
                                                      {r["id"]: r["restart_count"] for r in records})
            self.event("start", _releases.SUCCEEDED if healthy else _releases.FAILED, self.history.current_id,
                       {"services": services, "message": why})
            if not healthy:
                raise ComposeError("after the start: %s" % why, changed=True, containers=[public_container(r) for r in records])
            return self.result(True, "started %s; healthy" % ", ".join(r["name"] for r in stopped),
                               release=self.history.current(), containers=records)

    # compose_release_info ------------------------------------------------------------------------
    def info(self, release=None, with_containers=True):
        current = self.history.current()
        records = self.containers() if with_containers else []
        gate(records, datetime.datetime.now(datetime.timezone.utc), 0.0, {}, [])  # rates each: state and detail
        result = {"releases": self.history.newest_first(), "current": current,
                  "last_successful": self.history.last_successful(),
                  "containers": [public_container(r) for r in records],
                  "project_name": self.cli.project_name, "state_dir": self.state_dir}
        try:
            self.cli.select(need_version=True)
            result["compose_command"] = self.cli.command_name
            result["compose_version"] = self.cli.version_text
        except ComposeError as exc:
            result["compose_command"] = None
            self.warnings.append(str(exc))
        result["drift"] = drift(current, records) if with_containers else []
        try:
            target = self.history.rollback_target(release) if (release or current) else None
        except ComposeError as exc:
            if release:
                raise
            target = None
            result["rollback_plan"] = {"target": None, "from": (current or {}).get("id"), "data_rollback_needed": False,
                                       "backup_id": None, "moved_by": [], "reason": str(exc)}
        if target is not None:
            result["rollback_plan"] = self.history.rollback_plan(target)
        result.setdefault("rollback_plan", None)
        return result


def before_overrides(before):
    """The managed variables as they are now, for a command that must run the current images."""
    return {key: value for key, value in before.items() if value is not None}


def image_mismatch(expected, running):
    """A sentence naming the services whose running image id differs from ``expected``; empty when all match."""
    wrong = []
    for service, entry in sorted(expected.items()):
        wanted = entry.get("image_id")
        got = (running.get(service) or {}).get("image_id")
        if wanted and got != wanted:
            wrong.append("%s runs %s (%s) instead of %s (%s)" % (
                service, (running.get(service) or {}).get("image") or "nothing", (got or "none")[:19],
                entry.get("image"), wanted[:19]))
    return "; ".join(wrong)


def override_hint(variables):
    return (". Is %s set in the environment of whoever ran Compose last? The shell environment overrides the env "
            "file in Compose" % ", ".join(sorted(variables)))


def drift(current, records):
    """Services whose running image differs from the current release record (someone ran Compose by hand, or
    with a shell variable overriding the env file); empty when they match or there is no record."""
    if not current or not current.get("services"):
        return []
    running = {}
    for record in records:
        running.setdefault(record["service"], {"image": record["image"], "image_id": record["image_id"]})
    found = []
    for service, entry in sorted(current["services"].items()):
        got = running.get(service)
        if entry.get("image_id") and entry["image_id"] != "mixed" and (got or {}).get("image_id") != entry["image_id"]:
            found.append({"service": service, "recorded_image": entry.get("image"), "recorded_image_id": entry["image_id"],
                          "running_image": (got or {}).get("image"), "running_image_id": (got or {}).get("image_id")})
    return found


def _variables_text(variables, separator="\n"):
    text = separator.join("%s=%s" % (key, "" if value is None else value) for key, value in sorted(variables.items()))
    return text + ("\n" if separator == "\n" and text else "")


def _counts(scale):
    return ", ".join("%s=%d" % item for item in sorted(scale.items()))


def _seconds(value):
    return ("%g" % value) if isinstance(value, float) else str(value)


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


class _ProjectLock(_files.FileLock):
    """The deploy lock with the project's words when it is taken."""

    def __init__(self, path, timeout, on_enter):
        super().__init__(path, timeout)
        self.on_enter = on_enter

    def __enter__(self):
        try:
            super().__enter__()
        except TimeoutError:
            raise ComposeError("another deploy, rollback or restart of this project holds its lock %s%s" % (
                self.path, " (waited %s s)" % _seconds(self.timeout) if self.timeout else
                "; set lock_timeout to wait for it")) from None
        try:
            self.on_enter()
        except BaseException:
            super().__exit__(None, None, None)
            raise
        return self
