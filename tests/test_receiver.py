"""The test receiver itself: a real nginx-rtmp, real ffmpeg publishing to it, real signals. kill() and
stop() must leave no process and a free port, and start() must refuse a port that another process holds,
or the fault tests that restart the ingest measure a stranger (or a zombie) instead of their own server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from streamctl.receiver import port_free
from tests.conftest import Rtmp, needs_media, wait_for

pytestmark = [pytest.mark.e2e, needs_media]


def publish(media: Path, url: str, seconds: float = 30) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(media),
         "-t", str(seconds), "-c", "copy", "-f", "flv", url],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def receiving(server: Rtmp, key: str) -> bool:
    """nginx accepted the publish: its recording of KEY has media in it (an FLV header alone is 13 bytes)."""
    return any(f.stat().st_size > 20_000 for f in server.recordings(key))


def zombie_children() -> list[int]:
    return [c.pid for c in psutil.Process().children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]


def nginx_of(root: Path) -> list[int]:
    """nginx processes under ROOT: a master on its config, and any nginx descending from this test."""
    conf = str(root / "nginx.conf")
    out = [c.pid for c in psutil.Process().children(recursive=True) if c.name() == "nginx"]
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] == "nginx" and conf in (p.info["cmdline"] or []):
            out.append(p.pid)
    return sorted(set(out))


def test_kill_while_publishing_leaves_nothing_and_the_port_restarts(media: Path, rtmp: Rtmp) -> None:
    kills, starts = [], []
    for cycle in range(5):
        key = f"cycle{cycle}"
        pub = publish(media, f"{rtmp.url}/{key}")
        wait_for(lambda key=key: receiving(rtmp, key), timeout=20)
        assert rtmp.proc is not None
        master, workers = rtmp.proc.pid, rtmp.worker_pids()
        assert len(workers) == 1 and sorted(rtmp.processes()) == sorted([master, *workers])
        if cycle % 2:
            os.kill(workers[0], signal.SIGSTOP)  # as the hung-ingest test leaves it
        t0 = time.monotonic()
        rtmp.kill()
        kills.append(time.monotonic() - t0)
        assert rtmp.processes() == []
        assert [p for p in [master, *workers] if psutil.pid_exists(p)] == []  # not even a zombie
        assert rtmp.proc.returncode is not None and port_free(rtmp.port)
        assert pub.wait(20) != 0  # the publish was cut, not ended
        assert zombie_children() == []
        t0 = time.monotonic()
        rtmp.start()
        starts.append(time.monotonic() - t0)
        assert rtmp.proc.pid != master and rtmp.proc.poll() is None
        assert len(rtmp.processes()) == 2 and len(rtmp.worker_pids()) == 1
        assert (rtmp.root / "nginx.pid").read_text().strip() == str(rtmp.proc.pid)
    # The last restart takes a whole publish, and records it.
    pub = publish(media, f"{rtmp.url}/after", seconds=1)
    assert pub.wait(30) == 0
    assert sum(rtmp.durations("after")) == pytest.approx(1.0, abs=0.3)
    assert zombie_children() == []
    print(
        f"FIGURE receiver kill/start x5 while publishing: kill max {max(kills) * 1000:.0f} ms, "
        f"start max {max(starts) * 1000:.0f} ms, leftovers 0"
    )


def test_start_refuses_a_port_held_by_a_plain_socket(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(RuntimeError) as err:
            Rtmp.start_in(tmp_path / "nginx", port)
        took = time.monotonic() - t0
        assert f"port {port}" in str(err.value) and f"pid {os.getpid()}" in str(err.value)
        assert nginx_of(tmp_path / "nginx") == [] and zombie_children() == []
        # Failed on seeing the holder, not after nginx's own 2.5 s of bind() retries; the socket is untouched.
        assert took < 2.0
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    print(f"FIGURE receiver start on a held port: RuntimeError after {took * 1000:.0f} ms, nginx left 0")


def test_start_refuses_a_port_held_by_another_nginx(tmp_path: Path) -> None:
    first = Rtmp.start_in(tmp_path / "first")
    try:
        ours = first.processes()
        with pytest.raises(RuntimeError) as err:
            Rtmp.start_in(tmp_path / "second", first.port)
        assert f"port {first.port}" in str(err.value)
        assert any(f"pid {p} " in str(err.value) for p in ours)
        assert [p for p in nginx_of(tmp_path / "second") if p not in ours] == []
        assert first.proc is not None and first.proc.poll() is None  # the holder is untouched
        assert sorted(first.processes()) == sorted(ours)
    finally:
        first.stop()
    assert first.processes() == [] and port_free(first.port) and zombie_children() == []


def test_stop_with_the_worker_frozen_ends_it_gracefully(media: Path, rtmp: Rtmp) -> None:
    pub = publish(media, f"{rtmp.url}/frozen")
    wait_for(lambda: receiving(rtmp, "frozen"), timeout=20)
    assert rtmp.proc is not None
    before, workers = rtmp.processes(), rtmp.worker_pids()
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGSTOP)
    wait_for(lambda: psutil.Process(workers[0]).status() == psutil.STATUS_STOPPED, timeout=5)
    t0 = time.monotonic()
    rtmp.stop()
    took = time.monotonic() - t0
    assert took < 5.0  # the graceful path: the SIGKILL fallback waits STOP_TIMEOUT (10 s) first
    assert rtmp.proc.returncode == 0  # the master ended itself, not by SIGKILL
    assert rtmp.processes() == [] and [p for p in before if psutil.pid_exists(p)] == []
    assert port_free(rtmp.port)
    assert pub.wait(20) is not None and zombie_children() == []
    print(f"FIGURE receiver stop with a frozen worker: {took * 1000:.0f} ms, exit 0, leftovers 0")
