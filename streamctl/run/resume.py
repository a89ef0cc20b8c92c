"""Continuity for viewers: a restarted session resumes the input where the stream was, not at 0:00.

streamctl knows how much was streamed; a looped file resumes at that time modulo its length, a playlist
at the right item and offset, through an ffconcat list: the first entry from its `inpoint`, then the rest
of the list, then the whole list as many times as the remaining budget needs. Not `-ss` with
`-stream_loop`: FFmpeg 5.1 then breaks the timestamps at the first loop (measured: 16.5 s of frames in a
6.5 s timeline). In copy mode the first entry starts at the keyframe before its inpoint, so viewers see at
most a GOP again. Live URLs and lavfi sources are not seekable and start as they are; `resume = false`
turns it off.
"""

from __future__ import annotations

import math
from pathlib import Path

from streamctl.store.config import StreamSpec
from streamctl.store.fileio import atomic_write
from streamctl.store.paths import STATE_SUFFIXES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import replace
else:
    from streamctl.records import replace

MIN_OFFSET = 0.5  # seconds: less than this is the beginning
Items = list[tuple[str, float]]  # (path, duration) of the input's files, in order


def resumable(spec: StreamSpec) -> bool:
    """A file or a playlist of files: what can be seeked."""
    return spec.resume and spec.input_format is None and "://" not in spec.input


def probe_items(ffmpeg: str, source: str) -> Items | None:
    """The files of SOURCE (a file, a folder, a list) and their durations; None if one is unknown or no
    ffprobe is found (the session then starts at the beginning, as before)."""
    from streamctl.run.ffmpeg import find_ffprobe, media_duration
    from streamctl.run.playlist import entries, is_playlist

    ffprobe = find_ffprobe(ffmpeg)
    if ffprobe is None:
        return None
    # absolute: ffmpeg reads a concat list's entries relative to the list, not to our folder
    one = Path(source).expanduser().resolve()
    files = [str(f) for f in entries(source)] if is_playlist(source) else [str(one)]
    out: Items = []
    for f in files:
        d = media_duration(ffprobe, f)
        if d is None:
            return None
        out.append((f, d))
    return out


def resumed(spec: StreamSpec, items: Items, streamed: float, remaining: float, state_dir: Path) -> StreamSpec:
    """SPEC with its input starting where STREAMED seconds of it end (looped or not), for a session of
    at most REMAINING seconds; SPEC itself when that is the beginning."""
    total = sum(d for _, d in items)
    if total <= 0:
        return spec
    pos = streamed % total if spec.loop else streamed
    if pos < MIN_OFFSET or (spec.loop and pos > total - MIN_OFFSET) or (not spec.loop and pos >= total):
        return spec  # at the beginning (or as good as): as it was
    k, inpoint = 0, pos
    while k < len(items) - 1 and inpoint >= items[k][1]:  # bounded: float sums may fall short of TOTAL
        inpoint -= items[k][1]
        k += 1
    inpoint = min(inpoint, items[k][1])
    entries = [(items[k][0], inpoint if inpoint >= MIN_OFFSET else 0.0)]
    entries += [(f, 0.0) for f, _ in items[k + 1 :]]
    if spec.loop:
        rest = total - pos
        entries += [(f, 0.0) for f, _ in items] * (math.ceil(max(0.0, remaining - rest) / total) + 1)
    lines = ["ffconcat version 1.0"]
    for f, at in entries:
        lines.append("file '" + f.replace("'", "'\\''") + "'")
        if at > 0:
            lines.append(f"inpoint {at:.3f}")
    path = state_dir / f"{spec.name}{STATE_SUFFIXES['resume']}"
    atomic_write(path, ("\n".join(lines) + "\n").encode(), durable=False)
    return replace(spec, input=str(path), input_format="concat", loop=False)
