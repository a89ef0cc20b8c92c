"""Everything about talking to ffmpeg: its command line, its progress output, finding the binary."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from urllib.parse import urlsplit

from streamctl.config import StreamSpec
from streamctl.errors import EnvironmentProblem, UsageError
from streamctl.masking import is_stream_url

STATS_PERIOD = 0.5


def find_ffmpeg(cli: str | None = None, configured: str | None = None) -> tuple[str, str]:
    """The ffmpeg to run and where it was found: --ffmpeg, $STREAMCTL_FFMPEG, the config, PATH, then the
    binary of the optional extra `streamctl[ffmpeg]` (imageio-ffmpeg). The first one named wins; a named
    one that does not exist is an error (no silent fallback to another ffmpeg)."""
    for source, value in (("--ffmpeg", cli), ("STREAMCTL_FFMPEG", os.environ.get("STREAMCTL_FFMPEG")),
                          ("config", configured)):  # fmt: skip
        if value:
            found = value if os.sep in value else shutil.which(value)
            if found and os.path.isfile(found) and os.access(found, os.X_OK):
                return found, source
            raise EnvironmentProblem(f"ffmpeg not found: {value!r} (from {source}) is not an executable")
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path, "PATH"
    try:
        import imageio_ffmpeg  # type: ignore[import-not-found,unused-ignore]

        return str(imageio_ffmpeg.get_ffmpeg_exe()), "imageio-ffmpeg"
    except (ImportError, RuntimeError):
        pass
    raise EnvironmentProblem(
        "ffmpeg not found: give --ffmpeg PATH, set STREAMCTL_FFMPEG or `ffmpeg` in the config, install it "
        "(apt-get install ffmpeg), or pip install 'streamctl[ffmpeg]' for a bundled one"
    )


def find_ffprobe(ffmpeg: str) -> str | None:
    """ffprobe beside ffmpeg, else on PATH (the bundled ffmpeg comes without one)."""
    sibling = os.path.join(os.path.dirname(ffmpeg), "ffprobe")
    return sibling if os.access(sibling, os.X_OK) else shutil.which("ffprobe")


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


class ProgressParser:
    """Turns `key=value` lines into Progress blocks; a block ends with its `progress=` line."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> Progress | None:
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


def preflight_input(ffmpeg: str, spec: StreamSpec, timeout: float = 15.0) -> None:
    """Refuse a local input that ffprobe cannot read as media, with ffprobe's own reason; in copy mode to
    an RTMP ingest (YouTube, Twitch), refuse codecs it will not take: H.264 in yuv420p, AAC or MP3.

    Skipped for generated (lavfi), playlist and network inputs, and when no ffprobe is found beside
    ffmpeg or on PATH (the bundled ffmpeg has none): ffmpeg or the ingest then fails later instead.
    """
    import json
    import subprocess

    if spec.input_format is not None or "://" in spec.input:
        return
    ffprobe = find_ffprobe(ffmpeg)
    if ffprobe is None:
        return
    try:
        r = subprocess.run(
            [ffprobe, "-v", "error", "-show_entries", "stream=codec_type,codec_name,pix_fmt", "-of", "json",
             spec.input],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        streams = json.loads(r.stdout or "{}").get("streams", [])
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return
    video = [st for st in streams if st.get("codec_type") == "video"]
    audio = [st for st in streams if st.get("codec_type") == "audio"]
    if r.returncode != 0 or not (video or audio):
        why = (r.stderr.strip().splitlines() or ["no audio or video stream"])[-1]
        raise UsageError(f"input {spec.input} is not media ffmpeg can stream: {why}")
    if spec.mode != "copy" or urlsplit(spec.output_url).scheme.lower() not in ("rtmp", "rtmps"):
        return
    bad = [
        f"video {st.get('codec_name')}/{st.get('pix_fmt')}"
        for st in video[:1]
        if st.get("codec_name") not in RTMP_VIDEO or st.get("pix_fmt") != "yuv420p"
    ] + [f"audio {st.get('codec_name')}" for st in audio[:1] if st.get("codec_name") not in RTMP_AUDIO]
    if bad:
        raise UsageError(
            f"copy mode cannot send {' and '.join(bad)} to an RTMP ingest (it needs H.264 yuv420p video and "
            "AAC or MP3 audio): use --mode encode, or re-encode the file once"
        )
