# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL login-role passwords, set without the plaintext ever reaching the server.

The password is turned into a SCRAM-SHA-256 verifier here (``_secrets.scram_verifier``) and the
server receives only ``ALTER ROLE r PASSWORD 'SCRAM-SHA-256$...'``: its logs (even with
``log_statement = all``), ``pg_stat_activity`` and ``pg_authid`` see the verifier, never the
password.  A new password is then proven by logging in with it.

Two strategies (AWS Secrets Manager's names):

single user      ``rotate(role)``: new password on the role the service uses, env file rewritten.
                 Connections opened between the ALTER and the service's restart fail.
alternating      ``rotate(..., alternate=[app_a, app_b])``: two login roles, members of one owner
users            role that owns the objects.  The role the env file does not use gets a fresh
                 password (and LOGIN), the env file is switched to it; the other keeps working
                 until ``disable`` retires it (NOLOGIN, password NULL) after the service was
                 verified on the new one.

``revert(env_file, backup, role)`` undoes either: the env file back byte-identical from its 0600
backup; the old password made valid again from that backup (single user) or the switched-to role
disabled again (alternating).

A run killed mid-rotation is picked up by the next one through the rotation record of ``_rotation``
(``.<env file>.rotation.json``, 0600, keyed by the env key): before the server or the env file is
touched it records phase ``pending`` with the 0600 env backup's path, the fingerprints of the old and
new password and which role gets the new one; ``set`` once the env file points at it; ``finished``
or ``reverted`` at the end.  No password or verifier is ever recorded: a revert re-sets the old
password read from the env file (or its backup), so the old verifier need not be kept anywhere.
Plain Python, no Ansible imports.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse

from ansible_collections.runbook.ops.plugins.module_utils import _files, _rotation, _secrets
from ansible_collections.runbook.ops.plugins.module_utils._envfile import EnvFile, restore_backup
from ansible_collections.runbook.ops.plugins.module_utils._errors import DatabaseError, RotationError
from ansible_collections.runbook.ops.plugins.module_utils._postgres import PgServer, _pg_message

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:
    psycopg2 = None

URL_SCHEMES = ("postgresql", "postgres")

ROLE_SQL = "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s"
ME_SQL = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
VERIFIER_SQL = "SELECT rolpassword FROM pg_authid WHERE rolname = %s"
PARENTS_SQL = """
SELECT p.rolname FROM pg_auth_members m
JOIN pg_roles r ON r.oid = m.member JOIN pg_roles p ON p.oid = m.roleid
WHERE r.rolname = %s
"""


# --------------------------------------------------------------------------- DATABASE_URL

def url_credentials(url):
    """(user, password) of a postgresql:// URL, percent-decoded; None for a missing part."""
    parsed = _split_url(url)
    user = urllib.parse.unquote(parsed.username) if parsed.username is not None else None
    password = urllib.parse.unquote(parsed.password) if parsed.password is not None else None
    return user, password


def url_database(url):
    path = _split_url(url).path.lstrip("/")
    return urllib.parse.unquote(path) or None


def url_with_credentials(url, user, password):
    """``url`` with its user and password replaced, both percent-encoded (every reserved character,
    so a generated password with ``/``, ``+``, ``=`` or ``@`` stays one URL component).  Host, port,
    database and query are kept as written."""
    parsed = _split_url(url)
    hostport = parsed.netloc.rsplit("@", 1)[-1]
    netloc = "%s:%s@%s" % (urllib.parse.quote(user, safe=""), urllib.parse.quote(password, safe=""), hostport)
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, parsed.fragment))


def _split_url(url):
    try:
        parsed = urllib.parse.urlsplit(url or "")
        parsed.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise RotationError("the database URL is malformed (not shown: it holds a password)") from None
    if parsed.scheme not in URL_SCHEMES or not parsed.hostname:
        raise RotationError("the database URL must be postgresql://user:password@host[:port]/database "
                            "(not shown: it may hold a password)")
    return parsed


# --------------------------------------------------------------------------- roles

