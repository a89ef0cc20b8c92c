"""`streamctl demo`: see the budget survive a crash, on any machine with ffmpeg, with nothing configured.

A generated test pattern is streamed to a receiver on 127.0.0.1 that the demo starts itself (nginx-rtmp
when installed, else ffmpeg's own one-shot RTMP listener, relaunched for every session). One real
SIGSEGV is sent to ffmpeg midway; the supervisor restarts it with what is left of the budget. At the
end the receiver's recordings are measured with ffprobe. Everything runs in a temporary folder and
nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamctl import receiver
from streamctl.errors import StreamctlError
from streamctl.store.config import Settings, StreamSpec
from streamctl.store.lifecycle import Status
from streamctl.store.paths import Paths
from streamctl.store.state import StateStore

KEY = "demo-stream-key"  # at least masking.MIN_KEY characters


class ListenerReceiver:
    """ffmpeg -listen 1: one RTMP session per process, so a new listener is started after each one."""

    def __init__(self, ffmpeg: str, root: Path) -> None:
        self.ffmpeg, self.rec = ffmpeg, root / "rec"
        self.rec.mkdir(parents=True, exist_ok=True)
        self.port = receiver.free_port()
        self.url = f"rtmp://127.0.0.1:{self.port}/live"
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        time.sleep(0.5)  # no probe: a TCP probe would use up the listener's one session

    def _loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            out = self.rec / f"{KEY}-{n}.flv"
            self._proc = subprocess.Popen(
                [
                    self.ffmpeg,
                    "-v",
                    "error",
                    "-listen",
                    "1",
                    "-i",
                    f"{self.url}/{KEY}",
                    "-c",
                    "copy",
                    "-y",
                    str(out),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._proc.wait()

    def durations(self) -> list[float]:
        files = sorted(self.rec.glob(f"{KEY}-*.flv"), key=lambda p: p.stat().st_mtime)
        return [d for d in (receiver.probe_duration(f) for f in files) if d > 0]

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
        self._thread.join(5)


class NginxReceiver:
    def __init__(self, root: Path) -> None:
        self.server = receiver.NginxRtmp.start_in(root)
        self.url = self.server.url

    def durations(self) -> list[float]:
        return self.server.durations(KEY)

    def stop(self) -> None:
        self.server.stop()


@dataclass
class DemoResult:
    budget: float
    recorded: list[float]
    counted: float
    restarts: int
    reason: str
    receiver: str

    @property
    def error(self) -> float:
        return sum(self.recorded) - self.budget

    @property
    def held(self) -> bool:
        """The budget held: it ended by its budget, and the receiver got it to within a second."""
        return abs(self.error) <= 1.0 and self.reason == "duration_reached"


def _crash_midway(paths: Paths, at: float, log: Any) -> None:
    """SIGSEGV the live ffmpeg once the stream has run AT seconds: a real crash, not a simulation."""
    store = StateStore(paths)
    while True:
        time.sleep(0.1)
        try:
            st = store.load("demo")
        except StreamctlError:
            continue
        if st is None:
            continue
        if st.status_enum in (Status.OFFLINE, Status.FAILED):
            return
        s = st.session
        if st.status_enum == Status.LIVE and s and s.ffmpeg_pid and s.runtime_seconds >= at:
            log(f"demo: sending SIGSEGV to ffmpeg (pid {s.ffmpeg_pid}) after {s.runtime_seconds:.1f}s")
            with contextlib.suppress(ProcessLookupError):
                os.kill(s.ffmpeg_pid, signal.SIGSEGV)
            return


def run_demo(seconds: float = 30.0, console: Any = True, log: Any = print) -> DemoResult:
    from streamctl.errors import EnvironmentProblem
    from streamctl.run.ffmpeg import find_ffmpeg, find_ffprobe

    ffmpeg, _ = find_ffmpeg()
    if find_ffprobe(ffmpeg) is None:
        raise EnvironmentProblem("the demo measures what was received with ffprobe, and none was found")
    work = Path(tempfile.mkdtemp(prefix="streamctl-demo-"))
    try:
        return _run(ffmpeg, work, seconds, console, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(ffmpeg: str, work: Path, seconds: float, console: Any, log: Any) -> DemoResult:
    from streamctl.errors import EnvironmentProblem
    from streamctl.run.entry import start_stream

    rx: ListenerReceiver | NginxReceiver
    try:
        if receiver.available():
            rx, kind = NginxReceiver(work / "nginx"), "nginx-rtmp"
        else:
            rx, kind = ListenerReceiver(ffmpeg, work / "listener"), "ffmpeg -listen"
    except (OSError, RuntimeError) as e:
        raise EnvironmentProblem(f"the demo could not start its local receiver: {e}") from None
    log(f"demo: streaming a test pattern for {seconds:g}s to {kind} on {rx.url}; one crash midway")
    paths = Paths(config_file=work / "streamctl.toml", state_dir=work / "state")
    spec = StreamSpec(
        name="demo",
        input="testsrc=size=640x360:rate=25",
        input_format="lavfi",
        url=rx.url,
        key=KEY,
        budget_seconds=seconds,
        mode="encode",
        bitrate="800k",
        preset="ultrafast",
        fps=25,
        settings=Settings(restart_delay=2.0, backoff=1.0, jitter=0.0, retries=3, stall_timeout=15.0),
    )
    crash = threading.Thread(target=_crash_midway, args=(paths, seconds / 3, log), daemon=True)
    crash.start()
    try:
        outcome = start_stream(paths, spec, console=console, ffmpeg=ffmpeg)
        time.sleep(1.0)  # let the receiver finish its last file
    finally:
        rx.stop()
    return DemoResult(
        seconds, rx.durations(), outcome.runtime_seconds, outcome.restarts, outcome.reason.value, kind
    )
