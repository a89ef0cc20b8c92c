"""Layer 3 and liveness with real processes: sweep after a killed supervisor, hung ffmpeg, hung ingest,
the backup timer, PID reuse, concurrent sweeps."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    Rtmp,
    cli,
    cli_bg,
    ffmpegs,
    gone,
    live_ffmpeg_pid,
    needs_media,
    read_state,
    run_cli,
    start_args,
    wait_for,
)


@pytest.mark.e2e
@needs_media
def test_sweep_stops_a_frozen_orphan_and_charges_nothing_for_the_freeze(
    home: Path, media: Path, no_leftovers: Rtmp
) -> None:
    """A frozen ffmpeg streams nothing, and with its parent-death SIGTERM pending it ends when thawed:
    sweep stops it at once and credits only its last checkpoint, so the stream can resume in full."""
    sup = cli_bg(*start_args("frozen", media, no_leftovers, "6s"))
    pid = live_ffmpeg_pid(home, "frozen")
    os.kill(pid, signal.SIGSTOP)  # hung, and then orphaned: neither -t nor a supervisor will end it
    wait_for(lambda: (read_state(home, "frozen")["session"] or {}).get("ffmpeg_cpu") is not None, timeout=10)
    time.sleep(5.5)  # a checkpoint after the freeze
    sup.kill()
    sup.wait()
    checkpoint = read_state(home, "frozen")["session"]["runtime_seconds"]
    time.sleep(2.0)  # frozen time that must not be charged
    r = run_cli("sweep", "--json")
    assert r.returncode == 0
    assert [(a["name"], a["action"]) for a in json.loads(r.stdout)] == [("frozen", "stopped_orphan")]
    assert gone(pid)
    st = read_state(home, "frozen")
    assert (st["status"], st["stop_reason"], st["session"]) == ("offline", "swept", None)
    assert st["runtime_seconds"] == pytest.approx(checkpoint, abs=0.01)
    assert run_cli("sweep").stdout == ""  # quiet when there is nothing new to do


@pytest.mark.e2e
@needs_media
def test_sweep_corrects_a_stale_live_status(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    sup = cli_bg(*start_args("stale", media, no_leftovers, "4s"))
    pid = live_ffmpeg_pid(home, "stale")
    sup.kill()
    sup.wait()
    wait_for(lambda: gone(pid), timeout=10)  # its parent-death signal (or else its -t) ends it
    checkpoint = read_state(home, "stale")["session"]["runtime_seconds"]
    assert read_state(home, "stale")["status"] == "live"  # stale on disk...
    assert json.loads(run_cli("status", "stale", "--json").stdout)[0]["status"] == "offline"  # ...never shown
    # once its credit is settled (one checkpoint interval + 1 s after the checkpoint), every reader gives
    # the figure that sweep (or the next start) then records
    session = read_state(home, "stale")["session"]
    time.sleep(max(0.0, session["checkpoint_at"] + 6.2 - time.time()))
    shown = json.loads(run_cli("status", "stale", "--json").stdout)[0]["runtime_seconds"]
    assert json.loads(run_cli("runtime", "stale", "--json").stdout)["runtime_seconds"] == shown
    assert f'streamctl_runtime_seconds{{stream="stale",status="offline"}} {shown:g}' in run_cli(
        "status", "--format", "prometheus").stdout  # fmt: skip
    r = run_cli("sweep")
    assert r.stdout.startswith("stale: marked_lost")
    events = [json.loads(line) for line in run_cli("events", "stale", "--json").stdout.splitlines()]
    assert [e["event"] for e in events][-1] == "supervisor_lost" and "nothing runs" in events[-1]["detail"]
    st = read_state(home, "stale")
    assert (st["status"], st["stop_reason"]) == ("offline", "supervisor_lost")
    # the checkpoint, plus what it may have streamed until it died (at most one interval): never under-counted
    counted = st["runtime_seconds"]
    assert checkpoint <= counted <= checkpoint + 6.0 + 0.01
    assert counted == pytest.approx(shown, abs=0.001)
    assert run_cli("sweep").stdout == ""
    assert read_state(home, "stale")["runtime_seconds"] == counted  # counted once


@pytest.mark.e2e
@needs_media
def test_timer_stops_a_frozen_ffmpeg_at_the_deadline(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    # the restart that streams the rest comes 0.5 s after the timer, not the default 3 s
    sup = cli_bg(*start_args("late", media, no_leftovers, "5s", "--grace", "5", "--restart-delay", "0.5"))
    pid = live_ffmpeg_pid(home, "late")
    session = read_state(home, "late")["session"]
    time.sleep(max(0.0, session["started_at"] + 3.0 - time.time()))
    os.kill(pid, signal.SIGSTOP)  # -t can no longer end it; stall detection (15 s) is too slow here
    wait_for(lambda: gone(pid), timeout=15)
    after_deadline = time.time() - (session["started_at"] + session["t_arg"])
    assert sup.wait(10) == 0
    print(f"FIGURE hung-at-deadline: ffmpeg gone {after_deadline:.2f} s after the deadline (grace 5 s)")
    assert after_deadline <= 5 + 1
    st = read_state(home, "late")
    # The timer ends the session; the ~1 s the frozen ffmpeg did not stream is then streamed by a new one.
    assert (st["status"], st["stop_reason"]) == ("offline", "duration_reached")
    assert st["sessions"][0]["end"] == "overran"
    assert sum(no_leftovers.durations("late-streamkey")) <= 5.5
    assert "backup timer fired" in (home / "state" / "logs" / "late.log").read_text()


@pytest.fixture(scope="session")
def hd_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of noisy 1280x720 video at ~4.4 Mbps: a realistic bitrate for filling socket buffers."""
    out = tmp_path_factory.mktemp("hd") / "hd.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-vf", "noise=alls=30:allf=t",
         "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-maxrate", "4M",
         "-bufsize", "4M", "-g", "60", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(out)],
        check=True,
    )  # fmt: skip
    return out


