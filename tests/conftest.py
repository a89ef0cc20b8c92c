"""Shared fixtures and helpers: a private STREAMCTL_HOME, a real nginx-rtmp server, a generated input,
the CLI in a child process (`cli`, `cli_bg`) and in this one (`run_cli`), and the argv of a start."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from streamctl import receiver
from streamctl.output.logs import LogListener
from streamctl.run.supervisor import Supervisor
from streamctl.store.config import Settings, StreamSpec
from streamctl.store.paths import Paths
from streamctl.store.state import MemoryStore

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


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    """A file that only has to exist (`add` and the config checks look no further); not media."""
    p = tmp_path / "in.mp4"
    p.write_bytes(b"not really media")
    return p


def cli(*args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "streamctl", *args], capture_output=True, text=True, timeout=timeout, **kw
    )


@dataclass(frozen=True)
class Ran:
    """What a command did, in-process: the exit code, and stdout and stderr apart."""

    returncode: int
    stdout: str
    stderr: str


# Commands that must never run in this process: `start` execs a supervisor in place of the caller (and
# `--detach` spawns one), `demo` runs a supervisor and a receiver, `--watch` and `--follow` never end.
NEVER_IN_PROCESS = {"start", "demo"}
ENDLESS = {"--watch", "-w", "--follow", "-f"}


def run_cli(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Ran:
    """Run `streamctl ARGS` in this process, through `streamctl.cli.main` as the console script does (the
    same `errors.reported()`, the same one-line messages and exit codes), with stdout and stderr captured
    apart. ENV, as for `cli`, is the whole environment (default: this one, with the `home` fixture's
    STREAMCTL_HOME); CWD the working directory. Whatever the command changes in the environment, the working
    directory, sys.argv, signal handlers or logging is put back afterwards."""
    from typer.testing import CliRunner

    from streamctl import cli as streamctl_cli

    command = next((a for a in args if not a.startswith("-")), None)
    if (command in NEVER_IN_PROCESS or ENDLESS & set(args)) and "--help" not in args:
        raise AssertionError(f"`streamctl {' '.join(args)}` cannot run in-process: use cli()")
    saved_env = dict(os.environ)
    unset: dict[str, str | None] = {k: None for k in os.environ if env is not None and k not in env}
    signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    handlers = _logging_handlers()
    code: int = 0
    runner = CliRunner()
    try:
        with (
            runner.isolation(env={**unset, **(env or {})}) as (out, err, _),
            contextlib.chdir(cwd or Path.cwd()),
            _argv(["streamctl", *args]),
        ):
            try:
                streamctl_cli.main()
            except SystemExit as e:
                code = _exit_code(e.code)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        for s, h in signals.items():
            signal.signal(s, h)
        _drop_new_handlers(handlers)
    return Ran(code, stdout, stderr)


def _exit_code(code: object) -> int:
    """The exit status of sys.exit(CODE), as the interpreter turns it into one."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")  # what Python prints for sys.exit("message"), then exits 1
    return 1


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    # argv[0] as when the installed console script runs (install-service names it in the unit)
    saved = sys.argv
    sys.argv = [str(Path(sys.executable).parent / argv[0]), *argv[1:]]
    try:
        yield
    finally:
        sys.argv = saved


def _loggers() -> list[logging.Logger]:
    known = list(logging.root.manager.loggerDict.values())  # placeholders too: not loggers, no handlers
    return [logging.getLogger(), *(lg for lg in known if isinstance(lg, logging.Logger))]


def _logging_handlers() -> dict[logging.Logger, list[logging.Handler]]:
    return {lg: list(lg.handlers) for lg in _loggers()}


def _drop_new_handlers(before: dict[logging.Logger, list[logging.Handler]]) -> None:
    for lg in _loggers():
        for h in list(lg.handlers):
            if h not in before.get(lg, []):
                lg.removeHandler(h)
                h.close()


