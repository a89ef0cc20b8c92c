"""The supervisor: runs ffmpeg sessions until the stream's cumulative budget is streamed.

Three stop layers guard the budget: ffmpeg's own `-t` (the remaining budget, in media time), a
threading.Timer armed for the remaining wall time plus a margin, and the watchdog loop in `_watch`,
which re-checks the budget once a second. (`streamctl sweep`, run by cron, is the layer outside.)
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import FrameType
from typing import Any

from streamctl.durations import format_duration
from streamctl.errors import BudgetSpent
from streamctl.masking import masked_argv
from streamctl.run.accounting import Ledger
from streamctl.run.ffmpeg import ProgressParser, build_argv, explain_failure
from streamctl.run.liveness import BacklogWatch, send_queue
from streamctl.run.policy import RestartPolicy
from streamctl.run.process import Child, FfmpegProcess, ProcessIdentity, cmd_digest
from streamctl.run.recovery import boot_id, session_process, settle
from streamctl.store.config import StreamSpec, require_limit
from streamctl.store.fileio import HeldLock
from streamctl.store.lifecycle import Status, StopReason
from streamctl.store.paths import Paths
from streamctl.store.state import OpenSession, StateStore, StreamState, iso

MIN_SESSION = 1.0  # remaining budget below this is spent: not worth a new ffmpeg and connection
TIMER_MARGIN = 2.0  # the backup Timer fires this long after the session should have ended (connect time)
WATCHDOG_SLACK = 2.0  # watchdog stops a session whose streamed time passed its -t by this much
STDERR_TAIL = 20  # ffmpeg stderr lines kept per session, to tell why it failed

Spawner = Callable[[list[str], Callable[[str], None], Callable[[str], None], Callable[[], None]], Child]
TimerFactory = Callable[[float, Callable[[], None]], Any]


class End(Enum):
    """How a session ended, as far as the restart decision is concerned."""

    FINISHED = "finished"  # exit 0: -t reached, or the input ended
    FAILED = "failed"  # any other exit: crash, signal, network error
    STALLED = "stalled"  # no media progress for stall_timeout: we stopped it; a failure
    OVERRAN = "overran"  # the timer or watchdog stopped it past its time; restarted only if time is left
    STOPPED = "stopped"  # we were asked to stop (signal, timer, watchdog, sweep)
    NOT_STARTED = "not_started"  # ffmpeg could not be launched


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
        on_tick: Callable[[Supervisor], None] | None = None,
        probe_backlog: Callable[[int], int | None] = send_queue,
        watchdog_interval: float = 1.0,
        checkpoint_interval: float = 5.0,
    ) -> None:
        self.spec = require_limit(spec)
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
        self.on_tick = on_tick
        self.probe_backlog = probe_backlog
        self.watchdog_interval = watchdog_interval
        self.checkpoint_interval = checkpoint_interval
        s = spec.settings
        self.policy = RestartPolicy(
            retries=s.retries,
            delay=s.restart_delay,
            backoff=s.backoff,
            max_delay=s.max_delay,
            jitter=s.jitter,
            stable_after=s.stable_after,
        )
        budget = spec.budget_seconds if spec.budget_seconds is not None else math.inf
        self.ledger = Ledger(budget=budget)
        self.until = spec.until
        self.status = Status.OFFLINE
        self.restarts = 0
        self._lock = threading.Lock()  # guards the meter, progress and _eof_at, fed by reader threads
        self._wake = threading.Event()
        self._stop_reason: StopReason | None = None
        self._stop_source = ""
        self._proc: Child | None = None
        self._parser = ProgressParser()
        self._progress: dict[str, Any] = {}
        self._advanced_at = 0.0  # monotonic time media output last advanced (stall detection)
        self._session: OpenSession | None = None
        self._checkpoint_at = 0.0
        self._eof_at: float | None = None  # when ffmpeg closed its stdout: the session's end
        self._overran = False  # the timer or watchdog stopped this session for running past its time
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL)  # appended by the stderr reader thread
        self._cause: str | None = None  # why the last session failed
        self._streamed = False  # some session of this run streamed media
        self._jammed = False  # this session was replaced because the ingest stopped reading

    @property
    def budget(self) -> float | None:
        return None if math.isinf(self.ledger.budget) else self.ledger.budget

    def remaining(self) -> float:
        """What may still be streamed: the budget's rest, or the time to the deadline if that is less."""
        with self._lock:
            left = self.ledger.remaining(self.clock())
        if self.until is not None:
            left = min(left, max(0.0, self.until - self.wall()))
        return left

    def _limit_reason(self) -> StopReason:
        if self.until is not None and self.until - self.wall() <= self.ledger.remaining(self.clock()):
            return StopReason.DEADLINE_REACHED
        return StopReason.DURATION_REACHED

    # ---- requests from other threads and signal handlers -------------------------------------------
    def request_stop(self, reason: StopReason, source: str) -> None:
        # No lock here: signal handlers run in the main thread, which may hold any of our locks.
        if self._stop_reason is None:
            self._stop_source = source
            self._stop_reason = reason
        self._wake.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(StopReason.STOPPED, f"signal {signal.Signals(signum).name}")

    def _on_timer(self, proc: Child) -> None:
        # The backup layer acts on its own: it stops ffmpeg even if the main loop were stuck. It ends the
        # session, not the stream: if media lagged wall time, the loop restarts with what is left.
        if proc is not self._proc:
            return  # a late callback for a session that already ended
        self.log.warning(
            "stream %s: backup timer fired, the session is past its time; stopping ffmpeg", self.name
        )
        self._overran = True
        proc.stop(self.spec.settings.grace)

    def _on_progress_line(self, line: str) -> None:
        block = self._parser.feed(line)
        if block is None:
            return
        now = self.clock()
        with self._lock:
            meter = self.ledger.meter
            if meter is not None:
                before = meter.out_time
                meter.on_progress(now, block.out_time, block.ended)
                if meter.out_time > before:
                    self._advanced_at = now
            self._progress = {
                "speed": block.speed,
                "bitrate": block.bitrate,
                "out_time": block.out_time,
                "total_size": block.total_size,
            }
        if block.ended or (block.out_time and self.status == Status.STARTING):
            self._wake.set()  # go live, or notice the end, without waiting for the next tick

    def _on_eof(self) -> None:
        with self._lock:
            self._eof_at = self.clock()
        self._wake.set()

    def _on_log_line(self, line: str) -> None:
        line = line.rstrip()  # ffmpeg ends some lines with a space ("... output stream 0:1 -- ")
        if line.strip():
            self._stderr.append(line)
            self.log.info("ffmpeg: %s", line)

    # ---- state ------------------------------------------------------------------------------------
    def _commit(
        self, new: Status | None = None, reason: StopReason | None = None, error: str | None = None
    ) -> StreamState:
        """Write our view to the state file under its lock; moves status when NEW is given."""
        now, mono = self.wall(), self.clock()
        with self.store.update(self.name, now) as st:
            if st.status != self.status.value:
                # We hold the run lock: this stream's status is ours. Another process wrote over it.
                self.log.warning("stream %s: state said %s; restoring %s", self.name, st.status, self.status)
                st.status = self.status.value
            if new is not None:
                if new != self.status:
                    self.log.debug("stream %s: %s -> %s", self.name, self.status.value, new.value)
                st.transition(new, reason, now)
                self.status = new
            if new == Status.LIVE:
                st.last_error = None  # media flows: whatever failed before is fixed
            if error is not None:
                st.last_error = error
            with self._lock:
                session_runtime = self.ledger.session(mono)
                st.progress = dict(self._progress)
            st.budget_seconds = self.budget
            st.until = self.until
            st.restarts = self.restarts
            if self._session is not None:
                self._session.runtime_seconds = round(session_runtime, 3)
                self._session.checkpoint_at = now
            st.session = self._session
            if self.status.running:
                st.expected_end = now + self.remaining()
            self._checkpoint_at = mono
            return st

    def _prepare(self) -> None:
        """Under one state lock: recover after a dead supervisor, check the budget, go STARTING."""
        now = self.wall()
        me = ProcessIdentity.of(os.getpid())
        with self.store.update(self.name, now) as st:
            if st.session is not None or st.status_enum.running:
                self._recover(st, now)
            committed = self.ledger.committed = st.runtime_seconds
            remaining = self.remaining()
            spent = remaining < MIN_SESSION
            if not spent:
                self._go_starting(st, now, me, remaining)
        if spent:
            self._refuse(committed)  # after the block, so what _recover found is saved
        self.log.info(
            "stream %s: supervisor started at %s; budget %s, already streamed %s, deadline %s, "
            "remaining %s; expected end %s",
            self.name,
            iso(now),
            format_duration(self.budget),
            format_duration(committed),
            iso(self.until) or "none",
            format_duration(remaining),
            iso(now + remaining),
        )

    def _go_starting(self, st: StreamState, now: float, me: ProcessIdentity | None, remaining: float) -> None:
        st.transition(Status.STARTING, None, now)
        self.status = Status.STARTING
        st.budget_seconds = self.budget
        st.until = self.until
        st.started_at = now
        st.restarts = self.restarts = 0
        st.stop_request = None
        st.supervisor_pid = me.pid if me else None
        st.supervisor_create_time = me.create_time if me else None
        st.expected_end = now + remaining

    def _refuse(self, committed: float) -> None:
        if self._limit_reason() == StopReason.DEADLINE_REACHED:
            raise BudgetSpent(f"stream {self.name!r}: its deadline {iso(self.until)} has passed")
        raise BudgetSpent(
            f"stream {self.name!r} has streamed {format_duration(committed)} of its "
            f"{format_duration(self.budget)} budget; run `streamctl reset-runtime {self.name}` "
            "or start it with a larger --hours/--duration"
        )

    def _recover(self, st: StreamState, now: float) -> None:
        """Clean up after a supervisor that died: its ffmpeg, its open session, its status (resume)."""
        had_session = st.session is not None
        ident = session_process(st.session)
        if ident is not None and ident.alive():  # said before settle stops it, which can take the grace
            self.log.warning(
                "stream %s: ffmpeg pid %d from an earlier run is still running; stopping it first",
                self.name,
                ident.pid,
            )
        ran, _ = settle(
            st, now, StopReason.SUPERVISOR_LOST, self.spec.settings.grace, self.checkpoint_interval
        )
        if had_session:
            self.log.info(
                "stream %s: counting %s streamed by the earlier run", self.name, format_duration(ran)
            )

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self) -> Outcome:
        run_lock = HeldLock(self.paths.run_lock(self.name), f"stream {self.name!r}")
        old_handlers: dict[signal.Signals, Any] = {}
        try:
            if threading.current_thread() is threading.main_thread():
                # Before _prepare publishes our pid: a `stop` from then on is never lost.
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    old_handlers[sig] = signal.signal(sig, self._on_signal)
            self._prepare()
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
            remaining = self.remaining()
            if remaining < MIN_SESSION:
                return self._finish(self._limit_reason(), started)
            end, rc, ran = self._session_run(remaining)
            if end == End.NOT_STARTED:
                return self._finish(StopReason.START_FAILED, started)
            if end == End.STOPPED:
                continue
            remaining = self.remaining()
            if remaining < MIN_SESSION:
                return self._finish(self._limit_reason(), started)  # never restart once time is up
            if end == End.FINISHED:
                # Exit 0 with time left: a non-looped input ended. Not a failure: do not restart.
                return self._finish(StopReason.INPUT_ENDED, started)
            # Failed, stalled, or overran with time left (media lagged the wall clock): restart.
            decision = self.policy.on_failure(ran)
            if not decision.restart:
                self.log.error(
                    "stream %s: ffmpeg failed %d times in a row (last: %s); giving up",
                    self.name,
                    decision.failures,
                    "stalled" if end == End.STALLED else f"exit {rc}",
                )
                return self._finish(StopReason.RETRIES_EXHAUSTED, started)
            self._commit(Status.BACKOFF)
            self.log.warning(
                "stream %s: ffmpeg %s after %s streamed; restart %d/%d in %.1fs with %s remaining",
                self.name,
                "stalled" if end == End.STALLED else f"exited with {rc}",
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
            if self.on_tick:
                self.on_tick(self)
        return True

    def _session_run(self, remaining: float) -> tuple[End, int | None, float]:
        """One ffmpeg session with -t REMAINING: how it ended, its exit code, and what it streamed."""
        argv = build_argv(self.ffmpeg, self.spec, remaining)
        shown = masked_argv(argv, self.spec.secrets())
        self._parser = ProgressParser()
        with self._lock:
            self.ledger.open(self.clock())
            self._progress = {}
            self._eof_at = None
            self._advanced_at = self.clock()
        self._overran = self._jammed = False
        self._stderr.clear()
        try:
            proc = self.spawn(argv, self._on_progress_line, self._on_log_line, self._on_eof)
        except OSError as e:
            with self._lock:
                self.ledger.close(self.clock())
            self.log.error("stream %s: cannot launch ffmpeg: %s", self.name, e.strerror or e)
            self._cause = (
                f"cannot launch ffmpeg {self.ffmpeg}: {e.strerror or e}: check it with `streamctl doctor`"
            )
            return End.NOT_STARTED, None, 0.0
        try:
            return self._supervise(proc, argv, shown, remaining)
        except BaseException:
            proc.stop(self.spec.settings.grace)  # whatever went wrong, no ffmpeg outlives its supervisor
            proc.close()
            raise

    def _supervise(
        self, proc: Child, argv: list[str], shown: list[str], remaining: float
    ) -> tuple[End, int | None, float]:
        now = self.wall()
        ident = ProcessIdentity.of(proc.pid)
        self._proc = proc
        salt = secrets.token_hex(8)
        self._session = OpenSession(
            started_at=now,
            t_arg=round(remaining, 3),
            ffmpeg_pid=proc.pid,
            ffmpeg_create_time=ident.create_time if ident else None,
            ffmpeg_cmd=shown,
            cmd_digest=cmd_digest(argv[1:], salt),
            cmd_salt=salt,
            started_mono=time.monotonic(),
            boot_id=boot_id(),
        )
        self._commit(Status.STARTING)
        cmd = " ".join(shown)
        self.log.info(
            "stream %s: ffmpeg pid %d launched with -t %.3f: %s", self.name, proc.pid, remaining, cmd
        )
        timer = self.timer_factory(remaining + TIMER_MARGIN, lambda: self._on_timer(proc))
        timer.start()
        self.log.info(
            "stream %s: backup timer scheduled for %s (in %s)",
            self.name,
            iso(now + remaining + TIMER_MARGIN),
            format_duration(remaining + TIMER_MARGIN),
        )
        try:
            end, rc = self._watch(proc, remaining)
        finally:
            timer.cancel()
        proc.close()  # joins the readers, so _eof_at is final
        with self._lock:
            had_progress = self.ledger.meter is not None and self.ledger.meter.has_progress
            streamed = self.ledger.meter is not None and self.ledger.meter.out_time > 0
            end_at = self._eof_at if self._eof_at is not None else self.clock()
            ran = self.ledger.close(end_at, ok=end == End.FINISHED)
        self._proc = None
        self._streamed = self._streamed or streamed
        cause = None
        if end == End.STALLED and self._jammed:
            cause = "the ingest stopped reading the stream: is it overloaded, or the network congested?"
        elif end in (End.FAILED, End.STALLED):
            cause = explain_failure(
                self.name,
                self.spec.output_url,
                list(self._stderr),
                self.spec.secrets(),
                streamed=streamed,
                stalled_after=self.spec.settings.stall_timeout if end == End.STALLED else None,
                rc=rc,
            )
        ended = self.wall()
        session, self._session = self._session, None
        with self.store.update(self.name, ended) as st:
            if st.stop_request and self._stop_reason is None:
                # `sweep` stopped this ffmpeg: it asks us, through the state file, not to restart it.
                self.request_stop(StopReason(st.stop_request), "sweep")
                end, cause = End.STOPPED, None
            if cause is not None:
                st.last_error = cause
            self._cause = cause
            st.stop_request = None
            st.session = session
            st.close_session(ended, ran, rc, self._stop_reason.value if self._stop_reason else end.value)
            st.session_count += 1
            st.last_exit_code = rc
            st.runtime_seconds = self.ledger.committed  # the ledger is the authority
        self.log.info(
            "stream %s: session ended (%s, exit %s) after %s streamed; total %s of %s",
            self.name,
            end.value,
            rc,
            format_duration(ran),
            format_duration(self.ledger.committed),
            format_duration(self.budget),
        )
        if cause is not None:
            self.log.warning("stream %s: ffmpeg failed: %s", self.name, cause)
        # A session that never got going (no progress at all) must not look stable to the restart policy.
        return end, rc, ran if had_progress or end == End.FINISHED else 0.0

    def _watch(self, proc: Child, t_arg: float) -> tuple[End, int]:
        """Wait for PROC to end; meanwhile the watchdog: go live, checkpoint, enforce budget and liveness."""
        launched = self.clock()
        grace = self.spec.settings.grace
        stall_timeout = self.spec.settings.stall_timeout
        backlog = BacklogWatch(window=min(4.0, stall_timeout))
        while True:
            rc = proc.poll()
            if rc is not None:
                if self._stop_reason:
                    return End.STOPPED, rc
                if self._overran:
                    return End.OVERRAN, rc
                return (End.FINISHED if rc == 0 else End.FAILED), rc
            if self._stop_reason is not None:
                if self.status != Status.STOPPING:
                    self._commit(Status.STOPPING)
                self.log.info("stream %s: stopping ffmpeg (%s)", self.name, self._stop_source)
                return End.STOPPED, proc.stop(grace)
            now = self.clock()
            with self._lock:
                streamed = self.ledger.session(now)
                live = bool(self._progress.get("out_time"))
                quiet = now - self._advanced_at
                sent, media = self._progress.get("total_size"), self._progress.get("out_time")
            if live and self.status == Status.STARTING:
                self._commit(Status.LIVE)
                self.log.info("stream %s: live", self.name)
            past_deadline = self.until is not None and self.wall() >= self.until + TIMER_MARGIN
            if (
                streamed > t_arg + WATCHDOG_SLACK
                or now - launched > t_arg + TIMER_MARGIN + WATCHDOG_SLACK
                or past_deadline
            ):
                self.log.warning(
                    "stream %s: watchdog: the session is past its time; stopping ffmpeg", self.name
                )
                self._overran = True
                return End.OVERRAN, proc.stop(grace)
            # with several destinations the queues of all connections add up: the rule is for one ingest
            backlog.sample(now, None if self.spec.also else self.probe_backlog(proc.pid))
            jam = backlog.hung(sent / media if sent and media else 0.0)
            if jam is not None:
                self.log.warning(
                    "stream %s: the ingest stopped reading: ffmpeg's send queue grew by %d KiB in %.1fs "
                    "without draining; replacing ffmpeg",
                    self.name,
                    jam[1] // 1024,
                    jam[0],
                )
                self._commit()
                self._jammed = True
                return End.STALLED, proc.stop(grace)
            if quiet >= stall_timeout:
                self.log.warning(
                    "stream %s: no media progress for %.1fs (%s); ffmpeg is hung, replacing it",
                    self.name,
                    quiet,
                    "never started" if not live else f"stuck at {self._progress.get('out_time'):.1f}s",
                )
                self._commit()
                return End.STALLED, proc.stop(grace)
            if now - self._checkpoint_at >= self.checkpoint_interval:
                self._commit()
            if self.on_tick:
                self.on_tick(self)
            # ffmpeg closes its stdout a moment before the kernel reports it exited: after EOF, poll
            # briefly instead of sleeping a whole tick (it made restarts ~1 s slower).
            self._idle(0.02 if self._eof_at is not None else self.watchdog_interval)

    def _finish(self, reason: StopReason, started: float) -> Outcome:
        failed = reason in (StopReason.RETRIES_EXHAUSTED, StopReason.START_FAILED)
        final = Status.FAILED if failed else Status.OFFLINE
        # The cause is worth the one error line only when nothing worked: a setup problem, not a flaky ingest.
        cause = self._cause if failed and not self._streamed else None
        st = self._commit(final, reason, error=cause)
        self.log.info(
            "stream %s: stopped, reason %s; streamed %s of %s budget (%s remaining) in %d sessions, "
            "%d restarts, %s wall time",
            self.name,
            reason.value,
            format_duration(self.ledger.committed),
            format_duration(self.budget),
            format_duration(self.remaining()),
            st.session_count,
            self.restarts,
            format_duration(self.clock() - started),
        )
        return Outcome(
            final, reason, self.ledger.committed, self.budget, st.session_count, self.restarts, cause
        )


def prepare_input(paths: Paths, spec: StreamSpec) -> StreamSpec:
    """A folder or list file becomes an ffconcat list beside the state (ffmpeg's concat demuxer)."""
    from dataclasses import replace

    from streamctl.run.playlist import is_playlist, write_concat

    if spec.input_format is not None or not is_playlist(spec.input):
        return spec
    concat = write_concat(spec.input, paths.state_dir / f"{spec.name}.ffconcat")
    return replace(spec, input=str(concat), input_format="concat")


def start_stream(
    paths: Paths,
    spec: StreamSpec,
    console: Any = True,
    on_tick: Callable[[Supervisor], None] | None = None,
    ffmpeg: str | None = None,
) -> Outcome:
    """Run SPEC's supervisor in this process until the stream ends (the `start` command).
    FFMPEG is the --ffmpeg given on the command line, if any."""
    from streamctl.output.logs import close_logger, stream_logger
    from streamctl.run.ffmpeg import find_ffmpeg, preflight_input

    ffmpeg, _ = find_ffmpeg(ffmpeg, spec.settings.ffmpeg)
    spec = prepare_input(paths, require_limit(spec))  # before anything is written
    preflight_input(ffmpeg, spec)
    log = stream_logger(spec.name, paths.log_file(spec.name), spec.secrets(), console=console)
    try:
        return Supervisor(spec, paths, ffmpeg, log, on_tick=on_tick).run()
    finally:
        close_logger(log)
