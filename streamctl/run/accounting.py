"""Runtime accounting: how much of the budget a session and the whole stream have streamed.

Streamed time is media time sent, read from ffmpeg's `-progress` (`out_time_us`), the same clock `-t`
counts in. Between progress blocks (every 0.5 s) it is extrapolated at real-time speed, at most
EXTRAPOLATE_MAX, so a crash between two blocks is not undercounted and a hang is not overcounted.
Until the first block nothing is counted: ffmpeg writes none before it has connected, so a handshake that
hangs must not use up the budget. A session that nevertheless ends normally (exit 0) without a single
block is counted at wall time (`ended_ok`): an ffmpeg whose progress cannot be read must never look
as if it streamed nothing, which would let the next session exceed the budget.
"""

from __future__ import annotations

EXTRAPOLATE_MAX = 1.0  # seconds past the last progress block still counted as streamed


class SessionMeter:
    """Streamed seconds of one ffmpeg session, on a monotonic clock passed in by the caller."""

    def __init__(self, launched_at: float) -> None:
        self.launched_at = launched_at
        self._block_at: float | None = None  # monotonic time of the last progress block
        self._out_time = 0.0
        self._ended = False

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

    def streamed(self, now: float, ended_ok: bool = False) -> float:
        if self._block_at is None:
            return max(0.0, now - self.launched_at) if ended_ok else 0.0
        if self._ended:
            return self._out_time
        return self._out_time + min(max(0.0, now - self._block_at), EXTRAPOLATE_MAX)
