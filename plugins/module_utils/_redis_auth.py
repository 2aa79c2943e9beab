# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis passwords rotated with an overlap, through the ACL of Redis 6 and later.

A Redis user may hold several passwords at once; that is the overlap window:

    rotate   ACL SETUSER u on #<sha256(new)>      new and old both accepted; env key rewritten
    (restart the service on the new env file and check it)
    finish   ACL SETUSER u !<sha256(old)> ...     every password but the one in the env file removed
    revert   ACL SETUSER u #<sha256(old)> !<sha256(new)>, env file back byte-identical

Passwords are sent as their SHA-256 (``#``/``!`` rules), the form Redis stores, so the plaintext
reaches neither the server's memory nor MONITOR nor a replica's command stream.  ``requirepass``
is the password of the user ``default`` and is rotated the same way.  Plain Python.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse

from ansible_collections.runbook.ops.plugins.module_utils import _secrets
from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile, restore_backup
from ansible_collections.runbook.ops.plugins.module_utils._errors import RotationError

try:
    import redis
except ImportError:
    redis = None

URL_SCHEMES = ("redis", "rediss")
PERSIST = ("none", "config-rewrite", "acl-save")
DEFAULT_USER = "default"


def password_hash(password):
    """What Redis stores for a password, and what ``#``/``!`` ACL rules take."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- env values

def is_url(value):
    return urllib.parse.urlsplit(value or "").scheme in URL_SCHEMES


def value_password(value):
    """The password in an env value: a redis:// URL's password, else the value itself."""
    if value is None:
        return None
    if is_url(value):
        password = urllib.parse.urlsplit(value).password
        return urllib.parse.unquote(password) if password is not None else None
    return value


def value_with_password(value, password, username=None):
    """``value`` with its password replaced: the whole value, or the password part of a redis:// URL
    (percent-encoded; a user name is kept, or set when the URL has none and ``username`` is not default)."""
    if value is None or not is_url(value):
        return password
    parsed = urllib.parse.urlsplit(value)
    hostport = parsed.netloc.rsplit("@", 1)[-1]
    user = urllib.parse.unquote(parsed.username) if parsed.username else ""
    if not user and username and username != DEFAULT_USER:
        user = username
    netloc = "%s:%s@%s" % (urllib.parse.quote(user, safe=""), urllib.parse.quote(password, safe=""), hostport)
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, parsed.fragment))


# --------------------------------------------------------------------------- server

