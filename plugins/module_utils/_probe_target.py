# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What to probe and what must hold: the options of one probe target, validated.

``ProbeTarget.from_dict(target, defaults)`` merges a target's options over the shared (top-level)
defaults and the built-in ones, and checks each option with a small validator; ``ValueCheck`` is one
check on a JSON field or a response header.  The argument specs shared by http_probe and metrics_probe
(documented in the runbook.ops.http_target doc fragment) live here too.

Plain Python (``jmespath`` for JSON checks, optional), no Ansible imports.  Secrets (token and header
values, URL passwords) are collected in ``ProbeTarget.secrets`` and never appear in error messages.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field

from ansible_collections.runbook.ops.plugins.module_utils import _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ProbeError
from ansible_collections.runbook.ops.plugins.module_utils._http import REDACTED

try:
    import jmespath
    import jmespath.exceptions
    HAS_JMESPATH = True
except ImportError:  # reported by the module with missing_required_lib
    HAS_JMESPATH = False

SEVERITIES = _status.SEVERITIES
COMPARISONS = _status.NUMERIC_OPERATORS + ("contains", "regex", "exists")

# Built-in values for options neither the target nor the shared defaults set.
BUILTIN_DEFAULTS = {
    "method": "GET",
    "status": [200],
    "timeout": 10.0,
    "validate_certs": True,
    "warn_days": 30,
    "crit_days": 7,
    "return_body": False,
}
# Options a target may set and that shared (top-level) defaults may also set.
TARGET_FIELDS = ("name", "url", "method", "headers", "body", "host", "status", "body_contains",
                 "body_regex", "json", "headers_match", "timeout", "warn_ms", "crit_ms", "warn_days",
                 "crit_days", "validate_certs", "ca_path", "return_body", "api_token", "bearer_token",
                 "metrics_secret")
TOKEN_HEADERS = {"api_token": "X-Api-Token", "bearer_token": "Authorization", "metrics_secret": "x-metrics-secret"}
# Header names as RFC 9110 allows them (a token).
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_METHOD_RE = re.compile(r"[A-Z]+")
# Options that are numbers, and whether 0 is allowed.
_NUMBER_OPTIONS = {"timeout": False, "warn_ms": True, "crit_ms": True, "warn_days": True, "crit_days": True}


def show(value):
    """A JSON-ish value for a reason: 'down', 150, true, null."""
    if isinstance(value, str):
        return "'%s'" % (value if len(value) <= 120 else value[:120] + "...")
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:120] + "..."


# ----------------------------------------------------------------------------------------------
# Checks on JSON fields and response headers

MISSING = object()  # what a header or JSON path that is not there reads as


def _as_number(value):
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _equal(actual, expected):
    if actual == expected and type(actual) is type(expected):
        return True
    left, right = _as_number(actual), _as_number(expected)
    if left is not None and right is not None:
        return left == right  # 200 matches "200": templating turns numbers into strings
    return actual == expected


