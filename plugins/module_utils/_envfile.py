# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read and rewrite dotenv files (what Docker Compose and the runbooks' services read) in place.

Only the lines this code is asked to change are rewritten; every other byte (comments, blank
lines, order, quoting, ``export`` prefixes, inline comments, CRLF or LF endings, a missing final
newline) comes out exactly as it went in.  A line that is not a comment, blank, or
``[export ]KEY=VALUE`` makes the whole file refused, with its line number and never its text,
because the text may be a secret.  Plain Python.

    env = EnvFile.load("/srv/app/.env")
    env.get("API_TOKEN")                          # the value, unquoted; None when missing
    env.set("API_TOKEN_PREVIOUS", old, after="API_TOKEN")
    env.set("API_TOKEN", new)                     # keeps the line's quote style and comment
    env.remove("API_TOKEN_PREVIOUS")
    backup = env.write()                          # atomic, owner/mode kept; returns the 0600 backup
    restore_backup(backup, "/srv/app/.env")       # byte-identical revert

Value syntax understood (the common ground of Compose and python-dotenv):
  - ``KEY=value`` unquoted: surrounding blanks dropped, `` #...`` after a blank is a comment;
  - ``KEY='value'`` single quotes: literal, no escapes;
  - ``KEY="value"`` double quotes: ``\\\\``, ``\\"``, ``\\n``, ``\\r``, ``\\t`` are escapes, any other
    backslash stays as it is; after the closing quote only blanks and a ``#`` comment may follow;
  - ``export KEY=...``; blanks around ``=``; ``KEY=`` (empty value).
Quoted values spanning several lines are refused (not rewritten), as are values with newlines.
"""

from __future__ import annotations

import os
import re

from ansible_collections.runbook.ops.plugins.module_utils import _files
from ansible_collections.runbook.ops.plugins.module_utils._errors import EnvFileError

# Keys as found in files (Compose also accepts '.' and '-'); keys this code writes are stricter.
READ_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
WRITE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ASSIGNMENT = re.compile(r"(?P<lead>[ \t]*(?:export[ \t]+)?)(?P<key>[^=\s]+)(?P<eq>[ \t]*=[ \t]*)(?P<rest>.*)", re.S)
# Unquoted values written without quotes: no blanks, quotes, '#', '$', backslash or control characters.
BARE_SAFE = re.compile(r"[A-Za-z0-9_./:@%+=,~^-]*")
DOUBLE_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
QUOTE_STYLES = ("none", "single", "double")


class Line:
    """One line of the file: its text without the ending, the ending, and, for an assignment,
    the parts needed to rewrite the value alone."""

    __slots__ = ("text", "ending", "number", "key", "value", "quote", "lead", "eq", "trailer")

    def __init__(self, text, ending, number):
        self.text = text
        self.ending = ending
        self.number = number
        self.key = None
        self.value = None
        self.quote = None
        self.lead = self.eq = self.trailer = ""

    @property
    def is_assignment(self):
        return self.key is not None

    def render_value(self, value):
        """Replace this assignment's value, keeping prefix, spacing, quote style and comment."""
        self.value = value
        self.quote = choose_quote(value, self.quote)
        self.text = "%s%s%s%s%s" % (self.lead, self.key, self.eq, quote_value(value, self.quote), self.trailer)


def choose_quote(value, preferred="none"):
    """The quote style to write ``value`` in: ``preferred`` when it can hold the value as is,
    else the nearest that can.  Values with control characters cannot be written at all."""
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise EnvFileError("the value contains a newline or another control character; a dotenv line cannot hold it")
    if preferred == "none" and BARE_SAFE.fullmatch(value):
        return "none"
    if preferred == "double" and "$" not in value:
        return "double"
    if "'" not in value:
        return "single"  # literal for every reader; also keeps Compose from interpolating a '$'
    return "double"


def quote_value(value, quote):
    if quote == "none":
        return value
    if quote == "single":
        return "'%s'" % value
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def _parse_double(rest, number):
    """The value of ``"..."`` at the start of ``rest`` and what follows the closing quote."""
    out, index = [], 1
    while index < len(rest):
        char = rest[index]
        if char == "\\" and index + 1 < len(rest):
            nxt = rest[index + 1]
            out.append(DOUBLE_ESCAPES.get(nxt, "\\" + nxt))
            index += 2
            continue
        if char == '"':
            return "".join(out), rest[index + 1:]
        out.append(char)
        index += 1
    raise EnvFileError("line %d: the double-quoted value has no closing quote on the same line "
                       "(multi-line values are not supported)" % number, line=number)


