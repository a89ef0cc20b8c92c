"""streamctl benchmarks: delivered time, stop and restart latency, overhead, CLI latency, scale.

    python bench/run.py            # the whole run (~15 min on 2 cores); --quick for fewer repeats
    python bench/run.py --only cli # one section: delivered, stop, restart, overhead, cli, scale

Prints a markdown table and writes bench/results/latest.json. Every figure is the median of several
runs with min and max. Needs ffmpeg, ffprobe and nginx with the RTMP module (as the tests do); the
supervisord comparison installs supervisor from PyPI into bench/.venv-supervisord on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamctl.receiver import NginxRtmp  # noqa: E402

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
    """The same copy-mode command line streamctl uses (see streamctl.run.ffmpeg.build_argv)."""
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


# ---- 4. supervisor overhead vs supervisord ----------------------------------------------------------
def supervisord_python() -> str:
    venv = ROOT / "bench" / ".venv-supervisord"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([PY, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "supervisor"], check=True)
    return str(py)


def sample(proc: psutil.Process, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, peak RSS MiB) of PROC alone (not its children) over SECONDS."""
    c0, t0, peak = proc.cpu_times(), time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.5)
    c1 = proc.cpu_times()
    return 100 * (c1.user + c1.system - c0.user - c0.system) / (time.monotonic() - t0), peak / 2**20


