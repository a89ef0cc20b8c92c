"""Shows on a schedule: when a scheduled stream's shows fall, and what the cron tick does about them.

A schedule is a 5-field cron line, a readable form (`daily 20:00`, `mon-fri 20:00`, `sat,sun 13:00`) or
one date-time (a one-off), in a time zone (IANA name; default the host's). Each occurrence is a show,
named by its instant (unix time): a show's budget is its own, and the instant is what `shows` lists,
`skip` skips and the state file remembers, so no clock change can make one show two.

Cron lines are read by cronsim, which keeps Debian cron's rules for daylight-saving changes: a time that
does not exist that day (02:30 when clocks jump from 02:00 to 03:00) runs at the first minute after the
change (03:00); a time that exists twice (01:30 when clocks fall back) runs once, at the first. A one-off
at such a time follows the same rules. Everything here is pure: the clock is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo

from streamctl.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from streamctl.records import dataclass

# How late the tick may still start a show when no catch_up is set: its whole window when it has one
# (a show "13:00-20:00" started at 14:30 streams until 20:00), else this.
DEFAULT_CATCH_UP = 15 * 60.0
LOOKBACK = 8 * 86400.0  # the tick looks this far back for shows it has not seen (a weekly one, and a day)

_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_READABLE = re.compile(r"^\s*(?:(?P<days>[A-Za-z,\-]+)\s+)?(?P<h>\d{1,2}):(?P<m>\d{2})\s*$")
_FORMS = (
    "a cron line 'minute hour day month weekday' like '0 20 * * 1-5', a form like 'daily 20:00', "
    "'mon-fri 20:00' or 'sat,sun 13:00', or a date-time like 2026-12-24T20:00"
)


def zone(name: str | None) -> tzinfo:
    """The time zone NAME (IANA), or the host's when None."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name is None:
        return host_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise UsageError(
            f"timezone {name!r} is not a time zone name; use an IANA name like Europe/Berlin or UTC"
        ) from None


def host_zone() -> tzinfo:
    """The host's time zone with its rules (not just today's offset): $TZ, else /etc/localtime."""
    import os
    from zoneinfo import ZoneInfo

    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return ZoneInfo(tz)
        except Exception:  # a POSIX TZ string zoneinfo cannot read: today's offset is the best left
            return datetime.now().astimezone().tzinfo or UTC
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


@dataclass(frozen=True)
class Schedule:
    text: str  # as the user wrote it
    cron: str | None  # the cron line it stands for; None for a one-off
    once: float | None  # the one-off's instant
    tz: tzinfo

    def after(self, t: float) -> Iterator[float]:
        """The shows strictly after T, in order (unix times)."""
        if self.cron is None:
            if self.once is not None and self.once > t:
                yield self.once
            return
        from cronsim import CronSim

        start = datetime.fromtimestamp(t, self.tz)
        for when in CronSim(self.cron, start):
            ts = when.timestamp()
            if ts > t:  # from inside a repeated hour, cronsim gives that hour's first pass: already gone
                yield ts

    def next_after(self, t: float) -> float | None:
        return next(self.after(t), None)

    def shows_in(self, lo: float, hi: float) -> list[float]:
        """The shows in (LO, HI]."""
        out = []
        for when in self.after(lo):
            if when > hi:
                break
            out.append(when)
        return out

    def window_end(self, show: float, window: float | None) -> float | None:
        """When show SHOW must be over: the next show's start, or SHOW + WINDOW if that is sooner."""
        nxt = self.next_after(show)
        if window is not None:
            return show + window if nxt is None else min(nxt, show + window)
        return nxt

    def local(self, t: float) -> str:
        """T in the schedule's time zone, as `status` and `shows` print it: Thu 2026-12-03 20:00 CET."""
        return datetime.fromtimestamp(t, self.tz).strftime("%a %Y-%m-%d %H:%M %Z")

    def label(self, t: float) -> str:
        """T as a wall-clock time in the schedule's zone, without offset: what makes two instants the same
        show when the host's time zone changed between them (the 20:00 show is the 20:00 show)."""
        return datetime.fromtimestamp(t, self.tz).strftime("%Y-%m-%dT%H:%M")

    def iso(self, t: float) -> str:
        return datetime.fromtimestamp(t, self.tz).isoformat(timespec="seconds")


