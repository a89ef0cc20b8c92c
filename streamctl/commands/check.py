"""`streamctl check`: everything that can be known about a configured stream before it runs.

The config entry as `start` would run it (keys, types, URL, budget, key source), its key file, its input
(ffprobe), and whether each ingest host accepts a TCP connection. Every input is probed the way ffmpeg
will open it (`start` skips generated and network inputs, to start fast). Nothing is written: a playlist
is read, not turned into the concat list `start` writes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from streamctl.errors import NotFound, StreamctlError, did_you_mean
from streamctl.records import replace
from streamctl.store.config import Config, StreamSpec, load_config
from streamctl.store.paths import Paths, validate_name

DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
CONNECT_TIMEOUT = 3.0

Connect = Callable[[tuple[str, int], float], socket.socket]


@dataclass(frozen=True)
class Finding:
    name: str  # the stream; "" for the config as a whole
    ok: bool
    what: str  # config | input | ingest | ffmpeg
    detail: str
    checked: bool = True  # False: ok only because it could not be checked here (no ffprobe)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def ingest_reachable(url: str, connect: Connect = _connect, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None if URL's host accepts a TCP connection (or is not TCP: srt, a file), else why not."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return f"ingest {host}: the port in the URL is not a number"
    try:
        connect((host, port), timeout).close()
    except socket.gaierror:
        return f"ingest {host}: no such host; check the URL's host name"
    except TimeoutError:
        return f"ingest {host}:{port}: no answer within {timeout:g}s; check the host, port and firewall"
    except ConnectionRefusedError:
        return f"ingest {host}:{port}: connection refused; is the ingest running and the port right?"
    except OSError as e:
        return f"ingest {host}:{port}: {e.strerror or e}"
    return None


def _input(spec: StreamSpec, ffmpeg: str) -> tuple[bool, str]:
    """Whether the input was probed, and what it is: probed as ffmpeg will open it (a playlist file by
    file, a network input within a few seconds); raises UsageError naming the input and ffprobe's reason."""
    from streamctl.run.ffmpeg import probe_input
    from streamctl.run.playlist import entries, is_playlist

    if spec.input_format is None and is_playlist(spec.input):
        files = entries(spec.input)
        for f in files:
            unprobed = probe_input(ffmpeg, replace(spec, input=str(f)))
            if unprobed:
                return False, f"playlist of {len(files)} file(s), {unprobed}"
        return True, f"playlist of {len(files)} file(s), each media ok"
    unprobed = probe_input(ffmpeg, spec)
    if unprobed:
        return False, unprobed
    return True, f"media ok (-f {spec.input_format})" if spec.input_format else "media ok"


def check_stream(config: Config, name: str, ffmpeg: str | None, connect: Connect = _connect) -> list[Finding]:
    from streamctl.masking import mask_url
    from streamctl.run.ffmpeg import find_ffmpeg, shown_input

    try:
        spec = config.checked_spec(name)
    except StreamctlError as e:
        return [Finding(name, False, "config", str(e))]
    out = [Finding(name, True, "config", "ok")]
    try:
        found, _ = find_ffmpeg(ffmpeg, spec.settings.ffmpeg)
    except StreamctlError as e:
        return [*out, Finding(name, False, "ffmpeg", str(e))]
    try:
        probed, what = _input(spec, found)
        out.append(Finding(name, True, "input", f"{shown_input(spec)}: {what}", checked=probed))
    except StreamctlError as e:
        out.append(Finding(name, False, "input", str(e)))
    for url in (spec.output_url, *spec.also):
        why = ingest_reachable(url, connect)
        shown = mask_url(url, spec.secrets())
        out.append(Finding(name, why is None, "ingest", why or f"{shown} accepts connections"))
    return out


def check(
    paths: Paths, names: list[str] | None = None, ffmpeg: str | None = None, connect: Connect = _connect
) -> list[Finding]:
    """Findings for NAMES (every configured stream when None). An unknown name raises NotFound."""
    try:
        config = load_config(paths)
    except StreamctlError as e:
        return [Finding("", False, "config", str(e))]
    for n in names or []:
        validate_name(n)
        if n not in config.streams:
            raise NotFound(f"no stream named {n!r} in {config.path}{did_you_mean(n, config.streams)}")
    out = []
    for n in names or list(config.streams):
        out += check_stream(config, n, ffmpeg, connect)
    return out
