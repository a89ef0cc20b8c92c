"""The fault matrix: real processes attacked with real faults. Every case checks the state file is valid
and consistent, no zombie is left, never two ffmpeg for one stream, and delivered time never exceeds the
budget by more than the tolerance (0.5 s)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from streamctl.run.accounting import EXTRAPOLATE_MAX
from streamctl.store.paths import Paths
from tests.conftest import (
    Rtmp,
    cli,
    cli_bg,
    fake_ffmpeg,
    gone,
    lavfi_start,
    live_ffmpeg_pid,
    needs_media,
    read_state,
    run_cli,
    start_args,
    wait_for,
)

e2e = pytest.mark.e2e  # the real-time cases; the rest run in the quick subset too


def check_state(home: Path, name: str) -> dict:  # type: ignore[type-arg]
    """Valid JSON, and consistent: the committed runtime is the sum of what the sessions streamed."""
    st = read_state(home, name)
    assert st["schema"] == 1 and st["status"] in ("offline", "failed")
    assert st["session"] is None
    if st["session_count"] <= 50:
        assert st["runtime_seconds"] == pytest.approx(
            sum(s["runtime_seconds"] for s in st["sessions"]), abs=0.01
        )
    return st


def running(script: Path) -> list[psutil.Process]:
    """Live processes executing SCRIPT (bash runs it as argv[1])."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if str(script) in (p.info["cmdline"] or [])[:2] and p.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(p)
    return out


@e2e
@needs_media
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT])
def test_ffmpeg_killed_by_signal_is_restarted_within_budget(
    home: Path, media: Path, no_leftovers: Rtmp, sig: signal.Signals
) -> None:
    sup = cli_bg(*start_args(f"sig{sig}", media, no_leftovers, "4s", "--restart-delay", "1"))
    pid = live_ffmpeg_pid(home, f"sig{sig}")
    time.sleep(2.0)
    os.kill(pid, sig)
    assert sup.wait(30) == 0
    st = check_state(home, f"sig{sig}")
    assert st["sessions"][0]["exit_code"] == -sig and st["stop_reason"] == "duration_reached"
    recorded = sum(no_leftovers.durations(f"sig{sig}-streamkey"))
    # A crash loses what was credited past ffmpeg's last block (at most EXTRAPOLATE_MAX, now that a block
    # comes once a second) and what was still in flight to nginx; never more, and never streams over.
    assert 4.0 - EXTRAPOLATE_MAX - 0.25 <= recorded <= 4.5


