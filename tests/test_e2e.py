"""The supervisor end to end: real ffmpeg publishing to a real nginx-rtmp on 127.0.0.1, real signals.

Tolerances: a recording is what nginx received, measured by ffprobe. A clean session records its `-t`
to within one frame (40 ms at 25 fps); each crash loses what was in flight when ffmpeg died (socket
buffers, up to one GOP of 2 s can be cut at the receiver's end) while our accounting counts media up to the
last progress block plus at most 1 s, so we allow 0.35 s for a clean run and 1.0 s per crash boundary,
and never more than +0.5 s over the budget.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    Rtmp,
    cli,
    cli_bg,
    ffmpegs,
    free_port,
    gone,
    live_ffmpeg_pid,
    needs_media,
    new_recording_second,
    read_state,
    run_cli,
    start_args,
    wait_for,
)

pytestmark = [pytest.mark.e2e, needs_media]


def test_clean_run_records_the_budget(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    t0 = time.monotonic()
    r = cli(*start_args("clean", media, no_leftovers, "5s"))
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    durations = no_leftovers.durations("clean-streamkey")
    assert len(durations) == 1  # (c) exit 0 from -t is not restarted
    print(f"FIGURE clean: budget 5.000 s, recorded {sum(durations):.3f} s, wall {wall:.2f} s")
    assert sum(durations) == pytest.approx(5.0, abs=0.35)
    st = read_state(home, "clean")
    assert (st["status"], st["stop_reason"], st["session_count"], st["restarts"]) == (
        "offline",
        "duration_reached",
        1,
        0,
    )
    assert st["runtime_seconds"] == pytest.approx(5.0, abs=0.1)
    assert st["sessions"][0]["exit_code"] == 0
    assert wall < 5 + 3  # ended by -t, not by the 2 s-late backup timer plus a grace period
    log = (home / "state" / "logs" / "clean.log").read_text()
    assert "clean-streamkey" not in log and "clean-streamkey" not in r.stderr
    assert "expected end" in log and "backup timer scheduled" in log and "reason duration_reached" in log
    assert (home / "state" / "clean.json").stat().st_mode & 0o777 == 0o600


def test_crash_leaves_the_remaining_budget(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    """The seeds' duration test scaled down: budget 10 s, SIGSEGV at ~5 s, restart with ~5 s left."""
    sup = cli_bg(*start_args("crash", media, no_leftovers, "10s", "--restart-delay", "1"))
    pid = live_ffmpeg_pid(home, "crash")
    launched = read_state(home, "crash")["session"]["started_at"]
    time.sleep(5.0)
    alive = time.time() - launched  # a loaded machine oversleeps: what ffmpeg had at most, since its launch
    os.kill(pid, signal.SIGSEGV)
    _out, err = sup.communicate(timeout=30)
    assert sup.returncode == 0, err
    st = read_state(home, "crash")
    assert (st["status"], st["stop_reason"], st["restarts"], st["session_count"]) == (
        "offline",
        "duration_reached",
        1,
        2,
    )
    first, second = st["sessions"]
    assert first["exit_code"] == -signal.SIGSEGV
    assert 4.0 <= first["runtime_seconds"] <= alive + 1.0  # counted to its last progress block, +<=1 s
    assert second["t_arg"] == pytest.approx(10.0 - first["runtime_seconds"], abs=0.01)  # -t = the remainder
    durations = no_leftovers.durations("crash-streamkey")
    assert len(durations) == 2
    print(
        f"FIGURE crash: budget 10.000 s, counted {first['runtime_seconds']:.3f}+{second['runtime_seconds']:.3f}, "
        f"recorded {durations[0]:.3f}+{durations[1]:.3f} = {sum(durations):.3f} s"
    )
    assert durations[1] == pytest.approx(second["t_arg"], abs=0.35)
    assert sum(durations) == pytest.approx(10.0, abs=1.0)
    assert sum(durations) <= 10.5
    log = (home / "state" / "logs" / "crash.log").read_text()
    assert "restart 1/3" in log and "crash-streamkey" not in log + err
    # the event journal: one record per change, in order, the key in none
    r = run_cli("events", "crash", "--json")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["event"] for e in events] == ["live", "ending_soon", "restarted", "recovered", "ended"]
    assert events[2]["why"] == f"exited with {-signal.SIGSEGV}" and events[2]["attempt"] == 1
    assert (events[4]["reason"], events[4]["restarts"]) == ("duration_reached", 1)
    assert "crash-streamkey" not in r.stdout + (home / "state" / "events" / "crash.jsonl").read_text()


