"""What a running supervisor costs, as coarse guards (the figures are the bench's: bench/run.py costs).

A real supervisor streaming to nginx-rtmp: after its first checkpoints it has loaded none of the heavy
extension modules it does without (a lazy import at run time would show here, not in an import test),
and it wakes a few times a second at most (it woke ~7 times when it polled).
"""

from __future__ import annotations

import glob
import time
from pathlib import Path

import pytest

from tests.conftest import (
    Rtmp,
    cli_bg,
    live_ffmpeg_pid,
    needs_media,
    read_state,
    run_cli,
    start_args,
    wait_for,
)

pytestmark = [pytest.mark.e2e, needs_media]


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of PID: each is the thread going to sleep to wait."""
    total = 0
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(status) as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
        except OSError:
            continue
    return total


def test_a_running_supervisor_is_lean_and_quiet(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    sup = cli_bg(*start_args("lean", media, no_leftovers, "60s"))
    live_ffmpeg_pid(home, "lean")
    first = read_state(home, "lean")["updated_at"]
    wait_for(lambda: read_state(home, "lean")["updated_at"] > first + 4, timeout=15)  # checkpoints written
    with open(f"/proc/{sup.pid}/maps") as f:
        maps = f.read()
    loaded = [m for m in ("_psutil_linux", "_hashlib", "_lzma", "_bz2", "_ssl", "_decimal") if m in maps]
    assert loaded == [], loaded
    w0, t0 = wakeups(sup.pid), time.monotonic()
    time.sleep(8.0)
    rate = (wakeups(sup.pid) - w0) / (time.monotonic() - t0)
    print(f"FIGURE supervisor wake-ups: {rate:.2f}/s")
    assert rate <= 3.0  # ~1.6/s: a progress block a second, a checkpoint every 5 s
    assert run_cli("stop", "lean").returncode == 0
    assert sup.wait(15) == 0
