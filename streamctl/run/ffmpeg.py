"""Everything about talking to ffmpeg: its command line, its progress output, finding the binary."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from streamctl.errors import EnvironmentProblem, UsageError
from streamctl.masking import MASK, is_stream_url, mask_text, mask_url, url_secrets
from streamctl.run.process import which
from streamctl.store.config import StreamSpec

TYPE_CHECKING = False  # not typing's: the supervisor does without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from streamctl.records import dataclass

STATS_PERIOD = 1.0  # a progress block a second: the reader's one wake-up a second


def find_ffmpeg(cli: str | None = None, configured: str | None = None) -> tuple[str, str]:
    """The ffmpeg to run and where it was found: --ffmpeg, $STREAMCTL_FFMPEG, the config, PATH, then the
    binary of the optional extra `streamctl[ffmpeg]` (imageio-ffmpeg). The first one named wins; a named
    one that does not exist is an error (no silent fallback to another ffmpeg)."""
    for source, value in (("--ffmpeg", cli), ("STREAMCTL_FFMPEG", os.environ.get("STREAMCTL_FFMPEG")),
                          ("config", configured)):  # fmt: skip
        if value:
            found = value if os.sep in value else which(value)
            if found and os.path.isfile(found) and os.access(found, os.X_OK):
                if source == "config":  # named by a file: one another user could replace, as the config
                    from pathlib import Path

                    from streamctl.store.trust import check_trusted

                    check_trusted(Path(found), "ffmpeg (from the config)")
                return found, source
            raise EnvironmentProblem(f"ffmpeg not found: {value!r} (from {source}) is not an executable")
    on_path = which("ffmpeg")
    if on_path:
        return on_path, "PATH"
    try:
        import imageio_ffmpeg  # type: ignore[import-not-found,unused-ignore]

        return str(imageio_ffmpeg.get_ffmpeg_exe()), "imageio-ffmpeg"
    except (ImportError, RuntimeError):
        pass
    raise EnvironmentProblem(
        "ffmpeg not found: give --ffmpeg PATH, set STREAMCTL_FFMPEG or `ffmpeg` in the config, install it "
        "(apt-get install ffmpeg), or reinstall streamctl from its checkout with a bundled one: "
        "pip install '.[ffmpeg]'"
    )


def find_ffprobe(ffmpeg: str) -> str | None:
    """ffprobe beside ffmpeg, else on PATH (the bundled ffmpeg comes without one)."""
    sibling = os.path.join(os.path.dirname(ffmpeg), "ffprobe")
    return sibling if os.access(sibling, os.X_OK) else which("ffprobe")


def media_duration(ffprobe: str, path: str, timeout: float = 15.0) -> float | None:
    """Seconds of media in PATH by ffprobe; None when it cannot tell (not media, no duration, a hang)."""
    import math
    import subprocess

    try:
        r = subprocess.run(
            [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        d = float(r.stdout.strip())
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return d if math.isfinite(d) and d > 0 else None


def _output_format(url: str) -> list[str]:
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("rtmp", "rtmps"):
        return ["-f", "flv"]
    if scheme == "srt":
        return ["-f", "mpegts"]
    if url.endswith(".flv"):
        return ["-f", "flv"]
    return []  # a file: ffmpeg picks the format from its extension


def _tee_options(url: str) -> str:
    f = _output_format(url)
    opts = [f"f={f[1]}"] if f else []
    if f == ["-f", "flv"]:
        opts.append("flvflags=no_duration_filesize")
    return ":".join([*opts, "onfail=ignore"])


def _kbits(rate: str) -> float:
    r = rate.lower()
    mult = 1000.0 if r.endswith("m") else 1.0
    return float(r.rstrip("km")) * mult


def build_argv(ffmpeg: str, spec: StreamSpec, seconds: float) -> list[str]:
    """ffmpeg's argv for one session that streams at most SECONDS of media."""
    argv = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "warning"]
    argv += ["-progress", "pipe:1", "-stats_period", str(STATS_PERIOD)]
    argv += ["-re"]  # read at the native rate: a live stream, not a file transfer
    is_file_input = spec.input_format in (None, "concat") and "://" not in spec.input
    if spec.loop and is_file_input:
        argv += ["-stream_loop", "-1", "-fflags", "+genpts"]
    if spec.input_format:
        argv += ["-f", spec.input_format]
    if spec.input_format == "concat":
        argv += ["-safe", "0"]  # our own list, with absolute paths
    argv += ["-i", spec.input]
    if spec.mode == "copy":
        argv += ["-c:v", "copy", "-c:a", "copy"]
    else:
        fps = spec.fps or 30
        kbits = _kbits(spec.bitrate)
        argv += ["-c:v", "libx264", "-preset", spec.preset, "-tune", "zerolatency", "-pix_fmt", "yuv420p"]
        argv += ["-b:v", f"{kbits:.0f}k", "-maxrate", f"{kbits * 1.1:.0f}k", "-bufsize", f"{kbits * 2:.0f}k"]
        argv += ["-g", str(round(fps * spec.keyframe_seconds)), "-keyint_min", str(fps), "-sc_threshold", "0"]
        if spec.fps:
            argv += ["-r", str(spec.fps)]
        if spec.resolution:
            argv += ["-s", spec.resolution]
        argv += ["-c:a", "aac", "-b:a", spec.audio_bitrate, "-ar", "44100", "-ac", "2"]
    # -t is an output option: it must stand before the URL, or ffmpeg ignores it and streams forever.
    argv += ["-t", f"{seconds:.3f}"]
    if spec.also:
        # One read (and encode), several destinations; onfail=ignore: a failing one does not stop the
        # others. The tee muxer keeps the input's codec tags (MP4's avc1/mp4a), which FLV refuses, so
        # copy mode sets FLV's own: H.264 = 7, AAC = 10.
        slaves = [f"[{_tee_options(url)}]{url}" for url in (spec.output_url, *spec.also)]
        tags = ["-tag:v", "7", "-tag:a", "10"] if spec.mode == "copy" else []
        return [*argv, *tags, "-map", "0:v?", "-map", "0:a?", "-f", "tee", "|".join(slaves)]
    fmt = _output_format(spec.output_url)
    argv += fmt
    if fmt == ["-f", "flv"]:
        argv += ["-flvflags", "no_duration_filesize"]
    if not is_stream_url(spec.output_url):
        argv += ["-y"]  # a file output: never stop at ffmpeg's overwrite prompt (stdin is ours, for `q`)
    argv += [spec.output_url]
    return argv


