"""What a process costs, read from /proc: CPU time, wake-ups, PSS, syscalls (by strace).

CPU is the first field of /proc/PID/task/TID/schedstat (ns on CPU, exact, not tick-sampled), wake-ups are
voluntary + nonvoluntary context switches from /proc/PID/task/TID/status, both summed over threads. A thread's
counters vanish with it, so a Tracker samples every few seconds and keeps each thread's last reading: a thread
that ends between two samples loses at most one interval.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def tids(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def thread_counters(pid: int, tid: int) -> tuple[int, int] | None:
    """(ns on CPU, context switches) of one thread, None once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            ns = int(f.read().split()[0])
        switches = 0
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    switches += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return ns, switches


def pss_mib(pid: int) -> float | None:
    """Proportional set size (shared pages divided among their sharers), MiB; None once PID is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def stat_cpu_seconds(pid: int) -> float | None:
    """utime + stime of PID from /proc/PID/stat (clock ticks; includes its ended threads, not children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int, name: str | None = None) -> list[int]:
    """Pids of PID's descendants (named NAME if given)."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for k in kids:
        with contextlib.suppress(psutil.Error):
            if name is None or k.name() == name:
                out.append(k.pid)
    return out


def children_of(parents: list[int], name: str) -> list[int]:
    """Pids of the direct children named NAME of any of PARENTS, from one pass over /proc (asking psutil
    for each parent's children would scan every process once per parent)."""
    want = set(parents)
    out = []
    for p in psutil.process_iter(["ppid", "name"]):
        if p.info["ppid"] in want and p.info["name"] == name:
            out.append(p.pid)
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) seconds of all cores from /proc/stat, for the machine's load over a window."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tck = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / tck, sum(v[:8]) / tck


@dataclass
class Group:
    """Totals of one group of processes over a Tracker's window."""

    cpu_s: float = 0.0
    switches: int = 0
    pids: set[int] = field(default_factory=set)
    pss: list[float] = field(default_factory=list)  # the group's summed PSS at each sample


class Tracker:
    """Samples the threads of groups of processes (name -> a function giving the group's pids now)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], pss: bool = True) -> None:
        self.groups, self.want_pss = groups, pss
        self.first: dict[tuple[str, int, int], tuple[int, int]] = {}
        self.last: dict[tuple[str, int, int], tuple[int, int]] = {}
        self.seen: dict[str, set[int]] = {g: set() for g in groups}
        self.pss: dict[str, list[float]] = {g: [] for g in groups}
        self.t0: float | None = None
        self.t1 = 0.0

    def sample(self) -> None:
        started = self.t0 is not None
        now = time.monotonic()
        for g, pids_of in self.groups.items():
            total_pss = 0.0
            for pid in pids_of():
                self.seen[g].add(pid)
                for tid in tids(pid):
                    c = thread_counters(pid, tid)
                    if c is None:
                        continue
                    key = (g, pid, tid)
                    # a thread seen for the first time after the first sample was born in the window
                    self.first.setdefault(key, c if not started else (0, 0))
                    self.last[key] = c
                if self.want_pss:
                    total_pss += pss_mib(pid) or 0.0
            if self.want_pss:
                self.pss[g].append(total_pss)
        if not started:
            self.t0 = now
        self.t1 = now

    def run(self, seconds: float, every: float = 2.0) -> None:
        """Sample now and every EVERY seconds for SECONDS."""
        self.sample()
        assert self.t0 is not None
        end = self.t0 + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(every, left))
            self.sample()

    @property
    def window(self) -> float:
        return self.t1 - (self.t0 or self.t1)

    def group(self, g: str) -> Group:
        out = Group(pids=set(self.seen[g]), pss=list(self.pss[g]))
        for key, (ns, sw) in self.last.items():
            if key[0] == g:
                ns0, sw0 = self.first[key]
                out.cpu_s += (ns - ns0) / 1e9
                out.switches += sw - sw0
        return out


def strace_counts(pids: dict[str, int], seconds: float, work: Path) -> dict[str, int | None]:
    """Syscalls per process over SECONDS (`strace -c -f -p PID`, all threads; all PIDS at once), or None
    where strace is missing or could not attach. Tracing slows the traced process: do not measure CPU
    while this runs."""
    import shutil

    if shutil.which("strace") is None:
        return dict.fromkeys(pids)
    procs = {}
    for who, pid in pids.items():
        out = work / f"strace-{who}.txt"
        with (work / f"strace-{who}.err").open("w") as err:
            procs[who] = (
                subprocess.Popen(
                    ["strace", "-c", "-f", "-qq", "-o", str(out), "-p", str(pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                ),
                out,
            )
    time.sleep(seconds)
    counts: dict[str, int | None] = {}
    for who, (p, out) in procs.items():
        p.send_signal(signal.SIGINT)  # strace detaches and writes its summary
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        failed = "ptrace" in out.with_suffix(".err").read_text()  # e.g. attach: Operation not permitted
        counts[who] = None if failed else _strace_total(out)
    return counts


def _strace_total(path: Path) -> int | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        f = line.split()
        if f and f[-1] == "total" and len(f) >= 5:
            return int(f[3])
    return 0  # strace writes nothing when the process made no syscall at all