@pytest.mark.e2e
@needs_media
def test_hung_ingest_is_detected_and_ffmpeg_replaced(home: Path, hd_media: Path, no_leftovers: Rtmp) -> None:
    # Default stall timeout (15 s): the send-queue signal must find the hang well before it would.
    sup = cli_bg(
        *start_args("hung", hd_media, no_leftovers, "120s", "--grace", "1", "--restart-delay", "0.5")
    )
    first = live_ffmpeg_pid(home, "hung")
    time.sleep(2)
    workers = no_leftovers.worker_pids()
    hang = time.time()
    for w in workers:
        os.kill(w, signal.SIGSTOP)  # the ingest stops reading; TCP buffers fill, then ffmpeg blocks
    wait_for(lambda: read_state(home, "hung")["session_count"] >= 1, timeout=90)
    detected = read_state(home, "hung")["sessions"][0]["ended_at"]
    for w in workers:
        os.kill(w, signal.SIGCONT)
    log = (home / "state" / "logs" / "hung.log").read_text()
    jam = re.search(r"send queue grew by (\d+) KiB in ([\d.]+)s", log)
    stop_at = detected - hang
    print(
        f"FIGURE hung ingest: hang -> ffmpeg stopped {stop_at:.1f} s (send queue grew "
        f"{jam.group(1) if jam else '?'} KiB in {jam.group(2) if jam else '?'} s; stop with grace 1 s)"
    )
    st = read_state(home, "hung")
    assert st["sessions"][0]["end"] == "stalled"
    assert jam is not None  # found by the send queue, not by the 15 s progress timeout
    told = [json.loads(line) for line in run_cli("events", "hung", "--json").stdout.splitlines()]
    told = [
        (e["event"], e.get("why")) for e in told if e["event"] != "ending_soon"
    ]  # a 120 s budget: at once
    assert told[:2] == [("live", None), ("restarted", "stalled")]
    assert stop_at < 10.0
    # A new ffmpeg goes live once the ingest reads again; only one ffmpeg ever exists.
    second = wait_for(
        lambda: (
            (s := read_state(home, "hung"))["status"] == "live"
            and s["session"]["ffmpeg_pid"] != first
            and s["session"]["ffmpeg_pid"]
        ),
        timeout=40,
    )
    assert gone(first) and len(ffmpegs("hung-streamkey")) == 1 and second
    assert run_cli("stop", "hung").returncode == 0
    assert sup.wait(10) == 0


