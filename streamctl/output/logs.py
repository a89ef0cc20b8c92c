"""The stream log: a 0600 file and the console (rich), stream keys masked everywhere; and the listener
that writes each run event as the log's lines, at the level it deserves."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamctl.durations import format_duration as d
from streamctl.masking import mask_text
from streamctl.run.events import Event, Kind
from streamctl.store.fileio import ensure_private_dir
from streamctl.store.state import iso

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40  # logging's levels, by the same numbers
# A stream log rotates at this size and keeps LOG_KEEP old files (settings log_max_mb, log_keep): a week of
# a stream that crash-loops every minute writes ~10 MiB (tests/test_logs_bounded.py): a month is kept.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP = 3
_SHAPE = re.compile(r"0x[0-9a-fA-F]+|\d+")
_LEVEL_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR", 50: "CRITICAL"}


def _asctime(t: float) -> str:
    """As logging's default asctime: 2026-12-01 20:00:00,123."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f",{int((t - int(t)) * 1000):03d}"


class StreamLog:
    """The stream's log: one line a record in a 0600 file, INFO and up on the console, every known
    secret masked in the final text. Not `logging`: with what it imports (traceback, linecache,
    tokenize, string, weakref) it cost each supervisor 0.6 MiB; a terminal's rich console still goes
    through logging's RichHandler, imported then only. Thread-safe: the reader threads, the timer and
    the loop all write here."""

    def __init__(
        self,
        name: str,
        log_file: Path,
        secrets: list[str],
        console: Any = True,
        max_bytes: int = LOG_MAX_BYTES,
        keep: int = LOG_KEEP,
    ) -> None:
        from streamctl.store.rotating import RotatingFile

        self.secrets = [s for s in secrets if s]
        ensure_private_dir(log_file.parent)
        self._file: RotatingFile | None = RotatingFile(log_file, max_bytes, keep)
        self._lock = threading.Lock()
        self._plain = console is True and not sys.stderr.isatty()
        self._rich: Any = None
        if console is not False and not self._plain:
            import logging

            from rich.console import Console
            from rich.logging import RichHandler

            rich = logging.getLogger(f"streamctl.stream.{name}")
            rich.setLevel(INFO)
            rich.propagate = False
            for h in list(rich.handlers):
                rich.removeHandler(h)
            con = Console(stderr=True) if console is True else console
            rich.addHandler(RichHandler(console=con, show_path=False, markup=False, rich_tracebacks=False))
            self._rich = rich

    def log(self, level: int, msg: str, *args: object) -> None:
        text = mask_text(msg % args if args else msg, self.secrets)
        now = time.time()
        name = _LEVEL_NAMES.get(level, f"Level {level}")
        with self._lock:
            if self._file is not None:
                self._file.write(f"{_asctime(now)} {name:<7} {text}\n".encode("utf-8", "replace"))
            if level >= INFO:
                if self._plain:
                    # a file or the journal: one plain line a record (rich would wrap and pad)
                    sys.stderr.write(f"{_asctime(now)} {name} {text}\n")
                    sys.stderr.flush()
                elif self._rich is not None:
                    self._rich.log(level, "%s", text)

    def debug(self, msg: str, *args: object) -> None:
        self.log(DEBUG, msg, *args)

    def info(self, msg: str, *args: object) -> None:
        self.log(INFO, msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self.log(WARNING, msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self.log(ERROR, msg, *args)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._rich is not None:
                for h in list(self._rich.handlers):
                    self._rich.removeHandler(h)
                    h.close()


class Collapser:
    """FFmpeg lines that repeat, as one line and a count: a broken input can print one a frame. Lines
    that differ only in numbers and addresses ("[h264 @ 0x55d0] error while decoding MB 12 4") are one
    line repeated; the first is written, then "... repeated N times" when another line comes, at
    every EVERY repeats, and at the end. Not thread-safe: the stderr reader is its one caller."""

    EVERY = 10000

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self._shape: str | None = None
        self._count = 0

    def __call__(self, line: str) -> None:
        shape = _SHAPE.sub("#", line)
        if shape == self._shape:
            self._count += 1
            if self._count >= self.EVERY:
                self.flush()
            return
        self.flush()
        self._shape = shape
        self.write(line)

    def flush(self) -> None:
        if self._count:
            self.write(f"... repeated {self._count} times")
            self._count = 0


Line = tuple[int, str]


def _run_started(f: dict[str, Any]) -> list[Line]:
    return [
        (
            INFO,
            f"supervisor started at {iso(f['at'])}; budget {d(f['budget'])}, already streamed "
            f"{d(f['streamed'])}, deadline {iso(f['until']) or 'none'}, remaining {d(f['remaining'])}; "
            f"expected end {iso(f['at'] + f['remaining'])}",
        )
    ]


def _session_started(f: dict[str, Any]) -> list[Line]:
    return [
        (INFO, f"ffmpeg pid {f['pid']} launched with -t {f['t']:.3f}: {f['cmd']}"),
        (INFO, f"backup timer scheduled for {iso(f['timer_at'])} (in {d(f['timer_in'])})"),
    ]


def _session_ended(f: dict[str, Any]) -> list[Line]:
    lines = [
        (
            INFO,
            f"session ended ({f['end']}, exit {f['rc']}) after {d(f['streamed'])} streamed; "
            f"total {d(f['total'])} of {d(f['budget'])}",
        )
    ]
    if f["cause"] is not None:
        lines.append((WARNING, f"ffmpeg failed: {f['cause']}"))
    return lines


def _stalled(f: dict[str, Any]) -> list[Line]:
    at = "never started" if f["out_time"] is None else f"stuck at {f['out_time']:.1f}s"
    return [(WARNING, f"no media progress for {f['quiet']:.1f}s ({at}); ffmpeg is hung, replacing it")]


def _restarting(f: dict[str, Any]) -> list[Line]:
    return [
        (
            WARNING,
            f"ffmpeg {f['why']} after {d(f['streamed'])} streamed; restart {f['attempt']}/{f['retries']} "
            f"in {f['delay']:.1f}s with {d(f['remaining'])} remaining",
        )
    ]


def _run_ended(e: Event) -> list[Line]:
    f = e.figures
    return [
        (
            INFO,
            f"stopped, reason {e.reason}; streamed {d(f['streamed'])} of {d(f['budget'])} budget "
            f"({d(f['remaining'])} remaining) in {f['sessions']} sessions, {f['restarts']} restarts, "
            f"{d(f['wall'])} wall time",
        )
    ]


LINES: dict[Kind, Callable[[Event], list[Line]]] = {
    Kind.RUN_STARTED: lambda e: _run_started(e.figures),
    Kind.STATE_RESTORED: lambda e: [
        (WARNING, f"state said {e.figures['found']}; restoring {e.figures['restored']}")
    ],
    Kind.STATUS_CHANGED: lambda e: [(DEBUG, f"{e.figures['old']} -> {e.figures['new']}")],
    Kind.ORPHAN_STOPPING: lambda e: [
        (
            WARNING,
            f"ffmpeg pid {e.figures['pid']} from an earlier run is still running; stopping it first",
        )
    ],
    Kind.RECOVERED: lambda e: [(INFO, f"counting {d(e.figures['streamed'])} streamed by the earlier run")],
    Kind.LAUNCH_FAILED: lambda e: [(ERROR, f"cannot launch ffmpeg: {e.figures['error']}")],
    Kind.SESSION_STARTED: lambda e: _session_started(e.figures),
    Kind.LIVE: lambda e: [(INFO, "live")],
    Kind.TIMER_FIRED: lambda e: [
        (WARNING, "backup timer fired, the session is past its time; stopping ffmpeg")
    ],
    Kind.OVERRAN: lambda e: [(WARNING, "watchdog: the session is past its time; stopping ffmpeg")],
    Kind.INGEST_JAMMED: lambda e: [
        (
            WARNING,
            f"the ingest stopped reading: ffmpeg's send queue grew by {e.figures['grew'] // 1024} KiB in "
            f"{e.figures['seconds']:.1f}s without draining; replacing ffmpeg",
        )
    ],
    Kind.STALLED: lambda e: _stalled(e.figures),
    Kind.SLOW: lambda e: [
        (
            WARNING,
            f"ffmpeg streams at {e.figures['rate']:.2f}x real time: the ingest gets less video than it "
            "needs and viewers may see buffering; the session goes on (copy mode, a faster preset or a "
            "lower resolution help)",
        )
    ],
    Kind.STOPPING: lambda e: [(INFO, f"stopping ffmpeg ({e.figures['source']})")],
    Kind.SESSION_ENDED: lambda e: _session_ended(e.figures),
    Kind.RESTARTING: lambda e: _restarting(e.figures),
    Kind.GAVE_UP: lambda e: [
        (
            ERROR,
            f"ffmpeg failed {e.figures['failures']} times in a row (last: {e.figures['last']}); giving up",
        )
    ],
    Kind.RUN_ENDED: _run_ended,
    Kind.ENDING_SOON: lambda e: [(WARNING, f"under {d(300)} left: ends in {d(e.figures['remaining'])}")],
}


class LogListener:
    """Writes each event as the stream log's lines: `stream NAME: ...`."""

    def __init__(self, log: Any) -> None:
        self.log = log  # a StreamLog, or a logging.Logger (tests): anything with .log(level, msg, *args)

    def __call__(self, event: Event) -> None:
        for level, text in LINES[event.kind](event):
            self.log.log(level, "stream %s: %s", event.stream, text)