def parse_schedule(text: str, timezone: str | None = None, now: float | None = None) -> Schedule:
    """TEXT as a Schedule in TIMEZONE; UsageError naming what is wrong. With NOW, a one-off in the
    past is refused too (at `add`: it would never run)."""
    tz = zone(timezone)
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"schedule must be {_FORMS}")
    shown = text.strip()
    cron = _cron_line(shown)
    if cron is not None:
        from cronsim import CronSim, CronSimError

        try:
            next(iter(CronSim(cron, datetime.now(tz))))
        except CronSimError as e:
            raise UsageError(f"schedule {shown!r}: {_field_error(cron, str(e))}; expected {_FORMS}") from None
        except StopIteration:
            raise UsageError(f"schedule {shown!r} never happens; expected {_FORMS}") from None
        return Schedule(shown, cron, None, tz)
    once = _one_off(shown, tz)
    if once is None:
        raise UsageError(f"schedule {shown!r} is not {_FORMS}")
    if now is not None and once <= now:
        raise UsageError(
            f"schedule {shown!r} is in the past ({datetime.fromtimestamp(once, tz):%Y-%m-%d %H:%M %Z}); "
            "give a future date-time or a recurring schedule"
        )
    return Schedule(shown, None, once, tz)


def _cron_line(text: str) -> str | None:
    """The cron line TEXT stands for: itself if it has five fields, a readable form translated, or
    None (a date-time, or not a schedule at all)."""
    if len(text.split()) == 5:
        return text
    m = _READABLE.match(text)
    if m is None:
        if text.lower() in ("@hourly", "@daily", "@weekly", "@monthly", "@yearly"):
            return text.lower()  # cronsim reads these
        return None
    hour, minute = int(m["h"]), int(m["m"])
    if hour > 23 or minute > 59:
        raise UsageError(f"schedule {text!r}: {m['h']}:{m['m']} is not a time of day (00:00 to 23:59)")
    return f"{minute} {hour} * * {_days(text, m['days'])}"


def _days(text: str, days: str | None) -> str:
    if days is None or days.lower() in ("daily", "everyday", "every-day"):
        return "*"
    if days.lower() == "weekdays":
        return "1-5"
    if days.lower() == "weekends":
        return "0,6"
    out = []
    for part in days.lower().split(","):
        ends = part.split("-")
        if len(ends) > 2 or not all(e in _DAYS for e in ends):
            bad = next((e for e in ends if e not in _DAYS), part)
            raise UsageError(
                f"schedule {text!r}: {bad!r} is not a day; expected mon, tue, wed, thu, fri, sat, sun, "
                "a range like mon-fri, a list like sat,sun, daily, weekdays or weekends"
            )
        out.append("-".join(str(_DAYS[e]) for e in ends))
    return ",".join(out)


_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


def _field_error(cron: str, message: str) -> str:
    """cronsim's "Bad hour" as a line that names the field, its value and what it takes."""
    takes = {"minute": "0-59", "hour": "0-23", "day-of-month": "1-31", "month": "1-12 or jan-dec",
             "day-of-week": "0-7 or sun-sat"}  # fmt: skip
    fields = cron.split()
    if "day-of-month" in message.lower() and len(fields) == 5 and re.fullmatch(r"[\d,\-]+", fields[2]):
        return f"day {fields[2]} never falls in month {fields[3]} (no such date)"
    for i, name in enumerate(_FIELDS):
        if name in message.lower() and i < len(fields):
            return f"the {name} field {fields[i]!r} is not valid (it takes {takes[name]}, lists, steps)"
    return message


