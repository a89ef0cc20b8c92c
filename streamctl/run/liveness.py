"""Early sign of a hung ingest: ffmpeg's TCP send queue grows and never drains.

When the ingest stops reading, ffmpeg's writes do not block at once: first the socket buffers fill, and
for that long (measured ~5 s at 4.4 Mbps on loopback) `out_time_us` keeps advancing. The kernel's send
queue for the connection shows it from the first second: it never shrinks and grows by what ffmpeg
sends. A healthy ingest, however far away, keeps ACKing, so its queue shrinks now and then and cannot
grow by two whole seconds of media within the window (a brief network hiccup delays ACKs for less).
That is the rule below.
"""

from __future__ import annotations

import os
import re
from collections import deque

_SOCKET = re.compile(r"socket:\[(\d+)\]")


class BacklogWatch:
    """Feeds on (time, send-queue bytes) samples; `hung` once the queue only grew for WINDOW seconds by
    more than GROWTH_SECONDS' worth of the stream's bytes."""

    growth_seconds = 2.0

    def __init__(self, window: float = 4.0, min_growth: int = 64 * 1024) -> None:
        self.window = window
        self.min_growth = min_growth
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, queued: int | None) -> None:
        if queued is None:
            self._samples.clear()
            return
        if self._samples and queued < self._samples[-1][1]:
            self._samples.clear()  # it drained: the ingest is reading
        self._samples.append((now, queued))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def hung(self, bytes_per_second: float) -> tuple[float, int] | None:
        """(seconds, bytes) the queue grew without draining, when that marks a hung ingest."""
        if len(self._samples) < 2 or bytes_per_second <= 0:
            return None  # without the stream's rate there is no telling a backlog from in-flight data
        (t0, q0), (t1, q1) = self._samples[0], self._samples[-1]
        growth = q1 - q0
        if t1 - t0 >= self.window and growth >= max(self.min_growth, self.growth_seconds * bytes_per_second):
            return t1 - t0, growth
        return None


def send_queue(pid: int) -> int | None:
    """Bytes in the send queues of PID's established TCP connections (Linux /proc), None if unknown."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                m = _SOCKET.match(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
            if m:
                inodes.add(m.group(1))
        if not inodes:
            return None
        total, found = 0, False
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f, None)
                    for line in f:
                        fields = line.split()
                        if len(fields) > 9 and fields[9] in inodes and fields[3] == "01":  # ESTABLISHED
                            total += int(fields[4].split(":")[0], 16)
                            found = True
            except OSError:
                continue
        return total if found else None
    except OSError:
        return None