@pytest.mark.e2e
@needs_media
def test_deadline_wins_over_a_longer_budget(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    from datetime import datetime

    until = datetime.fromtimestamp(time.time() + 5).astimezone().isoformat()
    r = cli(*start_args("dl", media, no_leftovers, "1h", "--until", until))
    assert r.returncode == 0, r.stderr
    st = read_state(home, "dl")
    assert (st["status"], st["stop_reason"]) == ("offline", "deadline_reached")
    assert st["runtime_seconds"] == pytest.approx(4.5, abs=1.0)
    assert time.time() - st["until"] < 3
    r = cli(*start_args("dl", media, no_leftovers, "1h", "--until", until))
    # a deadline that has passed is bad input, as in the config: exit 2, before anything is touched
    assert r.returncode == 2 and "has passed" in r.stderr


def test_sweep_never_touches_a_reused_pid(home: Path) -> None:
    from streamctl.store.paths import Paths
    from streamctl.store.state import OpenSession, StateStore

    stranger = subprocess.Popen(["sleep", "60"])
    try:
        real = psutil.Process(stranger.pid).create_time()
        store = StateStore(Paths.from_env())
        from streamctl.run.process import cmd_digest

        ours = ["ffmpeg", "-i", "x", "rtmp://h/live/****"]
        cases = {"older": real - 100.0, "samestart": real}  # pid reused later / same start, other program
        for name, created in cases.items():
            with store.update(name, now=time.time()) as st:
                st.status, st.budget_seconds = "live", 10.0
                st.session = OpenSession(started_at=time.time() - 100, t_arg=10.0, ffmpeg_pid=stranger.pid,
                                         ffmpeg_create_time=created, ffmpeg_cmd=ours,
                                         cmd_digest=cmd_digest(ours[1:], "salt"), cmd_salt="salt",
                                         checkpoint_at=time.time() - 95)  # fmt: skip
        r = run_cli("sweep", "--json")
        assert sorted(a["action"] for a in json.loads(r.stdout)) == ["marked_lost", "marked_lost"]
        assert stranger.poll() is None  # alive: neither pid+start time nor pid+command line matched
    finally:
        stranger.kill()
        stranger.wait()


def test_two_sweeps_at_once_count_everything_once(home: Path) -> None:
    from streamctl.store.paths import Paths
    from streamctl.store.state import OpenSession, StateStore

    store = StateStore(Paths.from_env())
    dead = subprocess.Popen(["true"])
    dead.wait()
    for i in range(50):
        with store.update(f"s{i:02d}", now=time.time()) as st:
            st.status, st.budget_seconds, st.runtime_seconds = "live", 100.0, 10.0
            st.session = OpenSession(started_at=time.time() - 20, t_arg=90.0, ffmpeg_pid=dead.pid,
                                     ffmpeg_create_time=1.0, runtime_seconds=5.0, checkpoint_at=time.time())  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-m", "streamctl", "sweep", "--json"], stdout=subprocess.PIPE)
             for _ in range(2)]  # fmt: skip
    outs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    acted = sorted(a["name"] for out in outs for a in out)
    assert acted == [f"s{i:02d}" for i in range(50)]  # each stream handled by exactly one sweep
    for i in range(50):
        st = read_state(home, f"s{i:02d}")
        assert (st["status"], st["stop_reason"]) == ("offline", "supervisor_lost")
        assert (
            15.0 <= st["runtime_seconds"] < 15.0 + 6.0
        )  # 10 committed + 5 checkpointed (+ time since), once


@pytest.mark.e2e
@needs_media
def test_frozen_ffmpeg_is_replaced_after_the_stall_timeout(
    home: Path, media: Path, no_leftovers: Rtmp
) -> None:
    sup = cli_bg(*start_args("frz", media, no_leftovers, "60s", "--stall-timeout", "3", "--grace", "1",
                             "--restart-delay", "0.5"))  # fmt: skip
    first = live_ffmpeg_pid(home, "frz")
    time.sleep(1)
    os.kill(first, signal.SIGSTOP)  # no output at all: its queue drains, media time stops
    frozen = time.time()
    wait_for(lambda: read_state(home, "frz")["session_count"] >= 1, timeout=20)
    st = read_state(home, "frz")
    print(
        f"FIGURE stall: frozen ffmpeg replaced {st['sessions'][0]['ended_at'] - frozen:.1f} s after it froze "
        f"(stall timeout 3 s, grace 1 s)"
    )
    assert st["sessions"][0]["end"] == "stalled"
    # counted from the last progress block before the freeze (blocks come every second)
    assert 3.0 - 1.0 <= st["sessions"][0]["ended_at"] - frozen < 3.0 + 1.0 + 1.5 + 1.0
    assert "no media progress for" in (home / "state" / "logs" / "frz.log").read_text()
    counts: list[int] = []

    def replaced() -> bool:
        counts.append(len(ffmpegs("frz-streamkey")))
        s = read_state(home, "frz")
        return s["status"] == "live" and s["session"]["ffmpeg_pid"] not in (None, first)

    wait_for(replaced, timeout=30)  # a first retry may meet nginx's "Already publishing" for a moment
    assert gone(first) and max(counts) <= 1 and len(ffmpegs("frz-streamkey")) == 1
    assert run_cli("stop", "frz").returncode == 0
    assert sup.wait(10) == 0
