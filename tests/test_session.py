"""One ffmpeg run as a Session: progress in, a verdict and a result out; a fake child and clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streamctl.records import replace
from streamctl.run.events import Emitter, Event, Kind
from streamctl.run.session import End, Session
from streamctl.run.watchdog import Verdict
from streamctl.store.config import Settings, StreamSpec


class Child:
    pid = 999_999_999

    def __init__(self, on_progress: Callable[[str], None], on_log: Callable[[str], None],
                 on_eof: Callable[[], None]) -> None:  # fmt: skip
        self.on_progress, self.on_log, self.on_eof = on_progress, on_log, on_eof
        self.rc: int | None = None
        self.stops = 0

    def progress(self, out_time: float, total_size: int = 0, end: bool = False) -> None:
        for line in (f"out_time_us={int(out_time * 1e6)}", f"total_size={total_size}", "speed=1x",
                     "progress=end" if end else "progress=continue"):  # fmt: skip
            self.on_progress(line)

    def poll(self) -> int | None:
        return self.rc

    def stop(self, grace: float) -> int:
        self.stops += 1
        self.rc = 255
        return 255

    def close(self) -> None: ...


class Timer:
    def __init__(self, interval: float, fn: Callable[[], None]) -> None:
        self.interval, self.fn, self.cancelled = interval, fn, False

    def start(self) -> None: ...

    def cancel(self) -> None:
        self.cancelled = True


def session(queue: list[int | None] | None = None, **settings: float):  # type: ignore[no-untyped-def]
    now = [100.0]
    events: list[Event] = []
    made: dict[str, object] = {}
    spec = StreamSpec(name="s", input="x.mp4", url="rtmp://h/live", key="secretkey1", budget_seconds=60.0,
                      settings=Settings(**settings))  # type: ignore[arg-type]  # fmt: skip

    def spawn(argv, on_progress, on_log, on_eof):  # type: ignore[no-untyped-def]
        made["child"] = Child(on_progress, on_log, on_eof)
        return made["child"]

    def timer(interval: float, fn: Callable[[], None]) -> Timer:
        made["timer"] = Timer(interval, fn)
        return made["timer"]  # type: ignore[return-value]

    samples = iter(queue or [])
    s = Session(spec, ["ffmpeg", "-t", "60", "rtmp://h/live/secretkey1"], 60.0,
                Emitter("s", lambda: now[0], [events.append]), lambda line: None, clock=lambda: now[0],
                wall=lambda: now[0], spawn=spawn, timer_factory=timer,
                probe_backlog=lambda pid: next(samples, None))  # fmt: skip
    record = s.start()
    s.arm()
    return s, now, made["child"], made["timer"], events, record


def test_the_record_masks_the_key_and_the_timer_is_armed_for_t_plus_the_margin() -> None:
    _s, _, _, timer, events, record = session()
    assert record.ffmpeg_cmd == ["ffmpeg", "-t", "60", "rtmp://h/live/****"] and record.t_arg == 60.0
    assert timer.interval == 62.0
    assert events[0].kind == Kind.SESSION_STARTED and "secretkey1" not in str(events[0].figures)


def test_progress_counts_media_time_and_a_clean_end_finishes() -> None:
    s, now, child, timer, _, _ = session()
    child.progress(0.0)
    assert not s.live
    now[0] += 30.0
    child.progress(30.0)
    assert s.live and s.streamed(now[0]) == 30.0 and s.check(None) == Verdict.OK
    now[0] += 30.0
    child.progress(60.0, end=True)
    child.rc = 0
    result = s.close(s.natural_end(0), 0)
    assert (result.end, result.streamed, result.stable, result.cause) == (End.FINISHED, 60.0, 60.0, None)
    assert timer.cancelled


def test_no_progress_for_the_stall_timeout_is_a_stall_with_its_event() -> None:
    s, now, child, _, events, _ = session(stall_timeout=15.0)
    child.progress(5.0)
    now[0] += 14.0
    assert s.check(None) == Verdict.OK
    now[0] += 1.0
    assert s.check(None) == Verdict.STALLED
    assert events[-1].kind == Kind.STALLED and events[-1].figures == {"quiet": 15.0, "out_time": 5.0}
    result = s.close(End.STALLED, s.stop())
    assert result.cause == "ffmpeg made no progress for 15 s; see `streamctl logs s`"


def test_a_send_queue_that_only_grows_is_a_jammed_ingest() -> None:
    s, now, child, _, events, _ = session(queue=[100_000, 400_000, 700_000, 1_000_000, 1_300_000, 1_600_000])
    verdicts = []
    for i in range(6):
        now[0] += 1.0
        child.progress(float(i + 1), total_size=125_000 * (i + 1))  # 1 Mbit/s
        verdicts.append(s.check(None))
    assert Verdict.JAMMED in verdicts
    assert events[-1].kind == Kind.INGEST_JAMMED
    result = s.close(End.STALLED, s.stop())
    assert (
        result.cause == "the ingest stopped reading the stream: is it overloaded, or the network congested?"
    )


def test_the_backup_timer_stops_an_ffmpeg_that_no_longer_streams() -> None:
    s, now, child, timer, events, _ = session()
    child.progress(10.0)
    now[0] += 62.0  # the timer's time: -t + margin, and nothing since 10 s of media
    timer.fn()
    assert child.stops == 1 and events[-1].kind == Kind.TIMER_FIRED
    assert s.natural_end(child.rc) == End.OVERRAN
    s.close(End.OVERRAN, child.rc)
    timer.fn()  # a late callback after close does nothing
    assert child.stops == 1


def test_the_backup_timer_waits_for_a_slow_session_and_stops_one_past_its_t() -> None:
    """At 0.4x, 60 s of media take 150 s: the timer looks again when -t should be reached, as often as
    it takes, and stops ffmpeg only once its media passes -t (or it stops streaming)."""
    s, now, child, timer, events, _ = session()
    for _ in range(62):  # 0.4 s of media per second of wall time, until the timer's time
        now[0] += 1.0
        child.progress((now[0] - 100.0) * 0.4)
    first = timer
    first.fn()
    assert child.stops == 0 and s._timer is not first  # re-armed, not stopped
    # when -t should be reached at this rate (90 s away), but at most a stall timeout (15 s) from now
    assert s._timer.interval == 15.0
    child.progress(62.5)  # ffmpeg ignores its -t
    s._timer.fn()
    assert child.stops == 1 and events[-1].kind == Kind.TIMER_FIRED


def test_the_backup_timer_gives_a_slow_connect_its_time() -> None:
    """A start-up storm (100 streams launched together): ffmpeg takes 5 s to connect, then streams at
    real time. At the timer's time (-t + 2 s after launch) it still has 3 s of media to send: the timer
    looks again when -t should be reached, instead of ending a healthy session early."""
    s, now, child, timer, events, _ = session()
    now[0] += 5.0  # connecting: no progress block yet
    for _ in range(57):
        now[0] += 1.0
        child.progress(now[0] - 105.0)
    assert now[0] - 100.0 == timer.interval == 62.0
    timer.fn()
    assert child.stops == 0 and s._timer is not timer
    assert s._timer.interval == pytest.approx(3.0 + 2.0)  # the media left at its rate, plus the margin
    assert Kind.TIMER_FIRED not in [e.kind for e in events]


def test_the_backup_timer_never_waits_past_the_deadline() -> None:
    s, now, child, timer, events, _ = session(stall_timeout=60.0)
    s.spec = replace(s.spec, until=now[0] + 70.0)  # the deadline, 70 s after launch
    for _ in range(62):
        now[0] += 1.0
        child.progress((now[0] - 100.0) * 0.4)
    timer.fn()
    assert child.stops == 0 and s._timer.interval == pytest.approx(8.0 + 2.0)  # deadline + margin
    now[0] += 10.0
    child.progress(30.0)
    s._timer.fn()  # past the deadline: stopped, slow or not
    assert child.stops == 1 and events[-1].kind == Kind.TIMER_FIRED


def test_a_timer_callback_after_close_arms_nothing() -> None:
    s, _now, child, timer, _, _ = session()
    child.progress(10.0)
    s.close(End.STOPPED, s.stop())
    timer.fn()
    assert s._timer is timer and child.stops == 1


def test_a_sustained_slow_rate_is_reported_once_and_shown() -> None:
    s, now, child, _, events, _ = session()
    for _ in range(80):
        now[0] += 1.0
        child.progress((now[0] - 100.0) * 0.38)
        s.check(None)
    slow = [e for e in events if e.kind == Kind.SLOW]
    assert len(slow) == 1 and slow[0].figures["rate"] == pytest.approx(0.38, abs=0.02)
    assert s.progress()["slow"] is True


def test_the_meter_never_goes_back_and_keeps_its_promise() -> None:
    """Between blocks it extrapolates at the measured rate; what a checkpoint promised readers
    (streamed + rate x time since) is never taken back, and nothing passes -t."""
    s, now, child, _, _, _ = session()
    shown = []
    for i in range(1, 200):
        now[0] += 0.25
        if i % 2 == 0:
            child.progress(min(60.0, i * 0.25 * 0.5))  # 0.5x
        if i % 20 == 0:
            _streamed, rate = s.promise(now[0])
            assert rate == pytest.approx(0.5, abs=0.1)
        shown.append(s.streamed(now[0]))
    assert shown == sorted(shown) and max(shown) <= 60.0


@pytest.mark.parametrize("rc", [1, -11])
def test_a_session_that_never_made_progress_is_never_stable(rc: int) -> None:
    s, now, child, _, _, _ = session()
    now[0] += 120.0
    child.rc = rc
    result = s.close(s.natural_end(rc), rc)
    assert (result.end, result.streamed, result.stable, result.sent_media) == (End.FAILED, 0.0, 0.0, False)
    assert result.cause == f"ffmpeg exited with code {rc} and no message; see `streamctl logs s`"
