"""The TOML config: configured streams and defaults. Read with tomllib, written with tomli-w."""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamctl.durations import check_seconds, parse_duration
from streamctl.errors import FileError, NotFound, UsageError
from streamctl.fileio import atomic_write, locked
from streamctl.masking import STREAM_SCHEMES, url_secrets
from streamctl.paths import Paths, validate_name

MODES = ("copy", "encode")
_BITRATE = re.compile(r"\d+(\.\d+)?[kKmM]?")
_RESOLUTION = re.compile(r"\d{2,5}x\d{2,5}")


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
    scheme = urlsplit(spec.url).scheme.lower()
    if scheme and scheme not in (*STREAM_SCHEMES, "file") and len(scheme) > 1:
        raise UsageError(f"url must be rtmp://, rtmps://, srt:// or a file path, got {scheme}://")
    for dest in (spec.url, *spec.also) if spec.also else ():
        if urlsplit(dest).scheme.lower() not in ("rtmp", "rtmps") or "|" in dest:
            raise UsageError("with several destinations, each must be an rtmp:// or rtmps:// URL without '|'")
    if spec.key is not None and (not spec.key or any(c in spec.key for c in "/?#\n ")):
        raise UsageError("stream key must be non-empty, without '/', '?', '#' or spaces")
    if spec.mode not in MODES:
        raise UsageError(f"mode must be copy or encode, got {spec.mode!r}")
    if spec.input_format is None and "://" not in spec.input and not Path(spec.input).exists():
        raise UsageError(f"input file not found: {spec.input}")
    if spec.budget_seconds is not None:
        check_seconds(spec.budget_seconds, "budget")
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


def parse_until(text: str) -> float:
    """A deadline like 2026-12-01T22:00 (local time unless it has an offset) as unix time."""
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"until {text!r} is not a date and time like 2026-12-01T22:00") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive means local time
    return dt.timestamp()


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise UsageError(f"{what} must be a duration, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value, what)
    raise UsageError(f"{what} must be a duration, got {value!r}")


def _budget(table: dict[str, Any], where: str) -> float | None:
    if "hours" in table:
        return check_seconds(float(table["hours"]) * 3600.0, f"{where}.hours")
    b = table.get("budget")
    if b is None:
        return None
    if isinstance(b, int | float) and not isinstance(b, bool):
        return check_seconds(float(b) * 3600.0, f"{where}.budget")  # a bare number means hours
    return _seconds(b, f"{where}.budget")


def _settings(table: dict[str, Any], base: Settings, where: str) -> Settings:
    changes: dict[str, Any] = {}
    for key in ("restart_delay", "grace", "max_delay", "stable_after", "stall_timeout"):
        if key in table:
            changes[key] = _seconds(table[key], f"{where}.{key}")
    for key, kind in (("retries", int), ("backoff", float), ("jitter", float), ("ffmpeg", str)):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, kind if kind is not float else int | float):
                raise UsageError(
                    f"{where}.{key} must be {'a string' if kind is str else 'a number'}, got {value!r}"
                )
            changes[key] = kind(value)
    return replace(base, **changes)


def _key(table: dict[str, Any], where: str) -> str | None:
    if "key" in table:
        return str(table["key"])
    if "key_env" in table:
        val = os.environ.get(str(table["key_env"]))
        if not val:
            raise UsageError(f"{where}.key_env: environment variable {table['key_env']} is not set")
        return val
    if "key_file" in table:
        p = Path(str(table["key_file"])).expanduser()
        try:
            return p.read_text().strip()
        except OSError as e:
            raise UsageError(f"{where}.key_file: cannot read {p}: {e.strerror}") from None
    return None


def _opt_str(table: dict[str, Any], key: str) -> str | None:
    v = table.get(key)
    if v is not None and not isinstance(v, str):
        raise TypeError(f"{key} must be a string, got {v!r}")
    return v


def _check_shape(path: Path, data: dict[str, Any]) -> None:
    """Tables where tables belong, so later lookups cannot trip over a stray value."""
    for key in ("defaults", "streams"):
        if not isinstance(data.get(key, {}), dict):
            raise FileError(f"config {path}: [{key}] must be a table")
    for name, table in data.get("streams", {}).items():
        if not isinstance(table, dict):
            raise FileError(f"config {path}: streams.{name} must be a table like [streams.{name}]")


