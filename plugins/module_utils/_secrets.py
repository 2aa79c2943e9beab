# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret values: generation, fingerprints, and PostgreSQL SCRAM-SHA-256 verifiers.  Plain Python.

    generate("urlsafe", 32)            # 32 random bytes, URL-safe base64 without padding
    fingerprint(value)                 # 'sha256:3f2a9c0d41be': safe to show, log and store
    scram_verifier(password)           # 'SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>'
    scram_matches(password, verifier)  # True when the verifier was made from this password

The verifier is what PostgreSQL stores in pg_authid.rolpassword (RFC 5802 and RFC 7677, in
PostgreSQL's text form).  Sending it in ``ALTER ROLE ... PASSWORD '<verifier>'`` sets the
password without the plaintext ever reaching the server, its logs or pg_stat_activity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import string
import unicodedata

from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError

KINDS = ("hex", "base64", "urlsafe", "alnum", "fernet")
DEFAULT_LENGTH = 32
# 16 bytes (128 bits) is the floor every generated kind must reach; alnum needs 22 characters for it.
MIN_BYTES = 16
MIN_ALNUM = 22
ALNUM = string.ascii_letters + string.digits
FINGERPRINT_HEX = 12

SCRAM_PREFIX = "SCRAM-SHA-256"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations, settable from PostgreSQL 16)
SCRAM_SALT_BYTES = 16  # PostgreSQL's SCRAM_DEFAULT_SALT_LEN
SCRAM_KEY_BYTES = 32


# --------------------------------------------------------------------------- generation

def generate(kind="urlsafe", length=DEFAULT_LENGTH):
    """A new random secret from ``secrets``.

    ``length`` is the number of random bytes for ``hex`` (2 characters each, like
    ``openssl rand -hex``), ``base64`` (padded) and ``urlsafe`` (unpadded, ``-`` and ``_``), and
    the number of characters for ``alnum`` (letters and digits).  ``fernet`` ignores it: a Fernet
    key is always 32 bytes in URL-safe base64 (44 characters), as ``Fernet.generate_key()`` makes.
    """
    if kind not in KINDS:
        raise ParameterError("unknown secret kind %r; use one of %s" % (kind, ", ".join(KINDS)))
    if isinstance(length, bool) or not isinstance(length, int):
        raise ParameterError("length must be an integer")
    if kind == "fernet":
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
    if kind == "alnum":
        if length < MIN_ALNUM:
            raise ParameterError("length %d is too short for alnum: at least %d characters (128 bits)" % (length, MIN_ALNUM))
        return "".join(secrets.choice(ALNUM) for _index in range(length))
    if length < MIN_BYTES:
        raise ParameterError("length %d is too short for %s: at least %d random bytes" % (length, kind, MIN_BYTES))
    if kind == "hex":
        return secrets.token_hex(length)
    if kind == "base64":
        return base64.b64encode(secrets.token_bytes(length)).decode("ascii")
    return secrets.token_urlsafe(length)


def describe(kind, length):
    """Human words for what ``generate(kind, length)`` makes, e.g. '32-byte hex'."""
    if kind == "fernet":
        return "Fernet key"
    if kind == "alnum":
        return "%d-character alnum" % length
    return "%d-byte %s" % (length, kind)


# --------------------------------------------------------------------------- fingerprints

def fingerprint(value):
    """``sha256:`` and the first 12 hex digits of the SHA-256 of the UTF-8 value, or None for None.

    Enough to tell secrets apart in output, diffs and state records (48 bits), far too little to
    recover a generated secret.  A weak human-chosen password could still be confirmed by guessing,
    which is one more reason to generate them.
    """
    if value is None:
        return None
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    return "sha256:%s" % digest[:FINGERPRINT_HEX]


# --------------------------------------------------------------------------- SCRAM-SHA-256

def saslprep(password):
    """The password bytes PostgreSQL hashes: SASLprep (RFC 4013) as PostgreSQL's pg_saslprep
    applies it.  Pure ASCII is used as is; a string SASLprep refuses (prohibited or unassigned
    characters, bad bidirectional text) is used as raw UTF-8, as PostgreSQL does."""
    raw = password.encode("utf-8")
    if all(ord(char) < 128 for char in password):
        return raw
    mapped = "".join(" " if stringprep.in_table_c12(char) else char
                     for char in password if not stringprep.in_table_b1(char))
    normalized = unicodedata.normalize("NFKC", mapped)
    if not normalized:
        return raw
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3, stringprep.in_table_c4,
                  stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
                  stringprep.in_table_c9, stringprep.in_table_a1)
    for char in normalized:
        if any(table(char) for table in prohibited):
            return raw
    rand_al = [stringprep.in_table_d1(char) for char in normalized]
    if any(rand_al):
        if any(stringprep.in_table_d2(char) for char in normalized):
            return raw
        if not (rand_al[0] and rand_al[-1]):
            return raw
    return normalized.encode("utf-8")


def _scram_keys(password, salt, iterations):
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations, SCRAM_KEY_BYTES)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def scram_verifier(password, salt=None, iterations=SCRAM_ITERATIONS):
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64 parts) for ``password``,
    with a fresh 16-byte salt unless ``salt`` (bytes) is given."""
    if not isinstance(password, str):
        raise ParameterError("the password must be a string")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ParameterError("SCRAM iterations must be a positive integer")
    salt = secrets.token_bytes(SCRAM_SALT_BYTES) if salt is None else salt
    stored_key, server_key = _scram_keys(password, salt, iterations)
    return "%s$%d:%s$%s:%s" % (SCRAM_PREFIX, iterations, _b64(salt), _b64(stored_key), _b64(server_key))


def parse_scram_verifier(verifier):
    """(iterations, salt, stored_key, server_key) of a verifier; ParameterError when it is not one
    (an md5 hash, a plaintext, NULL).  The message never includes the text given."""
    try:
        prefix, iteration_salt, keys = verifier.split("$")
        iterations, salt = iteration_salt.split(":")
        stored_key, server_key = keys.split(":")
        parsed = (int(iterations), base64.b64decode(salt, validate=True), base64.b64decode(stored_key, validate=True),
                  base64.b64decode(server_key, validate=True))
    except (AttributeError, ValueError, TypeError):
        raise ParameterError("not a SCRAM-SHA-256 verifier") from None
    if prefix != SCRAM_PREFIX or parsed[0] < 1 or len(parsed[2]) != SCRAM_KEY_BYTES or len(parsed[3]) != SCRAM_KEY_BYTES:
        raise ParameterError("not a SCRAM-SHA-256 verifier")
    return parsed


def is_scram_verifier(text):
    try:
        parse_scram_verifier(text)
    except ParameterError:
        return False
    return True


def scram_matches(password, verifier):
    """True when ``verifier`` was computed from ``password`` (constant-time comparison of both
    keys).  False for anything that is not a SCRAM-SHA-256 verifier, including None."""
    if verifier is None or not is_scram_verifier(verifier):
        return False
    iterations, salt, stored_key, server_key = parse_scram_verifier(verifier)
    mine_stored, mine_server = _scram_keys(password, salt, iterations)
    return hmac.compare_digest(mine_stored, stored_key) & hmac.compare_digest(mine_server, server_key)
