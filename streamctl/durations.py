"""Parse and format durations: `90s`, `45m`, `5h`, `1h30m`, `2.5h`, or plain seconds."""

from __future__ import annotations

import math
import re

from streamctl.errors import UsageError

# A budget longer than this is a typo, not a stream (and keeps float arithmetic exact enough).
MAX_SECONDS = 366 * 24 * 3600.0
# The shortest session the supervisor starts: less is not worth an ffmpeg and a connection. A budget below
# it could never stream, so it is refused as bad input, not accepted and then refused as spent.
MIN_SESSION = 1.0

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def check_seconds(seconds: float, what: str = "duration") -> float:
    """Reject zero, negative, NaN, infinite and absurdly long durations."""
    if math.isnan(seconds) or math.isinf(seconds):
        raise UsageError(f"{what} must be a finite number, got {seconds}")
    if seconds <= 0:
        raise UsageError(f"{what} must be greater than zero, got {format_duration(seconds)}")
    if seconds > MAX_SECONDS:
        raise UsageError(f"{what} must be at most 366 days, got {seconds:g} s")
    return seconds


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in TEXT: `1h30m`, `90s`, `45m`, `5h`, `1.5h`, `2d`, or a bare number of seconds."""
    s = text.strip().lower()
    if not s:
        raise UsageError(f"{what} is empty; use e.g. 90s, 45m, 5h or 1h30m")
    try:
        # A bare number means seconds; float() also accepts nan/inf, which check_seconds rejects.
        return check_seconds(float(s), what)
    except ValueError:
        pass
    pos, total, seen = 0, 0.0, set()
    for m in _PART.finditer(s):
        if m.start() != pos or m.group(2) in seen:
            break
        seen.add(m.group(2))
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not seen:
        raise UsageError(f"{what} {text!r} is not a duration; use e.g. 90s, 45m, 5h or 1h30m")
    return check_seconds(total, what)


def check_budget(seconds: float, what: str = "budget") -> float:
    """check_seconds, and at least one session's worth."""
    if check_seconds(seconds, what) < MIN_SESSION:
        raise UsageError(
            f"{what} of {format_duration(seconds)} is shorter than the shortest session "
            f"({MIN_SESSION:g}s): give at least {MIN_SESSION:g}s"
        )
    return seconds


def parse_budget(text: str, what: str = "budget") -> float:
    return check_budget(parse_duration(text, what), what)


def parse_hours(hours: float) -> float:
    return check_budget(hours * 3600.0, "--hours")


def format_duration(seconds: float | None) -> str:
    """`1h02m03s`-style text for people; `-` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s"


def exact_duration(seconds: float) -> str:
    """SECONDS as the config writes them: `5h`, `1h30m`, `90s` (parse_duration reads it back exactly)."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"
