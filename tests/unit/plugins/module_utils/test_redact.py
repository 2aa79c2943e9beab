# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every redaction rule of _redact, the encoded forms of known secrets, and chunk boundaries: a stream cut
anywhere redacts exactly as the whole text does."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from ansible_collections.runbook.ops.plugins.module_utils._redact import (
    MIN_SECRET_CHARS, RULES, KnownSecrets, Redactor, SecretScan, secret_forms, secret_name)

SECRET = "s3cr3t/Value+XYZ=9"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAsecretkeymaterial\nAAAAmoresecretmaterial\n"
       "-----END RSA PRIVATE KEY-----\n")


def redact(text, secrets=(), **kwargs):
    redactor = Redactor(KnownSecrets(secrets), **kwargs)
    return redactor.text(text), dict((k, v) for k, v in redactor.counts.items() if v)


@pytest.mark.parametrize("name", ["PASSWORD", "db_password", "PGPASSWORD", "SECRET_KEY_BASE", "api-token", "ApiKey",
                                  "ENCRYPTION_KEY", "AWS_ACCESS_KEY_ID", "credentials", "private", "AUTH", "authorization",
                                  "SENTRY_DSN", "DATABASE_URL", "REDIS_URL", "app.db.url", "x-api-token", "sessionSecret",
                                  "passphrase", "key"])
def test_secret_names(name):
    assert secret_name(name)


@pytest.mark.parametrize("name", ["keys", "keyspace", "monkey", "user", "PATH", "HOSTNAME", "author", "passes", "url",
                                  "APP_TAG", "expires", "usage"])
def test_names_that_are_not_secret(name):
    assert not secret_name(name)


def test_extra_names_by_pattern():
    import re
    assert secret_name("MY_LOCKER_CODE", re.compile("locker_code", re.I))
    assert not secret_name("MY_LOCKER_CODE")


@pytest.mark.parametrize("line, expected", [
    ("API_TOKEN=abc123", "API_TOKEN=[REDACTED:secret_key]"),
    ('export DB_PASSWORD="p a s s"', 'export DB_PASSWORD="[REDACTED:secret_key]"'),
    ("DB_PASSWORD='p a s s'", "DB_PASSWORD='[REDACTED:secret_key]'"),
    ("  password: two words", "  password: [REDACTED:secret_key]"),
    ("- SECRET_KEY=with spaces too", "- SECRET_KEY=[REDACTED:secret_key]"),
    ('{"password": "abc", "user": "bob"}', '{"password": "[REDACTED:secret_key]", "user": "bob"}'),
    ('{"password": "a\\"b", "n": 1}', '{"password": "[REDACTED:secret_key]", "n": 1}'),
    ("GET https://h/x?token=qqq&page=2 200", "GET https://h/x?token=[REDACTED:secret_key]&page=2 200"),
    ("login user=bob password=hunter22 ok", "login user=bob password=[REDACTED:secret_key] ok"),
    ("host=db dbname=app user=app password=pw sslmode=require",
     "host=db dbname=app user=app password=[REDACTED:secret_key] sslmode=require"),
    ("keyspace: db0 keys=12", "keyspace: db0 keys=12"),
    ("PATH=/usr/bin", "PATH=/usr/bin"),
])
def test_secret_key_rule(line, expected):
    text, counts = redact(line)
    assert text == expected
    assert counts == ({"secret_key": 1} if text != line else {})


@pytest.mark.parametrize("line, expected, rule", [
    ("Authorization: Bearer abcdefghijkl", "Authorization: [REDACTED:auth_header]", "auth_header"),
    ("authorization: Basic dXNlcjpwYXNz", "authorization: [REDACTED:auth_header]", "auth_header"),
    ("X-Api-Token: tok123", "X-Api-Token: [REDACTED:auth_header]", "auth_header"),
    ("x-api-key: k", "x-api-key: [REDACTED:auth_header]", "auth_header"),
    ("Cookie: session=abc; theme=dark", "Cookie: [REDACTED:auth_header]", "auth_header"),
    ("curl -H 'Authorization: Bearer abcdefghijkl' http://x", "curl -H 'Authorization: [REDACTED:auth_header]' http://x",
     "auth_header"),
    ("sent bearer abcdefgh12345678 upstream", "sent bearer [REDACTED:bearer_token] upstream", "bearer_token"),
    ("jwt %s end" % JWT, "jwt [REDACTED:jwt] end", "jwt"),
    ("postgres://app:pw0rd@127.0.0.1:5432/db", "postgres://app:[REDACTED:connection_string]@127.0.0.1:5432/db",
     "connection_string"),
    ("redis://:pass-word@127.0.0.1:6379/0", "redis://:[REDACTED:connection_string]@127.0.0.1:6379/0", "connection_string"),
    ("amqp://guest:g/u+e=st@mq/vhost", "amqp://guest:[REDACTED:connection_string]@mq/vhost", "connection_string"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "aws_secret_access_key = [REDACTED:aws_secret_key]", "aws_secret_key"),
    ("ALTER ROLE app PASSWORD 'x''y' VALID UNTIL 'infinity'", "ALTER ROLE app PASSWORD '[REDACTED:sql_password]' VALID "
     "UNTIL 'infinity'", "sql_password"),
])
def test_pattern_rules(line, expected, rule):
    text, counts = redact(line)
    assert text == expected
    assert rule in counts


