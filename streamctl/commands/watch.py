"""The commands that never end on their own: `status --watch` and `logs --follow`.

The CLI hands in where the output goes; the clock and the sleep are parameters, so a test runs a loop
for a few turns without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO

from streamctl.output.table import render_status, terminal_width, use_colour, watch_title, wrap

Rows = list[dict[str, Any]]
# Reads the rows anew; each warning on the way (a config broken meanwhile) goes to the callback.
ReadRows = Callable[[Callable[[str], None]], Rows]

# Home the cursor and clear: a steady dashboard in any terminal, no curses needed.
CLEAR = "\x1b[H\x1b[2J"
REFRESH_SECONDS = 1.0  # watch_title says "every 1s"
FOLLOW_POLL_SECONDS = 0.25


def watch_status(
    rows: Rows,
    read: ReadRows,
    draw: Callable[[str], None],
    *,
    width: Callable[[], int | None] = terminal_width,
    colour: Callable[[], bool] = use_colour,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Draw ROWS as a full-screen frame, then every second the rows READ anew, until Ctrl-C.

    DRAW gets each whole frame (clear included) and should flush it. The warnings of a read are shown at
    the top of the next frame, where they stay in sight instead of scrolling away."""
    notes_text = ""
    try:
        while True:
            now, cols = clock(), width()  # re-read: the terminal may have been resized
            table = render_status(rows, colour(), cols, now)
            draw(CLEAR + watch_title(now, cols) + "\n" + notes_text + table)
            sleep(REFRESH_SECONDS)
            notes: list[str] = []
            rows = read(notes.append)
            notes_text = "".join(f"{line}\n" for n in notes for line in wrap(f"warning: {n}", cols))
    except KeyboardInterrupt:
        pass  # how a dashboard is left: not an error


def tail(f: TextIO, lines: int) -> list[str]:
    """The last LINES lines of F (none for LINES <= 0), F then at its end for `follow`."""
    every = f.readlines()
    return every[-lines:] if lines > 0 else []


def follow(
    f: TextIO,
    write: Callable[[str], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    path: Path | None = None,
) -> NoReturn:
    """Hand each line appended to F to WRITE as it comes, forever (Ctrl-C ends it, as an interrupt).
    PATH: F's name; when the log rotates (store/rotating.py), the rest of F, then the new file there."""
    import os

    while True:
        line = f.readline()
        if line:
            write(line)
            continue
        if path is not None:
            try:
                moved = os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                moved = False  # between the rename and the new file: look again
            if moved:
                for rest in f:  # what was written to it before the rotation
                    write(rest)
                f.close()
                f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (followed forever)
                continue
        sleep(FOLLOW_POLL_SECONDS)


def follow_events(
    paths: Any,
    name: str,
    seen: int,
    write: Callable[[dict[str, Any]], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> NoReturn:
    """Hand each event added to NAME's journal to WRITE, forever. The journal is read by its records'
    times, so a rotation between two looks loses nothing and repeats nothing."""
    import os

    from streamctl.store.events import files, read

    def looks() -> list[tuple[int, int]]:  # the journal's files as they stand: read again only on change
        out = []
        for f in files(paths, name):
            try:
                st = os.stat(f)
            except FileNotFoundError:
                continue
            out.append((st.st_ino, st.st_size))
        return out

    last = read(paths, name, 1)
    after = last[-1].get("t", 0) if last and seen else 0
    before = None
    while True:
        now = looks()
        if now != before:
            before = now
            for rec in read(paths, name):
                if rec.get("t", 0) > after:
                    after = rec.get("t", 0)
                    write(rec)
        sleep(FOLLOW_POLL_SECONDS)
