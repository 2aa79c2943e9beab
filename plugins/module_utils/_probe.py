# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP probes: targets, checks, TLS expiry, a concurrent prober and a wait loop.

Plain Python (standard library http.client; ``jmespath`` for JSON checks and ``cryptography`` for
certificates, both imported lazily), no Ansible imports.  ``fetch()`` is the one piece of code that
talks HTTP for both http_probe and metrics_probe.

Secrets: request header values (tokens) and URL passwords never appear in results, reasons or
exception messages.  Any text built from a library exception is passed through ``redact()`` first.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime
import http.client
import json
import math
import os
import re
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field

from ansible_collections.runbook.ops.plugins.module_utils import _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import ProbeError

try:
    import jmespath
    import jmespath.exceptions
    HAS_JMESPATH = True
except ImportError:  # reported by the module with missing_required_lib
    HAS_JMESPATH = False

try:
    from cryptography import x509
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

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
# Response headers whose values are never echoed in reasons.
SENSITIVE_HEADER_RE = re.compile(r"cookie|auth|token|secret|key|session|password", re.I)
BODY_EXCERPT_CHARS = 4096
REDACTED = "********"


def redact(text, secrets):
    """``text`` with every secret value replaced by ********."""
    text = str(text)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _redact_tree(value, secrets):
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [_redact_tree(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact(k, secrets): _redact_tree(v, secrets) for k, v in value.items()}
    return value


def show(value):
    """A JSON-ish value for a reason: 'down', 150, true, null."""
    if isinstance(value, str):
        return "'%s'" % (value if len(value) <= 120 else value[:120] + "...")
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:120] + "..."


# ----------------------------------------------------------------------------------------------
# Checks on JSON fields and response headers

_MISSING = object()


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
        has_equals = spec.get("equals") is not None
        op = spec.get("op") or ("==" if has_equals else None)
        if op is None:
            raise ProbeError("%s: %s check %r needs equals, or op and value" % (where, kind, subject))
        if op not in COMPARISONS:
            raise ProbeError("%s: %s check %r has unknown comparison %r; use one of %s"
                             % (where, kind, subject, op, " ".join(COMPARISONS)))
        if has_equals and spec.get("value") is not None:
            raise ProbeError("%s: %s check %r: give equals, or op and value, not both" % (where, kind, subject))
        value = spec.get("equals") if has_equals else spec.get("value")
        if op == "exists":
            value = True if value is None else value
            if not isinstance(value, bool):
                raise ProbeError("%s: %s check %r: op exists takes value true or false" % (where, kind, subject))
        elif value is None:
            raise ProbeError("%s: %s check %r: op %s needs a value" % (where, kind, subject, op))
        if op in (">", ">=", "<", "<=") and _as_number(value) is None:
            raise ProbeError("%s: %s check %r: op %s needs a number, got %s" % (where, kind, subject, op, show(value)))
        severity = spec.get("severity") or "critical"
        if severity not in SEVERITIES:
            raise ProbeError("%s: %s check %r: severity must be critical or warning" % (where, kind, subject))
        compiled = None
        if op == "regex":
            try:
                compiled = re.compile(str(value))
            except re.error as exc:
                raise ProbeError("%s: %s check %r: invalid regex %s: %s" % (where, kind, subject, show(value), exc)) from None
        check = cls(kind, subject, op, value, severity, regex=compiled)
        if kind == "json":
            if not HAS_JMESPATH:
                raise ProbeError("%s: JSON checks need the Python library jmespath" % where)
            try:
                check.compiled = jmespath.compile(subject)
            except jmespath.exceptions.JMESPathError as exc:
                raise ProbeError("%s: invalid JMESPath %r: %s" % (where, subject, str(exc).replace("\n", " "))) from None
        return check

    def label(self):
        return "JSON %s" % self.subject if self.kind == "json" else "header %s" % self.subject

    def evaluate(self, actual, redact_value=False):
        """None when the check holds, else a reason string."""
        shown = "(value hidden)" if redact_value else (None if actual is _MISSING else show(actual))
        label = self.label()
        if self.op == "exists":
            present = actual is not _MISSING and actual is not None
            if present == self.value:
                return None
            return "%s is missing, expected it to exist" % label if self.value else \
                "%s exists, expected it to be absent" % label
        if actual is _MISSING or actual is None:
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


