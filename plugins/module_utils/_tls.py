# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TLS certificate replacement for a reverse proxy (nginx), checked before and after.

    pair = CertificatePair.load(cert_pem, key_pem, chain_pem)
    problems = pair.problems(names=["app.example.com"], min_days=7)   # [] when fit to install
    installer = CertificateInstaller(files, test_argv, reload_argv, run)
    installer.install(pair, served=("127.0.0.1", 443, "app.example.com"))

Before anything is written the pair must pass: the key belongs to the certificate, each chain
certificate issued the one before it, the subject alternative names cover every served name, the
certificate is valid now and for at least ``min_days`` more.  Then: 0600 backups of the current
files, atomic writes, the proxy's own config test (``nginx -t``), reload, and a TLS handshake
that must show the new certificate (serial and expiry).  A failing config test or a handshake
that still shows another certificate puts the previous files back (and reloads once more when a
reload had happened).  Plain Python with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import time

from ansible_collections.runbook.ops.plugins.module_utils import _files
from ansible_collections.runbook.ops.plugins.module_utils._errors import RotationError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtensionOID
except ImportError:
    x509 = None

PEM_CERT_MARK = b"-----BEGIN CERTIFICATE-----"


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def _not_after(cert):
    return cert.not_valid_after_utc


def _not_before(cert):
    return cert.not_valid_before_utc


def describe(cert, now=None):
    """Secret-free facts about a certificate (what results and messages show)."""
    now = now or _utc_now()
    left = (_not_after(cert) - now).total_seconds() / 86400.0
    return {
        "serial": format(cert.serial_number, "x"),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": _not_before(cert).isoformat(),
        "not_after": _not_after(cert).isoformat(),
        "days_left": round(left, 1),
        "sans": san_names(cert),
        "fingerprint": "sha256:" + cert.fingerprint(hashes.SHA256()).hex(),
    }


def san_names(cert):
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    return ext.get_values_for_type(x509.DNSName) + [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]


def name_covered(name, sans):
    """True when ``name`` (a host name or an IP address) matches one of ``sans`` (RFC 6125: a wildcard
    stands for exactly one left-most label; IP addresses match exactly)."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for san in sans:
        if address is not None:
            try:
                if ipaddress.ip_address(san) == address:
                    return True
            except ValueError:
                continue
            continue
        host, pattern = name.lower().rstrip("."), san.lower().rstrip(".")
        if pattern.startswith("*."):
            head, _dot, rest = host.partition(".")
            if head and rest == pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def load_certificates(pem, what):
    if x509 is None:
        raise RotationError("TLS checks need the Python library cryptography on the managed host")
    if PEM_CERT_MARK not in pem:
        raise RotationError("%s holds no PEM certificate" % what)
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise RotationError("%s is not a readable PEM certificate (%s)" % (what, exc)) from None


class CertificatePair:
    """A certificate, its private key and the chain that goes with it (PEM bytes in, checks out)."""

    def __init__(self, cert_pem, key_pem, chain_pem=b"", cert_label="the certificate", key_label="the private key"):
        certs = load_certificates(cert_pem, cert_label)
        self.cert = certs[0]
        extra = certs[1:]  # a fullchain file: the chain follows the leaf
        self.chain = extra + (load_certificates(chain_pem, "the chain") if chain_pem else [])
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self.chain_pem = chain_pem
        try:
            self.key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            # the message of cryptography may quote the input: say only what is wrong
            raise RotationError("%s is not an unencrypted PEM private key" % key_label) from None

    def key_matches(self):
        mine = self.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        theirs = self.cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return mine == theirs

    def chain_problems(self):
        problems = []
        for child, parent in zip([self.cert] + self.chain, self.chain):
            try:
                child.verify_directly_issued_by(parent)
            except (InvalidSignature, ValueError, TypeError) as exc:  # InvalidSignature has no message
                problems.append("%s was not issued by the next chain certificate %s (%s)" % (
                    child.subject.rfc4514_string(), parent.subject.rfc4514_string(), exc.__class__.__name__))
        return problems

    def problems(self, names=(), min_days=0, now=None):
        """Everything that makes the pair unfit to install, in words; [] when it is fit."""
        now = now or _utc_now()
        problems = []
        if not self.key_matches():
            problems.append("the private key does not belong to the certificate (their public keys differ)")
        problems += self.chain_problems()
        sans = san_names(self.cert)
        missing = [name for name in names if not name_covered(name, sans)]
        if missing:
            problems.append("the certificate's names %s do not cover %s" % (sans or "(no subjectAltName)", ", ".join(missing)))
        if _not_before(self.cert) > now:
            problems.append("the certificate is not valid before %s" % _not_before(self.cert).isoformat())
        left = (_not_after(self.cert) - now).total_seconds() / 86400.0
        if left <= 0:
            problems.append("the certificate expired on %s" % _not_after(self.cert).isoformat())
        elif left < min_days:
            problems.append("the certificate expires in %.1f days, less than the %s required" % (left, min_days))
        return problems

    def fullchain_pem(self):
        """The leaf followed by its chain, as nginx's ssl_certificate wants it."""
        parts = [self.cert] + self.chain
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in parts)


