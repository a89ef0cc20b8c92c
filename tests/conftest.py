"""Shared fixtures: a private STREAMCTL_HOME, a real nginx-rtmp server, a generated input, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
HAVE_MEDIA_TOOLS = all(shutil.which(t) for t in ("ffmpeg", "ffprobe", "nginx")) and RTMP_MODULE.exists()
needs_media = pytest.mark.skipif(
    not HAVE_MEDIA_TOOLS and not os.environ.get("CI"),
    reason="needs ffmpeg, ffprobe and nginx with the RTMP module (CI installs them)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return float(out) if out not in ("", "N/A") else 0.0


@dataclass
class Rtmp:
    """nginx with the RTMP module on 127.0.0.1:port, recording every publish to its own file."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live"

    @property
    def rec(self) -> Path:
        return self.root / "rec"

    def recordings(self, stream: str | None = None) -> list[Path]:
        files = sorted(self.rec.glob("*.flv"), key=lambda p: p.stat().st_mtime)
        return [f for f in files if stream is None or f.name.startswith(stream + "-")]

    def durations(self, stream: str | None = None) -> list[float]:
        return [probe_duration(f) for f in self.recordings(stream)]

    def worker_pids(self) -> list[int]:
        return [c.pid for c in psutil.Process(self.proc.pid).children()]

    def kill(self) -> None:
        """The ingest dies: master and worker SIGKILLed, every connection reset."""
        for pid in [*self.worker_pids(), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def start(self) -> None:
        """(Re)start nginx on the same port and folder."""
        self.proc = _launch_nginx(self.root, self.port)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("STREAMCTL_HOME", str(h))
    return h


def _launch_nginx(root: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["nginx", "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(root / 'error.log').read_text()}") from None
            time.sleep(0.02)


@pytest.fixture
def rtmp(tmp_path: Path) -> Iterator[Rtmp]:
    if not HAVE_MEDIA_TOOLS:
        pytest.skip("nginx with the RTMP module is not installed")
    root = tmp_path / "nginx"
    (root / "rec").mkdir(parents=True)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # the worker must be able to write rec/
    (root / "nginx.conf").write_text(
        f"""load_module {RTMP_MODULE};
daemon off; master_process on; worker_processes 1;
{user}
pid {root}/nginx.pid; error_log {root}/error.log info;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;
  application live {{ live on; record all; record_path {root}/rec; record_unique on; }} }} }}
"""
    )
    server = Rtmp(root, port, _launch_nginx(root, port))
    yield server
    for pid in server.worker_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a test may have frozen the worker
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 s 320x240 H.264/AAC clip, looped by the streams."""
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed")
    out = tmp_path_factory.mktemp("media") / "in.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-t", "10", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "96k", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


def cli(*args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "streamctl", *args], capture_output=True, text=True, timeout=timeout, **kw
    )


def cli_bg(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_state(home: Path, name: str) -> dict[str, Any]:
    return json.loads((home / "state" / f"{name}.json").read_text())


def wait_for(pred: Any, timeout: float = 20.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = pred()
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            v = None
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {pred}")


def ffmpegs(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) ffmpeg processes whose command line mentions MARKER."""
    out = []
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        try:
            if (
                p.info["name"] == "ffmpeg"
                and p.info["status"] != psutil.STATUS_ZOMBIE
                and any(marker in a for a in p.info["cmdline"] or [])
            ):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture
def no_leftovers(rtmp: Rtmp) -> Iterator[Rtmp]:
    """After the test: no ffmpeg still pushing to this server, and no zombie child of ours."""
    yield rtmp
    marker = f":{rtmp.port}/"
    wait_for(lambda: not ffmpegs(marker), timeout=10)  # fails the test if one is still there
    zombies = [c for c in psutil.Process().children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
    assert zombies == []
