"""What the read/maintenance commands do: status, runtime, stop, reset-runtime. The CLI only prints."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamctl.errors import ConfigRefused, Conflict, NotFound, StreamctlError, UsageError, did_you_mean
from streamctl.store.config import load_config
from streamctl.store.fileio import is_locked
from streamctl.store.lifecycle import Status, StopReason
from streamctl.store.limit import WARN_BELOW  # seconds left: "ending soon"
from streamctl.store.paths import Paths, validate_name
from streamctl.store.state import BrokenState, StateStore, StreamState, iso

if TYPE_CHECKING:
    from streamctl.run.process import ProcessIdentity
    from streamctl.store.config import StreamSpec


_UNKNOWN: Any = object()  # a View's figure not looked up yet


class View:
    """A stream as the commands show it, computed from config + state + whether its supervisor runs.

    A plain class, its figures looked up once and only when asked (not a dataclass with cached
    properties: `status` builds a thousand of them, and those cost more than reading the files)."""

    __slots__ = (
        "_left_behind",
        "_orphan",
        "_session_runtime",
        "_status",
        "broken",
        "name",
        "now",
        "schedule",
        "state",
        "supervised",
    )

    def __init__(self, name: str, state: StreamState, supervised: bool, now: float) -> None:
        self.name = name
        self.state = state
        self.supervised = supervised  # a supervisor holds the run lock
        self.now = now
        self.schedule: tuple[str, str | None] | None = None  # (schedule, timezone) from the config
        self.broken: str | None = None  # why its state file cannot be read (state.BrokenState)
        self._left_behind: ProcessIdentity | None = _UNKNOWN
        self._orphan: bool = _UNKNOWN
        self._session_runtime: float | None = _UNKNOWN
        self._status: Status = _UNKNOWN

    def __repr__(self) -> str:
        return f"View({self.name!r}, supervised={self.supervised}, status={self.state.status!r})"

    @property
    def left_behind(self) -> ProcessIdentity | None:
        """The ffmpeg of a supervisor that is gone, still alive (pid, start time and command line match)."""
        if self._left_behind is _UNKNOWN:
            self._left_behind = None
            if not self.supervised and self.state.session is not None:
                from streamctl.run.recovery import alive_process  # psutil: only on this rare path

                self._left_behind = alive_process(self.state.session)
        return self._left_behind

    @property
    def orphan(self) -> bool:
        """The supervisor is gone but its ffmpeg still streams (a frozen one does not)."""
        if self._orphan is _UNKNOWN:
            left = self.left_behind
            self._orphan = False
            if left is not None:
                from streamctl.run.process import is_stopped

                self._orphan = not is_stopped(left.pid)
        return self._orphan

    @property
    def session_runtime(self) -> float | None:
        """The open session's streamed time now; for a supervisor that is gone, what `start` and `sweep`
        would credit it with (run/recovery.credit), so that every reader gives one figure."""
        if self._session_runtime is _UNKNOWN:
            s = self.state.session
            if s is None:
                self._session_runtime = None
            elif not self.supervised:
                from streamctl.run.recovery import credit

                self._session_runtime = credit(s, self.now, alive=self.left_behind)
            else:
                self._session_runtime = self.state.session_runtime(self.now if self.status.running else None)
        return self._session_runtime

    @property
    def running(self) -> bool:
        return self.supervised or self.orphan

    @property
    def status(self) -> Status:
        if self.broken is not None:
            return Status.BROKEN
        if self._status is _UNKNOWN:
            s = self.state.status_enum
            # the state says live but nothing runs: never show a dead stream as live
            self._status = Status.OFFLINE if s.running and not self.running else s
        return self._status

    @property
    def stale(self) -> bool:
        """The supervisor that wrote this state is gone."""
        return self.state.status_enum.running and not self.supervised

    def as_dict(self) -> dict[str, Any]:
        st, now = self.state, self.now
        status = self.status
        live = status.running
        session = st.session
        if session is None:  # most streams, most of the time: nothing runs, no session to look at
            runtime = st.runtime_seconds
            session_runtime = session_start = None
        else:
            runtime = st.runtime_seconds + (self.session_runtime or 0.0)
            session_runtime = self.session_runtime if live else None
            session_start = session.started_at if live else None
        limit = st.limit
        # a stream that does not run has no open session to extrapolate, but its deadline still nears
        remaining = limit.remaining(runtime, now if live or st.until is not None else None)
        progress = st.progress
        return {
            "name": self.name,
            "status": status.value,
            "supervisor_pid": st.supervisor_pid if self.supervised else None,
            "ffmpeg_pid": session.ffmpeg_pid if session is not None and live else None,
            "budget_seconds": st.budget_seconds,
            "until": iso(st.until),
            "limit": limit.which(runtime, now),
            "runtime_seconds": round(runtime, 3),
            "session_runtime_seconds": round(session_runtime, 3) if session_runtime is not None else None,
            "session_started_at": iso(session_start),
            # wall time since the current ffmpeg session began (its uptime), not counted media time
            "uptime_seconds": round(max(0.0, now - session_start), 3) if session_start is not None else None,
            "remaining_seconds": round(remaining, 3) if remaining is not None else None,
            "restarts": st.restarts,
            # sessions since the runtime was last reset, the open one included (README, "Counters")
            "sessions": st.session_count + (1 if session is not None else 0),
            "started_at": iso(st.started_at),
            "expected_end": iso(now + remaining) if live and remaining is not None else None,
            "end_time": iso(st.end_time),
            "stop_reason": StopReason.SUPERVISOR_LOST.value if self.stale else st.stop_reason,
            "last_exit_code": st.last_exit_code,
            "last_error": st.last_error,
            "bitrate": progress.get("bitrate") if live else None,
            "speed": progress.get("speed") if live else None,
            # sustained slower than real time: the ingest gets less video than it needs
            "slow": bool(live and progress.get("slow")),
            "warning": bool(live and remaining is not None and remaining < WARN_BELOW),
            "orphan": self.orphan,
            "broken": self.broken,
            **self._show_fields(),
        }

    def _show_fields(self) -> dict[str, Any]:
        """A scheduled stream's schedule and next show (None for the others: every row has the keys)."""
        out: dict[str, Any] = {"schedule": None, "show": None, "next_show": None, "next_show_local": None,
                               "next_show_in_seconds": None, "schedule_paused": None}  # fmt: skip
        if self.schedule is None:
            return out
        from streamctl.commands.shows import not_before
        from streamctl.errors import UsageError
        from streamctl.schedule import next_show, parse_schedule

        text, tz = self.schedule
        st = self.state
        out["schedule"], out["schedule_paused"] = text, st.shows_paused
        try:
            sched = parse_schedule(text, tz)
        except UsageError:
            return out  # a broken schedule: `status` warned of the table, `check` names it
        out["show"] = sched.iso(st.show_at) if st.show_at is not None else None
        nxt = next_show(sched, not_before(st, self.now), st.shows_skip)
        if nxt is not None:
            out["next_show"], out["next_show_local"] = sched.iso(nxt), sched.local(nxt)
            out["next_show_in_seconds"] = round(nxt - self.now)
        return out


