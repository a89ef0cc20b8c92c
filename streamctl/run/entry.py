"""The long-running half of `streamctl start`, in a lean process.

Once the command line is parsed and checked, `start` execs `python -m streamctl.run.entry`: the same pid,
terminal and files, but without Typer and the pydantic it loads, which a supervisor running for hours has
no use for (measured: 22 MiB RSS instead of 34). The stream's spec, key included, comes through an
inherited pipe, never argv, which `ps` shows to every local user.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from streamctl.errors import StreamctlError, error_line, exit_with, reported
from streamctl.store.config import Settings, StreamSpec
from streamctl.store.lifecycle import StopReason
from streamctl.store.paths import Paths

if TYPE_CHECKING:
    from dataclasses import asdict
else:
    from streamctl.records import asdict

if TYPE_CHECKING:
    from streamctl.run.supervisor import Outcome, Supervisor


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


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[StopReason, str], None]) -> Iterator[None]:
    """SIGTERM, SIGINT and SIGHUP ask for a graceful stop while the block runs (main thread only: Python
    delivers signals there). Outside the supervisor, so that one process could host several."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        request_stop(StopReason.STOPPED, f"signal {signal.Signals(signum).name}")

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def start_stream(
    paths: Paths,
    spec: StreamSpec,
    console: Any = True,
    on_tick: Callable[[Supervisor], None] | None = None,
    ffmpeg: str | None = None,
) -> Outcome:
    """Run SPEC's supervisor in this process until the stream ends (`start`, `demo`).
    FFMPEG is the --ffmpeg given on the command line, if any."""
    from streamctl.output.logs import Collapser, LogListener, StreamLog
    from streamctl.run.ffmpeg import find_ffmpeg, preflight_input
    from streamctl.run.playlist import prepare_input
    from streamctl.run.supervisor import Supervisor
    from streamctl.store.config import require_limit

    ffmpeg, _ = find_ffmpeg(ffmpeg, spec.settings.ffmpeg)
    source = spec
    spec = prepare_input(paths.state_dir, require_limit(spec))  # before anything is written
    preflight_input(ffmpeg, spec)
    s = spec.settings
    log = StreamLog(spec.name, paths.log_file(spec.name), spec.secrets(), console,
                    int(s.log_max_mb * 1024 * 1024), s.log_keep)  # fmt: skip
    said = Collapser(lambda line: log.info("ffmpeg: %s", line))
    try:

        def ffmpeg_said(line: str) -> None:
            said(line)

        from streamctl.output.alerts import AlertListener
        from streamctl.run.events import Listener

        alerts = AlertListener(paths, spec.name, spec.secrets(), spec.settings)
        listeners: list[Listener] = [LogListener(log), alerts]
        from streamctl.run.resume import probe_items, resumable

        items = (lambda: probe_items(ffmpeg, source.input)) if resumable(source) else None
        sup = Supervisor(spec, paths, ffmpeg, listeners, ffmpeg_said, on_tick=on_tick, resume_items=items)
        # Before the run publishes our pid: a `stop` from then on is never lost.
        with stop_on_signals(sup.request_stop):
            return sup.run()
    finally:
        said.flush()
        log.close()


def _with_progress_bar(paths: Paths, spec: StreamSpec, ffmpeg: str | None) -> Any:
    """In a terminal: the supervisor's log lines scroll above a bar of the budget with what remains."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    from streamctl.durations import format_duration

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
        total = sup.streamed()
        left = sup.remaining()
        text = f"{sup.status.value}  {format_duration(total)} streamed, {format_duration(left)} left"
        bar.update(task, total=(total + left) or 1.0, completed=total, text=text)

    with bar:
        return start_stream(paths, spec, console=console, on_tick=tick, ffmpeg=ffmpeg)


def main() -> None:
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
