"""A local RTMP receiver (nginx with its RTMP module) that records each publish: for tests, benchmarks
and the demo. Not used by the supervisor itself."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def available() -> bool:
    import shutil

    return bool(shutil.which("nginx")) and RTMP_MODULE.exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe_duration(path: Path) -> float:
    """Seconds of media in PATH, by ffprobe (0 when it has none)."""
    import shutil

    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return 0.0
    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    try:
        return float(out)
    except ValueError:
        return 0.0


@dataclass
class NginxRtmp:
    """nginx-rtmp on 127.0.0.1:port under ROOT, recording every publish to ROOT/rec/NAME-UNIXTIME.flv."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start_in(cls, root: Path, port: int | None = None) -> NginxRtmp:
        server = cls(root, port or free_port())
        (root / "rec").mkdir(parents=True, exist_ok=True)
        user = "user root;" if os.geteuid() == 0 else ""  # the worker must be able to write rec/
        (root / "nginx.conf").write_text(
            f"""load_module {RTMP_MODULE};
daemon off; master_process on; worker_processes 1;
{user}
pid {root}/nginx.pid; error_log {root}/error.log info;
events {{ worker_connections 256; }}
rtmp {{ server {{ listen 127.0.0.1:{server.port}; chunk_size 4096;
  application live {{ live on; record all; record_path {root}/rec; record_unique on; }} }} }}
"""
        )
        server.start()
        return server

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live"

    @property
    def rec(self) -> Path:
        return self.root / "rec"

    def start(self) -> None:
        """(Re)start nginx; returns once it accepts connections (a few ms)."""
        self.proc = subprocess.Popen(
            [
                "nginx",
                "-p",
                str(self.root),
                "-c",
                str(self.root / "nginx.conf"),
                "-e",
                str(self.root / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / "error.log").read_text() if (self.root / "error.log").exists() else ""
                    raise RuntimeError(f"nginx did not start: {log[-500:]}") from None
                time.sleep(0.02)

    def worker_pids(self) -> list[int]:
        import psutil

        if self.proc is None:
            return []
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def recordings(self, stream: str | None = None) -> list[Path]:
        files = sorted(self.rec.glob("*.flv"), key=lambda p: p.stat().st_mtime)
        return [f for f in files if stream is None or f.name.startswith(stream + "-")]

    def durations(self, stream: str | None = None) -> list[float]:
        return [probe_duration(f) for f in self.recordings(stream)]

    def kill(self) -> None:
        """The ingest dies: master and worker SIGKILLed, every connection reset."""
        for pid in [*self.worker_pids(), *([self.proc.pid] if self.proc else [])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self) -> None:
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # a test may have frozen the worker
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