def bench_overhead(work: Path, media: Path, seconds: float) -> None:
    print(f"4. supervisor overhead over {seconds:g} s of a copy-mode stream", flush=True)
    rtmp, _, env = section(work, "overhead")
    conf = work / "supervisord.conf"
    argv = ffmpeg_argv(media, f"{rtmp.url}/supd", None)
    conf.write_text(f"""[supervisord]
nodaemon=true
logfile={work}/supervisord.log
pidfile={work}/supervisord.pid
[program:ff]
command={" ".join(argv)}
autorestart=true
stopasgroup=true
""")
    try:
        sup = subprocess.Popen([PY, "-m", "streamctl", "start", "own", "-q", "--input", str(media), "--url",
                                rtmp.url, "--key", "overhead-key", "--duration", f"{seconds + 30:g}s"],
                               env=env)  # fmt: skip
        supd = subprocess.Popen([supervisord_python(), "-m", "supervisor.supervisord", "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(3)
        results: dict[str, tuple[float, float]] = {}
        threads = [
            threading.Thread(target=lambda: results.__setitem__("streamctl", sample(psutil.Process(sup.pid), seconds))),
            threading.Thread(target=lambda: results.__setitem__("supervisord", sample(psutil.Process(supd.pid), seconds))),
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in (sup, supd):
            p.send_signal(signal.SIGTERM)
            p.wait(30)
    finally:
        rtmp.stop()
    for who, (cpu, rss) in results.items():
        record(
            "overhead",
            f"{who}: CPU, peak RSS",
            {"cpu_percent": cpu, "rss_mib": rss},
            f"{cpu:.2f} % CPU, {rss:.1f} MiB RSS",
        )


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


def bench_cli(work: Path, repeats: int) -> None:
    print("5. CLI latency", flush=True)
    bare = work / "bare_typer.py"
    bare.write_text("import typer\napp = typer.Typer()\n@app.command()\ndef status() -> None:\n    print('ok')\n"
                    "if __name__ == '__main__':\n    app()\n")  # fmt: skip
    floor = timed([PY, str(bare)], dict(os.environ), repeats)
    record("cli", "bare Typer app, one command (the floor)", floor, fmt(floor, "ms", 0))
    for n in (1, 100, 1000):
        home = work / f"home-cli-{n}"
        fill_states(home, n)
        env = {**os.environ, "STREAMCTL_HOME": str(home)}
        for args in (["status"], ["status", "--json"]):
            s = timed([PY, "-m", "streamctl", *args], env, repeats)
            ratio = s["median"] / floor["median"]
            record(
                "cli",
                f"{' '.join(args)}, {n} streams",
                {**s, "ratio": ratio},
                f"{fmt(s, 'ms', 0)} = {ratio:.2f}x",
            )
    env = {**os.environ, "STREAMCTL_HOME": str(work / "home-cli-1000")}
    s = timed([PY, "-m", "streamctl", "sweep"], env, repeats)
    record("cli", "sweep, 1000 state files", s, fmt(s, "ms", 0))


# ---- 6. scale -----------------------------------------------------------------------------------------
def bench_scale(work: Path, media: Path, budget: float = 20.0) -> None:
    print("6. concurrent streams", flush=True)
    rtmp = NginxRtmp.start_in(work / "nginx-scale")
    try:
        for n in (1, 5, 10, 20):
            home = work / f"home-scale-{n}"
            env = {**os.environ, "STREAMCTL_HOME": str(home)}
            procs = [subprocess.Popen([PY, "-m", "streamctl", "start", f"n{n}s{i}", "-q", "--input", str(media),
                                       "--url", rtmp.url, "--key", f"scale-key-{n}-{i}", "--duration", f"{budget:g}s"],
                                      env=env) for i in range(n)]  # fmt: skip
            for i in range(n):  # all live: start-up (preflight ffprobe, connect) is not the steady state
                wait_state(home, f"n{n}s{i}", lambda st: st["status"] == "live", timeout=60)
            tree = [psutil.Process(p.pid) for p in procs]
            tree += [c for p in tree for c in p.children(recursive=True)]

            def total(get: Callable[[psutil.Process], float], tree: list[psutil.Process] = tree) -> float:
                out = 0.0
                for p in tree:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        out += get(p)
                return out

            c0 = total(lambda p: sum(p.cpu_times()[:2]))
            t0 = time.monotonic()
            rss = total(lambda p: p.memory_info().rss)
            time.sleep(budget - 8)
            cpu = 100 * (total(lambda p: sum(p.cpu_times()[:2])) - c0) / (time.monotonic() - t0)
            codes = [p.wait() for p in procs]
            time.sleep(1.1)
            errs = [sum(rtmp.durations(f"scale-key-{n}-{i}")) - budget for i in range(n)]
            worst = max(errs, key=abs)
            record(
                "scale",
                f"{n} streams",
                {"cpu_percent": cpu, "rss_mib": rss / 2**20, "errors": errs, "exit_codes": codes},
                f"{cpu:.1f} % CPU (of one core), {rss / 2**20:.0f} MiB RSS, delivered error "
                f"{min(errs):+.2f} … {max(errs):+.2f} s (worst {worst:+.2f}), exits {sorted(set(codes))}",
            )
    finally:
        rtmp.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, ~6 min)")
    ap.add_argument(
        "--only", choices=["delivered", "stop", "restart", "overhead", "cli", "scale"], action="append"
    )
    args = ap.parse_args()
    reps = 1 if args.quick else 3
    only = set(args.only or ["delivered", "stop", "restart", "overhead", "cli", "scale"])
    work = Path(tempfile.mkdtemp(prefix="streamctl-bench-"))
    media = make_media(work / "in.mp4")
    started = time.monotonic()
    if "delivered" in only:
        bench_delivered(work, media, reps)
    if "stop" in only:
        bench_stop(work, media, reps)
    if "restart" in only:
        bench_restart(work, media, 3 if args.quick else 7)
    if "overhead" in only:
        bench_overhead(work, media, 20 if args.quick else 60)
    if "cli" in only:
        bench_cli(work, 5 if args.quick else 15)
    if "scale" in only:
        bench_scale(work, media)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    meta = {"cores": os.cpu_count(), "python": sys.version.split()[0], "seconds": time.monotonic() - started}
    (out / "latest.json").write_text(json.dumps({"meta": meta, **RESULTS}, indent=2))
    print("\n| section | measure | figure (median (min … max, n)) |\n|---|---|---|")
    for section, measure, text in ROWS:
        print(f"| {section} | {measure} | {text} |")
    print(f"\nbench took {meta['seconds']:.0f} s; JSON in {out / 'latest.json'}")


if __name__ == "__main__":
    main()
