"""The TOML config: configured streams and defaults. Read with tomllib, written with tomli-w.

Every key is declared once in KEYS (its type, where it may stand, the mode it works in), so every
mistake is caught when the config is read, with the key named: unknown keys (with a "did you mean"),
wrong types, keys that do nothing in the stream's mode, conflicting key sources.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamctl.durations import check_budget, parse_budget, parse_duration
from streamctl.errors import FileError, NotFound, StreamctlError, UsageError, did_you_mean
from streamctl.masking import MIN_KEY, STREAM_SCHEMES, url_secrets
from streamctl.store.config_cache import cached, refresh_cache
from streamctl.store.fileio import atomic_write, locked
from streamctl.store.paths import Paths, validate_name
from streamctl.store.trust import check_trusted

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass, field, fields, replace
else:
    from streamctl.records import dataclass, field, fields, replace

MODES = ("copy", "encode")
_BITRATE = re.compile(r"\d+(\.\d+)?[kKmM]?")
_RESOLUTION = re.compile(r"\d{2,5}x\d{2,5}")
_OUTPUT_FILE = (".flv", ".mp4", ".mkv", ".ts", ".mov")


@dataclass(frozen=True)
class Key:
    """One config key: what its value must be, and where it may stand."""

    kind: str  # a key of _EXPECTED
    stream_only: bool = True  # False: also in [defaults]
    encode_only: bool = False  # does nothing in copy mode


_EXPECTED = {
    "string": "a string",
    "bool": "true or false",
    "int": "a whole number",
    "number": "a number",
    "duration": 'a duration like "90s", "45m" or "1h30m"',
    "budget": 'a duration like "5h" or "1h30m" (a bare number means hours)',
    "hours": "a number of hours like 5 or 1.5",
    "datetime": "a date and time like 2026-12-01T22:00:00",
    "urls": 'a list of URLs like ["rtmp://host/app/KEY"]',
    "notify": 'a list of apprise URLs like ["tgram://BOT_TOKEN/CHAT_ID", "json://host/path"]',
    "argv": 'a command as a list like ["/usr/local/bin/alert", "--stream"] (no shell)',
    "events": 'a list of event names like ["gave_up", "ended"]',
}

KEYS: dict[str, Key] = {
    "input": Key("string"),
    "input_format": Key("string"),
    "loop": Key("bool"),
    "resume": Key("bool"),  # a restart resumes a file or playlist input where it was (run/resume.py)
    "url": Key("string"),
    "key": Key("string"),
    "key_file": Key("string"),
    "key_env": Key("string"),
    "also": Key("urls"),
    "budget": Key("budget"),
    "hours": Key("hours"),
    "until": Key("datetime"),
    "mode": Key("string"),
    "bitrate": Key("string", encode_only=True),
    "audio_bitrate": Key("string", encode_only=True),
    "resolution": Key("string", encode_only=True),
    "fps": Key("int", encode_only=True),
    "keyframe_seconds": Key("number", encode_only=True),
    "preset": Key("string", encode_only=True),
    # how the supervisor treats the stream: also in [defaults]
    "retries": Key("int", stream_only=False),
    "restart_delay": Key("duration", stream_only=False),
    "backoff": Key("number", stream_only=False),
    "max_delay": Key("duration", stream_only=False),
    "jitter": Key("number", stream_only=False),
    "stable_after": Key("duration", stream_only=False),
    "stall_timeout": Key("duration", stream_only=False),
    "grace": Key("duration", stream_only=False),
    "ffmpeg": Key("string", stream_only=False),
    # who is told of the stream's events (output/alerts.py): apprise URLs, and a local command
    "notify": Key("notify", stream_only=False),
    "notify_events": Key("events", stream_only=False),
    "on_event": Key("argv", stream_only=False),
    "on_event_events": Key("events", stream_only=False),
    # the stream log's size: it rotates at log_max_mb and keeps log_keep old files
    "log_max_mb": Key("number", stream_only=False),
    "log_keep": Key("int", stream_only=False),
    # shows on a schedule (schedule.py): the budget is then each show's
    "schedule": Key("string"),
    "timezone": Key("string"),
    "window": Key("duration"),
    "catch_up": Key("duration"),
}
KEY_SOURCES = ("key", "key_file", "key_env")
# never shown, whatever their type: the key, URLs that may hold it, apprise URLs (tokens), a hook's argv
SECRET_KEYS = ("key", "url", "also", "notify", "on_event")
MAX_KEY_FILE = 4096  # bytes: a stream key is a few dozen
MAX_CONFIG = 16 * 1024 * 1024  # bytes: a thousand streams are ~200 KiB
MAX_DEPTH = 16  # arrays and tables within each other: the deepest key is 3 (streams.NAME.also)
ENCODE_ONLY = tuple(k for k, v in KEYS.items() if v.encode_only)


def _shown(value: Any) -> str:
    """VALUE as it looks in TOML, for error lines."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a table"
    return repr(value)


