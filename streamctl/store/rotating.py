"""Files that rotate at a size, safe with several processes writing the same file: the stream log (the
supervisor writes it all the time, the notification helper now and then) and the event journal (the
supervisor, `sweep`, the cron tick).

Every rotation happens under the file's flock (`NAME.lock` beside it), and only after the writer has
checked, under that lock, that the file it would rotate is still the one at the path and still too big:
two writers never rotate twice, and none renames a file another has just started. Lines go out with one
write() on an O_APPEND descriptor, so they are never split. A writer that keeps its descriptor open (the
supervisor's log) looks at the path's inode every CHECK_EVERY writes and under the lock before a rotation,
and follows a rotation another writer made; until it notices, its lines land, whole and in order, at the
end of the file just rotated (NAME.1): nothing is lost around a rotation.
"""

from __future__ import annotations

import os
from pathlib import Path

from streamctl.errors import FileError
from streamctl.store.fileio import ensure_private_dir, locked, open_private

CHECK_EVERY = 256  # writes between two looks at the path's inode (a stat: ~2 us)


def _lock(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def rotate(path: Path, keep: int) -> None:
    """NAME -> NAME.1 -> ... -> NAME.KEEP (the oldest goes). The caller holds the lock."""
    for i in range(keep, 0, -1):
        newer = path if i == 1 else path.with_name(f"{path.name}.{i - 1}")
        if newer.exists():
            os.replace(newer, path.with_name(f"{path.name}.{i}"))


def old_files(path: Path, keep: int) -> list[Path]:
    """PATH's rotated files that exist, oldest first."""
    return [p for i in range(keep, 0, -1) if (p := path.with_name(f"{path.name}.{i}")).exists()]


def _open(path: Path) -> int:
    return open_private(path, os.O_WRONLY | os.O_APPEND, "file")


def append(path: Path, data: bytes, max_bytes: int, keep: int, timeout: float | None = None) -> None:
    """DATA (whole lines) at the end of PATH, rotating it first if it would pass MAX_BYTES. For writers
    that write now and then: a lock and an open per call. TIMEOUT: as fileio.locked's."""
    ensure_private_dir(path.parent)
    with locked(_lock(path), timeout):
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(data) > max_bytes:
            rotate(path, keep)
        fd = _open(path)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


class RotatingFile:
    """A descriptor kept open for a writer that writes often. Not thread-safe: its caller locks."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        ensure_private_dir(path.parent)
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._fd = _open(path)
        self._size = os.fstat(self._fd).st_size
        self._writes = 0

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            return
        self._writes += 1
        if self._size + len(data) > self.max_bytes:
            self._rotate()
        elif self._writes % CHECK_EVERY == 0:
            self._follow()
        if self._fd >= 0:
            os.write(self._fd, data)
            self._size += len(data)

    def _moved(self) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            return True

    def _reopen(self) -> None:
        os.close(self._fd)
        self._fd = -1
        try:
            self._fd = _open(self.path)
        except FileError:
            return  # a link planted at the path since: nothing more is written (the console still is)
        self._size = os.fstat(self._fd).st_size

    def _follow(self) -> None:
        if self._moved():
            with locked(_lock(self.path)):
                self._reopen()

    def _rotate(self) -> None:
        with locked(_lock(self.path)):
            if not self._moved() and os.fstat(self._fd).st_size > 0:
                rotate(self.path, self.keep)
            self._reopen()  # the new file at the path: ours, or the one another writer made

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