def cli_bg(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_args(name: str, media: Path, rtmp: Rtmp, budget: str, *extra: str) -> list[str]:
    """`start NAME` of MEDIA to RTMP with the key NAME-streamkey (what the recordings are named by)."""
    return ["start", name, "-q", "--input", str(media), "--url", rtmp.url, "--key", f"{name}-streamkey",
            "--duration", budget, *extra]  # fmt: skip


def lavfi_start(
    name: str, url: str | Path, budget: str, *extra: str, ffmpeg: Path | None = None, quiet: bool = True
) -> list[str]:
    """`start NAME` of ffmpeg's test pattern (no input file needed) to URL, for BUDGET, with FFMPEG (often a
    fake_ffmpeg) and EXTRA options."""
    return ["start", name, *(["-q"] if quiet else []), "--input-format", "lavfi", "--input", "testsrc",
            "--url", str(url), "--duration", budget, *(["--ffmpeg", str(ffmpeg)] if ffmpeg else []), *extra]  # fmt: skip


def snapshot(home: Path) -> dict[str, bytes]:
    """Every file under HOME and its bytes: to show that a command changed nothing on disk."""
    if not home.exists():
        return {}
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


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


def live_ffmpeg_pid(home: Path, name: str) -> int:
    """The pid of stream NAME's ffmpeg, once its state says it is live."""

    def ready() -> int | None:
        st = read_state(home, name)
        if st["status"] == "live" and st["session"] and st["session"]["ffmpeg_pid"]:
            return int(st["session"]["ffmpeg_pid"])
        return None

    return int(wait_for(ready))


def gone(pid: int) -> bool:
    """PID has exited (a zombie not yet reaped counts as gone)."""
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def new_recording_second(server: Rtmp, key: str) -> None:
    """Wait until a new publish of KEY gets a recording of its own: nginx names each by the second (unix
    time) it began, so one more within that second would land in the same file."""
    seconds = [int(f.stem.rsplit("-", 1)[1]) for f in server.recordings(key)]
    last = max(seconds) if seconds else int(time.time())  # none yet: one may be about to appear
    while time.time() < last + 1.1:
        time.sleep(0.02)


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


# ---- the supervisor on a fake clock: hours of budget in milliseconds ------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if not event.is_set():
            self.t += timeout  # time passes only while the supervisor waits
        return event.is_set()


class FakeFfmpeg:
    """Streams media in step with the clock; exits with RC after RUN seconds, or 0 at its -t."""

    def __init__(self, clock: Clock, argv: list[str], plan: tuple[float, int] | None,
                 on_line: Callable[[str], None], on_eof: Callable[[], None]) -> None:  # fmt: skip
        self.clock, self.argv, self.on_line, self.on_eof = clock, argv, on_line, on_eof
        self.t_arg = float(argv[argv.index("-t") + 1])
        self.start = clock()
        run, rc = plan if plan else (self.t_arg, 0)
        self.end, self.rc = self.start + min(run, self.t_arg), (rc if run < self.t_arg else 0)
        self.pid = 999_999_999
        self.stopped = False

    def poll(self) -> int | None:
        now = min(self.clock(), self.end)
        ended = now >= self.end
        if now != getattr(self, "_last", None):  # one progress block per tick, like ffmpeg's 1 s period
            self._last = now
            media = min(self.t_arg, max(0.0, now - getattr(self, "start_media", self.start)))
            self.on_line(f"out_time_us={int(media * 1e6)}")
            self.on_line("progress=end" if ended and self.rc == 0 else "progress=continue")
        if ended:
            self.on_eof()
            return self.rc
        return None

    def stop(self, grace: float) -> int:
        self.stopped = True
        self.end = self.clock()
        self.rc = 255
        return self.poll() or 255

    def close(self) -> None:
        pass


def make(tmp_path: Path, budget: float, plans: list[tuple[float, int]], store: MemoryStore | None = None,  # type: ignore[no-untyped-def]
         **settings: float):  # fmt: skip
    clock = Clock()
    spawned: list[FakeFfmpeg] = []
    timers: list[float] = []

    def spawn(argv, on_progress, on_log, on_eof):  # type: ignore[no-untyped-def]
        plan = plans[len(spawned)] if len(spawned) < len(plans) else None
        p = FakeFfmpeg(clock, argv, plan, on_progress, on_eof)
        spawned.append(p)
        return p

    class Timer:
        def __init__(self, interval: float, fn: Callable[[], None]) -> None:
            timers.append(interval)

        def start(self) -> None: ...
        def cancel(self) -> None: ...

    spec = StreamSpec(name="unit", input="x.mp4", url="rtmp://h/live", key="k", budget_seconds=budget,
                      settings=Settings(**settings))  # type: ignore[arg-type]  # fmt: skip
    paths = Paths(config_file=tmp_path / "c.toml", state_dir=tmp_path / "state")
    store = (
        store or MemoryStore()
    )  # hours of checkpoints: in memory, through the same JSON, not fsync'd files
    sup = Supervisor(spec, paths, "ffmpeg", [LogListener(logging.getLogger("test"))], store=store,
                     clock=clock, wall=clock, spawn=spawn, timer_factory=Timer, wait=clock.wait)  # fmt: skip
    return sup, clock, spawned, timers, store
