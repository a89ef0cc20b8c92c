"""Shows on a schedule, as pure decisions on an injected clock (schedule.py): months of ticks in
milliseconds, missed shows, catch-up, a long show overlapping the next, daylight-saving changes in
Europe/Berlin and America/New_York, a host whose time zone changes, one-offs."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from streamctl.errors import UsageError
from streamctl.schedule import (
    Schedule,
    ShowState,
    current_or_next,
    decide,
    local_instant,
    parse_schedule,
)

BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"


def at(text: str, tz: str) -> float:
    return local_instant(datetime.fromisoformat(text), ZoneInfo(tz))


def local(t: float, tz: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


class Host:
    """The tick's view of one stream over time, kept as commands/shows.py keeps it in the state file:
    a started show runs for BUDGET (or to its window's end) and then ends by itself."""

    def __init__(self, sched: Schedule, budget: float, window: float | None = None,
                 catch_up: float | None = None) -> None:  # fmt: skip
        self.sched, self.budget, self.window, self.catch_up = sched, budget, window, catch_up
        self.st = ShowState()
        self.started: list[tuple[float, float]] = []  # (show, when it started)
        self.passed: list[tuple[float, str]] = []
        self.ends_at: float | None = None

    def tick(self, now: float) -> None:
        st = self.st
        if self.ends_at is not None and now >= self.ends_at:
            st = ShowState(**{**vars(st), "running": False, "stop_reason": "duration_reached",
                              "streamed": self.budget})  # fmt: skip
            self.ends_at = None
        d = decide(self.sched, st, now, self.budget, self.window, self.catch_up)
        self.passed += d.passed
        seen = max([st.seen_until or 0.0, *(t for t, _ in d.passed)])
        if d.action == "start":
            assert d.show is not None
            self.started.append((d.show, now))
            end = now + self.budget if d.until is None else min(now + self.budget, d.until)
            self.ends_at = end
            st = ShowState(show_at=d.show, show_label=self.sched.label(d.show), seen_until=max(seen, d.show),
                           running=True, launched_at=now, run_started_at=now)  # fmt: skip
        else:
            st = ShowState(**{**vars(st), "seen_until": seen or None})
        self.st = st


def run(host: Host, start: float, end: float, every: float = 60.0) -> Host:
    t = start
    while t <= end:
        host.tick(t)
        t += every
    return host


def test_months_of_weekday_shows_each_start_once_within_a_minute() -> None:
    sched = parse_schedule("mon-fri 20:00", BERLIN)
    start, end = at("2026-01-01T00:00", BERLIN), at("2026-04-30T23:59", BERLIN)
    host = Host(sched, budget=2 * 3600)
    day = start
    while day < end:  # a tick every minute around 20:00, every 37 minutes the rest of the day
        evening = at(datetime.fromtimestamp(day, ZoneInfo(BERLIN)).strftime("%Y-%m-%dT19:55"), BERLIN)
        ticks = [*range(0, 86400, 37 * 60), *(int(evening - day) + 60 * i for i in range(12))]
        for t in sorted(ticks):
            host.tick(day + t)
        day = at(datetime.fromtimestamp(day + 90000, ZoneInfo(BERLIN)).strftime("%Y-%m-%dT00:00"), BERLIN)
    days = [local(s, BERLIN) for s, _ in host.started]
    expected = [local(t, BERLIN) for t in sched.shows_in(start, end)]
    assert days == expected and len(days) == 86  # every weekday of four months, none twice
    assert all(0 <= when - show < 60 for show, when in host.started)  # within a minute of its time
    assert all(d.endswith("20:00 CET") or d.endswith("20:00 CEST") for d in days)  # across the March change
    assert host.passed == []


def test_a_host_down_over_shows_misses_them_and_catches_up_the_last_within_its_limit() -> None:
    sched = parse_schedule("daily 20:00", BERLIN)
    host = Host(sched, budget=3600)
    host.tick(at("2026-06-01T19:59", BERLIN))
    host.tick(at("2026-06-01T20:00", BERLIN))  # the show of the 1st starts
    host.tick(at("2026-06-04T20:10", BERLIN))  # down from the 1st at 21:00 until the 4th 20:10
    assert [local(t, BERLIN) for t, _ in host.passed] == ["2026-06-02 20:00 CEST", "2026-06-03 20:00 CEST"]
    assert {why for _, why in host.passed} == {"missed"}
    assert local(host.started[-1][0], BERLIN) == "2026-06-04 20:00 CEST"  # 10 min late: caught up
    host.tick(at("2026-06-05T20:16", BERLIN))  # 16 min late: past the default 15 min
    assert host.passed[-1] == (at("2026-06-05T20:00", BERLIN), "missed")
    assert len(host.started) == 2


def test_with_a_window_a_late_tick_starts_what_still_fits() -> None:
    sched = parse_schedule("sat 13:00", BERLIN)
    show = at("2026-06-06T13:00", BERLIN)
    d = decide(sched, ShowState(seen_until=show - 86400), show + 5400, 7 * 3600, window=7 * 3600)
    assert (d.action, d.show, d.until) == ("start", show, show + 7 * 3600)  # 14:30 -> until 20:00
    # less than a session left before the window ends: missed
    d = decide(sched, ShowState(seen_until=show - 86400), show + 7 * 3600 - 0.5, 7 * 3600, window=7 * 3600)
    assert d.action == "none" and d.passed == ((show, "missed"),)
    # an explicit catch_up wins over the window
    d = decide(
        sched, ShowState(seen_until=show - 86400), show + 1800, 7 * 3600, window=7 * 3600, catch_up=600
    )
    assert d.action == "none" and d.passed == ((show, "missed"),)


def test_a_new_schedule_does_not_count_the_shows_before_it_as_missed() -> None:
    sched = parse_schedule("daily 20:00", BERLIN)
    d = decide(sched, ShowState(), at("2026-06-10T12:00", BERLIN), 3600)
    assert (d.action, d.passed) == ("none", ())
    d = decide(sched, ShowState(), at("2026-06-10T20:05", BERLIN), 3600)
    assert d.action == "start" and d.passed == ()
    d = decide(sched, ShowState(), at("2026-06-10T20:30", BERLIN), 3600)  # too late to start: not a miss
    assert (d.action, d.passed) == ("none", ())


def test_a_show_never_runs_into_the_next_and_the_next_starts_once_it_is_over() -> None:
    sched = parse_schedule("0 * * * *", "UTC")  # hourly shows, each with a budget longer than an hour
    t0 = at("2026-06-01T10:00", "UTC")
    d = decide(sched, ShowState(seen_until=t0 - 3600), t0, budget=5400)
    assert (d.action, d.until) == ("start", t0 + 3600)  # the window ends where the next show starts
    running = ShowState(show_at=t0, seen_until=t0, running=True)
    assert decide(sched, running, t0 + 3600, 5400).action == "none"  # still stopping at 11:00: left alone
    ended = ShowState(show_at=t0, seen_until=t0, stop_reason="deadline_reached", streamed=3600)
    d = decide(sched, ended, t0 + 3660, 5400)
    assert (d.action, d.show) == ("start", t0 + 3600)  # the next tick starts the 11:00 show


def test_a_lost_supervisor_resumes_its_show_while_the_window_is_open_and_budget_left() -> None:
    sched = parse_schedule("daily 20:00", NEW_YORK)
    show = at("2026-06-01T20:00", NEW_YORK)
    lost = ShowState(show_at=show, seen_until=show, stop_reason="supervisor_lost", streamed=1800.0)
    d = decide(sched, lost, show + 2400, budget=3600, window=7200)
    assert (d.action, d.show, d.until) == ("resume", show, show + 7200)
    assert decide(sched, lost, show + 7200, 3600, window=7200).action == "none"  # window closed
    spent = ShowState(**{**vars(lost), "streamed": 3600.0})
    assert decide(sched, spent, show + 2400, 3600, window=7200).action == "none"
    done = ShowState(**{**vars(lost), "stop_reason": "duration_reached"})
    assert decide(sched, done, show + 2400, 3600, window=7200).action == "none"
    stopped = ShowState(**{**vars(lost), "stop_reason": "stopped"})  # stopped by hand: stays stopped
    assert decide(sched, stopped, show + 2400, 3600, window=7200).action == "none"
    # a launch that never took the stream (the supervisor died before it could) is tried again
    claimed = ShowState(show_at=show, seen_until=show, launched_at=show + 5, run_started_at=show - 86400)
    assert decide(sched, claimed, show + 60, 3600).action == "none"  # give it time
    assert decide(sched, claimed, show + 200, 3600).action == "resume"


def test_skipped_and_paused_shows_are_recorded_and_do_not_start() -> None:
    sched = parse_schedule("daily 20:00", BERLIN)
    show = at("2026-06-02T20:00", BERLIN)
    seen = ShowState(seen_until=show - 86400, skip=(show,))
    assert decide(sched, seen, show + 30, 3600).passed == ((show, "skipped"),)
    paused = ShowState(seen_until=show - 86400, paused=True)
    d = decide(sched, paused, show + 30, 3600)
    assert (d.action, d.passed) == ("none", ((show, "paused"),))


@pytest.mark.parametrize(
    ("tz", "cron", "day", "want"),
    [
        # clocks jump 02:00 -> 03:00: a 02:30 show runs at 03:00 that day, once
        (BERLIN, "30 2 * * *", "2026-03-29", ["2026-03-28 02:30 CET", "2026-03-29 03:00 CEST",
                                              "2026-03-30 02:30 CEST"]),
        # clocks fall back 03:00 -> 02:00: 02:30 exists twice; the show runs once, at the first
        (BERLIN, "30 2 * * *", "2026-10-25", ["2026-10-24 02:30 CEST", "2026-10-25 02:30 CEST",
                                              "2026-10-26 02:30 CET"]),
        (NEW_YORK, "30 2 * * *", "2026-03-08", ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT",
                                                "2026-03-09 02:30 EDT"]),
        (NEW_YORK, "30 1 * * *", "2026-11-01", ["2026-10-31 01:30 EDT", "2026-11-01 01:30 EDT",
                                                "2026-11-02 01:30 EST"]),
        # hourly: the skipped hour has no show; the repeated one has one
        (NEW_YORK, "15 * * * *", "2026-11-01", None),
    ],
)  # fmt: skip
def test_daylight_saving_changes_start_each_show_once(
    tz: str, cron: str, day: str, want: list[str] | None
) -> None:
    sched = parse_schedule(cron, tz)
    start = at(f"{day}T00:00", tz) - 86400
    end = start + 3 * 86400
    host = run(Host(sched, budget=600), start, end, every=300.0)
    shows = [s for s, _ in host.started]
    assert len(shows) == len(set(shows)) and host.passed == []
    if want is not None:
        assert [local(s, tz) for s in shows] == want
    else:
        on_day = [local(s, tz) for s in shows if local(s, tz).startswith(day)]
        # an hourly schedule runs in both passes of the repeated hour, as Debian cron runs such a job: the
        # 25-hour day has 25 shows, 01:15 EDT and 01:15 EST among them (two instants, two shows)
        assert [d for d in on_day if " 01:15 " in d] == [f"{day} 01:15 EDT", f"{day} 01:15 EST"]
        assert len(on_day) == 25