class RolePasswords:
    """Password changes on one server, through an admin connection to ``database``."""

    def __init__(self, server, database="postgres", check_mode=False):
        if psycopg2 is None:
            raise DatabaseError("pg_role_password needs the Python library psycopg2 on the managed host")
        self.server = server
        self.database = database
        self.check_mode = check_mode

    @contextlib.contextmanager
    def _cursor(self):
        with contextlib.closing(self.server.connect(self.database)) as conn, conn.cursor() as cur:
            yield cur

    def _execute(self, cur, statement, params=None, what="query"):
        try:
            cur.execute(statement, params)
        except psycopg2.Error as exc:
            raise DatabaseError("%s failed on %s: %s" % (what, self.server.describe(self.database), _pg_message(exc))) from None

    def role(self, cur, name):
        """{'name', 'can_login', 'verifier', 'known'}; ``verifier`` is what pg_authid holds (None when
        it is NULL or cannot be read), ``known`` whether it could be read (superuser only)."""
        self._execute(cur, ROLE_SQL, (name,), "looking up role %s" % name)
        row = cur.fetchone()
        if row is None:
            raise RotationError("role %s does not exist on %s; create it first (nothing was changed)"
                                % (name, self.server.describe()), role=name)
        info = {"name": name, "can_login": row[0], "verifier": None, "known": False}
        self._execute(cur, ME_SQL)
        if cur.fetchone()[0]:
            self._execute(cur, VERIFIER_SQL, (name,), "reading pg_authid")
            info["verifier"], info["known"] = cur.fetchone()[0], True
        return info

    def parents(self, cur, name):
        self._execute(cur, PARENTS_SQL, (name,), "reading the memberships of %s" % name)
        return sorted(row[0] for row in cur.fetchall())

    def _alter(self, cur, name, verifier=None, login=None, null_password=False):
        parts = [sql.SQL("ALTER ROLE {}").format(sql.Identifier(name))]
        if login is not None:
            parts.append(sql.SQL("LOGIN" if login else "NOLOGIN"))
        if null_password:
            parts.append(sql.SQL("PASSWORD NULL"))
        elif verifier is not None:
            if not _secrets.is_scram_verifier(verifier):
                raise RotationError("refusing to send a password that is not a SCRAM-SHA-256 verifier")
            parts.append(sql.SQL("PASSWORD {}").format(sql.Literal(verifier)))
        self._execute(cur, sql.SQL(" ").join(parts), what="ALTER ROLE %s" % name)

    def verify_login(self, name, password, database):
        """Log in as ``name`` with ``password`` and run SELECT 1; DatabaseError when refused."""
        server = PgServer(host=self.server.host, port=self.server.port, user=name, password=password,
                          ssl_mode=self.server.ssl_mode, connect_timeout=self.server.connect_timeout)
        try:
            with contextlib.closing(server.connect(database)) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except DatabaseError as exc:
            raise DatabaseError("login as %s failed (%s)" % (name, exc)) from None
        except psycopg2.Error as exc:
            raise DatabaseError("login as %s failed (%s)" % (name, _pg_message(exc))) from None

    def login_refused(self, name, password, database):
        """True when the server refuses ``password`` for ``name`` (the old credential after a rotation)."""
        try:
            self.verify_login(name, password, database)
        except DatabaseError:
            return True
        return False

    # ----------------------------------------------------------------------- operations

    def set_password(self, name, password, database=None, verify=True, force=False, login=None):
        """Make ``password`` the password of ``name``.  Unchanged when pg_authid shows it already is
        (superuser only; otherwise ``known`` is False and the password is set).  A login that fails
        afterwards puts the previous verifier back when it was readable, and raises."""
        with self._cursor() as cur:
            info = self.role(cur, name)
            matches = info["known"] and _secrets.scram_matches(password, info["verifier"])
            login_change = login is not None and bool(login) != bool(info["can_login"])
            changed = force or not matches or login_change
            result = {"role": name, "changed": changed, "known": info["known"], "verified": False,
                      "fingerprint": _secrets.fingerprint(password)}
            if not changed or self.check_mode:
                return result
            self._alter(cur, name, _secrets.scram_verifier(password), login=login if login_change else None)
            if verify:
                try:
                    self.verify_login(name, password, database or self.database)
                except DatabaseError as exc:
                    if info["known"]:
                        self._alter(cur, name, info["verifier"], login=info["can_login"] if login_change else None,
                                    null_password=info["verifier"] is None)
                        undo = "the previous password was put back"
                    else:
                        undo = "the previous password could not be put back (pg_authid needs a superuser to read)"
                    raise RotationError("%s was set on %s but %s; %s" % (
                        _secrets.fingerprint(password), name, exc, undo), role=name) from None
                result["verified"] = True
        return result

    def disable(self, name):
        """Retire a login role: NOLOGIN and password NULL.  Unchanged when it already is."""
        with self._cursor() as cur:
            info = self.role(cur, name)
            changed = info["can_login"] or not info["known"] or info["verifier"] is not None
            if changed and not self.check_mode:
                self._alter(cur, name, login=False, null_password=True)
        return {"role": name, "changed": changed, "known": info["known"], "disabled": True}

    def pick_alternate(self, roles, current_user):
        """The role of ``roles`` (two names) to switch to: the one the service does not use now.
        Both must exist and share an owner role, so objects are never stranded on one of them."""
        if len(roles) != 2 or roles[0] == roles[1]:
            raise RotationError("alternating users need exactly two different roles, got %s" % ", ".join(roles))
        with self._cursor() as cur:
            for name in roles:
                self.role(cur, name)
            shared = set(self.parents(cur, roles[0])) & set(self.parents(cur, roles[1]))
        if not shared:
            raise RotationError("%s and %s are not members of one owner role; grant one role that owns the "
                                "service's objects to both (GRANT owner TO %s, %s)" % (roles[0], roles[1], roles[0], roles[1]))
        target = roles[1] if current_user == roles[0] else roles[0]
        return target, sorted(shared)


