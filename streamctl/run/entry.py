"""The long-running half of `streamctl start`, in a lean process.

Once the command line is parsed and checked, `start` execs `python -m streamctl.run.entry`: the same pid,
terminal and files, but without Typer and the pydantic it loads, which a supervisor running for hours has
no use for (measured: 22 MiB RSS instead of 34). The stream's spec, key included, comes through an
inherited pipe, never argv, which `ps` shows to every local user.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from streamctl.errors import StreamctlError, error_line, exit_with, reported
from streamctl.store.config import Settings, StreamSpec
from streamctl.store.paths import Paths


def exec_supervisor(paths: Paths, spec: StreamSpec, quiet: bool, ffmpeg: str | None) -> NoReturn:
    payload = json.dumps(
        {
            "paths": {"config_file": str(paths.config_file), "state_dir": str(paths.state_dir)},
            "spec": asdict(spec),
            "quiet": quiet,
            "ffmpeg": ffmpeg,
        }
    ).encode()
    r, w = os.pipe()
    if len(payload) >= 65536:  # larger than a pipe's buffer: would block before the reader exists
        raise StreamctlError("stream spec too large")
    os.write(w, payload)
    os.close(w)
    os.set_inheritable(r, True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "streamctl.run.entry", str(r)])


def _load(fd: int) -> tuple[Paths, StreamSpec, bool, str | None]:
    with os.fdopen(fd, "rb") as f:
        data = json.loads(f.read())
    p = data["paths"]
    s = data["spec"]
    spec = StreamSpec(**{**s, "settings": Settings(**s["settings"]), "also": tuple(s["also"])})
    return Paths(Path(p["config_file"]), Path(p["state_dir"])), spec, data["quiet"], data["ffmpeg"]


def _with_progress_bar(paths: Paths, spec: StreamSpec, ffmpeg: str | None) -> Any:
    """In a terminal: the supervisor's log lines scroll above a bar of the budget with what remains."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    from streamctl.durations import format_duration
    from streamctl.run.supervisor import Supervisor, start_stream

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[text]}"),
        console=console,
        transient=True,
    )
    task = bar.add_task(spec.name, total=1.0, text="starting")

    def tick(sup: Supervisor) -> None:
        total = sup.ledger.committed + sup.ledger.session(sup.clock())
        left = sup.remaining()
        text = f"{sup.status.value}  {format_duration(total)} streamed, {format_duration(left)} left"
        bar.update(task, total=(total + left) or 1.0, completed=total, text=text)

    with bar:
        return start_stream(paths, spec, console=console, on_tick=tick, ffmpeg=ffmpeg)


def main() -> None:
    from streamctl.run.supervisor import start_stream

    with reported():
        try:
            paths, spec, quiet, ffmpeg = _load(int(sys.argv[1]))
            if quiet or not sys.stderr.isatty():
                outcome = start_stream(paths, spec, console=not quiet, ffmpeg=ffmpeg)
            else:
                outcome = _with_progress_bar(paths, spec, ffmpeg)
        except (StreamctlError, KeyboardInterrupt):
            raise
        except Exception as e:  # a bug: still one line for the user; the details in the stream's log
            import logging

            logging.getLogger("streamctl").exception("supervisor crashed")
            exit_with(f"internal error: {type(e).__name__}: {e}", 1)
    if not outcome.ok and outcome.cause:
        # One line, with -q too: what failed, in ffmpeg's words, and what to check (the rest is in the log).
        sys.stderr.write(error_line(f"{spec.name}: {outcome.cause}"))
    sys.exit(0 if outcome.ok else 1)


if __name__ == "__main__":
    main()