@dataclass
class Progress:
    """One `-progress` block."""

    out_time: float | None  # seconds of media written
    total_size: int | None  # bytes written
    speed: float | None
    bitrate: str | None
    ended: bool  # progress=end: ffmpeg is finishing normally


_WANTED = ("out_time_us=", "total_size=", "speed=", "bitrate=", "progress=")


class ProgressParser:
    """Turns `key=value` lines into Progress blocks; a block ends with its `progress=` line."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> Progress | None:
        if not line.startswith(_WANTED):
            return None  # frame=, fps=, dup_frames= ...: seven of a block's twelve lines, unread
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self._fields[key] = value.strip()
        if key != "progress":
            return None
        f, self._fields = self._fields, {}
        return Progress(
            out_time=_micro(f.get("out_time_us")),
            total_size=_int(f.get("total_size")),
            speed=_float(f.get("speed", "").rstrip("x")),
            bitrate=f.get("bitrate") if f.get("bitrate") not in (None, "N/A") else None,
            ended=value.strip() == "end",
        )


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _micro(v: str | None) -> float | None:
    try:
        return int(v) / 1e6 if v is not None else None
    except ValueError:
        return None  # N/A before the first packet


def _float(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


RTMP_VIDEO = {"h264"}
RTMP_AUDIO = {"aac", "mp3"}


NET_TIMEOUT = 4.0  # `check` on a network input: ffprobe's own I/O timeout (-rw_timeout, -timeout)...
NET_PROBE_TIMEOUT = 8.0  # ...and the most it waits for that ffprobe
NET_ANALYZE = 2.5  # seconds of a live source ffprobe reads to find its streams
# Protocols whose -timeout is an I/O timeout in microseconds (rtmp's means: listen for a connection).
_IO_TIMEOUT_SCHEMES = {"http", "https", "tcp", "tls", "udp", "rtsp", "rtsps", "srt"}


def _input_secrets(spec: StreamSpec) -> list[str]:
    """What to mask in text about SPEC's input: the stream's secrets, the input URL's own (for any URL,
    not only rtmp/srt: an http input may carry a token in its query or a password)."""
    out = [*spec.secrets(), *url_secrets(spec.input)]
    if "://" in spec.input and not is_stream_url(spec.input):
        parts = urlsplit(spec.input)
        out += [parts.netloc.rsplit("@", 1)[0]] if "@" in parts.netloc else []
        out += [spec.input.split("?", 1)[1]] if "?" in spec.input else []
    return [s for s in out if s]


def shown_input(spec: StreamSpec) -> str:
    """SPEC's input fit to print: a URL's key, query and password masked (mask_url)."""
    return mask_url(mask_text(spec.input, _input_secrets(spec)), spec.secrets())


def _probe_argv(ffprobe: str, spec: StreamSpec, net_timeout: float | None) -> list[str]:
    """ffprobe opening SPEC's input with the input options ffmpeg gets (build_argv)."""
    argv = [ffprobe, "-v", "error", "-show_entries", "stream=codec_type,codec_name,pix_fmt", "-of", "json"]
    if net_timeout is not None and "://" in spec.input:
        us = str(round(net_timeout * 1e6))
        # a live source with fewer streams than its header announces is analyzed this long (default 5 s)
        argv += ["-rw_timeout", us, "-analyzeduration", str(round(NET_ANALYZE * 1e6))]
        if urlsplit(spec.input).scheme.lower() in _IO_TIMEOUT_SCHEMES:
            argv += ["-timeout", us]
    if spec.input_format:
        argv += ["-f", spec.input_format]
    if spec.input_format == "concat":
        argv += ["-safe", "0"]
    return [*argv, "-i", spec.input]


