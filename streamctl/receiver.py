"""A local RTMP receiver (nginx with its RTMP module) that records each publish: for tests, benchmarks
and the demo. Not used by the supervisor itself.

nginx runs in a session of its own, so that kill() and stop() reach the master and every worker: a worker
that outlives its master keeps the port, and the next nginx on it fails."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
START_TIMEOUT = 10.0  # seconds for nginx to answer
STOP_TIMEOUT = 10.0  # seconds for a graceful stop, then for the port to be free


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

    from streamctl.run.ffmpeg import media_duration

    ffprobe = shutil.which("ffprobe")
    return (media_duration(ffprobe, str(path), timeout=60) or 0.0) if ffprobe else 0.0


def port_free(port: int) -> bool:
    """Whether nginx could bind 127.0.0.1:PORT now (SO_REUSEADDR, like nginx: TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def listeners(port: int) -> list[int | None]:
    """Pids of the processes listening on PORT (None: one we may not look at). One pid per socket even
    when several processes share it (nginx master and worker)."""
    return [
        c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    ]


def describe(pid: int | None) -> str:
    if pid is None:
        return "a process we may not inspect"
    try:
        return f"pid {pid} ({' '.join(' '.join(psutil.Process(pid).cmdline()).split())[:100]})"
    except psutil.Error:
        return f"pid {pid} (gone)"


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
        """(Re)start nginx; returns once its own master answers on the port (a few ms). Otherwise raises
        RuntimeError with nothing of it left: another process holds the port, or nginx did not come up."""
        if self._running():
            raise RuntimeError(f"nginx on port {self.port} is already running (pid {self._pid()})")
        (self.root / "nginx.pid").unlink(missing_ok=True)  # a SIGKILLed master leaves its pid file behind
        self.proc = proc = subprocess.Popen(
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
            start_new_session=True,  # the master's pid is the pgid of it and of every worker
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                held = ", ".join(map(describe, listeners(self.port))) or "nobody"
                self._end(abrupt=True)
                log = (self.root / "error.log").read_text() if (self.root / "error.log").exists() else ""
                raise RuntimeError(
                    f"nginx did not start on port {self.port} (exit {proc.returncode}; listening on it: "
                    f"{held}): {log[-500:]}"
                )
            time.sleep(0.02)

    def _answers(self) -> bool:
        """Whether our own master answers on the port; RuntimeError, ours ended, when another process does."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        # Whoever holds the port answers; our nginx then retries bind() for 2.5 s and exits 1. Ours only if
        # the listening socket is in our group and the pid file (written once bound) names our master.
        holders = listeners(self.port)
        foreign = [h for h in holders if h is None or _pgid(h) not in (self._pid(), None)]
        if foreign:
            self._end(abrupt=True)
            raise RuntimeError(
                f"port {self.port} is held by {', '.join(map(describe, foreign))}, not by our nginx "
                f"(pid {self._pid()}, ended)"
            )
        try:
            named = (self.root / "nginx.pid").read_text().strip()
        except OSError:
            named = ""
        return bool(holders) and named == str(self._pid()) and self._running()

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def processes(self) -> list[int]:
        """Pids of every process of this server still in the process table, zombies included: master and
        workers (by process group) and any master on this ROOT's config. [] once it is gone."""
        return [p.pid for p in self._scan()]

    def recordings(self, stream: str | None = None) -> list[Path]:
        files = sorted(self.rec.glob("*.flv"), key=lambda p: p.stat().st_mtime)
        return [f for f in files if stream is None or f.name.startswith(stream + "-")]

    def durations(self, stream: str | None = None) -> list[float]:
        return [probe_duration(f) for f in self.recordings(stream)]

    def kill(self) -> None:
        """The ingest dies: workers SIGKILLed, every connection reset, then the master ends. Returns once no
        process of it is left and the port is free."""
        self._end(abrupt=True)
        self._wait_port_free()

    def stop(self) -> None:
        """Graceful stop, SIGKILL after STOP_TIMEOUT. Returns once no process of it is left and the port is
        free."""
        self._end(abrupt=False)
        self._wait_port_free()

    def _pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _running(self) -> bool:
        # Not reaped yet, so its pid (the pgid) cannot be reused: signalling the group is safe.
        return self.proc is not None and self.proc.poll() is None

    def _scan(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        conf = str(self.root / "nginx.conf")
        out = []
        for p in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if p.info["name"] == "nginx" and (
                    _pgid(p.pid) == self.proc.pid or conf in (p.info["cmdline"] or [])
                ):
                    out.append(p)
        return out

    def _end(self, abrupt: bool) -> None:
        """End our nginx, abruptly (workers SIGKILLed) or gracefully (SIGTERM), the group SIGKILLed if the
        master is not gone after STOP_TIMEOUT; then SIGKILL whatever of it is left until nothing is."""
        if self._running():
            assert self.proc is not None
            pgid = self.proc.pid
            if abrupt:
                # SIGKILL to master and workers at once leaves the workers zombies until init reaps them
                # (seconds later in some containers, or never); a master that sees its worker die first
                # forks a new one. So: freeze the group, queue SIGTERM to the master, SIGKILL the workers,
                # resume: the master, already terminating, reaps them and exits without forking.
                os.killpg(pgid, signal.SIGSTOP)
                os.kill(pgid, signal.SIGTERM)
                for p in self._scan():
                    if p.pid != pgid:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(p.pid, signal.SIGKILL)
            else:
                os.kill(pgid, signal.SIGTERM)
            os.killpg(pgid, signal.SIGCONT)  # resumes what we or a test froze: it cannot end stopped
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.proc.wait()
        deadline = time.monotonic() + STOP_TIMEOUT
        while left := self._scan():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx processes of {self.root} are left: "
                    + ", ".join(f"{describe(p.pid)} {_status(p)}" for p in left)
                )
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)  # a zombie ignores it; its parent must reap it
            time.sleep(0.01)

    def _wait_port_free(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        while not port_free(self.port):
            if time.monotonic() > deadline:
                held = ", ".join(map(describe, listeners(self.port))) or "a socket that does not listen"
                raise RuntimeError(
                    f"port {self.port} is still held by {held}, {STOP_TIMEOUT:.0f} s after nginx ended"
                )
            time.sleep(0.02)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _status(p: psutil.Process) -> str:
    try:
        return f"{p.status()}, parent {p.ppid()}"
    except psutil.Error:
        return "gone"