def _one_off(text: str, tz: tzinfo) -> float | None:
    """TEXT as one date-time (its own offset, else in TZ), None if it is not one."""
    try:
        when = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text else text)
    except ValueError:
        return None
    if when.tzinfo is not None:
        return when.timestamp()
    return local_instant(when, tz)


def local_instant(naive: datetime, tz: tzinfo) -> float:
    """A wall-clock time in TZ as an instant, by cron's rules: one that exists twice is the first; one
    that does not exist (skipped by a clock change) is the first minute after the change."""
    first = naive.replace(tzinfo=tz, fold=0)
    t = first.timestamp()
    if datetime.fromtimestamp(t, tz).replace(tzinfo=None) == naive:
        return t
    # in a gap: the first minute whose wall-clock time is at or past NAIVE, found between the instants
    # the two offsets give (an hour or two apart)
    lo = min(t, naive.replace(tzinfo=tz, fold=1).timestamp())
    when = datetime.fromtimestamp(lo - lo % 60, UTC)
    while when.astimezone(tz).replace(tzinfo=None) < naive:
        when += timedelta(minutes=1)
    return when.timestamp()


# ---- the tick's decision ------------------------------------------------------------------------------
_FINISHED = ("duration_reached", "deadline_reached", "stopped", "retries_exhausted", "input_ended",
             "start_failed", "swept")  # fmt: skip
LAUNCH_PATIENCE = 120.0  # seconds a launched show may take to take the stream before a tick tries again


@dataclass(frozen=True)
class ShowState:
    """What the tick needs of a stream's state."""

    show_at: float | None = None  # the current (or last) show
    show_label: str | None = None  # its wall-clock time when it began (Schedule.label)
    seen_until: float | None = None  # every show up to this one has been started, missed or skipped
    running: bool = False  # a supervisor holds the stream (or its status says it runs)
    stop_reason: str | None = None  # how the last run ended
    streamed: float = 0.0  # what the current show has streamed
    launched_at: float | None = None  # when a tick last launched the current show
    run_started_at: float | None = None  # when a supervisor last took the stream
    paused: bool = False
    skip: tuple[float, ...] = ()


@dataclass(frozen=True)
class Decision:
    action: str  # "start" (a new show), "resume" (the current show, after its supervisor was lost), "none"
    show: float | None = None  # the show to run
    until: float | None = None  # its window's end
    passed: tuple[tuple[float, str], ...] = ()  # shows not run: (show, "missed" | "skipped" | "paused")


