"""The watchdog's verdict on one ffmpeg session, from numbers alone (no clock, no process, no I/O).

Checked once a tick, in this order: past its time (the third stop layer, after -t and the backup timer),
the ingest no longer reading what ffmpeg sends, no media progress at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

TIMER_MARGIN = 2.0  # the backup timer fires this long after the session should have ended (connect time)
WATCHDOG_SLACK = 2.0  # the watchdog stops a session whose streamed time passed its -t by this much


class Verdict(Enum):
    OK = "ok"
    OVERRAN = "overran"  # past its -t (media or wall time) or past the deadline: stop it
    JAMMED = "jammed"  # the ingest stopped reading: replace ffmpeg
    STALLED = "stalled"  # no media progress for stall_timeout: ffmpeg is hung, replace it


@dataclass(frozen=True)
class Readings:
    t_arg: float  # the session's -t
    age: float  # seconds since launch (monotonic)
    streamed: float  # media seconds counted for the session
    quiet: float  # seconds since media output last advanced
    stall_timeout: float
    past_deadline: bool  # the wall clock is past the stream's deadline + TIMER_MARGIN
    jammed: bool  # the send-queue watch saw a queue that grows and never drains


def verdict(r: Readings) -> Verdict:
    if (
        r.streamed > r.t_arg + WATCHDOG_SLACK
        or r.age > r.t_arg + TIMER_MARGIN + WATCHDOG_SLACK
        or r.past_deadline
    ):
        return Verdict.OVERRAN
    if r.jammed:
        return Verdict.JAMMED
    if r.quiet >= r.stall_timeout:
        return Verdict.STALLED
    return Verdict.OK
