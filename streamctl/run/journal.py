"""Every state write of one supervisor run: begin, checkpoint, close a session, finish.

The journal holds the run's status, its committed runtime and its counters, and is the only code of the
run that changes the state file (through a Store: the flock'd JSON files, or memory in tests). Each
status move is also an event.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from streamctl.errors import BudgetSpent
from streamctl.run.events import Emitter, Kind
from streamctl.run.process import proc_stat
from streamctl.run.recovery import session_process, settle
from streamctl.run.session import Result, Session
from streamctl.store.lifecycle import SessionEnd, Status, StopReason
from streamctl.store.limit import Limit
from streamctl.store.state import OpenSession, StreamState, iso


class Store(Protocol):
    def load(self, name: str) -> StreamState | None: ...
    def update(
        self, name: str, now: float, durable: bool = True
    ) -> contextlib.AbstractContextManager[StreamState]: ...


_ASKED = (StopReason.STOPPED, StopReason.SWEPT)
# A checkpoint that changes nothing but the figures is fsync'd once in this many seconds: the fsyncs were
# most of the supervisor's wake-ups. Between them a checkpoint is still atomic for every process (what a
# killed supervisor leaves is exact); only a power cut can take the state back to the last durable one.
DURABLE_EVERY = 30.0


class RunJournal:
    def __init__(
        self,
        name: str,
        store: Store,
        limit: Limit,
        emit: Emitter,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self.name, self.store, self.limit, self.emit = name, store, limit, emit
        self.clock, self.wall = clock, wall
        self.status = Status.OFFLINE
        self.committed = 0.0  # runtime of closed sessions: the authority for the state's runtime
        self.restarts = 0
        self.checkpoint_at = 0.0  # monotonic time of the last write
        self._durable_at = 0.0  # ... and of the last fsync'd one
        self._record: OpenSession | None = None  # the open session, as the state keeps it
        self._progress: dict[str, Any] = {}  # the last session's progress, kept through back-off

    def begin(
        self,
        me: tuple[int, float] | None,
        min_session: float,
        grace: float,
        checkpoint_interval: float,
        show: float | None = None,
        show_label: str | None = None,
    ) -> float:
        """Under one state lock: clean up after a dead supervisor, then take the stream (STARTING) if at
        least MIN_SESSION is left to stream; else BudgetSpent, after the cleanup is saved. Returns what
        remains."""
        now = self.wall()
        with self.store.update(self.name, now) as st:
            if st.session is not None or st.status_enum.running:
                self._recover(st, now, grace, checkpoint_interval)
            if show is not None:
                st.new_show(
                    show, now, show_label
                )  # another show than the state's: its figures start from zero
            self.committed = st.runtime_seconds
            remaining = self.limit.left(self.committed, now)
            started = remaining >= min_session
            if started:
                st.begin_run(now, self.limit.budget, self.limit.until, me)
                if show is not None and st.show_started_at is None:
                    st.show_started_at = now
                self.status = Status.STARTING
                self.restarts = st.restarts
        if not started:
            self._refuse(now)
        self.emit(
            Kind.RUN_STARTED,
            at=now,
            budget=self.limit.budget,
            streamed=self.committed,
            until=self.limit.until,
            remaining=remaining,
        )
        return remaining

    def _refuse(self, now: float) -> NoReturn:
        from streamctl.durations import format_duration

        if self.limit.reason(self.committed, now) == StopReason.DEADLINE_REACHED:
            raise BudgetSpent(f"stream {self.name!r}: its deadline {iso(self.limit.until)} has passed")
        raise BudgetSpent(
            f"stream {self.name!r} has streamed {format_duration(self.committed)} of its "
            f"{format_duration(self.limit.budget)} budget; run `streamctl reset-runtime {self.name}` "
            "or start it with a larger --hours/--duration"
        )

    def _recover(self, st: StreamState, now: float, grace: float, checkpoint_interval: float) -> None:
        had_session = st.session is not None
        ident = session_process(st.session)
        if ident is not None and ident.alive():  # said before settle stops it, which can take the grace
            self.emit(Kind.ORPHAN_STOPPING, pid=ident.pid)
        ran, _ = settle(st, now, StopReason.SUPERVISOR_LOST, grace, checkpoint_interval)
        if had_session:
            self.emit(Kind.RECOVERED, streamed=ran)

    def commit(
        self,
        session: Session | None = None,
        new: Status | None = None,
        reason: StopReason | None = None,
        error: str | None = None,
    ) -> StreamState:
        """Write the run's view (and SESSION's figures) under the state lock; move to NEW when given."""
        now, mono = self.wall(), self.clock()
        durable = new is not None or error is not None or mono - self._durable_at >= DURABLE_EVERY
        with self.store.update(self.name, now, durable) as st:
            if st.status != self.status.value:
                # We hold the run lock: this stream's status is ours. Another process wrote over it.
                self.emit(Kind.STATE_RESTORED, found=st.status, restored=self.status.value)
                st.status = self.status.value
            if new is not None:
                if new != self.status:
                    self.emit(
                        Kind.STATUS_CHANGED,
                        reason.value if reason else None,
                        old=self.status.value,
                        new=new.value,
                    )
                st.transition(new, reason, now)
                self.status = new
            if new == Status.LIVE:
                st.last_error = None  # media flows: whatever failed before is fixed
            if error is not None:
                st.last_error = error
            if session is not None:
                self._progress = session.progress()
                if self._record is not None:
                    streamed, rate = session.promise(mono)
                    # rounded down: what readers extrapolate from it must never pass the meter
                    self._record.runtime_seconds = math.floor(streamed * 1000) / 1000
                    self._record.rate = math.floor(rate * 1000) / 1000
                    self._record.checkpoint_at = now
                    self._record.checkpoint_mono = time.monotonic()  # as started_mono: for `sweep`
                    if self._record.ffmpeg_pid:
                        stat = proc_stat(self._record.ffmpeg_pid)
                        self._record.ffmpeg_frozen = stat is not None and stat[0]
                        self._record.ffmpeg_cpu = None if stat is None else stat[1]
            st.progress = dict(self._progress)
            st.budget_seconds = self.limit.budget
            st.until = self.limit.until
            st.restarts = self.restarts
            st.session = self._record
            self.checkpoint_at = mono
            if durable:
                self._durable_at = mono
            return st

    def due(self, interval: float) -> bool:
        return self.clock() - self.checkpoint_at >= interval

    def open_session(self, session: Session, record: OpenSession) -> None:
        self._record = record
        self._progress = {}
        self.commit(session, Status.STARTING)

    def close_session(
        self, result: Result, stop_reason: StopReason | None
    ) -> tuple[Result, StopReason | None]:
        """Move the session into the history and its runtime into the total. Returns the result as the
        state decides it, and the stop reason: `sweep` may have asked, through the file, not to restart."""
        ended = self.wall()
        record, self._record = self._record, None
        with self.store.update(self.name, ended) as st:
            if st.stop_request and stop_reason is None:
                # `sweep` stopped this ffmpeg: it asks us, through the state file, not to restart it.
                stop_reason = StopReason(st.stop_request)
                result = Result(
                    SessionEnd.STOPPED, result.rc, result.streamed, result.stable, result.sent_media, None
                )
            if result.cause is not None:
                st.last_error = result.cause
            st.stop_request = None
            st.session = record
            # asked to stop (a signal, `stop`, sweep): the history says so, whatever the exit was
            end = SessionEnd(stop_reason.value) if stop_reason in _ASKED else result.end
            st.close_session(ended, result.streamed, result.rc, end)
            self.committed += result.streamed
            st.runtime_seconds = self.committed
            st.session_count += 1
            st.last_exit_code = result.rc
        self.emit(
            Kind.SESSION_ENDED,
            end=result.end.value,
            rc=result.rc,
            streamed=result.streamed,
            total=self.committed,
            budget=self.limit.budget,
            cause=result.cause,
        )
        return result, stop_reason

    def finish(self, final: Status, reason: StopReason, error: str | None) -> StreamState:
        return self.commit(None, final, reason, error)
