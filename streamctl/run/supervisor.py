"""The stream supervisor: runs ffmpeg sessions until the stream's cumulative budget is streamed.

Three stop layers guard the budget: ffmpeg's own `-t` (the remaining budget, in media time), the backup
timer of each Session (the remaining wall time plus a margin), and the watchdog verdict the loop asks for
each tick (`streamctl sweep`, run by cron, is the layer outside). The supervisor holds the run lock,
decides restarts through the policy, and ends with an Outcome; a Session is one ffmpeg run, the journal
makes every state write, and events tell the listeners (the log among them) what happened.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

from streamctl.durations import MIN_SESSION  # remaining budget below this is spent
from streamctl.run.events import Emitter, Kind, Listener
from streamctl.run.ffmpeg import build_argv
from streamctl.run.journal import RunJournal, Store
from streamctl.run.liveness import SendQueue
from streamctl.run.policy import RestartPolicy
from streamctl.run.process import FfmpegProcess, ProcessIdentity
from streamctl.run.session import End, Result, Session, Spawner, TimerFactory, daemon_timer
from streamctl.run.watchdog import Verdict
from streamctl.store.config import StreamSpec, require_limit
from streamctl.store.fileio import HeldLock
from streamctl.store.lifecycle import Status, StopReason
from streamctl.store.limit import WARN_BELOW, Limit
from streamctl.store.paths import Paths
from streamctl.store.state import StateStore

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from streamctl.records import dataclass


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: StopReason
    runtime_seconds: float
    budget_seconds: float | None
    sessions: int
    restarts: int
    cause: str | None = None  # why it failed, when no session ever streamed (masked; for the one error line)

    @property
    def ok(self) -> bool:
        return self.status == Status.OFFLINE


class Supervisor:
    def __init__(
        self,
        spec: StreamSpec,
        paths: Paths,
        ffmpeg: str,
        listeners: Iterable[Listener] = (),
        on_output: Callable[[str], None] = lambda line: None,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        spawn: Spawner = FfmpegProcess,
        timer_factory: TimerFactory = daemon_timer,
        wait: Callable[[threading.Event, float], object] = threading.Event.wait,
        on_tick: Callable[[Supervisor], None] | None = None,
        probe_backlog: Callable[[int], int | None] | None = None,
        watchdog_interval: float = 5.0,
        checkpoint_interval: float = 5.0,
        resume_items: Callable[[], list[tuple[str, float]] | None] | None = None,
    ) -> None:
        self.spec = require_limit(spec)
        self.name, self.paths, self.ffmpeg, self.on_output = spec.name, paths, ffmpeg, on_output
        self.clock, self.wall, self.spawn, self.timer_factory = clock, wall, spawn, timer_factory
        self._wait, self.on_tick = wait, on_tick
        self.probe_backlog = probe_backlog or SendQueue()
        # The loop wakes by itself only for a checkpoint: progress blocks sample the send queue and wake
        # it on an alarm, exit and stop requests wake it, and the stall rule and the deadline set its
        # timeout (_next_look). Each wake-up costs ~0.3 ms of CPU on a small VPS; a bar to draw wants more.
        self.watchdog_interval = min(watchdog_interval, 1.0) if on_tick else watchdog_interval
        self.checkpoint_interval = checkpoint_interval
        self.policy = RestartPolicy.of(spec.settings)
        self.limit = Limit(spec.budget_seconds, spec.until)
        self.emit = Emitter(self.name, wall, listeners)
        self.journal = RunJournal(self.name, store or StateStore(paths), self.limit, self.emit, clock, wall)
        self.session: Session | None = None
        self._wake = threading.Event()
        self._stop_reason: StopReason | None = None
        self._stop_source = ""
        self._cause: str | None = None  # why the last session failed
        self._streamed = False  # some session of this run streamed media
        self._warned = False  # the ending_soon event went out
        # the input's files and durations, looked up at the first session that does not start at 0:00
        self._resume_items = resume_items
        self._items: list[tuple[str, float]] | None = None

    @property
    def status(self) -> Status:
        return self.journal.status

    def streamed(self) -> float:
        """Runtime so far: closed sessions plus the open one."""
        s = self.session
        return self.journal.committed + (s.streamed(self.clock()) if s is not None else 0.0)

    def remaining(self) -> float:
        """What may still be streamed: the budget's rest, or the time to the deadline if that is less."""
        return self.limit.left(self.streamed(), self.wall())

    def request_stop(self, reason: StopReason, source: str) -> None:
        """From any thread or a signal handler: end the stream. No lock: a signal handler runs in the main
        thread, which may hold any lock."""
        if self._stop_reason is None:
            self._stop_source = source
            self._stop_reason = reason
        self._wake.set()

    # ---- the run ------------------------------------------------------------------------------------
    def run(self) -> Outcome:
        run_lock = HeldLock(self.paths.run_lock(self.name), f"stream {self.name!r}")
        try:
            ident = ProcessIdentity.of(os.getpid())
            me = (ident.pid, ident.create_time) if ident else None
            self.journal.begin(
                me,
                MIN_SESSION,
                self.spec.settings.grace,
                self.checkpoint_interval,
                self.spec.show_at,
                self.spec.show_label,
            )
            return self._loop()
        finally:
            if isinstance(self.probe_backlog, SendQueue):
                self.probe_backlog.close()
            run_lock.release()

    def _time_up(self) -> StopReason | None:
        if self.remaining() < MIN_SESSION:
            return self.limit.reason(self.streamed(), self.wall())
        return None

    def _loop(self) -> Outcome:
        started = self.clock()
        while True:
            if self._stop_reason is not None:
                return self._finish(self._stop_reason, started)
            if (up := self._time_up()) is not None:
                return self._finish(up, started)
            result = self._run_session(self.remaining())
            if result.end == End.NOT_STARTED:
                return self._finish(StopReason.START_FAILED, started)
            if result.end == End.STOPPED:
                continue
            if (up := self._time_up()) is not None:
                return self._finish(up, started)  # never restart once time is up
            if result.end == End.FINISHED:
                # Exit 0 with time left: a non-looped input ended. Not a failure: do not restart.
                return self._finish(StopReason.INPUT_ENDED, started)
            # Failed, stalled, or overran with time left (media lagged the wall clock): restart.
            decision = self.policy.on_failure(result.stable)
            why = "stalled" if result.end == End.STALLED else f"exit {result.rc}"
            if not decision.restart:
                self.emit(Kind.GAVE_UP, failures=decision.failures, last=why)
                return self._finish(StopReason.RETRIES_EXHAUSTED, started)
            self.journal.commit(None, Status.BACKOFF)
            self.emit(
                Kind.RESTARTING,
                why="stalled" if result.end == End.STALLED else f"exited with {result.rc}",
                streamed=result.stable,
                attempt=decision.failures,
                retries=self.policy.retries,
                delay=decision.delay,
                remaining=self.remaining(),
            )
            if self._wake_wait(decision.delay):
                continue  # stopped during back-off
            self.journal.restarts += 1

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
            if self.on_tick:
                self.on_tick(self)
        return True

    def _run_session(self, remaining: float) -> Result:
        """One ffmpeg session with -t REMAINING, from launch to its place in the history."""
        argv = build_argv(self.ffmpeg, self._resumed(remaining), remaining)
        s = Session(
            self.spec,
            argv,
            remaining,
            self.emit,
            self.on_output,
            clock=self.clock,
            wall=self.wall,
            spawn=self.spawn,
            timer_factory=self.timer_factory,
            probe_backlog=self.probe_backlog,
        )
        s.woke = self._wake.set
        try:
            record = s.start()
        except OSError as e:
            self.emit(Kind.LAUNCH_FAILED, error=str(e.strerror or e))
            self._cause = (
                f"cannot launch ffmpeg {self.ffmpeg}: {e.strerror or e}: check it with `streamctl doctor`"
            )
            return Result(End.NOT_STARTED, None, 0.0, 0.0, False, None)
        self.session = s
        try:
            self.journal.open_session(s, record)
            s.arm()
            end, rc = self._watch(s)
            result = s.close(end, rc)
        except BaseException:
            s.stop()  # whatever went wrong, no ffmpeg outlives its supervisor
            s.close(End.FAILED, None)
            self.session = None
            raise
        self.session = None
        self._go_live(s)  # media that went out before the loop looked (a short run, a loaded machine)
        self._streamed = self._streamed or result.sent_media
        result, stop = self.journal.close_session(result, self._stop_reason)
        if stop is not None:
            self.request_stop(stop, "sweep")
        self._cause = result.cause
        return result

    def _resumed(self, remaining: float) -> StreamSpec:
        """The spec of the next session: its input from where the stream is (run/resume.py)."""
        if self._resume_items is None or self.journal.committed <= 0:
            return self.spec
        from streamctl.run.resume import resumed

        if self._items is None:
            self._items = self._resume_items() or []
        if not self._items:
            return self.spec
        return resumed(self.spec, self._items, self.journal.committed, remaining, self.paths.state_dir)

    def _watch(self, s: Session) -> tuple[End, int]:
        """Wait for the session to end; meanwhile go live, checkpoint, and act on the watchdog's verdict."""
        while True:
            rc = s.poll()
            if rc is not None:
                return (End.STOPPED if self._stop_reason else s.natural_end(rc)), rc
            if self._stop_reason is not None:
                if self.status != Status.STOPPING:
                    self.journal.commit(s, Status.STOPPING)
                self.emit(Kind.STOPPING, source=self._stop_source)
                return End.STOPPED, s.stop()
            self._go_live(s)
            self._warn_ending(s)
            verdict = s.check(self.limit.until)
            if verdict == Verdict.OVERRAN:
                return End.OVERRAN, s.stop()
            if verdict in (Verdict.JAMMED, Verdict.STALLED):
                self.journal.commit(s)
                return End.STALLED, s.stop()
            if self.journal.due(self.checkpoint_interval):
                self.journal.commit(s)
            if self.on_tick:
                self.on_tick(self)
            # ffmpeg closes its stdout a moment before the kernel reports it exited: after EOF, poll
            # briefly instead of sleeping a whole tick (it made restarts ~1 s slower).
            self._idle(0.02 if s.exiting else self._next_look(s))

    def _go_live(self, s: Session) -> None:
        """STARTING -> LIVE once S has sent media: seen by the loop, or only when S closed."""
        if s.live and self.status == Status.STARTING:
            self.journal.commit(s, Status.LIVE)
            self.emit(Kind.LIVE)

    def _warn_ending(self, s: Session) -> None:
        """Once a run, while live: under WARN_BELOW left (an event for the people told of it)."""
        if not self._warned and s.live and self.status == Status.LIVE:
            left = self.remaining()
            if left < WARN_BELOW:
                self._warned = True
                self.emit(Kind.ENDING_SOON, remaining=left)

    def _next_look(self, s: Session) -> float:
        """How long the loop may sleep unless woken: the tick, but no later than the next checkpoint
        (what a dead supervisor's session is credited counts on its interval) or than the moment the
        stall rule or the deadline could apply. Progress, exit, stop requests and alarms wake it sooner."""
        checkpoint = self.checkpoint_interval - (self.clock() - self.journal.checkpoint_at)
        return max(0.05, min(self.watchdog_interval, checkpoint, s.due_in(self.limit.until)))

    def _finish(self, reason: StopReason, started: float) -> Outcome:
        failed = reason in (StopReason.RETRIES_EXHAUSTED, StopReason.START_FAILED)
        final = Status.FAILED if failed else Status.OFFLINE
        # The cause is worth the one error line only when nothing worked: a setup problem, not a flaky ingest.
        cause = self._cause if failed and not self._streamed else None
        st = self.journal.finish(final, reason, cause)
        j = self.journal
        self.emit(
            Kind.RUN_ENDED,
            reason.value,
            status=final.value,
            streamed=j.committed,
            budget=self.limit.budget,
            remaining=self.remaining(),
            sessions=st.session_count,
            restarts=j.restarts,
            wall=self.clock() - started,
        )
        return Outcome(final, reason, j.committed, self.limit.budget, st.session_count, j.restarts, cause)
