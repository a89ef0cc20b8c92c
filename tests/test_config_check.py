"""Every config mistake is caught before a stream starts, by `add`, `start` and `check`; read commands
keep working on a broken config; names and keys get a "did you mean"; running streams are warned about."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import (
    Rtmp,
    cli,
    cli_bg,
    fake_ffmpeg,
    free_port,
    lavfi_start,
    needs_media,
    run_cli,
    snapshot,
    wait_for,
)


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "streamctl.toml"
    cfg.write_text(text)
    cfg.chmod(0o600)
    return cfg


STREAM = '[streams.s]\ninput = "{m}"\nurl = "rtmp://127.0.0.1:1/live"\n'


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        (STREAM + 'budjet = "2h"\n', "[streams.s] unknown key 'budjet'; did you mean 'budget'?"),
        ('[defaults]\nretrys = 14\n' + STREAM + 'budget = "2h"\n', "[defaults] unknown key 'retrys'; did you mean 'retries'?"),
        ('[defaults]\nmode = "copy"\n' + STREAM + 'budget = "2h"\n', "[defaults] unknown key 'mode'; it belongs in a [streams.NAME] table"),
        (STREAM + 'hours = "two"\n', '[streams.s] hours must be a number of hours like 5 or 1.5, got "two"'),
        (STREAM + 'budget = "2h"\nloop = "yes"\n', '[streams.s] loop must be true or false, got "yes"'),
        (STREAM + 'budget = "2h"\nretries = 1.5\n', "[streams.s] retries must be a whole number, got 1.5"),
        (STREAM, '[streams.s] has no budget: add budget = "5h" (or hours, or until)'),
        (STREAM + 'budget = "2h"\nkey = "k1234567"\nkey_file = "/x"\n', "[streams.s] gives both key and key_file: keep one"),
        (STREAM + 'budget = "2h"\nbudget_x = 1\n', "[streams.s] unknown key 'budget_x'; did you mean 'budget'?"),
        (STREAM + 'budget = "2h"\nbitrate = "4500k"\n', '[streams.s] bitrate does nothing in copy mode: set mode = "encode" or remove bitrate'),
        ('[streams.s]\ninput = "{m}"\nurl = "a.rtmp.youtube.com/live2"\nbudget = "2h"\n',
         "[streams.s] url a.rtmp.youtube.com/... has no scheme: write rtmp://a.rtmp.youtube.com/... (or a file path starting with / to record to a file)"),
        ('[stream.s]\ninput = "x"\n', "unknown table 'stream'; did you mean 'streams'?"),
    ],
)  # fmt: skip
def test_config_mistakes_are_one_line_exit_2_before_anything_runs(
    home: Path, input_file: Path, toml: str, line: str
) -> None:
    cfg = write_config(home, toml.replace("{m}", str(input_file)))
    before = snapshot(home)
    expected = f"streamctl: error: config {cfg}: {line}\n"
    for args in (["check"], ["check", "s"], ["start", "s"], ["start", "s", "--detach"]):
        if args[-1] == "s" and "unknown table" in line:
            continue  # no stream s exists in that config
        r = cli(*args) if args[0] == "start" else run_cli(*args)
        if args[0] == "start" and "no budget" in line:  # start may be given one: it says how
            expected = "streamctl: error: stream 's' has no budget: give --hours, --duration or --until\n"
        assert (r.returncode, r.stderr) == (2, expected), args
    assert snapshot(home) == before  # nothing written: no state folder, no lock, no log


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (["--url", "a.rtmp.youtube.com/live2", "--hours", "2"],
         "url a.rtmp.youtube.com/... has no scheme: write rtmp://a.rtmp.youtube.com/... (or a file path starting with / to record to a file)"),
        (["--url", "rtmp:/a.rtmp.youtube.com/live2", "--hours", "2"],
         "url needs two slashes after rtmp: write rtmp://a.rtmp.youtube.com/..."),
        (["--url", "rtmp://host:abc/live2", "--hours", "2"], "url rtmp://host:...: the port is not a number"),
        (["--url", "rtmp://h/live", "--hours", "2", "--key", "short"],
         "stream key is 5 characters; streamctl needs at least 8, so that masking it never hides ordinary text (a server with short keys: write the key into the url)"),
        (["--url", "rtmp://h/live", "--hours", "2", "--key", ""], "stream key must be non-empty, without '/', '?', '#' or spaces"),
        (["--url", "rtmp://h/live", "--hours", "2", "--fps", "0"], "--fps does nothing in copy mode: add --mode encode, or drop --fps"),
        (["--url", "rtmp://h/live", "--until", "2020-01-01T00:00"], "--until 2020-01-01T00:00 has passed: give a later deadline"),
        (["--url", "rtmp://h/live"], "stream 's' needs a budget: give --hours or --duration (or --until)"),
        (["--url", "rtmp://h/live", "--hours", "2", "--key", "k1234567", "--key-file", "/x"],
         "give one of --key, --key-file or --key-env, not --key and --key-file"),
        (["--url", "rtmp://h/live", "--hours", "2", "--bitrate", "4500k"],
         "--bitrate does nothing in copy mode: add --mode encode, or drop --bitrate"),
        (["--url", "rtmp://h/live", "--hours", "2", "--key-file", "/nonexistent/key"],
         "key_file: cannot read /nonexistent/key: No such file or directory"),
    ],
)  # fmt: skip
def test_add_refuses_what_start_would_refuse(
    home: Path, input_file: Path, extra: list[str], line: str
) -> None:
    r = run_cli("add", "s", "--input", str(input_file), *extra)
    assert (r.returncode, r.stderr) == (2, f"streamctl: error: {line.format(cfg=home / 'streamctl.toml')}\n")
    assert not home.exists()


def test_add_stores_the_key_file_as_an_absolute_path(home: Path, input_file: Path, tmp_path: Path) -> None:
    key = tmp_path / "yt.key"
    key.write_text("abcd-efgh-ijkl\n")
    r = run_cli("add", "s", "--input", str(input_file), "--url", "rtmp://h/live2", "--key-file", "yt.key", "--hours", "5",
                cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    import tomllib

    table = tomllib.loads((home / "streamctl.toml").read_text())["streams"]["s"]
    assert table["key_file"] == str(key) and table["budget"] == "5h"
    assert "abcd" not in (home / "streamctl.toml").read_text()


def test_name_typos_get_a_did_you_mean(home: Path, input_file: Path) -> None:
    assert (
        run_cli("add", "morning", "-i", str(input_file), "--url", "rtmp://h/live", "--hours", "1").returncode
        == 0
    )
    cfg = home / "streamctl.toml"
    for args, line in (
        (["start", "mornin"], f"no stream named 'mornin' in {cfg}; did you mean 'morning'?"),
        (["remove", "morming"], f"no stream named 'morming' in {cfg}; did you mean 'morning'?"),
        (["check", "morni"], f"no stream named 'morni' in {cfg}; did you mean 'morning'?"),
        (
            ["status", "mornign"],
            "no stream named 'mornign' (not configured, never started); did you mean 'morning'?",
        ),
    ):
        r = cli(*args) if args[0] == "start" else run_cli(*args)
        assert (r.returncode, r.stderr) == (3, f"streamctl: error: {line}\n"), args


def _state_of_a_finished_stream(home: Path, tmp_path: Path) -> None:
    fake = fake_ffmpeg(tmp_path, "ffmpeg", "exit 0\n")
    r = cli(*lavfi_start("s", tmp_path / "o.flv", "5s", ffmpeg=fake))
    assert r.returncode == 0, r.stderr


@pytest.mark.e2e  # a supervisor runs (its ffmpeg ends at once)
def test_read_commands_fall_back_to_the_state_files_when_the_config_is_broken(
    home: Path, tmp_path: Path
) -> None:
    _state_of_a_finished_stream(home, tmp_path)
    cfg = write_config(home, '[streams.s\ninput = "x"\n')  # someone is editing it
    warning = (
        f"streamctl: warning: config {cfg} is not valid TOML: Expected ']' at the end of a table "
        "declaration (at line 1, column 11) (showing what the state files say)\n"
    )
    for args in (["status"], ["status", "--json"], ["status", "--format", "prometheus"], ["runtime", "s"],
                 ["runtime", "s", "--json"], ["status", "s"]):  # fmt: skip
        r = run_cli(*args)
        assert (r.returncode, r.stderr) == (0, warning), args
        # the budget that only the state file holds: the config cannot be read
        budget = (
            "0s/5s",
            '"budget_seconds": 5.0',
            'streamctl_budget_seconds{stream="s",status="offline"} 5',
            "budget:          5.0s",
        )
        assert any(b in r.stdout for b in budget), (args, r.stdout)
    rows = json.loads(run_cli("status", "--json").stdout)
    assert [(r["name"], r["status"], r["stop_reason"]) for r in rows] == [("s", "offline", "input_ended")]
    assert 'streamctl_up{stream="s"' in run_cli("status", "--format", "prometheus").stdout
    # the commands that need the config still refuse it, with the same cause
    r = cli("start", "s")
    assert r.returncode == 2 and r.stderr == warning.replace("warning", "error").replace(
        " (showing what the state files say)", ""
    )


def test_doctor_fails_a_broken_config(home: Path) -> None:
    cfg = write_config(home, '[streams.s]\ninput = "x"\nurl = "rtmp://h/live"\nbudjet = "2h"\n')
    r = run_cli("doctor")
    line = next(ln for ln in r.stdout.splitlines() if " config " in f" {ln} ")
    assert line.startswith("FAIL") and f"config {cfg}: [streams.s] unknown key 'budjet'" in line
    assert r.returncode == 2


@pytest.mark.e2e
@needs_media
def test_check_probes_the_input_and_the_ingest(home: Path, media: Path, rtmp: Rtmp, tmp_path: Path) -> None:
    closed = free_port()
    write_config(
        home,
        f'[streams.up]\ninput = "{media}"\nurl = "{rtmp.url}"\nkey = "up-key-1234"\nbudget = "1h"\n'
        f'[streams.down]\ninput = "{media}"\nurl = "rtmp://127.0.0.1:{closed}/live"\nbudget = "1h"\n',
    )
    r = run_cli("check", "up")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.splitlines() == [
        "ok    up               config  ok",
        f"ok    up               input   {media}: media ok",
        f"ok    up               ingest  {rtmp.url}/**** accepts connections",
    ]
    r = run_cli("check")
    assert r.returncode == 1  # the config is fine; one ingest does not answer
    assert r.stderr == (
        f"streamctl: error: down: ingest 127.0.0.1:{closed}: connection refused; is the ingest running "
        "and the port right?\n"
    )
    assert "up-key-1234" not in r.stdout + r.stderr
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not media at all")
    write_config(home, f'[streams.j]\ninput = "{junk}"\nurl = "{rtmp.url}"\nbudget = "1h"\n')
    r = run_cli("check", "--json")
    assert r.returncode == 2
    found = {f["what"]: f for f in json.loads(r.stdout)}
    assert not found["input"]["ok"] and "is not media ffmpeg can stream" in found["input"]["detail"]
    assert found["ingest"]["ok"]
    assert not (home / "state").exists()  # check writes nothing


@pytest.mark.e2e
def test_check_tells_an_unknown_host(home: Path, media: Path) -> None:
    write_config(home, f'[streams.x]\ninput = "{media}"\nurl = "rtmp://nosuch.invalid/live"\nbudget = "1h"\n')
    r = run_cli("check", "x")
    assert r.returncode == 1
    assert r.stderr == "streamctl: error: x: ingest nosuch.invalid: no such host; check the URL's host name\n"


@pytest.mark.e2e
def test_changing_a_running_stream_warns(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.flv"
    args = ["-i", "testsrc=size=160x120:rate=10", "--input-format", "lavfi", "--url", str(out)]
    assert run_cli("add", "run", *args, "--hours", "1").returncode == 0
    sup = cli_bg("start", "run", "-q")
    try:
        st = wait_for(lambda: json.loads((home / "state" / "run.json").read_text())["supervisor_pid"])
        r = run_cli("add", "run", *args, "--duration", "30m", "--replace")
        assert r.returncode == 0
        assert r.stderr == (
            f"streamctl: warning: stream 'run' is running (supervisor pid {st}): it keeps its old settings "
            "until restarted (streamctl stop run, then start)\n"
        )
        r = run_cli("remove", "run")
        assert (r.returncode, r.stdout) == (0, "removed run\n")
        assert r.stderr == (
            f"streamctl: warning: stream 'run' is running (supervisor pid {st}): it streams on until its "
            "budget ends or `streamctl stop run`\n"
        )
    finally:
        assert run_cli("stop", "run").returncode == 0
        sup.wait(30)
    r = run_cli("add", "run", *args, "--hours", "1")
    assert (r.returncode, r.stderr) == (0, "")  # not running: no warning


def test_short_keys_never_mask_inside_words() -> None:
    from streamctl.masking import mask_text, mask_url

    assert mask_text("backup timer for kup: rtmp://h/live/kup 'kup'", ["kup"]) == (
        "backup timer for ****: rtmp://h/live/**** '****'"
    )
    assert mask_url("rtmp://kite.example/live/k", ["k"]) == "rtmp://kite.example/live/****"
    assert mask_text("KEY123KEY123", ["KEY123"]) == "KEY123KEY123"  # not a whole token: not the key


def test_tcp_check_unit() -> None:
    from streamctl.commands.check import ingest_reachable

    def refuse(address: tuple[str, int], timeout: float) -> socket.socket:
        raise ConnectionRefusedError

    def slow(address: tuple[str, int], timeout: float) -> socket.socket:
        raise TimeoutError

    assert ingest_reachable("rtmps://live.example/app/KEY", refuse) == (
        "ingest live.example:443: connection refused; is the ingest running and the port right?"
    )
    assert ingest_reachable("rtmp://live.example/app", slow) == (
        "ingest live.example:1935: no answer within 3s; check the host, port and firewall"
    )
    assert ingest_reachable("srt://live.example:9000", refuse) is None  # UDP: nothing to connect to
    assert ingest_reachable("/tmp/out.flv", refuse) is None


def test_the_example_config_has_only_known_keys_of_the_right_type() -> None:
    import tomllib

    from streamctl.store.config import check_table

    path = Path(__file__).parent.parent / "examples" / "streamctl.toml"
    data = tomllib.loads(path.read_text())
    check_table(path, data["defaults"], "defaults", stream=False)
    for name, table in data["streams"].items():
        check_table(path, table, f"streams.{name}", stream=True)
    assert set(data["streams"]) == {"morning", "twitch", "evening"}
    from streamctl.schedule import parse_schedule

    evening = data["streams"]["evening"]
    assert parse_schedule(evening["schedule"], evening["timezone"]).cron == "0 20 * * 1-5"


def test_add_takes_a_key_env_that_only_start_has_and_says_replaced_only_when_it_was(
    home: Path, input_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMCTL_TEST_KEY", raising=False)
    args = [
        "add",
        "s",
        "--input",
        str(input_file),
        "--url",
        "rtmp://h/live",
        "--key-env",
        "STREAMCTL_TEST_KEY",
    ]
    r = run_cli(*args, "--hours", "1", "--replace")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"added s in {home / 'streamctl.toml'}\n", "")
    r = run_cli(*args, "--duration", "90m", "--replace")
    assert (r.returncode, r.stdout) == (0, f"replaced s in {home / 'streamctl.toml'}\n")
    import tomllib

    assert tomllib.loads((home / "streamctl.toml").read_text())["streams"]["s"]["budget"] == "1h30m"
    r = cli("start", "s")  # start needs it
    assert r.returncode == 2
    assert r.stderr.endswith("[streams.s] key_env: environment variable STREAMCTL_TEST_KEY is not set\n")


def test_a_broken_stream_entry_is_shown_with_a_warning(home: Path, input_file: Path) -> None:
    cfg = write_config(home, f'[streams.ok]\ninput = "{input_file}"\nurl = "rtmp://h/live"\nbudget = "1h"\n'
                       f'[streams.n]\ninput = "{input_file}"\nurl = "rtmp://h/live"\nbudjet = "2h"\n')  # fmt: skip
    r = run_cli("status", "--json")
    assert r.returncode == 0
    assert (
        r.stderr
        == f"streamctl: warning: config {cfg}: [streams.n] unknown key 'budjet'; did you mean 'budget'?\n"
    )
    assert [(x["name"], x["budget_seconds"]) for x in json.loads(r.stdout)] == [("n", None), ("ok", 3600.0)]
    r = run_cli("list")
    assert r.returncode == 2 and r.stdout.startswith("ok\t1h00m00s\tcopy")
    assert (
        r.stderr
        == f"streamctl: error: config {cfg}: [streams.n] unknown key 'budjet'; did you mean 'budget'?\n"
    )


@pytest.mark.parametrize(
    ("value", "line"),
    [("hours = 0", "hours must be greater than zero, got 0"), ("hours = -1", "hours must be greater than zero, got -1"),
     ("budget = 0", "budget must be greater than zero, got 0 (a bare number means hours)"),
     ('until = "2020-01-01T00:00"', "until 2020-01-01T00:00"),
     ('[streams.s\nx = 1', "is not valid TOML")],
)  # fmt: skip
def test_more_config_mistakes(home: Path, input_file: Path, value: str, line: str) -> None:
    write_config(home, STREAM.replace("{m}", str(input_file)) + value + "\n")
    r = run_cli("check")
    assert r.returncode == 2 and line in r.stderr and r.stderr.count("\n") == 1


def test_check_probes_a_network_input_within_seconds(home: Path, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    write_config(
        home,
        f'[streams.n]\ninput = "rtmp://127.0.0.1:{port}/nosuch/src-key-1234"\nurl = "{tmp_path / "o.flv"}"\n'
        'budget = "1h"\n',
    )
    t0 = time.monotonic()
    r = run_cli("check", "n")
    assert time.monotonic() - t0 < 10
    assert r.returncode == 2
    assert r.stderr == (
        f"streamctl: error: n: input rtmp://127.0.0.1:{port}/nosuch/****: ffprobe cannot read it: "
        "Connection refused\n"
    )
    assert "src-key-1234" not in r.stdout + r.stderr


@pytest.mark.e2e
@needs_media
def test_check_probes_lavfi_and_playlists_as_ffmpeg_opens_them(
    home: Path, media: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o.flv"
    write_config(
        home, f'[streams.g]\ninput = "{media}"\ninput_format = "lavfi"\nurl = "{out}"\nbudget = "1h"\n'
    )
    r = run_cli("check", "g")
    assert r.returncode == 2
    assert r.stderr == (
        f"streamctl: error: g: input {media} is not a valid -f lavfi input: No such filter: '{media}' "
        "(Invalid argument)\n"
    )
    listing = tmp_path / "list.txt"
    listing.write_text(f"{media}\n{media}\n")
    write_config(
        home,
        f'[streams.g]\ninput = "testsrc=size=160x120:rate=10"\ninput_format = "lavfi"\nmode = "encode"\n'
        f'url = "{out}"\nbudget = "1h"\n[streams.p]\ninput = "{listing}"\nurl = "{out}"\nbudget = "1h"\n',
    )
    r = run_cli("check")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [
        "ok    g                config  ok",
        "ok    g                input   testsrc=size=160x120:rate=10: media ok (-f lavfi)",
        f"ok    g                ingest  {out} accepts connections",
        "ok    p                config  ok",
        f"ok    p                input   {listing}: playlist of 2 file(s), each media ok",
        f"ok    p                ingest  {out} accepts connections",
    ]


@pytest.mark.e2e
@needs_media
def test_check_without_ffprobe_says_the_input_is_not_probed(home: Path, media: Path, tmp_path: Path) -> None:
    import os
    import shutil

    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "ffmpeg").symlink_to(shutil.which("ffmpeg") or "ffmpeg")  # like the bundled one: no ffprobe
    write_config(home, f'[streams.m]\ninput = "{media}"\nurl = "{tmp_path / "o.flv"}"\nbudget = "1h"\n')
    r = run_cli("check", "m", "--ffmpeg", str(bare / "ffmpeg"), env={**os.environ, "PATH": str(bare)})
    assert (r.returncode, r.stderr) == (0, "")
    line = f"skip  m                input   {media}: not probed: no ffprobe beside ffmpeg"
    assert r.stdout.splitlines()[1] == line
    r = run_cli(
        "check", "m", "--json", "--ffmpeg", str(bare / "ffmpeg"), env={**os.environ, "PATH": str(bare)}
    )
    found = {f["what"]: f for f in json.loads(r.stdout)}
    assert found["input"]["ok"] and not found["input"]["checked"]
