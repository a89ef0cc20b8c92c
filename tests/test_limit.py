"""One Limit answers "how long is left, and why does it end" for the supervisor, sweep and status."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from streamctl.run.accounting import SessionMeter
from streamctl.store.lifecycle import Status, StopReason
from streamctl.store.limit import Limit
from streamctl.store.state import OpenSession, StreamState


def test_budget_only() -> None:
    lim = Limit(budget=100.0)
    assert lim.remaining(30.0, now=None) == 70.0
    assert lim.remaining(130.0, now=5.0) == 0.0  # never negative
    assert (lim.which(30.0, 0.0), lim.reason(30.0, 0.0)) == ("budget", StopReason.DURATION_REACHED)
    assert not lim.spent(99.0, 0.0) and lim.spent(99.6, 0.0, slack=0.5) and lim.spent(100.0, 0.0)
    assert not lim.overran(104.0, 0.0, grace=5.0) and lim.overran(105.5, 0.0, grace=5.0)


def test_deadline_only() -> None:
    lim = Limit(until=1000.0)
    assert lim.remaining(1e9, now=900.0) == 100.0  # streamed time does not matter
    assert lim.remaining(0.0, now=None) is None  # no clock, no deadline arithmetic
    assert lim.left(0.0, 1200.0) == 0.0
    assert (lim.which(0.0, 900.0), lim.reason(0.0, 900.0)) == ("deadline", StopReason.DEADLINE_REACHED)
    assert lim.spent(0.0, 1000.0) and not lim.spent(0.0, 999.0)
    assert not lim.overran(0.0, 1004.0, grace=5.0) and lim.overran(0.0, 1005.5, grace=5.0)


def test_whichever_comes_first() -> None:
    lim = Limit(budget=3600.0, until=1000.0)
    assert lim.remaining(0.0, now=900.0) == 100.0  # the deadline is nearer
    assert lim.which(0.0, 900.0) == "deadline"
    assert lim.remaining(3550.0, now=0.0) == 50.0  # the budget is nearer
    assert (lim.which(3550.0, 0.0), lim.reason(3550.0, 0.0)) == ("budget", StopReason.DURATION_REACHED)


def test_no_limit_is_infinite_for_arithmetic() -> None:
    assert Limit().remaining(5.0, 5.0) is None and Limit().which(5.0, 5.0) is None
    assert math.isinf(Limit().left(5.0, 5.0)) and not Limit().spent(1e12, 1e12)


def test_status_and_the_supervisor_read_the_same_limit_from_the_state() -> None:
    """The state's figures go through the same Limit: committed runtime plus the checkpointed session."""
    st = StreamState(
        name="s", status=Status.LIVE.value, budget_seconds=100.0, until=None, runtime_seconds=40.0
    )
    st.session = OpenSession(started_at=0.0, t_arg=60.0, runtime_seconds=10.0, checkpoint_at=50.0)
    assert st.remaining(now=53.0) == pytest.approx(100.0 - 40.0 - 10.0 - 1.0)  # live: extrapolated 1 s
    assert st.limit.remaining(st.total_runtime(), None) == 50.0
    st.until = 60.0
    assert st.remaining(now=53.0) == pytest.approx(7.0)  # the deadline is nearer
    assert st.limit.reason(st.total_runtime(53.0), 53.0) == StopReason.DEADLINE_REACHED


@given(sessions=hs.lists(hs.floats(0.0, 20000.0), min_size=1, max_size=20), budget=hs.floats(1.0, 1e5))
def test_sessions_never_stream_more_than_the_budget(sessions: list[float], budget: float) -> None:
    """However sessions crash, -t of each new session = what the limit leaves after earlier sessions."""
    lim = Limit(budget=budget)
    now = committed = 0.0
    for ran in sessions:
        t_arg = lim.left(committed, now)
        if t_arg <= 0:
            break
        meter = SessionMeter(launched_at=now)
        actual = min(ran, t_arg)  # ffmpeg's -t caps what a session can stream
        meter.on_progress(now + actual, actual, ended=ran >= t_arg)
        now += actual
        committed += meter.streamed(now)
        now += 3.0  # restart delay: not streamed, not counted
    assert committed <= budget + 1e-6


def test_crash_after_two_hours_leaves_three() -> None:
    meter = SessionMeter(launched_at=0.0)
    meter.on_progress(7200.0, 7200.0)
    committed = meter.streamed(7200.0)
    assert committed == 7200.0
    assert Limit(budget=5 * 3600).left(committed, 7300.0) == 3 * 3600
