# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk space, inodes, ownership and permissions of data directories (runbook HP5).

Plain Python, no Ansible imports.  Read-only: nothing here changes a file.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from dataclasses import dataclass, field

from ansible_collections.runbook.ops.plugins.module_utils._errors import ProbeError
from ansible_collections.runbook.ops.plugins.module_utils._status import level, overview, worst


def parse_mode(value, option="mode", warnings=None):
    """'0700', '700', 0o700 (an int from YAML 0700) -> 0o700.

    An unquoted ``mode: 755`` reaches us as the decimal integer 755 (0o1363), which nobody means:
    an integer above 0o777 written only with the digits 0-7 is read as the octal digits it shows,
    with a warning appended to ``warnings`` (what users of ansible.builtin.file expect).  An integer
    up to 0o777 is a YAML octal literal (``mode: 0700`` is 448) and is taken as it is.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProbeError("%s must be an octal string such as '0700'" % option)
    if isinstance(value, int):
        mode = value
        digits = str(value)
        if value > 0o777 and set(digits) <= set("01234567") and int(digits, 8) <= 0o7777:
            mode = int(digits, 8)
            if warnings is not None:
                warnings.append("%s %d is a decimal number (an unquoted YAML value); read it as the octal mode %04o."
                                " Quote modes, for example %s: '%04o'" % (option, value, mode, option, mode))
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
    warnings: list = field(default_factory=list)

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
        policy.mode = parse_mode(params.get("mode"), "mode", policy.warnings)
        policy.file_mode = parse_mode(params.get("file_mode"), "file_mode", policy.warnings)
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


def _kind(st):
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if stat.S_ISLNK(st.st_mode):
        return "link"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def _finish(result, found):
    result["state"] = worst(s for s, _r in found)
    result["reasons"] = [r for s, r in found if s != "ok"]
    result["notes"] = [r for s, r in found if s == "ok"]
    result["detail"] = describe(result)
    return result


def _follow_link(path, policy, result, found):
    """Resolve the symbolic link ``path``; its target's stat, or None when the link is dangling or loops."""
    target = os.readlink(path)
    result["link_target"] = target
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if policy.must_exist:
            found.append(("critical", "%s is a symbolic link to %s, which does not exist (a dangling link)"
                          % (path, target)))
        else:
            found.append(("ok", "%s is a dangling symbolic link to %s" % (path, target)))
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            found.append(("critical", "%s is a symbolic link to %s that loops (too many levels of links)"
                          % (path, target)))
        else:
            found.append(("critical", "cannot follow the symbolic link %s to %s: %s" % (path, target, exc.strerror)))
        return None
    resolved = os.path.realpath(path)
    result["resolved_path"] = resolved
    found.append(("ok", "%s is a symbolic link to %s; checked %s" % (path, target, resolved)))
    return st


def check_path(path, policy):
    """One path's report: existence, filesystem use, ownership/mode offenders, state and reasons.

    A symbolic link is followed: its target is what is checked, and the report says where it points
    (``link_target``, ``resolved_path``).  A dangling or looping link is a finding, never an exception.
    """
    result = {"path": path, "exists": False, "type": None, "link": False, "owner": None, "group": None,
              "mode": None, "filesystem": None, "offenders": [], "files_checked": 0, "truncated": False,
              "vanished": 0, "state": "ok", "reasons": []}
    found = []
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if policy.must_exist:
            found.append(("critical", "%s does not exist" % path))
        return _finish(result, found)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            found.append(("critical", "cannot reach %s: a symbolic link on its way loops" % path))
        else:
            found.append(("critical", "cannot stat %s: %s" % (path, exc.strerror)))
        return _finish(result, found)
    checked_path = path
    if stat.S_ISLNK(st.st_mode):
        result["link"] = True
        st = _follow_link(path, policy, result, found)
        if st is None:
            return _finish(result, found)
        checked_path = result["resolved_path"]
    result["exists"] = True
    kind = _kind(st)
    result.update(type=kind, owner=_user_name(st.st_uid), group=_group_name(st.st_gid),
                  mode="%04o" % stat.S_IMODE(st.st_mode))
    if policy.type != "any" and kind != policy.type:
        found.append(("critical", "%s is a %s, expected a %s" % (path, kind, policy.type)))

    try:
        usage = filesystem_usage(checked_path)
    except FileNotFoundError:
        found.append(("critical", "%s vanished while it was checked" % path))
        result["exists"] = False
        return _finish(result, found)
    result["filesystem"] = usage
    found.extend(_usage_findings(usage, policy))

    if policy.inspects_files():
        walk = _offenders(checked_path, st, policy)
        result.update(files_checked=walk["checked"], truncated=walk["truncated"], vanished=walk["vanished"])
        if walk["gone"]:
            found.append(("critical", "%s vanished while it was checked" % path))
            result["exists"] = False
        offenders = walk["offenders"]
        result["offenders_count"] = len(offenders)
        result["offenders"] = offenders[:policy.max_offenders]
        if offenders:
            first = offenders[0]
            found.append(("critical", "%d of %d checked entries have wrong ownership or mode, e.g. %s: %s"
                          % (len(offenders), walk["checked"], first["path"], "; ".join(first["problems"]))))
        if walk["unreadable"]:
            first = walk["unreadable"][0]
            found.append(("critical", "%d entries could not be read, e.g. %s: %s"
                          % (len(walk["unreadable"]), first[0], first[1])))
        if walk["vanished"]:
            found.append(("ok", "%d entries vanished while the walk ran (e.g. %s); nothing left to check there"
                          % (walk["vanished"], walk["vanished_example"])))
        if walk["truncated"]:
            found.append(("warning", "stopped after max_files=%d entries; the rest of %s was not checked"
                          % (policy.max_files, checked_path)))
    return _finish(result, found)