@e2e
@needs_media
def test_ingest_killed_and_restarted_mid_stream(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    sup = cli_bg(
        *start_args("ingest", media, no_leftovers, "6s", "--restart-delay", "0.5", "--retries", "10")
    )
    live_ffmpeg_pid(home, "ingest")
    time.sleep(2.0)
    no_leftovers.kill()  # connection reset: ffmpeg fails, every retry is refused...
    time.sleep(2.0)
    no_leftovers.start()  # ...until the ingest is back
    assert sup.wait(60) == 0
    st = check_state(home, "ingest")
    assert st["stop_reason"] == "duration_reached" and st["restarts"] >= 1
    assert st["runtime_seconds"] == pytest.approx(6.0, abs=0.2)
    # Only the recordings of the restarted nginx can be read back; the first was cut by SIGKILL.
    assert sum(no_leftovers.durations("ingest-streamkey")) <= 6.5


@e2e
@needs_media
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_supervisor_interrupt_and_hangup_stop_gracefully(
    home: Path, media: Path, no_leftovers: Rtmp, sig: signal.Signals
) -> None:
    sup = cli_bg(*start_args(f"int{sig}", media, no_leftovers, "60s"))
    pid = live_ffmpeg_pid(home, f"int{sig}")
    time.sleep(1.5)
    sup.send_signal(sig)
    assert sup.wait(15) == 0
    assert gone(pid)
    st = check_state(home, f"int{sig}")
    assert (st["status"], st["stop_reason"]) == ("offline", "stopped")
    assert st["runtime_seconds"] == pytest.approx(sum(no_leftovers.durations(f"int{sig}-streamkey")), abs=0.6)


@e2e
def test_ffmpeg_that_ignores_sigterm_is_killed_after_grace(home: Path, tmp_path: Path) -> None:
    ff = fake_ffmpeg(tmp_path, "stubborn", "trap '' TERM INT\nwhile true; do sleep 0.1; done\n")
    sup = cli_bg(*lavfi_start("stub", tmp_path / "o.flv", "60s", "--grace", "1", ffmpeg=ff))
    wait_for(lambda: read_state(home, "stub")["session"]["ffmpeg_pid"])
    pid = read_state(home, "stub")["session"]["ffmpeg_pid"]
    t0 = time.monotonic()
    assert run_cli("stop", "stub").returncode == 0
    took = time.monotonic() - t0
    assert sup.wait(5) == 0 and gone(pid)
    assert 1.0 + 1.0 <= took < 1.0 + 1.0 + 2.0  # q (1 s), SIGTERM ignored for the 1 s grace, SIGKILL
    assert check_state(home, "stub")["stop_reason"] == "stopped"


@e2e
def test_ffmpeg_children_go_with_their_group(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    ff = fake_ffmpeg(tmp_path, "parent", f"sleep 300 &\necho $! > {marker}\nwhile true; do sleep 0.1; done\n")
    # a short grace: the group is signalled as soon as `q` is not obeyed (this fake never reads it)
    sup = cli_bg(*lavfi_start("kids", tmp_path / "o.flv", "60s", "--grace", "0.2", ffmpeg=ff))
    child = int(wait_for(lambda: marker.exists() and marker.read_text().strip()))
    assert psutil.pid_exists(child)
    assert run_cli("stop", "kids").returncode == 0
    assert sup.wait(5) == 0
    wait_for(lambda: gone(child), timeout=3)


@e2e
def test_crash_loop_exhausts_retries_and_stop_works_during_backoff(home: Path, tmp_path: Path) -> None:
    ff = fake_ffmpeg(tmp_path, "crashy", "exit 1\n")
    out = tmp_path / "o.flv"
    r = cli(*lavfi_start("loop", out, "60s", "--retries", "3", "--restart-delay", "0.05", ffmpeg=ff))
    assert r.returncode == 1
    st = check_state(home, "loop")
    assert (st["status"], st["stop_reason"], st["session_count"]) == ("failed", "retries_exhausted", 4)
    # A long back-off is interrupted by `stop` at once.
    sup = cli_bg(*lavfi_start("wait", out, "60s", "--retries", "3", "--restart-delay", "30", ffmpeg=ff))
    wait_for(lambda: read_state(home, "wait")["status"] == "backoff")
    t0 = time.monotonic()
    assert run_cli("stop", "wait").returncode == 0
    assert sup.wait(5) == 0 and time.monotonic() - t0 < 3
    assert check_state(home, "wait")["stop_reason"] == "stopped"


@e2e
def test_two_starts_racing_exactly_one_wins(home: Path, tmp_path: Path) -> None:
    ff = fake_ffmpeg(tmp_path, "idle", "while true; do sleep 0.1; done\n")
    # a short grace: each round's stop signals the fake (which never reads `q`) after 0.2 s, not 1 s
    args = lavfi_start("race", tmp_path / "o.flv", "60s", "--grace", "0.2", ffmpeg=ff)
    for _ in range(8):
        a, b = cli_bg(*args), cli_bg(*args)
        loser = wait_for(lambda a=a, b=b: next((p for p in (a, b) if p.poll() is not None), None), timeout=10)
        winner = b if loser is a else a
        assert loser.returncode == 4 and "already running" in loser.stderr.read()  # type: ignore[union-attr]
        wait_for(lambda: read_state(home, "race")["status"] == "starting")
        assert len(running(ff)) == 1
        assert run_cli("stop", "race").returncode == 0
        assert winner.wait(5) == 0


@e2e
def test_killed_mid_write_never_leaves_a_broken_state(home: Path, tmp_path: Path) -> None:
    """SIGKILL the supervisor at random moments while it writes state: the file is always whole."""
    ff = fake_ffmpeg(tmp_path, "idle2", "while true; do sleep 0.05; done\n")
    args = lavfi_start("mid", tmp_path / "o.flv", "60s", ffmpeg=ff)
    rng = random.Random(7)
    path = home / "state" / "mid.json"

    def version() -> tuple[int, int] | None:
        return (path.stat().st_ino, path.stat().st_mtime_ns) if path.exists() else None

    for i in range(12):
        before = version()
        p = cli_bg(*args)
        if i % 2:  # at a moment after the start, on its first write or before (~0.4 s in, on an idle machine)
            time.sleep(rng.uniform(0.15, 0.6))
        else:  # within 0.2 s after a write of this supervisor, whatever the machine's speed: the writes after it
            wait_for(lambda before=before: version() != before, timeout=20, every=0.005)
            time.sleep(rng.uniform(0.0, 0.2))
        p.kill()
        p.wait()
        if path.exists():
            json.loads(path.read_text())  # whole, never torn
    r = run_cli("sweep")
    assert r.returncode == 0
    st = read_state(home, "mid")
    assert st["status"] in ("offline", "failed") and st["session"] is None
    wait_for(lambda: not running(ff), timeout=5)


def test_ffmpeg_starts_only_under_the_supervisor_that_launched_it(tmp_path: Path) -> None:
    """The gap before the parent-death signal is armed: a launch whose parent is no longer the supervisor
    (killed after the fork, the child reparented) must not start ffmpeg. Modelled by running the argv the
    supervisor built from another process: its parent is then not the supervisor."""
    from streamctl.run.process import _with_parent_death_signal

    ran = tmp_path / "ran"
    argv = _with_parent_death_signal(["sh", "-c", f"touch {ran}"])
    via_other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)",
            *argv,
        ]
    )
    assert (via_other.returncode, ran.exists()) == (127, False)
    assert subprocess.run(argv).returncode == 0 and ran.exists()  # from the supervisor itself: it runs


