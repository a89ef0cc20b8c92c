"""A plain text table for `status`: fast (no rich import on this path), coloured only on a terminal and
never with NO_COLOR.

Cells are compact (`4h59m`, `HH:MM` today, the ffmpeg pid) and never cut. On a terminal the table fits
its width: columns go, last first, in the order of DROP_ORDER (PID, REASON, BITRATE, RESTARTS, END,
SINCE, REMAINING, RUNTIME/BUDGET); NAME and STATUS always stay, and the progress bar only takes the room
left over. Piped, every column stays and nothing is cut (scripts and grep read it); only a stream name
too long for the terminal can make a line wider than it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from datetime import date, datetime
from typing import Any

from streamctl.durations import format_duration

_ANSI = {"green": "32", "yellow": "33", "red": "31", "dim": "2", "bold yellow": "1;33"}
_STATUS_COLOUR = {
    "live": "green",
    "starting": "yellow",
    "backoff": "yellow",
    "stopping": "yellow",
    "failed": "red",
    "broken": "red",
}
COLUMNS = (
    *(("name", "NAME"), ("status", "STATUS"), ("runtime", "RUNTIME/BUDGET"), ("remaining", "REMAINING")),
    *(("since", "SINCE"), ("end", "END"), ("restarts", "RESTARTS"), ("pid", "PID")),
    *(("bitrate", "BITRATE"), ("reason", "REASON")),
)
DROP_ORDER = ("pid", "reason", "bitrate", "restarts", "end", "since", "remaining", "runtime")
BAR_MAX, BAR_MIN = 16, 6
_KBITS = re.compile(r"(\d+(?:\.\d+)?)kbits/s")


def use_colour(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def terminal_width(stream: Any = None) -> int | None:
    """The terminal's width (COLUMNS wins), or None when STREAM is not a terminal: then nothing is fitted."""
    stream = stream or sys.stdout
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return shutil.get_terminal_size().columns


def bar(done: float, total: float | None, width: int = BAR_MAX) -> str:
    if not total:
        return " " * width
    filled = max(0.0, min(1.0, done / total)) * width
    whole = int(filled)
    return ("━" * whole + ("╸" if filled - whole >= 0.5 else "")).ljust(width)


def compact_duration(seconds: float | None) -> str:
    """The two leading units, floored: `2d03h`, `4h59m`, `12m04s`, `42s`; `-` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + compact_duration(-seconds)
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _clock(stamp: str | None, today: date) -> str:
    """An ISO time as local `HH:MM` when today, else with the date (and the year when not this one)."""
    if not stamp:
        return "-"
    t = datetime.fromisoformat(stamp).astimezone()
    if t.date() == today:
        return t.strftime("%H:%M")
    return t.strftime("%m-%d %H:%M" if t.year == today.year else "%Y-%m-%d %H:%M")


def _bitrate(r: dict[str, Any]) -> str:
    if not r["bitrate"]:
        return "-"
    m = _KBITS.fullmatch(r["bitrate"])
    text = f"{float(m.group(1)):.0f}k" if m else str(r["bitrate"])
    return text + (f" {r['speed']}x" if r.get("speed") else "") + (" (slow)" if r.get("slow") else "")


def _cells(r: dict[str, Any], today: date) -> dict[str, str]:
    remaining = compact_duration(r["remaining_seconds"])
    if r["limit"] == "deadline":
        remaining += " (deadline)"
    return {
        "name": r["name"],
        "status": r["status"] + (" (orphan)" if r["orphan"] else ""),
        "runtime": f"{compact_duration(r['runtime_seconds'])}/{compact_duration(r['budget_seconds'])}",
        "remaining": remaining,
        "since": compact_duration(r.get("uptime_seconds")),
        "end": _clock(r["expected_end"], today),
        "restarts": str(r["restarts"]),
        "pid": str(r["ffmpeg_pid"] or "-"),
        "bitrate": _bitrate(r),
        "reason": r["stop_reason"] or "-",
    }


def _one_line(text: str) -> str:
    """An error text on one line: control characters (newlines, escapes) must not break the table."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def cut(text: str, width: int | None, keep: int = 0) -> str:
    """TEXT cut to WIDTH with an ellipsis (never before KEEP characters); uncut when WIDTH is None."""
    if width is None or len(text) <= width:
        return text
    return text[: max(width - 1, keep)] + "…"


def wrap(text: str, width: int | None) -> list[str]:
    """TEXT on lines of at most WIDTH, broken at spaces, later lines indented: an error is read whole."""
    if width is None or len(text) <= width:
        return [text]
    import textwrap

    # a word longer than the line (a long stream name) stays whole: it is never cut
    return textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False)


def watch_title(now: float, width: int | None) -> str:
    stamp = datetime.fromtimestamp(now).strftime("%H:%M:%S")
    return cut(f"streamctl status — {stamp} (every 1s, Ctrl-C to quit)", width)


def render_status(
    rows: list[dict[str, Any]], colour: bool, width: int | None = None, now: float | None = None
) -> str:
    """The table of ROWS (as View.as_dict gives them), fitted to WIDTH columns unless WIDTH is None."""
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    table = [_cells(r, today) for r in rows]
    widths = {k: max([len(h)] + [len(c[k]) for c in table]) for k, h in COLUMNS}
    shown = [k for k, _ in COLUMNS]

    def line_width() -> int:
        return sum(widths[k] for k in shown) + 2 * (len(shown) - 1)

    bar_width = BAR_MAX
    if width is not None:
        for k in DROP_ORDER:
            if line_width() <= width:
                break
            shown.remove(k)
        bar_width = min(BAR_MAX, width - line_width() - 2)  # the room left over, after its separator
    if "runtime" in shown and bar_width >= BAR_MIN:
        shown.insert(shown.index("runtime") + 1, "bar")
        widths["bar"] = bar_width
        for c, r in zip(table, rows, strict=True):
            c["bar"] = bar(r["runtime_seconds"], r["budget_seconds"], bar_width)
    headers = {**dict(COLUMNS), "bar": ""}

    def paint(text: str, style: str | None) -> str:
        return f"\x1b[{_ANSI[style]}m{text}\x1b[0m" if colour and style else text

    lines = ["  ".join(headers[k].ljust(widths[k]) for k in shown).rstrip()]
    for c, r in zip(table, rows, strict=True):
        styles = {
            "status": _STATUS_COLOUR.get(r["status"], "dim"),
            "remaining": "yellow" if r["warning"] else None,
        }
        # pad before painting: colour codes take no room on screen
        lines.append("  ".join(paint(c[k].ljust(widths[k]), styles.get(k)) for k in shown).rstrip())
    for r in rows:
        if r["warning"]:
            text = f"warning: {r['name']} ends in {format_duration(r['remaining_seconds'])}"
            lines.append(paint(text, "bold yellow"))
    for r in rows:
        if r.get("next_show_local"):
            paused = ", schedule paused" if r.get("schedule_paused") else ""
            when = format_duration(r["next_show_in_seconds"])
            lines.append(f"{r['name']}: next show {r['next_show_local']} (in {when}){paused}")
    for r in rows:
        if r["status"] == "failed":
            text = f"{r['name']}: failed" + (f" ({r['stop_reason']})" if r["stop_reason"] else "")
            if r.get("last_error"):
                text += f": {_one_line(r['last_error'])}"
            lines += [paint(part, "red") for part in wrap(text, width)]
        elif r.get("broken"):
            lines += [paint(part, "red") for part in wrap(f"{r['name']}: {_one_line(r['broken'])}", width)]
    return "\n".join(lines) + "\n"
