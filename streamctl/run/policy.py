"""Restart policy: how many failures in a row are tolerated, and how long to wait between tries."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataclasses import dataclass, field
else:
    from streamctl.records import dataclass, field

if TYPE_CHECKING:
    from streamctl.store.config import Settings


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float
    failures: int  # consecutive failures, this one included


@dataclass
class RestartPolicy:
    retries: int = 3  # restarts allowed in a row
    delay: float = 3.0  # first wait before a restart
    backoff: float = 1.0  # each further failure in a row multiplies the wait (1 = fixed delay)
    max_delay: float = 60.0
    jitter: float = 0.0  # fraction of the wait added at random, so many streams do not retry in step
    stable_after: float = 60.0  # a session that ran this long resets the failure count
    rand: Callable[[], float] = field(default=random.random, repr=False)
    failures: int = 0

    @classmethod
    def of(cls, s: Settings) -> RestartPolicy:
        return cls(s.retries, s.restart_delay, s.backoff, s.max_delay, s.jitter, s.stable_after)

    def on_failure(self, session_seconds: float) -> Decision:
        if session_seconds >= self.stable_after:
            self.failures = 0
        self.failures += 1
        if self.failures > self.retries:
            return Decision(False, 0.0, self.failures)
        wait = min(self.max_delay, self.delay * self.backoff ** (self.failures - 1))
        wait += wait * self.jitter * self.rand()
        return Decision(True, wait, self.failures)