def _ffprobe(argv: list[str], timeout: float) -> tuple[int, list[dict[str, str]], str]:
    """ffprobe's exit code, streams and stderr; raises OSError, TimeoutExpired or ValueError."""
    import json
    import subprocess

    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    streams = json.loads(r.stdout or "{}").get("streams", [])
    return r.returncode, streams, r.stderr


def _probe_reason(spec: StreamSpec, stderr: str) -> str:
    """ffprobe's reason, from its last line (without the input's name), with the key masked."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return "no audio or video stream"
    why = lines[-1].removeprefix(spec.input + ": ")
    if why == "Invalid argument":  # EINVAL says little; the line of the part that refused says more
        said = [m.group(2) for m in map(_CONTEXT.match, lines[:-1]) if m]
        if said:
            why = f"{said[-1]} ({why})"
    return mask_text(why, _input_secrets(spec))


def _judge(spec: StreamSpec, rc: int, streams: list[dict[str, str]], stderr: str, failed: str) -> None:
    """Raise UsageError(FAILED: reason) unless ffprobe found media; then the copy-mode codec rule."""
    video = [st for st in streams if st.get("codec_type") == "video"]
    audio = [st for st in streams if st.get("codec_type") == "audio"]
    if rc != 0 or not (video or audio):
        raise UsageError(f"{failed}: {_probe_reason(spec, stderr)}")
    if spec.mode != "copy" or urlsplit(spec.output_url).scheme.lower() not in ("rtmp", "rtmps"):
        return
    bad = [
        f"video {st.get('codec_name')}/{st.get('pix_fmt')}"
        for st in video[:1]
        if st.get("codec_name") not in RTMP_VIDEO or st.get("pix_fmt") != "yuv420p"
    ] + [f"audio {st.get('codec_name')}" for st in audio[:1] if st.get("codec_name") not in RTMP_AUDIO]
    if bad:
        is_file = spec.input_format is None and "://" not in spec.input
        raise UsageError(
            f"copy mode cannot send {' and '.join(bad)} to an RTMP ingest (it needs H.264 yuv420p video and "
            "AAC or MP3 audio): use --mode encode" + (", or re-encode the file once" if is_file else "")
        )


def preflight_input(ffmpeg: str, spec: StreamSpec, timeout: float = 15.0) -> None:
    """Refuse a local input that ffprobe cannot read as media, with ffprobe's own reason; in copy mode to
    an RTMP ingest (YouTube, Twitch), refuse codecs it will not take: H.264 in yuv420p, AAC or MP3.

    Skipped for generated (lavfi), playlist and network inputs, and when no ffprobe is found beside
    ffmpeg or on PATH (the bundled ffmpeg has none): ffmpeg or the ingest then fails later instead.
    `start` runs this; `check` runs probe_input, which probes every input.
    """
    import subprocess

    if spec.input_format is not None or "://" in spec.input:
        return
    ffprobe = find_ffprobe(ffmpeg)
    if ffprobe is None:
        return
    try:
        rc, streams, stderr = _ffprobe(_probe_argv(ffprobe, spec, None), timeout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return
    _judge(spec, rc, streams, stderr, f"input {spec.input} is not media ffmpeg can stream")


NO_FFPROBE = "not probed: no ffprobe beside ffmpeg"


def probe_input(ffmpeg: str, spec: StreamSpec, timeout: float = 15.0) -> str | None:
    """`check`: probe SPEC's input as ffmpeg will open it (its -f, a network input within NET_TIMEOUT);
    raise UsageError naming the input and ffprobe's reason if it fails, or if copy mode cannot send it.

    None when probed and fine; else why it was not probed (no ffprobe: the bundled ffmpeg has none).
    A playlist is probed by the caller, file by file.
    """
    import subprocess

    ffprobe = find_ffprobe(ffmpeg)
    if ffprobe is None:
        return NO_FFPROBE
    network = "://" in spec.input
    shown = shown_input(spec)
    if network:
        failed = f"input {shown}: ffprobe cannot read it"
    elif spec.input_format:
        failed = f"input {shown} is not a valid -f {spec.input_format} input"
    else:
        failed = f"input {shown} is not media ffmpeg can stream"
    wait = min(timeout, NET_PROBE_TIMEOUT) if network else timeout
    try:
        rc, streams, stderr = _ffprobe(_probe_argv(ffprobe, spec, NET_TIMEOUT if network else None), wait)
    except subprocess.TimeoutExpired:
        raise UsageError(f"{failed}: no media within {wait:g}s; is the source up and sending?") from None
    except OSError as e:
        return f"not probed: cannot run {ffprobe}: {e.strerror or e}"
    except ValueError:
        return f"not probed: {ffprobe} printed no JSON"
    _judge(spec, rc, streams, stderr, failed)
    return None


# ---- why a session failed, from ffmpeg's own error lines (ffmpeg 5.1 at -loglevel warning) ------------
_CONTEXT = re.compile(r"^\[(\w+) @ 0x[0-9a-f]+\] (.*)$")  # "[tcp @ 0x55d0...] message"
_RESOLVE = re.compile(r"Failed to resolve hostname (\S+?):")
_CONNECT = re.compile(r"Connection to (tcp|srt)://(\S+?) failed: (.+)$")
_OPEN_TLS = re.compile(r"Cannot open connection tls://(\S+)")
_SERVER = re.compile(r"Server error: (.+)$")
_NO_FORMAT = re.compile(r"Unable to find a suitable output format for '(.*)'")
# The URL's own error line, when nothing before it said more: the ingest took the connection, then
# dropped it (nginx-rtmp does so for an unknown application; services for an unknown key).
_DROPPED = re.compile(
    r"^rtmps?://\S*: (Input/output error|End of file|Connection reset by peer|Broken pipe)$"
)
_CHECK_KEY = "check the stream key and the application name in the URL"
# fftools' follow-up lines after the real error: not worth showing when another line says more
_AFTERMATH = (
    "Error initializing output stream",
    "Could not write header for output file",
    "Conversion failed!",
    "Error closing file",
)
_DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}


def _host_port(url: str) -> str:
    """HOST:PORT of a stream URL, without user info or path (where the key is)."""
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        port = None
    host = parts.hostname or "the ingest"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def _target(netloc: str) -> str:
    """HOST:PORT of an inner URL in ffmpeg's messages (tcp://h:p?tcp_nodelay=0, srt://h:p?streamid=...)."""
    return re.split(r"[/?#]", netloc, maxsplit=1)[0].rsplit("@", 1)[-1]


