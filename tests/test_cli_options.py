"""The one path from command-line options to a stream (store/options.StreamOptions), the shared option
declarations of `add` and `start`, and the watch and follow loops (commands/watch) on a fake clock.

Nothing here starts a process or sleeps."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer

from streamctl.cli import app
from streamctl.commands.watch import CLEAR, FOLLOW_POLL_SECONDS, follow, tail, watch_status
from streamctl.errors import EXIT_USAGE, UsageError
from streamctl.output.table import render_status, watch_title
from streamctl.store.config import add_stream, check_table, load_config, parse_until, resolve_spec
from streamctl.store.options import StreamOptions
from streamctl.store.paths import Paths
from tests.conftest import run_cli

FUTURE = "2099-01-01T00:00"


def _usage_error(call: Any) -> str:
    """The message of the UsageError CALL raises (exit 2, as the CLI reports it)."""
    with pytest.raises(UsageError) as e:
        call()
    assert e.value.exit_code == EXIT_USAGE
    return str(e.value)


# --- add: the table ------------------------------------------------------------------------------------


def test_the_table_of_the_fewest_options_is_what_add_always_wrote() -> None:
    table = StreamOptions(input="in.mp4", url="rtmp://h/live", hours=2).table("s")
    assert table == {"input": "in.mp4", "url": "rtmp://h/live", "mode": "copy", "loop": True, "budget": "2h"}


def test_the_table_of_every_option_keeps_the_order_add_wrote_it_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = StreamOptions(
        input="in.mp4", url="rtmp://h/live", key_file="yt.key", duration="90m", until=FUTURE, mode="encode",
        input_format="mp4", loop=False, bitrate="4500k", resolution="1280x720", fps=30,
    )  # fmt: skip
    table = options.table("s")
    assert list(table.items()) == [
        ("input", "in.mp4"), ("url", "rtmp://h/live"), ("mode", "encode"), ("loop", False),
        ("key_file", str(tmp_path / "yt.key")),  # absolute: the service may run elsewhere
        ("until", FUTURE), ("bitrate", "4500k"), ("resolution", "1280x720"), ("fps", 30),
        ("input_format", "mp4"), ("budget", "1h30m"),
    ]  # fmt: skip
    check_table(tmp_path / "streamctl.toml", table, "streams.s", stream=True)  # a table the config takes


def test_add_writes_the_table_of_its_options(home: Path, input_file: Path) -> None:
    r = run_cli("add", "s", "-i", str(input_file), "--url", "rtmp://h/live", "--key-env", "SOME_KEY",
                "--duration", "45m", "--no-loop")  # fmt: skip
    assert (r.returncode, r.stderr) == (0, "")
    written = tomllib.loads((home / "streamctl.toml").read_text())["streams"]["s"]
    options = StreamOptions(
        input=str(input_file), url="rtmp://h/live", key_env="SOME_KEY", duration="45m", loop=False
    )
    assert written == options.table("s")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (StreamOptions(hours=1, duration="5m"), "give --hours or --duration, not both"),
        (StreamOptions(hours=0), "--hours must be greater than zero, got 0.0s"),
        (StreamOptions(hours=float("nan")), "--hours must be a finite number, got nan"),
        (StreamOptions(duration="5x"), "--duration '5x' is not a duration; use e.g. 90s, 45m, 5h or 1h30m"),
        (StreamOptions(), "stream 's' needs a budget: give --hours or --duration (or --until)"),
        (StreamOptions(hours=1, key="k1234567", key_env="K"),
         "give one of --key, --key-file or --key-env, not --key and --key-env"),
        (StreamOptions(hours=1, key="k1234567", key_file="/k", key_env="K"),
         "give one of --key, --key-file or --key-env, not --key and --key-file and --key-env"),
        (StreamOptions(hours=1, fps=30, bitrate="1k"),
         "--bitrate does nothing in copy mode: add --mode encode, or drop --bitrate"),
        (StreamOptions(hours=1, resolution="1280x720"),
         "--resolution does nothing in copy mode: add --mode encode, or drop --resolution"),
        (StreamOptions(until="2020-01-01T00:00"), "--until 2020-01-01T00:00 has passed: give a later deadline"),
        (StreamOptions(until="tomorrow"), "until 'tomorrow' is not a date and time like 2026-12-01T22:00"),
    ],
)  # fmt: skip
def test_each_bad_add_option_has_its_one_message(options: StreamOptions, message: str) -> None:
    assert _usage_error(lambda: options.table("s")) == message


def test_the_checks_come_in_the_order_add_made_them() -> None:
    # the budget first, then the key sources, the missing budget, copy mode, the deadline
    everything_wrong = StreamOptions(key="k1234567", key_env="K", fps=30, until="2020-01-01T00:00")
    assert _usage_error(lambda: everything_wrong.table("s")).startswith("give one of --key")
    assert _usage_error(lambda: StreamOptions(fps=30).table("s")).startswith("stream 's' needs a budget")
    assert _usage_error(lambda: StreamOptions(hours=1, fps=30, until="x").table("s")).startswith("--fps")


def test_add_stream_names_a_bad_value_by_itself(home: Path, input_file: Path) -> None:
    # what add_stream checks beyond the options: the message names the value, not the config file
    table = StreamOptions(input=str(input_file), url="rtmp://h/live", hours=1, mode="x").table("s")
    assert (
        _usage_error(lambda: add_stream(Paths.from_env(), "s", table))
        == "mode must be copy or encode, got 'x'"
    )
    assert not home.exists()


# --- start: the overrides ------------------------------------------------------------------------------


NOT_GIVEN = {
    "also": None, "until": None, "stall_timeout": None, "budget_seconds": None, "input": None, "url": None,
    "key": None, "mode": None, "input_format": None, "loop": None, "retries": None, "restart_delay": None,
    "grace": None,
}  # fmt: skip


def test_no_option_overrides_nothing() -> None:
    assert StreamOptions().overrides() == NOT_GIVEN


def test_every_start_option_is_an_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCTL_TEST_KEY", "from-the-env")
    options = StreamOptions(
        input="testsrc", url="rtmp://h/live", key="ignored-for-the-env", key_env="STREAMCTL_TEST_KEY",
        duration="1h30m", until=FUTURE, mode="encode", input_format="lavfi", loop=False,
        also=("rtmp://b/live/k",), retries=5, restart_delay=1.5, grace=2.0, stall_timeout=20.0,
    )  # fmt: skip
    assert options.overrides() == {
        "also": ("rtmp://b/live/k",), "until": parse_until(FUTURE), "stall_timeout": 20.0,
        "budget_seconds": 5400.0, "input": "testsrc", "url": "rtmp://h/live", "key": "from-the-env",
        "mode": "encode", "input_format": "lavfi", "loop": False, "retries": 5, "restart_delay": 1.5,
        "grace": 2.0,
    }  # fmt: skip
    assert StreamOptions(hours=2).overrides()["budget_seconds"] == 7200.0


@pytest.mark.parametrize("value", [None, ""])
def test_a_key_env_that_is_not_set_has_one_message(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("STREAMCTL_NO_KEY", raising=False)
    else:
        monkeypatch.setenv("STREAMCTL_NO_KEY", value)
    options = StreamOptions(key_env="STREAMCTL_NO_KEY", hours=1)
    assert _usage_error(options.overrides) == "--key-env: environment variable STREAMCTL_NO_KEY is not set"
    # the same check for a config's key_env, by its own name there; `add` leaves it to `start`
    assert options.table("s")["key_env"] == "STREAMCTL_NO_KEY"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (StreamOptions(hours=1, duration="1m"), "give --hours or --duration, not both"),
        (StreamOptions(hours=0), "--hours must be greater than zero, got 0.0s"),
        (StreamOptions(until="x", hours=0), "until 'x' is not a date and time like 2026-12-01T22:00"),
    ],
)
def test_each_bad_start_option_has_its_one_message(options: StreamOptions, message: str) -> None:
    assert _usage_error(options.overrides) == message


def test_the_overrides_go_over_the_configured_stream(home: Path, input_file: Path) -> None:
    paths = Paths.from_env()
    add_stream(paths, "s", StreamOptions(input=str(input_file), url="rtmp://h/live", hours=5).table("s"))
    spec = resolve_spec(paths, "s", StreamOptions(duration="90s", mode="encode", retries=7).overrides())
    assert (spec.input, spec.url, spec.budget_seconds, spec.mode, spec.loop) == (
        str(input_file), "rtmp://h/live", 90.0, "encode", True,
    )  # fmt: skip
    assert spec.settings.retries == 7 and spec.settings.grace == 5.0
    kept = resolve_spec(paths, "s", StreamOptions().overrides())
    assert (kept.budget_seconds, kept.mode, kept.settings.retries) == (5 * 3600.0, "copy", 3)


def test_a_stream_not_configured_is_built_from_the_overrides(home: Path) -> None:
    options = StreamOptions(
        input="testsrc", input_format="lavfi", url="rtmp://h/live", key="k1234567", hours=1
    )
    spec = resolve_spec(Paths.from_env(), "adhoc", options.overrides())
    assert (spec.input, spec.input_format, spec.output_url, spec.budget_seconds) == (
        "testsrc", "lavfi", "rtmp://h/live/k1234567", 3600.0,
    )  # fmt: skip
    assert load_config(Paths.from_env()).streams == {}  # nothing is written


def test_an_option_of_the_other_command_is_a_programming_error() -> None:
    with pytest.raises(AssertionError, match="retries"):
        StreamOptions(hours=1, retries=3).table("s")
    with pytest.raises(AssertionError, match="key_file"):
        StreamOptions(key_file="/k").overrides()


# --- the config keeps its own wording --------------------------------------------------------------------


def test_the_config_checks_keep_the_config_wording(tmp_path: Path) -> None:
    cfg = tmp_path / "streamctl.toml"
    both = {"key": "k1234567", "key_env": "K"}
    assert _usage_error(lambda: check_table(cfg, both, "streams.s", stream=True)) == (
        f"config {cfg}: [streams.s] gives both key and key_env: keep one"
    )
    idle = {"fps": 30}
    assert _usage_error(lambda: check_table(cfg, idle, "streams.s", stream=True)) == (
        f'config {cfg}: [streams.s] fps does nothing in copy mode: set mode = "encode" or remove fps'
    )
    check_table(cfg, {**idle, "mode": "encode"}, "streams.s", stream=True)


# --- the help of the shared options ----------------------------------------------------------------------


def _params(command: str) -> dict[str, str]:
    group = typer.main.get_command(app)
    sub = group.commands[command]  # type: ignore[attr-defined]
    return {p.name: p.help for p in sub.params if p.name}


def _help_text(command: str) -> str:
    r = run_cli(command, "--help")
    assert r.returncode == 0
    return " ".join(r.stdout.split())  # the help of an option may wrap onto the next lines


@pytest.mark.parametrize(("one", "other"), [("add", "start"), ("start", "sweep")])
def test_a_shared_option_has_one_help(one: str, other: str) -> None:
    first, second = _params(one), _params(other)
    shared = sorted(set(first) & set(second))
    if one == "add":
        assert shared == [
            "duration", "hours", "input", "input_format", "key", "key_env", "loop", "mode", "name", "until", "url",
        ]  # fmt: skip
    assert {n: first[n] for n in shared} == {n: second[n] for n in shared}
    shown_one, shown_other = _help_text(one), _help_text(other)
    for n in shared:
        assert first[n] and first[n] in shown_one and first[n] in shown_other, n


# --- status --watch ----------------------------------------------------------------------------------------


class _Clock:
    """Time that moves only when the loop sleeps; the fourth sleep is Ctrl-C."""

    def __init__(self, start: float = 1_800_000_000.0, turns: int = 3) -> None:
        self.now, self.turns = start, turns
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if len(self.slept) > self.turns:
            raise KeyboardInterrupt
        self.now += seconds


@pytest.fixture
def row(home: Path, input_file: Path) -> dict[str, Any]:
    """The status row of a configured stream that has not run, as `status` reads it."""
    from streamctl.commands.streams import views

    paths = Paths.from_env()
    add_stream(paths, "s", StreamOptions(input=str(input_file), url="rtmp://h/live", hours=1).table("s"))
    return views(paths)[0].as_dict()


def test_watch_draws_a_frame_a_second_and_says_a_warning_on_the_next_one(row: dict[str, Any]) -> None:
    clock, frames, reads = _Clock(), list[str](), list[float]()

    def read(warn: Any) -> list[dict[str, Any]]:
        reads.append(clock.time())
        if len(reads) == 2:
            warn("config broken meanwhile")
        return [dict(row, runtime_seconds=float(len(reads)))]

    watch_status(
        [row],
        read,
        frames.append,
        width=lambda: 80,
        colour=lambda: False,
        clock=clock.time,
        sleep=clock.sleep,
    )  # returns: Ctrl-C ends a dashboard quietly
    t0 = 1_800_000_000.0
    assert clock.slept == [1.0] * 4 and reads == [t0 + 1, t0 + 2, t0 + 3]
    rows = [[row]] + [[dict(row, runtime_seconds=float(n))] for n in (1, 2, 3)]
    notes = ["", "", "warning: config broken meanwhile\n", ""]
    assert frames == [
        CLEAR + watch_title(t0 + i, 80) + "\n" + notes[i] + render_status(rows[i], False, 80, t0 + i)
        for i in range(4)
    ]


def test_watch_wraps_a_warning_to_the_terminal_and_follows_a_resize(row: dict[str, Any]) -> None:
    clock, frames, widths = _Clock(turns=1), list[str](), iter([30, 100])
    long = "config x: [streams.s] unknown key 'budjet'; did you mean 'budget'?"

    def read(warn: Any) -> list[dict[str, Any]]:
        warn(long)
        return [row]

    watch_status([row], read, frames.append, width=lambda: next(widths), colour=lambda: False,
                 clock=clock.time, sleep=clock.sleep)  # fmt: skip
    first, second = (f.removeprefix(CLEAR).split("\n") for f in frames)
    assert (first[0], second[0]) == (watch_title(clock.now - 1, 30), watch_title(clock.now, 100))
    # read while the terminal was 30 wide: wrapped to it, whole, above the table
    notes = second[1 : second.index(next(line for line in second if line.startswith("NAME")))]
    assert len(notes) > 1 and all(len(line) <= 30 for line in notes)
    assert " ".join(notes).split() == f"warning: {long}".split()


# --- logs --follow -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "shown"), [(2, ["b\n", "c\n"]), (10, ["a\n", "b\n", "c\n"]), (0, []), (-1, [])]
)
def test_tail_gives_the_last_lines(tmp_path: Path, lines: int, shown: list[str]) -> None:
    log = tmp_path / "s.log"
    log.write_text("a\nb\nc\n")
    with log.open() as f:
        assert tail(f, lines) == shown
        assert f.readline() == ""  # at the end: follow prints only what comes next


class _Done(Exception):
    pass


def test_follow_prints_each_new_line_and_waits_a_quarter_second_when_there_is_none(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    log.write_text("old\n")
    written: list[str] = []
    slept: list[float] = []
    appended = iter(["new 1\nnew 2\n", "", "new 3\n"])

    def sleep(seconds: float) -> None:  # the log grows while follow waits
        slept.append(seconds)
        more = next(appended, None)
        if more is None:
            raise _Done
        with log.open("a") as f:
            f.write(more)

    with log.open() as f:
        tail(f, 0)
        with pytest.raises(_Done):
            follow(f, written.append, sleep=sleep)
    assert written == ["new 1\n", "new 2\n", "new 3\n"]
    assert slept == [FOLLOW_POLL_SECONDS] * 4 and FOLLOW_POLL_SECONDS == 0.25
