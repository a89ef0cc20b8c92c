"""streamctl benchmarks: delivered time, stop and restart latency, supervisor costs, CLI latency, scale.

    python bench/run.py                  # every section (~20 min on 2 cores); --quick for a smoke run
    python bench/run.py --only costs     # one section: delivered, stop, restart, costs, cli, scale
    python bench/run.py --only costs --seconds 600 --warmup 60   # a longer costs window
    python bench/run.py --only scale --streams 1,5,10,20,100 --budget 60

Sections (each function's docstring says what it measures and how):
- delivered: time the receiver got against a 30 s budget, through random SIGSEGVs, against homemade loops;
- stop: deadline -> a frozen (SIGSTOP) ffmpeg gone; restart: crash -> the new ffmpeg publishing;
- costs: each supervisor process alone (not its ffmpeg), side by side at the same time with supervisord
  running streamctl's own ffmpeg command (progress pipe included: the ratio), supervisord running a quiet
  one (no -progress), a bash restart loop and a waiting Python (the floor): CPU s/h, PSS, wake-ups/s,
  syscalls/s, as ratios;
- cli: one call of each read command at 1/100/1000 streams and `supervisorctl status`, interleaved, as
  ratios to a bare Typer app (the issue's target: <= 0.5x);
- scale: N streams started together (default 100): delivered error per stream, restarts, trouble in the
  logs, total PSS and CPU of supervisors and ffmpegs.

Prints a markdown table and writes bench/results/latest.json (sections of earlier runs are kept there,
each with the run that measured it). The bench reports, it does not assert. Needs ffmpeg, ffprobe and
nginx with the RTMP module (as the tests do), strace for syscalls (else n/a); the supervisord comparison
installs supervisor from PyPI into bench/.venv-supervisord on first use. streamctl is whatever
`python -m streamctl` imports (the cwd first, then PYTHONPATH); the JSON says which.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import procfs  # noqa: E402
from streamctl.receiver import NginxRtmp  # noqa: E402
from streamctl.receiver import free_port as receiver_free_port  # noqa: E402

PY = sys.executable
RESULTS: dict[str, Any] = {}
ROWS: list[tuple[str, str, str]] = []  # (section, measure, figure)


def stats(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def fmt(s: dict[str, float], unit: str = "s", digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} {unit} ({s['min']:.{digits}f} … {s['max']:.{digits}f}, n={s['n']})"


def record(section: str, measure: str, value: Any, text: str) -> None:
    RESULTS.setdefault(section, {})[measure] = value
    ROWS.append((section, measure, text))
    print(f"  {measure}: {text}", flush=True)


def make_media(path: Path, seconds: int = 10) -> Path:
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "96k", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def ffmpeg_argv(media: Path, url: str, t: float | None) -> list[str]:
    """A quiet copy-mode command line: streamctl's (streamctl.run.ffmpeg.build_argv) without its progress
    pipe, at loglevel error; bench_costs also runs build_argv's own for the like-for-like ratio."""
    argv = ["ffmpeg", "-hide_banner", "-nostats", "-loglevel", "error", "-re", "-stream_loop", "-1",
            "-fflags", "+genpts", "-i", str(media), "-c:v", "copy", "-c:a", "copy"]  # fmt: skip
    if t is not None:
        argv += ["-t", f"{t:.3f}"]
    return [*argv, "-f", "flv", "-flvflags", "no_duration_filesize", url]


# ---- 1. delivered time vs budget ------------------------------------------------------------------
class Strategy:
    """A way to run a timed stream through crashes. `crash_at` are wall seconds after the first start."""

    def __init__(self, name: str, media: Path, url: str, budget: float, crash_at: list[float]) -> None:
        self.name, self.media, self.url, self.budget = name, media, url, budget
        self.crash_at = sorted(crash_at)
        self.t0 = 0.0
        self.current: Callable[[], int | None] = lambda: None  # pid of the live ffmpeg

    def injector(self) -> None:
        for at in self.crash_at:
            time.sleep(max(0.0, self.t0 + at - time.monotonic()))
            while (pid := self.current()) is None:  # between sessions: crash the next one
                time.sleep(0.05)
            time.sleep(0.3)  # let it get going
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSEGV)

    def run(self) -> None:
        raise NotImplementedError


class Homemade(Strategy):
    """A supervisor loop as people write them, with one of three time limits."""

    def __init__(self, kind: str, *a: Any) -> None:
        super().__init__(*a)
        self.kind = kind  # reset | deadline | runtime_max
        self.proc: subprocess.Popen[bytes] | None = None
        self.current = lambda: self.proc.pid if self.proc and self.proc.poll() is None else None

    def run(self) -> None:
        self.t0 = time.monotonic()
        threading.Thread(target=self.injector, daemon=True).start()
        while True:
            if self.kind == "reset":  # the original app: every restart gets the full -t
                t: float | None = self.budget
            elif self.kind == "deadline":  # datarhei/Kubernetes: a wall deadline from the first start
                t = self.t0 + self.budget - time.monotonic()
                if t <= 0.5:
                    return
            else:  # systemd RuntimeMaxSec: each run killed after the limit, no -t
                t = None
            self.proc = subprocess.Popen(ffmpeg_argv(self.media, self.url, t), stdin=subprocess.DEVNULL)
            try:
                rc = self.proc.wait(timeout=self.budget if self.kind == "runtime_max" else None)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait()
                return  # the limit was reached: the run is over
            if rc == 0:
                return
            time.sleep(1.0)  # restart delay