def test_url_without_password_is_left_alone():
    for line in ("https://example.invalid/path", "postgres://app@127.0.0.1/db", "see http://h:8080/x"):
        assert redact(line) == (line, {})


def test_pem_block_across_lines_goes_whole():
    text, counts = redact("before\n" + PEM + "after\n")
    assert text == "before\n[REDACTED:pem_private_key]\nafter\n"
    assert counts == {"pem_private_key": 1}
    text, counts = redact('"data": "-----BEGIN PRIVATE KEY-----\\nMIIabc\\n-----END PRIVATE KEY-----\\n", "n": 1')
    assert text == '"data": "[REDACTED:pem_private_key]\\n", "n": 1'  # escaped newlines of a JSON log line


def test_unterminated_pem_block_runs_to_the_end():
    text, counts = redact("x\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIsecret\nmore\n")
    assert text == "x\n[REDACTED:pem_private_key]"
    assert counts == {"pem_private_key": 1}


def test_public_pem_blocks_stay():
    cert = "-----BEGIN CERTIFICATE-----\nMIIBpublic\n-----END CERTIFICATE-----\n"
    assert redact(cert) == (cert, {})


def test_known_secret_in_every_form():
    raw = SECRET.encode()
    samples = [SECRET, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="),
               urllib.parse.quote(SECRET, safe=""), urllib.parse.quote_plus(SECRET), json.dumps(SECRET)[1:-1]]
    for sample in samples:
        text, counts = redact("value <%s> end" % sample, [SECRET])
        assert text == "value <[REDACTED:known_secret]> end", sample
        assert counts == {"known_secret": 1}


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:", "a-longer-user:"])
def test_known_secret_inside_larger_base64(prefix):
    """HTTP Basic auth: base64 of ``user:secret``; the secret's bytes sit at any alignment."""
    encoded = base64.b64encode((prefix + SECRET + "-tail").encode()).decode()
    text, counts = redact("Basic " + encoded, [SECRET])
    assert counts.get("known_secret") == 1, (prefix, text)
    for form in secret_forms(SECRET):
        assert form not in text


def test_json_escaped_secret():
    secret = 'quote"and\\backslash'
    text, counts = redact(json.dumps({"note": "x " + secret}), [secret])
    assert "backslash" not in text and counts == {"known_secret": 1}


def test_short_secrets_are_ignored_and_counted():
    known = KnownSecrets(["abc", "", "long-enough-value"])
    assert known.ignored == 1
    assert len(known) == 1
    assert MIN_SECRET_CHARS == 6


def test_overlapping_rules_give_one_marker_counted_for_the_first_rule():
    text, counts = redact("postgres://app:%s@h/db" % SECRET, [SECRET])
    assert text == "postgres://app:[REDACTED:known_secret]@h/db"
    assert counts == {"known_secret": 1}


def test_counts_never_hold_values_and_rules_are_known():
    redactor = Redactor(KnownSecrets([SECRET]))
    redactor.text("API_TOKEN=%s %s" % (SECRET, JWT))
    assert set(redactor.counts) <= set(RULES)
    assert all(isinstance(v, int) for v in redactor.counts.values())


def test_json_values_by_structure():
    redactor = Redactor(KnownSecrets([SECRET]))
    doc = {"Config": {"Env": ["API_TOKEN=abc", "PATH=/bin"], "Cmd": ["sh", "-c", "echo " + JWT]},
           "password": "p", "auth": {"user": "bob"}, "keys": 12, "token": None, "enabled": True,
           SECRET: "key holds it", "note": 'has "%s" inside' % SECRET}
    out = redactor.value(doc)
    assert out["Config"]["Env"] == ["API_TOKEN=[REDACTED:secret_key]", "PATH=/bin"]
    assert out["Config"]["Cmd"][2] == "echo [REDACTED:jwt]"
    assert out["password"] == "[REDACTED:secret_key]"
    assert out["auth"] == {"user": "bob"} and out["keys"] == 12 and out["token"] is None and out["enabled"] is True
    assert "[REDACTED:known_secret]" in out and out["note"] == 'has "[REDACTED:known_secret]" inside'
    data = redactor.json_bytes(doc)
    assert json.loads(data)["password"] == "[REDACTED:secret_key]"  # still valid JSON
    assert SECRET.encode() not in data


