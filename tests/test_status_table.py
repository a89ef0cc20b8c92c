"""`status` fits the terminal without cutting a cell, shows the session's uptime and a failed stream's error."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from streamctl.output.table import COLUMNS, compact_duration, render_status, watch_title
from streamctl.store.state import iso
from tests.conftest import run_cli

NOW = datetime(2026, 5, 9, 14, 3, 27).timestamp()  # local time: END shows today's times as HH:MM
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ALL = [h for _, h in COLUMNS]
AT_80 = ["NAME", "STATUS", "RUNTIME/BUDGET", "REMAINING", "SINCE", "END"]
PRIORITY = [*AT_80, "RESTARTS", "BITRATE", "REASON", "PID"]  # table.DROP_ORDER, reversed
ERROR = "Connection to tcp://a.example:1935 failed: Connection refused\n(5 tries in 2m10s, then gave up)"


def row(**over: Any) -> dict[str, Any]:
    """A row as View.as_dict gives it: an offline stream that never ran, unless OVER says otherwise."""
    r: dict[str, Any] = {
        "name": "backup", "status": "offline", "supervisor_pid": None, "ffmpeg_pid": None,
        "budget_seconds": None, "until": None, "limit": None, "runtime_seconds": 0.0,
        "session_runtime_seconds": None, "session_started_at": None, "uptime_seconds": None,
        "remaining_seconds": None, "restarts": 0, "sessions": 0, "started_at": None, "expected_end": None,
        "end_time": None, "stop_reason": None, "last_exit_code": None, "last_error": None, "bitrate": None,
        "speed": None, "warning": False, "orphan": False,
    }  # fmt: skip
    r.update(over)
    return r


ROWS = [
    row(
        name="morning", status="live", supervisor_pid=4100, ffmpeg_pid=4242, budget_seconds=18000.0,
        limit="budget", runtime_seconds=17940.2, session_runtime_seconds=724.0, remaining_seconds=59.8,
        session_started_at=iso(NOW - 724), uptime_seconds=724.3, restarts=1, sessions=2,
        started_at=iso(NOW - 900), expected_end=iso(NOW + 59.8), bitrate="2500.3kbits/s", speed=1.0,
        warning=True,
    ),
    row(
        name="evening-news", status="failed", budget_seconds=7200.0, limit="budget", runtime_seconds=1800.5,
        remaining_seconds=5399.5, restarts=5, sessions=6, end_time=iso(NOW - 60),
        stop_reason="retries_exhausted", last_exit_code=1, last_error=ERROR,
    ),
    row(stop_reason="duration_reached"),
]  # fmt: skip
# Each row's value per column, whole: a cut cell would not be one of the line's cells.
EXPECTED = [
    {"NAME": "morning", "STATUS": "live", "RUNTIME/BUDGET": "4h59m/5h00m", "REMAINING": "59s",
     "SINCE": "12m04s", "END": "14:04", "RESTARTS": "1", "PID": "4242", "BITRATE": "2500k 1.0x", "REASON": "-"},
    {"NAME": "evening-news", "STATUS": "failed", "RUNTIME/BUDGET": "30m00s/2h00m", "REMAINING": "1h29m",
     "SINCE": "-", "END": "-", "RESTARTS": "5", "PID": "-", "BITRATE": "-", "REASON": "retries_exhausted"},
    {"NAME": "backup", "STATUS": "offline", "RUNTIME/BUDGET": "0s/-", "REMAINING": "-", "SINCE": "-",
     "END": "-", "RESTARTS": "0", "PID": "-", "BITRATE": "-", "REASON": "duration_reached"},
]  # fmt: skip


def visible(text: str) -> list[str]:
    return ANSI.sub("", text).replace("\r", "").splitlines()


def cells(line: str) -> list[str]:
    return [c for c in re.split(r"\s{2,}", line.strip()) if c]  # cells are at least 2 spaces apart


def check_table(lines: list[str], width: int | None) -> list[str]:
    """No line wider than WIDTH, every shown cell whole; returns the headers shown."""
    if width is not None:
        assert max(len(line) for line in lines) <= width, "\n".join(lines)
    headers = cells(lines[0])
    for line, want in zip(lines[1:4], EXPECTED, strict=True):
        got = cells(line)
        for h in headers:
            assert want[h] in got, (h, want[h], line)
    return headers


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize(
    ("width", "must_show"),
    [(80, AT_80), (100, [*AT_80, "RESTARTS", "BITRATE"]), (60, AT_80[:5]), (200, ALL)],
)
def test_the_table_fits_the_terminal_without_cutting_a_cell(
    width: int, must_show: list[str], colour: bool
) -> None:
    out = render_status(ROWS, colour, width, NOW)
    assert ("\x1b[" in out) == colour  # colour codes are there, and take no room (checked on visible text)
    lines = visible(out)
    headers = check_table(lines, width)
    assert set(must_show) <= set(headers)
    # the columns that go, go in the documented order: what is shown is a prefix of the priority order
    assert [h for h in PRIORITY if h in headers] == PRIORITY[: len(headers)]


def test_piped_every_column_stays_and_nothing_is_cut() -> None:
    out = render_status(ROWS, False, None, NOW)
    lines = visible(out)
    assert check_table(lines, None) == ALL
    assert "━" in lines[1]  # the progress bar of the live stream
    assert lines[-1] == "evening-news: failed (retries_exhausted): " + " ".join(ERROR.split())


def test_since_is_the_uptime_of_the_current_session() -> None:
    lines = visible(render_status(ROWS, False, 80, NOW))
    since = cells(lines[0]).index("SINCE")
    assert [cells(line)[since] for line in lines[1:4]] == ["12m04s", "-", "-"]


@pytest.mark.parametrize("width", [80, 60, 200])
def test_a_failed_stream_shows_its_whole_last_error_wrapped_to_the_terminal(width: int) -> None:
    lines = visible(render_status(ROWS, True, width, NOW))
    first = next(i for i, ln in enumerate(lines) if ln.startswith("evening-news: failed"))
    shown = lines[first:]
    full = "evening-news: failed (retries_exhausted): " + " ".join(ERROR.split())
    assert " ".join(ln.strip() for ln in shown) == full  # every word of the error, none cut
    assert all(len(ln) <= width for ln in shown)
    assert len(shown) == (1 if len(full) <= width else len(shown)) and all(
        ln.startswith("  ") for ln in shown[1:]
    )
    # without an error recorded (or a reason), the line still says the stream failed
    bare = visible(render_status([row(name="x", status="failed")], False, width, NOW))
    assert bare[-1] == "x: failed"


def test_a_warning_line_stays() -> None:
    assert "warning: morning ends in 59.8s" in visible(render_status(ROWS, False, 80, NOW))


def test_a_long_name_is_never_cut() -> None:
    name = "a-very-long-stream-name-" * 4
    rows = [row(name=name, status="failed", stop_reason="start_failed", last_error=ERROR), *ROWS[:1]]
    lines = visible(render_status(rows, False, 80, NOW))
    assert cells(lines[1])[0] == name and cells(lines[0])[:2] == ["NAME", "STATUS"]
    failed = [ln for ln in lines if ln.startswith(name + ":")]  # the name whole, the error after it
    assert len(failed) == 1 and lines[-1].strip() in " ".join(ERROR.split())


def test_compact_durations_and_times() -> None:
    assert [compact_duration(s) for s in (None, 0, 42.9, 724, 17999, 18000, 183600)] == [
        *("-", "0s", "42s", "12m04s", "4h59m", "5h00m", "2d03h"),
    ]
    yesterday = row(status="live", expected_end=iso(NOW - 86400), remaining_seconds=1.0, runtime_seconds=1.0)
    next_year = row(
        status="live", expected_end=iso(NOW + 366 * 86400), remaining_seconds=1.0, runtime_seconds=1.0
    )
    lines = visible(render_status([yesterday, next_year], False, None, NOW))
    assert "05-08 14:03" in cells(lines[1]) and "2027-05-10 14:03" in cells(lines[2])


def test_watch_title_says_when_it_was_drawn_and_fits() -> None:
    assert watch_title(NOW, None) == "streamctl status — 14:03:27 (every 1s, Ctrl-C to quit)"
    assert len(watch_title(NOW, 30)) == 30 and watch_title(NOW, 30).endswith("…")


def test_as_dict_gives_the_session_uptime() -> None:
    from streamctl.commands.streams import View
    from streamctl.store.state import OpenSession, StreamState

    st = StreamState(name="m", status="live", budget_seconds=600.0)
    st.session = OpenSession(started_at=NOW - 724.25, t_arg=600.0, runtime_seconds=720.0, checkpoint_at=NOW)
    d = View("m", st, True, NOW).as_dict()
    assert d["uptime_seconds"] == 724.25 and d["session_started_at"] == iso(NOW - 724.25)
    d = View("m", StreamState(name="m"), False, NOW).as_dict()
    assert d["uptime_seconds"] is None and d["session_started_at"] is None


def run_in_terminal(args: list[str], columns: int, env: dict[str, str], redraws: int = 0) -> str:
    """The CLI's output with a pseudo-terminal of COLUMNS columns as stdin and stdout; with REDRAWS,
    Ctrl-C once `status --watch` has drawn that many times."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    # the same command as tests.conftest.cli, which captures stdout through a pipe and so cannot take a terminal
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamctl", *args],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
        # a shell without job control starts background jobs with SIGINT ignored, and Python then never
        # raises KeyboardInterrupt: give the child the default, as a terminal user has
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60  # a watch that never ends fails the test instead of hanging the suite
    try:
        while time.monotonic() < deadline and select.select([master], [], [], 10)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
            if redraws and out.count("streamctl status —".encode()) >= redraws:
                proc.send_signal(signal.SIGINT)
                redraws = 0
    finally:
        os.close(master)
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    return out.decode()