def _usage_findings(usage, policy):
    """Findings about the filesystem's space and inodes; the free space is said once."""
    found = []
    free = human_bytes(usage["free_bytes"])
    too_little = policy.min_free_bytes is not None and usage["free_bytes"] < policy.min_free_bytes
    state = level(usage["used_percent"], policy.warn_percent, policy.crit_percent)
    if state != "ok":
        limit = policy.crit_percent if state == "critical" else policy.warn_percent
        found.append((state, "filesystem %s is %s%% full, at or over %s %g%%%s"
                      % (usage["mount"], usage["used_percent"], state, limit, "" if too_little else " (%s free)" % free)))
    if too_little:
        found.append(("critical", "filesystem %s has %s free, under the minimum %s"
                      % (usage["mount"], free, human_bytes(policy.min_free_bytes))))
    inodes = usage["inodes_used_percent"]
    state = "ok" if inodes is None else level(inodes, policy.inode_warn_percent, policy.inode_crit_percent)
    if state != "ok":
        limit = policy.inode_crit_percent if state == "critical" else policy.inode_warn_percent
        found.append((state, "filesystem %s has %s%% of inodes used, at or over %s %g%%"
                      % (usage["mount"], inodes, state, limit)))
    return found


def _offenders(path, st, policy):
    """Walk ``path`` (links below it are not followed) and collect what breaks the policy.

    Entries that disappear between the directory listing and their ``lstat`` (or directories removed
    before the walk reaches them) are counted as vanished: there is nothing left whose ownership or
    mode could be wrong.  Entries that cannot be read (permission denied) are reported as such.
    """
    walk = {"offenders": [], "unreadable": [], "checked": 1, "truncated": False, "vanished": 0,
            "vanished_example": None, "gone": False}
    problems = policy.problems(st)
    if problems:
        walk["offenders"].append(_entry(path, st, problems))
    if not (policy.recurse and stat.S_ISDIR(st.st_mode)):
        return walk

    def vanished(name):
        walk["vanished"] += 1
        walk["vanished_example"] = walk["vanished_example"] or name

    def walk_error(error):
        name = getattr(error, "filename", None) or path
        if isinstance(error, FileNotFoundError) and name == path:
            walk["gone"] = True
        elif isinstance(error, FileNotFoundError):
            vanished(name)
        else:
            walk["unreadable"].append((name, "cannot read: %s" % (error.strerror or error)))

    for root, dirs, files in os.walk(path, onerror=walk_error):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            if walk["checked"] >= policy.max_files:
                walk["truncated"] = True
                return walk
            full = os.path.join(root, name)
            try:
                entry = os.lstat(full)
            except FileNotFoundError:
                vanished(full)
                continue
            except OSError as exc:
                walk["unreadable"].append((full, "cannot stat: %s" % exc.strerror))
                continue
            if stat.S_ISLNK(entry.st_mode):
                continue  # a link's own mode means nothing; walk does not follow it
            walk["checked"] += 1
            problems = policy.problems(entry)
            if problems:
                walk["offenders"].append(_entry(full, entry, problems))
    return walk


def human_bytes(count):
    """Bytes in binary units, one decimal: ``512 B``, ``400.0 KiB``, ``47.2 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return "%d B" % count


def describe(result):
    """One line for a report: the reasons, then the facts they did not already say.

    The filesystem use is said once (a reason about the filesystem already names its use and free
    space); sizes are always in binary units (``human_bytes``).
    """
    parts = list(result.get("reasons") or [])
    said = " ".join(parts)
    facts = []
    fs = result.get("filesystem")
    if fs and ("filesystem %s " % fs["mount"]) not in said:
        facts.append("%s%% used on %s, %s free" % (fs["used_percent"], fs["mount"], human_bytes(fs["free_bytes"])))
    if result.get("link"):
        facts.append("link to %s" % result.get("link_target"))
    if result.get("exists") and result.get("mode") and (result.get("offenders_count") is not None):
        facts.append("%s:%s %s" % (result["owner"], result["group"], result["mode"]))
    if result.get("vanished"):
        facts.append("%d entries vanished during the walk" % result["vanished"])
    if not parts:
        return ", ".join(facts) or ("%s does not exist" % result["path"] if not result.get("exists") else "")
    return "; ".join(parts) + (" (%s)" % ", ".join(facts) if facts else "")


def check_paths(paths, policy):
    """Reports for every path plus the overall state, counts and one message."""
    if not paths:
        raise ProbeError("give at least one path")
    results = [check_path(os.path.abspath(os.path.expanduser(str(p))), policy) for p in paths]
    report = overview(results, "paths", name_key="path")
    report["paths"] = results
    return report
