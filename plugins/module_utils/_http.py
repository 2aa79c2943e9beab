# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP(S) exchange of the probes: one request, the response, the server certificate.

``fetch()`` is the one piece of code that talks HTTP for both http_probe and metrics_probe.  It takes a
target (see ``_probe_target.ProbeTarget``) and never raises for network trouble: ``Response.error`` says
what went wrong, in words for the person on call, with every secret of the target redacted.

Plain Python (standard library http.client and ssl; ``cryptography`` to read certificates, optional),
no Ansible imports.
"""

from __future__ import annotations

import datetime
import http.client
import math
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

try:
    from cryptography import x509
    HAS_CRYPTOGRAPHY = True
except ImportError:  # reported by the module with missing_required_lib
    HAS_CRYPTOGRAPHY = False

REDACTED = "********"


def redact(text, secrets):
    """``text`` with every secret value replaced by ********."""
    text = str(text)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


@dataclass
class Certificate:
    """What a probe reports about a server certificate.

    ``days_left`` counts whole days, never rounded up: 6 days 23 hours left is 6; after expiry it is
    minus the whole days since (expired 2 days 5 hours ago is -2, 3 hours ago is 0 with ``expired``).
    """

    not_after: str
    days_left: int
    subject: str
    issuer: str
    dns_names: list
    expired: bool | None = None  # None: derived from days_left

    def __post_init__(self):
        if self.expired is None:
            self.expired = self.days_left < 0

    def as_dict(self):
        return {"not_after": self.not_after, "days_left": self.days_left, "expired": self.expired,
                "subject": self.subject, "issuer": self.issuer, "dns_names": self.dns_names}


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
    seconds_left = (not_after - now).total_seconds()
    expired = seconds_left < 0  # notAfter itself is still inside the validity period (RFC 5280)
    days_left = -math.floor(-seconds_left / 86400) if expired else math.floor(seconds_left / 86400)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    return Certificate(not_after.strftime("%Y-%m-%dT%H:%M:%SZ"), days_left, cert.subject.rfc4514_string(),
                       cert.issuer.rfc4514_string(), list(dns_names), expired)


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


class Deadline:
    """The end of one request: when it comes, the request's socket is shut down, whatever it is doing.

    A socket timeout only bounds each read; a server that sends one header line per second would hold
    the probe for as long as it likes.  A timer shuts the connection down at the deadline instead, which
    makes the blocked read return at once; ``expired`` then says why.  Use it as a context manager and
    ``watch()`` the socket as soon as it exists, and ``finish()`` before closing it.
    """

    def __init__(self, seconds):
        self.expired = False
        self._lock = threading.Lock()
        self._sock = None
        self._done = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc_info):
        self.finish()

    def finish(self):
        """Stop watching; call it before closing the socket."""
        with self._lock:
            self._done = True
            self._timer.cancel()

    def watch(self, sock):
        """Watch ``sock`` (the socket object, not its descriptor number: a closed socket object has none,
        so the timer can never reach a descriptor that the system has given to another connection)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shutdown()

    def _expire(self):
        with self._lock:
            if self._done:
                return
            self.expired = True
            if self._sock is not None:
                self._shutdown()

    def _shutdown(self):
        try:
            # The plain socket's shutdown, also for an SSL socket (whose own would unwrap TLS first).
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:  # closed already, or never connected
            pass


class _HTTPConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket is watched by a Deadline."""

    def __init__(self, address, port, timeout, deadline):
        super().__init__(address, port, timeout=timeout)
        self.deadline = deadline

    def connect(self):
        super().connect()
        self.deadline.watch(self.sock)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the URL's address but presents ``server_hostname`` (SNI, hostname check);
    its socket is watched by a Deadline from before the TLS handshake."""

    def __init__(self, address, port, server_hostname, context, timeout, deadline):
        super().__init__(address, port, timeout=timeout, context=context)
        self.server_hostname = server_hostname
        self.peer_cert_der = None
        self.deadline = deadline

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.deadline.watch(self.sock)
        # The handshake runs after the TLS socket is watched (wrapping detaches the plain socket object).
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_hostname,
                                              do_handshake_on_connect=False)
        self.deadline.watch(self.sock)
        self.sock.do_handshake()
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
    """Make one request for ``target``; never raises for network trouble (see ``Response.error``).

    ``target.timeout`` is a deadline for the whole exchange: connect, TLS, request, headers and body.
    """
    started = time.monotonic()
    response = Response()
    with Deadline(target.timeout) as deadline:
        _exchange(target, response, deadline, max_body_bytes, started)
    return response


def _exchange(target, response, deadline, max_body_bytes, started):
    connection = None
    try:
        if target.scheme == "https":
            context = _tls_context(target.validate_certs, target.ca_path)
            connection = _PinnedHTTPSConnection(target.address, target.port, _server_name(target), context,
                                                target.timeout, deadline)
        else:
            connection = _HTTPConnection(target.address, target.port, target.timeout, deadline)
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
            if deadline.expired or time.monotonic() - started > target.timeout:
                raise TimeoutError()
            chunk = reply.read1(65536) if target.method != "HEAD" else b""
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_body_bytes:
                response.truncated = True
                break
        if deadline.expired:  # the shutdown may read as the end of the body
            raise TimeoutError()
        response.body = b"".join(chunks)[:max_body_bytes]
        response.latency_ms = round((time.monotonic() - started) * 1000, 1)
    except Exception as exc:  # pylint: disable=broad-except  # every failure becomes a reason
        response.status = None
        if deadline.expired:  # whatever the shutdown at the deadline made the library raise
            exc = TimeoutError()
        response.error = redact(_describe_error(exc, target), target.secrets)
        if isinstance(exc, ssl.SSLCertVerificationError):
            response.cert = _unverified_certificate(target)
    finally:
        deadline.finish()
        if connection is not None:
            connection.close()


def _unverified_certificate(target):
    """The peer certificate without verification, to report its dates after a verify failure."""
    try:
        context = _tls_context(False, None)
        with socket.create_connection((target.address, target.port), timeout=target.timeout) as sock:
            with context.wrap_socket(sock, server_hostname=_server_name(target), do_handshake_on_connect=False) as tls:
                with Deadline(target.timeout) as deadline:
                    deadline.watch(tls)
                    tls.do_handshake()
                return parse_certificate(tls.getpeercert(binary_form=True))
    except (OSError, ValueError):
        return None