# ----------------------------------------------------------------------------------------------
# Targets

def _merge(target, defaults):
    """A target's own values win over the shared defaults, which win over the built-in ones."""
    merged = dict(BUILTIN_DEFAULTS)
    for source in (defaults or {}, target):
        for key, value in source.items():
            if value is None:
                continue
            if key == "headers" and merged.get("headers"):
                headers = {k: v for k, v in merged["headers"].items()
                           if k.lower() not in {n.lower() for n in value}}
                headers.update(value)
                merged["headers"] = headers
            else:
                merged[key] = value
    return merged


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
        if not isinstance(target, dict):
            raise ProbeError("target %d: must be a mapping with at least url" % (index + 1))
        unknown = set(target) - set(TARGET_FIELDS)
        if unknown:
            raise ProbeError("target %d: unknown option(s) %s" % (index + 1, ", ".join(sorted(map(str, unknown)))))
        spec = _merge(target, {k: v for k, v in (defaults or {}).items() if k not in ("name", "url")})
        url = spec.get("url")
        name = str(spec.get("name") or "")
        parsed, display_url = _parse_url(url, name or "target %d" % (index + 1))
        name = name or display_url
        where = "target %r" % name
        secrets = []
        headers = {}
        for key, value in (spec.get("headers") or {}).items():
            headers[str(key)] = "" if value is None else str(value)
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
            if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", key):
                raise ProbeError("%s: invalid header name %r" % (where, key))
            if "\r" in value or "\n" in value:
                raise ProbeError("%s: the value of header %r contains a line break" % (where, key))
        method = str(spec.get("method") or "GET").upper()
        if not re.fullmatch(r"[A-Z]+", method):
            raise ProbeError("%s: invalid method %r" % (where, method))
        body = spec.get("body")
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        if isinstance(body, str):
            body = body.encode("utf-8")
        host = spec.get("host")
        if host is not None:
            host = str(host).strip()
            if not host or re.search(r"[\s/@]", host):
                raise ProbeError("%s: invalid host %r (give a name, optionally with :port)" % (where, host))
        status = spec.get("status")
        if isinstance(status, int):
            status = [status]
        try:
            status = [int(code) for code in status]
        except (TypeError, ValueError):
            raise ProbeError("%s: status must be a list of HTTP status codes" % where) from None
        body_regex = spec.get("body_regex")
        if body_regex is not None:
            try:
                body_regex = re.compile(str(body_regex))
            except re.error as exc:
                raise ProbeError("%s: invalid body_regex %r: %s" % (where, body_regex, exc)) from None
        json_checks = [ValueCheck.from_dict("json", c, where) for c in _as_list(spec.get("json"), where, "json")]
        header_checks = [ValueCheck.from_dict("header", c, where)
                         for c in _as_list(spec.get("headers_match"), where, "headers_match")]
        numbers = {}
        for key in ("timeout", "warn_ms", "crit_ms", "warn_days", "crit_days"):
            value = spec.get(key)
            if value is None:
                numbers[key] = None
                continue
            try:
                numbers[key] = float(value)
            except (TypeError, ValueError):
                raise ProbeError("%s: %s must be a number, got %r" % (where, key, value)) from None
            if numbers[key] < 0 or (key == "timeout" and numbers[key] == 0):
                raise ProbeError("%s: %s must be positive" % (where, key))
        if numbers["warn_ms"] is not None and numbers["crit_ms"] is not None and numbers["warn_ms"] > numbers["crit_ms"]:
            raise ProbeError("%s: warn_ms (%g) is above crit_ms (%g)" % (where, numbers["warn_ms"], numbers["crit_ms"]))
        if numbers["crit_days"] > numbers["warn_days"]:
            raise ProbeError("%s: crit_days (%g) is above warn_days (%g)" % (where, numbers["crit_days"], numbers["warn_days"]))
        ca_path = spec.get("ca_path")
        if ca_path is not None and not os.path.exists(ca_path):
            raise ProbeError("%s: ca_path %r does not exist" % (where, ca_path))
        return cls(
            name=name, url=url, scheme=parsed.scheme, address=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 80),
            request_path=(parsed.path or "/") + ("?" + parsed.query if parsed.query else ""),
            display_url=display_url, method=method, headers=headers, body=body, host=host,
            status=status, body_contains=None if spec.get("body_contains") is None else str(spec["body_contains"]),
            body_regex=body_regex, json_checks=json_checks, header_checks=header_checks,
            timeout=numbers["timeout"], warn_ms=numbers["warn_ms"], crit_ms=numbers["crit_ms"],
            warn_days=int(numbers["warn_days"]), crit_days=int(numbers["crit_days"]),
            validate_certs=bool(spec.get("validate_certs")), ca_path=ca_path,
            return_body=bool(spec.get("return_body")), secrets=secrets)


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
# The HTTP exchange

