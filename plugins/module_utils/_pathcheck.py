# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk space, inodes, ownership and permissions of data directories (runbook HP5).

Plain Python, no Ansible imports.  Read-only: nothing here changes a file.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass

from ansible_collections.runbook.ops.plugins.module_utils._errors import ProbeError

STATES = ("ok", "warning", "critical")


def worst(states):
    rank = {state: position for position, state in enumerate(STATES)}
    return max(states, key=lambda state: rank[state], default="ok")


def parse_mode(value, option="mode"):
    """'0700', '700', 0o700 (an int from YAML 0700) -> 0o700."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProbeError("%s must be an octal string such as '0700'" % option)
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        try:
            mode = int(text[2:] if text.lower().startswith("0o") else text, 8)
        except ValueError:
            raise ProbeError("%s %r is not an octal mode such as '0700'" % (option, value)) from None
    if not 0 <= mode <= 0o7777:
        raise ProbeError("%s %r is out of range; quote it as an octal string such as '0700'" % (option, value))
    return mode


def _uid(owner):
    if owner is None:
        return None
    text = str(owner)
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ProbeError("owner %r is not a known user on this host" % text) from None


def _gid(group):
    if group is None:
        return None
    text = str(group)
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ProbeError("group %r is not a known group on this host" % text) from None


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def mount_point(path):
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def filesystem_usage(path):
    """Space and inode use of the filesystem holding ``path``, as ``df`` counts them."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize  # what an unprivileged writer can still use
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    usable = used + free
    inodes_used = st.f_files - st.f_ffree
    inodes_usable = inodes_used + st.f_favail
    return {
        "mount": mount_point(path),
        "total_bytes": total,
        "used_bytes": used,
        "free_bytes": free,
        "used_percent": round(used * 100.0 / usable, 1) if usable else 0.0,
        "inodes_total": st.f_files,
        "inodes_free": st.f_favail,
        # Some filesystems (btrfs, some overlays) report no inode limit at all.
        "inodes_used_percent": round(inodes_used * 100.0 / inodes_usable, 1) if inodes_usable else None,
    }


@dataclass
class PathPolicy:
    """What a path must look like.  Build with ``PathPolicy.from_dict(params)``."""

    warn_percent: float = 80.0
    crit_percent: float = 90.0
    inode_warn_percent: float = 80.0
    inode_crit_percent: float = 90.0
    min_free_bytes: int | None = None
    owner: str | None = None
    group: str | None = None
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None
    file_mode: int | None = None
    recurse: bool = False
    max_files: int = 10000
    max_offenders: int = 20
    must_exist: bool = True
    type: str = "any"

    @classmethod
    def from_dict(cls, params):
        policy = cls()
        for key in ("warn_percent", "crit_percent", "inode_warn_percent", "inode_crit_percent"):
            if params.get(key) is not None:
                value = float(params[key])
                if not 0 <= value <= 100:
                    raise ProbeError("%s must be between 0 and 100, got %s" % (key, params[key]))
                setattr(policy, key, value)
        if policy.warn_percent > policy.crit_percent:
            raise ProbeError("warn_percent (%g) is above crit_percent (%g)" % (policy.warn_percent, policy.crit_percent))
        if policy.inode_warn_percent > policy.inode_crit_percent:
            raise ProbeError("inode_warn_percent (%g) is above inode_crit_percent (%g)"
                             % (policy.inode_warn_percent, policy.inode_crit_percent))
        if params.get("min_free_bytes") is not None:
            policy.min_free_bytes = int(params["min_free_bytes"])
        policy.owner, policy.uid = params.get("owner"), _uid(params.get("owner"))
        policy.group, policy.gid = params.get("group"), _gid(params.get("group"))
        policy.mode = parse_mode(params.get("mode"), "mode")
        policy.file_mode = parse_mode(params.get("file_mode"), "file_mode")
        for key in ("recurse", "must_exist"):
            if params.get(key) is not None:
                setattr(policy, key, bool(params[key]))
        for key in ("max_files", "max_offenders"):
            if params.get(key) is not None:
                value = int(params[key])
                if value < 1:
                    raise ProbeError("%s must be at least 1" % key)
                setattr(policy, key, value)
        kind = params.get("type") or "any"
        if kind not in ("any", "directory", "file"):
            raise ProbeError("type must be any, directory or file")
        policy.type = kind
        return policy

    def inspects_files(self):
        return any(v is not None for v in (self.uid, self.gid, self.mode, self.file_mode))

    def problems(self, st):
        """Ownership/mode problems of one lstat() result, as short strings."""
        found = []
        if self.uid is not None and st.st_uid != self.uid:
            found.append("owner %s, expected %s" % (_user_name(st.st_uid), self.owner))
        if self.gid is not None and st.st_gid != self.gid:
            found.append("group %s, expected %s" % (_group_name(st.st_gid), self.group))
        allowed = self.file_mode if (self.file_mode is not None and not stat.S_ISDIR(st.st_mode)) else self.mode
        if allowed is not None:
            mode = stat.S_IMODE(st.st_mode)
            extra = mode & ~allowed
            if extra:
                found.append("mode %04o has bits %04o beyond %04o" % (mode, extra, allowed))
        return found


