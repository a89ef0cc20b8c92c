"""What an attacker and a careless admin found, each reproduced here first: a config, key file or state folder
another user could replace; links planted where streamctl writes; two stream names sharing a file; one broken
or huge state file taking every view down; a secret key's value echoed; a key file that never ends or blocks;
a config nested too deep for the parser."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamctl.store.fileio import HeldLock
from streamctl.store.paths import FIXED, STATE_SUFFIXES, Paths
from streamctl.store.state import StateStore, StreamState
from tests.conftest import cli, fake_ffmpeg, lavfi_start, run_cli, snapshot

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root (CI is root)")


def _home(tmp_path: Path, config: str = "", mode: int = 0o700) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=mode)
    home.chmod(mode)  # past the umask
    if config:
        (home / "streamctl.toml").write_text(config)
        (home / "streamctl.toml").chmod(0o600)
    return home


def _evil(tmp_path: Path) -> tuple[Path, Path]:
    """A program that leaves a mark when it runs: what the attacker's `ffmpeg = ...` points at."""
    mark = tmp_path / "ran-as-ffmpeg"
    evil = fake_ffmpeg(tmp_path, "evil.sh", f"touch {mark}\nexit 0\n")
    return evil, mark


def _config(ffmpeg: Path | None = None, extra: str = "") -> str:
    ff = f'ffmpeg = "{ffmpeg}"\n' if ffmpeg else ""
    return (f'[streams.s]\ninput = "testsrc"\ninput_format = "lavfi"\nurl = "/tmp/never-written.flv"\n'
            f'budget = "5s"\n{ff}{extra}')  # fmt: skip


def _refused(r: subprocess.CompletedProcess[str] | object, *words: str) -> None:
    rc, out, err = r.returncode, r.stdout, r.stderr  # type: ignore[attr-defined]
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, (rc, out, err)
    assert all(w in err for w in words), err


# ---- a config, key file or state folder that another user could replace --------------------------------
@as_root
def test_a_config_in_a_folder_everyone_can_write_is_not_run(tmp_path: Path) -> None:
    """The probe: home 0777, `nobody` swaps in a 0600 config with ffmpeg = evil.sh, root runs start."""
    evil, mark = _evil(tmp_path)
    home = _home(tmp_path, _config(evil), mode=0o777)
    cfg = home / "streamctl.toml"
    os.chown(cfg, NOBODY, NOBODY)  # what the swap leaves: nobody's file, 0600
    env = {**os.environ, "STREAMCTL_HOME": str(home)}
    for args in (["start", "s"], ["check"], ["start", "s", "-d"]):
        _refused(cli(*args, env=env, timeout=30), str(cfg))
    assert not mark.exists()
    # the folder alone is enough: root's own config there could be replaced all the same
    os.chown(cfg, 0, 0)
    r = cli("start", "s", env=env, timeout=30)
    _refused(r, str(home), "writable by every user", "chmod o-w")
    assert not mark.exists()
    # fixed as the message says: it runs
    home.chmod(0o700)
    assert cli("start", "s", env=env, timeout=30).returncode == 0
    assert mark.exists()


@as_root
def test_a_config_owned_by_another_user_is_refused_even_in_a_safe_folder(tmp_path: Path) -> None:
    evil, mark = _evil(tmp_path)
    home = _home(tmp_path, _config(evil))
    os.chown(home / "streamctl.toml", NOBODY, NOBODY)
    _refused(cli("start", "s", env={**os.environ, "STREAMCTL_HOME": str(home)}, timeout=30),
             "owned by uid 65534", "not by you (0")  # fmt: skip
    assert not mark.exists()
    # status still shows what the state files say, and says why the config is not read
    r = run_cli("status", env={**os.environ, "STREAMCTL_HOME": str(home)})
    assert r.returncode == 0 and "owned by uid 65534" in r.stderr