class RedisAuth:
    """ACL password changes for one user on one server."""

    def __init__(self, host="127.0.0.1", port=6379, username=None, admin_username=None, admin_password=None,
                 tls=False, timeout=5.0, check_mode=False):
        if redis is None:
            raise RotationError("redis_credential needs the Python library redis on the managed host")
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.username = username or DEFAULT_USER
        self.admin_username = admin_username
        self.admin_password = admin_password
        self.check_mode = check_mode

    def describe(self):
        return "%s:%s" % (self.host, self.port)

    def client(self, username=None, password=None):
        return redis.Redis(host=self.host, port=self.port, username=username, password=password, ssl=self.tls,
                           socket_timeout=self.timeout, socket_connect_timeout=self.timeout)

    def admin(self, fallback_password=None):
        """A connection allowed to run ACL SETUSER: the admin credentials, else the user's own current one."""
        if self.admin_password is not None or self.admin_username is not None:
            client = self.client(self.admin_username, self.admin_password)
            who = self.admin_username or DEFAULT_USER
        else:
            client = self.client(None if self.username == DEFAULT_USER else self.username, fallback_password)
            who = self.username
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise RotationError("Redis at %s refused the credentials of %s: %s" % (self.describe(), who, exc)) from None
        except redis.RedisError as exc:
            raise RotationError("cannot reach Redis at %s: %s" % (self.describe(), exc)) from None
        return client

    def acl_setuser(self, client, *rules):
        try:
            return client.execute_command("ACL", "SETUSER", self.username, *rules)
        except redis.ResponseError as exc:
            raise RotationError(self._acl_message(exc)) from None
        except redis.RedisError as exc:
            raise RotationError("ACL SETUSER %s on %s failed: %s" % (self.username, self.describe(), exc)) from None

    def _acl_message(self, exc):
        text = str(exc)
        if "unknown command" in text.lower():
            reason = "this Redis has no ACL support (Redis 6 or later is needed for an overlapping rotation)"
        elif "NOPERM" in text or "no permissions" in text.lower():
            reason = "the admin user may not run ACL commands (it needs +acl or +@admin)"
        else:
            reason = text
        return "cannot change the passwords of Redis user %s at %s: %s; nothing was changed" % (
            self.username, self.describe(), reason)

    def hashes(self, client):
        """The SHA-256 hashes of the user's passwords (ACL GETUSER); [] for a user without any."""
        try:
            info = client.execute_command("ACL", "GETUSER", self.username)
        except redis.ResponseError as exc:
            raise RotationError(self._acl_message(exc)) from None
        if info is None:
            raise RotationError("Redis user %s does not exist at %s; create it first (ACL SETUSER)" % (self.username, self.describe()))
        if isinstance(info, list):
            info = dict(zip(info[::2], info[1::2]))
        passwords = info.get(b"passwords", info.get("passwords")) or []
        return [item.decode("ascii") if isinstance(item, bytes) else item for item in passwords]

    def accepts(self, password):
        try:
            self.client(None if self.username == DEFAULT_USER else self.username, password).ping()
        except (redis.AuthenticationError, redis.ResponseError):
            return False
        except redis.RedisError as exc:
            raise RotationError("cannot reach Redis at %s: %s" % (self.describe(), exc)) from None
        return True

    def persist(self, client, how):
        if how == "none" or self.check_mode:
            return
        command = ("CONFIG", "REWRITE") if how == "config-rewrite" else ("ACL", "SAVE")
        try:
            client.execute_command(*command)
        except redis.RedisError as exc:
            raise RotationError("the passwords changed in memory but %s failed at %s: %s" % (" ".join(command), self.describe(), exc)) from None


# --------------------------------------------------------------------------- rotation