def test_json_second_pass_does_not_count_twice():
    redactor = Redactor()
    once = redactor.value({"password": "p"})
    first = dict(redactor.counts)
    assert redactor.value(once) == once
    assert dict(redactor.counts) == {"secret_key": first["secret_key"] + 0}


def test_value_without_names_or_counts():
    redactor = Redactor(KnownSecrets([SECRET]))
    out = redactor.value({"secret_key": 3, "x": SECRET}, by_name=False, count=False)
    assert out == {"secret_key": 3, "x": "[REDACTED:known_secret]"}
    assert not redactor.counts


def test_non_utf8_bytes_pass_through():
    data = b"\xff\xfe binary \x00 API_TOKEN=abc\n\xc3\x28 end\n"
    out = Redactor().bytes(data)
    assert out == b"\xff\xfe binary \x00 API_TOKEN=[REDACTED:secret_key]\n\xc3\x28 end\n"


DOCUMENT = ("line one\nAPI_TOKEN=%s\nAuthorization: Bearer %s\n" % (SECRET, JWT)
            + "x" * 300 + SECRET + "y" * 170 + " " + JWT + " " + "z" * 333 + " postgres://a:%s@h/d" % SECRET + "\n"
            + PEM + "q" * 900 + "-----BEGIN PRIVATE KEY-----" + "k" * 700 + "-----END PRIVATE KEY-----tail\n"
            + "w" * 1000 + "\n" + base64.b64encode(("me:" + SECRET).encode()).decode() + " end")


def chunked(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64, 100, 257, 4096])
def test_any_chunking_redacts_like_the_whole(size):
    """Lines longer than max_line go in windows: a secret, a JWT or a PEM block across a window or chunk edge is
    still caught, and the result does not depend on where the reads cut."""
    data = DOCUMENT.encode()
    whole = Redactor(KnownSecrets([SECRET]), max_line=200, overlap=64)
    expected = whole.bytes(data)
    redactor = Redactor(KnownSecrets([SECRET]), max_line=200, overlap=64)
    out = b"".join(redactor.stream(chunked(data, size)))
    assert out == expected
    assert redactor.counts == whole.counts
    for form in secret_forms(SECRET):
        assert form.encode() not in out
    assert JWT.encode() not in out and b"secretkeymaterial" not in out and b"kkkk" not in out
    assert out.count(b"[REDACTED:pem_private_key]") == 2
    assert b"tail\n" in out and out.endswith(b" end")


def test_window_cut_never_splits_a_secret():
    """Secrets at every offset around the window edge of a line far over max_line."""
    for offset in range(0, 140, 3):
        line = "a" * offset + SECRET + "b" * 500
        redactor = Redactor(KnownSecrets([SECRET]), max_line=128, overlap=64)
        out = b"".join(redactor.stream(chunked(line.encode(), 50)))
        assert SECRET.encode() not in out, offset
        assert redactor.counts["known_secret"] == 1


def test_scan_finds_every_form_across_reads():
    import io
    known = KnownSecrets([SECRET])
    scan = SecretScan(known, chunk=7)
    for form in secret_forms(SECRET):
        assert scan.found(io.BytesIO(b"x" * 11 + form.encode() + b"y" * 5)), form
    assert not scan.found(io.BytesIO(b"nothing here [REDACTED:known_secret]" * 10))
    assert not SecretScan(KnownSecrets()).found(io.BytesIO(b"anything"))


def test_multibyte_secret_split_inside_a_character():
    secret = "pässwörd-ünïcode"
    data = ("x %s y\n" % secret).encode("utf-8")
    cut = data.index("ä".encode("utf-8")) + 1  # between the two bytes of one character
    redactor = Redactor(KnownSecrets([secret]))
    out = b"".join(redactor.stream([data[:cut], data[cut:]]))
    assert out == b"x [REDACTED:known_secret] y\n"


def test_extra_secret_names_apply_to_streams():
    import re
    redactor = Redactor(extra_names=re.compile("locker_code", re.I))
    assert redactor.bytes(b"set LOCKER_CODE=1234 other=5\n") == b"set LOCKER_CODE=[REDACTED:secret_key] other=5\n"
