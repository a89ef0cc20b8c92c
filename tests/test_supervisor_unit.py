"""The supervisor's loop with an injected clock, spawner, timer and wait: hours of budget in milliseconds."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from streamctl.run.events import Event, Kind
from streamctl.store.lifecycle import Status, StopReason
from tests.conftest import FakeFfmpeg, make


def test_crash_after_two_hours_restarts_with_three(tmp_path: Path) -> None:
    sup, _clock, spawned, timers, store = make(tmp_path, 5 * 3600, [(2 * 3600, -11)], restart_delay=3.0)
    out = sup.run()
    assert [p.t_arg for p in spawned] == [18000.0, pytest.approx(10800.0, abs=1.0)]
    assert (out.status, out.reason, out.restarts, out.sessions) == (
        Status.OFFLINE,
        StopReason.DURATION_REACHED,
        1,
        2,
    )
    assert out.runtime_seconds == pytest.approx(18000.0, abs=1.0)  # the 3 s delay is not counted
    assert timers == [18002.0, pytest.approx(10802.0, abs=1.0)]  # backup timer per session: -t + margin
    st = store.load("unit")
    assert st is not None and st.runtime_seconds == pytest.approx(18000.0, abs=1.0)
    assert st.session is None and st.status == "offline"


def test_retries_exhausted_and_no_restart_after_spent(tmp_path: Path) -> None:
    sup, _clock, spawned, _, _ = make(tmp_path, 3600, [(0.5, 1)] * 10, retries=3, restart_delay=2.0)
    out = sup.run()
    assert (out.status, out.reason, len(spawned)) == (Status.FAILED, StopReason.RETRIES_EXHAUSTED, 4)


def test_stable_run_resets_the_failure_count(tmp_path: Path) -> None:
    plans = [(1, 1), (1, 1), (120, 1), (1, 1), (1, 1), (1, 1)]
    sup, _, spawned, _, _ = make(tmp_path, 3600, plans, retries=2, restart_delay=1.0)
    out = sup.run()
    # fail(1), fail(2), a stable 120 s run then fail (back to 1), fail(2), fail(3 > 2): 5 launches.
    # Without the reset the third failure would already have been the last: 3 launches.
    assert (out.reason, len(spawned)) == (StopReason.RETRIES_EXHAUSTED, 5)


def test_stop_request_during_a_session(tmp_path: Path) -> None:
    sup, clock, spawned, _, _ = make(tmp_path, 3600, [])
    orig = clock.wait

    def wait(event: threading.Event, timeout: float) -> bool:
        if clock.t > 1100 and not event.is_set():
            sup.request_stop(StopReason.STOPPED, "test")
        return orig(event, timeout)

    sup._wait = wait
    out = sup.run()
    assert (out.status, out.reason) == (Status.OFFLINE, StopReason.STOPPED)
    # asked within the tick that passed 100 s of media: stopped at once, not a tick later
    assert spawned[0].stopped and 100 < out.runtime_seconds <= 100 + sup.watchdog_interval


def test_signals_ask_for_a_stop_only_inside_the_entry_points_block(tmp_path: Path) -> None:
    """A real SIGTERM to this process, inside stop_on_signals: the supervisor is asked to stop (no lock
    taken: a handler may interrupt any code of the main thread); outside it, the old handler is back."""
    import os
    import signal

    from streamctl.run.entry import stop_on_signals

    sup, *_ = make(tmp_path, 60, [])
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(sup.request_stop):
        assert signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes of the main thread
            if sup._stop_reason is not None:
                break
    assert (sup._stop_reason, sup._stop_source) == (StopReason.STOPPED, "signal SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_error_after_launch_stops_ffmpeg(tmp_path: Path) -> None:
    sup, _clock, spawned, _, _ = make(tmp_path, 60, [])

    def boom(_: object) -> None:
        raise OSError("disk full")

    sup.on_tick = boom
    with pytest.raises(OSError):
        sup.run()
    assert spawned and spawned[0].stopped  # no ffmpeg outlives its supervisor


def test_media_lagging_wall_time_is_healthy(tmp_path: Path) -> None:
    """10 s of connecting before any media, then media in real time: the session runs 10 s longer than
    its -t in wall time, and that is no failure: it streams the whole budget in one session."""
    sup, _clock, spawned, _, _ = make(tmp_path, 3600, [])
    orig = FakeFfmpeg.poll

    def lagging_poll(self: FakeFfmpeg) -> int | None:
        if len(spawned) == 1 and not self.stopped:
            self.end = self.start + self.t_arg + 10  # 10 s of connecting before any media
            self.start_media = self.start + 10
        return orig(self)

    FakeFfmpeg.poll = lagging_poll  # type: ignore[method-assign]
    try:
        out = sup.run()
    finally:
        FakeFfmpeg.poll = orig  # type: ignore[method-assign]
    assert (out.reason, out.sessions, out.restarts) == (StopReason.DURATION_REACHED, 1, 0)
    assert out.runtime_seconds == pytest.approx(3600, abs=1.0)


def test_a_hanging_handshake_does_not_use_up_the_budget(tmp_path: Path) -> None:
    """No progress block ever (the RTMP handshake hangs): nothing is counted, and such a session never
    counts as a stable run that resets the failure count, however long stall_timeout is."""
    sup, _clock, spawned, _, _ = make(tmp_path, 3600, [], retries=3, restart_delay=1.0, stall_timeout=90.0)

    def silent(self: FakeFfmpeg) -> int | None:
        return None if not self.stopped else 255  # never a progress line; only our stop ends it

    orig = FakeFfmpeg.poll
    FakeFfmpeg.poll = silent  # type: ignore[method-assign]
    try:
        out = sup.run()
    finally:
        FakeFfmpeg.poll = orig  # type: ignore[method-assign]
    assert (out.reason, len(spawned)) == (StopReason.RETRIES_EXHAUSTED, 4)
    assert out.runtime_seconds == 0.0


def test_restarts_and_sessions_go_on_across_a_resume(tmp_path: Path) -> None:
    """They count since the runtime was last reset, as the runtime does: a resume does not zero them."""
    sup, _, _, _, store = make(tmp_path, 3600, [(10, -11), (10, -11)], retries=1, restart_delay=1.0)
    first = sup.run()
    assert (first.reason, first.restarts, first.sessions) == (StopReason.RETRIES_EXHAUSTED, 1, 2)
    sup, _, _, _, _ = make(tmp_path, 3600, [(10, -11)], store=store, restart_delay=1.0)
    second = sup.run()
    assert (second.reason, second.restarts, second.sessions) == (StopReason.DURATION_REACHED, 2, 4)
    st = store.load("unit")
    assert st is not None and (st.restarts, st.session_count) == (2, 4)


def test_a_session_that_ends_before_the_loop_looks_still_went_live(tmp_path: Path) -> None:
    # the fake's first block with media is also its last (a 2 s run, the loop asleep for its 5 s tick):
    # the loop only sees it exited, as on a loaded machine with a short run
    sup, _, _, _, store = make(tmp_path, 2.0, [])
    kinds: list[Kind] = []
    sup.emit.listeners.append(lambda e: kinds.append(e.kind) if isinstance(e, Event) else None)
    out = sup.run()
    assert out.reason == StopReason.DURATION_REACHED
    assert Kind.LIVE in kinds and kinds.index(Kind.LIVE) < kinds.index(Kind.SESSION_ENDED)
    st = store.load("unit")
    assert st is not None and st.last_error is None
