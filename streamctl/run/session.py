"""One ffmpeg run: the child, its progress and meter, its stall clock, its send-queue watch, its backup timer.

A Session lives from launch to close and is then thrown away, so nothing of one run can leak into the
next. The reader threads feed it (progress, stderr, EOF); the supervisor's loop asks it for a verdict once
a tick and stops it when told to. It writes no state: the journal does, from what the session reports.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from streamctl.masking import masked_argv
from streamctl.run.accounting import SessionMeter
from streamctl.run.events import Emitter, Kind
from streamctl.run.ffmpeg import ProgressParser, explain_failure
from streamctl.run.liveness import BacklogWatch
from streamctl.run.process import Child, ProcessIdentity, cmd_digest
from streamctl.run.recovery import boot_id
from streamctl.run.watchdog import (
    SLOW_AFTER,
    SLOW_RATE,
    TIMER_MARGIN,
    WATCHDOG_SLACK,
    Readings,
    Verdict,
    timer_delay,
    verdict,
)
from streamctl.store.config import StreamSpec
from streamctl.store.lifecycle import SessionEnd
from streamctl.store.state import OpenSession

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from streamctl.records import dataclass

SAMPLE_EVERY = 1.9  # seconds between two looks at the send queue (two progress blocks)
STDERR_TAIL = 20  # ffmpeg stderr lines kept per session, to tell why it failed

Spawner = Callable[[list[str], Callable[[str], None], Callable[[str], None], Callable[[], None]], Child]
TimerFactory = Callable[[float, Callable[[], None]], Any]


End = SessionEnd  # how a session ended; NOT_STARTED: ffmpeg could not be launched


@dataclass(frozen=True)
class Result:
    end: End
    rc: int | None
    streamed: float  # media seconds this session adds to the runtime
    stable: float  # what the restart policy may count as a stable run: 0 if it never got going
    sent_media: bool  # some media went out
    cause: str | None  # why it failed, masked, for people (None unless FAILED or STALLED)


def daemon_timer(interval: float, fn: Callable[[], None]) -> threading.Timer:
    t = threading.Timer(interval, fn)
    t.daemon = True
    return t


class Session:
    def __init__(
        self,
        spec: StreamSpec,
        argv: list[str],
        t_arg: float,
        emit: Emitter,
        on_output: Callable[[str], None],
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
        spawn: Spawner,
        timer_factory: TimerFactory = daemon_timer,
        probe_backlog: Callable[[int], int | None],
    ) -> None:
        self.spec, self.argv, self.t_arg, self.emit = spec, argv, t_arg, emit
        self.on_output = on_output
        self.clock, self.wall, self.spawn = clock, wall, spawn
        self.timer_factory, self.probe_backlog = timer_factory, probe_backlog
        self.grace = spec.settings.grace
        self._lock = threading.Lock()  # guards what the reader threads feed: meter, progress, _eof_at
        self._parser = ProgressParser()
        self._meter = SessionMeter(clock(), cap=t_arg)
        self._progress: dict[str, Any] = {}
        self._advanced_at = clock()  # when media output last advanced (the stall clock)
        self._eof_at: float | None = None  # when ffmpeg closed its stdout: the session's end
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL)
        self._backlog = BacklogWatch(window=min(4.0, spec.settings.stall_timeout))
        self._probe_lock = threading.Lock()  # the probe is called from the reader and the loop
        self._sampled_at: float | None = None
        self._overran = False  # the timer or watchdog stopped it for running past its time
        self._jammed = False
        self._media_seen = False
        self._slow_since: float | None = None
        self.slow = False  # reported slower than real time
        self._closed = False
        self._timer: Any = None
        self.proc: Child | None = None
        self.record: OpenSession | None = None
        self.woke: Callable[[], None] = lambda: None  # set by the supervisor: wake its loop

    # ---- life ---------------------------------------------------------------------------------------
    def start(self) -> OpenSession:
        """Launch ffmpeg (OSError if it cannot be) and return the record the journal keeps of it."""
        proc = self.proc = self.spawn(self.argv, self._on_progress_line, self._on_log_line, self._on_eof)
        ident = ProcessIdentity.of(proc.pid)
        salt = os.urandom(8).hex()  # not secrets: it would load base64, hmac and more for this
        self.record = OpenSession(
            started_at=self.wall(),
            t_arg=round(self.t_arg, 3),
            ffmpeg_pid=proc.pid,
            ffmpeg_create_time=ident.create_time if ident else None,
            ffmpeg_cmd=masked_argv(self.argv, self.spec.secrets()),
            cmd_digest=cmd_digest(self.argv[1:], salt),
            cmd_salt=salt,
            started_mono=time.monotonic(),
            boot_id=boot_id(),
        )
        return self.record

    def arm(self) -> None:
        """Start the backup timer: the stop layer that acts even if the supervisor's loop were stuck."""
        assert self.proc is not None and self.record is not None
        interval = self.t_arg + TIMER_MARGIN
        self._timer = self.timer_factory(interval, self._on_timer)
        self._timer.start()
        self.emit(
            Kind.SESSION_STARTED,
            pid=self.proc.pid,
            t=self.t_arg,
            cmd=" ".join(self.record.ffmpeg_cmd or []),
            timer_at=self.record.started_at + interval,
            timer_in=interval,
        )

    def poll(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after the grace period; its exit code."""
        assert self.proc is not None
        return self.proc.stop(self.grace)

    def natural_end(self, rc: int) -> End:
        """How a session that exited by itself (or by the backup timer) ended."""
        if self._overran:
            return End.OVERRAN
        return End.FINISHED if rc == 0 else End.FAILED

    def close(self, end: End, rc: int | None) -> Result:
        """Disarm, join the readers, and count what the session streamed."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
        if self.proc is not None:
            self.proc.close()  # joins the readers, so _eof_at is final
        with self._lock:
            had_progress = self._meter.has_progress
            sent = self._meter.out_time > 0
            end_at = self._eof_at if self._eof_at is not None else self.clock()
            ran = self._meter.streamed(end_at, ended_ok=end == End.FINISHED)
        cause = None
        if end == End.STALLED and self._jammed:
            cause = "the ingest stopped reading the stream: is it overloaded, or the network congested?"
        elif end in (End.FAILED, End.STALLED):
            cause = explain_failure(
                self.spec.name,
                self.spec.output_url,
                list(self._stderr),
                self.spec.secrets(),
                streamed=sent,
                stalled_after=self.spec.settings.stall_timeout if end == End.STALLED else None,
                rc=rc,
            )
        # A session that never got going (no progress at all) must not look stable to the restart policy.
        stable = ran if had_progress or end == End.FINISHED else 0.0
        return Result(end, rc, ran, stable, sent, cause)

    # ---- what the loop asks -------------------------------------------------------------------------
    def streamed(self, now: float) -> float:
        with self._lock:
            return self._meter.streamed(now)

    def promise(self, now: float) -> tuple[float, float]:
        """(streamed, rate) for a checkpoint; see SessionMeter.promise."""
        with self._lock:
            return self._meter.promise(now)

    def progress(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._progress)

    @property
    def live(self) -> bool:
        with self._lock:
            return bool(self._progress.get("out_time"))

    @property
    def exiting(self) -> bool:
        """ffmpeg closed its stdout: its exit is a moment away."""
        return self._eof_at is not None

    def due_in(self, until: float | None) -> float:
        """Seconds until the clock alone could change the verdict (the stall rule, the deadline): the
        loop need not look sooner unless woken."""
        with self._lock:
            left = self.spec.settings.stall_timeout - (self.clock() - self._advanced_at)
        if until is not None:
            left = min(left, until + TIMER_MARGIN - self.wall())
        return max(0.0, left)

    def _sample_backlog(self, now: float) -> None:
        # with several destinations the queues of all connections add up: the rule is for one ingest
        with self._probe_lock:
            queued = None if self.spec.also or self.proc is None else self.probe_backlog(self.proc.pid)
            with self._lock:
                self._backlog.sample(now, queued)
                self._sampled_at = now

    def _jam(self) -> tuple[float, int] | None:
        """Call with the lock held."""
        sent, media = self._progress.get("total_size"), self._progress.get("out_time")
        return self._backlog.hung(sent / media if sent and media else 0.0)

    def check(self, until: float | None) -> Verdict:
        """The watchdog's verdict now; an OVERRAN, JAMMED or STALLED one is also announced as an event."""
        assert self.proc is not None
        now = self.clock()
        if self._sampled_at is None or now - self._sampled_at >= SAMPLE_EVERY + 1.0:
            self._sample_backlog(now)  # no progress block sampled it lately (ffmpeg may be blocked)
        with self._lock:
            rate = self._meter.rate(now) if self._meter.has_progress else 1.0
            quiet = now - self._advanced_at
            media = self._progress.get("out_time")
            jam = self._jam()
        v = verdict(
            Readings(
                t_arg=self.t_arg,
                out_time=self._meter.out_time,
                quiet=quiet,
                stall_timeout=self.spec.settings.stall_timeout,
                past_deadline=until is not None and self.wall() >= until + TIMER_MARGIN,
                jammed=jam is not None,
            )
        )
        self._watch_rate(now, rate, quiet)
        if v == Verdict.OVERRAN:
            self._overran = True
            self.emit(Kind.OVERRAN)
        elif v == Verdict.JAMMED and jam is not None:
            self._jammed = True
            self.emit(Kind.INGEST_JAMMED, seconds=jam[0], grew=jam[1])
        elif v == Verdict.STALLED:
            self.emit(Kind.STALLED, quiet=quiet, out_time=media if media else None)
        return v

    def _watch_rate(self, now: float, rate: float, quiet: float) -> None:
        """Report (once) a session that streams, but slower than real time for SLOW_AFTER seconds."""
        if quiet >= 2.0 or rate >= SLOW_RATE:  # not streaming at all is the stall rule's business
            self._slow_since = None
            return
        if self._slow_since is None:
            self._slow_since = now
        if not self.slow and now - self._slow_since >= SLOW_AFTER:
            self.slow = True
            with self._lock:
                self._progress["slow"] = True
            self.emit(Kind.SLOW, rate=rate)

    # ---- callbacks: reader threads and the timer ----------------------------------------------------
    def _on_timer(self) -> None:
        # It stops a session past its time even if the main loop were stuck. A session slower than real
        # time but still streaming is not past its time: its -t ends it, so look again when it should.
        if self._closed or self.proc is None:
            return  # a late callback for a session that already ended
        now = self.clock()
        with self._lock:
            out_time, rate = self._meter.out_time, self._meter.rate(now)
            # media advanced within the margin: slow, not frozen (a frozen one goes now, not at the stall)
            streaming = now - self._advanced_at < TIMER_MARGIN and rate > 0
        wall, until = self.wall(), self.spec.until
        if streaming and (until is None or wall < until) and out_time <= self.t_arg + WATCHDOG_SLACK:
            # look again when -t should be reached, but never later than the deadline, and at least once
            # a stall timeout: a dip in the rate must not put the next look hours away
            delay = min(timer_delay(self.t_arg, out_time, rate), self.spec.settings.stall_timeout)
            if until is not None:
                delay = min(delay, max(0.0, until - wall) + TIMER_MARGIN)
            with self._lock:
                if not self._closed:  # close() cancels under the same lock: no timer outlives the session
                    self._timer = self.timer_factory(delay, self._on_timer)
                    self._timer.start()
            return
        self.emit(Kind.TIMER_FIRED)
        self._overran = True
        self.proc.stop(self.grace)

    def _on_progress_line(self, line: str) -> None:
        block = self._parser.feed(line)
        if block is None:
            return
        now = self.clock()
        with self._lock:
            before = self._meter.out_time
            self._meter.on_progress(now, block.out_time, block.ended)
            if self._meter.out_time > before:
                self._advanced_at = now
            self._progress = {
                "slow": self.slow,
                "speed": block.speed,
                "bitrate": block.bitrate,
                "out_time": block.out_time,
                "total_size": block.total_size,
            }
        # the send queue is sampled with the blocks (every other one: a look-up costs a cold supervisor
        # more than the block itself, and the jam rule's 4 s window needs no more), so the loop need
        # not wake just to sample it
        if self._sampled_at is None or now - self._sampled_at >= SAMPLE_EVERY:
            self._sample_backlog(now)
        with self._lock:
            alarm = self._jam() is not None or self._meter.out_time > self.t_arg + WATCHDOG_SLACK
        if alarm or block.ended or (block.out_time and not self._media_seen):
            self._media_seen = True
            self.woke()  # go live, notice the end, or act on a verdict, without waiting for the next tick

    def _on_eof(self) -> None:
        with self._lock:
            self._eof_at = self.clock()
        self.woke()

    def _on_log_line(self, line: str) -> None:
        line = line.rstrip()  # ffmpeg ends some lines with a space ("... output stream 0:1 -- ")
        if line.strip():
            self._stderr.append(line)
            self.on_output(line)
