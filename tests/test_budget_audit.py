"""Cases of the fault audit (issue 11): budgets that cannot make a session, and what a refused start
leaves on disk."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import Rtmp, cli, cli_bg, needs_media, read_state, run_cli


@pytest.mark.e2e  # a real `start` process (it execs the supervisor)
@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            ["--duration", "0.5"],
            "--duration of 0.5s is shorter than the shortest session (1s): give at least 1s",
        ),
        (
            ["--hours", "0.0001"],
            "--hours of 0.4s is shorter than the shortest session (1s): give at least 1s",
        ),
        (["--until", "2020-01-01T00:00"], "--until 2020-01-01T00:00 has passed: give a later deadline"),
    ],
)
def test_a_limit_that_cannot_make_one_session_is_bad_input_and_leaves_nothing(
    home: Path, extra: list[str], line: str
) -> None:
    r = cli("start", "s", "-q", "-i", "testsrc", "--input-format", "lavfi", "--url", "rtmp://127.0.0.1:1/live",
            "--key", "s-streamkey", *extra)  # fmt: skip
    assert (r.returncode, r.stderr, r.stdout) == (2, f"streamctl: error: {line}\n", "")
    assert not home.exists() or list(home.rglob("*")) == []  # no state, no lock files, no log


def test_a_deadline_less_than_a_session_away_is_refused_too(home: Path) -> None:
    soon = datetime.fromtimestamp(datetime.now().timestamp() + 0.5).astimezone().isoformat()
    from streamctl.errors import UsageError
    from streamctl.store.options import StreamOptions

    with pytest.raises(UsageError, match="has passed"):
        StreamOptions(until=soon).overrides()


@pytest.mark.e2e
@needs_media
def test_an_ffmpeg_at_half_speed_streams_its_budget_in_one_session(home: Path, no_leftovers: Rtmp) -> None:
    """An encode slower than real time (here 0.5x, by ffmpeg's realtime filter) is healthy: one session
    ends by its own -t with the whole budget at the receiver, and the runtime status shows never goes
    back (it was extrapolated at 1x between checkpoints). It used to be stopped by the backup timer
    armed for the wall time, restarted, and end failed with part of the budget never streamed."""
    source = "testsrc=size=320x240:rate=25,realtime=speed=0.5"
    sup = cli_bg("start", "half", "-q", "--input-format", "lavfi", "--input", source, "--mode", "encode",
                 "--url", no_leftovers.url, "--key", "half-streamkey", "--duration", "5")  # fmt: skip
    shown = []  # what status shows while it runs: it must never go back
    while sup.poll() is None:
        r = run_cli("status", "half", "--json")
        rows = json.loads(r.stdout) if r.returncode == 0 else []  # exit 3 until its state exists
        if rows and rows[0]["status"] in ("live", "starting"):
            shown.append(rows[0]["runtime_seconds"])
        time.sleep(0.1)
    _, err = sup.communicate()
    assert sup.returncode == 0, err
    assert len(shown) > 20 and shown == sorted(shown), shown
    st = read_state(home, "half")
    assert (st["stop_reason"], st["session_count"], st["restarts"]) == ("duration_reached", 1, 0)
    assert st["sessions"][0]["end"] == "finished"
    recorded = sum(no_leftovers.durations("half-streamkey"))
    print(f"FIGURE half-speed: {recorded:.2f} s recorded of a 5 s budget, in 1 session")
    assert recorded == pytest.approx(5.0, abs=0.5)
    assert "backup timer fired" not in (home / "state" / "logs" / "half.log").read_text()
