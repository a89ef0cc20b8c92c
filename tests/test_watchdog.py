"""The watchdog's verdict and the backup timer's delay, from numbers alone: no clock, no process."""

from __future__ import annotations

import pytest

from streamctl.records import replace
from streamctl.run.watchdog import TIMER_MARGIN, WATCHDOG_SLACK, Readings, Verdict, timer_delay, verdict

OK = Readings(t_arg=60.0, out_time=9.5, quiet=0.4, stall_timeout=15.0, past_deadline=False, jammed=False)


def test_a_healthy_session_is_left_alone() -> None:
    assert verdict(OK) == Verdict.OK


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"out_time": 60.0 + WATCHDOG_SLACK}, Verdict.OK),  # exactly at the slack: not yet
        ({"out_time": 60.0 + WATCHDOG_SLACK + 0.01}, Verdict.OVERRAN),  # media past its -t
        ({"past_deadline": True}, Verdict.OVERRAN),
        ({"jammed": True}, Verdict.JAMMED),
        ({"quiet": 14.99}, Verdict.OK),
        ({"quiet": 15.0}, Verdict.STALLED),
    ],
)
def test_each_rule(change: dict[str, float | bool], expected: Verdict) -> None:
    assert verdict(replace(OK, **change)) == expected  # type: ignore[arg-type]


def test_past_its_time_wins_over_a_jam_and_a_stall() -> None:
    """A session past its time is over whatever else is wrong: it is not restarted as a failure."""
    assert verdict(replace(OK, out_time=1e6, jammed=True, quiet=1e6)) == Verdict.OVERRAN
    assert verdict(replace(OK, jammed=True, quiet=1e6)) == Verdict.JAMMED


def test_a_hung_ffmpeg_that_never_started_is_stalled_not_overrun() -> None:
    assert verdict(replace(OK, out_time=0.0, quiet=16.0)) == Verdict.STALLED


def test_slower_than_real_time_is_healthy_however_long_it_takes() -> None:
    """An encode at 0.38x: 60 s of media take 158 s of wall time. Wall time is no rule: only media past
    -t, the deadline, a jam or no progress end a session."""
    assert verdict(replace(OK, out_time=59.0, quiet=1.0)) == Verdict.OK


def test_the_backup_timer_looks_again_when_a_slow_session_should_end() -> None:
    assert timer_delay(60.0, 0.0, 1.0) == 60.0 + TIMER_MARGIN
    assert timer_delay(60.0, 40.0, 0.4) == pytest.approx(20.0 / 0.4 + TIMER_MARGIN)
    assert timer_delay(60.0, 59.0, 0.0) == pytest.approx(1.0 / 0.05 + TIMER_MARGIN)  # at most this long
    assert timer_delay(60.0, 61.0, 1.0) == TIMER_MARGIN
