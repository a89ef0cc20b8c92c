"""The stream log: a 0600 file and the console (rich), stream keys masked everywhere; and the listener
that writes each run event as the log's lines, at the level it deserves."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamctl.durations import format_duration as d
from streamctl.masking import mask_text
from streamctl.run.events import Event, Kind
from streamctl.store.fileio import ensure_private_dir
from streamctl.store.state import iso


class SecretFilter(logging.Filter):
    """Replaces every known secret in a record's final message, whatever handler prints it."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_text(record.getMessage(), self.secrets), None
        return True


def stream_logger(name: str, log_file: Path, secrets: list[str], console: Any = True) -> logging.Logger:
    """CONSOLE: True for a new stderr console, False for none, or a rich Console to share (progress bar)."""
    log = logging.getLogger(f"streamctl.stream.{name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    for f in list(log.filters):
        log.removeFilter(f)
    log.addFilter(SecretFilter(secrets))

    ensure_private_dir(log_file.parent)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    fh = logging.FileHandler(log_file, encoding="utf-8")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    log.addHandler(fh)
    if console is True and not sys.stderr.isatty():
        # A file or the journal: one plain line a record. Rich would wrap at 80 columns and pad with spaces.
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        plain.setLevel(logging.INFO)
        log.addHandler(plain)
    elif console is not False:
        from rich.console import Console
        from rich.logging import RichHandler

        con = Console(stderr=True) if console is True else console
        ch = RichHandler(console=con, show_path=False, markup=False, rich_tracebacks=False)
        ch.setLevel(logging.INFO)
        log.addHandler(ch)
    return log


def close_logger(log: logging.Logger) -> None:
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


Line = tuple[int, str]


def _run_started(f: dict[str, Any]) -> list[Line]:
    return [
        (
            logging.INFO,
            f"supervisor started at {iso(f['at'])}; budget {d(f['budget'])}, already streamed "
            f"{d(f['streamed'])}, deadline {iso(f['until']) or 'none'}, remaining {d(f['remaining'])}; "
            f"expected end {iso(f['at'] + f['remaining'])}",
        )
    ]


def _session_started(f: dict[str, Any]) -> list[Line]:
    return [
        (logging.INFO, f"ffmpeg pid {f['pid']} launched with -t {f['t']:.3f}: {f['cmd']}"),
        (logging.INFO, f"backup timer scheduled for {iso(f['timer_at'])} (in {d(f['timer_in'])})"),
    ]


def _session_ended(f: dict[str, Any]) -> list[Line]:
    lines = [
        (
            logging.INFO,
            f"session ended ({f['end']}, exit {f['rc']}) after {d(f['streamed'])} streamed; "
            f"total {d(f['total'])} of {d(f['budget'])}",
        )
    ]
    if f["cause"] is not None:
        lines.append((logging.WARNING, f"ffmpeg failed: {f['cause']}"))
    return lines


def _stalled(f: dict[str, Any]) -> list[Line]:
    at = "never started" if f["out_time"] is None else f"stuck at {f['out_time']:.1f}s"
    return [
        (logging.WARNING, f"no media progress for {f['quiet']:.1f}s ({at}); ffmpeg is hung, replacing it")
    ]


def _restarting(f: dict[str, Any]) -> list[Line]:
    return [
        (
            logging.WARNING,
            f"ffmpeg {f['why']} after {d(f['streamed'])} streamed; restart {f['attempt']}/{f['retries']} "
            f"in {f['delay']:.1f}s with {d(f['remaining'])} remaining",
        )
    ]


def _run_ended(e: Event) -> list[Line]:
    f = e.figures
    return [
        (
            logging.INFO,
            f"stopped, reason {e.reason}; streamed {d(f['streamed'])} of {d(f['budget'])} budget "
            f"({d(f['remaining'])} remaining) in {f['sessions']} sessions, {f['restarts']} restarts, "
            f"{d(f['wall'])} wall time",
        )
    ]


LINES: dict[Kind, Callable[[Event], list[Line]]] = {
    Kind.RUN_STARTED: lambda e: _run_started(e.figures),
    Kind.STATE_RESTORED: lambda e: [
        (logging.WARNING, f"state said {e.figures['found']}; restoring {e.figures['restored']}")
    ],
    Kind.STATUS_CHANGED: lambda e: [(logging.DEBUG, f"{e.figures['old']} -> {e.figures['new']}")],
    Kind.ORPHAN_STOPPING: lambda e: [
        (
            logging.WARNING,
            f"ffmpeg pid {e.figures['pid']} from an earlier run is still running; stopping it first",
        )
    ],
    Kind.RECOVERED: lambda e: [
        (logging.INFO, f"counting {d(e.figures['streamed'])} streamed by the earlier run")
    ],
    Kind.LAUNCH_FAILED: lambda e: [(logging.ERROR, f"cannot launch ffmpeg: {e.figures['error']}")],
    Kind.SESSION_STARTED: lambda e: _session_started(e.figures),
    Kind.LIVE: lambda e: [(logging.INFO, "live")],
    Kind.TIMER_FIRED: lambda e: [
        (logging.WARNING, "backup timer fired, the session is past its time; stopping ffmpeg")
    ],
    Kind.OVERRAN: lambda e: [(logging.WARNING, "watchdog: the session is past its time; stopping ffmpeg")],
    Kind.INGEST_JAMMED: lambda e: [
        (
            logging.WARNING,
            f"the ingest stopped reading: ffmpeg's send queue grew by {e.figures['grew'] // 1024} KiB in "
            f"{e.figures['seconds']:.1f}s without draining; replacing ffmpeg",
        )
    ],
    Kind.STALLED: lambda e: _stalled(e.figures),
    Kind.SLOW: lambda e: [
        (
            logging.WARNING,
            f"ffmpeg streams at {e.figures['rate']:.2f}x real time: the ingest gets less video than it "
            "needs and viewers may see buffering; the session goes on (copy mode, a faster preset or a "
            "lower resolution help)",
        )
    ],
    Kind.STOPPING: lambda e: [(logging.INFO, f"stopping ffmpeg ({e.figures['source']})")],
    Kind.SESSION_ENDED: lambda e: _session_ended(e.figures),
    Kind.RESTARTING: lambda e: _restarting(e.figures),
    Kind.GAVE_UP: lambda e: [
        (
            logging.ERROR,
            f"ffmpeg failed {e.figures['failures']} times in a row (last: {e.figures['last']}); giving up",
        )
    ],
    Kind.RUN_ENDED: _run_ended,
}


class LogListener:
    """Writes each event as the stream log's lines: `stream NAME: ...`."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log

    def __call__(self, event: Event) -> None:
        for level, text in LINES[event.kind](event):
            self.log.log(level, "stream %s: %s", event.stream, text)