_TOML_TYPE = {"str": "string", "int": "number", "float": "number", "bool": "boolean", "list": "list",
              "dict": "table", "datetime": "date-time", "date": "date", "time": "time"}  # fmt: skip


def _type_ok(kind: str, value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("string",):
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("number", "hours"):
        return number
    if kind in ("duration", "budget"):
        return number or isinstance(value, str)
    if kind == "datetime":
        import datetime as dt  # the config's readers only: not the supervisor's memory

        return isinstance(value, str | dt.datetime)
    if kind in ("urls", "notify", "argv", "events"):
        return isinstance(value, list) and all(isinstance(u, str) for u in value)
    raise AssertionError(kind)


def key_sources(table: dict[str, Any]) -> list[str]:
    """The key sources TABLE gives, in KEY_SOURCES order: more than one is a mistake."""
    return [k for k in KEY_SOURCES if k in table]


def idle_in_copy(table: dict[str, Any]) -> list[str]:
    """The encode-only keys TABLE gives although its mode is copy (they would do nothing)."""
    if table.get("mode", "copy") != "copy":
        return []
    return [k for k in ENCODE_ONLY if k in table]


def env_key(variable: str, what: str, need: bool = True) -> str | None:
    """The stream key in environment VARIABLE. NEED: unset or empty is an error, named by WHAT (the
    option or the config key that gave VARIABLE)."""
    value = os.environ.get(variable)
    if not value and need:
        raise UsageError(f"{what}: environment variable {variable} is not set")
    return value or None


def check_table(path: Path, table: dict[str, Any], where: str, stream: bool) -> None:
    """Raise UsageError for the first unknown, misplaced, mistyped or conflicting key of one table."""
    allowed = [k for k, v in KEYS.items() if stream or not v.stream_only]
    for key, value in table.items():
        spec = KEYS.get(key)
        if spec is None or (spec.stream_only and not stream):
            if spec is not None:
                hint = "; it belongs in a [streams.NAME] table"
            else:
                hint = did_you_mean(key, allowed) or "; see examples/streamctl.toml for every key"
            raise UsageError(f"config {path}: [{where}] unknown key {key!r}{hint}")
        if not _type_ok(spec.kind, value):
            # a key, notify URLs (tokens) and a hook's argv (it may hold one): their value is never shown
            kind = _TOML_TYPE.get(type(value).__name__, "value")
            got = f"a {kind}" if key in SECRET_KEYS else _shown(value)
            raise UsageError(f"config {path}: [{where}] {key} must be {_EXPECTED[spec.kind]}, got {got}")
    if not stream:
        return
    sources = key_sources(table)
    if len(sources) > 1:
        raise UsageError(f"config {path}: [{where}] gives both {sources[0]} and {sources[1]}: keep one")
    if "budget" in table and "hours" in table:
        raise UsageError(f"config {path}: [{where}] gives both budget and hours: keep one")
    idle = idle_in_copy(table)
    if idle:
        raise UsageError(
            f"config {path}: [{where}] {idle[0]} does nothing in copy mode: "
            f'set mode = "encode" or remove {idle[0]}'
        )


def check_url(url: str, what: str = "url") -> None:
    """An ingest URL needs a scheme; without one it must be a file path to record to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "://" in url:
        if scheme not in (*STREAM_SCHEMES, "file"):
            raise UsageError(f"{what} must be rtmp://, rtmps://, srt:// or a file path, got {scheme}://")
        if scheme in STREAM_SCHEMES and not parts.hostname:
            raise UsageError(f"{what} {scheme}://... has no host name")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise UsageError(f"{what} {scheme}://{parts.hostname}:...: the port is not a number") from None
        return
    if scheme in STREAM_SCHEMES:  # rtmp:/host or rtmp:host
        host = url.split(":", 1)[1].lstrip("/").split("/", 1)[0]
        raise UsageError(f"{what} needs two slashes after {scheme}: write {scheme}://{host}/...")
    if url.startswith(("/", "./", "../")) or url.lower().endswith(_OUTPUT_FILE):
        return  # a file: record to it (tests, archives)
    first = url.split("/", 1)[0]
    raise UsageError(
        f"{what} {first}/... has no scheme: write rtmp://{first}/... "
        "(or a file path starting with / to record to a file)"
    )


@dataclass(frozen=True)
class Settings:
    """How the supervisor treats a stream: defaults that any stream or the command line may override."""

    retries: int = 3  # failures in a row tolerated
    restart_delay: float = 3.0  # first wait before a restart; doubles (backoff) up to max_delay
    backoff: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.1  # up to 10 % added at random, so many streams do not retry in step
    stable_after: float = 60.0  # a session that ran this long resets the failure count
    stall_timeout: float = 15.0  # no media progress for this long: ffmpeg is hung
    grace: float = 5.0
    ffmpeg: str | None = None  # None: $STREAMCTL_FFMPEG, PATH, then the bundled one (ffmpeg.find_ffmpeg)
    notify: tuple[str, ...] = ()  # apprise URLs told of the events (secrets: they carry tokens)
    notify_events: tuple[str, ...] | None = None  # which events go to them; None: every one
    on_event: tuple[str, ...] = ()  # a command run for each event (argv, no shell; a secret too)
    on_event_events: tuple[str, ...] | None = None  # which events go to it; None: every one
    log_max_mb: float = 10.0  # the stream log rotates at this size (output/logs.py)...
    log_keep: int = 3  # ... and keeps this many old files


@dataclass(frozen=True)
class StreamSpec:
    name: str
    input: str
    url: str
    key: str | None = None  # the secret part; appended to url as its last path segment
    also: tuple[str, ...] = ()  # more destinations, keys written in (tee muxer; each may fail alone)
    budget_seconds: float | None = None
    until: float | None = None  # wall-clock deadline, unix time
    mode: str = "copy"
    loop: bool = True
    input_format: str | None = None  # e.g. "lavfi" for generated sources
    bitrate: str = "3000k"  # encode mode
    audio_bitrate: str = "128k"
    resolution: str | None = None  # encode mode, e.g. "1280x720"; None keeps the input's
    fps: int | None = None  # encode mode; None keeps the input's (keyframes then assume 30)
    keyframe_seconds: float = 2.0
    preset: str = "veryfast"
    settings: Settings = field(default_factory=Settings)
    schedule: str | None = None  # shows on a schedule (schedule.py); the budget is each show's
    timezone: str | None = None  # the schedule's IANA time zone; None: the host's
    window: float | None = None  # seconds after a show's start by which it must be over
    catch_up: float | None = None  # how late the cron tick may still start a show
    show_at: float | None = None  # the show this run is (set by `start` from the schedule)
    show_label: str | None = None  # ... as its wall-clock time (schedule.Schedule.label)
    resume: bool = True  # a restarted session resumes a file or playlist where the stream was

    @property
    def output_url(self) -> str:
        if not self.key:
            return self.url
        return self.url.rstrip("/") + "/" + self.key

    def secrets(self) -> list[str]:
        """Everything to mask: the key, and the secret parts of the URL (a key may be written into it)."""
        out = [self.key] if self.key else []
        for url in (self.output_url, *self.also):
            out += url_secrets(url)
        return out


def _validate_schedule(spec: StreamSpec) -> None:
    from streamctl.schedule import parse_schedule, zone

    if spec.schedule is None:
        given = [k for k, v in (("timezone", spec.timezone), ("window", spec.window),
                                ("catch_up", spec.catch_up)) if v is not None]  # fmt: skip
        if spec.timezone is not None:
            zone(spec.timezone)
        raise UsageError(f'{given[0]} is for a schedule: add schedule = "mon-fri 20:00" or drop {given[0]}')
    parse_schedule(spec.schedule, spec.timezone)
    if spec.budget_seconds is None and spec.window is None:
        raise UsageError('a schedule needs each show\'s length: add budget = "2h" (or window = "2h")')
    for what, value in (("window", spec.window), ("catch_up", spec.catch_up)):
        if value is not None and value <= 0:
            raise UsageError(f"{what} must be longer than zero")


def require_limit(spec: StreamSpec) -> StreamSpec:
    """A stream needs a budget or a deadline to be started: streamctl never streams without an end."""
    if spec.budget_seconds is None and spec.until is None:
        raise UsageError(f"stream {spec.name!r} has no budget: give --hours, --duration or --until")
    return spec


def validate_spec(spec: StreamSpec) -> StreamSpec:
    """Raise UsageError for anything ffmpeg would only trip over later."""
    validate_name(spec.name)
    if not spec.input:
        raise UsageError(f"stream {spec.name!r} has no input")
    if not spec.url:
        raise UsageError(f"stream {spec.name!r} has no url")
    check_url(spec.url)
    for dest in (spec.url, *spec.also) if spec.also else ():
        if urlsplit(dest).scheme.lower() not in ("rtmp", "rtmps") or "|" in dest:
            raise UsageError("with several destinations, each must be an rtmp:// or rtmps:// URL without '|'")
    if spec.key is not None and (not spec.key or any(c in spec.key for c in "/?#\n ")):
        raise UsageError("stream key must be non-empty, without '/', '?', '#' or spaces")
    if spec.key is not None and len(spec.key) < MIN_KEY:
        raise UsageError(
            f"stream key is {len(spec.key)} characters; streamctl needs at least {MIN_KEY}, so that masking "
            "it never hides ordinary text (a server with short keys: write the key into the url)"
        )
    if spec.schedule is not None or spec.timezone is not None or spec.window or spec.catch_up:
        _validate_schedule(spec)
    if spec.mode not in MODES:
        raise UsageError(f"mode must be copy or encode, got {spec.mode!r}")
    if spec.input_format is None and "://" not in spec.input and not Path(spec.input).exists():
        raise UsageError(f"input file not found: {spec.input}")
    if spec.budget_seconds is not None:
        check_budget(spec.budget_seconds, "budget")
    if spec.until is not None and not math.isfinite(spec.until):
        raise UsageError("until must be a date and time")
    if not _BITRATE.fullmatch(spec.bitrate) or not _BITRATE.fullmatch(spec.audio_bitrate):
        raise UsageError("bitrate must look like 3000k or 4M")
    if spec.resolution is not None and not _RESOLUTION.fullmatch(spec.resolution):
        raise UsageError(f"resolution must look like 1280x720, got {spec.resolution!r}")
    if not (math.isfinite(spec.keyframe_seconds) and 0.1 <= spec.keyframe_seconds <= 60):
        raise UsageError(f"keyframe_seconds must be 0.1-60, got {spec.keyframe_seconds}")
    if spec.fps is not None and not 1 <= spec.fps <= 240:
        raise UsageError(f"fps must be 1-240, got {spec.fps}")
    s = spec.settings
    if not 0 <= s.retries <= 1000:
        raise UsageError(f"retries must be 0-1000, got {s.retries}")
    for what, v in (
        ("restart_delay", s.restart_delay),
        ("grace", s.grace),
        ("max_delay", s.max_delay),
        ("stable_after", s.stable_after),
    ):
        if math.isnan(v) or not 0 <= v <= 3600:
            raise UsageError(f"{what} must be 0-3600 seconds, got {v}")
    if math.isnan(s.stall_timeout) or not 1 <= s.stall_timeout <= 3600:
        raise UsageError(f"stall_timeout must be 1-3600 seconds, got {s.stall_timeout}")
    if math.isnan(s.backoff) or not 1 <= s.backoff <= 10 or math.isnan(s.jitter) or not 0 <= s.jitter <= 1:
        raise UsageError("backoff must be 1-10 and jitter 0-1")
    return spec


def iso_local(ts: float) -> str:
    """Unix time as local ISO 8601 to the minute, for messages."""
    import datetime as dt  # the config's readers only: not the supervisor's memory

    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="minutes")


def parse_until(text: str) -> float:
    """A deadline like 2026-12-01T22:00 (local time unless it has an offset) as unix time."""
    try:
        import datetime as dt  # the config's readers only: not the supervisor's memory

        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"until {text!r} is not a date and time like 2026-12-01T22:00") from None
    if when.tzinfo is None:
        when = when.astimezone()  # naive means local time
    return when.timestamp()


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)  # validate_spec checks the range of each setting
    return parse_duration(str(value), what)


def _budget(table: dict[str, Any]) -> float | None:
    if "hours" in table:
        hours = float(table["hours"])
        if not hours > 0:
            raise UsageError(f"hours must be greater than zero, got {table['hours']}")
        return check_budget(hours * 3600.0, "hours")
    b = table.get("budget")
    if b is None:
        return None
    if isinstance(b, int | float) and not isinstance(b, bool):
        if not b > 0:
            raise UsageError(f"budget must be greater than zero, got {b} (a bare number means hours)")
        return check_budget(float(b) * 3600.0, "budget")  # a bare number means hours
    return parse_budget(str(b), "budget")


def _settings(table: dict[str, Any], base: Settings) -> Settings:
    """BASE with TABLE's settings keys (already type-checked by check_table)."""
    changes: dict[str, Any] = {}
    for key in (f.name for f in fields(Settings)):
        if key in table:
            kind, value = KEYS[key].kind, table[key]
            if kind == "duration":
                changes[key] = _seconds(value, key)
            else:
                changes[key] = float(value) if kind == "number" else value
            if kind in ("notify", "argv", "events"):
                changes[key] = tuple(value)
    _check_alerts(changes)
    if not 0.01 <= changes.get("log_max_mb", 1.0) <= 100_000:
        raise UsageError("log_max_mb must be 0.01 to 100000 (MiB)")
    if not 1 <= changes.get("log_keep", 1) <= 100:
        raise UsageError("log_keep must be 1 to 100 (old files kept)")
    return replace(base, **changes)


def _check_alerts(changes: dict[str, Any]) -> None:
    """The notification keys: apprise URLs that look like URLs, a command that can be run, known events
    (the messages never name a URL or the command: they are secrets)."""
    from streamctl.store.events import EVENTS

    for url in changes.get("notify", ()):
        if "://" not in url:
            raise UsageError(
                "notify: each entry must be an apprise URL like tgram://TOKEN/CHAT or json://host/path"
            )
    argv = changes.get("on_event")
    if argv is not None and len(argv) == 0:
        raise UsageError('on_event must name a command: ["/usr/local/bin/alert"]')
    if argv:
        cmd = argv[0]
        if "/" in cmd and not cmd.startswith("/"):
            raise UsageError(
                "on_event: give the command's full path (the supervisor runs it from its own folder)"
            )
        found = cmd if "/" in cmd else _which(cmd)
        if found is None or not os.path.isfile(found) or not os.access(found, os.X_OK):
            raise UsageError("on_event: its command is not an executable file (give a full path; no shell)")
        check_trusted(Path(found), "on_event's command")  # run on every event: as trusted as the config
    for key in ("notify_events", "on_event_events"):
        for name in changes.get(key) or ():
            if name not in EVENTS:
                raise UsageError(f"{key}: {name!r} is not an event{did_you_mean(name, EVENTS)}")


def _which(cmd: str) -> str | None:
    from streamctl.run.process import which

    return which(cmd)


def _key(table: dict[str, Any], need_env: bool = True) -> str | None:
    """The stream key from its one source. NEED_ENV False: a key_env not set here is no error (`add`:
    the variable is read by `start`, perhaps in a unit or a pod that has it)."""
    if "key" in table:
        return str(table["key"])
    if "key_env" in table:
        return env_key(str(table["key_env"]), "key_env", need_env)
    if "key_file" in table:
        from streamctl.store.trust import check_trusted, read_small

        p = Path(str(table["key_file"])).expanduser()
        raw = read_small(p, "key_file", MAX_KEY_FILE, UsageError)  # a regular file first: not /dev/zero
        check_trusted(p, "key_file")
        try:
            key = raw.decode().strip()
        except UnicodeDecodeError:
            raise UsageError(f"key_file: {p} is not text; put the stream key in it") from None
        if not key:
            raise UsageError(f"key_file: {p} is empty; put the stream key in it")
        return key
    return None


def _until(value: Any) -> float:
    import datetime as dt  # the config's readers only: not the supervisor's memory

    if isinstance(value, dt.datetime):
        return parse_until(value.isoformat())  # a TOML datetime: until = 2026-12-01T22:00:00
    return parse_until(str(value))


def _check_shape(path: Path, data: dict[str, Any]) -> None:
    """Tables where tables belong, and no top-level key but [defaults] and [streams]."""
    for key in data:
        if key not in ("defaults", "streams"):
            hint = did_you_mean(key, ["defaults", "streams"]) or "; only [defaults] and [streams.NAME]"
            raise UsageError(f"config {path}: unknown table {key!r}{hint}")
    for key in ("defaults", "streams"):
        if not isinstance(data.get(key, {}), dict):
            raise UsageError(f"config {path}: [{key}] must be a table")
    for name, table in data.get("streams", {}).items():
        if not isinstance(table, dict):
            raise UsageError(f"config {path}: streams.{name} must be a table like [streams.{name}]")


@dataclass
class Config:
    path: Path
    data: dict[str, Any]
    # each stream's (budget, or the mistake that keeps it from one), when the config cache had them
    checked_budgets: dict[str, tuple[float | None, str | None]] | None = None

    @property
    def streams(self) -> Mapping[str, dict[str, Any]]:
        # the parsed tables themselves, read-only: a copy per call made a look-up of each of a thousand
        # streams copy all thousand (status spent 12 ms there)
        streams: Mapping[str, dict[str, Any]] = self.data.get("streams", {})
        return streams

    def settings(self) -> Settings:
        defaults = self.data.get("defaults", {})
        check_table(self.path, defaults, "defaults", stream=False)
        try:
            return _settings(defaults, Settings())
        except UsageError as e:
            raise UsageError(f"config {self.path}: [defaults] {e}") from None

    def _table(self, name: str) -> dict[str, Any]:
        table = self.streams.get(name)
        if table is None:
            raise NotFound(f"no stream named {name!r} in {self.path}{did_you_mean(name, self.streams)}")
        check_table(self.path, table, f"streams.{name}", stream=True)
        return table

    def budgets(self) -> dict[str, tuple[float | None, str | None]]:
        """Each stream's budget in seconds, or the one-line mistake in its table that keeps it from one:
        what `status` shows of the config. Checking a thousand tables is a third of such a `status`, so
        the config cache keeps this with the parsed data."""
        if self.checked_budgets is not None:
            return self.checked_budgets
        out: dict[str, tuple[float | None, str | None]] = {}
        for name in self.streams:
            try:
                out[name] = (self.budget(name), None)
            except StreamctlError as e:
                out[name] = (None, str(e))
        return out

    def budget(self, name: str) -> float | None:
        """NAME's budget in seconds, without building (and reading the secrets of) its whole spec."""
        table = self._table(name)
        try:
            return _budget(table)
        except UsageError as e:
            raise UsageError(f"config {self.path}: [streams.{name}] {e}") from None

    def spec(self, name: str, need_env: bool = True, read_key: bool = True) -> StreamSpec:
        """NAME's spec as configured; any mistake in its table raises UsageError naming the key.
        READ_KEY False: without the key (the schedule's readers need none, and no key file is read)."""
        table = self._table(name)
        base = self.settings()
        where = f"streams.{name}"
        try:
            return StreamSpec(
                name=name,
                input=table.get("input", ""),
                url=table.get("url", ""),
                key=_key(table, need_env) if read_key else None,
                budget_seconds=_budget(table),
                also=tuple(table.get("also", [])),
                until=_until(table["until"]) if "until" in table else None,
                mode=table.get("mode", "copy"),
                loop=table.get("loop", True),
                input_format=table.get("input_format"),
                bitrate=table.get("bitrate", "3000k"),
                audio_bitrate=table.get("audio_bitrate", "128k"),
                resolution=table.get("resolution"),
                fps=table.get("fps"),
                keyframe_seconds=float(table.get("keyframe_seconds", 2.0)),
                preset=table.get("preset", "veryfast"),
                settings=_settings(table, base),
                resume=table.get("resume", True),
                schedule=table.get("schedule"),
                timezone=table.get("timezone"),
                window=_seconds(table["window"], "window") if "window" in table else None,
                catch_up=_seconds(table["catch_up"], "catch_up") if "catch_up" in table else None,
            )
        except UsageError as e:
            raise UsageError(f"config {self.path}: [{where}] {e}") from None

    def schedule_spec(self, name: str) -> StreamSpec:
        """NAME's spec for the schedule's readers (the tick, `shows`): checked as `start` checks it, a
        one-off that passed included (its show is what the tick acts on), without the key."""
        spec = self.spec(name, need_env=False, read_key=False)
        try:
            validate_spec(spec)
        except UsageError as e:
            raise UsageError(f"config {self.path}: [streams.{name}] {e}") from None
        return spec

    def checked_spec(self, name: str, need_env: bool = True) -> StreamSpec:
        """NAME's spec, validated as `start` would run it, with a budget or a future deadline required."""
        import time

        spec = self.spec(name, need_env)
        try:
            validate_spec(spec)
            if spec.schedule is not None:
                from streamctl.schedule import parse_schedule

                parse_schedule(spec.schedule, spec.timezone, now=time.time())  # a one-off in the past
            if spec.until is not None and spec.until <= time.time():
                passed = iso_local(spec.until)
                raise UsageError(f"until {passed} has passed: set a later deadline or remove it")
        except UsageError as e:
            raise UsageError(f"config {self.path}: [streams.{name}] {e}") from None
        if spec.budget_seconds is None and spec.until is None and spec.schedule is None:
            raise UsageError(
                f'config {self.path}: [streams.{name}] has no budget: add budget = "5h" (or hours, or until)'
            )
        return spec


def load_config(paths: Paths) -> Config:
    """The config, its shape and [defaults] checked (each stream's table is checked when it is used)."""
    path = paths.config_file
    try:
        st = path.stat()
    except FileNotFoundError:
        return Config(path, {})
    except OSError as e:
        raise FileError(f"cannot read config {path}: {e.strerror}") from None
    # Anyone who can write it, or replace it, can make us run any program as `ffmpeg`; the cache beside
    # the state is the config too
    check_trusted(path, "config")
    check_trusted(paths.state_dir, "state folder", folder=True)
    data, budgets = cached(paths, path, st)
    if data is None:
        data = parse_toml(path)
    _check_shape(path, data)
    config = Config(path, data, budgets)
    config.settings()  # a broken [defaults] is reported by every command, not only by `start`
    return config


def parse_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a config to read

    from streamctl.store.trust import read_small

    raw = read_small(path, "config", MAX_CONFIG)
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError as e:
        raise UsageError(f"config {path} is not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config {path} is not valid TOML: {e}") from None  # a config mistake: exit 2
    except RecursionError:
        raise UsageError(f"config {path} nests arrays or tables too deeply (at most {MAX_DEPTH})") from None
    if _depth(data) > MAX_DEPTH:
        raise UsageError(f"config {path} nests arrays or tables too deeply (at most {MAX_DEPTH})")
    return data


def _depth(value: Any) -> int:
    """How deep VALUE's lists and dicts go (without recursion: the point is a value too deep for it)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d + 1)
            if deepest > MAX_DEPTH:
                return deepest
            todo += [(x, d + 1) for x in (v.values() if isinstance(v, dict) else v)]
    return deepest


def _write(config: Config) -> None:
    import tomli_w

    atomic_write(config.path, tomli_w.dumps(config.data).encode())


def config_lock(paths: Paths) -> Path:
    return paths.config_file.with_name(paths.config_file.name + ".lock")


def add_stream(paths: Paths, name: str, table: dict[str, Any], replace_existing: bool = False) -> StreamSpec:
    """Write NAME's TABLE to the config once it is valid as a stream `start` could run."""
    validate_name(name)

    def candidate() -> tuple[Config, StreamSpec]:
        config = load_config(paths)
        if name in config.streams and not replace_existing:
            raise UsageError(f"stream {name!r} already exists in {config.path}; use --replace")
        new = Config(config.path, {**config.data, "streams": {**config.streams, name: table}})
        try:
            return new, new.checked_spec(name, need_env=False)
        except UsageError as e:  # the user gave flags, not a table: name the value, not the config file
            raise UsageError(str(e).removeprefix(f"config {config.path}: [streams.{name}] ")) from None

    candidate()  # bad input fails here, before the lock file or folder is created
    with locked(config_lock(paths)):
        new, spec = candidate()  # again under the lock: the config may have changed meanwhile
        _write(new)
        refresh_cache(paths)
        return spec


def remove_stream(paths: Paths, name: str) -> None:
    validate_name(name)
    streams = load_config(paths).streams
    if name not in streams:
        raise NotFound(f"no stream named {name!r} in {paths.config_file}{did_you_mean(name, streams)}")
    with locked(config_lock(paths)):
        config = load_config(paths)
        if name not in config.streams:
            raise NotFound(f"no stream named {name!r} in {config.path}")
        streams = {k: v for k, v in config.streams.items() if k != name}
        _write(Config(config.path, {**config.data, "streams": streams}))
        refresh_cache(paths)


def old_config_hint(paths: Paths) -> str:
    """As root, a config left in ~/.config/streamctl/ is no longer read: say so where a stream is missed."""
    if os.environ.get("STREAMCTL_HOME") or paths.config_file.exists():
        return ""
    detail = paths.leftover_config()
    return f"; {detail}" if detail else ""


def resolve_spec(paths: Paths, name: str, overrides: dict[str, Any]) -> StreamSpec:
    """The spec `start` runs: the config entry (if any) with command-line OVERRIDES (None = not given)."""
    validate_name(name)
    given = {k: v for k, v in overrides.items() if v is not None}
    settings_keys = {f.name for f in fields(Settings)}
    settings_changes = {k: given.pop(k) for k in list(given) if k in settings_keys}
    config = load_config(paths)
    if name in config.streams:
        spec = config.spec(name)
        try:
            validate_spec(spec)  # the entry as configured: its mistakes are named as config mistakes
        except UsageError as e:
            raise UsageError(f"config {config.path}: [streams.{name}] {e}") from None
    elif given.get("input") and given.get("url"):
        spec = StreamSpec(name=name, input=given["input"], url=given["url"], settings=config.settings())
    else:
        hint = (
            did_you_mean(name, config.streams)
            or old_config_hint(paths)
            or "; add it, or give --input and --url"
        )
        raise NotFound(f"no stream named {name!r} in {config.path}{hint}")
    spec = replace(spec, **given, settings=replace(spec.settings, **settings_changes))
    return validate_spec(spec)
