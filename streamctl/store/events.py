"""The per-stream event journal: what happened to a stream, one JSON line an event, in
`state/events/NAME.jsonl`, bounded in size.

Written by three kinds of process: the supervisor (its run's events), `sweep` (a supervisor found lost, an
overrun stopped) and the cron tick (a show started, missed, skipped). Each append takes the journal's
flock (a separate lock file), rotates when the file has grown past MAX_BYTES (NAME.jsonl -> .1 -> .2, KEEP
old files), and writes its line with one write() on an O_APPEND descriptor opened under the lock: no
writer ever appends to a file another has just rotated away, and no line is split or lost across a
rotation. Events are rare (a few an hour, a crash loop a few a minute), so a lock and an open per event
cost nothing that matters. The records are already masked by their writers; nothing here knows secrets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamctl.store.fileio import ensure_private_dir, locked
from streamctl.store.paths import Paths, validate_name

MAX_BYTES = 256 * 1024  # ~1500 events: a week of a stream that crash-loops every few minutes
KEEP = 3  # old files kept: the journal never holds more than (KEEP + 1) * MAX_BYTES


def journal_file(paths: Paths, name: str) -> Path:
    return paths.state_dir / "events" / f"{validate_name(name)}.jsonl"


def append(paths: Paths, name: str, record: dict[str, Any], max_bytes: int = MAX_BYTES) -> None:
    """Add RECORD (plain data) to NAME's journal."""
    path = journal_file(paths, name)
    ensure_private_dir(path.parent)
    line = (json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n").encode()
    with locked(path.with_name(path.name + ".lock")):
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(line) > max_bytes:
            _rotate(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _rotate(path: Path) -> None:
    for i in range(KEEP, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        newer = path if i == 1 else path.with_name(f"{path.name}.{i - 1}")
        if newer.exists():
            os.replace(newer, older)


def files(paths: Paths, name: str) -> list[Path]:
    """NAME's journal files, oldest first."""
    path = journal_file(paths, name)
    out = [path.with_name(f"{path.name}.{i}") for i in range(KEEP, 0, -1)]
    return [p for p in [*out, path] if p.exists()]


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
