"""Cleaning up after a supervisor that is gone: shared by `start` (resume), `sweep` and `stop`.

An orphaned ffmpeg streamed from its last checkpoint until now as far as anyone can tell, so it is credited
with that time (at most its -t): counting too much can only end the stream early, never late.
"""

from __future__ import annotations

from streamctl.run.process import ProcessIdentity
from streamctl.store.lifecycle import SessionEnd, Status, StopReason
from streamctl.store.state import OpenSession, StreamState


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


def since_checkpoint(s: OpenSession, now: float) -> float:
    """Seconds since S's last checkpoint (its launch if none), on the monotonic clock where it can be."""
    import time

    if s.checkpoint_mono is not None and s.boot_id is not None and s.boot_id == boot_id():
        return max(0.0, time.monotonic() - s.checkpoint_mono)
    if s.checkpoint_at is None:
        return session_age(s, now)
    return max(0.0, now - s.checkpoint_at)


def _credit(s: OpenSession, now: float, cap: float | None) -> float:
    """The checkpointed runtime plus the time since the checkpoint (at most CAP), never past its -t."""
    since = s.checkpoint_at if s.checkpoint_at is not None else s.started_at
    after = max(0.0, now - since)
    return min(s.t_arg, s.runtime_seconds + (after if cap is None else min(after, cap)))


def lost_streamed(s: OpenSession, now: float, checkpoint_interval: float = 5.0) -> float:
    """What a session whose ffmpeg is already gone streamed, counted so the budget is never exceeded.

    Its ffmpeg died with its supervisor (parent-death signal), at most one checkpoint interval after the
    last checkpoint; an orphan adopted by `sweep` may have run on until its -t.
    """
    from streamctl.run.accounting import EXTRAPOLATE_MAX

    return _credit(s, now, None if s.orphaned_at is not None else checkpoint_interval + EXTRAPOLATE_MAX)


def orphan_streamed(s: OpenSession, now: float) -> float:
    """What an orphaned session has streamed by NOW: its checkpoint plus the time since, at most its -t."""
    return _credit(s, now, None)


def alive_process(s: OpenSession | None) -> ProcessIdentity | None:
    """The recorded ffmpeg of S if it is still alive, frozen or not. Whether it streams is then its
    process state: a frozen (SIGSTOP, state T) ffmpeg sends nothing, and with the parent-death signal
    (run/process.py) it ends as soon as it is thawed."""
    ident = session_process(s)
    return ident if ident is not None and ident.alive() else None


def credit(
    s: OpenSession, now: float, checkpoint_interval: float = 5.0, alive: ProcessIdentity | None = None
) -> float:
    """What the session of a supervisor that is gone has streamed by NOW: the one figure that `status`,
    `runtime`, the metrics, `sweep` and the next `start` all use. An orphan that streams is credited up
    to now; one that was frozen at the last checkpoint and has not used a tick of CPU since, just that
    checkpoint (nothing while frozen; ticks alone would not tell: a copy-mode ffmpeg can go a second
    without one); else, as `lost_streamed` says. ALIVE: `alive_process(s)`, when the caller has it."""
    from streamctl.run.process import cpu_ticks, is_stopped

    ident = alive if alive is not None else alive_process(s)
    if ident is not None:
        if not is_stopped(ident.pid):
            return orphan_streamed(s, now)
        if s.ffmpeg_frozen and s.ffmpeg_cpu is not None and cpu_ticks(ident.pid) == s.ffmpeg_cpu:
            # frozen at the last checkpoint and not a tick of CPU since: it streamed nothing after it
            return min(s.t_arg, s.runtime_seconds)
    return lost_streamed(s, now, checkpoint_interval)


def settle(
    st: StreamState, now: float, reason: StopReason, grace: float, checkpoint_interval: float = 5.0
) -> tuple[float, int | None]:
    """Close the session of a supervisor that is gone, for `start` (resume), `stop` and `sweep`.

    Its session is credited as `credit` says; a recorded ffmpeg still alive (frozen too) is stopped.
    Returns (seconds credited, pid of the ffmpeg stopped or None).
    """
    from streamctl.run.process import stop_foreign

    s = st.session
    ran, stopped = 0.0, None
    if s is not None:
        ident = alive_process(s)
        ran = credit(s, now, checkpoint_interval, ident)
        if ident is not None:  # frozen or not: it must go before anything else runs
            stopped = ident.pid
            stop_foreign(ident, grace)
    close_lost(st, now, ran, reason)
    return ran, stopped


def close_lost(st: StreamState, now: float, ran: float, reason: StopReason) -> None:
    """Close the open session (crediting RAN) and mark a running status offline with REASON."""
    if st.session is not None:
        st.close_session(now, ran, None, SessionEnd(reason.value))  # supervisor_lost, swept, stopped
    st.stop_request = None
    if st.status_enum.running:
        st.transition(Status.OFFLINE, reason, now)