@dataclass
class Config:
    path: Path
    data: dict[str, Any]

    @property
    def streams(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("streams", {}))

    def settings(self) -> Settings:
        try:
            return _settings(self.data.get("defaults", {}), Settings(), "defaults")
        except (TypeError, ValueError) as e:
            raise UsageError(f"{self.path}: [defaults]: {e}") from None

    def budget(self, name: str) -> float | None:
        """NAME's budget in seconds, without building (and reading the secrets of) its whole spec."""
        try:
            return _budget(self.streams[name], f"streams.{name}")
        except (TypeError, ValueError) as e:
            raise UsageError(f"{self.path}: [streams.{name}]: {e}") from None

    def spec(self, name: str) -> StreamSpec:
        table = self.streams.get(name)
        if table is None:
            raise NotFound(f"no stream named {name!r} in {self.path}")
        where = f"streams.{name}"
        try:
            return StreamSpec(
                name=name,
                input=str(table.get("input", "")),
                url=str(table.get("url", "")),
                key=_key(table, where),
                budget_seconds=_budget(table, where),
                also=tuple(str(u) for u in table.get("also", [])),
                until=parse_until(str(table["until"])) if "until" in table else None,
                mode=str(table.get("mode", "copy")),
                loop=bool(table.get("loop", True)),
                input_format=_opt_str(table, "input_format"),
                bitrate=str(table.get("bitrate", "3000k")),
                audio_bitrate=str(table.get("audio_bitrate", "128k")),
                resolution=_opt_str(table, "resolution"),
                fps=int(table["fps"]) if "fps" in table else None,
                keyframe_seconds=float(table.get("keyframe_seconds", 2.0)),
                preset=str(table.get("preset", "veryfast")),
                settings=_settings(table, self.settings(), where),
            )
        except (TypeError, ValueError, AttributeError) as e:
            raise UsageError(f"{self.path}: [{where}]: {e}") from None


def load_config(paths: Paths) -> Config:
    path = paths.config_file
    try:
        st = path.stat()
    except FileNotFoundError:
        return Config(path, {})
    except OSError as e:
        raise FileError(f"cannot read config {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        # Anyone who can write it can make us run any program as `ffmpeg`.
        raise FileError(f"config {path} is writable by others; run: chmod 600 {path}")
    import tomllib  # only when there is a config to read

    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise FileError(f"config {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise FileError(f"cannot read config {path}: {e.strerror}") from None
    _check_shape(path, data)
    config = Config(path, data)
    config.settings()  # a broken [defaults] is reported by every command, not only by `start`
    return config


def _write(config: Config) -> None:
    import tomli_w

    atomic_write(config.path, tomli_w.dumps(config.data).encode())


def config_lock(paths: Paths) -> Path:
    return paths.config_file.with_name(paths.config_file.name + ".lock")


def add_stream(paths: Paths, name: str, table: dict[str, Any], replace_existing: bool = False) -> StreamSpec:
    validate_name(name)

    def candidate() -> tuple[Config, StreamSpec]:
        config = load_config(paths)
        if name in config.streams and not replace_existing:
            raise UsageError(f"stream {name!r} already exists in {config.path}; use --replace")
        new = Config(config.path, {**config.data, "streams": {**config.streams, name: table}})
        return new, validate_spec(new.spec(name))

    candidate()  # bad input fails here, before the lock file or folder is created
    with locked(config_lock(paths)):
        new, spec = candidate()  # again under the lock: the config may have changed meanwhile
        _write(new)
        return spec


def remove_stream(paths: Paths, name: str) -> None:
    validate_name(name)
    if name not in load_config(paths).streams:
        raise NotFound(f"no stream named {name!r} in {paths.config_file}")
    with locked(config_lock(paths)):
        config = load_config(paths)
        if name not in config.streams:
            raise NotFound(f"no stream named {name!r} in {config.path}")
        streams = {k: v for k, v in config.streams.items() if k != name}
        _write(Config(config.path, {**config.data, "streams": streams}))


def resolve_spec(paths: Paths, name: str, overrides: dict[str, Any]) -> StreamSpec:
    """The spec `start` runs: the config entry (if any) with command-line OVERRIDES (None = not given)."""
    validate_name(name)
    given = {k: v for k, v in overrides.items() if v is not None}
    settings_keys = {f for f in Settings.__dataclass_fields__}
    settings_changes = {k: given.pop(k) for k in list(given) if k in settings_keys}
    config = load_config(paths)
    if name in config.streams:
        spec = config.spec(name)
    elif given.get("input") and given.get("url"):
        spec = StreamSpec(name=name, input=given["input"], url=given["url"], settings=config.settings())
    else:
        raise NotFound(f"no stream named {name!r} in {config.path}; add it, or give --input and --url")
    spec = replace(spec, **given, settings=replace(spec.settings, **settings_changes))
    return validate_spec(spec)
