"""Runtime accounting: how much of the budget a session and the whole stream have streamed.

Streamed time is media time sent, read from ffmpeg's `-progress` (`out_time_us`), the same clock `-t`
counts in. Between progress blocks (every second) it is extrapolated at the measured media rate, at most
EXTRAPOLATE_MAX seconds, so a crash between two blocks is not undercounted and a hang is not overcounted.
Until the first block nothing is counted: ffmpeg writes none before it has connected, so a handshake that
hangs must not use up the budget. A session that nevertheless ends normally (exit 0) without a single
block is counted at wall time (`ended_ok`): an ffmpeg whose progress cannot be read must never look
as if it streamed nothing, which would let the next session exceed the budget.
"""

from __future__ import annotations

from collections import deque

from streamctl.store.state import HORIZON

EXTRAPOLATE_MAX = 1.0  # seconds past the last progress block still counted as streamed


FRESH = EXTRAPOLATE_MAX + 0.5  # a block this old is still the latest of a stream in flow (1 s period)
RATE_WINDOW = 4.0  # seconds of progress over which the media rate (media s per wall s) is measured


class SessionMeter:
    """Streamed seconds of one ffmpeg session, on a monotonic clock passed in by the caller.

    What it reports never goes backwards and never passes the session's -t (CAP): between progress
    blocks it extrapolates at the measured media rate, not at real time (an ffmpeg at 0.4x would
    otherwise be shown ahead and then fall back). The supervisor also promises readers of the state file
    a rate from each checkpoint (`promise`); the meter then never reports less than that promise, so
    what `status` extrapolated is never taken back.
    """

    def __init__(self, launched_at: float, cap: float = float("inf")) -> None:
        self.launched_at = launched_at
        self.cap = cap
        self._block_at: float | None = None  # monotonic time of the last progress block
        self._out_time = 0.0
        self._ended = False
        self._samples: deque[tuple[float, float]] = deque()  # (time, out_time) over RATE_WINDOW
        self._shown = 0.0
        self._promise: tuple[float, float, float] | None = None  # (at, streamed, rate)

    @property
    def has_progress(self) -> bool:
        return self._block_at is not None

    @property
    def out_time(self) -> float:
        return self._out_time

    def on_progress(self, now: float, out_time: float | None, ended: bool = False) -> None:
        self._block_at = now
        if out_time is not None and out_time > self._out_time:
            self._out_time = out_time
        self._ended = self._ended or ended
        self._samples.append((now, self._out_time))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()

    def rate(self, now: float) -> float:
        """Media seconds per wall second lately, 0..1 (1 until measured; 0 once blocks stop coming)."""
        if self._block_at is None or len(self._samples) < 2:
            return 1.0
        (t0, o0), (t1, o1) = self._samples[0], self._samples[-1]
        span = max(t1, now - EXTRAPOLATE_MAX) - t0  # a block late by more than that: the rate decays
        if span <= 0:
            return 1.0
        return min(1.0, max(0.0, (o1 - o0) / span))

    def promise(self, now: float) -> tuple[float, float]:
        """(streamed, rate) for a checkpoint: readers may show streamed + rate x (time since, at most
        HORIZON), and the meter will not report less."""
        streamed = self.streamed(now)
        fresh = self._block_at is not None and len(self._samples) >= 2 and now - self._block_at <= FRESH
        # promise only what media flowing right now would give: nothing before progress, after the end, or
        # once blocks stop coming (a frozen ffmpeg), so a stall costs at most one checkpoint interval
        rate = self.rate(now) if fresh and not self._ended else 0.0
        self._promise = (now, streamed, rate)
        return streamed, rate

    def streamed(self, now: float, ended_ok: bool = False) -> float:
        if self._block_at is None:
            value = max(0.0, now - self.launched_at) if ended_ok else 0.0
        elif self._ended:
            value = self._out_time
        else:
            value = self._out_time + min(max(0.0, now - self._block_at), EXTRAPOLATE_MAX) * self.rate(now)
        if self._promise is not None:
            at, streamed, rate = self._promise
            value = max(value, streamed + rate * min(max(0.0, now - at), HORIZON))
        # -t caps what is extrapolated, never what ffmpeg reports: an overrun is counted in full
        self._shown = max(self._out_time, min(self.cap, max(self._shown, value)))
        return self._shown
