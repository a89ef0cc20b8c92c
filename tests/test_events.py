"""The event journal on disk (store/events.py): bounded by rotation, safe with several processes writing at
once (the supervisor, sweep, the tick), no line lost or split around a rotation; and what the listener
makes of a run's events (output/alerts.py)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from streamctl.output.alerts import AlertListener
from streamctl.run.events import Event, Kind
from streamctl.store import events as journal
from streamctl.store.paths import Paths
from tests.conftest import run_cli


def paths(home: Path) -> Paths:
    return Paths(config_file=home / "streamctl.toml", state_dir=home / "state")


def test_the_journal_rotates_at_its_size_and_keeps_a_few_files(tmp_path: Path) -> None:
    p = paths(tmp_path)
    for i in range(2000):
        journal.append(p, "s", {"seq": i, "pad": "x" * 60}, max_bytes=16 * 1024)
    files = journal.files(p, "s")
    assert len(files) == journal.KEEP + 1
    assert all(f.stat().st_size <= 16 * 1024 for f in files)
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    seqs = [r["seq"] for r in journal.read(p, "s")]
    assert seqs == list(range(seqs[0], 2000))  # the newest, none missing across the rotations
    assert journal.read(p, "s", 3) == [{"seq": i, "pad": "x" * 60} for i in (1997, 1998, 1999)]


def _writer(home: str, who: int, n: int) -> None:
    p = paths(Path(home))
    for i in range(n):
        journal.append(p, "s", {"who": who, "seq": i}, max_bytes=32 * 1024)


def test_writers_in_several_processes_lose_and_split_no_line(tmp_path: Path) -> None:
    procs = [multiprocessing.Process(target=_writer, args=(str(tmp_path), w, 1500)) for w in range(3)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
        assert pr.exitcode == 0
    p = paths(tmp_path)
    raw = b"".join(f.read_bytes() for f in journal.files(p, "s"))
    lines = raw.splitlines()
    assert all(json.loads(line) for line in lines)  # every line whole
    kept = [json.loads(line) for line in lines]
    assert len(journal.files(p, "s")) >= 3  # ~100 KiB in 32 KiB files: rotated twice at least, all kept
    for w in range(3):
        seqs = [r["seq"] for r in kept if r["who"] == w]
        assert seqs == list(range(1500))  # every line of each writer, once, in order
    assert sum(f.stat().st_size for f in journal.files(p, "s")) <= (journal.KEEP + 1) * 32 * 1024


def test_the_listener_writes_one_record_per_change_with_the_key_masked(home: Path) -> None:
    p = Paths.from_env()
    listen = AlertListener(p, "s", ["sk-live-secret"])

    def ev(kind: Kind, reason: str | None = None, **figures: object) -> None:
        listen(Event("s", kind, 1000.0, reason, dict(figures)))

    ev(Kind.RUN_STARTED, budget=60.0)
    ev(Kind.LIVE)
    ev(Kind.SESSION_ENDED, end="failed", rc=1, cause="rtmp://h/live/sk-live-secret refused")
    ev(Kind.RESTARTING, why="exited with 1 at rtmp://h/live/sk-live-secret", attempt=1, retries=3, delay=1.0,
       remaining=50.0, streamed=10.0)  # fmt: skip
    ev(Kind.LIVE)
    ev(Kind.ENDING_SOON, remaining=200.0)
    ev(
        Kind.RUN_ENDED,
        "duration_reached",
        status="offline",
        streamed=60.0,
        budget=60.0,
        sessions=2,
        restarts=1,
    )
    got = journal.read(p, "s")
    assert [r["event"] for r in got] == ["live", "restarted", "recovered", "ending_soon", "ended"]
    assert "sk-live-secret" not in json.dumps(got) and "***" in got[1]["why"]
    r = run_cli("events", "s")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 5 and "restarted" in r.stdout
    r = run_cli("events", "nosuch")
    assert r.returncode == 3 and "no stream named" in r.stderr


def test_a_journal_lock_held_too_long_costs_the_run_at_most_its_timeout(home: Path) -> None:
    import fcntl
    import os
    import time

    p = Paths.from_env()
    journal.append(p, "s", {"event": "before"})
    lock = journal.journal_file(p, "s").with_name("s.jsonl.lock")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a hung writer (NFS, a stopped process) holds it
    try:
        listen = AlertListener(p, "s", [])
        t0 = time.monotonic()
        listen(Event("s", Kind.LIVE, 1000.0))  # must neither hang nor raise
        waited = time.monotonic() - t0
    finally:
        os.close(fd)
    assert journal.LOCK_TIMEOUT <= waited < journal.LOCK_TIMEOUT + 1.0
    assert [r["event"] for r in journal.read(p, "s")] == ["before"]  # that event went unrecorded, no more
    listen(Event("s", Kind.GAVE_UP, 1001.0, None, {"failures": 3, "last": "exit 1"}))
    assert [r["event"] for r in journal.read(p, "s")] == ["before", "gave_up"]