def test_refused_ingest_exhausts_retries(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live"  # nothing listens there
    t0 = time.monotonic()
    r = cli("start", "refused", "-q", "--input", str(media), "--url", url, "--duration", "30s",
            "--retries", "2", "--restart-delay", "0.2")  # fmt: skip
    assert r.returncode == 1
    assert time.monotonic() - t0 < 15
    st = read_state(home, "refused")
    assert (st["status"], st["stop_reason"], st["session_count"], st["restarts"]) == (
        "failed",
        "retries_exhausted",
        3,  # the first try and two retries
        2,
    )
    assert all(s["exit_code"] not in (0, None) for s in st["sessions"])
    assert st["runtime_seconds"] < 1.0
    events = [json.loads(line) for line in run_cli("events", "refused", "--json").stdout.splitlines()]
    assert [e["event"] for e in events] == ["restarted", "restarted", "gave_up", "ended"]  # never live
    assert events[2]["failures"] == 3 and events[3]["reason"] == "retries_exhausted"


def test_second_start_is_refused(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    sup = cli_bg(*start_args("dup", media, no_leftovers, "60s"))
    live_ffmpeg_pid(home, "dup")
    t0 = time.monotonic()
    r = cli(*start_args("dup", media, no_leftovers, "60s"))
    assert r.returncode == 4
    assert time.monotonic() - t0 < 3
    assert "already running" in r.stderr and r.stderr.count("\n") == 1
    assert len(ffmpegs("dup-streamkey")) == 1
    assert run_cli("stop", "dup").returncode == 0
    assert sup.wait(15) == 0


def test_stop_from_another_process(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    sup = cli_bg(*start_args("stopme", media, no_leftovers, "60s"))
    pid = live_ffmpeg_pid(home, "stopme")
    time.sleep(3)
    r = run_cli("stop", "stopme")
    assert r.returncode == 0, r.stderr
    # `stop` waits until it is down: by now the supervisor has ended and ffmpeg is gone.
    assert sup.wait(1) == 0
    assert gone(pid)
    st = read_state(home, "stopme")
    assert (st["status"], st["stop_reason"]) == ("offline", "stopped")
    recorded = sum(no_leftovers.durations("stopme-streamkey"))
    assert st["runtime_seconds"] == pytest.approx(recorded, abs=0.6)
    assert 2.5 < st["runtime_seconds"] < 5


def test_sigterm_to_supervisor_records_and_resume_continues(
    home: Path, media: Path, no_leftovers: Rtmp
) -> None:
    sup = cli_bg(*start_args("resume", media, no_leftovers, "6s", "--restart-delay", "1"))
    live_ffmpeg_pid(home, "resume")
    time.sleep(3)
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(15) == 0
    st = read_state(home, "resume")
    assert (st["status"], st["stop_reason"]) == ("offline", "stopped")
    first = st["runtime_seconds"]
    assert 2.0 < first < 5.0
    new_recording_second(no_leftovers, "resume-streamkey")
    r = cli(*start_args("resume", media, no_leftovers, "6s"))
    assert r.returncode == 0, r.stderr
    st = read_state(home, "resume")
    assert st["stop_reason"] == "duration_reached"
    assert st["runtime_seconds"] == pytest.approx(6.0, abs=0.2)
    assert sum(no_leftovers.durations("resume-streamkey")) == pytest.approx(6.0, abs=0.8)
    # Spent: a further start is refused, and the state is left as it was.
    before = (home / "state" / "resume.json").read_bytes()
    r = cli(*start_args("resume", media, no_leftovers, "6s"))
    assert r.returncode == 5 and "reset-runtime" in r.stderr
    assert (home / "state" / "resume.json").read_bytes() == before


def test_several_streams_at_once(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    names = ["multi1", "multi2", "multi3"]
    sups = [cli_bg(*start_args(n, media, no_leftovers, "4s")) for n in names]
    assert [s.wait(30) for s in sups] == [0, 0, 0]
    for n in names:
        assert sum(no_leftovers.durations(f"{n}-streamkey")) == pytest.approx(4.0, abs=0.35)
        assert read_state(home, n)["stop_reason"] == "duration_reached"
    # no_leftovers then checks that no ffmpeg and no zombie is left.


def test_killed_supervisor_takes_its_ffmpeg_along(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    """PR_SET_PDEATHSIG: an ffmpeg never streams on, uncounted, after its supervisor is SIGKILLed."""
    sup = cli_bg(*start_args("pdeath", media, no_leftovers, "8s"))
    pid = live_ffmpeg_pid(home, "pdeath")
    sup.kill()
    sup.wait()
    t0 = time.monotonic()
    wait_for(lambda: gone(pid), timeout=5)
    print(f"FIGURE pdeathsig: ffmpeg gone {time.monotonic() - t0:.2f} s after its supervisor was SIGKILLed")
    checkpoint = read_state(home, "pdeath")["session"]["runtime_seconds"]
    new_recording_second(no_leftovers, "pdeath-streamkey")
    r = cli(*start_args("pdeath", media, no_leftovers, "8s"))
    assert r.returncode == 0, r.stderr
    st = read_state(home, "pdeath")
    first = st["sessions"][0]["runtime_seconds"]
    # it died within one checkpoint interval (5 s) after the last checkpoint: credited as if it ran it all
    assert checkpoint <= first <= checkpoint + 5.0 + 1.0 + 0.01
    assert st["sessions"][1]["t_arg"] == pytest.approx(8.0 - first, abs=0.01)  # resumed with the rest
    recorded = sum(no_leftovers.durations("pdeath-streamkey"))
    assert 8.0 - 6.5 <= recorded <= 8.0 + 0.5  # never over the budget; under by what was not seen


def test_restart_after_supervisor_kill_stops_the_orphan_first(
    home: Path, media: Path, no_leftovers: Rtmp
) -> None:
    import json

    sup = cli_bg(*start_args("orphan", media, no_leftovers, "8s"))
    pid = live_ffmpeg_pid(home, "orphan")
    wait_for(lambda: read_state(home, "orphan")["session"]["runtime_seconds"] > 0, timeout=10)
    os.kill(pid, signal.SIGSTOP)  # frozen, its parent-death SIGTERM stays pending: a real orphan
    # a checkpoint that saw it frozen: from then on, no CPU tick means nothing streamed
    wait_for(lambda: read_state(home, "orphan")["session"]["ffmpeg_frozen"] is True, timeout=10)
    sup.kill()
    sup.wait()
    time.sleep(0.2)
    assert psutil.Process(pid).is_running()
    row = json.loads(run_cli("status", "orphan", "--json").stdout)[0]
    # frozen, it streams nothing: never shown as live, and status shows what the next start will credit
    assert (row["status"], row["orphan"], row["supervisor_pid"]) == ("offline", False, None)
    checkpoint = read_state(home, "orphan")["session"]["runtime_seconds"]
    assert row["runtime_seconds"] == pytest.approx(checkpoint, abs=0.01)
    metrics = run_cli("status", "orphan", "--format", "prometheus").stdout
    up = [line for line in metrics.splitlines() if line.startswith("streamctl_up{")]
    assert len(up) == 1 and up[0].endswith(" 0"), metrics  # "media going out": not from a frozen ffmpeg
    # a recording of its own for the next publish (named by the second), and the orphan lives on past its
    # checkpoint for over a second: credited below for that time
    time.sleep(1.1)
    r = cli(*start_args("orphan", media, no_leftovers, "8s"))
    assert r.returncode == 0, r.stderr
    assert gone(pid)
    log = (home / "state" / "logs" / "orphan.log").read_text()
    assert f"ffmpeg pid {pid} from an earlier run is still running; stopping it first" in log
    st = read_state(home, "orphan")
    first = st["sessions"][0]
    assert first["end"] == "supervisor_lost"
    # Frozen since before its last checkpoint (not a tick of CPU since): credited that checkpoint only,
    # whatever time passed, so the budget is streamed in full.
    assert first["runtime_seconds"] == pytest.approx(checkpoint, abs=0.01)
    assert st["runtime_seconds"] == pytest.approx(8.0, abs=0.2)
    recorded = sum(no_leftovers.durations("orphan-streamkey"))
    print(f"FIGURE frozen-orphan-resume: {recorded:.2f} s recorded of an 8 s budget")
    assert 8.0 - 2.0 <= recorded <= 8.5  # what a frozen ffmpeg had buffered may never arrive


def test_a_frozen_orphan_thawed_before_the_next_start_ends_and_the_budget_is_kept(
    home: Path, media: Path, no_leftovers: Rtmp
) -> None:
    """Supervisor killed while its ffmpeg is frozen, then the ffmpeg is thawed (no sweep): the pending
    parent-death SIGTERM ends it at once, and the next start credits at most one checkpoint interval past
    the last checkpoint (early, never late)."""
    sup = cli_bg(*start_args("thaw", media, no_leftovers, "8s"))
    pid = live_ffmpeg_pid(home, "thaw")
    wait_for(lambda: read_state(home, "thaw")["session"]["runtime_seconds"] > 0, timeout=10)
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: read_state(home, "thaw")["session"]["ffmpeg_frozen"] is True, timeout=10)
    sup.kill()
    sup.wait()
    checkpoint = read_state(home, "thaw")["session"]["runtime_seconds"]
    time.sleep(2.0)  # frozen for a while, uncredited
    os.kill(pid, signal.SIGCONT)
    wait_for(lambda: gone(pid), timeout=5)  # the parent-death SIGTERM was pending
    new_recording_second(no_leftovers, "thaw-streamkey")
    r = cli(*start_args("thaw", media, no_leftovers, "8s"))
    assert r.returncode == 0, r.stderr
    st = read_state(home, "thaw")
    first = st["sessions"][0]
    assert first["end"] == "supervisor_lost"
    assert checkpoint <= first["runtime_seconds"] <= checkpoint + 5.0 + 1.0 + 0.01
    assert st["runtime_seconds"] == pytest.approx(8.0, abs=0.2)
    recorded = sum(no_leftovers.durations("thaw-streamkey"))
    print(f"FIGURE frozen-orphan-thawed: {recorded:.2f} s recorded of an 8 s budget")
    assert 8.0 - 6.5 <= recorded <= 8.0 + 0.5
