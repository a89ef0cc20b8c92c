"""Shared fixtures: a private STREAMCTL_HOME, a real nginx-rtmp server, a generated input, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from streamctl import receiver

HAVE_MEDIA_TOOLS = all(shutil.which(t) for t in ("ffmpeg", "ffprobe")) and receiver.available()
needs_media = pytest.mark.skipif(
    not HAVE_MEDIA_TOOLS and not os.environ.get("CI"),
    reason="needs ffmpeg, ffprobe and nginx with the RTMP module (CI installs them)",
)
free_port = receiver.free_port
Rtmp = receiver.NginxRtmp


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("STREAMCTL_HOME", str(h))
    return h


@pytest.fixture
def rtmp(tmp_path: Path) -> Iterator[Rtmp]:
    if not HAVE_MEDIA_TOOLS:
        pytest.skip("nginx with the RTMP module is not installed")
    server = Rtmp.start_in(tmp_path / "nginx")
    yield server
    server.stop()
    left = server.processes()
    assert left == [], f"nginx processes of {server.root} left behind: {left}"


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
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            v = None  # not there yet: no file, a file being replaced, or no session in it yet
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


def fake_ffmpeg(tmp_path: Path, name: str, body: str) -> Path:
    """A stand-in for ffmpeg where real ffmpeg cannot be made to misbehave on demand."""
    p = tmp_path / name
    p.write_text("#!/bin/bash\n" + body)
    p.chmod(0o755)
    return p