def decide(
    sched: Schedule,
    st: ShowState,
    now: float,
    budget: float | None,
    window: float | None = None,
    catch_up: float | None = None,
    min_run: float = 1.0,
) -> Decision:
    """What the cron tick at NOW does for a scheduled stream.

    - A show is due when its time has come and it was never started, missed or skipped: it starts if
      NOW is within CATCH_UP of its time (default: its window if set, else 15 min) and at least MIN_RUN
      seconds fit before its window's end; else it is recorded missed. Of several due at once (the host
      was down), only the latest can start; the earlier are missed.
    - A stream that runs is left alone: its show ends by its own window (never past the next show's
      start), and the tick after that starts the next.
    - The current show resumes when its supervisor was lost (a crash, a reboot) or its launch never
      took, while its window is open and its budget not streamed: per show, the budget holds across
      both.
    - Paused: due shows are recorded `paused`; skipped ones `skipped`; neither starts.
    - Shows are instants: a daylight-saving change cannot make one show two. A change of the host's
      time zone moves the shows to the new zone's wall clock; the one at the same wall-clock time as the
      current show is that show, not another.
    """
    if st.running:
        return Decision("none")
    limit = catch_up if catch_up is not None else (window if window is not None else DEFAULT_CATCH_UP)
    if st.show_at is None and st.seen_until is None:
        lo = now - limit  # a schedule seen for the first time: shows before it are not its misses
    else:
        lo = max(x for x in (st.show_at, st.seen_until, now - LOOKBACK) if x is not None)
    due = sched.shows_in(lo, now)
    if st.show_at is not None and st.show_label is not None and sched.label(st.show_at) != st.show_label:
        # the zone changed since the current show (the host's): the show at its wall-clock time in the
        # new zone is that show, not another (within one zone, a repeated hour's two shows are two)
        due = [t for t in due if sched.label(t) != st.show_label]
    first = st.show_at is None and st.seen_until is None
    if first:
        due = due[-1:]  # only the latest can still start; those before it are not misses of this stream
    passed: list[tuple[float, str]] = []
    if due:
        latest = due[-1]
        for t in due[:-1]:
            passed.append((t, _not_run(st, t)))
        why = _not_run(st, latest)
        end = sched.window_end(latest, window)
        late = now - latest
        fits = end is None or end - now >= min_run
        if why == "missed" and late <= limit and fits:
            return Decision("start", latest, end, tuple(passed))
        if first and why == "missed":
            return Decision("none")  # a show from before the stream had its schedule: not its miss
        passed.append((latest, why))
        return Decision("none", None, None, tuple(passed))
    if st.show_at is not None and st.show_at <= now:
        end = sched.window_end(st.show_at, window)
        open_ = end is None or end - now >= min_run
        left = budget is None or budget - st.streamed >= min_run
        lost = st.stop_reason == "supervisor_lost"
        never_took = (
            st.launched_at is not None
            and now - st.launched_at >= LAUNCH_PATIENCE
            and (st.run_started_at is None or st.run_started_at < st.launched_at)
        )
        if open_ and left and (lost or never_took) and not st.paused:
            return Decision("resume", st.show_at, end)
    return Decision("none")


def is_skipped(t: float, skip: Iterable[float]) -> bool:
    """Show T is one of SKIP (instants kept in the state file: compared within a second)."""
    return any(abs(t - s) < 1.0 for s in skip)


def _not_run(st: ShowState, t: float) -> str:
    """Why show T would not run: "skipped", "paused", or "missed" (nothing stops it but lateness)."""
    if is_skipped(t, st.skip):
        return "skipped"
    if st.paused:
        return "paused"
    return "missed"


def current_or_next(
    sched: Schedule,
    st: ShowState,
    now: float,
    budget: float | None,
    window: float | None,
    min_run: float = 1.0,
) -> tuple[float, float | None, str] | None:
    """The show `start NAME` runs now: the current one (its time has come and it is on the air as
    scheduled: within its window, or its budget's length of its start when it has none; its budget not
    streamed), else the next one, early. (show, window end, "current" | "next"); None when
    the schedule has no show left (a one-off that passed)."""
    prev = _latest_at_or_before(sched, now)
    if prev is not None:
        end = sched.window_end(prev, window)
        streamed = st.streamed if st.show_at is not None and abs(st.show_at - prev) < 1.0 else 0.0
        span = window if window is not None else budget  # on the air, as scheduled, until then
        on_air = span is None or now < prev + span
        if (
            on_air
            and (end is None or end - now >= min_run)
            and (budget is None or budget - streamed >= min_run)
        ):
            return prev, end, "current"
    nxt = sched.next_after(now)
    if nxt is None:
        return None
    return nxt, sched.window_end(nxt, window), "next"


def next_show(sched: Schedule, after: float, skip: Iterable[float] = ()) -> float | None:
    """The first show after AFTER that is not skipped."""
    return next((t for t in sched.after(after) if not is_skipped(t, skip)), None)


def _latest_at_or_before(sched: Schedule, now: float) -> float | None:
    shows = sched.shows_in(now - LOOKBACK, now)
    return shows[-1] if shows else None
