# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One server of an nginx ``upstream`` block marked up or down (runbook DR5, a rolling restart behind nginx).

``set_server(text, upstream, address, state)`` edits the text of a config file: it adds or removes the
``down`` parameter of the ``server <address> ...;`` line in ``upstream <name> { ... }`` and leaves every
other byte (comments, indentation, other servers and blocks) as it was.  ``UpstreamFile`` applies such an
edit to a file: atomic write, ``nginx -t`` against the main configuration, the previous text written
back when the test or the reload fails.

Plain Python, no Ansible imports; commands run through an injected ``run(argv) -> (rc, stdout, stderr)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ansible_collections.runbook.ops.plugins.module_utils import _files
from ansible_collections.runbook.ops.plugins.module_utils._errors import NginxError

STATES = ("up", "down")
OUTPUT_CHARS = 600


@dataclass
class Token:
    kind: str  # word, {, }, ;
    value: str
    start: int
    end: int


def tokens(text):
    """The tokens of nginx configuration text with their offsets; comments are skipped, a quoted string is
    one word (its value without the quotes)."""
    found = []
    index, size = 0, len(text)
    while index < size:
        char = text[index]
        if char.isspace():
            index += 1
        elif char == "#":
            end = text.find("\n", index)
            index = size if end < 0 else end + 1
        elif char in "{};":
            found.append(Token(char, char, index, index + 1))
            index += 1
        elif char in "\"'":
            start, index, value = index, index + 1, []
            while index < size and text[index] != char:
                if text[index] == "\\" and index + 1 < size:
                    index += 1
                value.append(text[index])
                index += 1
            if index >= size:
                raise NginxError("unterminated quoted string starting at line %d" % line_of(text, start))
            index += 1
            found.append(Token("word", "".join(value), start, index))
        else:
            start = index
            while index < size and not text[index].isspace() and text[index] not in "{};\"'" and \
                    not (text[index] == "#" and index == start):
                index += 1
            found.append(Token("word", text[start:index], start, index))
    return found


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


@dataclass
class Server:
    """One ``server`` directive of an upstream block."""

    address: str
    params: list
    line: int
    down_tokens: list = field(default_factory=list)  # the Token of each ``down`` parameter
    end: Token | None = None  # the ``;``

    @property
    def down(self):
        return bool(self.down_tokens)

    def as_dict(self):
        return {"address": self.address, "down": self.down, "params": list(self.params), "line": self.line}


def statements(toks, begin, finish):
    """The statements between token positions ``begin`` and ``finish`` (one block level): each is
    ``(words, terminator index)`` where the terminator is ``;`` or the ``{`` of a block; the tokens of a
    nested block are skipped."""
    found, words, index = [], [], begin
    while index < finish:
        tok = toks[index]
        if tok.kind == "word":
            words.append(index)
        elif tok.kind == ";":
            found.append((words, index))
            words = []
        elif tok.kind == "{":
            found.append((words, index))
            words = []
            index = matching_brace(toks, index)
        else:  # a "}" at this level: find_upstream checked the braces, so this is the block's own end
            break
        index += 1
    if words:
        raise NginxError("a directive without ';' at the end of the file")
    return found


def matching_brace(toks, opening):
    depth = 0
    for index in range(opening, len(toks)):
        if toks[index].kind == "{":
            depth += 1
        elif toks[index].kind == "}":
            depth -= 1
            if depth == 0:
                return index
    raise NginxError("a '{' is never closed")


def find_upstream(text, name):
    """``(servers, toks)`` of the ``upstream <name>`` block, at any depth of ``text``."""
    toks = tokens(text)
    depth = 0
    for tok in toks:
        depth += 1 if tok.kind == "{" else -1 if tok.kind == "}" else 0
        if depth < 0:
            raise NginxError("unexpected '}' at line %d" % line_of(text, tok.start))
    if depth:
        raise NginxError("a '{' is never closed (%d block%s open at the end of the file)" % (depth, "" if depth == 1 else "s"))
    blocks = []
    for index, tok in enumerate(toks[:-2]):
        if tok.kind == "word" and tok.value == "upstream" and toks[index + 1].kind == "word" \
                and toks[index + 2].kind == "{" and (index == 0 or toks[index - 1].kind in "{};"):
            blocks.append((toks[index + 1].value, index + 2))
    named = [opening for found, opening in blocks if found == name]
    if not named:
        others = sorted({found for found, _opening in blocks})
        raise NginxError("no upstream %s in the file (its upstreams: %s)" % (name, ", ".join(others) or "none"))
    if len(named) > 1:
        raise NginxError("upstream %s is defined %d times in the file" % (name, len(named)))
    opening = named[0]
    closing = matching_brace(toks, opening)
    servers = []
    for words, end in statements(toks, opening + 1, closing):
        if not words or toks[words[0]].value != "server" or toks[end].kind != ";":
            continue
        if len(words) < 2:
            raise NginxError("a server directive without an address at line %d" % line_of(text, toks[words[0]].start))
        params = [toks[i].value for i in words[2:]]
        servers.append(Server(address=toks[words[1]].value, params=params, line=line_of(text, toks[words[0]].start),
                              down_tokens=[toks[i] for i in words[2:] if toks[i].value == "down"], end=toks[end]))
    return servers