def _schemeless(target: str, secrets: Sequence[str]) -> str:
    """A URL ffmpeg took for a file name, fit to show: host/app, the rest masked like a key."""
    parts = mask_text(target, list(secrets)).split("/")
    return "/".join([*parts[:2], MASK]) if len(parts) > 2 else "/".join(parts)


def explain_failure(
    name: str,
    url: str,
    lines: Sequence[str],
    secrets: Sequence[str],
    *,
    streamed: bool = False,
    stalled_after: float | None = None,
    rc: int | None = None,
) -> str:
    """Why a session to URL failed, as "cause: what to check", from the last stderr LINES of ffmpeg.

    STREAMED: media flowed before the failure. STALLED_AFTER: we stopped it after that many seconds
    without progress. Unknown errors fall back to ffmpeg's last line. The result is masked with SECRETS.
    """
    hp = _host_port(url)
    causes: list[str] = []
    tls_error: str | None = None
    lines = [ln.strip() for ln in lines if ln.strip()]
    for line in lines:
        m = _CONTEXT.match(line)
        context, msg = (m[1], m[2]) if m else ("", line)
        cause = None
        if m := _RESOLVE.search(msg):
            cause = f"no such host {m[1]}: check the URL's host name"
        elif m := _CONNECT.search(msg):
            where, why = _target(m[2]), m[3].strip().rstrip(".")
            if why == "Connection refused":
                cause = f"connection refused by {where}: is the ingest running and the port right?"
            elif why == "Connection timed out":
                cause = f"timed out connecting to {where}: is the host reachable and the port right?"
            elif m[1] == "srt":  # UDP: a closed port is no refusal, only silence
                cause = f"no answer from {where} ({why}): is the SRT ingest running and the port right?"
            else:
                cause = f"cannot connect to {where} ({why}): is the host reachable?"
        elif context == "tls":
            tls_error = msg.strip().rstrip(".")  # the last one is the most precise ("IO error: ...")
        elif (m := _OPEN_TLS.search(msg)) and tls_error:
            where = _target(m[1])
            if "certificate" in tls_error.lower():
                cause = f"the TLS certificate of {where} failed verification ({tls_error}): check the host"
            else:
                cause = (
                    f"TLS handshake with {where} failed ({tls_error}): is it an rtmps:// ingest and the "
                    "port right (RTMPS is usually 443)?"
                )
            tls_error = None
        elif "Server error: Already publishing" in msg:
            cause = "the ingest says the stream is already publishing (another encoder uses this key)"
        elif m := _SERVER.search(msg):
            cause = f"the ingest refused the stream ({m[1].strip()}): {_CHECK_KEY}"
        elif "Cannot read RTMP handshake response" in msg:
            cause = f"{hp} took the connection but did not answer as an RTMP server: is the port right?"
        elif m := _NO_FORMAT.search(msg):
            cause = f"unsupported URL {_schemeless(m[1], secrets)}: it needs rtmp://, rtmps:// or srt://"
        if cause is not None and cause not in causes:  # with --also, one per failing destination
            causes.append(cause)
    last = lines[-1] if lines else None
    if not causes and not streamed:
        if stalled_after is not None:  # we stopped it: its last lines are about being interrupted
            if any("Cannot open connection tls://" in ln for ln in lines):
                causes.append(
                    f"TLS handshake with {hp} timed out (no answer in {stalled_after:g} s): is it an "
                    "rtmps:// ingest and the port right (RTMPS is usually 443)?"
                )
            else:
                causes.append(
                    f"timed out connecting to {hp}: no answer in {stalled_after:g} s; is the ingest "
                    "running and the port right?"
                )
        elif last is not None and _DROPPED.match(last):
            causes.append(f"the ingest refused the stream: {_CHECK_KEY}")
    if not causes:
        if last is not None:
            said = next((ln for ln in reversed(lines) if not ln.startswith(_AFTERMATH)), last)
            m = _CONTEXT.match(said)
            causes.append(f"ffmpeg: {m[2] if m else said}; see `streamctl logs {name}`")
        elif stalled_after is not None:
            causes.append(f"ffmpeg made no progress for {stalled_after:g} s; see `streamctl logs {name}`")
        else:
            causes.append(f"ffmpeg exited with code {rc} and no message; see `streamctl logs {name}`")
    return mask_text("; ".join(causes), list(secrets))