@pytest.mark.parametrize(("tty_columns", "env_columns", "no_color"), [(80, None, False), (200, "80", True)])
def test_real_status_in_80_columns(
    home: Path, tty_columns: int, env_columns: str | None, no_color: bool
) -> None:
    from streamctl.store.fileio import HeldLock
    from streamctl.store.paths import Paths
    from streamctl.store.state import OpenSession, StateStore

    paths = Paths.from_env()
    store = StateStore(paths)
    now = time.time()
    with store.update("morning", now) as st:
        st.status, st.budget_seconds, st.runtime_seconds, st.restarts = "live", 18000.0, 17000.0, 1
        st.supervisor_pid = os.getpid()
        st.session = OpenSession(
            started_at=now - 724, t_arg=1000.0, ffmpeg_pid=4242, runtime_seconds=720.0, checkpoint_at=now
        )
    with store.update("evening-news", now) as st:
        st.status, st.stop_reason = "failed", "retries_exhausted"
        st.budget_seconds, st.runtime_seconds = 7200.0, 1800.0
        st.last_error = ERROR
    with store.update("backup", now) as st:
        st.stop_reason, st.budget_seconds = "duration_reached", 3600.0
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    if env_columns:
        env["COLUMNS"] = env_columns  # honoured over the terminal's own width
    if no_color:
        env["NO_COLOR"] = "1"
    lock = HeldLock(paths.run_lock("morning"), "morning")  # as its supervisor would: the stream is live
    try:
        raw = run_in_terminal(["status"], tty_columns, env)
        piped = run_cli("status", env=env)
    finally:
        lock.release()
    assert ("\x1b[" in raw) is not no_color
    lines = visible(raw)
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert set(AT_80) <= set(cells(lines[0]))
    live = cells(next(line for line in lines if line.startswith("morning ")))
    assert live[:2] == ["morning", "live"] and ("12m04s" in live or "12m05s" in live)
    assert any(line.startswith("evening-news: failed (retries_exhausted)") for line in lines)
    assert " ".join(ERROR.split()) in " ".join(line.strip() for line in lines)  # its last error, every word
    # piped, nothing is fitted even with COLUMNS set: every column, for scripts and grep
    assert piped.returncode == 0, piped.stderr
    assert cells(piped.stdout.splitlines()[0]) == ALL


@pytest.mark.e2e  # redraws once a second, for real
def test_real_watch_says_when_it_redrew_and_fits(home: Path) -> None:
    from streamctl.store.paths import Paths
    from streamctl.store.state import StateStore

    with StateStore(Paths.from_env()).update("a-stream-with-a-long-name", time.time()) as st:
        st.status, st.stop_reason, st.budget_seconds = "failed", "start_failed", 3600.0
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    frames = ANSI.sub("", run_in_terminal(["status", "--watch"], 60, env, redraws=2)).replace("\r", "")
    titles = re.findall(r"^streamctl status — (\d\d:\d\d:\d\d) \(every 1s, Ctrl-C to quit\)$", frames, re.M)
    assert len(titles) >= 2 and max(len(line) for line in frames.splitlines()) <= 60
    assert "a-stream-with-a-long-name: failed (start_failed)" in frames
