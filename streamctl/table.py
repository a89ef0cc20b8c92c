"""A plain text table for `status`: fast (no rich import on this path), never truncated when piped,
coloured only on a terminal and never with NO_COLOR."""

from __future__ import annotations

import os
import sys
from typing import Any

from streamctl.durations import format_duration

_ANSI = {"green": "32", "yellow": "33", "red": "31", "dim": "2", "bold yellow": "1;33"}
_STATUS_COLOUR = {
    "live": "green",
    "starting": "yellow",
    "backoff": "yellow",
    "stopping": "yellow",
    "failed": "red",
}
HEADERS = (
    *("NAME", "STATUS", "RUNTIME / BUDGET", "", "REMAINING"),
    *("EXPECTED END", "RESTARTS", "PIDS", "BITRATE", "REASON"),
)


def use_colour(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def bar(done: float, total: float | None, width: int = 16) -> str:
    if not total:
        return " " * width
    filled = max(0.0, min(1.0, done / total)) * width
    whole = int(filled)
    return ("━" * whole + ("╸" if filled - whole >= 0.5 else "")).ljust(width)


def _cells(r: dict[str, Any]) -> tuple[list[str], list[str | None]]:
    remaining = format_duration(r["remaining_seconds"])
    if r["limit"] == "deadline":
        remaining += " (deadline)"
    pids = "/".join(str(p) for p in (r["supervisor_pid"], r["ffmpeg_pid"]) if p) or "-"
    speed = f" x{r['speed']}" if r.get("speed") else ""
    cells = [
        r["name"],
        r["status"] + (" (orphan)" if r["orphan"] else ""),
        f"{format_duration(r['runtime_seconds'])} / {format_duration(r['budget_seconds'])}",
        bar(r["runtime_seconds"], r["budget_seconds"]),
        remaining,
        (r["expected_end"] or "-")[:19].replace("T", " "),
        str(r["restarts"]),
        pids,
        f"{r['bitrate']}{speed}" if r["bitrate"] else "-",
        r["stop_reason"] or "-",
    ]
    styles: list[str | None] = [None] * len(cells)
    styles[1] = _STATUS_COLOUR.get(r["status"], "dim")
    styles[4] = "yellow" if r["warning"] else None
    return cells, styles


def render_status(rows: list[dict[str, Any]], colour: bool) -> str:
    table = [_cells(r) for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c, _ in table]) for i, h in enumerate(HEADERS)]

    def paint(text: str, style: str | None) -> str:
        return f"\x1b[{_ANSI[style]}m{text}\x1b[0m" if colour and style else text

    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)).rstrip()]
    for cells, styles in table:
        padded = [paint(c.ljust(w), s) for c, w, s in zip(cells, widths, styles, strict=True)]
        lines.append("  ".join(padded).rstrip())
    for r in rows:
        if r["warning"]:
            lines.append(
                paint(
                    f"warning: {r['name']} ends in {format_duration(r['remaining_seconds'])}", "bold yellow"
                )
            )
    return "\n".join(lines) + "\n"
