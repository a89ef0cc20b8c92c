"""Atomic, private file writes and advisory locks on separate lock files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from streamctl.errors import AlreadyRunning, FileError


def ensure_private_dir(path: Path) -> None:
    """Create PATH and any missing parents 0700 (mkdir(parents=True) would give the parents 0755)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    try:
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o700)
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
    except OSError as e:
        raise FileError(f"cannot create folder {path}: {e.strerror}") from None


def atomic_write(path: Path, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Write DATA to PATH so readers see the old or the new file, never a mix.

    DURABLE: fsync the file and the folder, so a power cut keeps the new file too. Without it the write
    is still atomic for every process (a crash of ours, of another reader), only not yet on disk: for
    the supervisor's frequent checkpoints, which also write a durable one every so often (journal.py).
    MODE 0600 (ours: config, state, logs) goes in a 0700 folder; a file others must read (a systemd
    unit, a cron file: no secret in them) gets its folder made 0755 instead."""
    if mode & 0o077:
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as e:
            raise FileError(f"cannot create folder {path.parent}: {e.strerror}") from None
    else:
        ensure_private_dir(path.parent)
    tmp = None
    try:
        # as mkstemp would (0600, O_EXCL, in the same folder so os.replace is atomic), without tempfile,
        # which imports shutil and with it bz2 and lzma into the supervisor at its first checkpoint
        name = str(path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp")
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        tmp = name  # ours from here: removed if anything below fails
        try:  # os.write, not a file object: fdopen costs three syscalls (fstat, ioctl, lseek) a write
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if mode != 0o600:
                os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
        if durable:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # make the rename itself durable
            finally:
                os.close(dir_fd)
    except OSError as e:
        raise FileError(f"cannot write {path}: {e.strerror}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def open_private(path: Path, flags: int, what: str) -> int:
    """os.open of a file streamctl writes (a log, a journal, a lock), 0600 when made, never through a
    symbolic link: one planted at PATH would have us append to, create or lock its target. WHAT names
    the file in the FileError."""
    try:
        return os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FileError(
                f"{what} {path} is a symbolic link: streamctl writes no file through a link; remove it"
            ) from None
        raise FileError(f"cannot open {what} {path}: {e.strerror}") from None


def _open_lock(path: Path) -> int:
    ensure_private_dir(path.parent)
    return open_private(path, os.O_RDWR, "lock")


@contextlib.contextmanager
def locked(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive flock on PATH for the duration of the block: blocking, or for at most TIMEOUT
    seconds, then FileError (for writers that must not hang on a lock someone else holds too long)."""
    fd = _open_lock(path)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() >= deadline:
                        raise FileError(f"cannot lock {path} within {timeout:g}s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class HeldLock:
    """A non-blocking exclusive flock kept for a long time (the supervisor's run lock)."""

    def __init__(self, path: Path, what: str, patience: float = 1.0) -> None:
        self.path = path
        self._fd = _open_lock(path)
        # `is_locked` probes take the lock for an instant; retry briefly so a probe never makes a real
        # start fail. A supervisor holds it for good, so after PATIENCE seconds it is really running.
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(self._fd)
                    raise FileError(f"cannot lock {path}: {e.strerror}") from None
            if time.monotonic() >= deadline:
                os.close(self._fd)
                raise AlreadyRunning(f"{what} is already running")
            time.sleep(0.01)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def is_locked(path: Path) -> bool:
    """True when some process holds PATH's exclusive flock (i.e. a supervisor is running).

    The probe takes a *shared* lock for an instant: probes never conflict with each other, so two
    `status` calls cannot see each other as a running supervisor.
    """
    if not path.exists():
        return False
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
