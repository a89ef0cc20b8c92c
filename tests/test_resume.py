"""Continuity for viewers (run/resume.py): after a crash the new session resumes the input where the
stream was, measured at the receiver on a clip whose every second has its own brightness, read back
with ffmpeg's signalstats; and the ffconcat lists that do it, as pure data."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from streamctl.run.resume import probe_items, resumed
from streamctl.store.config import StreamSpec
from tests.conftest import Rtmp, cli_bg, live_ffmpeg_pid, read_state, start_args

SECONDS = 10  # the clip's length; second N has luma 12 + 20 N; a keyframe every second


@pytest.fixture(scope="module")
def seconds_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "seconds.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"color=c=black:s=160x120:r=25,geq=lum='12+mod(floor(T)\\,{SECONDS})*20':cb=128:cr=128",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(SECONDS),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-b:a", "64k", str(out)],
        check=True,
    )  # fmt: skip
    return out


def which_seconds(recording: Path) -> list[int]:
    """The clip second each frame of RECORDING shows."""
    r = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(recording), "-vf",
         "signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [round((float(line.split("=")[1]) - 12) / 20) for line in r.stdout.splitlines() if "YAVG" in line]


@pytest.mark.e2e
def test_after_a_crash_viewers_see_the_video_go_on_within_a_gop(
    home: Path, seconds_clip: Path, no_leftovers: Rtmp
) -> None:
    sup = cli_bg(*start_args("cont", seconds_clip, no_leftovers, "16s", "--restart-delay", "0.5"))
    pid = live_ffmpeg_pid(home, "cont")
    time.sleep(6.3)
    os.kill(pid, signal.SIGSEGV)
    _, err = sup.communicate(timeout=40)
    assert sup.returncode == 0, err
    st = read_state(home, "cont")
    first_ran = st["sessions"][0]["runtime_seconds"]
    recs = sorted(no_leftovers.recordings("cont-streamkey"))
    assert len(recs) == 2
    before, after = which_seconds(recs[0]), which_seconds(recs[1])
    stopped, resumed_at = before[-1], after[0]
    error = (resumed_at - stopped) % SECONDS
    print(
        f"FIGURE resume: session 1 streamed {first_ran:.2f} s and ended on second {stopped}; session 2 began "
        f"on second {resumed_at} (0 = the same second, {SECONDS - 1} = one GOP back)"
    )
    assert error in (0, SECONDS - 1)  # the same second or the GOP before it; 0:00 would be far off
    assert stopped >= 3  # (so a start from 0:00 could not pass for a resume)
    assert after[25:] and after[25] == (resumed_at + 1) % SECONDS  # and it plays on from there


def spec(**kw: object) -> StreamSpec:
    return StreamSpec(name="s", input="/v/a.mp4", url="rtmp://h/live", **kw)  # type: ignore[arg-type]


def test_the_resume_list_starts_at_the_right_item_and_offset(tmp_path: Path) -> None:
    items = [("/v/a.mp4", 10.0), ("/v/b.mp4", 20.0), ("/v/c.mp4", 5.0)]
    s = resumed(spec(loop=True), items, streamed=70.0 + 12.5, remaining=40.0, state_dir=tmp_path)
    assert (s.input_format, s.loop) == ("concat", False)
    lines = Path(s.input).read_text().splitlines()
    # 82.5 s into a 35 s loop: 12.5 s into the list, 2.5 s into b; then c, then the whole list for the rest
    assert lines[:4] == ["ffconcat version 1.0", "file '/v/b.mp4'", "inpoint 2.500", "file '/v/c.mp4'"]
    assert lines[4:7] == ["file '/v/a.mp4'", "file '/v/b.mp4'", "file '/v/c.mp4'"]
    covered = (20 - 2.5) + 5 + 35 * ((len(lines) - 5) // 3)
    assert covered >= 40.0
    assert (
        resumed(spec(loop=True), items, streamed=35.2, remaining=40.0, state_dir=tmp_path).input == "/v/a.mp4"
    )
    played = resumed(spec(loop=False), items, streamed=36.0, remaining=40.0, state_dir=tmp_path)
    assert played.input == "/v/a.mp4"  # a single play that is over: as it was (it ends at once)
    once = resumed(spec(loop=False), items, streamed=31.0, remaining=40.0, state_dir=tmp_path)
    assert Path(once.input).read_text().splitlines()[1:] == ["file '/v/c.mp4'", "inpoint 1.000"]


@given(
    durations=hs.lists(hs.floats(0.05, 50.0), min_size=1, max_size=6),
    streamed=hs.floats(0.0, 10_000.0),
    loop=hs.booleans(),
)
def test_any_position_gives_a_list_within_the_input(
    durations: list[float], streamed: float, loop: bool
) -> None:
    import tempfile

    items = [(f"/v/{i}.mp4", d) for i, d in enumerate(durations)]
    with tempfile.TemporaryDirectory() as d:
        s = resumed(spec(loop=loop), items, streamed, remaining=60.0, state_dir=Path(d))
        if s.input_format == "concat":
            lines = Path(s.input).read_text().splitlines()
            first = lines[1].removeprefix("file '").removesuffix("'")
            at = float(lines[2].split()[1]) if len(lines) > 2 and lines[2].startswith("inpoint") else 0.0
            assert 0.0 <= at <= dict(items)[first]


def test_a_relative_file_is_listed_by_its_full_path(
    seconds_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(seconds_clip.parent)
    got = probe_items("ffmpeg", seconds_clip.name)
    assert got is not None and got[0][0] == str(seconds_clip) and abs(got[0][1] - SECONDS) < 0.2
