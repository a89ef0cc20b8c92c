"""Scheduled streams: which show `start` runs, the cron tick that starts due shows, and the `shows`,
`skip`, `pause` and `resume` commands. The decisions are schedule.py's; here they meet the files."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streamctl.commands.sweep import Action
from streamctl.errors import Conflict, StreamctlError, UsageError
from streamctl.schedule import (
    Schedule,
    ShowState,
    current_or_next,
    decide,
    is_skipped,
    next_show,
    parse_schedule,
)
from streamctl.store.config import Config, StreamSpec, load_config
from streamctl.store.fileio import is_locked, locked
from streamctl.store.paths import Paths, validate_name
from streamctl.store.state import StateStore, StreamState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import replace
else:
    from streamctl.records import replace

MIN_RUN = 5.0  # seconds: a show with less than this left in its window is not worth starting


def schedule_of(spec: StreamSpec) -> Schedule:
    assert spec.schedule is not None
    return parse_schedule(spec.schedule, spec.timezone)


def show_state(st: StreamState | None, running: bool) -> ShowState:
    if st is None:
        return ShowState(running=running)
    return ShowState(
        show_at=st.show_at,
        show_label=st.show_label,
        seen_until=st.shows_seen,
        running=running or st.status_enum.running,
        stop_reason=st.stop_reason,
        streamed=st.total_runtime(),
        launched_at=st.show_launched_at,
        run_started_at=st.started_at,
        paused=st.shows_paused,
        skip=tuple(st.shows_skip),
    )


def plan_start(paths: Paths, spec: StreamSpec, now: float) -> tuple[StreamSpec, str]:
    """The spec `start` runs for a scheduled stream: its current show, else the next one now; and a line
    saying which. A stream without a schedule is returned as it is."""
    if spec.schedule is None:
        return spec, ""
    import os

    sched = schedule_of(spec)
    st = StateStore(paths).load(spec.name)
    pick = current_or_next(sched, show_state(st, False), now, spec.budget_seconds, spec.window, MIN_RUN)
    told = _told_show(sched, os.environ.get(SHOW_ENV), now)
    if told is not None:
        pick = (told, sched.window_end(told, spec.window), "current")
    if pick is None:
        raise UsageError(
            f"stream {spec.name!r}: its schedule {spec.schedule!r} has no show left; "
            "give it a new schedule (streamctl add --replace) or start it with --until"
        )
    show, end, which = pick
    until = end if spec.until is None else (spec.until if end is None else min(spec.until, end))
    when = sched.local(show)
    ends = f", until {sched.local(until)}" if until is not None else ""
    line = f"{spec.name}: {'the current show' if which == 'current' else 'the next show, now'} ({when}){ends}"
    return replace(spec, show_at=show, show_label=sched.label(show), until=until), line


def _told_show(sched: Schedule, value: str | None, now: float) -> float | None:
    """The show the tick launched this `start` for (SHOW_ENV), if it is one of the schedule's."""
    if not value:
        return None
    try:
        show = float(value)
    except ValueError:
        return None
    return show if show <= now and sched.next_after(show - 1) == show else None


# ---- the cron tick ------------------------------------------------------------------------------------
Launcher = Callable[[Paths, StreamSpec, float], int]


SHOW_ENV = "_STREAMCTL_SHOW"  # the show the tick launched, for the `start` it runs (plan_start)


def launch_detached(paths: Paths, spec: StreamSpec, show: float) -> int:
    """SHOW as `streamctl start NAME --detach` runs it, told which show the tick decided on (a show
    caught up late is no longer on the air by `start`'s own rule)."""
    from streamctl.run.detach import start_detached

    pid, first_error = start_detached(
        paths, spec, None, ["start", spec.name], wait=5.0, env={SHOW_ENV: repr(show)}
    )
    if first_error:
        raise StreamctlError(f"show launched (supervisor pid {pid}), its first attempt failed: {first_error}")
    return pid


def tick(
    paths: Paths, now: float | None = None, launch: Launcher = launch_detached, config: Config | None = None
) -> list[Action]:
    """For every scheduled stream in the config: start the show that is due, resume the one whose
    supervisor was lost, record those that passed (missed, skipped, paused). Under the stream's state
    lock, the show is claimed before it is launched: two ticks racing start it once (and the run lock
    would refuse a second supervisor all the same)."""
    if config is None:
        try:
            config = load_config(paths)
        except StreamctlError as e:
            return [Action("", "error", str(e))]
    out = []
    for name, table in config.streams.items():
        if "schedule" not in table:
            continue
        try:
            out += _tick_one(paths, config, name, time.time() if now is None else now, launch)
        except StreamctlError as e:
            out.append(Action(name, "error", str(e)))
        except (OSError, ValueError) as e:  # one stream's trouble must not cost the others their shows
            out.append(Action(name, "error", f"{type(e).__name__}: {e}"))
    return out


