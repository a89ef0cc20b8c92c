"""ffmpeg as a child process: launch in its own process group, read its output, stop it safely.

Stopping follows systemd's order: `q` on stdin (ffmpeg finishes the stream cleanly), then SIGTERM to the
whole group with a SIGCONT (so a stopped process can act on it), then SIGKILL after the grace period.
The group is killed while the leader is still an unreaped zombie, so its pgid cannot have been reused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from streamctl.records import dataclass

Q_WAIT = 1.0  # seconds to wait after `q` before signalling


@dataclass(frozen=True)
class ProcessIdentity:
    """A process pinned by pid, start time and (when known) a digest of its command line's tail.

    The start time is compared to within a second: it is derived from the boot time, which moves when the
    wall clock is stepped. The command line is compared as a salted digest of the arguments
    after argv[0], matched against the end of the live command line, so a wrapper script (snap) still
    matches, and no stream key is stored.
    """

    pid: int
    create_time: float
    cmd_digest: str | None = None
    salt: str = ""
    nargs: int = 0

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        st = _stat_fields(pid)
        return None if st is None else cls(pid, _create_time(st))

    def alive(self) -> bool:
        st = _stat_fields(self.pid)
        if st is None or st[0] == b"Z" or abs(_create_time(st) - self.create_time) >= 1.0:
            return False
        if self.cmd_digest is None:
            return True
        live = cmdline(self.pid)
        return len(live) > self.nargs and cmd_digest(live[-self.nargs :], self.salt) == self.cmd_digest


# Read from /proc directly, as psutil does on Linux (same figures: start time = boot time + ticks since
# boot), because psutil costs the supervisor 1.2 MiB of memory for these two look-ups.
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_boot_time: float | None = None


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _create_time(fields: list[bytes]) -> float:
    global _boot_time
    if _boot_time is None:
        with open("/proc/stat", "rb") as f:
            _boot_time = float(next(line for line in f if line.startswith(b"btime")).split()[1])
    return int(fields[19]) / _CLK_TCK + _boot_time  # starttime, field 22 of stat


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "surrogateescape") for a in data.rstrip(b"\0").split(b"\0")] if data else []


def _sha256() -> Any:
    # the interpreter's own sha256: hashlib would load OpenSSL's (0.5 MiB) into every supervisor for
    # one short digest a session
    for name in ("_sha2", "_sha256"):  # 3.12+, 3.11
        try:
            return __import__(name).sha256
        except (ImportError, AttributeError):
            continue
    from hashlib import sha256

    return sha256


def cmd_digest(args: list[str], salt: str) -> str:
    digest: str = _sha256()((salt + "\0" + "\0".join(args)).encode()).hexdigest()
    return digest


def stop_foreign(ident: ProcessIdentity, grace: float) -> bool:
    """Stop a process group we did not start (left by a dead supervisor). True if it was running."""
    if not ident.alive():
        return False
    try:
        pgid = os.getpgid(ident.pid)
    except ProcessLookupError:
        return False
    # Only signal the group when the process leads it (ffmpeg is launched as a session leader).
    target = -pgid if pgid == ident.pid else ident.pid
    for sig in (signal.SIGTERM, signal.SIGCONT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, sig)
    if not _wait_gone(ident, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)
        _wait_gone(ident, 5.0)
    return True


def _wait_gone(ident: ProcessIdentity, timeout: float) -> bool:
    """Poll until IDENT is dead or a zombie (we cannot reap another's child; its new parent will)."""
    deadline = time.monotonic() + timeout
    while ident.alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


class Child(Protocol):
    """What the supervisor needs of a running ffmpeg (a fake in unit tests)."""

    pid: int

    def poll(self) -> int | None: ...
    def stop(self, grace: float) -> int: ...
    def close(self) -> None: ...


class FfmpegProcess:
    """One ffmpeg run. Thread-safe stop; the exit code is read only by the owner's poll()."""

    def __init__(
        self,
        argv: list[str],
        on_progress_line: Callable[[str], None],
        on_log_line: Callable[[str], None],
        on_eof: Callable[[], None] = lambda: None,
    ) -> None:
        self._popen = subprocess.Popen(
            _with_parent_death_signal(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # own process group: we signal the group; the terminal's ^C does not
            close_fds=True,
        )
        self.pid = self._popen.pid
        self._lock = threading.Lock()
        self._rc: int | None = None
        assert self._popen.stdout is not None and self._popen.stderr is not None
        self._readers = [
            threading.Thread(target=_pump, args=(self._popen.stdout, on_progress_line, on_eof), daemon=True),
            threading.Thread(target=_pump, args=(self._popen.stderr, on_log_line, None), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _exited(self) -> bool:
        """True once the leader has exited, without reaping it (WNOWAIT keeps the pgid reserved)."""
        if self._rc is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def _reap(self) -> int:
        """Kill what is left of the group, then reap the leader. Call only after _exited()."""
        if self._rc is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)  # grandchildren that outlived ffmpeg
            self._rc = self._popen.wait()
        return self._rc

    def poll(self) -> int | None:
        with self._lock:
            return self._reap() if self._exited() else None

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._exited():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def stop(self, grace: float) -> int:
        """q, then SIGTERM (+SIGCONT) to the group, then SIGKILL after GRACE; always reaped."""
        with self._lock:
            if not self._exited() and not is_stopped(self.pid) and self._send_q():
                self._wait_exit(min(Q_WAIT, grace))
            if not self._exited():
                for sig in (signal.SIGTERM, signal.SIGCONT):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.pid, sig)
                if not self._wait_exit(grace):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.pid, signal.SIGKILL)
                    self._wait_exit(10.0)
            return self._reap()

    def _send_q(self) -> bool:
        stdin = self._popen.stdin
        try:
            if stdin is None:
                return False
            stdin.write(b"q")
            stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        """Release pipes and reader threads after the process was reaped."""
        for t in self._readers:
            t.join(timeout=2.0)
        for f in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


def _with_parent_death_signal(argv: list[str]) -> list[str]:
    """Have the kernel send ffmpeg SIGTERM if the supervisor dies (SIGKILL, OOM killer).

    An ffmpeg that outlived its supervisor would stream on uncounted; with this it ends within
    milliseconds and at most one checkpoint interval of accounting is lost. setpriv (util-linux) sets
    PR_SET_PDEATHSIG and execs ffmpeg in the same process, without preexec_fn, which is unsafe with
    threads. A frozen (SIGSTOPped) ffmpeg can still outlive us: that is for `streamctl sweep`.

    The signal is only armed once setpriv has run: a supervisor killed between the fork and that moment
    would leave an ffmpeg nobody signals and no state names. So a shell between the two checks that its
    parent is still this process (after the signal is armed, so no moment is uncovered) and only then
    execs ffmpeg: an orphan from that gap never starts.
    """
    setpriv, sh = which("setpriv"), which("sh")
    if setpriv is None:
        return argv
    if sh is None:
        return [setpriv, "--pdeathsig", "TERM", "--", *argv]
    check = f'[ "$PPID" = {os.getpid()} ] && exec "$@"; exit 127'
    return [setpriv, "--pdeathsig", "TERM", "--", sh, "-c", check, "sh", *argv]


def proc_stat(pid: int) -> tuple[bool, int] | None:
    """(frozen, CPU ticks) of PID from one read of /proc/PID/stat, None if it cannot be read. Frozen: a
    SIGSTOPped process (state T or t) streams nothing and cannot read `q`; ticks: user + system time."""
    fields = _stat_fields(pid)
    try:
        return None if fields is None else (fields[0] in (b"T", b"t"), int(fields[11]) + int(fields[12]))
    except (IndexError, ValueError):
        return None


def cpu_ticks(pid: int) -> int | None:
    """PID's CPU time (user + system, in clock ticks), None if it cannot be read."""
    st = proc_stat(pid)
    return None if st is None else st[1]


def is_stopped(pid: int) -> bool:
    """True for a SIGSTOPped (frozen) process: it streams nothing and cannot read `q`."""
    st = proc_stat(pid)
    return st is not None and st[0]


def which(name: str) -> str | None:
    """shutil.which for a bare name, without shutil (it imports bz2 and lzma: memory the supervisor,
    running for hours, would carry for nothing)."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(folder or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def _pump(stream: IO[bytes], sink: Callable[[str], None], on_eof: Callable[[], None] | None) -> None:
    with contextlib.suppress(ValueError, OSError):
        for raw in iter(stream.readline, b""):
            sink(raw.decode("utf-8", "replace").rstrip("\r\n"))
    if on_eof is not None:
        on_eof()  # ffmpeg closed its output: it has exited (or is about to), so wake the watcher now