@dataclass
class ValueCheck:
    """``<subject> <op> <value>`` on a JSON field (by JMESPath) or a response header (by name).

    A check describes what must hold; when it does not, the target gets ``severity``.
    """

    kind: str  # "json" or "header"
    subject: str  # the JMESPath expression or the header name
    op: str = "=="
    value: object = None
    severity: str = "critical"
    compiled: object = None  # the compiled JMESPath expression (json checks)
    regex: object = None  # the compiled pattern (op regex)

    @classmethod
    def from_dict(cls, kind, spec, where):
        key = "path" if kind == "json" else "name"
        if not isinstance(spec, dict):
            raise ProbeError("%s: each %s check must be a mapping with %s" % (where, kind, key))
        subject = spec.get(key)
        if not subject or not isinstance(subject, str):
            raise ProbeError("%s: a %s check needs %s" % (where, kind, key))
        this = "%s: %s check %r" % (where, kind, subject)
        op, value = _check_op_and_value(spec, this)
        severity = spec.get("severity") or "critical"
        if severity not in SEVERITIES:
            raise ProbeError("%s: severity must be critical or warning" % this)
        check = cls(kind, subject, op, value, severity)
        if op == "regex":
            check.regex = _compile_regex(value, this)
        if kind == "json":
            check.compiled = _compile_jmespath(subject, where)
        return check

    def label(self):
        return "JSON %s" % self.subject if self.kind == "json" else "header %s" % self.subject

    def evaluate_document(self, document):
        """Evaluate a json check on a parsed JSON document: None when it holds, else a reason."""
        try:
            actual = self.compiled.search(document)
        except jmespath.exceptions.JMESPathError as exc:
            return "JSON %s could not be evaluated: %s" % (self.subject, exc)
        return self.evaluate(actual)

    def evaluate(self, actual, redact_value=False):
        """None when the check holds, else a reason string."""
        shown = "(value hidden)" if redact_value else (None if actual is MISSING else show(actual))
        label = self.label()
        if self.op == "exists":
            present = actual is not MISSING and actual is not None
            if present == self.value:
                return None
            return "%s is missing, expected it to exist" % label if self.value else \
                "%s exists, expected it to be absent" % label
        if actual is MISSING or actual is None:
            return "%s is missing, expected %s" % (label, self._expected())
        if self._holds(actual):
            return None
        return "%s is %s, expected %s" % (label, shown, self._expected())

    def _expected(self):
        if self.op == "==":
            return show(self.value)
        if self.op == "!=":
            return "anything but %s" % show(self.value)
        if self.op == "contains":
            return "to contain %s" % show(self.value)
        if self.op == "regex":
            return "to match regex %s" % show(str(self.value))
        return "%s %s" % (self.op, show(self.value))

    def _holds(self, actual):
        op = self.op
        if op == "==":
            return _equal(actual, self.value)
        if op == "!=":
            return not _equal(actual, self.value)
        if op == "contains":
            if isinstance(actual, str):
                return str(self.value) in actual
            if isinstance(actual, list):
                return any(_equal(item, self.value) for item in actual)
            if isinstance(actual, dict):
                return str(self.value) in actual
            return False
        if op == "regex":
            text = actual if isinstance(actual, str) else json.dumps(actual)
            return self.regex.search(text) is not None
        left = _as_number(actual)
        if left is None:
            return False
        return _status.compare(left, op, _as_number(self.value))


def _check_op_and_value(spec, where):
    """The comparison and the value of a check: ``equals: x`` or ``op`` with ``value``."""
    has_equals = spec.get("equals") is not None
    op = spec.get("op") or ("==" if has_equals else None)
    if op is None:
        raise ProbeError("%s needs equals, or op and value" % where)
    if op not in COMPARISONS:
        raise ProbeError("%s has unknown comparison %r; use one of %s" % (where, op, " ".join(COMPARISONS)))
    if has_equals and spec.get("value") is not None:
        raise ProbeError("%s: give equals, or op and value, not both" % where)
    value = spec.get("equals") if has_equals else spec.get("value")
    if op == "exists":
        value = True if value is None else value
        if not isinstance(value, bool):
            raise ProbeError("%s: op exists takes value true or false" % where)
    elif value is None:
        raise ProbeError("%s: op %s needs a value" % (where, op))
    if op in ("<", "<=", ">", ">=") and _as_number(value) is None:
        raise ProbeError("%s: op %s needs a number, got %s" % (where, op, show(value)))
    return op, value


def _compile_regex(value, where):
    try:
        return re.compile(str(value))
    except re.error as exc:
        raise ProbeError("%s: invalid regex %s: %s" % (where, show(value), exc)) from None


def _compile_jmespath(subject, where):
    if not HAS_JMESPATH:
        raise ProbeError("%s: JSON checks need the Python library jmespath" % where)
    try:
        return jmespath.compile(subject)
    except jmespath.exceptions.JMESPathError as exc:
        raise ProbeError("%s: invalid JMESPath %r: %s" % (where, subject, str(exc).replace("\n", " "))) from None


# ----------------------------------------------------------------------------------------------
# Targets