def _entry(path, st, problems):
    return {"path": path, "owner": _user_name(st.st_uid), "group": _group_name(st.st_gid),
            "mode": "%04o" % stat.S_IMODE(st.st_mode), "problems": problems}


def check_path(path, policy):
    """One path's report: existence, filesystem use, ownership/mode offenders, state and reasons."""
    result = {"path": path, "exists": False, "type": None, "owner": None, "group": None, "mode": None,
              "filesystem": None, "offenders": [], "files_checked": 0, "truncated": False,
              "state": "ok", "reasons": []}
    found = []
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if policy.must_exist:
            found.append(("critical", "%s does not exist" % path))
        result["state"] = worst([s for s, _r in found])
        result["reasons"] = [r for _s, r in found]
        return result
    except OSError as exc:
        found.append(("critical", "cannot stat %s: %s" % (path, exc.strerror)))
        result.update(state="critical", reasons=[r for _s, r in found])
        return result
    result["exists"] = True
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else \
        "file" if stat.S_ISREG(st.st_mode) else "other"
    result.update(type=kind, owner=_user_name(st.st_uid), group=_group_name(st.st_gid),
                  mode="%04o" % stat.S_IMODE(st.st_mode))
    if policy.type != "any" and kind != policy.type:
        found.append(("critical", "%s is a %s, expected a %s" % (path, kind, policy.type)))

    usage = filesystem_usage(path)
    result["filesystem"] = usage
    if usage["used_percent"] >= policy.crit_percent:
        found.append(("critical", "filesystem %s is %s%% full, at or over critical %g%% (%s free)"
                      % (usage["mount"], usage["used_percent"], policy.crit_percent, human_bytes(usage["free_bytes"]))))
    elif usage["used_percent"] >= policy.warn_percent:
        found.append(("warning", "filesystem %s is %s%% full, at or over warning %g%% (%s free)"
                      % (usage["mount"], usage["used_percent"], policy.warn_percent, human_bytes(usage["free_bytes"]))))
    if policy.min_free_bytes is not None and usage["free_bytes"] < policy.min_free_bytes:
        found.append(("critical", "filesystem %s has %s free, under the minimum %s"
                      % (usage["mount"], human_bytes(usage["free_bytes"]), human_bytes(policy.min_free_bytes))))
    inodes = usage["inodes_used_percent"]
    if inodes is not None and inodes >= policy.inode_crit_percent:
        found.append(("critical", "filesystem %s has %s%% of inodes used, at or over critical %g%%"
                      % (usage["mount"], inodes, policy.inode_crit_percent)))
    elif inodes is not None and inodes >= policy.inode_warn_percent:
        found.append(("warning", "filesystem %s has %s%% of inodes used, at or over warning %g%%"
                      % (usage["mount"], inodes, policy.inode_warn_percent)))

    if policy.inspects_files():
        offenders, checked, truncated = _offenders(path, st, policy)
        result.update(files_checked=checked, truncated=truncated)
        result["offenders_count"] = len(offenders)
        result["offenders"] = offenders[:policy.max_offenders]
        if offenders:
            first = offenders[0]
            found.append(("critical", "%d of %d checked entries have wrong ownership or mode, e.g. %s: %s"
                          % (len(offenders), checked, first["path"], "; ".join(first["problems"]))))
        if truncated:
            found.append(("warning", "stopped after max_files=%d entries; the rest of %s was not checked"
                          % (policy.max_files, path)))
    result["state"] = worst([s for s, _r in found])
    result["reasons"] = [r for _s, r in found]
    return result


def _offenders(path, st, policy):
    offenders = []
    checked = 1
    problems = policy.problems(st)
    if problems:
        offenders.append(_entry(path, st, problems))
    if not (policy.recurse and stat.S_ISDIR(st.st_mode)):
        return offenders, checked, False
    errors = []
    for root, dirs, files in os.walk(path, onerror=errors.append):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            if checked >= policy.max_files:
                return offenders, checked, True
            full = os.path.join(root, name)
            try:
                entry = os.lstat(full)
            except OSError:
                continue  # removed while we walked
            if stat.S_ISLNK(entry.st_mode):
                continue  # a link's own mode means nothing; walk does not follow it
            checked += 1
            problems = policy.problems(entry)
            if problems:
                offenders.append(_entry(full, entry, problems))
    for error in errors:
        offenders.append({"path": getattr(error, "filename", path), "owner": None, "group": None,
                          "mode": None, "problems": ["cannot read: %s" % error.strerror]})
    return offenders, checked, False


def human_bytes(count):
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return "%d B" % count


def check_paths(paths, policy):
    """Reports for every path plus the overall state and counts."""
    if not paths:
        raise ProbeError("give at least one path")
    results = [check_path(os.path.abspath(os.path.expanduser(str(p))), policy) for p in paths]
    state = worst([r["state"] for r in results])
    summary = {"total": len(results)}
    for name in STATES:
        summary[name] = sum(1 for r in results if r["state"] == name)
    problems = ["%s %s: %s" % (r["path"], r["state"], "; ".join(r["reasons"])) for r in results if r["state"] != "ok"]
    msg = "%d of %d paths ok, overall %s" % (summary["ok"], len(results), state)
    return {"paths": results, "state": state, "summary": summary,
            "msg": msg + (" - " + " | ".join(problems) if problems else "")}
