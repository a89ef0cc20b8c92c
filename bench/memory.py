"""Supervisor memory over a long run: PSS and RSS of one real `streamctl start` (copy mode, one 10 s clip
looped, to a local nginx-rtmp), sampled every minute, and the slope after warm-up.

    python bench/memory.py --minutes 120     # the figure in the README (2 hours)

Prints one line a minute and, at the end, the slopes in MiB/h from the 10th minute on (least squares) of
PSS, of its private anonymous part (Pss_Anon: what a leak grows; the file-backed rest moves with what
other processes share) and of RSS. Bytecode comes from a cache (PYTHONPYCACHEPREFIX), as from an
installed package: compiling the sources at start-up would leave the compiler's garbage in the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from streamctl import receiver


def kib(pid: int, table: str, key: str) -> int:
    with open(f"/proc/{pid}/{table}") as f:
        return int(next(line for line in f if line.startswith(key)).split()[1])


def slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=120.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="streamctl-mem-"))
    clip = work / "in.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25", "-f", "lavfi",
                    "-i", "sine", "-t", "10", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", str(clip)], check=True)  # fmt: skip
    rx = receiver.NginxRtmp.start_in(work / "nginx")
    env = {**os.environ, "STREAMCTL_HOME": str(work / "home"), "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "streamctl")], env=env, check=True)
    p = subprocess.Popen([sys.executable, "-m", "streamctl", "start", "mem", "-q", "-i", str(clip), "--url", rx.url,
                          "--key", "mem-streamkey", "--duration", f"{args.minutes}m"], env=env)  # fmt: skip
    t0, samples = time.monotonic(), list[tuple[float, float, float, float]]()
    try:
        while p.poll() is None:
            time.sleep(60)
            try:
                pss, rss = kib(p.pid, "smaps_rollup", "Pss:"), kib(p.pid, "status", "VmRSS:")
                anon = kib(p.pid, "smaps_rollup", "Pss_Anon:")
            except (OSError, StopIteration):
                break
            t = (time.monotonic() - t0) / 3600
            samples.append((t, pss / 1024, anon / 1024, rss / 1024))
            print(f"{t * 60:6.1f} min  PSS {pss / 1024:6.2f} MiB  Pss_Anon {anon / 1024:6.2f} MiB  "
                  f"RSS {rss / 1024:6.2f} MiB", flush=True)  # fmt: skip
    finally:
        p.wait()
        rx.stop()
    after = [s for s in samples if s[0] >= 10 / 60]
    if len(after) >= 2:
        span = after[-1][0] - after[0][0]
        for i, what in ((1, "PSS"), (2, "Pss_Anon"), (3, "RSS")):
            print(
                f"{what} slope after warm-up: {slope([(s[0], s[i]) for s in after]):+.3f} MiB/h over {span:.2f} h"
            )


if __name__ == "__main__":
    main()
