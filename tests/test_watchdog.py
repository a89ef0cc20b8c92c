"""The watchdog's verdict from numbers alone: no clock, no process."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streamctl.run.watchdog import TIMER_MARGIN, WATCHDOG_SLACK, Readings, Verdict, verdict

OK = Readings(t_arg=60.0, age=10.0, streamed=9.5, quiet=0.4, stall_timeout=15.0, past_deadline=False,
              jammed=False)  # fmt: skip


def test_a_healthy_session_is_left_alone() -> None:
    assert verdict(OK) == Verdict.OK


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"streamed": 60.0 + WATCHDOG_SLACK}, Verdict.OK),  # exactly at the slack: not yet
        ({"streamed": 60.0 + WATCHDOG_SLACK + 0.01}, Verdict.OVERRAN),  # media past its -t
        ({"age": 60.0 + TIMER_MARGIN + WATCHDOG_SLACK + 0.01}, Verdict.OVERRAN),  # wall time past it
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
    assert verdict(replace(OK, age=1e6, jammed=True, quiet=1e6)) == Verdict.OVERRAN
    assert verdict(replace(OK, jammed=True, quiet=1e6)) == Verdict.JAMMED


def test_a_hung_ffmpeg_that_never_started_is_stalled_not_overrun() -> None:
    assert verdict(replace(OK, age=16.0, streamed=0.0, quiet=16.0)) == Verdict.STALLED
