"""The parsed config, cached as JSON beside the state (see CACHE_NAME): `status`, `list` and `runtime`
over a thousand configured streams would spend most of their time parsing TOML."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from streamctl.errors import StreamctlError
from streamctl.store.fileio import atomic_write
from streamctl.store.paths import Paths

# The parsed config as JSON beside the state, keyed by the config file's identity. Parsing TOML is pure
# Python: ~40 ms for a thousand streams, most of `status`, `list` and `runtime` there. It is written only
# where streamctl writes anyway (add/remove, and the cron tick `sweep` after a hand edit), never by a read
# command; readers use it only while the config is byte for byte the file it was made from.
CACHE_NAME = "config.cache"


def _identity(path: Path, st: os.stat_result) -> list[Any]:
    return [str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def cached(
    paths: Paths, path: Path, st: os.stat_result
) -> tuple[dict[str, Any] | None, dict[str, tuple[float | None, str | None]] | None]:
    """The parsed config and each stream's checked budget (Config.budgets), if the cache is of PATH as
    ST describes it; else (None, None)."""
    import json

    try:
        with open(paths.state_dir / CACHE_NAME, "rb") as f:
            cached = json.loads(f.read())
    except (OSError, ValueError):
        return None, None
    if not isinstance(cached, dict) or cached.get("of") != _identity(path, st):
        return None, None
    data, budgets = cached.get("data"), cached.get("budgets")
    if not isinstance(data, dict):
        return None, None
    if not isinstance(budgets, dict):
        return data, None
    return data, {name: (b, err) for name, (b, err) in budgets.items()}


RACY = 2.0  # seconds: a config changed this recently may change again within the same timestamp tick


def refresh_cache(paths: Paths, now: float | None = None) -> None:
    """Write the parsed-config cache if it is missing or stale (a valid config only; quietly nothing if
    it cannot be made: a TOML date-time has no JSON form). Not for a config changed in the last RACY
    seconds: a second write within the file system's timestamp granularity (a few ms) would leave size,
    times and inode as they were, and the cache would be taken for the new file (git's "racily clean")."""
    import json
    import time

    path = paths.config_file
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or cached(paths, path, st)[1] is not None:
            return
        if (time.time() if now is None else now) - max(st.st_mtime, st.st_ctime) < RACY:
            return
        from streamctl.store.config import Config, parse_toml  # only when stale

        data = parse_toml(path)
        if path.stat().st_mtime_ns != st.st_mtime_ns:
            return  # edited while we read it
        budgets = Config(path, data).budgets()
        blob = json.dumps({"of": _identity(path, st), "data": data, "budgets": budgets}).encode()
        atomic_write(paths.state_dir / CACHE_NAME, blob, durable=False)
    except (OSError, TypeError, ValueError, StreamctlError):
        return
