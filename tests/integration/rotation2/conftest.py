# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL roles with statement logging (pg_roles.py), a private redis-server and a private nginx, all on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from pg_roles import new_password, pg_roles  # noqa: F401  pylint: disable=unused-import
from sample_service_fixture import free_port


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port (the shared one on 6379 is never touched)."""

    def __init__(self, base, password=None):
        self.port = free_port()
        self.dir = str(base)
        self.pidfile = os.path.join(self.dir, "redis.pid")
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "yes", "--pidfile", self.pidfile, "--dir", self.dir,
                "--logfile", os.path.join(self.dir, "redis.log")]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        if password:
            self.client.config_set("requirepass", password)
            self.client = redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_timeout=5)

    def auth_ok(self, password, username=None):
        import redis

        try:
            redis.Redis(host="127.0.0.1", port=self.port, username=username, password=password, socket_timeout=5).ping()
        except (redis.AuthenticationError, redis.ResponseError):
            return False
        return True

    def stop(self):
        try:
            with open(self.pidfile, encoding="ascii") as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists("/proc/%d" % pid):
            time.sleep(0.05)


@pytest.fixture()
def private_redis(tmp_path_factory):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (scripts/install-system-packages.sh installs it)")
    started = []

    def factory(password=None):
        server = PrivateRedis(tmp_path_factory.mktemp("redis"), password=password)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


# --------------------------------------------------------------------------- TLS: certificates and nginx

class CertFactory:
    """Certificates made with cryptography: a root CA, an intermediate, leaves with chosen names and dates."""

    def __init__(self):
        self.root_key, self.root = self._ca("rbops test root", None, None)
        self.inter_key, self.inter = self._ca("rbops test intermediate", self.root_key, self.root)

    @staticmethod
    def _key():
        from cryptography.hazmat.primitives.asymmetric import ec
        return ec.generate_private_key(ec.SECP256R1())

    def _ca(self, cn, issuer_key, issuer):
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        key = self._key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(issuer_key or key, hashes.SHA256()))
        return key, cert

    def leaf(self, names=("localhost", "127.0.0.1"), days=90, start_days=-1, issuer=None):
        """(cert PEM, key PEM, chain PEM, serial hex) of a leaf issued by the intermediate (or ``issuer``)."""
        import datetime
        import ipaddress
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import NameOID

        issuer_key, issuer_cert = issuer or (self.inter_key, self.inter)
        key = self._key()
        sans = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(issuer_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now + datetime.timedelta(days=start_days))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(issuer_key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return (cert.public_bytes(serialization.Encoding.PEM), key_pem, self.inter.public_bytes(serialization.Encoding.PEM),
                format(cert.serial_number, "x"))


NGINX_CONF = """worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {dir}/tls/fullchain.pem;
        ssl_certificate_key {dir}/tls/key.pem;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


class PrivateNginx:
    """nginx from Debian with a configuration of its own on a free loopback port."""

    def __init__(self, base, certs):
        self.dir = str(base)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.cert_path = os.path.join(self.dir, "tls", "fullchain.pem")
        self.key_path = os.path.join(self.dir, "tls", "key.pem")
        os.makedirs(os.path.join(self.dir, "tmp"), mode=0o700)
        os.makedirs(os.path.join(self.dir, "tls"), mode=0o700)
        cert, key, chain, self.serial = certs.leaf()
        with open(self.cert_path, "wb") as handle:
            handle.write(cert + chain)
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        with open(self.conf, "w", encoding="utf-8") as handle:
            handle.write(NGINX_CONF.format(dir=self.dir, port=self.port))
        proc = subprocess.run(["nginx", "-c", self.conf, "-g", "daemon on;"], capture_output=True, text=True, timeout=30,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError("nginx did not start: %s" % proc.stderr)
        deadline = time.monotonic() + 10
        while self.served_serial() is None:
            if time.monotonic() > deadline:
                raise RuntimeError("nginx does not answer on port %d" % self.port)
            time.sleep(0.1)

    def served_serial(self):
        import ssl
        import socket
        from cryptography import x509

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=3) as sock:
                with context.wrap_socket(sock, server_hostname="localhost") as tls:
                    return format(x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number, "x")
        except OSError:
            return None

    def files(self):
        with open(self.cert_path, "rb") as cert, open(self.key_path, "rb") as key:
            return cert.read(), key.read()

    def stop(self):
        """SIGQUIT to the master named in the pid file (``nginx -s quit`` would parse the configuration first,
        and a test may have broken it on purpose); SIGKILL when it lingers."""
        try:
            with open(os.path.join(self.dir, "nginx.pid"), encoding="ascii") as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 3)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if os.path.exists("/proc/%d" % pid):
            os.kill(pid, 9)


@pytest.fixture(scope="session")
def cert_factory():
    return CertFactory()


@pytest.fixture()
def private_nginx(tmp_path_factory, cert_factory):
    if not shutil.which("nginx"):
        pytest.fail("nginx is not installed (scripts/install-system-packages.sh installs nginx-light)")
    server = PrivateNginx(tmp_path_factory.mktemp("nginx"), cert_factory)
    yield server
    server.stop()