@e2e
def test_sweeps_racing_checkpoints_and_resets_racing_starts(home: Path, tmp_path: Path) -> None:
    ff = fake_ffmpeg(
        tmp_path,
        "progress",
        'us=0\nwhile true; do echo "out_time_us=$us"; echo "progress=continue"; sleep 0.1; us=$((us+100000)); done\n',
    )
    # a short grace: each stop signals the fake (which never reads `q`) after 0.2 s, not 1 s
    args = lavfi_start("busy", tmp_path / "o.flv", "60s", "--grace", "0.2", ffmpeg=ff)
    sup = cli_bg(*args)
    wait_for(lambda: read_state(home, "busy")["status"] == "live")
    # a healthy supervised stream: sweeps find nothing to do, however often they race the checkpoints:
    # sweep on until the supervisor has written a checkpoint meanwhile (one every 5 s)
    first = read_state(home, "busy")["session"]["checkpoint_at"]
    deadline, sweeps = time.monotonic() + 30, 0
    while sweeps < 10 or read_state(home, "busy")["session"]["checkpoint_at"] == first:
        assert time.monotonic() < deadline, "no checkpoint written in 30 s"
        assert run_cli("sweep").stdout == ""
        assert run_cli("reset-runtime", "busy").returncode == 4  # live: refused
        sweeps += 1
    assert run_cli("stop", "busy").returncode == 0
    assert sup.wait(5) == 0
    st = check_state(home, "busy")
    assert st["stop_reason"] == "stopped" and st["runtime_seconds"] > 0
    # reset racing a start: either the reset wins (runtime 0 before the start) or it is refused
    for _ in range(5):
        p = cli_bg(*args)
        r = cli("reset-runtime", "busy")  # a process of its own: it races the start's own start-up
        assert r.returncode in (0, 4), r.stderr
        wait_for(lambda: read_state(home, "busy")["status"] in ("starting", "live"))
        assert run_cli("stop", "busy").returncode == 0
        assert p.wait(5) == 0
        check_state(home, "busy")


def test_wall_clock_jumps_do_not_change_the_budget(tmp_path: Path) -> None:
    """Live time is counted on the monotonic clock; the wall clock only labels it."""
    from tests.conftest import make

    sup, clock, spawned, _, _ = make(tmp_path, 600, [(100, -11)], restart_delay=1.0)
    jumps = iter([0, 3600, -7200, 86400, -86400] * 1000)
    offset = [0.0]

    def wall() -> float:
        offset[0] += next(jumps)
        return clock() + offset[0]

    sup.wall = wall
    out = sup.run()
    assert out.runtime_seconds == pytest.approx(600, abs=1.0)
    assert [round(p.t_arg) for p in spawned] == [600, 500]


def test_unusable_state_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {**os.environ, "STREAMCTL_HOME": str(blocker / "home")}
    start = cli(*lavfi_start("s", "/tmp/x.flv", "5s", quiet=False), env=env)
    # start and status need the folder (exit 6, one line); sweep with nothing to sweep is not an error
    for r, code in ((start, 6), (run_cli("status", env=env), 6), (run_cli("sweep", env=env), 0)):
        assert r.returncode == code, (r, code)
        assert "Traceback" not in r.stderr and r.stderr.count("\n") == (1 if code else 0)
    assert "Not a directory" in start.stderr  # names the path and the cause