@as_root
def test_a_key_file_or_state_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    evil, mark = _evil(tmp_path)
    key = tmp_path / "key"
    key.write_text("a-stream-key-0123456789\n")
    key.chmod(0o600)
    os.chown(key, NOBODY, NOBODY)
    home = _home(tmp_path, _config(evil, f'key_file = "{key}"\n').replace("/tmp/never-written.flv", "rtmp://h/live"))
    env = {**os.environ, "STREAMCTL_HOME": str(home)}
    _refused(cli("start", "s", env=env, timeout=30), f"key_file {key} is owned by uid 65534")
    os.chown(key, 0, 0)
    key.chmod(0o666)
    _refused(cli("check", env=env, timeout=30), "key_file", "writable by every user")
    key.unlink()
    (home / "streamctl.toml").write_text(_config(evil))
    (home / "state").mkdir(mode=0o700)
    os.chown(home / "state", NOBODY, NOBODY)
    for args in (["start", "s"], ["status"], ["reset-runtime", "s"]):
        _refused(cli(*args, env=env, timeout=30), f"state folder {home / 'state'} is owned by uid 65534")
    assert not mark.exists()


def test_shared_folders_that_cannot_replace_our_files_are_accepted(tmp_path: Path) -> None:
    """/tmp's kind (sticky: nobody renames what is not theirs) above a 0700 home is fine; a group-writable
    folder whose group holds other users is not."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    home = shared / "home"
    home.mkdir(mode=0o700)
    (home / "streamctl.toml").write_text(_config())
    (home / "streamctl.toml").chmod(0o600)
    env = {**os.environ, "STREAMCTL_HOME": str(home)}
    r = run_cli("check", env=env)
    assert r.returncode in (0, 1) and "writable" not in r.stderr, r.stderr  # 1: ffmpeg may be missing
    shared.chmod(0o777)  # the sticky bit gone: anyone may rename our home away and put theirs there
    _refused(run_cli("check", env=env), f"{shared}, which is writable by every user")
    shared.chmod(0o775)
    if os.geteuid() == 0:  # root is not in nogroup: its users could write the folder
        os.chown(shared, 0, NOBODY)
        _refused(run_cli("check", env=env), f"{shared}, which is writable by group {NOBODY}")


# ---- links planted where streamctl writes -----------------------------------------------------------
def _victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    v.write_text("precious\n")
    v.chmod(0o644)
    return v


def _untouched(victim: Path) -> None:
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_a_link_at_the_corrupt_copy_is_replaced_not_followed(home: Path, tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    state = home / "state"
    state.mkdir(parents=True, mode=0o700)
    (state / "w.json").write_text("not json\n")
    (state / "w.json.corrupt").symlink_to(victim)
    r = run_cli("status")
    assert r.returncode == 0 and "w.json is corrupt" in r.stderr
    _untouched(victim)
    corrupt = state / "w.json.corrupt"
    assert not corrupt.is_symlink() and corrupt.read_text() == "not json\n"
    assert stat.S_IMODE(corrupt.stat().st_mode) == 0o600


def test_links_at_the_log_the_journal_and_the_locks_are_not_followed(home: Path, tmp_path: Path) -> None:
    paths = Paths.in_home(home)
    ff = fake_ffmpeg(tmp_path, "quick", "exit 0\n")
    assert cli(*lavfi_start("s", tmp_path / "o.flv", "5s", ffmpeg=ff)).returncode == 0  # every folder made
    victim = _victim(tmp_path)
    nowhere = tmp_path / "created-through-a-link"
    # the log: start refuses with one line, the target is neither appended to nor created
    paths.log_file("s").unlink()
    paths.log_file("s").symlink_to(victim)
    r = cli(*lavfi_start("s", tmp_path / "o.flv", "5s", ffmpeg=ff), timeout=60)
    assert r.returncode == 6 and r.stderr.count("\n") == 1 and "is a symbolic link" in r.stderr, r.stderr
    _untouched(victim)
    paths.log_file("s").unlink()
    # the journal: the supervisor's events are not written through it (a journal that fails is skipped)
    journal = home / "state" / "events" / "s.jsonl"
    journal.unlink()
    journal.symlink_to(victim)
    assert run_cli("reset-runtime", "s").returncode == 0
    assert cli(*lavfi_start("s", tmp_path / "o.flv", "5s", ffmpeg=ff), timeout=60).returncode == 0
    _untouched(victim)
    # the state lock and the run lock: a link to a file that does not exist is not created
    for lock in (paths.state_lock("s"), paths.run_lock("s")):
        lock.unlink()
        lock.symlink_to(nowhere)
    r = run_cli("reset-runtime", "s")
    assert r.returncode == 6 and "is a symbolic link" in r.stderr and r.stderr.count("\n") == 1
    r = cli(*lavfi_start("s", tmp_path / "o.flv", "5s", ffmpeg=ff), timeout=60)
    assert r.returncode == 6 and "is a symbolic link" in r.stderr
    assert not nowhere.exists()
    # and a link in place of the state file itself is shown broken, not read
    paths.state_file("s").unlink()
    paths.state_file("s").symlink_to(victim)
    r = run_cli("status", "--json")
    row = json.loads(r.stdout)[0]
    assert row["status"] == "broken" and "symbolic link" in row["broken"]
    _untouched(victim)


# ---- two names, one file ----------------------------------------------------------------------------
def _files_of(paths: Paths, name: str) -> set[Path]:
    from streamctl.store.events import journal_file

    log, journal = paths.log_file(name), journal_file(paths, name)
    rotated = {f.with_name(f"{f.name}{s}") for f in (log, journal) for s in (".lock", *(f".{i}" for i in range(1, 101)))}
    return {paths.stream_file(name, kind) for kind in STATE_SUFFIXES} | {log, journal} | rotated


def test_no_two_stream_names_share_a_file(tmp_path: Path) -> None:
    """Over names that end in every suffix streamctl uses, and in every part of one (col.run for .runlock's
    old .run.lock): every file of each is its own. `col` and `col.run` once shared col.run.lock."""
    paths = Paths.in_home(tmp_path)
    tails = {s[: i] for s in STATE_SUFFIXES.values() for i in range(1, len(s) + 1) if i == len(s) or s[i] == "."}
    tails |= {".run", ".log", ".jsonl", ".lock", ".1", ".corrupt", ".ffconcat", ".json.corrupt", ".tmp"}
    names = ["col", *(f"col{t}" for t in tails), *(f"col{t}{u}" for t in tails for u in tails)]
    owner: dict[Path, str] = {}
    for name in names:
        for f in _files_of(paths, name):
            assert owner.setdefault(f, name) == name, f"{name!r} and {owner[f]!r} share {f.name}"
    fixed = {paths.state_dir / f for f in FIXED}
    assert not fixed & set(owner), fixed & set(owner)


def test_a_supervisor_of_col_does_not_block_col_run(home: Path) -> None:
    """The probe: col's run lock held, col.run's reset-runtime (its state lock) waited for col to stop."""
    paths = Paths.in_home(home)
    StateStore(paths).save(StreamState(name="col.run", budget_seconds=60.0, runtime_seconds=5.0), time.time())
    lock = HeldLock(paths.run_lock("col"), "col")  # as col's supervisor holds it, for its whole life
    try:
        r = cli("reset-runtime", "col.run", timeout=20)
        assert r.returncode == 0, r.stderr
        assert StateStore(paths).load("col.run").runtime_seconds == 0.0  # type: ignore[union-attr]
    finally:
        lock.release()


# ---- one broken or huge state file ----------------------------------------------------------------
_PEAK = """import atexit, sys
report = sys.argv.pop(1)
atexit.register(lambda: open(report, "w").write(open("/proc/self/status").read()))
sys.argv[0] = "streamctl"
from streamctl.cli_fast import main
main()
"""


def _peak_mib(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[int, str, float]:
    """Run streamctl ARGS; its exit code, stdout and peak resident memory (MiB: VmHWM, which starts
    afresh at exec, unlike wait4's ru_maxrss, which counts the forked test process too)."""
    report = tmp_path / "peak"
    r = subprocess.run([sys.executable, "-c", _PEAK, str(report), *args], env=env, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    hwm = next(line for line in report.read_text().splitlines() if line.startswith("VmHWM:"))
    return r.returncode, r.stdout, int(hwm.split()[1]) / 1024


def test_a_garbage_state_file_is_one_broken_row_and_is_copied_aside_once(home: Path) -> None:
    paths = Paths.in_home(home)
    StateStore(paths).save(StreamState(name="good", budget_seconds=60.0), time.time())
    bad = paths.state_file("w6")
    bad.write_bytes(b"not json " * (20 * 1024 * 1024 // 9))  # 20 MiB of garbage: too big to read at all
    env = {**os.environ, "STREAMCTL_HOME": str(home)}
    rc, out, rss = _peak_mib(["status", "--json"], env, home.parent)
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0 and rows["good"]["status"] == "offline" and rows["w6"]["status"] == "broken"
    assert str(bad) in rows["w6"]["broken"] and rss < 80, rss
    corrupt = bad.with_name("w6.json.corrupt")
    first = corrupt.stat()
    assert first.st_size == bad.stat().st_size
    for fmt in ("table", "prometheus"):
        r = run_cli("status", "--format", fmt)
        assert r.returncode == 0 and "w6" in r.stdout and "good" in r.stdout
    assert (corrupt.stat().st_ino, corrupt.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # once
    assert "streamctl_broken" in run_cli("status", "--format", "prometheus").stdout
    # a valid state file as big: not read either (it cost 3.7 times its size per list)
    good = json.loads(paths.state_file("good").read_text())
    good["sessions"] = [{"started_at": 1.0, "ended_at": 2.0, "runtime_seconds": 1.0, "pad": "x" * 200}] * 100_000
    paths.state_file("good").write_text(json.dumps(good))
    assert paths.state_file("good").stat().st_size > 20 * 2**20
    rc, out, rss = _peak_mib(["status", "--json"], env, home.parent)
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0 and rows["good"]["status"] == "broken" and "more than streamctl ever writes" in rows["good"]["broken"]
    assert rss < 80, rss


# ---- secrets of any type, files that never end, a config nested too deep ------------------------------
def test_a_key_written_as_a_number_is_never_echoed(home: Path, tmp_path: Path) -> None:
    secret = "98765432101234"
    _home(tmp_path, _config(extra=f"key = {secret}\nalso = [{secret}5]\n"))
    for args in (["check"], ["status"], ["list"], ["status", "--json"]):
        r = run_cli(*args)
        assert secret not in r.stdout + r.stderr, (args, r.stdout, r.stderr)
        assert "key must be a string, got a number" in r.stderr, r.stderr


def test_a_key_file_that_never_ends_or_blocks_is_refused_at_once(home: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    big = tmp_path / "big"
    big.write_bytes(b"k" * 100_000)
    big.chmod(0o600)
    for key_file, why in (("/dev/zero", "is not a regular file"), (fifo, "is not a regular file"),
                          (big, "is larger than 4 KiB")):  # fmt: skip
        (tmp_path / "home").mkdir(mode=0o700, exist_ok=True)
        (tmp_path / "home" / "streamctl.toml").write_text(
            _config(extra=f'key_file = "{key_file}"\n').replace("/tmp/never-written.flv", "rtmp://h/live"))
        (tmp_path / "home" / "streamctl.toml").chmod(0o600)
        for args in (["check"], ["start", "s"]):
            began = time.monotonic()
            r = cli(*args, timeout=30)
            _refused(r, f"key_file: {key_file} {why}")
            assert time.monotonic() - began < 20


def test_a_config_nested_too_deep_is_one_line(home: Path, tmp_path: Path) -> None:
    _home(tmp_path, _config(extra="also = " + "[" * 20000 + "]" * 20000 + "\n"))
    before = snapshot(home)
    r = run_cli("check")
    _refused(r, "nests arrays or tables too deeply")
    r = run_cli("status")  # as for any config that cannot be read: the state files, and why on stderr
    assert r.returncode == 0 and r.stderr.count("\n") == 1 and "too deeply" in r.stderr, r.stderr
    r = cli("start", "s", timeout=30)
    _refused(r, "too deeply")
    assert snapshot(home) == before


# ---- the same through the API ---------------------------------------------------------------------------
@pytest.mark.e2e
def test_the_api_shows_every_other_stream_beside_a_broken_one_and_never_a_numeric_key(home: Path) -> None:
    from tests.serving import serve, sse

    secret = "98765432101234"
    home.mkdir(mode=0o700)
    (home / "streamctl.toml").write_text(
        _config() + f'\n[streams.k]\ninput = "testsrc"\ninput_format = "lavfi"\nurl = "rtmp://h/live"\n'
        f'budget = "1h"\nkey = {secret}\n')  # fmt: skip
    (home / "streamctl.toml").chmod(0o600)
    paths = Paths.in_home(home)
    StateStore(paths).save(StreamState(name="good", budget_seconds=60.0), time.time())
    paths.state_file("w6").write_text("not json\n")
    served = serve(home)
    try:
        for _ in range(2):  # twice: the copy aside is made once
            r = served.get("/api/streams")
            assert r.status == 200, r.text
            got = {row["name"]: row["status"] for row in r.json}
            assert got == {"good": "offline", "w6": "broken", "s": "offline", "k": "offline"}
            assert str(paths.state_file("w6")) in {row["name"]: row for row in r.json}["w6"]["broken"]
        assert [row["name"] for row in served.get("/api/streams/active/status").json] == []
        health = served.get("/healthz")
        assert health.status == 503 and [p["name"] for p in health.json["problems"]] == ["w6"]
        metrics = served.get("/metrics")
        assert metrics.status == 200 and 'streamctl_broken{stream="w6",status="broken"} 1' in metrics.text
        assert served.get("/api/streams/w6").json["status"] == "broken"
        assert served.get("/api/streams/w6/runtime").status == 200
        events = sse(served, "/api/events", lambda got: any(k == "streams" for k, _ in got))
        rows = next(d for k, d in events if k == "streams")["streams"]
        assert {row["name"] for row in rows} == {"good", "w6", "s", "k"}
        assert secret not in served.get("/api/streams").text
    finally:
        assert served.stop() == 0
    assert secret not in served.output() and "Traceback" not in served.output()
    assert "key must be a string, got a number" in served.output()


@as_root
def test_a_configured_ffmpeg_or_hook_another_user_could_replace_is_not_run(tmp_path: Path) -> None:
    """The config is ours, but the program it names sits in a folder anyone can write: root would run
    whatever was put there."""
    drop = tmp_path / "drop"
    drop.mkdir()
    drop.chmod(0o777)
    evil, mark = _evil(drop)
    home = _home(tmp_path, _config(evil))
    env = {**os.environ, "STREAMCTL_HOME": str(home)}
    r = cli("start", "s", env=env, timeout=30)
    assert r.returncode == 2 and f"ffmpeg (from the config) {evil} is in {drop}" in r.stderr, r.stderr
    (home / "streamctl.toml").write_text(_config(extra=f'on_event = ["{evil}"]\n'))
    _refused(cli("check", env=env, timeout=30), f"on_event's command {evil} is in {drop}")
    assert not mark.exists()
