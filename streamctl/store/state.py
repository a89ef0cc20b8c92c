"""The per-stream JSON state file: what the supervisor did, readable by every other command."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamctl.errors import FileError
from streamctl.store.fileio import atomic_write, locked
from streamctl.store.lifecycle import SessionEnd, Status, StopReason, check_transition
from streamctl.store.limit import Limit
from streamctl.store.paths import Paths

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass, field, fields
else:
    from streamctl.records import dataclass, field, fields

SCHEMA_VERSION = 1
KEEP_SESSIONS = 50  # closed sessions kept in the file; `session_count` counts them all
KEEP_SHOWS = 100  # past shows of a scheduled stream kept in the file
# Seconds past a checkpoint that readers extrapolate a live session. The supervisor never counts less
# than readers were shown, so this is also what a stall may cost: kept as short as the meter's own
# extrapolation between progress blocks (accounting.EXTRAPOLATE_MAX); between checkpoints status then
# counts on at each checkpoint, never back.
HORIZON = 1.0


def show_record(
    show: float,
    started: float | None,
    ended: float | None,
    streamed: float,
    restarts: int,
    sessions: int,
    end: str,
) -> dict[str, Any]:
    """One past show, as the state file keeps it and `shows --json` prints it."""
    return {"show": show, "started_at": started, "ended_at": ended, "streamed": round(streamed, 3),
            "restarts": restarts, "sessions": sessions, "end": end}  # fmt: skip


def iso(ts: float | None) -> str | None:
    """Unix time as ISO 8601 with the local offset (None stays None)."""
    if ts is None:
        return None
    # as datetime's isoformat(timespec="seconds") gives it, without loading datetime into the supervisor
    t = time.localtime(ts)
    off = t.tm_gmtoff
    sign, off = ("+" if off >= 0 else "-"), abs(off)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"


@dataclass
class OpenSession:
    """The ffmpeg session in progress, checkpointed by the supervisor every few seconds."""

    started_at: float  # unix time
    t_arg: float  # the -t it was launched with
    ffmpeg_pid: int | None = None
    ffmpeg_create_time: float | None = None
    runtime_seconds: float = 0.0  # streamed so far, as of checkpoint_at
    rate: float | None = None  # media seconds per second at checkpoint_at: readers extrapolate with it
    checkpoint_at: float | None = None  # unix time of the last checkpoint
    ffmpeg_cmd: list[str] | None = None  # its argv with the key masked, for people
    cmd_digest: str | None = None  # salted digest of its argv after argv[0]: part of its identity
    cmd_salt: str = ""
    orphaned_at: float | None = None  # when a sweep found it streaming without its supervisor
    started_mono: float | None = None  # CLOCK_MONOTONIC at launch: ages that wall-clock steps do not move
    boot_id: str | None = None  # ...valid only within the same boot
    checkpoint_mono: float | None = None  # CLOCK_MONOTONIC at checkpoint_at (same boot only)
    ffmpeg_cpu: int | None = None  # ffmpeg's CPU ticks at checkpoint_at
    ffmpeg_frozen: bool | None = None  # ffmpeg was stopped (state T) at checkpoint_at


@dataclass
class StreamState:
    name: str
    schema: int = SCHEMA_VERSION
    status: str = Status.OFFLINE.value
    stop_reason: str | None = None
    budget_seconds: float | None = None
    until: float | None = None  # wall-clock deadline (unix time); the earlier of it and the budget wins
    runtime_seconds: float = 0.0  # committed: closed sessions only
    session: OpenSession | None = None
    sessions: list[dict[str, Any]] = field(default_factory=list)
    session_count: int = 0
    restarts: int = 0
    supervisor_pid: int | None = None
    supervisor_create_time: float | None = None
    started_at: float | None = None  # when the current (or last) supervisor run began
    end_time: float | None = None
    last_exit_code: int | None = None
    last_error: str | None = None  # why the last failed session failed (masked); cleared when live again
    progress: dict[str, Any] = field(default_factory=dict)  # last bitrate/speed seen
    stop_request: str | None = None  # a StopReason set by `sweep` for the running supervisor to honour
    updated_at: float | None = None
    # A scheduled stream (schedule.py): the figures above are its current show's; past shows are kept.
    show_at: float | None = None  # the current (or last) show's scheduled instant
    show_label: str | None = None  # ... as a wall-clock time in the schedule's zone (schedule.Schedule.label)
    show_started_at: float | None = None  # when it first started
    show_launched_at: float | None = None  # when the cron tick last launched it
    shows_seen: float | None = None  # every show up to this instant was started, missed or skipped
    shows: list[dict[str, Any]] = field(default_factory=list)  # past shows, oldest first
    shows_paused: bool = False
    shows_skip: list[float] = field(default_factory=list)  # shows to skip (their instants)

    @property
    def status_enum(self) -> Status:
        return Status(self.status)

    def transition(self, new: Status, reason: StopReason | None = None, now: float | None = None) -> None:
        """The one place a stream's status changes; illegal moves raise IllegalTransition."""
        old = self.status_enum
        if new != old:
            check_transition(old, new)
            self.status = new.value
        if reason is not None:
            self.stop_reason = reason.value
        if new in (Status.OFFLINE, Status.FAILED):
            self.end_time = now
            self.supervisor_pid = self.supervisor_create_time = None
        elif new == Status.STARTING and old in (Status.OFFLINE, Status.FAILED):
            self.stop_reason = None
            self.end_time = None

    def close_session(self, ended_at: float, runtime: float, exit_code: int | None, end: SessionEnd) -> None:
        """Move the open session into history and its runtime into the committed total."""
        s = self.session
        if s is None:
            return
        self.runtime_seconds += runtime
        self.sessions.append(
            {
                "started_at": s.started_at,
                "ended_at": ended_at,
                "runtime_seconds": round(runtime, 3),
                "t_arg": s.t_arg,
                "exit_code": exit_code,
                "ffmpeg_pid": s.ffmpeg_pid,
                "end": end.value,
            }
        )
        del self.sessions[:-KEEP_SESSIONS]
        self.session = None

    def new_show(self, show: float, now: float, label: str | None = None) -> None:
        """Show SHOW begins: the current show goes into the past shows and every figure starts from zero
        (the stream must not be running). Done once per show, under the state lock."""
        if self.show_at is not None and self.show_at != show:
            end = self.stop_reason or ("missed" if self.show_started_at is None else "ended")
            ran = self.total_runtime()
            n, restarts = self.session_count, self.restarts
            self._keep_show(
                show_record(self.show_at, self.show_started_at, self.end_time, ran, restarts, n, end)
            )
        if self.show_at != show:
            self.reset_runtime(now)
            self.show_at, self.show_started_at, self.show_label = show, None, label
            self.stop_reason = None
        self.shows_seen = max(self.shows_seen or show, show)

    def pass_show(self, show: float, why: str) -> None:
        """Record show SHOW as not run (missed, skipped, paused)."""
        self._keep_show(show_record(show, None, None, 0.0, 0, 0, why))
        self.shows_seen = max(self.shows_seen or show, show)
        self.shows_skip = [s for s in self.shows_skip if abs(s - show) >= 1.0]  # used: forget it

    def _keep_show(self, record: dict[str, Any]) -> None:
        self.shows.append(record)
        del self.shows[:-KEEP_SHOWS]

    def session_runtime(self, now: float | None = None) -> float | None:
        """The open session's checkpointed runtime (extrapolated to NOW when live); None without one."""
        s = self.session
        if s is None:
            return None
        ran = s.runtime_seconds
        if now is not None and self.status == Status.LIVE and s.checkpoint_at is not None:
            # the supervisor's meter never reports less than this (its promise), so it is never taken back
            rate = 1.0 if s.rate is None else s.rate
            ran += rate * min(max(0.0, now - s.checkpoint_at), HORIZON)
        return min(ran, s.t_arg)

    def total_runtime(self, now: float | None = None) -> float:
        """Committed runtime plus the open session's (see session_runtime)."""
        return self.runtime_seconds + (self.session_runtime(now) or 0.0)

    @property
    def limit(self) -> Limit:
        return Limit(self.budget_seconds, self.until)

    def remaining(self, now: float | None = None) -> float | None:
        """Time left to stream, by budget or deadline (see Limit.remaining), counting the open session."""
        return self.limit.remaining(self.total_runtime(now), now)

    def begin_run(
        self, now: float, budget: float | None, until: float | None, supervisor: tuple[int, float] | None
    ) -> None:
        """A supervisor takes the stream: STARTING, its limit and its pid. The counters go on: restarts
        and sessions count since the runtime was last reset, across resumes, as the runtime does."""
        self.transition(Status.STARTING, None, now)
        self.budget_seconds = budget
        self.until = until
        self.started_at = now
        self.stop_request = None
        self.supervisor_pid, self.supervisor_create_time = supervisor or (None, None)

    def reset_runtime(self, now: float) -> float:
        """Forget what was streamed (the stream must not be running). Returns the runtime it had."""
        old = self.total_runtime()
        self.runtime_seconds = 0.0
        self.session = None
        self.sessions = []
        self.session_count = 0
        self.restarts = 0
        if self.status_enum.running:
            self.transition(Status.OFFLINE, StopReason.SUPERVISOR_LOST, now)
        return old

    def as_dict(self) -> dict[str, Any]:
        """A copy as plain data (what the file holds). Built by hand: dataclasses.asdict deep-copies
        every value and was most of a checkpoint's CPU time."""
        d = dict(vars(self))
        d["session"] = dict(vars(self.session)) if self.session is not None else None
        if self.session is not None and self.session.ffmpeg_cmd is not None:
            d["session"]["ffmpeg_cmd"] = list(self.session.ffmpeg_cmd)
        d["sessions"] = [dict(x) for x in self.sessions]
        d["progress"] = dict(self.progress)
        d["shows"] = [dict(x) for x in self.shows]
        d["shows_skip"] = list(self.shows_skip)
        return d

    def to_json(self) -> bytes:
        # Compact: with an indent json encodes in Python, 2.7 times slower, and leaves a cycle of 33
        # objects behind each call for the collector (a checkpoint writes this every 5 s for hours).
        return (json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamState:
        known = _known_fields(cls)
        d = {k: v for k, v in data.items() if k in known}
        if d.get("session") is not None:
            d["session"] = OpenSession(**d["session"])
        st = cls(**d)
        if Status(st.status) == Status.BROKEN:  # reject unknown statuses early
            raise ValueError("status 'broken' is the views' word, never a state's")
        return st


_KNOWN: dict[type, frozenset[str]] = {}


def _known_fields(cls: type) -> frozenset[str]:
    """The field names of CLS, looked up once (status reads a thousand files)."""
    known = _KNOWN.get(cls)
    if known is None:
        known = _KNOWN[cls] = frozenset(f.name for f in fields(cls))
    return known


MAX_STATE_BYTES = 4 * 1024 * 1024  # ~100 times the largest state streamctl writes (capped history)


class BrokenState(FileError):
    """A state file that is not what streamctl writes (not JSON, another schema, too big, a link): the
    commands that act on the stream refuse it (exit 6); the views show it as broken, the others as usual."""

    def __init__(self, path: Path, why: str, kept: Path | None = None) -> None:
        self.path, self.why, self.kept = path, why, kept
        copy = f"; a copy is kept at {kept}" if kept is not None else ""
        super().__init__(
            f"state file {path} is corrupt ({why}){copy}. Fix it, or delete it to forget the stream's runtime"
        )


def _corrupt(path: Path) -> Path:
    return path.with_name(path.name + ".corrupt")


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _keep_aside(path: Path, fd: int, st: os.stat_result) -> None:
    """A copy of the broken file at PATH.corrupt, made once: a copy with the same size and modification
    time is this file's already (each `status`, each API list would copy it again). Written as every
    file of ours is (a new file renamed over the old): a link planted at PATH.corrupt is replaced, not
    followed."""
    corrupt = _corrupt(path)
    try:
        old = os.lstat(corrupt)
        if stat.S_ISREG(old.st_mode) and (old.st_size, old.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            return
    except FileNotFoundError:
        pass
    tmp = str(path.parent / f".{corrupt.name}.{os.urandom(6).hex()}.tmp")
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 20):  # in pieces: the file may be hundreds of MiB
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view) :]
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mark of "this file's copy"
        os.close(out)
        out = -1
        os.replace(tmp, corrupt)
        tmp = ""
    finally:
        if out >= 0:
            os.close(out)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class StateStore:
    def __init__(self, paths: Paths) -> None:
        from streamctl.store.trust import check_trusted

        # what is in it is fed to ffmpeg (concat lists) and read as the config (its cache)
        check_trusted(paths.state_dir, "state folder", folder=True)
        self.paths = paths

    def load(self, name: str) -> StreamState | None:
        """NAME's state, None when it has none; BrokenState when its file is not one streamctl wrote."""
        path = self.paths.state_file(name)
        try:
            # no link followed: the file is ours, written by rename; a link planted here is not
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise BrokenState(path, "it is a symbolic link, which streamctl never writes") from None
            raise FileError(f"cannot read state file {path}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BrokenState(path, "it is not a regular file")
            if st.st_size > MAX_STATE_BYTES:
                # a stream's state is tens of KiB (its history is capped): reading this would cost its
                # size several times over in memory, on every `status` and every API list
                _keep_aside(path, fd, st)
                raise BrokenState(
                    path, f"{st.st_size / 2**20:.0f} MiB, more than streamctl ever writes", _corrupt(path)
                )
            raw = _read_all(fd)
        except OSError as e:
            raise FileError(f"cannot read state file {path}: {e.strerror}") from None
        finally:
            os.close(fd)
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("schema") != SCHEMA_VERSION:
                raise ValueError(f"unknown schema {data.get('schema')!r}")
            return StreamState.from_dict(data)
        except (ValueError, TypeError, RecursionError) as e:
            # Keep the evidence and refuse to go on: a silent reset would hand out a fresh budget.
            why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    _keep_aside(path, fd, os.fstat(fd))
                finally:
                    os.close(fd)
            raise BrokenState(path, why, _corrupt(path)) from None

    def save(self, state: StreamState, now: float, durable: bool = True) -> None:
        state.updated_at = now
        atomic_write(self.paths.state_file(state.name), state.to_json(), durable=durable)

    @contextlib.contextmanager
    def update(self, name: str, now: float, durable: bool = True) -> Iterator[StreamState]:
        """Read-modify-write under the stream's state lock. Nothing is written if the block raises.
        DURABLE: as `atomic_write` says."""
        with locked(self.paths.state_lock(name)):
            st = self.load(name) or StreamState(name=name)
            before = st.as_dict()
            yield st
            if st.as_dict() != before:  # a no-op update leaves the file as it was
                self.save(st, now, durable)

    def names(self) -> list[str]:
        d = self.paths.state_dir
        try:
            entries = os.listdir(d)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(e[:-5] for e in entries if e.endswith(".json") and len(e) > 5)


class MemoryStore:
    """StateStore's read-modify-write in memory, through the same plain data as the file: for tests that
    run hours of a supervisor's life on a fake clock, where thousands of fsync'd writes would be the
    slowest part."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.writes = 0

    def load(self, name: str) -> StreamState | None:
        data = self.files.get(name)
        return None if data is None else StreamState.from_dict(StreamState.from_dict(data).as_dict())

    @contextlib.contextmanager
    def update(self, name: str, now: float, durable: bool = True) -> Iterator[StreamState]:
        st = self.load(name) or StreamState(name=name)
        before = st.as_dict()
        yield st
        if st.as_dict() != before:
            st.updated_at = now
            self.files[name] = st.as_dict()
            self.writes += 1
