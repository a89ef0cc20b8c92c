"""The run's journal over an in-memory store, and the events it emits: every state write of a run."""

from __future__ import annotations

import logging

import pytest

from streamctl.errors import BudgetSpent
from streamctl.output.logs import LINES, LogListener
from streamctl.run.events import Emitter, Event, Kind
from streamctl.run.journal import RunJournal
from streamctl.run.session import End, Result
from streamctl.store.lifecycle import SessionEnd, Status, StopReason
from streamctl.store.limit import Limit
from streamctl.store.state import MemoryStore, OpenSession, StreamState


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def journal(limit: Limit, store: MemoryStore | None = None) -> tuple[RunJournal, MemoryStore, list[Event]]:
    events: list[Event] = []
    store = store or MemoryStore()
    clock = Clock()
    return RunJournal("s", store, limit, Emitter("s", clock, [events.append]), clock, clock), store, events


def put(store: MemoryStore, st: StreamState) -> None:
    with store.update(st.name, 0.0) as s:
        s.__dict__.update(st.as_dict() | {"session": st.session})


def test_begin_takes_the_stream_and_says_so() -> None:
    j, store, events = journal(Limit(budget=60.0))
    assert j.begin((123, 5.0), 1.0, 5.0, 5.0) == 60.0 and j.committed == 0.0
    st = store.load("s")
    assert st is not None and (st.status, st.supervisor_pid, st.budget_seconds) == ("starting", 123, 60.0)
    assert [e.kind for e in events] == [Kind.RUN_STARTED] and events[0].figures["remaining"] == 60.0


def test_begin_with_the_budget_spent_changes_nothing_and_refuses() -> None:
    store = MemoryStore()
    put(
        store,
        StreamState(name="s", budget_seconds=60.0, runtime_seconds=59.5, stop_reason="duration_reached"),
    )
    before = store.files["s"]
    j, _, events = journal(Limit(budget=60.0), store)
    with pytest.raises(
        BudgetSpent, match=r"has streamed 59.5s of its 1m00s budget; run `streamctl reset-runtime s`"
    ):
        j.begin((1, 1.0), 1.0, 5.0, 5.0)
    assert store.files["s"] == before and events == [] and j.status == Status.OFFLINE


def test_begin_after_a_dead_supervisor_credits_its_session_and_resumes() -> None:
    """No ffmpeg alive (no pid): credited its checkpoint plus at most one checkpoint interval (+1 s)."""
    store = MemoryStore()
    dead = StreamState(name="s", status="live", budget_seconds=600.0, runtime_seconds=100.0)
    dead.session = OpenSession(started_at=900.0, t_arg=500.0, runtime_seconds=20.0, checkpoint_at=990.0)
    put(store, dead)
    j, _, events = journal(Limit(budget=600.0), store)
    j.begin((1, 1.0), 1.0, 5.0, 5.0)
    assert j.committed == pytest.approx(100.0 + 20.0 + 6.0)  # 10 s since the checkpoint, capped at 6
    st = store.load("s")
    assert st is not None and st.sessions[-1]["end"] == SessionEnd.SUPERVISOR_LOST == "supervisor_lost"
    assert [e.kind for e in events] == [Kind.RECOVERED, Kind.RUN_STARTED]


def test_a_status_written_over_by_another_process_is_restored_and_reported() -> None:
    j, store, events = journal(Limit(budget=60.0))
    j.begin(None, 1.0, 5.0, 5.0)
    with store.update("s", 0.0) as st:
        st.status = "offline"  # someone else's write, while we hold the run lock
    j.commit()
    st2 = store.load("s")
    assert st2 is not None and st2.status == "starting"
    assert events[-1].kind == Kind.STATE_RESTORED and events[-1].figures == {
        "found": "offline", "restored": "starting"}  # fmt: skip


def test_close_session_honours_a_sweeps_stop_request_with_one_enum_in_the_history() -> None:
    j, store, events = journal(Limit(budget=60.0))
    j.begin(None, 1.0, 5.0, 5.0)
    j._record = OpenSession(started_at=1000.0, t_arg=60.0)
    with store.update("s", 0.0) as st:
        st.stop_request = StopReason.SWEPT.value
    failed = Result(End.FAILED, 255, 12.5, 12.5, True, "ffmpeg exited with code 255")
    result, stop = j.close_session(failed, None)
    assert (result.end, result.cause, stop) == (End.STOPPED, None, StopReason.SWEPT)
    st2 = store.load("s")
    assert st2 is not None and st2.stop_request is None and st2.runtime_seconds == 12.5
    assert [s["end"] for s in st2.sessions] == ["swept"] and st2.last_error is None
    assert events[-1].kind == Kind.SESSION_ENDED and events[-1].figures["total"] == 12.5


def test_every_kind_of_event_has_its_log_lines() -> None:
    assert set(LINES) == set(Kind)


def test_the_log_listener_writes_todays_lines(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.journal")
    emit = Emitter("s", lambda: 0.0, [LogListener(log)])
    with caplog.at_level(logging.DEBUG, logger="test.journal"):
        emit(Kind.RESTARTING, why="exited with -11", streamed=7200.0, attempt=1, retries=3, delay=3.0,
             remaining=10800.0)  # fmt: skip
        emit(Kind.GAVE_UP, failures=4, last="exit 1")
        emit(Kind.STALLED, quiet=15.2, out_time=None)
    assert caplog.messages == [
        "stream s: ffmpeg exited with -11 after 2h00m00s streamed; restart 1/3 in 3.0s with 3h00m00s remaining",
        "stream s: ffmpeg failed 4 times in a row (last: exit 1); giving up",
        "stream s: no media progress for 15.2s (never started); ffmpeg is hung, replacing it",
    ]


def test_a_failing_listener_costs_the_run_nothing() -> None:
    seen: list[Kind] = []

    def broken(e: Event) -> None:
        raise RuntimeError("listener bug")

    Emitter("s", lambda: 0.0, [broken, lambda e: seen.append(e.kind)])(Kind.LIVE)
    assert seen == [Kind.LIVE]
