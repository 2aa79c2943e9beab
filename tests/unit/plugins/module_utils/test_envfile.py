# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dotenv parsing and byte-preserving rewrites."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile, restore_backup
from ansible_collections.runbook.ops.plugins.module_utils._errors import EnvFileError

SAMPLE = (
    b"# settings of the app\n"
    b"\n"
    b"export API_TOKEN=old-token-1   # rotated monthly\n"
    b"SECRET_KEY='single quoted $x'\n"
    b'JWT_SECRET="dq \\"esc\\" \\\\ \\n end"  # jwt\n'
    b"  SPACED = spaced value  \n"
    b"EMPTY=\n"
    b"EMPTY_QUOTED=''\n"
    b"URL=postgresql://u:p@h/db?x=1#frag\n"
    b"dotted.key-name=1\n"
    b"   # indented comment\n"
    b"LAST=tail"
)


def parsed(data=SAMPLE):
    return EnvFile.parse(data)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_values_as_every_reader_sees_them():
    env = parsed()
    assert env.as_dict() == {
        "API_TOKEN": "old-token-1",
        "SECRET_KEY": "single quoted $x",
        "JWT_SECRET": 'dq "esc" \\ \n end',
        "SPACED": "spaced value",
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "URL": "postgresql://u:p@h/db?x=1#frag",
        "dotted.key-name": "1",
        "LAST": "tail",
    }
    assert env.quote_of("SECRET_KEY") == "single"
    assert env.quote_of("JWT_SECRET") == "double"
    assert env.quote_of("API_TOKEN") == "none"
    assert env.line_of("LAST") == 12
    assert "EMPTY" in env and "MISSING" not in env
    assert env.get("MISSING", "d") == "d"


def test_unchanged_file_renders_byte_identical():
    assert parsed().render() == SAMPLE
    crlf = SAMPLE.replace(b"\n", b"\r\n") + b"\r\n"
    assert EnvFile.parse(crlf).render() == crlf
    bom = b"\xef\xbb\xbfA=1\n"
    assert EnvFile.parse(bom).render() == bom


def test_set_rewrites_only_the_value_keeping_prefix_spacing_and_comment():
    env = parsed()
    assert env.set("API_TOKEN", "new-token-2") is True
    assert env.render() == SAMPLE.replace(b"old-token-1", b"new-token-2")
    env = parsed()
    env.set("SPACED", "x")
    assert b"  SPACED = x  \n" in env.render()


def test_set_same_value_is_no_change():
    env = parsed()
    assert env.set("SECRET_KEY", "single quoted $x") is False
    assert env.render() == SAMPLE


def test_set_keeps_quote_style():
    env = parsed()
    env.set("SECRET_KEY", "abc")
    env.set("JWT_SECRET", "def")
    out = env.render()
    assert b"SECRET_KEY='abc'\n" in out
    assert b'JWT_SECRET="def"  # jwt\n' in out


def test_values_that_need_quotes_get_them():
    env = parsed()
    env.set("API_TOKEN", "has space")
    env.set("EMPTY", "a#b $c")
    env.set("SECRET_KEY", "it's")
    env.set("JWT_SECRET", "cost $5")
    out = env.render()
    assert b"export API_TOKEN='has space'   # rotated monthly\n" in out
    assert b"EMPTY='a#b $c'\n" in out
    assert b"SECRET_KEY=\"it's\"\n" in out
    assert b"JWT_SECRET='cost $5'  # jwt\n" in out  # no $ inside double quotes: Compose would expand it
    again = EnvFile.parse(out)
    assert again.get("API_TOKEN") == "has space"
    assert again.get("EMPTY") == "a#b $c"
    assert again.get("SECRET_KEY") == "it's"
    assert again.get("JWT_SECRET") == "cost $5"


def test_double_quoted_value_round_trips_escapes():
    env = EnvFile.parse(b'A="x"\n')
    env.set("A", 'quote " and \\ back')
    assert env.render() == b'A="quote \\" and \\\\ back"\n'
    assert EnvFile.parse(env.render()).get("A") == 'quote " and \\ back'


def test_generated_kinds_stay_unquoted():
    env = EnvFile.parse(b"A=1\n")
    for value in ("0f" * 32, "ab+/cd==", "AZaz09-_", "J7OMlhtHe-tlQjqP0Ess2TdvJCa6HGB-MvQ6ex85VeU="):
        env.set("A", value)
        assert env.render() == b"A=" + value.encode() + b"\n"


def test_control_characters_refused_without_echo():
    env = parsed()
    with pytest.raises(EnvFileError) as info:
        env.set("API_TOKEN", "line1\nline2-secret")
    assert "line2-secret" not in str(info.value)
    assert env.render() == SAMPLE


def test_new_key_goes_after_anchor_or_at_end():
    env = parsed()
    env.set("API_TOKEN_PREVIOUS", "old-token-1", after="API_TOKEN")
    lines = env.render().split(b"\n")
    assert lines[2] == b"export API_TOKEN=old-token-1   # rotated monthly"
    assert lines[3] == b"API_TOKEN_PREVIOUS=old-token-1"
    env.set("NEW_ONE", "v")
    # the old last line had no newline: it gets one, the new last line keeps "no newline at end"
    assert env.render().endswith(b"\nLAST=tail\nNEW_ONE=v")