@dataclass
class ProbeTarget:
    """A validated target.  Build it with ``ProbeTarget.from_dict(target, defaults)``."""

    name: str
    url: str
    scheme: str
    address: str  # host to connect to (from the URL)
    port: int
    request_path: str
    display_url: str  # the URL without any password
    method: str = "GET"
    headers: dict = field(default_factory=dict)
    body: bytes | None = None
    host: str | None = None
    status: list = field(default_factory=lambda: [200])
    body_contains: str | None = None
    body_regex: object = None
    json_checks: list = field(default_factory=list)
    header_checks: list = field(default_factory=list)
    timeout: float = 10.0
    warn_ms: float | None = None
    crit_ms: float | None = None
    warn_days: int = 30
    crit_days: int = 7
    validate_certs: bool = True
    ca_path: str | None = None
    return_body: bool = False
    secrets: list = field(default_factory=list)

    @classmethod
    def from_dict(cls, target, defaults=None, index=0):
        """Validate one target's options merged over ``defaults`` (the shared top-level options)."""
        spec = _merged_spec(target, defaults, index)
        parsed, display_url = _parse_url(spec.get("url"), str(spec.get("name") or "") or "target %d" % (index + 1))
        name = str(spec.get("name") or "") or display_url
        where = "target %r" % name
        headers, secrets = _request_headers(spec, parsed, where)
        method = _method(spec, where)
        body = _request_body(spec.get("body"), headers)
        host = _host(spec.get("host"), where)
        status = _status_codes(spec.get("status"), where)
        body_regex = None if spec.get("body_regex") is None else _compile_body_regex(spec["body_regex"], where)
        json_checks = [ValueCheck.from_dict("json", c, where) for c in _as_list(spec.get("json"), where, "json")]
        header_checks = [ValueCheck.from_dict("header", c, where)
                         for c in _as_list(spec.get("headers_match"), where, "headers_match")]
        numbers = _numbers(spec, where)
        ca_path = _ca_path(spec.get("ca_path"), where)
        return cls(
            name=name, url=spec["url"], scheme=parsed.scheme, address=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 80),
            request_path=(parsed.path or "/") + ("?" + parsed.query if parsed.query else ""),
            display_url=display_url, method=method, headers=headers, body=body, host=host,
            status=status, body_contains=None if spec.get("body_contains") is None else str(spec["body_contains"]),
            body_regex=body_regex, json_checks=json_checks, header_checks=header_checks,
            timeout=numbers["timeout"], warn_ms=numbers["warn_ms"], crit_ms=numbers["crit_ms"],
            warn_days=int(numbers["warn_days"]), crit_days=int(numbers["crit_days"]),
            validate_certs=bool(spec.get("validate_certs")), ca_path=ca_path,
            return_body=bool(spec.get("return_body")), secrets=secrets)


def _merged_spec(target, defaults, index):
    """A target's own values win over the shared defaults, which win over the built-in ones."""
    if not isinstance(target, dict):
        raise ProbeError("target %d: must be a mapping with at least url" % (index + 1))
    unknown = set(target) - set(TARGET_FIELDS)
    if unknown:
        raise ProbeError("target %d: unknown option(s) %s" % (index + 1, ", ".join(sorted(map(str, unknown)))))
    merged = dict(BUILTIN_DEFAULTS)
    shared = {k: v for k, v in (defaults or {}).items() if k not in ("name", "url")}
    for source in (shared, target):
        for key, value in source.items():
            if value is None:
                continue
            if key == "headers" and merged.get("headers"):
                names = {n.lower() for n in value}
                headers = {k: v for k, v in merged["headers"].items() if k.lower() not in names}
                headers.update(value)
                merged["headers"] = headers
            else:
                merged[key] = value
    return merged


def _request_headers(spec, parsed, where):
    """The request headers (given ones, tokens, Basic auth from the URL) and the secrets among them."""
    secrets = []
    headers = {str(key): "" if value is None else str(value) for key, value in (spec.get("headers") or {}).items()}
    for option, header in TOKEN_HEADERS.items():
        token = spec.get(option)
        if token:
            token = str(token)
            secrets.append(token)
            headers = {k: v for k, v in headers.items() if k.lower() != header.lower()}
            headers[header] = "Bearer " + token if option == "bearer_token" else token
    if parsed.password is not None or parsed.username is not None:
        user = urllib.parse.unquote(parsed.username or "")
        password = urllib.parse.unquote(parsed.password or "")
        secrets += [p for p in (parsed.password, password) if p]
        credentials = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        headers.setdefault("Authorization", "Basic " + credentials)
    for key, value in headers.items():
        secrets.append(value)
        if not _HEADER_NAME_RE.fullmatch(key):
            raise ProbeError("%s: invalid header name %r" % (where, key))
        if "\r" in value or "\n" in value:
            raise ProbeError("%s: the value of header %r contains a line break" % (where, key))
    return headers, secrets


def _method(spec, where):
    method = str(spec.get("method") or "GET").upper()
    if not _METHOD_RE.fullmatch(method):
        raise ProbeError("%s: invalid method %r" % (where, method))
    return method


def _request_body(body, headers):
    """The body as bytes; a mapping or list is sent as JSON (with its Content-Type unless one is given)."""
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    return body.encode("utf-8") if isinstance(body, str) else body


def _host(host, where):
    if host is None:
        return None
    host = str(host).strip()
    if not host or re.search(r"[\s/@]", host):
        raise ProbeError("%s: invalid host %r (give a name, optionally with :port)" % (where, host))
    return host