class RedisCredential:
    """One Redis user's password and the env file key the service reads it from."""

    def __init__(self, auth, env_file, env_key, persist="none"):
        if persist not in PERSIST:
            raise RotationError("persist must be one of %s" % ", ".join(PERSIST))
        self.auth = auth
        self.env_file = env_file
        self.env_key = env_key
        self.persist_mode = persist

    @property
    def check_mode(self):
        return self.auth.check_mode

    def _env(self):
        env = EnvFile.load(self.env_file)
        value = env.get(self.env_key)
        if value is None:
            raise RotationError("%s is not in %s; the service must read its Redis password from there" % (self.env_key, self.env_file))
        return env, value

    def _result(self, changed, msg, **extra):
        result = {"changed": changed, "msg": msg, "username": self.auth.username, "env_file": self.env_file, "env_key": self.env_key}
        result.update(extra)
        return result

    def rotate(self, password=None, generate="urlsafe", length=32):
        """Add a new password beside the current one (overlap), prove it, and write it to the env file."""
        env, value = self._env()
        old = value_password(value)
        client = self.auth.admin(fallback_password=old)
        before = self.auth.hashes(client)
        new = password if password is not None else _secrets.generate(generate, length)
        new_hash = password_hash(new)
        if password is not None and value_password(value) == new and new_hash in before:
            return self._result(False, "%s already holds the given password of %s" % (self.env_key, self.auth.username),
                                fingerprint=_secrets.fingerprint(new), env_backup=None, passwords=len(before))
        if self.check_mode:
            return self._result(True, "would add %s to Redis user %s at %s and write it to %s" % (
                _secrets.fingerprint(new), self.auth.username, self.auth.describe(), self.env_key),
                fingerprint=_secrets.fingerprint(new), env_backup=None, passwords=len(before) + 1)
        self.auth.acl_setuser(client, "on", "#" + new_hash)
        if not self.auth.accepts(new):
            self.auth.acl_setuser(client, "!" + new_hash)
            raise RotationError("Redis at %s does not accept the new password of %s after ACL SETUSER; it was removed "
                                "again and nothing else changed" % (self.auth.describe(), self.auth.username))
        env.set(self.env_key, value_with_password(value, new, self.auth.username))
        try:
            backup = env.write(backup=True)
        except BaseException:
            self.auth.acl_setuser(client, "!" + new_hash)  # the env file was not written: the service keeps the old one
            raise
        self.auth.persist(client, self.persist_mode)
        return self._result(True, "added %s to Redis user %s at %s (the old one still works until finished); %s in %s now "
                            "holds it" % (_secrets.fingerprint(new), self.auth.username, self.auth.describe(), self.env_key,
                                          self.env_file),
                            fingerprint=_secrets.fingerprint(new), previous_fingerprint=_secrets.fingerprint(old),
                            env_backup=backup, passwords=len(set(before) | {new_hash}))

    def finish(self):
        """End the overlap: remove every password of the user but the one in the env file."""
        _env, value = self._env()
        current = value_password(value)
        client = self.auth.admin(fallback_password=current)
        hashes = self.auth.hashes(client)
        keep = password_hash(current)
        if keep not in hashes:
            raise RotationError("Redis user %s at %s does not accept the password in %s (%s); refusing to remove the others"
                                % (self.auth.username, self.auth.describe(), self.env_key, _secrets.fingerprint(current)))
        stale = [item for item in hashes if item != keep]
        if stale and not self.check_mode:
            self.auth.acl_setuser(client, *["!" + item for item in stale])
            self.auth.persist(client, self.persist_mode)
        verb = "would remove" if self.check_mode else "removed"
        if stale:
            msg = "%s %d old password(s) of Redis user %s at %s; only %s remains" % (
                verb, len(stale), self.auth.username, self.auth.describe(), _secrets.fingerprint(current))
        else:
            msg = "Redis user %s at %s has only the password in %s" % (self.auth.username, self.auth.describe(), self.env_key)
        return self._result(bool(stale), msg, fingerprint=_secrets.fingerprint(current), removed=len(stale))

    def revert(self, backup):
        """The env file back from ``backup`` byte-identical; its password accepted again and the newer one removed."""
        if not backup or not os.path.exists(backup):
            raise RotationError("the env file backup %s does not exist; nothing to revert from" % backup)
        old = value_password(EnvFile.load(backup).get(self.env_key))
        if old is None:
            raise RotationError("%s is not in the backup %s" % (self.env_key, backup))
        _env, value = self._env()
        new = value_password(value)
        client = self.auth.admin(fallback_password=new)
        hashes = self.auth.hashes(client)
        rules = []
        if password_hash(old) not in hashes:
            rules.append("#" + password_hash(old))
        if new != old and password_hash(new) in hashes:
            rules.append("!" + password_hash(new))
        with open(backup, "rb") as handle:
            wanted = handle.read()
        with open(self.env_file, "rb") as handle:
            env_changed = handle.read() != wanted
        if not self.check_mode:
            if rules:
                self.auth.acl_setuser(client, "on", *rules)
                self.auth.persist(client, self.persist_mode)
            if env_changed:
                restore_backup(backup, self.env_file)
        changed = bool(rules) or env_changed
        return self._result(changed, "%s%s restored from %s; Redis user %s accepts %s again%s" % (
            "would revert: " if self.check_mode else "", self.env_file, backup, self.auth.username, _secrets.fingerprint(old),
            " and no longer %s" % _secrets.fingerprint(new) if new != old else ""),
            fingerprint=_secrets.fingerprint(old), env_backup=backup)
