"""The supervisor: runs ffmpeg sessions until the stream's cumulative budget is streamed.

Three stop layers guard the budget: ffmpeg's own `-t` (the remaining budget, in media time), a
threading.Timer armed for the remaining wall time plus a margin, and the watchdog loop in `_watch`,
which re-checks the budget once a second. (`streamctl sweep`, run by cron, is the layer outside.)
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from streamctl.accounting import Ledger
from streamctl.config import StreamSpec
from streamctl.durations import format_duration
from streamctl.errors import AlreadyRunning, BudgetSpent, UsageError
from streamctl.ffmpeg import ProgressParser, build_argv, mask_url
from streamctl.fileio import HeldLock, is_locked
from streamctl.paths import Paths
from streamctl.policy import RestartPolicy
from streamctl.process import Child, FfmpegProcess, ProcessIdentity, stop_foreign
from streamctl.state import OpenSession, StateStore, StreamState, iso
from streamctl.states import Status, StopReason

MIN_SESSION = 1.0  # remaining budget below this is spent: not worth a new ffmpeg and connection
TIMER_MARGIN = 2.0  # the backup Timer fires this long after the session should have ended (connect time)
WATCHDOG_SLACK = 2.0  # watchdog stops a session whose streamed time passed its -t by this much

Spawner = Callable[[list[str], Callable[[str], None], Callable[[str], None], Callable[[], None]], Child]
TimerFactory = Callable[[float, Callable[[], None]], Any]


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: StopReason
    runtime_seconds: float
    budget_seconds: float
    sessions: int
    restarts: int

    @property
    def ok(self) -> bool:
        return self.status == Status.OFFLINE


def _timer(interval: float, fn: Callable[[], None]) -> threading.Timer:
    t = threading.Timer(interval, fn)
    t.daemon = True
    return t


class Supervisor:
    def __init__(
        self,
        spec: StreamSpec,
        paths: Paths,
        ffmpeg: str,
        log: logging.Logger,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        spawn: Spawner = FfmpegProcess,
        timer_factory: TimerFactory = _timer,
        wait: Callable[[threading.Event, float], object] = threading.Event.wait,
        watchdog_interval: float = 1.0,
        checkpoint_interval: float = 5.0,
    ) -> None:
        if spec.budget_seconds is None:
            raise UsageError(f"stream {spec.name!r} has no budget: give --hours or --duration")
        self.spec = spec
        self.name = spec.name
        self.paths = paths
        self.store = StateStore(paths)
        self.ffmpeg = ffmpeg
        self.log = log
        self.clock = clock
        self.wall = wall
        self.spawn = spawn
        self.timer_factory = timer_factory
        self._wait = wait
        self.watchdog_interval = watchdog_interval
        self.checkpoint_interval = checkpoint_interval
        s = spec.settings
        self.policy = RestartPolicy(
            retries=s.retries,
            delay=s.restart_delay,
            backoff=s.backoff,
            max_delay=s.max_delay,
            stable_after=s.stable_after,
        )
        self.ledger = Ledger(budget=spec.budget_seconds)
        self.status = Status.OFFLINE
        self.restarts = 0
        self._lock = threading.Lock()  # guards the meter and progress, fed by the reader thread
        self._wake = threading.Event()
        self._stop_reason: StopReason | None = None
        self._stop_source = ""
        self._proc: Child | None = None
        self._parser = ProgressParser()
        self._progress: dict[str, Any] = {}
        self._session: OpenSession | None = None
        self._checkpoint_at = 0.0
        self._eof_at: float | None = None  # when ffmpeg closed its stdout: the session's end

    # ---- requests from other threads and signal handlers -------------------------------------------
    def request_stop(self, reason: StopReason, source: str) -> None:
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason, self._stop_source = reason, source
        self._wake.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(StopReason.STOPPED, f"signal {signal.Signals(signum).name}")

    def _on_timer(self) -> None:
        # The backup layer acts on its own: it stops ffmpeg even if the main loop were stuck.
        self.log.warning("stream %s: backup timer fired, budget deadline passed; stopping ffmpeg", self.name)
        self.request_stop(StopReason.DURATION_REACHED, "timer")
        proc = self._proc
        if proc is not None:
            proc.stop(self.spec.settings.grace)

    def _on_progress_line(self, line: str) -> None:
        block = self._parser.feed(line)
        if block is None:
            return
        with self._lock:
            if self.ledger.meter is not None:
                self.ledger.meter.on_progress(self.clock(), block.out_time, block.ended)
            self._progress = {"speed": block.speed, "bitrate": block.bitrate, "out_time": block.out_time}
        if block.ended or (block.out_time and self.status == Status.STARTING):
            self._wake.set()  # go live, or notice the end, without waiting for the next tick

    def _on_eof(self) -> None:
        with self._lock:
            self._eof_at = self.clock()
        self._wake.set()

    def _on_log_line(self, line: str) -> None:
        if line.strip():
            self.log.info("ffmpeg: %s", line)

    # ---- state ------------------------------------------------------------------------------------
    def _commit(self, new: Status | None = None, reason: StopReason | None = None) -> StreamState:
        """Write our view to the state file under its lock; moves status when NEW is given."""
        now, mono = self.wall(), self.clock()
        with self.store.update(self.name, now) as st:
            if new is not None:
                if new != self.status:
                    self.log.debug("stream %s: %s -> %s", self.name, self.status.value, new.value)
                st.transition(new, reason, now)
                self.status = new
            with self._lock:
                session_runtime = self.ledger.session(mono)
                remaining = self.ledger.remaining(mono)
                st.progress = dict(self._progress)
            st.budget_seconds = self.ledger.budget
            st.restarts = self.restarts
            if self._session is not None:
                self._session.runtime_seconds = round(session_runtime, 3)
                self._session.checkpoint_at = now
            st.session = self._session
            if self.status.running:
                st.expected_end = now + remaining
            self._checkpoint_at = mono
            return st

    def _prepare(self) -> None:
        now = self.wall()
        st = self.store.load(self.name)
        if st is not None and (st.session is not None or st.status_enum.running):
            with self.store.update(self.name, now) as st:
                self._recover(st, now)
        committed = st.runtime_seconds if st else 0.0
        remaining = self.ledger.budget - committed
        if remaining < MIN_SESSION:
            raise BudgetSpent(
                f"stream {self.name!r} has streamed {format_duration(committed)} of its "
                f"{format_duration(self.ledger.budget)} budget; run `streamctl reset-runtime {self.name}` "
                "or start it with a larger --hours/--duration"
            )
        self.ledger.committed = committed
        me = ProcessIdentity.of(os.getpid())
        with self.store.update(self.name, now) as st:
            st.transition(Status.STARTING, None, now)
            self.status = Status.STARTING
            st.budget_seconds = self.ledger.budget
            st.started_at = now
            st.restarts = self.restarts = 0
            st.supervisor_pid = me.pid if me else None
            st.supervisor_create_time = me.create_time if me else None
            st.expected_end = now + remaining
        self.log.info(
            "stream %s: supervisor started at %s; budget %s, already streamed %s, remaining %s; "
            "expected end %s",
            self.name,
            iso(now),
            format_duration(self.ledger.budget),
            format_duration(committed),
            format_duration(remaining),
            iso(now + remaining),
        )

    def _recover(self, st: StreamState, now: float) -> None:
        """Clean up after a supervisor that died: its ffmpeg, its open session, its status."""
        s = st.session
        if s is None:
            if st.status_enum.running:
                st.transition(Status.OFFLINE, StopReason.SUPERVISOR_LOST, now)
            return
        ran = s.runtime_seconds
        if s.ffmpeg_pid and s.ffmpeg_create_time:
            ident = ProcessIdentity(s.ffmpeg_pid, s.ffmpeg_create_time)
            if ident.alive():
                self.log.warning(
                    "stream %s: ffmpeg pid %d from an earlier run is still running; stopping it first",
                    self.name,
                    ident.pid,
                )
                if s.checkpoint_at is not None:
                    # It streamed until we stop it now: count that too (at most its -t).
                    ran = min(s.t_arg, ran + max(0.0, self.wall() - s.checkpoint_at))
                stop_foreign(ident, self.spec.settings.grace)
        self.log.info("stream %s: counting %s streamed by the earlier run", self.name, format_duration(ran))
        st.close_session(now, ran, None, StopReason.SUPERVISOR_LOST.value)
        if st.status_enum.running:
            st.transition(Status.OFFLINE, StopReason.SUPERVISOR_LOST, now)

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self) -> Outcome:
        run_lock = HeldLock(self.paths.run_lock(self.name), f"stream {self.name!r}")
        old_handlers: dict[signal.Signals, Any] = {}
        try:
            self._prepare()
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    old_handlers[sig] = signal.signal(sig, self._on_signal)
            return self._loop()
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            run_lock.release()

    def _loop(self) -> Outcome:
        started = self.clock()
        while True:
            if self._stop_reason is not None:
                return self._finish(self._stop_reason, started)
            remaining = self.ledger.remaining(self.clock())
            if remaining < MIN_SESSION:
                return self._finish(StopReason.DURATION_REACHED, started)
            rc, ran = self._session_run(remaining)
            if rc is None:
                return self._finish(StopReason.START_FAILED, started)
            if self._stop_reason is not None:
                continue
            remaining = self.ledger.remaining(self.clock())
            if rc == 0 or remaining < MIN_SESSION:
                # -t reached (exit 0) is never restarted; neither is a session that used up the budget.
                reason = StopReason.DURATION_REACHED if remaining < MIN_SESSION else StopReason.INPUT_ENDED
                return self._finish(reason, started)
            decision = self.policy.on_failure(ran)
            if not decision.restart:
                self.log.error(
                    "stream %s: ffmpeg failed %d times in a row (exit %s); giving up",
                    self.name,
                    decision.failures,
                    rc,
                )
                return self._finish(StopReason.RETRIES_EXHAUSTED, started)
            self._commit(Status.BACKOFF)
            self.log.warning(
                "stream %s: ffmpeg exited with %s after %s; restart %d/%d in %.1fs with %s remaining",
                self.name,
                rc,
                format_duration(ran),
                decision.failures,
                self.policy.retries,
                decision.delay,
                format_duration(remaining),
            )
            if self._wake_wait(decision.delay):
                continue  # stopped during back-off
            self.restarts += 1

    def _idle(self, seconds: float) -> None:
        """Wait until woken (progress, exit, stop request) or SECONDS pass."""
        self._wait(self._wake, seconds)
        self._wake.clear()

    def _wake_wait(self, seconds: float) -> bool:
        """Sleep up to SECONDS; True if a stop was requested meanwhile."""
        deadline = self.clock() + seconds
        while self._stop_reason is None:
            left = deadline - self.clock()
            if left <= 0:
                return False
            self._idle(min(left, self.watchdog_interval))
        return True

    def _session_run(self, remaining: float) -> tuple[int | None, float]:
        """One ffmpeg session with -t REMAINING. Returns (exit code or None if it never started, streamed)."""
        argv = build_argv(self.ffmpeg, self.spec, remaining)
        secrets = self.spec.secrets()
        shown = [mask_url(a, secrets) if a == self.spec.output_url else a for a in argv]
        self._parser = ProgressParser()
        with self._lock:
            self.ledger.open(self.clock())
            self._progress = {}
            self._eof_at = None
        try:
            proc = self.spawn(argv, self._on_progress_line, self._on_log_line, self._on_eof)
        except OSError as e:
            with self._lock:
                self.ledger.close(self.clock())
            self.log.error("stream %s: cannot launch ffmpeg: %s", self.name, e.strerror or e)
            return None, 0.0
        now = self.wall()
        ident = ProcessIdentity.of(proc.pid)
        self._proc = proc
        self._session = OpenSession(
            started_at=now,
            t_arg=round(remaining, 3),
            ffmpeg_pid=proc.pid,
            ffmpeg_create_time=ident.create_time if ident else None,
        )
        self._commit(Status.STARTING)
        self.log.info(
            "stream %s: ffmpeg pid %d launched with -t %.3f: %s",
            self.name,
            proc.pid,
            remaining,
            " ".join(shown),
        )
        margin = TIMER_MARGIN
        timer = self.timer_factory(remaining + margin, self._on_timer)
        timer.start()
        self.log.info(
            "stream %s: backup timer scheduled for %s (in %s)",
            self.name,
            iso(now + remaining + margin),
            format_duration(remaining + margin),
        )
        try:
            rc = self._watch(proc, remaining, margin)
        finally:
            timer.cancel()
        proc.close()  # joins the readers, so _eof_at is final
        with self._lock:
            ran = self.ledger.close(self._eof_at if self._eof_at is not None else self.clock())
        self._proc = None
        ended = self.wall()
        session, self._session = self._session, None
        with self.store.update(self.name, ended) as st:
            st.session = session
            st.close_session(ended, ran, rc, self._stop_reason.value if self._stop_reason else f"exit {rc}")
            st.session_count += 1
            st.last_exit_code = rc
            st.runtime_seconds = self.ledger.committed  # the ledger is the authority
        self.log.info(
            "stream %s: session ended (exit %s) after %s streamed; total %s of %s",
            self.name,
            rc,
            format_duration(ran),
            format_duration(self.ledger.committed),
            format_duration(self.ledger.budget),
        )
        return rc, ran

    def _watch(self, proc: Child, t_arg: float, margin: float) -> int:
        """Wait for PROC to end; meanwhile the watchdog: go live, checkpoint, enforce the budget."""
        launched = self.clock()
        grace = self.spec.settings.grace
        while True:
            rc = proc.poll()
            if rc is not None:
                return rc
            if self._stop_reason is not None:
                if self.status != Status.STOPPING:
                    self._commit(Status.STOPPING)
                self.log.info("stream %s: stopping ffmpeg (%s)", self.name, self._stop_source)
                return proc.stop(grace)
            now = self.clock()
            with self._lock:
                streamed = self.ledger.session(now)
                live = bool(self._progress.get("out_time"))
            if live and self.status == Status.STARTING:
                self._commit(Status.LIVE)
                self.log.info("stream %s: live", self.name)
            if streamed > t_arg + WATCHDOG_SLACK or now - launched > t_arg + margin + WATCHDOG_SLACK:
                self.log.warning("stream %s: watchdog: session passed its budget; stopping", self.name)
                self.request_stop(StopReason.DURATION_REACHED, "watchdog")
                continue
            if now - self._checkpoint_at >= self.checkpoint_interval:
                self._commit()
            self._idle(self.watchdog_interval)

    def _finish(self, reason: StopReason, started: float) -> Outcome:
        final = (
            Status.FAILED
            if reason in (StopReason.RETRIES_EXHAUSTED, StopReason.START_FAILED)
            else Status.OFFLINE
        )
        st = self._commit(final, reason)
        wall = self.clock() - started
        self.log.info(
            "stream %s: stopped, reason %s; streamed %s of %s budget (%s remaining) in %d sessions, "
            "%d restarts, %s wall time",
            self.name,
            reason.value,
            format_duration(self.ledger.committed),
            format_duration(self.ledger.budget),
            format_duration(self.ledger.remaining(self.clock())),
            st.session_count,
            self.restarts,
            format_duration(wall),
        )
        return Outcome(
            final, reason, self.ledger.committed, self.ledger.budget, st.session_count, self.restarts
        )


def start_stream(paths: Paths, spec: StreamSpec, console: bool = True) -> Outcome:
    """Run SPEC's supervisor in this process until the stream ends (the `start` command)."""
    from streamctl.ffmpeg import find_ffmpeg
    from streamctl.logs import close_logger, stream_logger

    ffmpeg = find_ffmpeg(spec.settings.ffmpeg)
    if spec.budget_seconds is None:
        raise UsageError(f"stream {spec.name!r} has no budget: give --hours or --duration")
    if is_locked(paths.run_lock(spec.name)):
        raise AlreadyRunning(f"stream {spec.name!r} is already running")
    log = stream_logger(spec.name, paths.log_file(spec.name), spec.secrets(), console=console)
    try:
        return Supervisor(spec, paths, ffmpeg, log).run()
    finally:
        close_logger(log)
