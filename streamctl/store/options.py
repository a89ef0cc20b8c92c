"""What the user gave on the command line for one stream, and the one way from it to the config.

`add` stores `StreamOptions.table()` as the stream's TOML table; `start` lays `StreamOptions.overrides()`
over the configured stream (store/config.resolve_spec). Each check of a command-line value is made here,
once, with the option named; everything else is checked by store/config as for any table or spec.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streamctl.durations import MIN_SESSION, exact_duration, parse_budget, parse_duration, parse_hours
from streamctl.errors import UsageError
from streamctl.store.config import env_key, idle_in_copy, key_sources, parse_until

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass, fields
else:
    from streamctl.records import dataclass, fields

# What only one of the two commands takes: a value given to the other one would be dropped silently.
ADD_ONLY = ("key_file", "bitrate", "resolution", "fps", "schedule", "timezone", "window", "catch_up")
START_ONLY = ("also", "retries", "restart_delay", "grace", "stall_timeout")
# The keys of the table `add` writes, in the order it has always written them; the budget comes last.
_TABLE_ORDER = (
    "input", "url", "mode", "loop", "key", "key_file", "key_env", "until", "bitrate", "resolution", "fps",
    "input_format", "schedule", "timezone", "window", "catch_up",
)  # fmt: skip


def flag(key: str) -> str:
    """The option that gives config KEY: key_file -> --key-file."""
    return "--" + key.replace("_", "-")


@dataclass(frozen=True)
class StreamOptions:
    """The stream options as given; None: not given (the config, or the default, decides)."""

    input: str | None = None
    url: str | None = None
    key: str | None = None
    key_file: str | None = None
    key_env: str | None = None
    hours: float | None = None
    duration: str | None = None
    until: str | None = None
    mode: str | None = None
    input_format: str | None = None
    loop: bool | None = None
    bitrate: str | None = None
    resolution: str | None = None
    fps: int | None = None
    also: tuple[str, ...] | None = None
    retries: int | None = None
    restart_delay: float | None = None
    grace: float | None = None
    stall_timeout: float | None = None
    schedule: str | None = None
    timezone: str | None = None
    window: str | None = None
    catch_up: str | None = None

    def budget_seconds(self) -> float | None:
        """The budget of --hours or --duration (not both), in seconds; None if neither was given."""
        if self.hours is not None and self.duration is not None:
            raise UsageError("give --hours or --duration, not both")
        if self.hours is not None:
            return parse_hours(self.hours)
        if self.duration is not None:
            return parse_budget(self.duration, "--duration")
        return None

    def table(self, name: str) -> dict[str, Any]:
        """The TOML table `add` writes for stream NAME. Raises UsageError for values that conflict or
        miss; store/config.add_stream then checks the table as `start` would run it."""
        self._given_only(ADD_ONLY)
        budget = self.budget_seconds()
        values = {k: getattr(self, k) for k in _TABLE_ORDER}
        values["mode"] = "copy" if self.mode is None else self.mode
        values["loop"] = True if self.loop is None else self.loop
        table = {k: v for k, v in values.items() if v is not None}
        sources = key_sources(table)
        if len(sources) > 1:
            given = " and ".join(flag(k) for k in sources)
            raise UsageError(f"give one of --key, --key-file or --key-env, not {given}")
        if budget is None and self.until is None and self.schedule is None:
            raise UsageError(f"stream {name!r} needs a budget: give --hours or --duration (or --until)")
        for key in ("window", "catch_up"):
            if getattr(self, key) is not None:
                table[key] = exact_duration(parse_duration(getattr(self, key), flag(key)))
        idle = idle_in_copy(table)
        if idle:
            option = flag(idle[0])
            raise UsageError(f"{option} does nothing in copy mode: add --mode encode, or drop {option}")
        self._deadline()
        if self.key_file is not None:
            # the service may run with another $HOME or working directory
            table["key_file"] = str(Path(self.key_file).expanduser().absolute())
        if budget is not None:
            table["budget"] = exact_duration(budget)
        return table

    def _deadline(self) -> float | None:
        """--until as unix time; one that leaves less than a session is bad input, as a short budget is."""
        if self.until is None:
            return None
        until = parse_until(self.until)
        if until - time.time() < MIN_SESSION:
            raise UsageError(f"--until {self.until} has passed: give a later deadline")
        return until

    def overrides(self) -> dict[str, Any]:
        """What `start` lays over the configured stream (store/config.resolve_spec; None: keep). A
        --key-env must be set here: `start` runs now, with this environment."""
        self._given_only(START_ONLY)
        key = env_key(self.key_env, "--key-env") if self.key_env is not None else self.key
        return {
            "also": tuple(self.also) if self.also else None,
            "until": self._deadline(),
            "stall_timeout": self.stall_timeout,
            "budget_seconds": self.budget_seconds(),
            "input": self.input,
            "url": self.url,
            "key": key,
            "mode": self.mode,
            "input_format": self.input_format,
            "loop": self.loop,
            "retries": self.retries,
            "restart_delay": self.restart_delay,
            "grace": self.grace,
        }

    def _given_only(self, allowed: tuple[str, ...]) -> None:
        """A programming error, not the user's: the command has no such option, so it must not be set."""
        other = set(ADD_ONLY + START_ONLY) - set(allowed)
        given = [f.name for f in fields(self) if f.name in other and getattr(self, f.name) is not None]
        if given:
            raise AssertionError(f"not an option of this command: {', '.join(given)}")
