"""The CLI contract: exit codes, one-line errors on stderr, nothing changed on disk by bad input.

The commands run in-process (`run_cli`, through the same `streamctl.cli.main`); every `start` runs in a
child process, as it execs a supervisor. `tests/test_service.py` runs the installed `streamctl` script.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from streamctl.store.paths import Paths
from streamctl.store.state import StateStore, StreamState
from tests.conftest import Ran, cli, fake_ffmpeg, lavfi_start, run_cli, snapshot


def streamctl(*args: str) -> Ran | subprocess.CompletedProcess[str]:
    """`start` and `demo` in a child process (they run a supervisor), every other command in this one."""
    return cli(*args) if args[0] in ("start", "demo") else run_cli(*args)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["start", "nosuch"], 3, "no stream named 'nosuch'"),
        (["start", "s", "--input", "{m}", "--url", "rtmp://h/live", "--duration", "0"], 2, "greater than zero"),
        (["start", "s", "--input", "{m}", "--url", "rtmp://h/live", "--duration", "-1"], 2, "greater than zero"),
        (["start", "s", "--input", "{m}", "--url", "rtmp://h/live", "--hours", "nan"], 2, "finite"),
        (["start", "s", "--input", "{m}", "--url", "rtmp://h/live", "--duration", "5x"], 2, "not a duration"),
        (["start", "s", "--input", "/nope.mp4", "--url", "rtmp://h/live", "--hours", "1"], 2, "input file not found"),
        (["start", "s", "--input", "{m}", "--url", "http://h/live", "--hours", "1"], 2, "rtmp://"),
        (["start", "s", "--input", "{m}", "--url", "rtmp://h/live", "--hours", "1", "--ffmpeg", "/no/ffmpeg"],
         7, "ffmpeg not found"),
        (["start", "s", "--input", "{m}", "--url", "rtmp://h/live"], 2, "no budget"),
        (["start", "a/b", "--input", "{m}", "--url", "rtmp://h/live", "--hours", "1"], 2, "invalid stream name"),
        (["start", "s", "--bogus"], 2, "No such option"),
        (["status", "nosuch"], 3, "no stream named"),
        (["reset-runtime", "nosuch"], 3, "no stream named"),
        (["stop"], 2, "NAME or --all"),
        (["add", "s", "--input", "{m}", "--url", "rtmp://h/live", "--hours", "0"], 2, "greater than zero"),
        (["add", "s", "--input", "{m}", "--url", "rtmp://h/live", "--hours", "1", "--mode", "bogus"], 2, "mode"),
        (["remove", "nosuch"], 3, "no stream named"),
        (["start", "s", "--input", "{m}", "--url", "rtmp://h/live", "--until", "someday"], 2, "not a date"),
        (["logs", "nosuch"], 3, "no log"),
        (["start", "s", "--input", "{m}", "--url", "rtmp://h/live", "--hours", "1"], 2, "is not media"),
        (["sweep", "--grace", "-10"], 2, "--grace must be"),
        (["sweep", "--grace", "nan"], 2, "--grace must be"),
        (["stop", "x", "--timeout", "nan"], 2, "--timeout"),
        (["demo", "--seconds", "1"], 2, "at least 6"),
        (["start", "s", "--input", "{m}", "--url", "rtmp://h/live", "--also", "rtmp://h/a|b", "--hours", "1"], 2, "without '|'"),
    ],
)  # fmt: skip
def test_bad_input(home: Path, input_file: Path, args: list[str], code: int, message: str) -> None:
    before = snapshot(home)
    r = streamctl(*[a.replace("{m}", str(input_file)) for a in args])
    assert r.returncode == code, r.stderr
    assert message in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("streamctl: error: ")
    assert "Traceback" not in r.stderr
    assert snapshot(home) == before


def test_add_list_status_without_leaking_the_key(home: Path, input_file: Path) -> None:
    r = run_cli(
        "add",
        "yt",
        "-i",
        str(input_file),
        "--url",
        "rtmp://a.example/live2",
        "--key",
        "TOPSECRET",
        "--hours",
        "5",
    )
    assert r.returncode == 0, r.stderr
    for args in (["list"], ["list", "--json"], ["status"], ["status", "--json"], ["runtime", "yt", "--json"]):
        out = run_cli(*args)
        assert out.returncode == 0, out.stderr
        assert "TOPSECRET" not in out.stdout + out.stderr
    rows = json.loads(run_cli("status", "--json").stdout)
    assert rows[0]["name"] == "yt" and rows[0]["status"] == "offline" and rows[0]["budget_seconds"] == 18000
    keys = {"name", "status", "supervisor_pid", "ffmpeg_pid", "budget_seconds", "runtime_seconds",
            "remaining_seconds", "restarts", "sessions", "started_at", "expected_end", "end_time",
            "stop_reason", "warning"}  # fmt: skip
    assert keys <= set(rows[0])
    assert run_cli("remove", "yt").returncode == 0
    assert json.loads(run_cli("list", "--json").stdout) == []


def test_status_warns_under_five_minutes_and_never_shows_a_dead_stream_live(home: Path) -> None:
    import time

    from streamctl.store.paths import Paths
    from streamctl.store.state import OpenSession, StateStore

    store = StateStore(Paths.from_env())
    with store.update("w", now=time.time()) as st:
        st.status, st.budget_seconds, st.runtime_seconds = "live", 3600.0, 3400.0
        st.session = OpenSession(
            started_at=time.time(), t_arg=200.0, runtime_seconds=0.0, checkpoint_at=time.time()
        )
    # nobody holds the run lock: the state says live, but the stream is dead
    row = json.loads(run_cli("status", "w", "--json").stdout)[0]
    assert (row["status"], row["stop_reason"], row["warning"]) == ("offline", "supervisor_lost", False)
    # hold the run lock as a supervisor would: now it is live, with under 5 minutes left
    from streamctl.store.fileio import HeldLock

    lock = HeldLock(Paths.from_env().run_lock("w"), "w")
    try:
        row = json.loads(run_cli("status", "w", "--json").stdout)[0]
        assert row["status"] == "live" and row["warning"] is True
        assert 190 < row["remaining_seconds"] <= 200
        table = run_cli("status", env={**os.environ, "COLUMNS": "200"}).stdout
        assert "warning: w ends in" in table
        assert run_cli("reset-runtime", "w").returncode == 4  # live: refused
    finally:
        lock.release()
    r = run_cli("reset-runtime", "w")
    assert r.returncode == 0 and "runtime reset" in r.stdout
    assert json.loads(run_cli("runtime", "w", "--json").stdout)["runtime_seconds"] == 0


def test_version() -> None:
    from streamctl import __version__

    r = run_cli("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"streamctl {__version__}\n", "")


@pytest.mark.parametrize("via", ["python -m streamctl", "streamctl"])
@pytest.mark.parametrize(
    ("args", "code", "stdout", "stderr"),
    [
        (["--version"], 0, "streamctl {version}\n", ""),
        (["remove", "nosuch"], 3, "", "streamctl: error: no stream named 'nosuch'"),
        (["status", "--bogus"], 2, "", "streamctl: error: No such option: --bogus"),
    ],
    ids=["version", "library-error", "typer-error"],
)
def test_the_installed_commands_exit_with_one_line_and_no_traceback(
    home: Path, via: str, args: list[str], code: int, stdout: str, stderr: str
) -> None:
    """What only a process shows: the exit status the shell sees, from both ways of running streamctl."""
    import sys

    from streamctl import __version__

    exe = (
        [sys.executable, "-m", "streamctl"]
        if via != "streamctl"
        else [str(Path(sys.executable).parent / via)]
    )
    r = subprocess.run([*exe, *args], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (code, stdout.format(version=__version__)), r.stderr
    assert r.stderr.startswith(stderr) and r.stderr.count("\n") == (1 if stderr else 0), r.stderr
    assert "Traceback" not in r.stderr


def test_in_process_runs_leave_this_process_as_it_was(home: Path, tmp_path: Path) -> None:
    """run_cli's own contract: ENV replaces the environment for the run only, and so does CWD; `start`
    (which execs a supervisor in place of its caller) is refused."""
    import sys

    before = (dict(os.environ), os.getcwd(), list(sys.argv), sys.stdout, sys.stderr)
    (tmp_path / "in.mp4").write_bytes(b"x")
    other = tmp_path / "other"
    add = ["add", "s", "-i", "in.mp4", "--url", "rtmp://h/live", "--hours", "1"]
    r = run_cli(*add, env={"PATH": os.environ["PATH"], "STREAMCTL_HOME": str(other)}, cwd=tmp_path)
    assert r == Ran(0, f"added s in {other / 'streamctl.toml'}\n", "")
    assert (dict(os.environ), os.getcwd(), sys.argv, sys.stdout, sys.stderr) == before
    assert not home.exists()
    r = run_cli(*add)  # here, in this directory: no in.mp4
    assert r == Ran(2, "", "streamctl: error: input file not found: in.mp4\n")
    with pytest.raises(AssertionError, match="cannot run in-process"):
        run_cli("start", "s")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[defaults]\nretries = "x"\n', "retries"),
        ("[streams]\ns = 5\n", "must be a table"),
        (
            '[streams.s]\ninput = "{m}"\nurl = "rtmp://h/live"\nresolution = 5\n',
            "resolution must be a string",
        ),
        ("streams = 3\n", "must be a table"),
        ('[streams.s]\ninput = "{m}"\nurl = "rtmp://h/live"\nbudget = "5x"\n', "not a duration"),
    ],
)
def test_malformed_config_gives_one_line(home: Path, input_file: Path, toml: str, message: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "streamctl.toml"
    cfg.write_text(toml.replace("{m}", str(input_file)))
    cfg.chmod(0o600)
    # `status` still shows the other streams when one entry is bad; starting or listing it fails cleanly.
    for r in (cli("start", "s", "--hours", "1"), run_cli("list")):
        assert r.returncode in (2, 6), r.stderr
        assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


@pytest.mark.e2e
def test_a_key_written_into_the_url_never_leaks(home: Path, tmp_path: Path) -> None:
    fake = fake_ffmpeg(
        tmp_path, "ffmpeg", 'for a in "$@"; do last="$a"; done\necho "$last: I/O error" >&2\nexit 1\n'
    )
    url = "rtmp://h/live2/SECRETINURL?token=TOKENVALUE"
    r = cli(*lavfi_start("leak", url, "10s", "--retries", "0", ffmpeg=fake, quiet=False))
    assert r.returncode == 1
    log = (home / "state" / "logs" / "leak.log").read_text()
    assert "I/O error" in log  # ffmpeg's line is there, masked
    everything = r.stdout + r.stderr + log + (home / "state" / "leak.json").read_text()
    everything += run_cli("status", "--json").stdout + run_cli("logs", "leak").stdout
    assert "SECRETINURL" not in everything and "TOKENVALUE" not in everything


def test_no_shell_anywhere_in_the_package() -> None:
    """argv lists only: no shell can ever interpret a stream name, path or URL."""
    import streamctl

    src = Path(streamctl.__file__).parent
    for f in src.rglob("*.py"):
        text = f.read_text()
        for banned in ("shell=True", "os.system(", "os.popen(", "import click", "from click"):
            assert banned not in text, f"{f.name}: {banned}"


@pytest.mark.e2e
def test_files_are_private(home: Path, tmp_path: Path) -> None:
    fake = fake_ffmpeg(tmp_path, "ffmpeg", "exit 0\n")
    r = cli(*lavfi_start("priv", tmp_path / "o.flv", "5s", ffmpeg=fake))
    assert r.returncode == 0, r.stderr
    state = home / "state"
    modes = {
        p.name: p.stat().st_mode & 0o777
        for p in [state, state / "logs", *state.iterdir(), *(state / "logs").iterdir()]
    }
    assert modes["state"] == 0o700 and modes["logs"] == 0o700 and modes["events"] == 0o700
    assert all(m == 0o600 for n, m in modes.items() if n not in ("state", "logs", "events")), modes


@pytest.mark.parametrize("name", ["..", "a b", "x" * 300, "../etc", ".hidden"])
def test_bad_names_through_the_cli(home: Path, name: str) -> None:
    for args in (
        ["start", name, "--duration", "5s"],
        ["reset-runtime", name],
        ["status", name],
        ["stop", name],
    ):
        r = streamctl(*args)
        assert r.returncode == 2 and "invalid stream name" in r.stderr and r.stderr.count("\n") == 1, (
            args,
            r.stderr,
        )
    assert not home.exists()


def test_corrupt_state_is_named_kept_and_never_reset(home: Path) -> None:
    state = home / "state"
    state.mkdir(parents=True)
    (state / "bad.json").write_text('{"schema": 1, "name": "bad", "runtime_seconds": 3')  # truncated
    for args in (
        ["status", "bad"],
        ["runtime", "bad"],
        ["reset-runtime", "bad"],
        lavfi_start("bad", "/tmp/x.flv", "5s", quiet=False),
    ):
        r = streamctl(*args)
        assert r.returncode == 6, (args, r.stderr)
        assert str(state / "bad.json") in r.stderr and "corrupt" in r.stderr and r.stderr.count("\n") == 1
    assert (state / "bad.json").read_text().endswith('"runtime_seconds": 3')  # untouched
    assert (state / "bad.json.corrupt").read_text() == (state / "bad.json").read_text()
    # the list shows it broken beside the others, and says why on stderr: it does not fail on it
    StateStore(Paths.in_home(home)).save(StreamState(name="good", budget_seconds=60.0), 0.0)
    r = streamctl("status", "--json")
    assert r.returncode == 0 and r.stderr.count("\n") == 1 and "bad.json" in r.stderr, r.stderr
    got = {row["name"]: (row["status"], bool(row["broken"])) for row in json.loads(r.stdout)}
    assert got == {"bad": ("broken", True), "good": ("offline", False)}


@pytest.mark.parametrize(
    "command",
    [
        "add",
        "check",
        "list",
        "remove",
        "start",
        "stop",
        "status",
        "runtime",
        "reset-runtime",
        "sweep",
        "logs",
        "doctor",
        "demo",
        "shows",
        "skip",
        "pause",
        "resume",
    ],
)
def test_every_help_has_an_example(command: str) -> None:
    r = run_cli(command, "--help")
    assert r.returncode == 0 and "Example" in r.stdout and "streamctl " in r.stdout