Schedules = dict[str, tuple[str, str | None]]  # stream -> (schedule, timezone)


def _budget_from_config(
    paths: Paths, warn: Callable[[str], None] | None
) -> tuple[dict[str, float | None], Schedules]:
    """Each configured stream's budget, and the schedules: no key file is read to show a status.

    A config that cannot be read leaves the state files to go by: monitoring must not go dark because
    someone is editing the config (WARN hears why; without WARN the error is raised)."""
    try:
        config = load_config(paths)
    except (ConfigRefused, UsageError) as e:
        if warn is None:
            raise
        warn(f"{e} (showing what the state files say)")
        return {}, {}
    out: dict[str, float | None] = {}
    broken = set()
    for name, (budget, mistake) in config.budgets().items():
        out[name] = budget
        if mistake is not None:
            broken.add(name)
            if warn is not None:
                warn(mistake)  # shown all the same; `start` would refuse it
    schedules = {
        name: (t["schedule"], t.get("timezone"))
        for name, t in config.streams.items()
        if "schedule" in t and name not in broken
    }
    return out, schedules


def views(
    paths: Paths,
    names: list[str] | None = None,
    now: float | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[View]:
    """Views of NAMES (all configured or known streams when None). Unknown names raise NotFound."""
    now = time.time() if now is None else now
    store = StateStore(paths)
    configured, schedules = _budget_from_config(paths, warn)
    known = sorted(set(store.names()) | set(configured))
    if names:
        for n in names:
            validate_name(n)
            if n not in known:
                hint = did_you_mean(n, known)
                raise NotFound(f"no stream named {n!r} (not configured, never started){hint}")
        known = names
    out = []
    for n in known:
        broken = None
        try:
            st = store.load(n) or StreamState(name=n, budget_seconds=configured.get(n))
        except BrokenState as e:
            # one bad file must not hide every other stream: this one is shown broken, with the file named
            st, broken = StreamState(name=n, budget_seconds=configured.get(n)), str(e)
        # Only a stream whose state says it runs can have a supervisor: probe its lock, skip the rest.
        supervised = st.status_enum.running and is_locked(paths.run_lock(n))
        view = View(n, st, supervised, now)
        view.schedule = schedules.get(n)
        view.broken = broken
        out.append(view)
    return out


def running_supervisor(paths: Paths, name: str) -> int | None:
    """The pid of NAME's running supervisor (0 if it runs but has not written its pid yet), else None."""
    if not is_locked(paths.run_lock(name)):  # no lock file (never started) reads as not locked
        return None
    try:
        st = StateStore(paths).load(name)
    except StreamctlError:
        return 0
    return (st.supervisor_pid or 0) if st is not None else 0


def _configured(paths: Paths) -> list[str]:
    """The configured streams; none when the config cannot be read, so that stop and reset-runtime go by
    the state files (and suggest from them) while someone is editing it, instead of failing on it."""
    try:
        return list(load_config(paths).streams)
    except StreamctlError:
        return []


def reset_runtime(paths: Paths, name: str) -> float:
    """Zero the cumulative runtime of a stream that is not running. Returns the runtime it had."""
    from streamctl.store.fileio import locked

    validate_name(name)
    store = StateStore(paths)
    if not paths.state_file(name).exists():
        configured = _configured(paths)
        if name in configured:
            return 0.0  # configured, never started: nothing to reset
        raise NotFound(f"no stream named {name!r}{did_you_mean(name, [*configured, *store.names()])}")
    with locked(paths.state_lock(name)):
        st = store.load(name)
        if st is None:
            return 0.0
        if is_locked(paths.run_lock(name)):
            raise Conflict(f"stream {name!r} is live; stop it first (streamctl stop {name})")
        if st.session is not None:
            from streamctl.run.recovery import session_process

            ident = session_process(st.session)
            if ident is not None and ident.alive():
                raise Conflict(
                    f"an ffmpeg of stream {name!r} is still running (pid {st.session.ffmpeg_pid}); "
                    f"stop it first (streamctl stop {name})"
                )
        now = time.time()
        old = st.reset_runtime(now)
        store.save(st, now)
        return old


def stop(paths: Paths, name: str, timeout: float = 30.0) -> str:
    """Stop a running stream gracefully and wait until it is down. Returns what happened, for people."""
    from streamctl.run.process import ProcessIdentity
    from streamctl.run.recovery import settle

    validate_name(name)
    store = StateStore(paths)
    st = store.load(name)
    lock = paths.run_lock(name)
    if st is None and not is_locked(lock):
        configured = _configured(paths)
        if name not in configured:
            raise NotFound(f"no stream named {name!r}{did_you_mean(name, [*configured, *store.names()])}")
    if is_locked(lock):
        deadline = time.monotonic() + timeout
        ident = None
        while ident is None:
            # The state may still name an earlier, dead supervisor, or none yet: wait for the live one.
            st = store.load(name)
            if st is not None and st.supervisor_pid and st.supervisor_create_time:
                candidate = ProcessIdentity(st.supervisor_pid, st.supervisor_create_time)
                ident = candidate if candidate.alive() else None
            if ident is None:
                if not is_locked(lock):
                    return "stopped"  # it ended by itself meanwhile
                if time.monotonic() >= deadline:
                    raise StreamctlError(f"stream {name!r} is locked but its supervisor cannot be found")
                time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(ident.pid, signal.SIGTERM)  # the supervisor records reason `stopped` itself
        while is_locked(lock):
            if time.monotonic() >= deadline:
                raise StreamctlError(f"stream {name!r} did not stop within {timeout:g}s")
            time.sleep(0.05)
        return "stopped"
    # No supervisor: an ffmpeg left by a dead one may still be streaming.
    from streamctl.store.fileio import locked

    with locked(paths.state_lock(name)):
        if not is_locked(lock):
            st = store.load(name)
            if st is None or st.session is None:
                return "not running"
            now = time.time()
            _, stopped = settle(st, now, StopReason.STOPPED, timeout)
            store.save(st, now)
            return "stopped orphaned ffmpeg" if stopped is not None else "not running"
    return stop(paths, name, timeout)  # a start took the stream meanwhile: stop it the supervised way


def prepare_start(paths: Paths, name: str, overrides: dict[str, Any], now: float) -> tuple[StreamSpec, str]:
    """The spec `start` runs (the config with OVERRIDES; a scheduled stream's current or next show), and
    the line saying which show ('' without a schedule). Bad input raises before anything runs."""
    from streamctl.store.config import require_limit, resolve_spec

    spec = resolve_spec(paths, name, overrides)
    which = ""
    if spec.schedule is not None:
        from streamctl.commands.shows import plan_start

        spec, which = plan_start(paths, spec, now)
    return require_limit(spec), which


def start_background(paths: Paths, name: str) -> dict[str, Any]:
    """Start NAME as configured with a detached supervisor (what `start NAME --detach` does); return its
    pid, which show it runs, and why its first attempt failed, if it did (it retries on its own)."""
    from streamctl.run.detach import start_detached

    spec, which = prepare_start(paths, name, {}, time.time())
    pid, first_error = start_detached(paths, spec, None, ["start", name])
    return {"name": name, "supervisor_pid": pid, "show": which or None, "first_error": first_error}


def health(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The streams that should run but do not, and why: given up (retries exhausted, or ffmpeg could not
    start), or their supervisor died with budget left (an orphaned ffmpeg streams unsupervised). A stream
    that ended on purpose (budget streamed, deadline, stopped by hand, swept) or never ran is fine; so is
    one in backoff, whose supervisor is on it. Empty: healthy."""
    out = []
    for r in rows:
        reason = None
        if r["status"] == Status.BROKEN:
            reason = r["broken"]
        elif r["status"] == Status.FAILED:
            reason = f"gave up ({r['stop_reason']}): {r['last_error'] or 'no error recorded'}"
        elif r["orphan"]:
            reason = "its supervisor is gone; an orphaned ffmpeg streams unsupervised"
        elif (
            r["status"] == Status.OFFLINE
            and r["stop_reason"] == StopReason.SUPERVISOR_LOST
            and (r["remaining_seconds"] is None or r["remaining_seconds"] > 0)
        ):
            reason = "its supervisor died with budget left"
        if reason is not None:
            out.append({"name": r["name"], "status": r["status"], "reason": reason})
    return out