# --------------------------------------------------------------------------- env file + rotation

class DatabaseCredential:
    """A role's password and the env file key (a postgresql:// URL) the service reads it from."""

    def __init__(self, passwords, env_file=None, env_key="DATABASE_URL"):
        self.passwords = passwords
        self.env_file = env_file
        self.env_key = env_key

    @property
    def check_mode(self):
        return self.passwords.check_mode

    def _env(self):
        env = EnvFile.load(self.env_file)
        url = env.get(self.env_key)
        if url is None:
            raise RotationError("%s is not in %s; write a postgresql:// URL there first" % (self.env_key, self.env_file),
                                key=self.env_key)
        _split_url(url)
        return env, url

    def _database(self, url, database):
        return database or (url_database(url) if url else None) or self.passwords.database

    def apply(self, role=None, password=None, generate="urlsafe", length=32, database=None, verify=True,
              force=False, alternate=None, resume=False):
        """Set the password (given or generated) of ``role`` (or of the idle one of ``alternate``) and
        point the env file's URL at it.  Returns a result dict without any secret."""
        env = url = None
        current_user = None
        if self.env_file:
            env, url = self._env()
            current_user, _old = url_credentials(url)
        elif password is None:
            raise RotationError("a generated password needs env_file to be written to (it would be lost otherwise)")
        result = {"previous_role": current_user, "resumed": False, "reverted_unfinished": None}
        if env is not None and resume:
            with self._lock():
                resumed = self._resume(url, database, result)
            if resumed is not None:
                return resumed
        if alternate:
            if env is None:
                raise RotationError("alternating users need env_file: the switch happens there")
            role, owners = self.passwords.pick_alternate(alternate, current_user)
            result["owner_roles"] = owners
        if not role:
            role = current_user
        if not role:
            raise RotationError("no role given and the URL in %s names no user" % self.env_file)
        new = password if password is not None else _secrets.generate(generate, length)
        database = self._database(url, database)
        record = entry = None
        if env is not None and not self.check_mode:
            # recorded (with the backup) before the server or the env file changes: a run killed from
            # here on is finished or reverted by the next one
            try:
                backup = _files.private_copy(self.env_file)
            except OSError as exc:
                raise RotationError("cannot back up %s: %s" % (self.env_file, exc.strerror or exc)) from None
            record = _rotation.RotationRecord.load(self.env_file)
            entry = {"seq": record.next_seq(), "phase": "pending", "pending": _secrets.fingerprint(new),
                     "current": _secrets.fingerprint(url_credentials(url)[1]), "previous": None,
                     "role": role, "previous_role": current_user, "strategy": "alternating" if alternate else "single",
                     "started": _rotation.now_iso(), "tested": None, "finished": None, "backup": backup}
            record.put(self.env_key, entry)
            record.save()
        try:
            outcome = self.passwords.set_password(role, new, database=database, verify=verify, force=force or bool(alternate),
                                                  login=True if alternate else None)
        except Exception:
            if entry is not None:  # set_password put the old verifier back (or changed nothing)
                self._close(record, entry, "reverted")
            raise
        result.update(outcome)
        result["active_role"] = role
        result["database"] = database
        result["env_changed"] = False
        result["env_backup"] = None
        if env is not None:
            if url_credentials(url) != (role, new):
                env.set(self.env_key, url_with_credentials(url, role, new))
                result["env_changed"] = True
                if not self.check_mode:
                    env.write(backup=False)
                    result["env_backup"] = entry["backup"]
                    entry["phase"] = "set"
                    record.save()
            elif entry is not None:  # nothing changed: no rotation to record
                if not outcome["changed"]:
                    _files.unlink_quietly(entry["backup"])
                    record.data["keys"].pop(self.env_key, None)
                    record.save()
                else:
                    entry["phase"] = "set"
                    result["env_backup"] = entry["backup"]
                    record.save()
        result["changed"] = result["changed"] or result["env_changed"]
        if result["reverted_unfinished"]:
            result["changed"] = True
        verb = "would set" if self.check_mode else "set"
        if not outcome["changed"]:
            what = "the password of %s already is %s" % (role, outcome["fingerprint"])
        else:
            what = "%s the password of %s to %s (SCRAM verifier%s)" % (
                verb, role, outcome["fingerprint"], ", login verified" if outcome["verified"] else "")
            if not outcome["known"]:
                what += "; whether it already was cannot be known without a superuser (pg_authid)"
        if result["env_changed"]:
            what += "; %s %s in %s" % ("would point" if self.check_mode else "pointed", self.env_key, self.env_file)
            if current_user and current_user != role:
                what += " from %s to %s" % (current_user, role)
        if result["reverted_unfinished"]:
            what = "%s; then %s" % (result["reverted_unfinished"], what)
        result["msg"] = what
        return result

    # ------------------------------------------------------------------ the rotation record

    def _lock(self):
        if self.check_mode:
            return contextlib.nullcontext()
        return _files.FileLock(_rotation.record_path(self.env_file) + ".lock", timeout=_rotation.LOCK_TIMEOUT)

    def _close(self, record, entry, phase, remove_backup=True):
        if remove_backup and entry.get("backup"):
            _files.unlink_quietly(entry["backup"])
            entry["backup"] = None
        if phase == "finished":
            entry["current"] = entry.get("pending")
        entry.update(phase=phase, finished=_rotation.now_iso(), pending=None)
        record.save()

    def unfinished(self):
        """(record, entry) of this env key's rotation; entry None unless one is unfinished."""
        record = _rotation.RotationRecord.load(self.env_file)
        entry = record.entry(self.env_key)
        return record, (entry if entry and entry.get("phase") in _rotation.IN_PROGRESS else None)

    def _resume(self, url, database, result):
        """An unfinished rotation of a killed run: the env file already points at the staged password →
        a result that lets the caller restart, verify and finish it (``resumed``); the env file still
        holds the old one → the server side is reverted (old password re-set from the env file, or the
        switched-to role disabled again) and None is returned so a fresh rotation proceeds."""
        record, entry = self.unfinished()
        if entry is None:
            return None
        user, password = url_credentials(url)
        now_fp = _secrets.fingerprint(password)
        role = entry.get("role")
        since = "the unfinished rotation of %s started %s" % (role, entry.get("started"))
        if now_fp == entry.get("pending") and user == role and entry.get("backup") and os.path.exists(entry["backup"]):
            verb = "would resume" if self.check_mode else "resuming"
            result.update(changed=False, resumed=True, role=role, active_role=role, previous_role=entry.get("previous_role"),
                          fingerprint=now_fp, database=self._database(url, database), env_changed=False,
                          env_backup=entry["backup"], known=False, verified=False,
                          msg="%s %s (phase %s, %s points %s at %s): restart, verify, then finish or revert" % (
                              verb, since, entry["phase"], self.env_file, self.env_key, now_fp))
            return result
        if now_fp != entry.get("current") or user != entry.get("previous_role"):
            raise RotationError("%s in %s holds %s for %s, neither the old (%s) nor the new (%s) credential of %s; "
                                "someone changed it since: check it, then move %s aside (nothing was changed)" % (
                                    self.env_key, self.env_file, now_fp, user, entry.get("current"), entry.get("pending"),
                                    since, record.path))
        # killed before the env file was written: the server may hold the new verifier
        if role == user:
            self.passwords.set_password(role, password, database=self._database(url, database),
                                        verify=not self.check_mode, force=True)
            undo = "the old password of %s re-set from %s" % (role, self.env_file)
        else:
            self.passwords.disable(role)
            undo = "%s disabled again" % role
        if not self.check_mode:
            self._close(record, entry, "reverted")
        result["reverted_unfinished"] = "%s %s (%s never reached %s)" % (
            "would revert" if self.check_mode else "reverted", since, entry.get("pending"), self.env_file)
        result["reverted_unfinished"] += "; " + undo
        return None

    def finish(self, keep_backup=True):
        """Mark the rotation recorded for this env file finished once the service was verified on the
        new credential; without ``keep_backup`` its env backup (which holds the old password) is removed."""
        with self._lock():
            record, entry = self.unfinished()
            if entry is None:
                return {"changed": False, "role": None, "env_backup": None,
                        "msg": "no unfinished rotation of %s in %s" % (self.env_key, self.env_file)}
            _env, url = self._env()
            now_fp = _secrets.fingerprint(url_credentials(url)[1])
            if now_fp != entry.get("pending"):
                raise RotationError("cannot finish the rotation of %s in %s: it holds %s, not the %s this rotation set"
                                    % (self.env_key, self.env_file, now_fp, entry.get("pending")))
            backup = entry.get("backup")
            verb = "would finish" if self.check_mode else "finished"
            if not self.check_mode:
                self._close(record, entry, "finished", remove_backup=not keep_backup)
            return {"changed": True, "role": entry.get("role"), "env_backup": backup if keep_backup else None,
                    "msg": "%s the rotation of %s (%s)%s" % (
                        verb, entry.get("role"), now_fp, "" if keep_backup or not backup else "; backup removed")}

    def revert(self, backup, role):
        """Undo ``apply``: the env file back from ``backup`` byte-identical; the password from the backup's
        URL made valid again when its user is ``role``, else ``role`` (the switched-to one) disabled."""
        if not backup or not os.path.exists(backup):
            raise RotationError("the env file backup %s does not exist; nothing to revert from" % backup)
        old_url = EnvFile.load(backup).get(self.env_key)
        if old_url is None:
            raise RotationError("%s is not in the backup %s" % (self.env_key, backup))
        old_user, old_password = url_credentials(old_url)
        result = {"role": role, "previous_role": old_user, "env_backup": backup}
        if old_user == role:
            outcome = self.passwords.set_password(role, old_password, database=self._database(old_url, None),
                                                  verify=not self.check_mode)
            action = "the previous password of %s is valid again" % role
        else:
            outcome = self.passwords.disable(role)
            action = "%s disabled again (NOLOGIN, password NULL); the service uses %s" % (role, old_user)
        with open(backup, "rb") as handle:
            wanted = handle.read()
        with open(self.env_file, "rb") as handle:
            env_changed = handle.read() != wanted
        if env_changed and not self.check_mode:
            restore_backup(backup, self.env_file)
        if not self.check_mode:
            with self._lock():
                record, entry = self.unfinished()
                if entry is not None:
                    self._close(record, entry, "reverted", remove_backup=False)
        result.update(changed=outcome["changed"] or env_changed, env_changed=env_changed, known=outcome["known"],
                      msg="%s%s; %s" % ("would revert: " if self.check_mode else "",
                                        "%s restored from %s" % (self.env_file, backup) if env_changed
                                        else "%s already as in %s" % (self.env_file, backup), action))
        return result