def _tick_one(paths: Paths, config: Config, name: str, now: float, launch: Launcher) -> list[Action]:
    spec = config.schedule_spec(name)
    sched = schedule_of(spec)
    store = StateStore(paths)
    out: list[Action] = []
    with locked(paths.state_lock(name)):
        st = store.load(name) or StreamState(name=name)
        running = is_locked(paths.run_lock(name))
        d = decide(
            sched, show_state(st, running), now, spec.budget_seconds, spec.window, spec.catch_up, MIN_RUN
        )
        for show, why in d.passed:
            st.pass_show(show, why)
            out.append(Action(name, f"show_{why}", sched.local(show)))
        if d.action in ("start", "resume") and d.show is not None:
            if d.action == "start":
                st.new_show(d.show, now, sched.label(d.show))
            st.show_launched_at = now
        if st.show_at is None and st.shows_seen is None and d.action == "none":
            st.shows_seen = now  # the schedule is seen from here on: a show after this is this stream's
        if d.passed or d.action != "none" or st.shows_seen == now:
            store.save(st, now)
    if d.action in ("start", "resume") and d.show is not None:
        # the whole spec (its key) only to launch: a key mistake is the launch's error, as `start`'s
        pid = launch(paths, config.spec(name, need_env=False), d.show)
        what = f"show_{'started' if d.action == 'start' else 'resumed'}"
        late = now - d.show
        out.append(Action(name, what, f"{sched.local(d.show)}, {late:.0f}s after its time, pid {pid}"))
    return out


# ---- the commands -------------------------------------------------------------------------------------
def _scheduled(paths: Paths, name: str) -> StreamSpec:
    """NAME's spec, without its key (NotFound with a "did you mean" from the config); it must have a
    schedule."""
    validate_name(name)
    spec = load_config(paths).spec(name, need_env=False, read_key=False)
    if spec.schedule is None:
        raise UsageError(f'stream {name!r} has no schedule: add schedule = "mon-fri 20:00" to it')
    return spec


def shows(paths: Paths, name: str, now: float | None = None, upcoming: int = 5) -> dict[str, Any]:
    """NAME's schedule, its past shows (oldest first), the current one and the next UPCOMING."""
    now = time.time() if now is None else now
    spec = _scheduled(paths, name)
    sched = schedule_of(spec)
    st = StateStore(paths).load(name) or StreamState(name=name)
    running = is_locked(paths.run_lock(name))

    def row(r: dict[str, Any]) -> dict[str, Any]:
        return {**r, "show_local": sched.local(r["show"]), "show": sched.iso(r["show"])}

    current = None
    if st.show_at is not None:
        current = row(
            {
                "show": st.show_at,
                "started_at": st.show_started_at,
                "ended_at": None if running else st.end_time,
                "streamed": round(st.total_runtime(now), 3),
                "restarts": st.restarts,
                "sessions": st.session_count,
                "end": "running" if running else (st.stop_reason or "pending"),
            }
        )
    nxt: list[dict[str, Any]] = []
    for t in sched.after(not_before(st, now)):
        if len(nxt) >= upcoming:
            break
        end = sched.window_end(t, spec.window)
        nxt.append(
            {
                "show": sched.iso(t),
                "show_local": sched.local(t),
                "in_seconds": round(t - now),
                "until": sched.iso(end) if end is not None else None,
                "skip": is_skipped(t, st.shows_skip),
            }
        )
    return {
        "name": name,
        "schedule": spec.schedule,
        "timezone": spec.timezone or "host",
        "budget_seconds": spec.budget_seconds,
        "window_seconds": spec.window,
        "paused": st.shows_paused,
        "past": [row(r) for r in st.shows],
        "current": current,
        "next": nxt,
    }


def not_before(st: StreamState | None, now: float) -> float:
    """The next show comes after NOW and after any show already seen or run (early)."""
    if st is None:
        return now
    return max(now, st.shows_seen or now, st.show_at or now)


def skip(paths: Paths, name: str, now: float | None = None) -> str:
    """Skip NAME's next show (not one that runs: stop that one). Returns its local time."""
    now = time.time() if now is None else now
    spec = _scheduled(paths, name)
    sched = schedule_of(spec)
    store = StateStore(paths)
    with locked(paths.state_lock(name)):
        st = store.load(name) or StreamState(name=name)
        nxt = next_show(sched, not_before(st, now), st.shows_skip)
        if nxt is None:
            raise Conflict(f"stream {name!r} has no show left to skip")
        st.shows_skip = sorted({*st.shows_skip, nxt})[-20:]
        store.save(st, now)
    return sched.local(nxt)


def pause(paths: Paths, name: str, paused: bool) -> None:
    """Pause NAME's schedule (no show starts; a running one goes on) or resume it."""
    _scheduled(paths, name)
    store = StateStore(paths)
    now = time.time()
    with locked(paths.state_lock(name)):
        st = store.load(name) or StreamState(name=name)
        if st.shows_paused != paused:
            st.shows_paused = paused
            store.save(st, now)
