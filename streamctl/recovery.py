"""Cleaning up after a supervisor that is gone: shared by `start` (resume), `sweep` and `stop`.

An orphaned ffmpeg streamed from its last checkpoint until now as far as anyone can tell, so it is credited
with that time (at most its -t): counting too much can only end the stream early, never late.
"""

from __future__ import annotations

from streamctl.process import ProcessIdentity
from streamctl.state import OpenSession, StreamState
from streamctl.states import Status, StopReason


def session_process(s: OpenSession | None) -> ProcessIdentity | None:
    """The recorded ffmpeg of S, pinned by pid, start time and command line."""
    if s is None or not s.ffmpeg_pid or not s.ffmpeg_create_time:
        return None
    nargs = len(s.ffmpeg_cmd) - 1 if s.ffmpeg_cmd else 0
    return ProcessIdentity(s.ffmpeg_pid, s.ffmpeg_create_time, s.cmd_digest, s.cmd_salt, nargs)


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def session_age(s: OpenSession, now: float) -> float:
    """Seconds since S was launched: on the monotonic clock within the same boot, else the wall clock."""
    import time

    if s.started_mono is not None and s.boot_id is not None and s.boot_id == boot_id():
        return max(0.0, time.monotonic() - s.started_mono)
    return max(0.0, now - s.started_at)


def lost_streamed(s: OpenSession, now: float, checkpoint_interval: float = 5.0) -> float:
    """What a session whose ffmpeg is already gone streamed, counted so the budget is never exceeded.

    Its ffmpeg died with its supervisor (parent-death signal), at most one checkpoint interval after the
    last checkpoint; an orphan adopted by `sweep` may have run on until its -t.
    """
    since = s.checkpoint_at if s.checkpoint_at is not None else s.started_at
    after = max(0.0, now - since)
    if s.orphaned_at is None:
        from streamctl.accounting import EXTRAPOLATE_MAX

        after = min(after, checkpoint_interval + EXTRAPOLATE_MAX)
    return min(s.t_arg, s.runtime_seconds + after)


def orphan_streamed(s: OpenSession, now: float) -> float:
    """What an orphaned session has streamed by NOW: its checkpoint plus the time since, at most its -t."""
    since = s.checkpoint_at if s.checkpoint_at is not None else s.started_at
    return min(s.t_arg, s.runtime_seconds + max(0.0, now - since))


def close_lost(st: StreamState, now: float, ran: float, reason: StopReason) -> None:
    """Close the open session (crediting RAN) and mark a running status offline with REASON."""
    if st.session is not None:
        st.close_session(now, ran, None, reason.value)
    st.stop_request = None
    if st.status_enum.running:
        st.transition(Status.OFFLINE, reason, now)
