# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take secrets out of text and JSON before it leaves a host (runbook IN8's diagnostics bundle).

Rules, in order of precedence (where matches overlap, one marker names the first rule and counts for
it); the counts per rule are the markers per rule, never the values:

- ``known_secret``: the exact values given (and their base64, URL-encoded and JSON-escaped forms,
  base64 at every byte alignment so a secret inside a larger base64 text such as ``user:secret`` is
  found too);
- ``pem_private_key``: ``-----BEGIN ... PRIVATE KEY-----`` through its ``END`` line, across lines;
- ``auth_header``: the value of ``Authorization``, ``Proxy-Authorization``, ``X-Api-Token``,
  ``X-Api-Key``, ``X-Auth-Token``, ``Cookie`` and ``Set-Cookie`` headers;
- ``bearer_token``: the token after ``Bearer``/``Basic``/``Token``;
- ``jwt``: three base64url segments starting ``eyJ``;
- ``connection_string``: the password of ``scheme://user:password@host``;
- ``aws_secret_key``: the value after ``aws_secret_access_key``;
- ``sql_password``: ``PASSWORD '...'`` in SQL text (``ALTER ROLE``/``CREATE ROLE`` seen by pg_activity);
- ``secret_key``: the value of a key whose name looks secret (``PASSWORD``, ``SECRET``, ``TOKEN``,
  ``KEY``, ``CREDENTIAL``, ``PRIVATE``, ``AUTH``, ``DSN``, ``DATABASE_URL``, ...) in dotenv and
  environment entries (``NAME=value``), YAML (``name: value``), JSON (``"name": "value"``), query strings,
  and, for JSON documents, the structure itself.

Streams are redacted in blocks of whole lines (no rule but PEM, whose state is carried, crosses a line
end); a line longer than ``max_line`` is redacted in windows that keep an overlap longer than any match's
context, so a secret split across a read boundary is still caught.  A single token longer than a window is
redacted up to the window's end only; the final scan of the bundle is the net for such cases.
Bytes that are not UTF-8 go through unchanged (surrogateescape).  Plain Python, no Ansible imports.
"""

from __future__ import annotations

import base64
import codecs
import collections
import functools
import json
import re
import urllib.parse

MARKER = "[REDACTED:%s]"
MIN_SECRET_CHARS = 6  # shorter known values are not redacted (they would hit ordinary text everywhere)
MIN_BASE64_CORE = 8  # the part of an unaligned base64 form that is searched must be at least this long
MAX_LINE = 256 * 1024
OVERLAP = 16 * 1024  # longer than any key, header name, PEM marker or token a rule needs as context
RULES = ("known_secret", "pem_private_key", "auth_header", "bearer_token", "jwt", "connection_string",
         "aws_secret_key", "sql_password", "secret_key")

# Key names: split into words (snake, kebab, dots, camelCase); a word containing one of SECRET_PARTS,
# or equal to one of SECRET_WORDS, or a name matching SECRET_NAMES makes the key secret.
SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "token", "credential", "apikey", "accesskey",
                "privatekey", "pgpass")
SECRET_WORDS = frozenset(("key", "auth", "authorization", "dsn", "pwd", "pass", "private", "cookie", "sig",
                          "signature", "salt", "session", "otp", "pin"))
SECRET_NAMES = re.compile(r"(?i)(?:.*[_.-])?(?:database|db|redis|broker|amqp|rabbitmq|mongo(?:db)?|mysql|postgres(?:ql)?|"
                          r"pg|sentry|celery|cache|queue)[_.-]?(?:url|uri|dsn)")
_MARKER_RE = re.compile(r"\[REDACTED:[a-z_]+\]")
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_HEADER = re.compile(r"(?i)\b(?:proxy-)?authorization|\bx-api-(?:token|key)\b|\bx-auth-token\b|\b(?:set-)?cookie\b")
_HEADER_VALUE = re.compile(r"""(["']?[ \t]*:[ \t]*["']?)([^"'\r\n]+)""")
_BEARER = re.compile(r"(?i)\b(?:bearer|basic|token)[ \t]+([A-Za-z0-9._~+/-]{8,}=*)")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_URL_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*+://[^\s:/@\"'<>]*:([^\s@\"'<>]+)@")
_AWS = re.compile(r"(?i)aws_secret_access_key[\"']?[ \t]*[:=][ \t]*[\"']?([A-Za-z0-9/+=]{16,})")
_SQL_PASSWORD = re.compile(r"(?i)\bpassword[ \t]+'((?:[^']|'')*)'")
# A key, its separator and its value: quoted (JSON, YAML, shell) or bare up to a separator.
_KEY = re.compile(r"""(?<![A-Za-z0-9_.-])([A-Za-z_][A-Za-z0-9_.-]*+)["']?[ \t]*[:=]""")
_VALUE = (r"""(?P<sep>["']?[ \t]*[:=][ \t]*)"""
          r"""(?:"(?P<dq>(?:[^"\\\r\n]|\\.)*)"|'(?P<sq>[^'\r\n]*)'|(?P<bare>[^\s,;&}\]\[)("'<>]+))""")
