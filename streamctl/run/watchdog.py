"""The watchdog's verdict on one ffmpeg session, from numbers alone (no clock, no process, no I/O).

Checked once a tick, in this order: past its time (the third stop layer, after -t and the backup timer),
the ingest no longer reading what ffmpeg sends, no media progress at all. Wall time alone never ends a
session: an ffmpeg slower than real time (an encode on a busy CPU) still streams, and its -t ends it;
only media past its -t, the deadline, a jammed ingest or no progress do.
"""

from __future__ import annotations

from enum import Enum

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from streamctl.records import dataclass

TIMER_MARGIN = 2.0  # the backup timer fires this long after the session should have ended (connect time)
WATCHDOG_SLACK = 2.0  # the watchdog stops a session whose streamed time passed its -t by this much


MIN_RATE = 0.05  # the slowest media rate the backup timer waits for (it looks again after that)
SLOW_RATE = 0.9  # a media rate below this, sustained, is reported: the ingest gets less than it needs
SLOW_AFTER = 30.0  # seconds the rate must stay low before it is reported


def timer_delay(t_arg: float, out_time: float, rate: float) -> float:
    """Seconds until the backup timer should look again at a session still making progress: when its -t
    should be reached at its present rate, plus the margin."""
    return max(0.0, t_arg - out_time) / max(rate, MIN_RATE) + TIMER_MARGIN


class Verdict(Enum):
    OK = "ok"
    OVERRAN = "overran"  # past its -t (media or wall time) or past the deadline: stop it
    JAMMED = "jammed"  # the ingest stopped reading: replace ffmpeg
    STALLED = "stalled"  # no media progress for stall_timeout: ffmpeg is hung, replace it


@dataclass(frozen=True)
class Readings:
    t_arg: float  # the session's -t
    out_time: float  # media seconds ffmpeg reports having sent
    quiet: float  # seconds since media output last advanced
    stall_timeout: float
    past_deadline: bool  # the wall clock is past the stream's deadline + TIMER_MARGIN
    jammed: bool  # the send-queue watch saw a queue that grows and never drains


def verdict(r: Readings) -> Verdict:
    if r.out_time > r.t_arg + WATCHDOG_SLACK or r.past_deadline:
        return Verdict.OVERRAN
    if r.jammed:
        return Verdict.JAMMED
    if r.quiet >= r.stall_timeout:
        return Verdict.STALLED
    return Verdict.OK
