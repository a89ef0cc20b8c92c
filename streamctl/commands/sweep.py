"""`streamctl sweep`: the stop layer outside the supervisor, run by cron every minute.

For every stream in the state folder, under the same state lock the supervisor uses:
- supervisor gone, its ffmpeg alive: stop it when its time is up (recorded `swept`); otherwise adopt it,
  crediting what it streamed, so a later sweep stops it on time;
- supervisor alive, its ffmpeg past its time by more than the grace period: ask the supervisor (through
  the state file) not to restart, and stop ffmpeg;
- status running but nothing runs: record `offline`, `supervisor_lost`, crediting the last checkpoint.
A process is only ever signalled when its pid, start time and command line all match the record.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from streamctl.errors import StreamctlError
from streamctl.store.state import StateStore

if TYPE_CHECKING:
    from streamctl.run.process import ProcessIdentity
    from streamctl.store.config import Config
    from streamctl.store.paths import Paths

SLACK = 0.5  # seconds of budget left that count as spent (an orphan is not worth keeping for it)


class Action:
    __slots__ = ("action", "detail", "name")

    def __init__(self, name: str, action: str, detail: str) -> None:
        self.name = name
        # stopped_orphan | adopted_orphan | stopped_overrun | marked_lost | show_... (shows.py) | error
        self.action = action
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Action) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash((self.name, self.action, self.detail))

    def __repr__(self) -> str:
        return f"Action({self.name!r}, {self.action!r}, {self.detail!r})"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "action": self.action, "detail": self.detail}


def _idle(store: StateStore, name: str) -> bool:
    """Nothing to sweep: no session and not running, read without the lock. Most streams most of the
    time; the state file is replaced whole (atomic_write), so this read is never torn, and a stream that
    starts meanwhile is what the next sweep sees, as when this one had come a moment earlier."""
    st = store.load(name)
    return st is None or (st.session is None and not st.status_enum.running)


def sweep_one(paths: Paths, store: StateStore, name: str, grace: float, now: float) -> Action | None:
    if _idle(store, name):
        return None  # the locked path below would do nothing either (every branch needs one of the two)
    from streamctl.run.process import cpu_ticks, is_stopped, stop_foreign
    from streamctl.run.recovery import alive_process, orphan_streamed, settle, since_checkpoint
    from streamctl.store.fileio import is_locked, locked
    from streamctl.store.lifecycle import StopReason

    kill: ProcessIdentity | None = None
    action: Action | None = None
    with locked(paths.state_lock(name)):
        st = store.load(name)
        if st is None:
            return None
        s = st.session
        ident = alive_process(s)
        ffmpeg_alive = ident is not None
        streaming = ident is not None and not is_stopped(ident.pid)  # a frozen one streams nothing
        supervised = is_locked(paths.run_lock(name))
        if (
            not supervised
            and s is not None
            and streaming  # a frozen one is stopped below
            and not st.limit.spent(st.runtime_seconds + orphan_streamed(s, now), now, SLACK)
        ):
            # An orphan with time left streams on, adopted: credited so far, so a later sweep ends it on time
            first = s.orphaned_at is None
            s.runtime_seconds, s.checkpoint_at = round(orphan_streamed(s, now), 3), now
            s.checkpoint_mono = time.monotonic() if s.boot_id is not None else None
            s.ffmpeg_cpu, s.ffmpeg_frozen = cpu_ticks(s.ffmpeg_pid or 0), False  # it streams: adopted
            s.orphaned_at = s.orphaned_at or now
            if first:
                action = Action(name, "adopted_orphan", f"pid {s.ffmpeg_pid} streams without a supervisor")
        elif not supervised and (s is not None or st.status_enum.running):
            reason = StopReason.SWEPT if ffmpeg_alive else StopReason.SUPERVISOR_LOST
            why = "time up" if streaming else "frozen"
            ran, stopped = settle(st, now, reason, grace)
            action = (
                Action(name, "stopped_orphan", f"pid {stopped}, {why}; {ran:.1f}s credited")
                if stopped is not None
                else Action(name, "marked_lost", "status said running but nothing runs")
            )
        elif (
            supervised
            and s is not None
            and ffmpeg_alive
            and not st.stop_request
            # The last checkpoint plus all the time since at full speed: a supervisor whose loop is stuck
            # writes no checkpoints, and its ffmpeg may stream on; a healthy one, however slow its ffmpeg,
            # checkpoints every few seconds, so this passes its budget only when its media does.
            and st.limit.overran(
                st.runtime_seconds + s.runtime_seconds + since_checkpoint(s, now), now, grace
            )
        ):
            st.stop_request = StopReason.SWEPT.value
            kill = ident
            action = Action(name, "stopped_overrun", f"pid {s.ffmpeg_pid} ran past its time + {grace:g}s")
        if action is None:
            return None
        store.save(st, now)
    if kill is not None:
        stop_foreign(kill, grace)  # outside the lock: the supervisor must be able to record the exit
    return action


def sweep(paths: Paths, grace: float = 5.0, now: float | None = None) -> list[Action]:
    import math

    from streamctl.errors import UsageError

    if not (math.isfinite(grace) and 0 <= grace <= 3600):
        raise UsageError(f"--grace must be 0-3600 seconds, got {grace}")
    store = StateStore(paths)
    actions = []
    from streamctl.store.config_cache import refresh_cache

    refresh_cache(paths)  # the cron tick: a hand-edited config is parsed once here, not by every read
    for name in store.names():
        try:
            act = sweep_one(paths, store, name, grace, time.time() if now is None else now)
        except StreamctlError as e:
            act = Action(name, "error", str(e))
        if act is not None:
            actions.append(act)
    config = _config(paths)  # read once: for the shows that are due, and for who is told of it all
    # then the shows that are due: after the pass above, a show whose supervisor died is marked lost
    if config is not None and any("schedule" in t for t in config.streams.values()):
        from streamctl.commands.shows import tick

        actions += tick(paths, now, config=config)
    if actions:
        from streamctl.output.alerts import record_action

        for a in actions:
            with contextlib.suppress(StreamctlError, OSError):  # the journal must not fail the sweep
                record_action(paths, a, time.time() if now is None else now, config)
    return actions


def _config(paths: Paths) -> Config | None:
    """The config, or None when it cannot be read (the state files are swept all the same)."""
    from streamctl.store.config import load_config

    try:
        return load_config(paths)
    except StreamctlError:
        return None
