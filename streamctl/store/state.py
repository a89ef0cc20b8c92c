"""The per-stream JSON state file: what the supervisor did, readable by every other command."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from streamctl.errors import FileError, NotFound
from streamctl.store.fileio import atomic_write, locked
from streamctl.store.lifecycle import Status, StopReason, check_transition
from streamctl.store.paths import Paths

SCHEMA_VERSION = 1
KEEP_SESSIONS = 50  # closed sessions kept in the file; `session_count` counts them all


def iso(ts: float | None) -> str | None:
    """Unix time as ISO 8601 with the local offset (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec="seconds")


@dataclass
class OpenSession:
    """The ffmpeg session in progress, checkpointed by the supervisor every few seconds."""

    started_at: float  # unix time
    t_arg: float  # the -t it was launched with
    ffmpeg_pid: int | None = None
    ffmpeg_create_time: float | None = None
    runtime_seconds: float = 0.0  # streamed so far, as of checkpoint_at
    checkpoint_at: float | None = None  # unix time of the last checkpoint
    ffmpeg_cmd: list[str] | None = None  # its argv with the key masked, for people
    cmd_digest: str | None = None  # salted digest of its argv after argv[0]: part of its identity
    cmd_salt: str = ""
    orphaned_at: float | None = None  # when a sweep found it streaming without its supervisor
    started_mono: float | None = None  # CLOCK_MONOTONIC at launch: ages that wall-clock steps do not move
    boot_id: str | None = None  # ...valid only within the same boot


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
    expected_end: float | None = None
    end_time: float | None = None
    last_exit_code: int | None = None
    last_error: str | None = None  # why the last failed session failed (masked); cleared when live again
    progress: dict[str, Any] = field(default_factory=dict)  # last bitrate/speed seen
    stop_request: str | None = None  # a StopReason set by `sweep` for the running supervisor to honour
    updated_at: float | None = None

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
            self.expected_end = None
            self.supervisor_pid = self.supervisor_create_time = None
        elif new == Status.STARTING and old in (Status.OFFLINE, Status.FAILED):
            self.stop_reason = None
            self.end_time = None

    def close_session(self, ended_at: float, runtime: float, exit_code: int | None, note: str) -> None:
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
                "end": note,
            }
        )
        del self.sessions[:-KEEP_SESSIONS]
        self.session = None

    def session_runtime(self, now: float | None = None) -> float | None:
        """The open session's checkpointed runtime (extrapolated to NOW when live); None without one."""
        s = self.session
        if s is None:
            return None
        ran = s.runtime_seconds
        if now is not None and self.status == Status.LIVE and s.checkpoint_at is not None:
            ran += max(0.0, now - s.checkpoint_at)
        return ran

    def total_runtime(self, now: float | None = None) -> float:
        """Committed runtime plus the open session's (see session_runtime)."""
        return self.runtime_seconds + (self.session_runtime(now) or 0.0)

    def budget_left(self, now: float | None = None) -> float | None:
        if self.budget_seconds is None:
            return None
        return max(0.0, self.budget_seconds - self.total_runtime(now))

    def remaining(self, now: float | None = None) -> float | None:
        """Time left to stream: the budget's rest or the time to the deadline, whichever is less."""
        left = self.budget_left(now)
        if self.until is not None and now is not None:
            to_deadline = max(0.0, self.until - now)
            left = to_deadline if left is None else min(left, to_deadline)
        return left

    def limit(self, now: float) -> str | None:
        """Which limit applies now: "budget" or "deadline"."""
        left = self.budget_left(now)
        if self.until is None:
            return "budget" if left is not None else None
        if left is None or self.until - now < left:
            return "deadline"
        return "budget"

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamState:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in data.items() if k in known}
        if d.get("session") is not None:
            d["session"] = OpenSession(**d["session"])
        st = cls(**d)
        Status(st.status)  # reject unknown statuses early
        return st


class StateStore:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def load(self, name: str) -> StreamState | None:
        path = self.paths.state_file(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise FileError(f"cannot read state file {path}: {e.strerror}") from None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("schema") != SCHEMA_VERSION:
                raise ValueError(f"unknown schema {data.get('schema')!r}")
            return StreamState.from_dict(data)
        except (ValueError, TypeError) as e:
            # Keep the evidence and refuse to go on: a silent reset would hand out a fresh budget.
            corrupt = path.with_name(path.name + ".corrupt")
            with contextlib.suppress(OSError):
                shutil.copyfile(path, corrupt)
                os.chmod(corrupt, 0o600)
            raise FileError(
                f"state file {path} is corrupt ({e}); a copy is kept at {corrupt}. "
                f"Fix it, or delete it to forget the stream's runtime"
            ) from None

    def save(self, state: StreamState, now: float) -> None:
        state.updated_at = now
        atomic_write(self.paths.state_file(state.name), state.to_json())

    @contextlib.contextmanager
    def update(self, name: str, now: float, create: bool = True) -> Iterator[StreamState]:
        """Read-modify-write under the stream's state lock. Nothing is written if the block raises."""
        with locked(self.paths.state_lock(name)):
            st = self.load(name)
            if st is None:
                if not create:
                    raise NotFound(f"no state for stream {name!r}")
                st = StreamState(name=name)
            before = st.to_json()
            yield st
            if st.to_json() != before:  # a no-op update leaves the file as it was
                self.save(st, now)

    def names(self) -> list[str]:
        d = self.paths.state_dir
        if not d.is_dir():
            return []
        return sorted(p.stem for p in d.glob("*.json"))