class Streamctl(Strategy):
    def __init__(self, home: Path, *a: Any) -> None:
        super().__init__(*a)
        self.home = home

        def pid() -> int | None:
            try:
                st = json.loads((home / "state" / f"{self.name}.json").read_text())
            except (OSError, ValueError):
                return None
            s = st.get("session")
            return s["ffmpeg_pid"] if st.get("status") == "live" and s else None

        self.current = pid

    def run(self) -> None:
        self.t0 = time.monotonic()
        threading.Thread(target=self.injector, daemon=True).start()
        url, key = self.url.rsplit("/", 1)
        subprocess.run(
            [PY, "-m", "streamctl", "start", self.name, "-q", "--input", str(self.media), "--url", url, "--key",
             key, "--duration", f"{self.budget:g}s", "--restart-delay", "1", "--retries", "10"],
            env={**os.environ, "STREAMCTL_HOME": str(self.home)},
            check=False,
        )  # fmt: skip


def bench_delivered(work: Path, media: Path, repeats: int, budget: float = 30.0) -> None:
    print("1. delivered time vs budget", flush=True)
    rtmp = NginxRtmp.start_in(work / "nginx-delivered")
    rng = random.Random(2026)
    errors: dict[tuple[str, int], list[float]] = {}
    try:
        for crashes in (0, 1, 3):
            for rep in range(repeats):
                crash_at = [rng.uniform(3.0, budget - 5.0) for _ in range(crashes)]
                runners: list[Strategy] = []
                for kind in ("streamctl", "reset", "deadline", "runtime_max"):
                    key = f"{kind}-{crashes}-{rep}"
                    url = f"{rtmp.url}/{key}"
                    if kind == "streamctl":
                        runners.append(Streamctl(work / "home-delivered", key, media, url, budget, crash_at))
                    else:
                        runners.append(Homemade(kind, key, media, url, budget, crash_at))
                threads = [threading.Thread(target=r.run) for r in runners]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                time.sleep(1.1)  # recordings are named by the second
                for r in runners:
                    kind = r.name.split("-")[0]
                    errors.setdefault((kind, crashes), []).append(sum(rtmp.durations(r.name)) - budget)
    finally:
        rtmp.stop()
    for (kind, crashes), errs in sorted(errors.items()):
        s = stats(errs)
        record("delivered", f"{kind}, {crashes} crashes: error vs {budget:g} s budget", s, fmt(s, "s"))


def section(work: Path, name: str) -> tuple[NginxRtmp, Path, dict[str, str]]:
    """A section's own receiver and STREAMCTL_HOME, so sections never see each other's streams."""
    home = work / f"home-{name}"
    return NginxRtmp.start_in(work / f"nginx-{name}"), home, {**os.environ, "STREAMCTL_HOME": str(home)}


# ---- 2. stop latency when ffmpeg hangs at the deadline ----------------------------------------------
def bench_stop(work: Path, media: Path, repeats: int) -> None:
    print("2. stop latency, ffmpeg frozen near the deadline", flush=True)
    rtmp, home, env = section(work, "stop")
    lat = []
    try:
        for rep in range(repeats):
            name = f"stop{rep}"
            sup = subprocess.Popen([PY, "-m", "streamctl", "start", name, "-q", "--input", str(media), "--url",
                                    rtmp.url, "--key", f"bench-key-{rep}", "--duration", "6s"], env=env)  # fmt: skip
            session = wait_state(home, name, lambda st: st["status"] == "live" and st["session"])["session"]
            time.sleep(max(0.0, session["started_at"] + 4.0 - time.time()))
            pid = session["ffmpeg_pid"]
            os.kill(pid, signal.SIGSTOP)
            while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.005)
            lat.append(time.time() - (session["started_at"] + session["t_arg"]))
            sup.wait()
    finally:
        rtmp.stop()
    s = stats(lat)
    record("stop", "deadline -> frozen ffmpeg gone (timer margin 2 s, grace 5 s)", s, fmt(s))


def wait_state(
    home: Path, name: str, pred: Callable[[dict[str, Any]], Any], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = json.loads((home / "state" / f"{name}.json").read_text())
            if pred(st):
                return st  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.005)
    raise TimeoutError(name)