# At the start of a line (dotenv, YAML, environment entries), an unquoted value runs to the end of the line.
_LINE_KEY_VALUE = re.compile(r"""(?m)^[ \t]*(?:export[ \t]+|-[ \t]+)?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*+)[ \t]*[:=][ \t]*"""
                             r"""(?P<rest>[^"'\s][^\r\n]*?)[ \t]*\r?$""")


@functools.lru_cache(maxsize=4096)
def secret_name(name, extra=None):
    """Whether a key or variable name looks like it holds a secret."""
    name = str(name)
    if SECRET_NAMES.fullmatch(name) or (extra is not None and extra.search(name)):
        return True
    for word in _WORD_SPLIT.split(name):
        word = word.lower()
        if word in SECRET_WORDS or any(part in word for part in SECRET_PARTS):
            return True
    return False


def _base64_forms(raw):
    forms = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        full = encode(raw).decode("ascii")
        forms.update((full, full.rstrip("=")))
        # The same bytes at offset 1 and 2 of a longer text: only the 4-character groups made of the
        # secret's bytes alone are fixed; those are searched when they are long enough.
        for offset in (0, 1, 2):
            text = encode(b"\0" * offset + raw).decode("ascii")
            first = -(-offset // 3)  # first group starting at or after the offset
            last = (offset + len(raw)) // 3  # groups before this one end within the secret
            core = text[first * 4:last * 4]
            if len(core) >= MIN_BASE64_CORE:
                forms.add(core)
    return forms


def secret_forms(value):
    """Every form of ``value`` the redactor and the final scan look for."""
    forms = {value}
    raw = value.encode("utf-8", "surrogateescape")
    forms.update(_base64_forms(raw))
    forms.add(urllib.parse.quote(value, safe=""))
    forms.add(urllib.parse.quote_plus(value, safe=""))
    forms.add(urllib.parse.quote(value))
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    return sorted((f for f in forms if f), key=len, reverse=True)


class KnownSecrets:
    """The exact values to take out, with their encoded forms; values shorter than MIN_SECRET_CHARS are
    left out and counted in ``ignored``."""

    def __init__(self, values=()):
        self.values = []
        self.ignored = 0
        self.forms = []
        self.regex = None
        self.add(values)

    def add(self, values):
        changed = False
        for value in values:
            if value is None:
                continue
            value = str(value)
            if len(value) < MIN_SECRET_CHARS:
                self.ignored += 1 if value else 0
                continue
            if value not in self.values:
                self.values.append(value)
                changed = True
        if changed:
            forms = set()
            for value in self.values:
                forms.update(secret_forms(value))
            self.forms = sorted(forms, key=len, reverse=True)
            self.regex = re.compile("|".join(re.escape(f) for f in self.forms))

    @property
    def longest(self):
        return len(self.forms[0]) if self.forms else 0

    def __len__(self):
        return len(self.values)


class Redactor:
    """Redacts text, streams and JSON values; ``counts`` holds the redactions per rule.

    ``secrets``: a KnownSecrets; ``extra_names``: a compiled regex of more secret key names.
    """

    def __init__(self, secrets=None, extra_names=None, max_line=MAX_LINE, overlap=OVERLAP):
        self.secrets = secrets if secrets is not None else KnownSecrets()
        self.extra_names = extra_names
        self.max_line = max_line
        self.overlap = max(overlap, 2 * self.secrets.longest + 64)
        if self.max_line <= self.overlap:
            self.max_line = 2 * self.overlap
        self.counts = collections.Counter()

    # spans ----------------------------------------------------------------------------------------
    def _named(self, key):
        return secret_name(key, self.extra_names)

    def _spans(self, text, in_pem):
        """``(spans, open_from)``: ``(start, end, rule)`` of everything to redact in ``text``, and where a
        PEM block left open at the end of ``text`` starts (None when none is open)."""
        spans = []
        open_from = None
        pos = 0
        while True:  # PEM blocks, with the state carried from the text before
            if in_pem:
                end = _PEM_END.search(text, pos)
                if end is None:
                    spans.append((pos, len(text), "pem_private_key+"))
                    open_from = pos
                    break
                spans.append((pos, end.end(), "pem_private_key+"))
                pos = end.end()
                in_pem = False
            begin = _PEM_BEGIN.search(text, pos)
            if begin is None:
                break
            end = _PEM_END.search(text, begin.end())
            if end is None:  # open to the end of the text: the lines up to END go, END is in later text
                spans.append((begin.start(), len(text), "pem_private_key"))
                open_from = begin.start()
                break
            spans.append((begin.start(), end.end(), "pem_private_key"))
            pos = end.end()
        for form in self.secrets.forms:  # str.find per form: far faster than one alternation over every form
            found = text.find(form)
            while found >= 0:
                spans.append((found, found + len(form), "known_secret"))
                found = text.find(form, found + 1)
        low = text.lower()  # each rule runs only where its literal part occurs: logs are mostly clean
        if "authorization" in low or "x-api-" in low or "x-auth-token" in low or "cookie" in low:
            for match in _HEADER.finditer(text):
                value = _HEADER_VALUE.match(text, match.end())
                if value and value.group(2).strip():
                    spans.append((value.start(2), value.end(2), "auth_header"))
        if "bearer" in low or "basic" in low or "token" in low:
            spans.extend((m.start(1), m.end(1), "bearer_token") for m in _BEARER.finditer(text))
        if "eyJ" in text:
            spans.extend((m.start(), m.end(), "jwt") for m in _JWT.finditer(text))
        if "://" in text:
            spans.extend((m.start(1), m.end(1), "connection_string") for m in _URL_PASSWORD.finditer(text))
        if "aws_secret_access_key" in low:
            spans.extend((m.start(1), m.end(1), "aws_secret_key") for m in _AWS.finditer(text))
        if "password" in low:
            spans.extend((m.start(1), m.end(1), "sql_password") for m in _SQL_PASSWORD.finditer(text) if m.group(1))
        for match in _LINE_KEY_VALUE.finditer(text):
            if self._named(match.group("key")):
                spans.append((match.start("rest"), match.end("rest"), "secret_key"))
        # Keys followed by ':' or '=' are listed at C speed; only those that look secret are matched with their values.
        secret_keys = sorted({key for key in _KEY.findall(text) if self._named(key)}, key=len, reverse=True)
        if secret_keys:
            keyed = re.compile(r"(?<![A-Za-z0-9_.-])(?P<key>%s)(?![A-Za-z0-9_.-])%s"
                               % ("|".join(re.escape(k) for k in secret_keys), _VALUE))
            for match in keyed.finditer(text):
                group = next(g for g in ("dq", "sq", "bare") if match.group(g) is not None)
                if match.start(group) < match.end(group):
                    spans.append((match.start(group), match.end(group), "secret_key"))
        markers = [(m.start(), m.end()) for m in _MARKER_RE.finditer(text)]
        if markers:  # already redacted (a JSON document's second pass): not again
            spans = [s for s in spans if not any(a <= s[0] and s[1] <= b for a, b in markers)]
        return _merge(spans), open_from

    def _apply(self, text, spans, cut, count=True):
        out = []
        pos = 0
        for start, end, rules in spans:
            if start >= cut:
                break
            out.append(text[pos:start])
            first = rules[0]
            if first != "pem_private_key+":  # the continuation of a block counted at its BEGIN
                out.append(MARKER % first.rstrip("+"))
            if count and not first.endswith("+"):
                self.counts[first] += 1  # one per marker: what the reader of the bundle sees
            pos = min(end, cut)
        out.append(text[pos:cut])
        return "".join(out)

    # text -------------------------------------------------------------------------------------------
    def text(self, text, count=True):
        """``text`` (str) redacted; PEM blocks across its lines are followed."""
        return self._line(text, False, count)[0]

    def _line(self, line, in_pem, count=True):
        spans, open_from = self._spans(line, in_pem)
        return self._apply(line, spans, len(line), count), open_from is not None

    def _window(self, text, in_pem, count=True):
        """Redact the first part of an over-long line: ``(output, consumed, in_pem)``."""
        spans, open_from = self._spans(text, in_pem)
        cut = len(text) - self.overlap
        for start, end, _rules in spans:
            if start < cut < end and not (open_from is not None and start <= open_from < end):
                cut = start  # a match across the cut waits for the next window, whole
                break
        if cut <= 0:
            cut = len(text)  # one match longer than the window: all of it goes
        output = self._apply(text, spans, cut, count)
        return output, cut, open_from is not None and open_from < cut

    def stream(self, chunks):
        """Redact an iterator of byte chunks; yields bytes.  Memory: one window (``max_line`` plus overlap)."""
        buf = ""
        in_pem = False
        decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")  # a character split across chunks
        for chunk in chunks:
            if not chunk:
                continue
            buf += decoder.decode(chunk)
            pieces = []
            newline = buf.rfind("\n")
            if newline >= 0:  # the complete lines at once: no rule but PEM (which keeps its state) spans lines
                redacted, in_pem = self._line(buf[:newline + 1], in_pem)
                pieces.append(redacted)
                buf = buf[newline + 1:]
            while len(buf) > self.max_line:
                output, consumed, in_pem = self._window(buf, in_pem)
                pieces.append(output)
                buf = buf[consumed:]
            if pieces:
                yield _encode("".join(pieces))
        buf += decoder.decode(b"", final=True)
        if buf:
            redacted, in_pem = self._line(buf, in_pem)
            yield _encode(redacted)

    def bytes(self, data):
        return b"".join(self.stream([data]))

    # JSON -------------------------------------------------------------------------------------------
    def value(self, value, by_name=True, count=True):
        """A JSON-like value with every string (keys too) redacted and, ``by_name``, the scalar values of
        secret-named keys replaced.  Redacting the structure, not its serialized text, keeps it valid JSON."""
        if isinstance(value, dict):
            return {(self.text(k, count) if isinstance(k, str) else k): self._keyed(k, v, by_name, count)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(item, by_name, count) for item in value]
        if isinstance(value, str):
            return self.text(value, count)
        return value

    def _keyed(self, key, value, by_name, count):
        if by_name and value not in (None, "", True, False) and not isinstance(value, (dict, list, tuple)) \
                and self._named(key):
            if isinstance(value, str) and _MARKER_RE.fullmatch(value):
                return value
            if count:
                self.counts["secret_key"] += 1
            return MARKER % "secret_key"
        return self.value(value, by_name, count)

    def json_bytes(self, value, by_name=True, count=True):
        """A JSON document, redacted, as UTF-8 bytes (indented, keys in their order)."""
        text = json.dumps(self.value(value, by_name, count), indent=1, default=str, ensure_ascii=False)
        return (text + "\n").encode("utf-8", "surrogateescape")


def _encode(text):
    return text.encode("utf-8", "surrogateescape")


def _merge(spans):
    """Overlapping spans as one, each with the rules that made it, in order of RULES."""
    merged = []
    for start, end, rule in sorted(spans):
        if start >= end and not rule.startswith("pem"):
            continue
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2] + [rule])
        else:
            merged.append((start, end, [rule]))
    order = {name: index for index, name in enumerate(RULES)}
    return [(s, e, sorted(set(r), key=lambda n: (order.get(n.rstrip("+"), 99), n))) for s, e, r in merged]


class SecretScan:
    """Looks for known secret values in byte streams (the final check of a bundle)."""

    def __init__(self, secrets, chunk=1024 * 1024):
        self.secrets = secrets
        self.chunk = chunk
        self.patterns = [f.encode("utf-8", "surrogateescape") for f in secrets.forms]
        self.regex = re.compile(b"|".join(re.escape(p) for p in self.patterns)) if self.patterns else None
        self.keep = max((len(p) for p in self.patterns), default=0)

    def found(self, handle):
        """Whether any form of any secret is in ``handle`` (read in chunks, overlapping)."""
        if self.regex is None:
            return False
        tail = b""
        while True:
            data = handle.read(self.chunk)
            if not data:
                return False
            window = tail + data
            if self.regex.search(window):
                return True
            tail = window[-self.keep:] if self.keep > 1 else b""
