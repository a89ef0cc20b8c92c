"""The parsed-config cache (store/config_cache.py): used only while the config is the very file it was
made from; written by add/remove and the cron tick (not for a config changed in the last 2 s), never by a
read command; 0600 like the config."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from streamctl.store.config_cache import refresh_cache
from streamctl.store.paths import Paths
from tests.conftest import run_cli, snapshot


def add(name: str, input_file: Path, key: str = "a-secret-key-1") -> None:
    r = run_cli(
        "add", name, "--input", str(input_file), "--url", "rtmp://h/live", "--key", key, "--hours", "1"
    )
    assert r.returncode == 0, r.stderr


def listed(as_json: bool = True) -> list[str]:
    r = run_cli("list", "--json")
    assert r.returncode == 0, r.stderr
    return [row["name"] for row in json.loads(r.stdout)]


def later() -> None:
    """The cron tick's refresh, as if it came a minute after the config was written."""
    refresh_cache(Paths.from_env(), now=time.time() + 60)


def test_the_cache_is_private_and_a_hand_edit_is_seen_at_once(home: Path, input_file: Path) -> None:
    add("one", input_file)
    cache = home / "state" / "config.cache"
    assert not cache.exists()  # the config was written a moment ago: not yet (see RACY)
    later()
    assert cache.exists() and stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert listed() == ["one"]
    config = home / "streamctl.toml"
    text = config.read_text()
    config.write_text(text.replace("[streams.one]", "[streams.two]"))  # same size, another stream
    st = config.stat()  # a second later, as a person's edit is (later() pretended a minute went by)
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert listed() == ["two"]  # the stale cache is not used
    before = snapshot(home)
    assert run_cli("status").returncode == 0 and listed() == ["two"]
    assert snapshot(home) == before  # reads never write it
    later()  # the cron tick refreshes it
    assert json.loads(cache.read_text())["data"]["streams"].keys() == {"two"}
    assert listed() == ["two"]


def test_a_config_no_json_can_hold_is_read_without_a_cache(home: Path, input_file: Path) -> None:
    add("one", input_file)
    config, cache = home / "streamctl.toml", home / "state" / "config.cache"
    config.write_text(
        config.read_text() + "until = 2030-01-01T20:00:00\n"
    )  # a TOML date-time in [streams.one]
    later()
    assert not cache.exists()
    r = run_cli("runtime", "one", "--json")
    assert r.returncode == 0, r.stderr


def test_status_says_the_same_of_a_broken_stream_from_the_cache(home: Path, input_file: Path) -> None:
    add("one", input_file)
    add("two", input_file, key="a-secret-key-2")
    config, cache = home / "streamctl.toml", home / "state" / "config.cache"
    config.write_text(config.read_text().replace('budget = "1h"', 'budget = "1 fortnight"', 1))
    uncached = run_cli("status", "--json")
    later()
    budgets = json.loads(cache.read_text())["budgets"]
    assert budgets["two"] == [3600.0, None] and budgets["one"][0] is None
    assert "budget" in budgets["one"][1]
    cached = run_cli("status", "--json")
    assert (cached.returncode, cached.stdout, cached.stderr) == (
        uncached.returncode,
        uncached.stdout,
        uncached.stderr,
    )
    assert "[streams.one]" in cached.stderr and cached.returncode == 0