@dataclass
class Certificate:
    not_after: str
    days_left: int
    subject: str
    issuer: str
    dns_names: list

    def as_dict(self):
        return {"not_after": self.not_after, "days_left": self.days_left, "subject": self.subject,
                "issuer": self.issuer, "dns_names": self.dns_names}


def parse_certificate(der, now=None):
    """Certificate facts from DER bytes (None when cryptography is missing or the cert is unreadable)."""
    if not der or not HAS_CRYPTOGRAPHY:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    not_after = getattr(cert, "not_valid_after_utc", None)
    if not_after is None:  # cryptography < 42
        not_after = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    days_left = math.floor((not_after - now).total_seconds() / 86400)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    return Certificate(not_after.strftime("%Y-%m-%dT%H:%M:%SZ"), days_left, cert.subject.rfc4514_string(),
                       cert.issuer.rfc4514_string(), list(dns_names))


@dataclass
class Response:
    """What came back, or why nothing did (``error``)."""

    status: int | None = None
    headers: list = field(default_factory=list)
    body: bytes = b""
    truncated: bool = False
    latency_ms: float | None = None
    cert: Certificate | None = None
    error: str | None = None

    def header(self, name):
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def text(self):
        charset = "utf-8"
        content_type = self.header("Content-Type") or ""
        match = re.search(r"charset=([\w.-]+)", content_type, re.I)
        if match:
            charset = match.group(1)
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the URL's address but presents ``server_hostname`` (SNI, hostname check)."""

    def __init__(self, address, port, server_hostname, context, timeout):
        super().__init__(address, port, timeout=timeout, context=context)
        self.server_hostname = server_hostname
        self.peer_cert_der = None

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_hostname)
        self.peer_cert_der = self.sock.getpeercert(binary_form=True)


def _tls_context(validate_certs, ca_path):
    if not validate_certs:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_path and os.path.isdir(ca_path):
        return ssl.create_default_context(capath=ca_path)
    return ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()


def _server_name(target):
    if target.host:
        name = target.host
        if name.startswith("["):
            return name[1:name.index("]")] if "]" in name else name
        return name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    return target.address