# ---- 3. restart latency -----------------------------------------------------------------------------
def bench_restart(work: Path, media: Path, repeats: int) -> None:
    print("3. restart latency", flush=True)
    rtmp, home, env = section(work, "restart")
    lat = []
    delay = 1.0
    home.mkdir(parents=True, exist_ok=True)
    (home / "streamctl.toml").write_text("[defaults]\nbackoff = 1\njitter = 0\n")  # a fixed 1 s delay
    (home / "streamctl.toml").chmod(0o600)
    try:
        name = "restart"
        sup = subprocess.Popen([PY, "-m", "streamctl", "start", name, "-q", "--input", str(media), "--url",
                                rtmp.url, "--key", "restart-key", "--duration", "120s", "--restart-delay", str(delay),
                                "--retries", "100"], env=env)  # fmt: skip
        for _ in range(repeats):
            pid = wait_state(home, name, lambda st: st["status"] == "live")["session"]["ffmpeg_pid"]
            time.sleep(1.5)
            crashed = time.time()
            os.kill(pid, signal.SIGSEGV)
            # "live" is written when the new ffmpeg's first progress block shows media going out
            wait_state(
                home, name, lambda st, pid=pid: st["status"] == "live" and st["session"]["ffmpeg_pid"] != pid
            )
            lat.append(time.time() - crashed - delay)
        sup.send_signal(signal.SIGTERM)
        sup.wait()
    finally:
        rtmp.stop()
    s = stats(lat)
    record("restart", "crash -> new ffmpeg publishing, minus the 1 s delay", s, fmt(s))


# ---- 4. what a supervisor costs, side by side ------------------------------------------------------
def supervisord_python() -> str:
    venv = ROOT / "bench" / ".venv-supervisord"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([PY, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "supervisor"], check=True)
    precompile(*venv.glob("lib/python*/site-packages"))
    return str(py)


PYCACHE = Path(tempfile.gettempdir()) / f"streamctl-bench-pycache-{sys.version_info[0]}.{sys.version_info[1]}"


