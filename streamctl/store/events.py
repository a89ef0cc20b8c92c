"""The per-stream event journal: what happened to a stream, one JSON line an event, in
`state/events/NAME.jsonl`, bounded in size.

Written by three kinds of process: the supervisor (its run's events), `sweep` (a supervisor found lost, an
overrun stopped) and the cron tick (a show started, missed, skipped). Each append takes the journal's
flock, rotates when the file would pass MAX_BYTES (NAME.jsonl -> .1 -> ... , KEEP old files) and writes
its line with one write() on an O_APPEND descriptor opened under the lock (store/rotating.py): no line is
split or lost across a rotation. Events are rare (a few an hour, a crash loop a few a minute), so a lock
and an open per event cost nothing that matters. The records are masked by their writers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamctl.store.paths import Paths, validate_name

# every event a journal holds (output/alerts.py says when each is written), for the config's filters
EVENTS = ("live", "recovered", "restarted", "gave_up", "ending_soon", "ended", "supervisor_lost", "swept",
          "show_started", "show_resumed", "show_missed", "show_skipped", "show_paused", "test")  # fmt: skip
MAX_BYTES = 256 * 1024  # ~1500 events: a week of a stream that crash-loops every few minutes
KEEP = 3  # old files kept: the journal never holds more than (KEEP + 1) * MAX_BYTES


def journal_file(paths: Paths, name: str) -> Path:
    return paths.state_dir / "events" / f"{validate_name(name)}.jsonl"


LOCK_TIMEOUT = 2.0  # seconds a writer waits for the journal's lock (the supervisor must not hang on it)


def append(paths: Paths, name: str, record: dict[str, Any], max_bytes: int = MAX_BYTES) -> None:
    """Add RECORD (plain data) to NAME's journal; FileError if its lock is held past LOCK_TIMEOUT."""
    from streamctl.store.rotating import append as append_rotating

    line = (json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()
    append_rotating(journal_file(paths, name), line, max_bytes, KEEP, LOCK_TIMEOUT)


def files(paths: Paths, name: str) -> list[Path]:
    """NAME's journal files, oldest first."""
    from streamctl.store.rotating import old_files

    path = journal_file(paths, name)
    return [*old_files(path, KEEP), *([path] if path.exists() else [])]


def parse(raw: bytes) -> Iterator[dict[str, Any]]:
    for line in raw.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a full disk: skip it, keep the rest
        if isinstance(record, dict):
            yield record


def read(paths: Paths, name: str, last: int | None = None) -> list[dict[str, Any]]:
    """NAME's events, oldest first (the LAST ones only, when given)."""
    out: list[dict[str, Any]] = []
    for p in files(paths, name):
        try:
            out += parse(p.read_bytes())
        except OSError:
            continue
    return out[-last:] if last is not None and last > 0 else out