def _parse_value(line, rest):
    number = line.number
    if rest.startswith("'"):
        end = rest.find("'", 1)
        if end < 0:
            raise EnvFileError("line %d: the single-quoted value has no closing quote on the same line "
                               "(multi-line values are not supported)" % number, line=number)
        line.quote, line.value, trailer = "single", rest[1:end], rest[end + 1:]
    elif rest.startswith('"'):
        line.quote = "double"
        line.value, trailer = _parse_double(rest, number)
    else:
        match = re.search(r"[ \t]+#", rest)
        body, trailer = (rest[:match.start()], rest[match.start():]) if match else (rest, "")
        stripped = body.rstrip(" \t")
        line.quote, line.value, trailer = "none", stripped, body[len(stripped):] + trailer
        if rest.startswith("#"):
            # KEY=#x: Compose reads an empty value followed by a comment only after a blank;
            # python-dotenv reads '#x'.  Refuse rather than guess which one the service uses.
            raise EnvFileError("line %d: the value starts with '#'; quote it so every reader agrees" % number, line=number)
    if trailer.strip(" \t") and not re.fullmatch(r"[ \t]*#.*", trailer, re.S):
        raise EnvFileError("line %d: unexpected text after the quoted value" % number, line=number)
    line.trailer = trailer


def parse_line(text, ending, number):
    line = Line(text, ending, number)
    stripped = text.strip(" \t")
    if not stripped or stripped.startswith("#"):
        return line
    match = ASSIGNMENT.fullmatch(text)
    if not match or not READ_KEY.fullmatch(match.group("key")):
        raise EnvFileError("line %d is not KEY=VALUE, a comment or blank (the line is not shown: it may hold a secret)"
                           % number, line=number)
    line.lead, line.key, line.eq = match.group("lead"), match.group("key"), match.group("eq")
    _parse_value(line, match.group("rest"))
    return line


def split_lines(text):
    """(text, ending) pairs; the last line may have no ending."""
    pairs = []
    for raw in text.splitlines(keepends=True):
        if raw.endswith("\r\n"):
            pairs.append((raw[:-2], "\r\n"))
        elif raw.endswith("\n"):
            pairs.append((raw[:-1], "\n"))
        else:
            pairs.append((raw, ""))
    return pairs


