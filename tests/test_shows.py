"""Scheduled streams through the CLI and the tick, without ffmpeg: bad schedules refused with one line
and exit 2 at add, check and start (nothing written); status and list show schedules and the next show;
skip, pause and resume; the tick's claims (two ticks start a show once), its records of passed shows,
and the show `start` runs. The tick's launcher is recorded here; tests/test_shows_e2e.py runs it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from streamctl.commands.shows import plan_start, tick
from streamctl.store.config import load_config
from streamctl.store.paths import Paths
from streamctl.store.state import StateStore
from tests.conftest import cli, run_cli, snapshot


def add(name: str, input_file: Path, *extra: str) -> None:
    r = run_cli("add", name, "-i", str(input_file), "--url", "rtmp://127.0.0.1/live", "--key",
                f"{name}-secret-key", "--duration", "1h", *extra)  # fmt: skip
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("mon-fry 20:00", "'fry' is not a day"),
        ("0 25 * * *", "the hour field '25' is not valid"),
        ("2020-01-01T20:00", "is in the past"),
        ("at eight", "is not a cron line"),
    ],
)
def test_a_bad_schedule_is_one_line_and_exit_2_and_nothing_is_written(
    home: Path, input_file: Path, schedule: str, message: str
) -> None:
    before = snapshot(home)
    r = run_cli("add", "eve", "-i", str(input_file), "--url", "rtmp://h/live", "--key", "a-secret-key",
                "--duration", "1h", "--schedule", schedule)  # fmt: skip
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("streamctl: error: schedule") and "Traceback" not in r.stderr
    assert snapshot(home) == before


def test_a_bad_schedule_in_the_config_is_named_by_check_and_start(home: Path, input_file: Path) -> None:
    add("eve", input_file, "--schedule", "daily 20:00")
    config = home / "streamctl.toml"
    config.write_text(config.read_text().replace('"daily 20:00"', '"daily 20:70"'))
    before = snapshot(home)
    r = run_cli("check", "eve")
    assert r.returncode == 2 and "[streams.eve] schedule 'daily 20:70'" in r.stderr
    r = cli("start", "eve")
    assert r.returncode == 2 and "schedule 'daily 20:70'" in r.stderr and len(r.stderr.splitlines()) == 1
    assert snapshot(home) == before
    config.write_text(
        config.read_text().replace('"daily 20:70"', '"daily 20:00"') + 'timezone = "Mars/Base"\n'
    )
    r = run_cli("check", "eve")
    assert r.returncode == 2 and "timezone 'Mars/Base' is not a time zone" in r.stderr


def test_status_and_list_show_the_schedule_and_the_next_show(home: Path, input_file: Path) -> None:
    add("eve", input_file, "--schedule", "mon-fri 20:00", "--timezone", "Europe/Berlin", "--window", "2h")
    add("plain", input_file)
    rows = {r["name"]: r for r in json.loads(run_cli("status", "--json").stdout)}
    eve = rows["eve"]
    assert eve["schedule"] == "mon-fri 20:00" and eve["schedule_paused"] is False
    assert eve["next_show"].endswith(("+01:00", "+02:00")) and 0 < eve["next_show_in_seconds"] <= 3 * 86400
    assert " 20:00 CE" in eve["next_show_local"]
    assert rows["plain"]["schedule"] is None and rows["plain"]["next_show"] is None
    table = run_cli("status").stdout
    assert f"eve: next show {eve['next_show_local']} (in " in table
    listed = {r["name"]: r for r in json.loads(run_cli("list", "--json").stdout)}
    assert (listed["eve"]["schedule"], listed["eve"]["timezone"]) == ("mon-fri 20:00", "Europe/Berlin")
    assert "shows 'mon-fri 20:00' (Europe/Berlin)" in run_cli("list").stdout
    table = load_config(Paths.from_env()).streams["eve"]
    assert (table["window"], table["schedule"]) == ("2h", "mon-fri 20:00")


def launches() -> tuple[list[tuple[str, float]], object]:
    made: list[tuple[str, float]] = []

    def launch(paths: Paths, spec: object, show: float) -> int:
        made.append((spec.name, show))  # type: ignore[attr-defined]
        return 4242

    return made, launch


def test_two_ticks_start_a_show_once_and_record_what_passed(home: Path, input_file: Path) -> None:
    add("eve", input_file, "--schedule", "0 * * * *", "--timezone", "UTC")
    paths = Paths.from_env()
    made, launch = launches()
    hour = (time.time() // 3600 + 1) * 3600  # the next top of the hour
    assert tick(paths, hour - 30, launch) == [] and made == []  # type: ignore[arg-type]
    acts = tick(paths, hour + 20, launch)  # type: ignore[arg-type]
    assert [a.action for a in acts] == ["show_started"] and made == [("eve", hour)]
    assert tick(paths, hour + 21, launch) == []  # type: ignore[arg-type]  # claimed: the second tick leaves it
    st = StateStore(paths).load("eve")
    assert st is not None and (st.show_at, st.show_launched_at) == (hour, hour + 20)
    # the launch never took the stream: a tick after LAUNCH_PATIENCE tries again, once
    acts = tick(paths, hour + 200, launch)  # type: ignore[arg-type]
    assert [a.action for a in acts] == ["show_resumed"] and made[-1] == ("eve", hour)
    # the host was down for three hours: two shows missed, the third caught up
    acts = tick(paths, hour + 3 * 3600 + 60, launch)  # type: ignore[arg-type]
    assert [a.action for a in acts] == ["show_missed", "show_missed", "show_started"]
    st = StateStore(paths).load("eve")
    assert st is not None and [s["end"] for s in st.shows] == ["missed", "missed", "missed"]
    # (the first show never took the stream: recorded missed when the next began)


def test_skip_pause_and_resume(home: Path, input_file: Path) -> None:
    add("eve", input_file, "--schedule", "0 * * * *", "--timezone", "UTC")
    paths = Paths.from_env()
    made, launch = launches()
    now = time.time()
    hour = (now // 3600 + 1) * 3600
    r = run_cli("skip", "eve")
    assert r.returncode == 0 and "will be skipped" in r.stdout
    assert tick(paths, hour - 60, launch) == []  # type: ignore[arg-type]  # the schedule is seen
    acts = tick(paths, hour + 10, launch)  # type: ignore[arg-type]
    assert [a.action for a in acts] == ["show_skipped"] and made == []
    assert run_cli("pause", "eve").returncode == 0
    rows = json.loads(run_cli("status", "--json").stdout)
    assert rows[0]["schedule_paused"] is True and "schedule paused" in run_cli("status").stdout
    acts = tick(paths, hour + 3600 + 10, launch)  # type: ignore[arg-type]
    assert [a.action for a in acts] == ["show_paused"] and made == []
    assert run_cli("resume", "eve").returncode == 0
    acts = tick(paths, hour + 7200 + 10, launch)  # type: ignore[arg-type]
    assert [a.action for a in acts] == ["show_started"] and made == [("eve", hour + 7200)]
    shows = json.loads(run_cli("shows", "eve", "--json").stdout)
    assert [p["end"] for p in shows["past"]] == ["skipped", "paused"]
    assert "eve-secret-key" not in json.dumps(shows)
    r = run_cli("skip", "plain-or-not")
    assert r.returncode == 3 and "no stream named" in r.stderr


def test_start_runs_the_current_show_or_the_next_one_early_and_says_which(
    home: Path, input_file: Path
) -> None:
    add("eve", input_file, "--schedule", "0 20 * * *", "--timezone", "UTC", "--window", "2h")
    paths = Paths.from_env()
    spec = load_config(paths).checked_spec("eve", need_env=False)
    today = (time.time() // 86400) * 86400 + 20 * 3600
    run, line = plan_start(paths, spec, today + 600)
    assert (run.show_at, run.until, run.budget_seconds) == (today, today + 7200, 3600)
    assert line.startswith("eve: the current show (") and "until" in line
    run, line = plan_start(paths, spec, today + 7300)  # after the window: tomorrow's, now
    assert run.show_at == today + 86400 and line.startswith("eve: the next show, now (")


def test_a_one_off_starts_when_its_time_has_come(home: Path, input_file: Path) -> None:
    add("once", input_file, "--schedule", "2099-01-01T20:00", "--timezone", "UTC")
    show = (time.time() // 60 - 2) * 60  # its time came two minutes ago, by the real clock
    config = home / "streamctl.toml"
    when = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(show))
    config.write_text(config.read_text().replace("2099-01-01T20:00", when))
    made, launch = launches()
    acts = tick(Paths.from_env(), None, launch)  # type: ignore[arg-type]
    assert [a.action for a in acts] == ["show_started"] and made == [("once", show)]
    assert run_cli("check", "once").returncode == 2  # `check` still says it will not run again


def test_the_schedule_readers_need_no_key_and_odd_input_is_one_line(
    home: Path, input_file: Path, tmp_path: Path
) -> None:
    key = tmp_path / "key"
    key.write_text("a-secret-key-from-a-file\n")
    r = run_cli("add", "eve", "-i", str(input_file), "--url", "rtmp://h/live", "--key-file", str(key),
                "--duration", "1h", "--schedule", "daily 20:00", "--timezone", "UTC")  # fmt: skip
    assert r.returncode == 0, r.stderr
    key.unlink()  # `shows` and the tick's decisions read no key (the launch does, as `start` would)
    r = run_cli("shows", "eve", "--json")
    assert r.returncode == 0 and str(key) not in r.stdout and str(key) not in r.stderr
    for args, message in [
        (["--timezone", "A" * 300], "is not a time zone name"),
        (["--window", "2h"], "window is for a schedule"),
        (["--catch-up", "5m"], "catch_up is for a schedule"),
    ]:
        before = snapshot(home)
        r = run_cli("add", "x", "-i", str(input_file), "--url", "rtmp://h/live", "--key", "a-secret-key",
                    "--duration", "1h", *args)  # fmt: skip
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
        assert snapshot(home) == before