def test_new_key_after_last_line_without_newline():
    env = EnvFile.parse(b"A=1\nB=2")
    env.set("B_PREVIOUS", "1", after="B")
    assert env.render() == b"A=1\nB=2\nB_PREVIOUS=1"


def test_new_key_uses_crlf_in_a_crlf_file():
    env = EnvFile.parse(b"A=1\r\nB=2\r\n")
    env.set("C", "3")
    env.set("A_PREVIOUS", "0", after="A")
    assert env.render() == b"A=1\r\nA_PREVIOUS=0\r\nB=2\r\nC=3\r\n"


def test_remove_restores_the_original_bytes():
    env = parsed()
    env.set("API_TOKEN_PREVIOUS", "x", after="API_TOKEN")
    assert env.remove("API_TOKEN_PREVIOUS") is True
    assert env.render() == SAMPLE
    assert env.remove("API_TOKEN_PREVIOUS") is False
    env.set("LAST_PREVIOUS", "x", after="LAST")
    env.remove("LAST_PREVIOUS")
    assert env.render() == SAMPLE


def test_remove_last_line_without_newline():
    env = EnvFile.parse(b"A=1\nB=2")
    env.remove("B")
    assert env.render() == b"A=1"


@pytest.mark.parametrize("data, number", [
    (b"A=1\nthis is not an assignment zq9-ish\n", 2),
    (b"A=1\n\n=novalue\n", 3),
    (b"1A=x\n", 1),
    (b"A='unterminated\nB=2\n", 1),
    (b'A=1\nB="unterminated \\" still\n', 2),
    (b"A='x' trailing-zq8\n", 1),
    (b"A=#hash-first\n", 1),
    (b"A=1\nB=\xff\xfe\n", 2),
    (b"A=1\rB=2\n", 1),
])
def test_bad_lines_name_the_line_never_the_text(data, number):
    with pytest.raises(EnvFileError) as info:
        EnvFile.parse(data, path="/srv/app/.env")
    message = str(info.value)
    assert "line %d" % number in message
    assert "/srv/app/.env" in message
    for word in (b"zq9", b"zq8", b"unterminated", b"novalue", b"hash-first", b"still"):
        if word in data:
            assert word.decode() not in message
    assert info.value.details["line"] == number


def test_duplicate_key_refused_for_changes_but_last_wins_for_reading():
    env = EnvFile.parse(b"A=1\nB=2\nA=3\n")
    assert env.get("A") == "3"
    with pytest.raises(EnvFileError, match="lines 1, 3"):
        env.set("A", "4")
    with pytest.raises(EnvFileError):
        env.remove("A")


@pytest.mark.parametrize("key", ["1A", "A-B", "A B", "", "A.B"])
def test_written_keys_are_strict(key):
    with pytest.raises(EnvFileError):
        EnvFile.parse(b"").set(key, "v")


def test_write_keeps_mode_and_returns_private_backup(tmp_path):
    path = tmp_path / "app.env"
    path.write_bytes(SAMPLE)
    os.chmod(path, 0o640)
    env = EnvFile.load(str(path))
    env.set("API_TOKEN", "new-token-2")
    backup = env.write()
    assert path.read_bytes() == SAMPLE.replace(b"old-token-1", b"new-token-2")
    assert mode(path) == 0o640
    assert backup.startswith(str(path) + ".") and backup.endswith(".bak")
    assert mode(backup) == 0o600
    with open(backup, "rb") as handle:
        assert handle.read() == SAMPLE
    restore_backup(backup, str(path))
    assert path.read_bytes() == SAMPLE
    assert mode(path) == 0o640


def test_new_file_is_0600_and_has_no_backup(tmp_path):
    path = str(tmp_path / "new.env")
    env = EnvFile.load(path, missing_ok=True)
    assert env.exists is False and env.keys() == []
    env.set("API_TOKEN", "t")
    assert env.write() is None
    assert mode(path) == 0o600
    with open(path, "rb") as handle:
        assert handle.read() == b"API_TOKEN=t\n"


def test_missing_file_refused_unless_allowed(tmp_path):
    with pytest.raises(EnvFileError, match="does not exist"):
        EnvFile.load(str(tmp_path / "nope.env"))


def test_sample_service_reads_what_we_write(tmp_path):
    """The sample service's own parser agrees on every value this module writes unquoted or quoted."""
    import importlib.util

    app_path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "sample_service", "app.py")
    spec = importlib.util.spec_from_file_location("sample_app", app_path)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    env = EnvFile.parse(b"# c\nexport A=1 # x\nB='b'\n")
    env.set("A", "J7OMlhtHe-tlQjqP0Ess2TdvJCa6HGB-MvQ6ex85VeU=")
    env.set("B", "with space")
    env.set("C", "ab+/cd==", after="A")
    path = tmp_path / "s.env"
    path.write_bytes(env.render())
    assert app.read_env_file(str(path)) == {"A": "J7OMlhtHe-tlQjqP0Ess2TdvJCa6HGB-MvQ6ex85VeU=", "C": "ab+/cd==",
                                            "B": "with space"}
