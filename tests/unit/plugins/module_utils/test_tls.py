# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Name matching and refusal wording of _tls (nginx itself is covered by tests/integration/rotation2)."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _tls
from ansible_collections.runbook.ops.plugins.module_utils._errors import RotationError


@pytest.mark.parametrize("name, sans, covered", [
    ("app.example.com", ["app.example.com"], True),
    ("APP.example.com.", ["app.example.com"], True),
    ("a.example.com", ["*.example.com"], True),
    ("example.com", ["*.example.com"], False),
    ("a.b.example.com", ["*.example.com"], False),
    ("127.0.0.1", ["127.0.0.1"], True),
    ("127.0.0.1", ["localhost"], False),
    ("::1", ["0:0:0:0:0:0:0:1"], True),
    ("localhost", [], False),
])
def test_name_covered(name, sans, covered):
    assert _tls.name_covered(name, sans) is covered


def test_not_pem_is_refused_without_showing_the_text():
    with pytest.raises(RotationError, match="holds no PEM certificate"):
        _tls.CertificatePair(b"secret-looking text", b"")


@pytest.mark.skipif(_tls.x509 is None, reason="cryptography missing")
def test_an_encrypted_or_garbled_key_is_refused_by_name(tmp_path):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(RotationError) as err:
        _tls.CertificatePair(pem, b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n", key_label="new.key")
    assert str(err.value) == "new.key is not an unencrypted PEM private key"
    pair = _tls.CertificatePair(pem, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    problems = pair.problems(names=["t"], min_days=7)
    assert problems == ["the certificate's names (no subjectAltName) do not cover t",
                        "the certificate expires in 1.0 days, less than the 7 required"]