def set_server(text, upstream, address, state, allow_all_down=False):
    """``(new text, servers before, the server's state before)`` with ``address`` in ``upstream`` marked
    ``state`` (up or down).  Marking down the last server that is up is refused unless ``allow_all_down``:
    nginx would answer every request with 502."""
    if state not in STATES:
        raise NginxError("state must be up or down, got %r" % state)
    servers = find_upstream(text, upstream)
    chosen = [s for s in servers if s.address == address]
    if not chosen:
        raise NginxError("upstream %s has no server %s (its servers: %s)"
                         % (upstream, address, ", ".join(s.address for s in servers) or "none"))
    if len(chosen) > 1:
        raise NginxError("upstream %s lists server %s %d times (lines %s)"
                         % (upstream, address, len(chosen), ", ".join(str(s.line) for s in chosen)))
    server = chosen[0]
    before = "down" if server.down else "up"
    if before == state:
        return text, servers, before
    if state == "up":
        new = text
        for tok in sorted(server.down_tokens, key=lambda t: t.start, reverse=True):
            start = tok.start
            while start > 0 and text[start - 1] in " \t":
                start -= 1
            new = new[:start] + new[tok.end:]
        return new, servers, before
    serving = [s for s in servers if not s.down and s is not server and "backup" not in s.params]
    if not serving and not allow_all_down:
        raise NginxError("refusing to mark %s down: it is the last server of upstream %s that is up, and nginx would"
                         " answer every request with 502" % (address, upstream))
    position = server.end.start
    return text[:position] + " down" + text[position:], servers, before


def short(output):
    """Command output on at most a few lines, for a message."""
    text = "\n".join(line for line in (output or "").strip().splitlines() if line.strip())
    return text if len(text) <= OUTPUT_CHARS else "..." + text[-OUTPUT_CHARS:]


@dataclass
class NginxCommands:
    """The argument lists of ``nginx -t`` and of the reload.

    ``binary`` -c ``config`` [-g ``directives``]: the same main configuration (and global directives,
    e.g. a pid file given on the command line) for the test and the reload, so the reload signals the
    master that runs this configuration.  ``reload_command`` replaces the reload (``systemctl reload
    nginx``, ``docker exec proxy nginx -s reload``).
    """

    binary: str = "nginx"
    config: str | None = None
    directives: str | None = None
    reload_command: list | None = None

    def _common(self):
        argv = []
        if self.config:
            argv += ["-c", self.config]
        if self.directives:
            argv += ["-g", self.directives]
        return argv

    def test(self):
        return [self.binary, "-t", "-q"] + self._common()

    def reload(self):
        if self.reload_command:
            return list(self.reload_command)
        return [self.binary] + self._common() + ["-s", "reload"]


class UpstreamFile:
    """An upstream include file, changed safely: atomic write, test, reload, or the old text back."""

    def __init__(self, path, commands, run):
        self.path = path
        self.commands = commands
        self.run = run

    def read(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            raise NginxError("%s does not exist: give the include file that holds the upstream block" % self.path) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise NginxError("cannot read %s: %s" % (self.path, exc)) from None

    def plan(self, upstream, address, state, allow_all_down=False):
        """What would change: a dict with before (text), after (text), servers, server_before."""
        before = self.read()
        after, servers, server_before = set_server(before, upstream, address, state, allow_all_down)
        return {"before": before, "after": after, "servers": servers, "server_before": server_before}

    def apply(self, plan, validate=True, reload=True):
        """Write ``plan["after"]``, test and reload; on a failure write ``plan["before"]`` back and raise.
        Returns ``{"validated": bool, "reloaded": bool}``."""
        done = {"validated": False, "reloaded": False}
        try:
            _files.atomic_write(self.path, plan["after"].encode("utf-8"))
        except OSError as exc:
            raise NginxError("cannot write %s: %s" % (self.path, exc)) from None
        try:
            if validate:
                self._check(self.commands.test(), "nginx -t rejected the change")
                done["validated"] = True
            if reload:
                self._check(self.commands.reload(), "the reload failed")
                done["reloaded"] = True
        except NginxError as exc:
            self._revert(plan["before"], exc, done)
        return done

    def reload_only(self):
        self._check(self.commands.reload(), "the reload failed")

    def _check(self, argv, what):
        try:
            rc, out, err = self.run(argv)
        except OSError as exc:
            raise NginxError("%s: cannot run %s: %s" % (what, argv[0], exc)) from None
        if rc != 0:
            raise NginxError("%s (%s exited with %d): %s" % (what, " ".join(argv), rc, short(err or out) or "no output"))

    def _revert(self, before, exc, done):
        try:
            _files.atomic_write(self.path, before.encode("utf-8"))
        except OSError as again:
            raise NginxError("%s; and writing the previous text of %s back failed too: %s" % (exc, self.path, again)) from None
        message = "%s; %s was put back as it was" % (exc, os.path.basename(self.path))
        if done["validated"]:
            # The reload failed after a good test: put the running nginx back on the old text as well.
            message += " (nginx was not reloaded with the change)"
        raise NginxError(message, **done)