def test_the_next_show_from_inside_a_repeated_hour_is_ahead() -> None:
    sched = parse_schedule("daily 02:30", BERLIN)
    second_pass = at("2026-10-25T02:00", BERLIN) + 3600 + 600  # 02:10 CET, after 02:30 CEST
    assert local(sched.next_after(second_pass) or 0, BERLIN) == "2026-10-26 02:30 CET"
    assert sched.shows_in(second_pass - 1, second_pass + 3600) == []


def test_a_host_time_zone_change_does_not_run_a_show_twice() -> None:
    show = at("2026-06-01T20:00", BERLIN)  # 18:00 UTC
    berlin = parse_schedule("daily 20:00", BERLIN)
    st = ShowState(show_at=show, show_label=berlin.label(show), seen_until=show, stop_reason="duration_reached",
                   streamed=3600)  # fmt: skip
    london = parse_schedule("daily 20:00", "Europe/London")  # the host moved: 20:00 London is 19:00 UTC
    d = decide(london, st, at("2026-06-01T20:01", "Europe/London"), 3600)
    assert d.action == "none" and d.passed == ()  # the 20:00 show of the day already ran
    d = decide(london, st, at("2026-06-02T20:01", "Europe/London"), 3600)
    assert (d.action, london.local(d.show or 0)) == ("start", "Tue 2026-06-02 20:00 BST")


