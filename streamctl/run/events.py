"""What happens in a run, as small typed records handed to listeners.

The supervisor, its sessions and its journal emit an Event for every change of a run (status moves,
launches, stops and their why, restarts, the end). They know nothing of who listens: the log lines are
one listener (`output.logs.LogListener`); notifications and the HTTP API are others to come. A listener
is called in the thread that saw the change (the backup timer's thread, too), must be quick and must not
raise: slow work belongs on a queue of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass, field
else:
    from streamctl.records import dataclass, field


class Kind(StrEnum):
    RUN_STARTED = "run_started"  # budget, streamed, until, remaining, at
    STATE_RESTORED = "state_restored"  # found, restored: another process wrote over our status
    STATUS_CHANGED = "status_changed"  # old, new
    ORPHAN_STOPPING = "orphan_stopping"  # pid: an ffmpeg of a dead supervisor, about to be stopped
    RECOVERED = "recovered"  # streamed: what the dead supervisor's session was credited with
    LAUNCH_FAILED = "launch_failed"  # error
    SESSION_STARTED = "session_started"  # pid, t, cmd (masked), timer_at, timer_in
    LIVE = "live"
    TIMER_FIRED = "timer_fired"  # the backup timer stopped a session past its time
    OVERRAN = "overran"  # the watchdog stopped a session past its time
    INGEST_JAMMED = "ingest_jammed"  # grew (bytes), seconds: the send queue did not drain
    STALLED = "stalled"  # quiet (seconds), out_time (None: never started)
    SLOW = "slow"  # rate: media seconds per second, sustained below 1; the session goes on
    STOPPING = "stopping"  # source: who asked
    SESSION_ENDED = "session_ended"  # end, rc, streamed, total, budget, cause
    RESTARTING = "restarting"  # why, streamed, attempt, retries, delay, remaining
    GAVE_UP = "gave_up"  # failures, last
    ENDING_SOON = "ending_soon"  # remaining: under store.limit.WARN_BELOW left, once a run
    RUN_ENDED = "run_ended"  # status, streamed, budget, remaining, sessions, restarts, wall


@dataclass(frozen=True)
class Event:
    stream: str
    kind: Kind
    time: float  # unix time
    reason: str | None = None  # a StopReason value, where one applies
    figures: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Event], None]


class Emitter:
    """Hands each event to every listener; a listener that fails is logged, never the run's problem."""

    def __init__(self, stream: str, wall: Callable[[], float], listeners: Iterable[Listener] = ()) -> None:
        self.stream = stream
        self.wall = wall
        self.listeners = list(listeners)

    def __call__(self, kind: Kind, reason: str | None = None, **figures: Any) -> None:
        event = Event(self.stream, kind, self.wall(), reason, figures)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                import logging  # a bug's path only: the supervisor does without it

                logging.getLogger("streamctl").exception("event listener %r failed", listener)
