# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret generation, fingerprints and SCRAM-SHA-256 verifiers (against PostgreSQL's own)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import _secrets
from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "postgresql-15-scram-verifiers.json")


def captured():
    with open(FIXTURE, encoding="utf-8") as handle:
        return json.load(handle)["cases"]


@pytest.mark.parametrize("kind, length, pattern", [
    ("hex", 32, r"[0-9a-f]{64}"),
    ("hex", 16, r"[0-9a-f]{32}"),
    ("base64", 32, r"[A-Za-z0-9+/]{43}="),
    ("urlsafe", 32, r"[A-Za-z0-9_-]{43}"),
    ("alnum", 40, r"[A-Za-z0-9]{40}"),
    ("fernet", 0, r"[A-Za-z0-9_-]{43}="),
])
def test_generate_shapes(kind, length, pattern):
    values = {_secrets.generate(kind, length) for _index in range(20)}
    assert len(values) == 20
    for value in values:
        assert re.fullmatch(pattern, value), value


def test_base64_decodes_to_the_asked_bytes():
    assert len(base64.b64decode(_secrets.generate("base64", 24))) == 24
    assert len(binascii.unhexlify(_secrets.generate("hex", 20))) == 20


def test_fernet_key_is_accepted_by_cryptography():
    fernet = pytest.importorskip("cryptography.fernet")
    key = _secrets.generate("fernet")
    box = fernet.Fernet(key.encode("ascii"))
    assert box.decrypt(box.encrypt(b"x")) == b"x"


@pytest.mark.parametrize("kind, length", [("hex", 15), ("base64", 8), ("urlsafe", 0), ("alnum", 21), ("nope", 32),
                                          ("hex", True), ("hex", "32")])
def test_generate_refuses_weak_or_unknown(kind, length):
    with pytest.raises(ParameterError):
        _secrets.generate(kind, length)


def test_describe():
    assert _secrets.describe("hex", 32) == "32-byte hex"
    assert _secrets.describe("alnum", 40) == "40-character alnum"
    assert _secrets.describe("fernet", 32) == "Fernet key"


def test_fingerprint_is_short_stable_and_not_the_value():
    value = "a-secret-value"
    fp = _secrets.fingerprint(value)
    assert fp == "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]
    assert fp == _secrets.fingerprint(value)
    assert fp != _secrets.fingerprint(value + "x")
    assert value not in fp
    assert _secrets.fingerprint(None) is None
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", _secrets.fingerprint(""))


def rfc_keys(password_bytes, salt, iterations):
    """RFC 5802 section 3, written out independently of the module."""
    salted = hashlib.pbkdf2_hmac("sha256", password_bytes, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def test_verifier_format_and_rfc_derivation():
    salt = bytes(range(16))
    verifier = _secrets.scram_verifier("pencil", salt=salt, iterations=4096)
    prefix, rest = verifier.split("$", 1)
    assert prefix == "SCRAM-SHA-256"
    iterations, salt_b64, stored, server = re.fullmatch(r"(\d+):([^$]+)\$([^:]+):(.+)", rest).groups()
    assert int(iterations) == 4096 and base64.b64decode(salt_b64) == salt
    assert (base64.b64decode(stored), base64.b64decode(server)) == rfc_keys(b"pencil", salt, 4096)


def test_fresh_salt_every_time():
    one, two = _secrets.scram_verifier("same"), _secrets.scram_verifier("same")
    assert one != two
    assert _secrets.scram_matches("same", one) and _secrets.scram_matches("same", two)
    assert len(_secrets.parse_scram_verifier(one)[1]) == 16


@pytest.mark.parametrize("case", captured(), ids=lambda case: case["label"])
def test_matches_verifiers_made_by_postgresql(case):
    """Verifiers PostgreSQL 15 itself computed (fixtures/README.md says how they were captured)."""
    verifier = case["verifier"]
    assert _secrets.scram_matches(case["password"], verifier)
    assert not _secrets.scram_matches(case["password"] + "x", verifier)
    iterations, salt, _stored, _server = _secrets.parse_scram_verifier(verifier)
    # the same salt and iteration count reproduce PostgreSQL's verifier exactly
    assert _secrets.scram_verifier(case["password"], salt=salt, iterations=iterations) == verifier


def test_saslprep_is_what_makes_the_unicode_cases_match():
    """Without SASLprep the normalized cases would not match: the fixture really tests it."""
    cases = {case["label"]: case for case in captured()}
    for label in ("nfkc_fullwidth", "mapped_to_nothing"):
        case = cases[label]
        _iterations, salt, stored, _server = _secrets.parse_scram_verifier(case["verifier"])
        assert rfc_keys(case["password"].encode("utf-8"), salt, 4096)[0] != stored
    assert _secrets.saslprep("\uff50\uff41\uff53\uff53\u00a0word") == b"pass word"
    assert _secrets.saslprep("I\u00adX") == b"IX"
    # a prohibited (unassigned) character: PostgreSQL falls back to the raw bytes, and so do we
    assert _secrets.saslprep("pass\u0221word") == "pass\u0221word".encode("utf-8")
    assert _secrets.saslprep("plain ascii\t") == b"plain ascii\t"


@pytest.mark.parametrize("text", [None, "", "md5" + "0" * 32, "plain password", "SCRAM-SHA-256$4096:abc",
                                  "SCRAM-SHA-256$x:AAAA$AAAA:AAAA", "SCRAM-SHA-1$4096:AAAA$%s:%s" % ("A" * 44, "A" * 44),
                                  "SCRAM-SHA-256$4096:AAAA$AAAA:AAAA"])
def test_not_a_verifier(text):
    assert not _secrets.is_scram_verifier(text)
    assert not _secrets.scram_matches("x", text)
    if text is not None:
        with pytest.raises(ParameterError) as info:
            _secrets.parse_scram_verifier(text)
        assert text == "" or text not in str(info.value)


def test_verifier_parameters_checked():
    with pytest.raises(ParameterError):
        _secrets.scram_verifier(None)
    with pytest.raises(ParameterError):
        _secrets.scram_verifier("x", iterations=0)
