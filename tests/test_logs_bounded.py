"""Bounded logs: the stream log and the event journal rotate at their size, keep a few old files, and lose
or split no line around a rotation, with several processes writing (store/rotating.py); FFmpeg lines
that repeat are collapsed; a week of a crash-looping stream stays under the cap."""

from __future__ import annotations

import multiprocessing
import re
from pathlib import Path

import pytest

from streamctl.output.logs import LOG_KEEP, LOG_MAX_BYTES, Collapser, StreamLog
from streamctl.store.rotating import RotatingFile, append, old_files
from tests.conftest import cli, fake_ffmpeg, lavfi_start

# room for every line (1.1 MB in 64 KiB files): whichever writer ends first (a loaded machine decides),
# each of its lines must be found, whole and in order; the rotations are still ~17
KEEP = 24


def _spew(path: str, n: int) -> None:
    f = RotatingFile(Path(path), 64 * 1024, KEEP)
    for i in range(n):
        f.write(f"A {i:06d} {'x' * 40}\n".encode())
    f.close()


def _now_and_then(path: str, n: int) -> None:
    for i in range(n):
        append(Path(path), f"B {i:06d}\n".encode(), 64 * 1024, KEEP)


def test_two_processes_rotating_one_file_lose_and_split_no_line(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "s.log"
    procs = [multiprocessing.Process(target=_spew, args=(str(log), 20000)),
             multiprocessing.Process(target=_now_and_then, args=(str(log), 1500))]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    files = [*old_files(log, KEEP), log]
    # rotated ~17 times; each writer rotates by what it has seen, so a file may pass the size by the
    # other's few lines, never by more than the other wrote in all
    assert len(files) >= 16 and all(f.stat().st_size <= 64 * 1024 + 1500 * 9 for f in files)
    assert sum(f.stat().st_size for f in files) == 20000 * 50 + 1500 * 9  # nothing lost, nothing twice
    lines = b"".join(f.read_bytes() for f in files).decode().splitlines()
    assert all(re.fullmatch(r"A \d{6} x{40}|B \d{6}", line) for line in lines)  # every line whole
    for who, total in (("A", 20000), ("B", 1500)):
        seqs = [int(line.split()[1]) for line in lines if line.startswith(who)]
        assert seqs == list(range(total))  # each writer's every line, in order, none missing
    assert log.stat().st_mode & 0o777 == 0o600 and log.parent.stat().st_mode & 0o777 == 0o700


def test_repeats_are_collapsed() -> None:
    out: list[str] = []
    c = Collapser(out.append)
    c("Input #0, mov")
    for i in range(1843):
        c(f"[h264 @ 0x55d0{i:04x}] error while decoding MB {i % 80} {i % 45}")
    c("Input #0, mov")
    c("Input #0, mov")
    c.flush()
    assert out == ["Input #0, mov", "[h264 @ 0x55d00000] error while decoding MB 0 0",
                   "... repeated 1842 times", "Input #0, mov", "... repeated 1 times"]  # fmt: skip


@pytest.mark.e2e
def test_a_spewing_ffmpeg_rotates_the_log_under_its_cap(home: Path, tmp_path: Path) -> None:
    body = (
        'for i in $(seq 1 3000); do echo "[h264 @ 0x$i] error while decoding MB $i" >&2; done\n'
        "head -c 600000 /dev/urandom | base64 -w 60 >&2\n"  # ~800 KB of lines that never repeat
        "exit 1\n"
    )
    ff = fake_ffmpeg(tmp_path, "spew", body)
    r = cli("add", "spew", "--input-format", "lavfi", "-i", "testsrc", "--url", str(tmp_path / "o.flv"),
            "--duration", "60s")  # fmt: skip
    assert r.returncode == 0, r.stderr
    config = home / "streamctl.toml"
    config.write_text(config.read_text() + "log_max_mb = 0.1\nlog_keep = 2\n")
    r = cli(
        *lavfi_start(
            "spew", tmp_path / "o.flv", "60s", "--retries", "1", "--restart-delay", "0.05", ffmpeg=ff
        )
    )
    assert r.returncode == 1  # it gave up: two sessions, each ~800 KB of stderr
    log = home / "state" / "logs" / "spew.log"
    files = [*old_files(log, 2), log]
    total = sum(f.stat().st_size for f in files)
    print(
        f"FIGURE spewing ffmpeg: ~1.6 MB of stderr, {total} bytes on disk in {len(files)} files (cap 3 x 100 KiB)"
    )
    assert len(files) == 3 and total <= 3 * 100 * 1024 + 200
    text = log.read_text()
    assert "gave up" in text or "giving up" in text  # the end is there, after every rotation
    assert not list(log.parent.glob("spew.log.3"))


def test_a_week_of_a_crash_loop_stays_under_the_cap(home: Path, tmp_path: Path) -> None:
    """One crash cycle as a real supervisor logs it, then 10080 of them (one a minute for a week) through
    the same log, with the default size."""
    ff = fake_ffmpeg(tmp_path, "crashy", "echo 'rtmp://127.0.0.1/live: Connection refused' >&2\nexit 1\n")
    r = cli(
        *lavfi_start(
            "loop", tmp_path / "o.flv", "60s", "--retries", "4", "--restart-delay", "0.05", ffmpeg=ff
        )
    )
    assert r.returncode == 1
    lines = (home / "state" / "logs" / "loop.log").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "session 2 " in line or "restart 1/" in line)
    end = next(i for i, line in enumerate(lines) if "restart 2/" in line)
    cycle = [line.split(" ", 3)[3] for line in lines[start:end]]  # one cycle's messages, without time/level
    per_cycle = sum(len(line) + 32 for line in cycle)
    path = tmp_path / "week" / "loop.log"
    log = StreamLog("loop", path, [], console=False)
    for _ in range(7 * 24 * 60):
        for message in cycle:
            log.warning("%s", message)
    log.close()
    files = [*old_files(path, LOG_KEEP), path]
    total = sum(f.stat().st_size for f in files)
    print(
        f"FIGURE a week of crash loops: {per_cycle} bytes a cycle, {10080 * per_cycle / 2**20:.1f} MiB written, "
        f"{total / 2**20:.1f} MiB on disk in {len(files)} files"
    )
    assert total <= (LOG_KEEP + 1) * LOG_MAX_BYTES
    assert 10080 * per_cycle <= (LOG_KEEP + 1) * LOG_MAX_BYTES  # the default keeps the whole week


class _Done(Exception):
    pass


def test_logs_follow_goes_on_into_the_new_file_after_a_rotation(tmp_path: Path) -> None:
    from streamctl.commands.watch import follow

    log = tmp_path / "s.log"
    log.write_text("one\n")
    got: list[str] = []
    calls = {"n": 0}

    def sleep(_: float) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            with log.open("a") as f:
                f.write("two, just before the rotation\n")
            log.rename(tmp_path / "s.log.1")
            log.write_text("three, in the new file\n")
        elif calls["n"] > 3:
            raise _Done

    with log.open() as f, pytest.raises(_Done):
        follow(f, got.append, sleep=sleep, path=log)
    assert got == ["one\n", "two, just before the rotation\n", "three, in the new file\n"]