def precompile(*dirs: Path) -> None:
    """Bytecode of everything under DIRS into PYCACHE (the PYTHONPYCACHEPREFIX), skipping what is fresh."""
    subprocess.run([PY, "-m", "compileall", "-q", "-j", "0", "-x", r"/(test|tests|idlelib|tkinter|lib2to3|turtledemo|ensurepip)/",
                    *map(str, dirs)], env={**os.environ, "PYTHONPYCACHEPREFIX": str(PYCACHE)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)  # fmt: skip


def make_720p(path: Path, seconds: int = 20) -> Path:
    """A 1280x720 25 fps clip at ~2.5 Mbit/s (libx264 ultrafast, a keyframe every 2 s, AAC 128k); noise
    on testsrc2, else the encoder reaches only ~1.5 Mbit/s on so simple a picture."""
    if not path.exists():
        subprocess.run(
            [
                "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
                "-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-b:v", "2400k", "-maxrate", "2500k",
                "-bufsize", "5000k", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(path),
            ],
            check=True,
        )  # fmt: skip
    return path


def media_kbits(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=bit_rate", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    try:
        return float(out) / 1000
    except ValueError:
        return 0.0


FLOOR_PY = "import threading, subprocess, signal; signal.pause()"


def bench_costs(work: Path, seconds: float, warmup: float, strace_seconds: float) -> None:
    """What each supervisor process alone costs (not its ffmpeg), five side by side at the same time, each
    supervising one ~2.5 Mbit/s 720p copy stream to the same local nginx-rtmp: `streamctl start`,
    supervisord (autorestart) with streamctl's own ffmpeg argv, supervisord with a quiet argv (no progress
    pipe, loglevel error), a bash restart loop, and a Python that only imported threading+subprocess
    and waits (the memory floor). CPU from schedstat (ns) summed over threads as CPU s/h, wake-ups as
    context switches per second, PSS from smaps_rollup; then syscalls/s by `strace -c -f` (after the CPU
    window: tracing slows what it traces)."""
    print(f"4. supervisor costs, side by side: {warmup:g} s warm-up, {seconds:g} s window", flush=True)
    clip = make_720p(work / "in-720p.mp4")
    kbits = media_kbits(clip)
    rtmp, _, env = section(work, "costs")
    budget = warmup + seconds + strace_seconds + 120
    argv = {
        who: ffmpeg_argv(clip, f"{rtmp.url}/costs-{who}-key", None) for who in ("supervisord-quiet", "bash")
    }
    # the comparison: supervisord running the very command streamctl runs, progress pipe and all
    # (supervisord then reads that pipe into its log, as streamctl reads it for its meter and watchdog)
    from streamctl.run.ffmpeg import build_argv
    from streamctl.store.config import Settings, StreamSpec

    spec = StreamSpec(name="costs", input=str(clip), url=rtmp.url, key="costs-supervisord-key",
                      budget_seconds=budget, loop=True, settings=Settings())  # fmt: skip
    argv["supervisord"] = build_argv("ffmpeg", spec, budget)
    conf = {}
    for who in ("supervisord", "supervisord-quiet"):
        conf[who] = work / f"{who}-costs.conf"
        conf[who].write_text(f"""[supervisord]
nodaemon=true
logfile={work}/{who}-costs.log
pidfile={work}/{who}-costs.pid
childlogdir={work}
[program:ff]
command={shlex.join(argv[who])}
autorestart=true
stopasgroup=true
""")
    supd_py = supervisord_python()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["streamctl"] = subprocess.Popen(
            [PY, "-m", "streamctl", "start", "costs", "-q", "--input", str(clip), "--url", rtmp.url, "--key",
             "costs-streamctl-key", "--duration", f"{budget:g}s"], env=env)  # fmt: skip
        for who in ("supervisord", "supervisord-quiet"):
            procs[who] = subprocess.Popen([supd_py, "-m", "supervisor.supervisord", "-c", str(conf[who])],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        loop = f"while true; do {shlex.join(argv['bash'])} </dev/null; sleep 1; done"
        procs["bash"] = subprocess.Popen(["bash", "-c", loop], start_new_session=True)
        procs["floor"] = subprocess.Popen([PY, "-c", FLOOR_PY])
        time.sleep(warmup)
        for who, p in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"costs: {who} ended during the warm-up (exit {p.returncode})")
        groups: dict[str, Callable[[], list[int]]] = {}
        for who, p in procs.items():
            groups[who] = lambda pid=p.pid: [pid]
            if who != "floor":
                groups[f"{who} ffmpeg"] = lambda pid=p.pid: procfs.children(pid, "ffmpeg")
        tracker = procfs.Tracker(groups)
        stat0 = {who: procfs.stat_cpu_seconds(p.pid) or 0.0 for who, p in procs.items()}
        busy0 = procfs.machine_busy()
        tracker.run(seconds)
        stat1 = {who: procfs.stat_cpu_seconds(p.pid) or 0.0 for who, p in procs.items()}
        busy1 = procfs.machine_busy()
        sys_calls = procfs.strace_counts({who: p.pid for who, p in procs.items()}, strace_seconds, work)
        alive = {who: p.poll() is None for who, p in procs.items()}
    finally:
        stop_costs(procs)
        time.sleep(1.1)  # recordings are named by the second
        delivered = {
            who: sum(rtmp.durations(f"costs-{who}-key"))
            for who in ("streamctl", "supervisord", "supervisord-quiet", "bash")
        }
        rtmp.stop()
    window = tracker.window
    per_hour = 3600 / window
    out: dict[str, dict[str, Any]] = {}
    for who in procs:
        g = tracker.group(who)
        ff = tracker.group(f"{who} ffmpeg") if who != "floor" else None
        calls = sys_calls.get(who)
        out[who] = {
            "cpu_s_per_h": g.cpu_s * per_hour,
            "cpu_s_per_h_stat_ticks": (stat1[who] - stat0[who]) * per_hour,
            "pss_mib": statistics.median(g.pss),
            "pss_mib_max": max(g.pss),
            "wakeups_per_s": g.switches / window,
            "syscalls_per_s": None if calls is None else calls / strace_seconds,
            "alive_at_end": alive[who],
        }
        if ff is not None:
            out[who] |= {"ffmpeg_cpu_s_per_h": ff.cpu_s * per_hour, "ffmpeg_pids": len(ff.pids),
                         "ffmpeg_pss_mib": statistics.median(ff.pss), "delivered_s": delivered[who]}  # fmt: skip
    RESULTS.setdefault("costs", {})["meta"] = {
        "window_s": window, "warmup_s": warmup, "strace_s": strace_seconds, "clip_kbits": kbits,
        "machine_busy_cores": (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]) * (os.cpu_count() or 1),
    }  # fmt: skip
    for who, r in out.items():
        sc = "n/a" if r["syscalls_per_s"] is None else f"{r['syscalls_per_s']:.1f}"
        text = (f"{r['cpu_s_per_h']:.2f} CPU s/h, {r['pss_mib']:.1f} MiB PSS, {r['wakeups_per_s']:.2f} wake-ups/s, "
                f"{sc} syscalls/s")  # fmt: skip
        if "ffmpeg_cpu_s_per_h" in r:
            text += (f"; its ffmpeg {r['ffmpeg_cpu_s_per_h']:.0f} CPU s/h ({r['ffmpeg_pids']} pid(s)), "
                     f"delivered {r['delivered_s']:.0f} s")  # fmt: skip
        if not r["alive_at_end"]:
            text += "; ENDED DURING THE RUN"
        record("costs", who, r, text)
    s, d, f = out["streamctl"], out["supervisord"], out["floor"]
    ratio = s["cpu_s_per_h"] / d["cpu_s_per_h"] if d["cpu_s_per_h"] else float("inf")
    record("costs", "streamctl / supervisord CPU", ratio, f"{ratio:.2f}x")
    q = out["supervisord-quiet"]
    rq = s["cpu_s_per_h"] / q["cpu_s_per_h"] if q["cpu_s_per_h"] else float("inf")
    record("costs", "streamctl / supervisord-quiet CPU", rq, f"{rq:.2f}x (its ffmpeg without -progress)")
    wr = s["wakeups_per_s"] / d["wakeups_per_s"] if d["wakeups_per_s"] else float("inf")
    record("costs", "streamctl / supervisord wake-ups", wr, f"{wr:.2f}x")
    if s["syscalls_per_s"] is not None and d["syscalls_per_s"]:
        sr = s["syscalls_per_s"] / d["syscalls_per_s"]
        record("costs", "streamctl / supervisord syscalls", sr, f"{sr:.2f}x")
    extra = s["pss_mib"] - f["pss_mib"]
    record(
        "costs",
        "streamctl PSS - floor PSS",
        extra,
        f"{extra:+.1f} MiB (supervisord - floor: {d['pss_mib'] - f['pss_mib']:+.1f} MiB)",
    )


def stop_costs(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for who, p in procs.items():
        if p.poll() is not None:
            continue
        with contextlib.suppress(ProcessLookupError):
            if who == "bash":
                os.killpg(p.pid, signal.SIGTERM)  # the loop and its ffmpeg
            else:
                p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---- 5. CLI latency ---------------------------------------------------------------------------------
def timed(argv: list[str], env: dict[str, str], n: int) -> dict[str, float]:
    subprocess.run(argv, env=env, capture_output=True, check=True)  # warm the page cache
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        xs.append((time.perf_counter() - t0) * 1000)
    return stats(xs)


def fill_states(home: Path, n: int) -> None:
    from streamctl.store.paths import Paths
    from streamctl.store.state import StateStore

    store = StateStore(Paths(config_file=home / "streamctl.toml", state_dir=home / "state"))
    for i in range(n):
        with store.update(f"s{i:04d}", now=time.time()) as st:
            st.status, st.budget_seconds, st.runtime_seconds = "offline", 3600.0, float(i % 3600)


def write_config(home: Path, n: int, media: Path) -> None:
    """A streamctl.toml with the N streams fill_states made (s0000 ...), so `list` has them to list."""
    lines = ["[defaults]\nretries = 3\n"]
    for i in range(n):
        lines.append(f'[streams.s{i:04d}]\ninput = "{media}"\nurl = "rtmp://127.0.0.1:1935/live"\n'
                     f'key = "bench-key-{i:04d}"\nbudget = "1h"\nmode = "copy"\n')  # fmt: skip
    path = home / "streamctl.toml"
    path.write_text("\n".join(lines))
    path.chmod(0o600)


def supervisord_with(work: Path, n: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    """A supervisord running N `sleep` programs, all RUNNING; and the argv of `supervisorctl status`."""
    py = supervisord_python()
    conf = work / f"supervisord-{n}.conf"
    programs = "".join(
        f"[program:p{i:03d}]\ncommand=sleep 100000\nstartsecs=0\nautorestart=true\n" for i in range(n)
    )
    conf.write_text(f"""[unix_http_server]
file={work}/supervisord-{n}.sock
[supervisorctl]
serverurl=unix://{work}/supervisord-{n}.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisord]
nodaemon=true
logfile={work}/supervisord-{n}.log
pidfile={work}/supervisord-{n}.pid
childlogdir={work}
{programs}""")
    proc = subprocess.Popen([py, "-m", "supervisor.supervisord", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    ctl = [str(Path(py).parent / "supervisorctl"), "-c", str(conf), "status"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = subprocess.run(ctl, capture_output=True, text=True, check=False)
        if r.stdout.count("RUNNING") == n:
            return proc, ctl
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"supervisord did not get {n} programs RUNNING: {r.stdout[-300:]} {r.stderr[-300:]}")


def _lines_with(*names: str, lines: int = 0) -> Callable[[str], bool]:
    return lambda out: all(n in out for n in names) and len(out.splitlines()) >= lines


def _json_list(n: int | None) -> Callable[[str], bool]:
    def ok(out: str) -> bool:
        try:
            v = json.loads(out)
        except ValueError:
            return False
        return isinstance(v, list) and (n is None or len(v) == n)

    return ok


def bench_cli(work: Path, media: Path, repeats: int) -> None:
    """Wall time of one CLI call (fork+exec to exit), interleaved round-robin across every command and size
    (each round in a rotated order), median (min ... max): a bare Typer app with one command (the floor),
    streamctl `status`, `status --json`, `runtime NAME`, `list`, `sweep --json` at 1, 100 and 1000 state
    files (and as many configured streams), and `supervisorctl status` with 100 programs. Every call must
    exit 0 with the expected output (the streams listed, the JSON parsed), or the bench stops."""
    print("5. CLI latency", flush=True)
    bare = work / "bare_typer.py"
    bare.write_text("import typer\napp = typer.Typer()\n@app.command()\ndef status() -> None:\n    print('ok')\n"
                    "if __name__ == '__main__':\n    app()\n")  # fmt: skip
    cmds: list[tuple[str, list[str], dict[str, str], Callable[[str], bool]]] = [
        (
            "bare Typer app, one command (the floor)",
            [PY, str(bare)],
            dict(os.environ),
            lambda o: o.strip() == "ok",
        )
    ]
    for n in (1, 100, 1000):
        home = work / f"home-cli-{n}"
        fill_states(home, n)
        write_config(home, n, media)
        env = {**os.environ, "STREAMCTL_HOME": str(home)}
        sc = [PY, "-m", "streamctl"]
        last = f"s{n - 1:04d}"
        cmds += [
            (f"status, {n} streams", [*sc, "status"], env, _lines_with("s0000", last, lines=n)),
            (f"status --json, {n} streams", [*sc, "status", "--json"], env, _json_list(n)),
            (
                f"runtime s0000, {n} streams",
                [*sc, "runtime", "s0000"],
                env,
                _lines_with("s0000", "total runtime"),
            ),
            (f"list, {n} streams", [*sc, "list"], env, _lines_with("s0000", last, lines=n)),
            (f"sweep --json, {n} state files", [*sc, "sweep", "--json"], env, _json_list(None)),
        ]
    supd, ctl = supervisord_with(work, 100)
    cmds.append(
        ("supervisorctl status, 100 programs", ctl, dict(os.environ), lambda o: o.count("RUNNING") == 100)
    )
    times: dict[str, list[float]] = {label: [] for label, *_ in cmds}
    try:
        for rnd in range(repeats + 1):  # round 0 warms the page cache and is not counted
            k = rnd % len(cmds)
            for label, argv, env, ok in cmds[k:] + cmds[:k]:
                t0 = time.perf_counter()
                r = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
                dt = (time.perf_counter() - t0) * 1000
                if r.returncode != 0 or not ok(r.stdout):
                    raise RuntimeError(
                        f"cli: {label} failed (exit {r.returncode}): {r.stdout[-300:]!r} {r.stderr[-500:]!r}"
                    )
                if rnd:
                    times[label].append(dt)
    finally:
        supd.terminate()
        supd.wait(30)
    floor = stats(times[cmds[0][0]])
    record("cli", cmds[0][0], floor, fmt(floor, "ms", 0))
    for label, *_ in cmds[1:]:
        s = stats(times[label])
        ratio = s["median"] / floor["median"]
        mark = (
            ""
            if label.startswith("supervisorctl")
            else (" (target <= 0.5x: met)" if ratio <= 0.5 else " (target <= 0.5x: NOT met)")
        )
        record("cli", label, {**s, "ratio": ratio}, f"{fmt(s, 'ms', 0)} = {ratio:.2f}x the floor{mark}")
    ctl_median = stats(times[cmds[-1][0]])["median"]
    for label in ("status, 100 streams", "status --json, 100 streams"):
        r = stats(times[label])["median"] / ctl_median
        record("cli", f"{label} / supervisorctl status, 100 programs", r, f"{r:.2f}x")


# ---- 6. scale -----------------------------------------------------------------------------------------
# What streamctl writes to a stream's log (streamctl/output/logs.py) when something went wrong.
LOG_MARKS = {
    "timer_fired": "backup timer fired",
    "overran": "watchdog: the session is past its time",
    "stall": "no media progress for",
    "ingest_jam": "the ingest stopped reading",
    "restart": "; restart ",
    "slow": "real time: the ingest gets less video",
    "failed": "ffmpeg failed",
}


def log_counts(home: Path, name: str) -> dict[str, int]:
    try:
        text = (home / "state" / "logs" / f"{name}.log").read_text(errors="replace")
    except OSError:
        return dict.fromkeys(LOG_MARKS, -1)
    return {k: text.count(mark) for k, mark in LOG_MARKS.items()}


def bench_scale(work: Path, media: Path, counts: list[int], budget: float) -> None:
    """N copy streams started together (all `streamctl start` at once), each with the same BUDGET: per stream
    the delivered time at the receiver (sum of its recordings, by ffprobe) minus the budget, restarts and
    sessions from its state file, and the log lines of trouble (backup timer fired, stall, ingest stopped
    reading, slow, restart); while all are live: total PSS of the supervisors and of the ffmpegs
    (separately), CPU of supervisors, ffmpegs and nginx (schedstat), and the machine's busy cores."""
    print(f"6. concurrent streams {counts}, {budget:g} s budget each", flush=True)
    kbits = media_kbits(media)
    for n in counts:
        rtmp = NginxRtmp.start_in(work / f"nginx-scale-{n}")
        home = work / f"home-scale-{n}"
        env = {**os.environ, "STREAMCTL_HOME": str(home)}
        names = [f"n{n}s{i}" for i in range(n)]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            t_start = time.monotonic()
            procs += [subprocess.Popen([PY, "-m", "streamctl", "start", name, "-q", "--input", str(media), "--url",
                                       rtmp.url, "--key", f"scale-key-{n}-{i}", "--duration", f"{budget:g}s"],
                                      env=env) for i, name in enumerate(names)]  # fmt: skip
            not_live = []
            deadline = t_start + max(60, 2 * budget)
            for name in names:  # all live: start-up (preflight ffprobe, connect) is not the steady state
                try:
                    wait_state(
                        home, name, lambda st: st["status"] == "live", max(0.1, deadline - time.monotonic())
                    )
                except TimeoutError:
                    not_live.append(name)
            all_live = time.monotonic() - t_start
            sups = [p.pid for p in procs]
            nginx_pids = [rtmp.proc.pid, *rtmp.worker_pids()] if rtmp.proc else []
            tracker = procfs.Tracker({
                "supervisors": lambda sups=sups: [p for p in sups if psutil.pid_exists(p)],
                "ffmpegs": lambda sups=sups: procfs.children_of(sups, "ffmpeg"),
                "nginx": lambda pids=nginx_pids: pids,
            })  # fmt: skip
            # the window: while every stream should still be live (the first ended budget s after it went live)
            window = budget - all_live - 5
            busy0 = procfs.machine_busy()
            if window >= 5:
                tracker.run(window, every=max(2.0, window / 10))
            busy1 = procfs.machine_busy()
            codes = []
            for p in procs:
                try:
                    codes.append(p.wait(budget + 180))
                except subprocess.TimeoutExpired:
                    p.terminate()
                    codes.append(p.wait(30))
            time.sleep(1.1)  # recordings are named by the second
            errs = [sum(rtmp.durations(f"scale-key-{n}-{i}")) - budget for i in range(n)]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            rtmp.stop()
        per_stream = []
        for name, err, code in zip(names, errs, codes, strict=True):
            try:
                st = json.loads((home / "state" / f"{name}.json").read_text())
            except (OSError, ValueError):
                st = {}
            per_stream.append({"name": name, "error_s": err, "exit": code, "restarts": st.get("restarts"),
                               "sessions": len(st.get("sessions") or []), "stop_reason": st.get("stop_reason"),
                               **log_counts(home, name)})  # fmt: skip
        within = sum(abs(e) <= 0.5 for e in errs)
        sums = {k: sum(max(0, r[k]) for r in per_stream) for k in LOG_MARKS}
        with_mark = {k: sum(r[k] > 0 for r in per_stream) for k in LOG_MARKS}
        restarted = sum(bool(r["restarts"]) for r in per_stream)
        g = {k: tracker.group(k) for k in ("supervisors", "ffmpegs", "nginx")} if window >= 5 else {}
        w = tracker.window or 1.0
        res: dict[str, Any] = {
            "budget_s": budget, "clip_kbits": kbits, "all_live_after_s": all_live, "not_live": not_live,
            "window_s": tracker.window, "within_0_5_s": within, "error_min": min(errs), "error_max": max(errs),
            "error_median": statistics.median(errs), "streams_restarted": restarted, "log_lines": sums,
            "streams_with_log_line": with_mark, "exit_codes": sorted(set(codes)), "per_stream": per_stream,
            "machine_busy_cores": (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]) * (os.cpu_count() or 1),
        }  # fmt: skip
        for k, grp in g.items():
            res[f"{k}_cpu_cores"] = grp.cpu_s / w
            res[f"{k}_pss_mib"] = statistics.median(grp.pss) if grp.pss else 0.0
            res[f"{k}_count"] = len(grp.pids)
        verdict = (within == n and not sums["timer_fired"] and not sums["stall"] and not sums["ingest_jam"]
                   and not restarted and not not_live)  # fmt: skip
        text = (f"delivered error {min(errs):+.2f} … {max(errs):+.2f} s (median {statistics.median(errs):+.2f}), "
                f"{within}/{n} within ±0.5 s; restarted {restarted}, timer fired in {with_mark['timer_fired']}, "
                f"stall in {with_mark['stall']}, ingest jam in {with_mark['ingest_jam']}, slow in {with_mark['slow']}; "
                f"all live after {all_live:.0f} s; exits {sorted(set(codes))}")  # fmt: skip
        if g:
            text += (f"; PSS supervisors {res['supervisors_pss_mib']:.0f} MiB, ffmpegs {res['ffmpegs_pss_mib']:.0f} MiB; "
                     f"CPU (cores) supervisors {res['supervisors_cpu_cores']:.2f}, ffmpegs {res['ffmpegs_cpu_cores']:.2f}, "
                     f"nginx {res['nginx_cpu_cores']:.2f}, machine {res['machine_busy_cores']:.2f} of {os.cpu_count()}")  # fmt: skip
        text += " — target met" if verdict else " — target NOT met"
        record("scale", f"{n} streams", res, text)


SECTIONS = ["delivered", "stop", "restart", "costs", "cli", "scale", "serve"]


def bench_serve(work: Path, media: Path, repeats: int) -> None:
    """`streamctl serve`: the wall time of GET /api/streams with 100 state files and configured streams, as
    a client sees it (one keep-alive connection, and a new connection a request, as curl or an uptime monitor
    makes), beside `streamctl status --json` on the same files (the peer: the same rows from the CLI), and
    the server's PSS after the requests. Every answer must be 200 with 100 rows."""
    import http.client

    print("7. serve", flush=True)
    home = work / "home-serve"
    fill_states(home, 100)
    write_config(home, 100, media)
    token = "bench-token-0123456789abcdef"
    env = {**os.environ, "STREAMCTL_HOME": str(home), "STREAMCTL_TOKEN": token}
    port = receiver_free_port()
    proc = subprocess.Popen([PY, "-m", "streamctl", "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}

    def ask(conn: http.client.HTTPConnection) -> None:
        conn.request("GET", "/api/streams", headers=headers)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200 and len(json.loads(body)) == 100, (r.status, body[:200])

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ask(http.client.HTTPConnection("127.0.0.1", port, timeout=10))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        n = 40 * repeats
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        same, fresh = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            ask(kept)
            same.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            ask(c)
            c.close()
            fresh.append((time.perf_counter() - t0) * 1000)
        kept.close()
        cli = timed([PY, "-m", "streamctl", "status", "--json"], env, 5 * repeats)
        p95 = sorted(same)[int(0.95 * len(same)) - 1]
        record("serve", "GET /api/streams, 100 streams, keep-alive", {**stats(same), "p95": p95},
               f"{fmt(stats(same), 'ms', 1)}, p95 {p95:.1f} ms")  # fmt: skip
        record(
            "serve", "GET /api/streams, 100 streams, new connection", stats(fresh), fmt(stats(fresh), "ms", 1)
        )
        record("serve", "streamctl status --json, 100 streams (the peer)", cli, fmt(cli, "ms", 1))
        pss = procfs.pss_mib(proc.pid) or 0.0
        record("serve", "serve PSS after the requests", pss, f"{pss:.1f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def git_rev() -> str:
    r = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and shorter windows (a smoke run)")
    ap.add_argument("--only", choices=[*SECTIONS, "overhead"], action="append",
                    help="run only this section (repeatable); overhead is the old name of costs")  # fmt: skip
    ap.add_argument("--seconds", type=float, help="costs: the measurement window (default 180, --quick 40)")
    ap.add_argument("--warmup", type=float, help="costs: seconds before the window (default 30, --quick 10)")
    ap.add_argument(
        "--strace-seconds", type=float, default=20.0, help="costs: syscalls counted over this long"
    )
    ap.add_argument(
        "--streams", default="100", help="scale: comma-separated stream counts, e.g. 1,5,10,20,100"
    )
    ap.add_argument("--budget", type=float, default=60.0, help="scale: each stream's budget in seconds")
    ap.add_argument("--scale-clip", choices=["small", "720p"], default="small",
                    help="scale: the 320x240 test clip (default) or the ~2.5 Mbit/s 720p one of costs")  # fmt: skip
    args = ap.parse_args()
    reps = 1 if args.quick else 3
    only = {"costs" if o == "overhead" else o for o in (args.only or SECTIONS)}
    work = Path(tempfile.mkdtemp(prefix="streamctl-bench-"))
    # Bytecode as installed programs have it (pip compiles on install): with PYTHONDONTWRITEBYTECODE (set
    # on these machines) and no __pycache__ in the source tree, every call would compile streamctl from
    # source (~25 ms a call, and the compiler's leftovers in each supervisor's heap). Every Python the bench
    # runs reads its bytecode from one cache outside the source tree, filled once for the standard library
    # and the site-packages (~30 s the first time) so that no process measured compiles anything.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    precompile(
        Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"]), ROOT / "streamctl"
    )
    media = make_media(work / "in.mp4")
    started = time.monotonic()
    if "delivered" in only:
        bench_delivered(work, media, reps)
    if "stop" in only:
        bench_stop(work, media, reps)
    if "restart" in only:
        bench_restart(work, media, 3 if args.quick else 7)
    if "costs" in only:
        seconds = args.seconds or (40.0 if args.quick else 180.0)
        warmup = args.warmup if args.warmup is not None else (10.0 if args.quick else 30.0)
        bench_costs(work, seconds, warmup, args.strace_seconds)
    if "cli" in only:
        bench_cli(work, media, 5 if args.quick else 15)
    if "scale" in only:
        clip = media if args.scale_clip == "small" else make_720p(work / "in-720p.mp4")
        bench_scale(work, clip, [int(x) for x in args.streams.split(",")], args.budget)
    if "serve" in only:
        bench_serve(work, media, 1 if args.quick else 5)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    code = subprocess.run([PY, "-c", "import streamctl; print(streamctl.__file__)"], capture_output=True, text=True,
                          check=False).stdout.strip()  # fmt: skip
    meta = {"cores": os.cpu_count(), "python": sys.version.split()[0], "seconds": time.monotonic() - started,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_rev(), "streamctl": code,
            "argv": sys.argv[1:], "pycache_prefix": os.environ["PYTHONPYCACHEPREFIX"]}  # fmt: skip
    # latest.json keeps the sections of earlier runs: each section says which run measured it
    path = out / "latest.json"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    for name in RESULTS:
        RESULTS[name]["run"] = meta
    kept.update(RESULTS)
    kept["meta"] = meta
    path.write_text(json.dumps(kept, indent=2))
    print("\n| section | measure | figure (median (min … max, n)) |\n|---|---|---|")
    for section, measure, text in ROWS:
        print(f"| {section} | {measure} | {text} |")
    print(f"\nbench took {meta['seconds']:.0f} s; streamctl from {code}; JSON in {path}")


if __name__ == "__main__":
    main()
