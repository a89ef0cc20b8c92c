"""Playlist inputs: a folder of videos, or a list file (one path a line), streamed in order and looped,
through ffmpeg's concat demuxer. In copy mode every file must share codecs and parameters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from streamctl.errors import UsageError
from streamctl.store.fileio import atomic_write

if TYPE_CHECKING:
    from streamctl.store.config import StreamSpec

MEDIA = {".mp4", ".m4v", ".mkv", ".mov", ".flv", ".ts", ".webm", ".avi", ".mp3", ".m4a", ".aac", ".wav"}
LISTS = {".txt", ".m3u", ".list"}


def is_playlist(source: str) -> bool:
    p = Path(source)
    return "://" not in source and (p.is_dir() or p.suffix.lower() in LISTS)


def entries(source: str) -> list[Path]:
    p = Path(source).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in MEDIA)
    else:
        lines = [ln.strip() for ln in p.read_text(errors="replace").splitlines()]
        files = [(p.parent / ln).resolve() for ln in lines if ln and not ln.startswith("#")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise UsageError(f"playlist {p}: {len(missing)} missing file(s), first: {missing[0]}")
    if not files:
        raise UsageError(f"playlist {p} has no media files ({', '.join(sorted(MEDIA))})")
    return [f.resolve() for f in files]


def write_concat(source: str, dest: Path) -> Path:
    """Write SOURCE's files as an ffconcat list at DEST (0600) and return DEST."""
    # ffconcat quoting: a ' inside a quoted path is written as '\''
    quoted = ["file '" + str(f).replace("'", "'\\''") + "'" for f in entries(source)]
    atomic_write(dest, ("ffconcat version 1.0\n" + "\n".join(quoted) + "\n").encode())
    return dest


def prepare_input(state_dir: Path, spec: StreamSpec) -> StreamSpec:
    """A folder or list file becomes an ffconcat list beside the state (ffmpeg's concat demuxer)."""
    from streamctl.records import replace

    if spec.input_format is not None or not is_playlist(spec.input):
        return spec
    from streamctl.store.paths import STATE_SUFFIXES

    concat = write_concat(spec.input, state_dir / f"{spec.name}{STATE_SUFFIXES['playlist']}")
    return replace(spec, input=str(concat), input_format="concat")
