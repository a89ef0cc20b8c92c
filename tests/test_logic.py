"""Pure logic with injected clocks: durations, accounting, restart policy, state machine. No sleeping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from streamctl.durations import MAX_SECONDS, format_duration, parse_duration, parse_hours
from streamctl.errors import UsageError
from streamctl.run.accounting import EXTRAPOLATE_MAX, SessionMeter
from streamctl.run.policy import RestartPolicy
from streamctl.store.lifecycle import TRANSITIONS, IllegalTransition, Status, StopReason
from streamctl.store.state import StreamState


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("45m", 2700), ("5h", 18000), ("1h30m", 5400), ("1.5h", 5400), ("2d", 172800),
     ("120", 120), (" 10S ", 10), ("1h0m30s", 3630)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["0", "-1", "nan", "inf", "1e20", "5x", "", "h", "1m1h1m", "1hh", "-5m", "0s"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


@pytest.mark.parametrize("hours", [0.0, -1.0, math.nan, math.inf, 1e20])
def test_parse_hours_rejects(hours: float) -> None:
    with pytest.raises(UsageError):
        parse_hours(hours)


@given(h=hs.integers(0, 100), m=hs.integers(0, 59), s=hs.integers(0, 59))
def test_duration_round_trip(h: int, m: int, s: int) -> None:
    total = h * 3600 + m * 60 + s
    if total == 0:
        with pytest.raises(UsageError):
            parse_duration(f"{h}h{m}m{s}s")
    else:
        assert parse_duration(f"{h}h{m}m{s}s") == total
        assert parse_duration(format_duration(total) if total >= 60 else f"{total}s") == total


@given(hs.text(max_size=12))
def test_parse_duration_never_crashes(text: str) -> None:
    try:
        v = parse_duration(text)
    except UsageError:
        return
    assert 0 < v <= MAX_SECONDS and math.isfinite(v)


def test_meter_counts_media_time_and_extrapolates_at_most_one_second() -> None:
    m = SessionMeter(launched_at=100.0)
    assert m.streamed(100.3) == 0.0  # no progress yet: a hanging handshake streams nothing...
    assert m.streamed(100.3, ended_ok=True) == pytest.approx(0.3)  # ...unless ffmpeg then ended normally
    m.on_progress(100.35, 0.0)
    m.on_progress(101.0, 0.6)
    assert m.streamed(101.2) == pytest.approx(0.6 + 0.2 * 0.6 / 0.65)  # at the measured rate, not 1x
    hung = m.streamed(150.0)  # hung: no credit for the hang, and nothing taken back
    assert 0.6 + 0.2 * 0.6 / 0.65 <= hung <= 0.6 + EXTRAPOLATE_MAX
    m.on_progress(101.5, 0.4)  # out_time never goes back
    assert m.out_time == 0.6
    m.on_progress(102.0, 1.6, ended=True)
    assert m.streamed(110.0) == pytest.approx(1.6)


def test_policy_counts_failures_in_a_row_and_resets_after_a_stable_run() -> None:
    p = RestartPolicy(retries=3, delay=3.0, stable_after=60.0)
    assert [p.on_failure(1.0).restart for _ in range(4)] == [True, True, True, False]
    p = RestartPolicy(retries=2, delay=3.0, stable_after=60.0)
    assert p.on_failure(1.0).failures == 1
    assert p.on_failure(1.0).failures == 2
    d = p.on_failure(61.0)  # ran stably: the count starts again
    assert (d.restart, d.failures) == (True, 1)


def test_policy_backoff_is_capped_and_jittered() -> None:
    p = RestartPolicy(retries=10, delay=3.0, backoff=2.0, max_delay=20.0, jitter=0.5, rand=lambda: 1.0)
    delays = [p.on_failure(0.0).delay for _ in range(5)]
    assert delays == [4.5, 9.0, 18.0, 30.0, 30.0]  # 3,6,12,20,20 plus 50 %


def test_every_status_has_a_way_out_and_offline_only_restarts() -> None:
    assert set(TRANSITIONS) == set(Status) - {Status.BROKEN}  # broken: the views' word, never a state's
    assert TRANSITIONS[Status.OFFLINE] == {Status.STARTING}
    st = StreamState(name="x")
    with pytest.raises(IllegalTransition):
        st.transition(Status.LIVE)
    st.transition(Status.STARTING, now=1.0)
    st.transition(Status.LIVE, now=2.0)
    st.transition(Status.OFFLINE, StopReason.DURATION_REACHED, now=3.0)
    assert (st.status, st.stop_reason, st.end_time) == ("offline", "duration_reached", 3.0)
    st.transition(Status.STARTING, now=4.0)
    assert (st.stop_reason, st.end_time) == (None, None)  # a new run forgets the old ending


def test_backlog_watch_flags_a_queue_that_only_grows() -> None:
    from streamctl.run.liveness import BacklogWatch

    rate = 550_000.0  # bytes/s of a 4.4 Mbps stream
    w = BacklogWatch(window=4.0)
    # healthy remote ingest: in-flight data comes and goes
    for i, q in enumerate([40_000, 55_000, 38_000, 61_000, 45_000, 70_000, 52_000, 66_000, 30_000] * 3):
        w.sample(float(i), q)
        assert w.hung(rate) is None
    # the ingest stops reading: the queue grows each second and never drains (measured shape)
    w = BacklogWatch(window=4.0)
    flagged = None
    for i, q in enumerate([0, 385_426, 906_604, 1_421_940, 2_145_868, 2_593_549, 2_593_549]):
        w.sample(float(i), q)
        flagged = flagged or (w.hung(rate) and i)
    assert flagged == 4  # 4 s of growth by more than two seconds of media
    # a queue that grows for a while but by less than two seconds of media is not enough
    w = BacklogWatch(window=4.0)
    for i, q in enumerate([0, 200_000, 500_000, 800_000, 1_000_000]):
        w.sample(float(i), q)
    assert w.hung(rate) is None
    w = BacklogWatch(window=4.0)
    for i in range(10):
        w.sample(float(i), 10_000 * i)
    assert w.hung(rate) is None
    # unknown (no socket yet) resets
    w.sample(11.0, None)
    assert w.hung(rate) is None


def test_srt_and_query_keys_are_secret() -> None:
    from streamctl.masking import mask_text, mask_url, url_secrets

    srt = "srt://ingest.example:9000?streamid=#!::r=live/SRTKEY,m=publish"
    secrets = url_secrets(srt)
    assert "SRTKEY" not in mask_text(f"{srt}: Connection timed out", secrets)
    assert "SRTKEY" not in mask_url(srt)
    assert "TOKEN" not in mask_url("rtmps://h/app?token=TOKEN")


BLOCK = (
    "frame=1257\nfps=25.01\nstream_0_0_q=-1.0\nbitrate=2411.3kbits/s\ntotal_size=15155200\n"
    "out_time_us=50280000\nout_time_ms=50280000\nout_time=00:00:50.280000\ndup_frames=0\n"
    "drop_frames=0\nspeed=   1x\nprogress=continue\n"
)


def test_a_progress_block_is_read_from_its_lines() -> None:
    from streamctl.run.ffmpeg import Progress, ProgressParser

    def blocks(text: str) -> list[Progress]:
        parser = ProgressParser()
        return [b for line in text.splitlines() if (b := parser.feed(line)) is not None]

    want = Progress(out_time=50.28, total_size=15155200, speed=1.0, bitrate="2411.3kbits/s", ended=False)
    assert blocks(BLOCK) == [want]
    # N/A before the first packet; the last block says end
    first = BLOCK.replace("out_time_us=50280000", "out_time_us=N/A").replace("speed=   1x", "speed=N/A")
    last = BLOCK.replace("bitrate=2411.3kbits/s", "bitrate=N/A").replace("progress=continue", "progress=end")
    assert [(b.out_time, b.speed, b.bitrate, b.ended) for b in blocks(first + last)] == [
        (None, None, "2411.3kbits/s", False),
        (50.28, 1.0, None, True),
    ]