def test_disk_full_while_writing_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from streamctl.errors import FileError
    from streamctl.store import fileio

    target = tmp_path / "s.json"
    fileio.atomic_write(target, b'{"old": true}')

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(FileError, match="No space left"):
        fileio.atomic_write(target, b'{"new": true}')
    assert target.read_bytes() == b'{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temp file left behind


@e2e
def test_stale_lock_files_do_not_block(home: Path, tmp_path: Path) -> None:
    """A lock file left by a dead process holds no lock: flock dies with its holder."""
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os._exit(0)"
    )
    (home / "state").mkdir(parents=True)
    lock = Paths.in_home(home).run_lock("stale")
    subprocess.run([sys.executable, "-c", code, str(lock)], check=True)
    assert lock.exists()
    ff = fake_ffmpeg(tmp_path, "quick", "exit 0\n")
    r = cli(*lavfi_start("stale", tmp_path / "o.flv", "5s", ffmpeg=ff))
    assert r.returncode == 0, r.stderr  # ran (its fake ffmpeg "ended the input" at once)
    assert read_state(home, "stale")["stop_reason"] == "input_ended"


@e2e
def test_no_zombie_or_thread_leak_across_many_sessions(home: Path, tmp_path: Path) -> None:
    ff = fake_ffmpeg(tmp_path, "flaky", "sleep 0.05; exit 1\n")
    sup = cli_bg(
        *lavfi_start("many", tmp_path / "o.flv", "60s", "--retries", "40", "--restart-delay", "0", ffmpeg=ff)
    )
    me = psutil.Process(sup.pid)
    threads, zombies = [], []
    while sup.poll() is None:
        try:
            threads.append(me.num_threads())
            zombies.append(sum(c.status() == psutil.STATUS_ZOMBIE for c in me.children()))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    # the loop may leave once the supervisor is a zombie, before poll() reaped it: wait, do not read
    assert sup.wait(30) == 1
    st = check_state(home, "many")
    assert st["session_count"] == 41 and len(st["sessions"]) == 41
    # main + 2 pipe readers + the backup timer; a finished session's threads are gone before the next
    assert len(threads) > 20 and max(threads) <= 5, max(threads)
    assert max(zombies) <= 1  # an exited ffmpeg is reaped at once, never piles up


class Throttle:
    """A TCP proxy on 127.0.0.1 passing at most RATE bytes/s upstream: an ingest too slow for the stream."""

    def __init__(self, upstream_port: int, rate: int) -> None:
        import socket

        self.rate = rate
        self.upstream = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        self.server.settimeout(0.2)
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by close()
            up = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, up, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, client, False), daemon=True).start()

    def _pipe(self, src: object, dst: object, throttled: bool) -> None:
        chunk = max(1, self.rate // 20)
        try:
            while not self.stop.is_set():
                data = src.recv(chunk if throttled else 65536)  # type: ignore[attr-defined]
                if not data:
                    break
                dst.sendall(data)  # type: ignore[attr-defined]
                if throttled:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            if throttled:  # only the upstream pipe closes, after passing on everything it read
                for s in (dst, src):
                    with contextlib.suppress(OSError):
                        s.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.stop.set()
        self.server.close()


@e2e
@needs_media
def test_slow_ingest_never_delivers_more_than_the_budget(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    rate = probe_bitrate(media) // 8 // 2  # half what the stream needs
    proxy = Throttle(no_leftovers.port, rate)
    try:
        url = f"rtmp://127.0.0.1:{proxy.port}/live"
        r = cli("start", "slow", "-q", "--input", str(media), "--url", url, "--key", "slow-streamkey",
                "--duration", "6s", "--retries", "20", "--restart-delay", "0.5", "--grace", "1", timeout=180)  # fmt: skip
    finally:
        proxy.close()
    st = check_state(home, "slow")
    recorded = sum(no_leftovers.durations("slow-streamkey"))
    print(
        f"FIGURE slow ingest: {st['session_count']} sessions, exit {r.returncode}, "
        f"counted {st['runtime_seconds']:.2f} s, recorded {recorded:.2f} s of a 6 s budget"
    )
    assert recorded <= 6.5
    assert st["runtime_seconds"] <= 6.0 + 0.05  # -t ends on a frame: out_time may pass it by one
    assert r.returncode in (0, 1)  # budget streamed, or gave up: never runs on


def probe_bitrate(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=bit_rate", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(out.strip())