def served_certificate(host, port, server_name=None, timeout=5.0):
    """The certificate a TLS server presents for ``server_name`` (SNI), unverified: we compare it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=server_name or None) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise RotationError("TLS handshake with %s:%s failed: %s" % (host, port, exc)) from None
    return x509.load_der_x509_certificate(der)


class TargetFiles:
    """Where the proxy reads the certificate (with its chain when ``chain_path`` is None) and the key."""

    def __init__(self, certificate_path, private_key_path, chain_path=None):
        self.certificate_path = certificate_path
        self.private_key_path = private_key_path
        self.chain_path = chain_path

    def contents(self, pair):
        """{path: (bytes, mode for a new file)} this pair writes."""
        wanted = {self.private_key_path: (pair.key_pem, _files.PRIVATE_FILE)}
        if self.chain_path:
            wanted[self.certificate_path] = (pair.cert.public_bytes(serialization.Encoding.PEM), 0o644)
            wanted[self.chain_path] = (b"".join(c.public_bytes(serialization.Encoding.PEM) for c in pair.chain), 0o644)
        else:
            wanted[self.certificate_path] = (pair.fullchain_pem(), 0o644)
        return wanted


class CertificateInstaller:
    """Backup, write, config test, reload, handshake check; revert on any failure."""

    def __init__(self, files, test_argv, reload_argv, run_command, check_mode=False):
        self.files = files
        self.test_argv = test_argv
        self.reload_argv = reload_argv
        self.run_command = run_command  # (argv) -> (rc, stdout, stderr)
        self.check_mode = check_mode

    def pending(self, pair):
        """The files whose bytes would change."""
        changes = {}
        for path, (data, mode) in self.files.contents(pair).items():
            try:
                with open(path, "rb") as handle:
                    if handle.read() == data:
                        continue
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise RotationError("cannot read %s: %s" % (path, exc.strerror)) from None
            changes[path] = (data, mode)
        return changes

    def _run(self, argv, what):
        rc, out, err = self.run_command(argv)
        if rc != 0:
            text = " ".join((err or out or "").split())
            return "%s failed (exit %d): %s" % (what, rc, text[-600:])
        return None

    def _backup(self, changes):
        backups = {}
        for path in changes:
            backups[path] = _files.private_copy(path) if os.path.exists(path) else None
        return backups

    def _restore(self, backups):
        for path, copy in backups.items():
            if copy:
                _files.restore_copy(copy, path)
            else:
                _files.unlink_quietly(path)

    def install(self, pair, served=None, wait_timeout=15.0, keep_backups=True):
        """Write the pair's files, test and reload the proxy, check the served certificate.

        Returns (changed, details); raises RotationError after putting everything back."""
        changes = self.pending(pair)
        details = {"files": sorted(changes), "backups": {}}
        if not changes or self.check_mode:
            return bool(changes), details
        backups = self._backup(changes)
        details["backups"] = {path: copy for path, copy in backups.items() if copy}
        reloaded = False
        try:
            for path, (data, mode) in changes.items():
                _files.atomic_write(path, data=data, mode=mode)
            problem = self._run(self.test_argv, "the proxy's config test (%s)" % " ".join(self.test_argv[:2]))
            if problem:
                raise RotationError("%s; the new certificate was not loaded" % problem)
            problem = self._run(self.reload_argv, "the reload")
            reloaded = True
            if problem:
                raise RotationError(problem)
            if served:
                details["served"] = self.wait_served(pair, served, wait_timeout)
        except BaseException as exc:
            self._restore(backups)
            undo = "the previous files were put back"
            if reloaded:
                again = self._run(self.reload_argv, "the reload after the revert")
                undo += " and the proxy reloaded" if not again else " but %s" % again
            for copy in backups.values():
                if copy:
                    _files.unlink_quietly(copy)
            if isinstance(exc, RotationError):
                raise RotationError("%s; %s" % (exc, undo), **exc.details) from None
            raise
        if not keep_backups:
            for copy in backups.values():
                if copy:
                    _files.unlink_quietly(copy)
            details["backups"] = {}
        return True, details

    def revert(self, backups, served=None, wait_timeout=15.0):
        """Put the files of an earlier ``install`` back from its ``backups`` ({path: copy}), test and reload the
        proxy, and check it presents the restored certificate.  Returns (changed, details)."""
        missing = [copy for copy in backups.values() if not os.path.exists(copy)]
        if missing:
            raise RotationError("the backup(s) %s do not exist; nothing to revert from" % ", ".join(sorted(missing)))
        changed = []
        for path, copy in sorted(backups.items()):
            with open(copy, "rb") as handle:
                data = handle.read()
            try:
                with open(path, "rb") as handle:
                    same = handle.read() == data
            except FileNotFoundError:
                same = False
            if not same:
                changed.append(path)
        details = {"files": changed}
        if not changed or self.check_mode:
            return bool(changed), details
        for path in changed:
            _files.restore_copy(backups[path], path)
        problem = self._run(self.test_argv, "the proxy's config test (%s)" % " ".join(self.test_argv[:2])) or \
            self._run(self.reload_argv, "the reload")
        if problem:
            raise RotationError("the previous files are back but %s" % problem)
        if served:
            with open(self.files.certificate_path, "rb") as handle:
                restored = load_certificates(handle.read(), self.files.certificate_path)[0]
            details["served"] = self._wait_for(restored, served, wait_timeout)
        return True, details

    def wait_served(self, pair, served, wait_timeout):
        return self._wait_for(pair.cert, served, wait_timeout)

    def _wait_for(self, cert, served, wait_timeout):
        """Handshake until the proxy presents the new certificate (workers of a reloaded nginx change over
        within a moment) or the deadline passes."""
        host, port, server_name = served
        wanted = describe(cert)
        deadline = time.monotonic() + wait_timeout
        while True:
            try:
                seen = describe(served_certificate(host, port, server_name))
            except RotationError as exc:
                seen = {"error": str(exc)}
            if seen.get("serial") == wanted["serial"] and seen.get("not_after") == wanted["not_after"]:
                return {"serial": seen["serial"], "days_left": seen["days_left"], "not_after": seen["not_after"]}
            if time.monotonic() >= deadline:
                shown = seen.get("error") or "serial %s, expiring %s" % (seen["serial"], seen["not_after"])
                raise RotationError("%s:%s presents another certificate (%s; expected serial %s, expiring %s)"
                                    % (host, port, shown, wanted["serial"], wanted["not_after"]))
            time.sleep(0.2)
