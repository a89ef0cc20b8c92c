"""A stream's limit: a budget of streamed seconds and/or a wall-clock deadline, whichever comes first.

The one answer to "how much time is left, and why does it end" for the supervisor, `sweep`, `status` and
the metrics alike, so that none of them can disagree about when time is up.
"""

from __future__ import annotations

import math
from typing import Literal

from streamctl.store.lifecycle import StopReason

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from streamctl.records import dataclass

Which = Literal["budget", "deadline"]
WARN_BELOW = 300.0  # seconds left under which a stream is "ending soon" (status, the ending_soon event)


@dataclass(frozen=True)
class Limit:
    budget: float | None = None  # seconds of media to stream, cumulative across sessions
    until: float | None = None  # unix time after which nothing streams

    def budget_left(self, streamed: float) -> float | None:
        return None if self.budget is None else max(0.0, self.budget - streamed)

    def remaining(self, streamed: float, now: float | None) -> float | None:
        """Seconds that may still be streamed; None when nothing limits it (no budget, no deadline, or a
        deadline but no NOW to measure it from)."""
        left = self.budget_left(streamed)
        if self.until is not None and now is not None:
            to_deadline = max(0.0, self.until - now)
            left = to_deadline if left is None else min(left, to_deadline)
        return left

    def left(self, streamed: float, now: float) -> float:
        """remaining(), with no limit as infinity: for arithmetic in the supervisor."""
        r = self.remaining(streamed, now)
        return math.inf if r is None else r

    def which(self, streamed: float, now: float) -> Which | None:
        """The limit that ends the stream first."""
        left = self.budget_left(streamed)
        if self.until is None:
            return "budget" if left is not None else None
        if left is None or self.until - now <= left:
            return "deadline"
        return "budget"

    def reason(self, streamed: float, now: float) -> StopReason:
        """Why the stream ends once its time is up."""
        if self.which(streamed, now) == "deadline":
            return StopReason.DEADLINE_REACHED
        return StopReason.DURATION_REACHED

    def spent(self, streamed: float, now: float, slack: float = 0.0) -> bool:
        """Is time up, counting the last SLACK seconds as spent?"""
        r = self.remaining(streamed, now)
        return r is not None and r <= slack

    def overran(self, streamed: float, now: float, grace: float) -> bool:
        """Has it run past its budget or its deadline by more than GRACE?"""
        if self.budget is not None and streamed > self.budget + grace:
            return True
        return self.until is not None and now > self.until + grace