class EnvFile:
    """A parsed dotenv file that renders back byte-identical unless a key was changed."""

    def __init__(self, lines, path=None, exists=True, bom=""):
        self.lines = lines
        self.path = path
        self.exists = exists
        self.bom = bom

    # reading ---------------------------------------------------------------------------------
    @classmethod
    def parse(cls, data, path=None):
        """Parse ``data`` (bytes or str); raises EnvFileError naming the first bad line."""
        if isinstance(data, bytes):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                number = data[:exc.start].count(b"\n") + 1
                raise EnvFileError("%sline %d is not valid UTF-8" % (_where(path), number), line=number) from None
        else:
            text = data
        bom = ""
        if text.startswith("\ufeff"):
            bom, text = "\ufeff", text[1:]
        if "\r" in text.replace("\r\n", ""):
            number = text[:text.replace("\r\n", "  ").index("\r")].count("\n") + 1
            raise EnvFileError("%sline %d holds a bare carriage return" % (_where(path), number), line=number)
        lines = []
        for number, (line_text, ending) in enumerate(split_lines(text), 1):
            try:
                lines.append(parse_line(line_text, ending, number))
            except EnvFileError as exc:
                raise EnvFileError(_where(path) + str(exc), **exc.details) from None
        return cls(lines, path=path, bom=bom)

    @classmethod
    def load(cls, path, missing_ok=False):
        """Read ``path``; a missing file is an empty EnvFile (``exists`` False) with ``missing_ok``."""
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            if missing_ok:
                return cls([], path=path, exists=False)
            raise EnvFileError("env file %s does not exist" % path) from None
        except OSError as exc:
            raise EnvFileError("cannot read env file %s: %s" % (path, exc.strerror)) from None
        return cls.parse(data, path=path)

    def _assignments(self, key):
        return [line for line in self.lines if line.key == key]

    def keys(self):
        """Keys in file order, each once."""
        seen = []
        for line in self.lines:
            if line.is_assignment and line.key not in seen:
                seen.append(line.key)
        return seen

    def __contains__(self, key):
        return bool(self._assignments(key))

    def get(self, key, default=None):
        """The value of ``key`` (the last assignment wins, as in every dotenv reader)."""
        found = self._assignments(key)
        return found[-1].value if found else default

    def as_dict(self):
        return {key: self.get(key) for key in self.keys()}

    def line_of(self, key):
        """Line number of ``key``'s assignment, or None."""
        found = self._assignments(key)
        return found[-1].number if found else None

    def quote_of(self, key):
        found = self._assignments(key)
        return found[-1].quote if found else None

    # changing --------------------------------------------------------------------------------
    def _single(self, key):
        check_key(key)
        found = self._assignments(key)
        if len(found) > 1:
            raise EnvFileError("%s%s is assigned on lines %s; remove the duplicates first (readers disagree on which wins)"
                               % (_where(self.path), key, ", ".join(str(line.number) for line in found)), key=key)
        return found[0] if found else None

    def _ending(self):
        endings = [line.ending for line in self.lines if line.ending]
        return "\r\n" if endings and endings.count("\r\n") * 2 >= len(endings) else "\n"

    def set(self, key, value, after=None, quote=None):
        """Set ``key`` to ``value``; True when the file changes.

        An existing line keeps its prefix, spacing, quote style (unless the value needs another)
        and inline comment.  A new key goes right after the line of ``after`` when that key exists,
        else at the end, unquoted when it can be (``quote`` forces a style for a new line).
        """
        if not isinstance(value, str):
            raise EnvFileError("the value of %s must be a string" % key, key=key)
        if quote is not None and quote not in QUOTE_STYLES:
            raise EnvFileError("quote must be one of %s" % ", ".join(QUOTE_STYLES))
        line = self._single(key)
        if line is not None:
            if line.value == value and (quote is None or quote == line.quote):
                return False
            line.render_value(value)
            return True
        ending = self._ending()
        new = Line("", ending, None)
        new.key, new.quote, new.eq = key, quote or "none", "="
        new.render_value(value)
        anchor = self._single(after) if after else None
        if anchor is not None:
            index = self.lines.index(anchor)
            if not anchor.ending:  # the anchor was the last line, without a newline
                anchor.ending, new.ending = ending, ""
            self.lines.insert(index + 1, new)
        else:
            if self.lines and not self.lines[-1].ending:  # keep "no newline at end of file" as it was
                self.lines[-1].ending, new.ending = ending, ""
            self.lines.append(new)
        return True

    def remove(self, key):
        """Remove ``key``'s line; True when it was there."""
        line = self._single(key)
        if line is None:
            return False
        index = self.lines.index(line)
        del self.lines[index]
        if not line.ending and index > 0 and index == len(self.lines):
            self.lines[index - 1].ending = ""  # keep "no newline at end of file" as it was
        return True

    # writing ---------------------------------------------------------------------------------
    def render(self):
        return (self.bom + "".join(line.text + line.ending for line in self.lines)).encode("utf-8")

    def write(self, path=None, backup=True, mode=None):
        """Write atomically (owner and mode of an existing file kept; a new file 0600 unless
        ``mode``).  With ``backup`` an existing file is first copied (0600, beside it) and the
        copy's path returned, for ``restore_backup``; None otherwise."""
        path = path or self.path
        if path is None:
            raise EnvFileError("no path to write the env file to")
        copy = None
        try:
            if backup and os.path.exists(path):
                copy = _files.private_copy(path)
            _files.atomic_write(path, data=self.render(), mode=mode)
        except OSError as exc:
            raise EnvFileError("cannot write env file %s: %s" % (path, exc.strerror or exc)) from None
        self.path, self.exists = path, True
        return copy


def check_key(key):
    if not isinstance(key, str) or not WRITE_KEY.fullmatch(key):
        raise EnvFileError("%r is not a valid env key (letters, digits and '_', not starting with a digit)" % (key,))


def restore_backup(copy, path):
    """Put a backup made by ``EnvFile.write`` back, byte-identical, keeping the file's owner and mode."""
    try:
        _files.restore_copy(copy, path)
    except OSError as exc:
        raise EnvFileError("cannot restore %s from %s: %s" % (path, copy, exc.strerror or exc)) from None


def _where(path):
    return "env file %s: " % path if path else ""
