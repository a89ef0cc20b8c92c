"""Whether a file streamctl reads may be trusted, and reading small files safely.

The config names the program run as `ffmpeg` and the hook run on events; the state folder holds what the
supervisor feeds ffmpeg (concat lists) and the config cache. So a config, key file or state folder that
another user could have written or replaced is refused, as sshd's StrictModes and sudo refuse theirs: it
must be owned by the user running streamctl or by root, and so must every folder above it, none of them
writable by anyone else. Two kinds of shared write are allowed, because they cannot replace our entry or
hold nobody else: a sticky folder (/tmp: others cannot rename or remove what is not theirs), and a folder
writable by a group that is ours and lists no other member (Debian's private user groups; a Kubernetes
fsGroup, which exists in no /etc/group).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from streamctl.errors import FileError, StreamctlError, Untrusted, UsageError


def _user(uid: int) -> str:
    import pwd

    try:
        return f"{uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return str(uid)


def _group_is_ours_alone(gid: int, euid: int) -> bool:
    if gid != os.getegid() and gid not in os.getgroups():
        return False
    import grp
    import pwd

    try:
        members = grp.getgrgid(gid).gr_mem
    except KeyError:
        return True  # a group no /etc/group knows (a container's fsGroup): nobody else is in it by name
    try:
        me = pwd.getpwuid(euid).pw_name
    except KeyError:
        me = None
    return all(m == me for m in members)


def _problem(path: str, st: os.stat_result, euid: int, folder: bool) -> str | None:
    """Why PATH (with ST) is not safe for EUID, or None."""
    if st.st_uid not in (euid, 0):
        return (
            f"owned by uid {_user(st.st_uid)}, not by you ({_user(euid)}) or root: "
            f"check what it holds, then: chown {euid} {path}"
        )
    mode = st.st_mode
    if mode & stat.S_IWOTH and not (folder and mode & stat.S_ISVTX):  # sticky: others cannot replace
        return f"writable by every user (mode {stat.S_IMODE(mode):04o}): run: chmod o-w {path}"
    sticky = folder and mode & stat.S_ISVTX
    if mode & stat.S_IWGRP and not sticky and not _group_is_ours_alone(st.st_gid, euid):
        return f"writable by group {st.st_gid}'s users (mode {stat.S_IMODE(mode):04o}): run: chmod g-w {path}"
    return None


def check_trusted(path: Path, what: str, folder: bool = False, euid: int | None = None) -> None:
    """Raise Untrusted when PATH (WHAT: "config", "key_file", "state folder") or a folder above it could have
    been written or replaced by another user. A PATH that does not exist yet is judged by the folders that
    would hold it. Symbolic links are judged where they point (every folder on the real path) and where
    they stand (the folders above the link)."""
    me = os.geteuid() if euid is None else euid
    given = Path(os.path.abspath(path))
    real = Path(os.path.realpath(given))
    for target, check_self in ((real, True), (given, False)):
        if check_self:
            try:
                st = os.stat(target)
            except OSError:
                pass  # missing (made later by us), or unusable: its use says so, with its own exit code
            else:
                why = _problem(str(target), st, me, folder or stat.S_ISDIR(st.st_mode))
                if why is not None:
                    where = f"{path}" if target == given else f"{path}: {target}"
                    raise Untrusted(f"{what} {where} is {why}")
        # looked at every time (a dozen stats, ~20 us): a long-running `serve` must see a folder that
        # became unsafe since
        for parent in target.parents:
            try:
                st = os.stat(parent)
            except OSError:
                continue  # made later, by us, 0700; or not a folder, not ours to look in: its use fails
            why = _problem(str(parent), st, me, True)
            if why is not None:
                raise Untrusted(f"{what} {path} is in {parent}, which is {why}")


MAX_SMALL = 64 * 1024  # a key, a token: a few dozen bytes; a "file" that never ends (/dev/zero) is cut here


def read_small(
    path: Path, what: str, limit: int = MAX_SMALL, unreadable: type[StreamctlError] = FileError
) -> bytes:
    """PATH's bytes, when it is a regular file of at most LIMIT bytes (else UsageError). Opened without
    blocking, so a FIFO or a device cannot hang the command; links are followed (a Kubernetes secret is
    one). UNREADABLE: the error for a file that cannot be opened or read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise unreadable(f"{what}: cannot read {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{what}: {path} is not a regular file; give a file that holds the value")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UsageError(f"{what}: {path} is larger than {limit // 1024} KiB; it should hold one value")
        return b"".join(chunks)
    except OSError as e:
        raise unreadable(f"{what}: cannot read {path}: {e.strerror}") from None
    finally:
        os.close(fd)