def _describe_error(exc, target):
    """A short human reason for a transport failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        return "certificate verify failed: %s" % detail
    if isinstance(exc, ssl.SSLError):
        hint = " (is the server speaking plain HTTP?)" if exc.reason == "WRONG_VERSION_NUMBER" else ""
        return "TLS handshake failed: %s%s" % (exc.reason or exc, hint)
    if isinstance(exc, socket.gaierror):
        return "DNS lookup failed for host '%s'" % target.address
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out after %ss" % _seconds(target.timeout)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (%s:%d)" % (target.address, target.port)
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "server closed the connection without a response"
    if isinstance(exc, http.client.HTTPException):
        return "invalid HTTP response: %s" % (type(exc).__name__)
    if isinstance(exc, OSError):
        return "connection failed: %s" % (exc.strerror or exc)
    return "request failed: %s: %s" % (type(exc).__name__, exc)


def _seconds(value):
    return ("%.1f" % value) if value == int(value) else ("%g" % value)


def fetch(target, max_body_bytes=1024 * 1024):
    """Make one request for ``target``; never raises for network trouble (see ``Response.error``)."""
    started = time.monotonic()
    response = Response()
    connection = None
    try:
        if target.scheme == "https":
            context = _tls_context(target.validate_certs, target.ca_path)
            connection = _PinnedHTTPSConnection(target.address, target.port, _server_name(target), context,
                                                target.timeout)
        else:
            connection = http.client.HTTPConnection(target.address, target.port, timeout=target.timeout)
        headers = dict(target.headers)
        if target.host:
            headers["Host"] = target.host
        headers.setdefault("User-Agent", "runbook.ops-probe")
        connection.request(target.method, target.request_path, body=target.body, headers=headers)
        if isinstance(connection, _PinnedHTTPSConnection):
            response.cert = parse_certificate(connection.peer_cert_der)
        reply = connection.getresponse()
        response.status = reply.status
        response.headers = reply.getheaders()
        chunks, size = [], 0
        while True:
            if time.monotonic() - started > target.timeout:
                raise TimeoutError()
            chunk = reply.read1(65536) if target.method != "HEAD" else b""
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_body_bytes:
                response.truncated = True
                break
        response.body = b"".join(chunks)[:max_body_bytes]
        response.latency_ms = round((time.monotonic() - started) * 1000, 1)
    except Exception as exc:  # pylint: disable=broad-except  # every failure becomes a reason
        response.status = None
        response.error = redact(_describe_error(exc, target), target.secrets)
        if isinstance(exc, ssl.SSLCertVerificationError):
            response.cert = _unverified_certificate(target)
    finally:
        if connection is not None:
            connection.close()
    return response


def _unverified_certificate(target):
    """The peer certificate without verification, to report its dates after a verify failure."""
    try:
        context = _tls_context(False, None)
        with socket.create_connection((target.address, target.port), timeout=target.timeout) as sock:
            with context.wrap_socket(sock, server_hostname=_server_name(target)) as tls:
                return parse_certificate(tls.getpeercert(binary_form=True))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# Evaluation

def evaluate(target, response):
    """The per-target result dict for a response."""
    result = {"name": target.name, "url": target.display_url, "method": target.method, "host": target.host,
              "status": response.status, "latency_ms": response.latency_ms, "state": "ok", "reasons": [],
              "cert": response.cert.as_dict() if response.cert else None}
    found = []  # (severity, reason)
    if response.error:
        found.append(("critical", response.error))
    if response.cert is not None:
        days = response.cert.days_left
        if days < 0:
            found.append(("critical", "certificate expired %d days ago (%s)" % (-days, response.cert.not_after)))
        elif days < target.crit_days:
            found.append(("critical", "certificate expires in %d days, under critical %d days (%s)"
                          % (days, target.crit_days, response.cert.not_after)))
        elif days < target.warn_days:
            found.append(("warning", "certificate expires in %d days, under warning %d days (%s)"
                          % (days, target.warn_days, response.cert.not_after)))
    if response.error is None:
        found += _check_response(target, response, result)
    result["reasons"] = [reason for _severity, reason in found]
    result["state"] = _status.worst(severity for severity, _reason in found)
    return result


def _check_response(target, response, result):
    found = []
    if response.status not in target.status:
        hint = ""
        if response.status in (401, 403):
            hint = " (the server refused the request: check the token and the Host header)"
        found.append(("critical", "status %d not in [%s]%s"
                      % (response.status, ", ".join(map(str, target.status)), hint)))
    latency = response.latency_ms
    if target.crit_ms is not None and latency > target.crit_ms:
        found.append(("critical", "latency %d ms over critical %d ms" % (round(latency), target.crit_ms)))
    elif target.warn_ms is not None and latency > target.warn_ms:
        found.append(("warning", "latency %d ms over warning %d ms" % (round(latency), target.warn_ms)))
    text = response.text()
    if response.truncated and (target.body_contains or target.body_regex or target.json_checks):
        found.append(("warning", "body longer than the read limit; checks saw only the start of it"))
    if target.body_contains is not None and target.body_contains not in text:
        found.append(("critical", "body does not contain %s" % show(target.body_contains)))
    if target.body_regex is not None and not target.body_regex.search(text):
        found.append(("critical", "body does not match regex %s" % show(target.body_regex.pattern)))
    document = _MISSING
    if target.json_checks or target.return_body:
        try:
            document = json.loads(text)
        except ValueError as exc:
            if target.json_checks:
                found.append(("critical", "body is not valid JSON (%s)" % exc.msg))
    if document is not _MISSING:
        for check in target.json_checks:
            try:
                actual = check.compiled.search(document)
            except jmespath.exceptions.JMESPathError as exc:
                found.append((check.severity, "JSON %s could not be evaluated: %s" % (check.subject, exc)))
                continue
            reason = check.evaluate(actual)
            if reason:
                found.append((check.severity, redact(reason, target.secrets)))
    for check in target.header_checks:
        actual = response.header(check.subject)
        reason = check.evaluate(_MISSING if actual is None else actual,
                                redact_value=bool(SENSITIVE_HEADER_RE.search(check.subject)))
        if reason:
            found.append((check.severity, redact(reason, target.secrets)))
    if target.return_body:
        result["body"] = redact(text[:BODY_EXCERPT_CHARS], target.secrets)
        result["body_truncated"] = response.truncated or len(text) > BODY_EXCERPT_CHARS
        if document is not _MISSING:
            result["json"] = _redact_tree(document, target.secrets)
    return found


def probe(target):
    return evaluate(target, fetch(target))


# ----------------------------------------------------------------------------------------------
# Many targets at once

class Prober:
    """Probes targets concurrently with a bounded pool of ``concurrency`` threads."""

    def __init__(self, concurrency=16, clock=time.monotonic, sleep=time.sleep):
        if int(concurrency) < 1:
            raise ProbeError("concurrency must be at least 1")
        self.concurrency = int(concurrency)
        self.clock = clock
        self.sleep = sleep

    def probe_all(self, targets):
        if not targets:
            return []
        workers = min(self.concurrency, len(targets))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(probe, targets))

    def run(self, targets, wait=False, wait_timeout=60.0, wait_delay=1.0, wait_max_delay=10.0,
            fail_on="critical"):
        """Probe every target once, or (wait) until all pass or ``wait_timeout`` elapses.

        Returns a report dict: targets (results in input order), state, summary, attempts, elapsed_ms.
        In wait mode each result also has ``attempts``; targets that passed are not probed again.
        """
        if fail_on not in _status.FAIL_ON:
            raise ProbeError("fail_on must be one of %s" % ", ".join(_status.FAIL_ON))
        started = self.clock()
        results = [None] * len(targets)
        tries = [0] * len(targets)
        pending = list(range(len(targets)))
        attempts = 0
        delay = max(float(wait_delay), 0.05)
        while pending:
            attempts += 1
            for index, result in zip(pending, self.probe_all([targets[i] for i in pending])):
                results[index] = result
                tries[index] += 1
            pending = [i for i in pending if not _status.passes(results[i]["state"], fail_on)]
            if not wait or not pending:
                break
            remaining = float(wait_timeout) - (self.clock() - started)
            if remaining <= 0:
                break
            self.sleep(min(delay, remaining))
            delay = min(delay * 2, max(float(wait_max_delay), float(wait_delay)))
        if wait:
            for result, count in zip(results, tries):
                result["attempts"] = count
        return report(results, attempts, (self.clock() - started) * 1000, fail_on)


def report(results, attempts, elapsed_ms, fail_on="critical"):
    """The task result: per-target results, the overall state, counts and one line for the person on call."""
    overview = _status.overview(results, "targets")
    return {"targets": results, "state": overview["state"], "summary": overview["summary"], "attempts": attempts,
            "elapsed_ms": round(elapsed_ms), "msg": overview["msg"],
            "failed": _status.fails(overview["state"], fail_on)}


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