def test_one_offs() -> None:
    now = at("2026-06-01T12:00", BERLIN)
    with pytest.raises(UsageError, match="in the past"):
        parse_schedule("2026-05-31T20:00", BERLIN, now=now)
    once = parse_schedule("2026-06-01 20:00", BERLIN, now=now)
    show = at("2026-06-01T20:00", BERLIN)
    assert list(once.after(now)) == [show] and list(once.after(show)) == []
    assert decide(once, ShowState(seen_until=now), show + 60, 3600).action == "start"
    # the host was down over it: missed, and nothing is left to run
    d = decide(once, ShowState(seen_until=now), show + 3600, 3600)
    assert d.passed == ((show, "missed"),)
    assert current_or_next(once, ShowState(), show + 86400, 3600, None) is None
    # at a time that does not exist (Berlin's clocks jump 02:00 -> 03:00): the first minute after
    gap = parse_schedule("2026-03-29T02:30", BERLIN)
    assert gap.local(gap.once or 0) == "Sun 2026-03-29 03:00 CEST"
    twice = parse_schedule("2026-11-01T01:30", NEW_YORK)  # exists twice: the first
    assert twice.iso(twice.once or 0) == "2026-11-01T01:30:00-04:00"


def test_start_runs_the_current_show_or_else_the_next_one_now() -> None:
    sched = parse_schedule("daily 20:00", BERLIN)
    show = at("2026-06-01T20:00", BERLIN)
    assert current_or_next(sched, ShowState(), show + 600, 3600, 7200) == (show, show + 7200, "current")
    spent = ShowState(show_at=show, streamed=3600)
    assert current_or_next(sched, spent, show + 600, 3600, 7200) == (
        show + 86400,
        show + 86400 + 7200,
        "next",
    )
    # no window: yesterday's show was on the air for its budget's length, so at 19:50 it is today's, early
    assert current_or_next(sched, ShowState(), show - 600, 3600, None) == (show, show + 86400, "next")
    assert current_or_next(sched, ShowState(), show + 1800, 3600, None) == (show, show + 86400, "current")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon-fry 20:00", "'fry' is not a day"),
        ("0 25 * * *", "the hour field '25' is not valid"),
        ("61 * * * *", "the minute field '61'"),
        ("0 0 31 2 *", "never falls in month 2"),
        ("24:00", "not a time of day"),
        ("tomorrow", "is not a cron line"),
        ("", "schedule must be"),
    ],
)
def test_bad_schedules_name_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_schedule(text, "UTC")


def test_an_unknown_time_zone_is_named() -> None:
    with pytest.raises(UsageError, match="'Mars/Base' is not a time zone"):
        parse_schedule("daily 20:00", "Mars/Base")
