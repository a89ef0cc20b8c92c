"""`status --format prometheus`: the node_exporter textfile collector format.

Write it atomically where the collector reads, e.g. from cron every minute:
    streamctl status --format prometheus > /var/lib/node_exporter/streamctl.prom.tmp &&
    mv /var/lib/node_exporter/streamctl.prom.tmp /var/lib/node_exporter/streamctl.prom
"""

from __future__ import annotations

import re
from typing import Any

from streamctl.store.lifecycle import Status

METRICS = (
    (
        "streamctl_up",
        "1 when the stream is live (media going out), else 0",
        lambda r: int(Status(r["status"]) == Status.LIVE),
    ),
    (
        "streamctl_running",
        "1 when a supervisor (or its orphaned ffmpeg) runs",
        lambda r: int(Status(r["status"]).running),
    ),
    ("streamctl_runtime_seconds", "streamed time counted against the budget", lambda r: r["runtime_seconds"]),
    ("streamctl_budget_seconds", "the live-time budget", lambda r: r["budget_seconds"]),
    ("streamctl_remaining_seconds", "time left to stream", lambda r: r["remaining_seconds"]),
    ("streamctl_restarts", "restarts in the current (or last) run", lambda r: r["restarts"]),
    ("streamctl_sessions_total", "ffmpeg sessions since the runtime was last reset", lambda r: r["sessions"]),
    ("streamctl_bitrate_kbits", "ffmpeg's output bitrate", lambda r: _kbits(r["bitrate"])),
    ("streamctl_warning", "1 when under 5 minutes remain", lambda r: int(r["warning"])),
    (
        "streamctl_broken",
        "1 when the stream's state file cannot be read (status shows it broken)",
        lambda r: int(r["status"] == Status.BROKEN),
    ),
)


def _kbits(text: str | None) -> float | None:
    m = re.match(r"\s*([\d.]+)kbits/s", text or "")
    return float(m.group(1)) if m else None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(rows: list[dict[str, Any]]) -> str:
    lines = []
    for name, help_text, get in METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for r in rows:
            value = get(r)
            if value is not None:
                lines.append(f'{name}{{stream="{_label(r["name"])}",status="{r["status"]}"}} {value:g}')
    return "\n".join(lines) + "\n"
