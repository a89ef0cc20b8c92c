"""Shows on a schedule end to end: real ffmpeg to a real nginx-rtmp, started by `sweep` as cron runs it
(and once by a real cron daemon running the README's line), a SIGSEGV inside a show, the budget per show
at the receiver, and the next show from zero."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from streamctl.receiver import probe_duration
from streamctl.store.paths import Paths
from tests.conftest import Rtmp, cli, live_ffmpeg_pid, read_state, wait_for

BUDGET = 12.0  # seconds a show


def add_show(name: str, media: Path, rtmp: Rtmp, *extra: str) -> None:
    r = cli("add", name, "-i", str(media), "--url", rtmp.url, "--key", f"{name}-streamkey",
            "--duration", f"{BUDGET:g}s", "--schedule", "* * * * *", "--timezone", "UTC", *extra)  # fmt: skip
    assert r.returncode == 0, r.stderr


def after_second(s: float) -> None:
    """Wait until the current minute is at least S seconds old (so this minute's show is past catching
    up, and the next one is a whole tick-filled wait away)."""
    while time.time() % 60 < s:
        time.sleep(0.2)


def recorded(rtmp: Rtmp, key: str, since: float, until: float = float("inf")) -> float:
    """Seconds nginx recorded of KEY from publishes that began in [SINCE, UNTIL)."""
    total = 0.0
    for f in rtmp.recordings(key):
        began = int(f.stem.rsplit("-", 1)[1])
        if since - 1 <= began < until:
            total += probe_duration(f)
    return total


class Ticker:
    """`streamctl sweep` in a child process every second, as cron would run it every minute."""

    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []

    def tick(self) -> None:
        r = cli("sweep", "--json")
        assert r.returncode == 0, r.stderr
        self.actions += json.loads(r.stdout)

    def until(self, pred: object, timeout: float) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.tick()
            try:
                v = pred()  # type: ignore[operator]
            except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
                v = None
            if v:
                return v
            time.sleep(1.0)
        raise AssertionError(f"timed out after {timeout}s; the ticks did {self.actions}")


@pytest.mark.e2e
def test_a_show_starts_on_time_keeps_its_budget_through_a_crash_and_the_next_starts_from_zero(
    home: Path, media: Path, no_leftovers: Rtmp
) -> None:
    rtmp = no_leftovers
    after_second(5)  # this minute's show is then past its 3 s catch-up: the first show is the next one
    add_show("eve", media, rtmp, "--catch-up", "3s")
    ticks = Ticker()
    ticks.tick()
    assert ticks.actions == []  # a show from before the schedule existed is neither started nor missed
    st = ticks.until(lambda: (s := read_state(home, "eve"))["status"] == "live" and s, timeout=90)
    assert isinstance(st, dict)
    show = st["show_at"]
    late = st["show_started_at"] - show
    print(f"FIGURE show start: {late:.2f} s after its time (sweep every second)")
    assert show % 60 == 0 and 0 <= late < 10
    assert [a["action"] for a in ticks.actions] == ["show_started"]

    time.sleep(4)
    os.kill(live_ffmpeg_pid(home, "eve"), signal.SIGSEGV)
    ended = ticks.until(lambda: (s := read_state(home, "eve"))["status"] == "offline" and s, timeout=60)
    assert isinstance(ended, dict)
    assert (ended["stop_reason"], ended["restarts"], ended["show_at"]) == ("duration_reached", 1, show)
    delivered = recorded(rtmp, "eve-streamkey", show)
    print(f"FIGURE show budget at the receiver: {delivered:.2f} s of {BUDGET:g} s, one SIGSEGV")
    assert abs(delivered - BUDGET) <= 0.5
    assert abs(ended["runtime_seconds"] - BUDGET) <= 0.1

    nxt = ticks.until(lambda: (s := read_state(home, "eve"))["show_at"] == show + 60 and s, timeout=75)
    assert isinstance(nxt, dict)
    assert nxt["restarts"] == 0 and nxt["runtime_seconds"] < BUDGET  # from zero, with no reset-runtime
    past = nxt["shows"][-1]
    assert (past["show"], past["end"], past["restarts"]) == (show, "duration_reached", 1)
    assert abs(past["streamed"] - BUDGET) <= 0.1
    live_ffmpeg_pid(home, "eve")
    assert cli("stop", "eve").returncode == 0
    r = cli("shows", "eve", "--json")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [p["end"] for p in listed["past"]] == ["duration_reached"]
    assert listed["current"]["end"] == "stopped" and listed["next"][0]["in_seconds"] > 0
    assert "eve-streamkey" not in r.stdout
    assert len([a for a in ticks.actions if a["action"] == "show_started"]) == 2  # never twice


@pytest.fixture
def cron_daemon() -> Iterator[None]:
    """A real cron daemon (Debian's), started for the test unless one runs already."""
    assert os.geteuid() == 0, "the cron daemon test runs as root (it writes /etc/cron.d)"
    assert Path("/usr/sbin/cron").exists(), "cron is not installed: apt-get install cron (README)"
    running = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "cron"]
    proc = None if running else subprocess.Popen(["/usr/sbin/cron", "-f"], stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL)  # fmt: skip
    yield
    if proc is not None:
        proc.terminate()
        proc.wait(10)


@pytest.mark.e2e
def test_a_real_cron_daemon_running_the_readme_line_starts_the_show(
    home: Path, media: Path, no_leftovers: Rtmp, cron_daemon: None, tmp_path: Path
) -> None:
    from streamctl.commands.service import SWEEP_LOG, cron_line

    rtmp = no_leftovers
    after_second(5)
    add_show("cronshow", media, rtmp, "--catch-up", "50s")
    streamctl = str(Path(sys.executable).parent / "streamctl")
    log = tmp_path / "sweep.log"
    line = cron_line(streamctl, Paths.from_env(), "root").replace(SWEEP_LOG, str(log))
    cron_file = Path(f"/etc/cron.d/streamctl-e2e-{secrets.token_hex(4)}")  # no dot: cron would skip it
    cron_file.write_text(line + "\n")
    cron_file.chmod(0o644)
    try:
        st = wait_for(lambda: (s := read_state(home, "cronshow"))["status"] == "live" and s, timeout=150)
        late = st["show_started_at"] - st["show_at"]
        print(f"FIGURE show start by cron: {late:.2f} s after its time")
        assert 0 <= late < 50
        ended = wait_for(lambda: (s := read_state(home, "cronshow"))["status"] == "offline" and s, timeout=40)
        assert ended["stop_reason"] == "duration_reached" and ended["show_at"] == st["show_at"]
        assert abs(recorded(rtmp, "cronshow-streamkey", st["show_at"]) - BUDGET) <= 0.5
    finally:
        cron_file.unlink()
        time.sleep(0.1)
        out = log.read_text() if log.exists() else ""
        print(out)
        wait_for(lambda: cli("stop", "cronshow").returncode == 0 and not _live(home), timeout=20)
    assert "show_started" in out and "cronshow-streamkey" not in out


def _live(home: Path) -> bool:
    return bool(read_state(home, "cronshow")["status"] in ("live", "starting", "backoff"))