def _status_codes(status, where):
    if isinstance(status, int):
        status = [status]
    try:
        return [int(code) for code in status]
    except (TypeError, ValueError):
        raise ProbeError("%s: status must be a list of HTTP status codes" % where) from None


def _compile_body_regex(pattern, where):
    try:
        return re.compile(str(pattern))
    except re.error as exc:
        raise ProbeError("%s: invalid body_regex %r: %s" % (where, pattern, exc)) from None


def _numbers(spec, where):
    """timeout and the latency and certificate levels, as floats (None when unset), in order."""
    numbers = {}
    for key, zero_allowed in _NUMBER_OPTIONS.items():
        numbers[key] = positive_number(spec.get(key), "%s: %s" % (where, key), zero_allowed)
    if numbers["warn_ms"] is not None and numbers["crit_ms"] is not None and numbers["warn_ms"] > numbers["crit_ms"]:
        raise ProbeError("%s: warn_ms (%g) is above crit_ms (%g)" % (where, numbers["warn_ms"], numbers["crit_ms"]))
    if numbers["crit_days"] > numbers["warn_days"]:
        raise ProbeError("%s: crit_days (%g) is above warn_days (%g)" % (where, numbers["crit_days"], numbers["warn_days"]))
    return numbers


def positive_number(value, what, zero_allowed=False):
    """``value`` as a finite float that is positive (or 0 when allowed); None stays None."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ProbeError("%s must be a number, got %r" % (what, value)) from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero_allowed):
        raise ProbeError("%s must be %s, got %s" % (what, "0 or more" if zero_allowed else "positive", show(value)))
    return number


def _ca_path(ca_path, where):
    if ca_path is not None and not os.path.exists(ca_path):
        raise ProbeError("%s: ca_path %r does not exist" % (where, ca_path))
    return ca_path


def _as_list(value, where, key):
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProbeError("%s: %s must be a list of checks" % (where, key))
    return value


def _parse_url(url, where):
    if not isinstance(url, str) or not url.strip():
        raise ProbeError("%s: url is required" % where)
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # pylint: disable=pointless-statement  # raises ValueError on a bad port
    except ValueError as exc:
        raise ProbeError("%s: invalid URL %r: %s" % (where, _strip_password(url), exc)) from None
    display = _strip_password(url)
    if parsed.scheme not in ("http", "https"):
        raise ProbeError("%s: invalid URL %r: the scheme must be http or https" % (where, display))
    if not parsed.hostname:
        raise ProbeError("%s: invalid URL %r: no host name" % (where, display))
    if re.search(r"\s", url):
        raise ProbeError("%s: invalid URL %r: it contains whitespace" % (where, display))
    return parsed, display


def _strip_password(url):
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//%s@" % REDACTED, url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parsed._replace(netloc="%s:%s@%s" % (parsed.username, REDACTED, netloc)))


# ----------------------------------------------------------------------------------------------
# Argument specs (plain data) shared by http_probe and metrics_probe; documented in the
# runbook.ops.http_target doc fragment.  No defaults here: unset values fall back to the
# shared top-level value, then to BUILTIN_DEFAULTS.

CONNECTION_ARGSPEC = {
    "method": {"type": "str"},
    "headers": {"type": "dict", "no_log": True},
    "body": {"type": "raw"},
    "host": {"type": "str"},
    "timeout": {"type": "float"},
    "validate_certs": {"type": "bool"},
    "ca_path": {"type": "path"},
    "api_token": {"type": "str", "no_log": True},
    "bearer_token": {"type": "str", "no_log": True},
    "metrics_secret": {"type": "str", "no_log": True},
}

_VALUE_CHECK_OPTIONS = {
    "equals": {"type": "raw"},
    "op": {"type": "str", "choices": list(COMPARISONS)},
    "value": {"type": "raw"},
    "severity": {"type": "str", "choices": list(SEVERITIES), "default": "critical"},
}

CHECK_ARGSPEC = {
    "status": {"type": "list", "elements": "int"},
    "body_contains": {"type": "str"},
    "body_regex": {"type": "str"},
    "json": {"type": "list", "elements": "dict",
             "options": dict(_VALUE_CHECK_OPTIONS, path={"type": "str", "required": True})},
    "headers_match": {"type": "list", "elements": "dict",
                      "options": dict(_VALUE_CHECK_OPTIONS, name={"type": "str", "required": True})},
    "warn_ms": {"type": "float"},
    "crit_ms": {"type": "float"},
    "warn_days": {"type": "int"},
    "crit_days": {"type": "int"},
    "return_body": {"type": "bool"},
}
