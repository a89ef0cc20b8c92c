"""A mistyped stream name gets the closest real one in its error line: the configured streams and the ones
with a state file (stop, reset-runtime), the ones with a log (logs), the configured ones (install-service).
A config that cannot be read does not turn stop, reset-runtime or logs into a config error."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from streamctl.store.paths import Paths
from streamctl.store.state import StateStore, StreamState
from tests.conftest import run_cli

CONFIGURED = "live1"  # in the config, with a log
STATE_ONLY = "backup-feed"  # a state file only (started ad hoc, or removed from the config)


def _setup(home: Path, tmp_path: Path, config: str | None = None) -> dict[str, str]:
    home.mkdir(mode=0o700, parents=True)
    input_file = tmp_path / "loop.mp4"
    input_file.write_bytes(b"x")
    cfg = home / "streamctl.toml"
    cfg.write_text(
        config
        if config is not None
        else f'[streams.{CONFIGURED}]\ninput = "{input_file}"\nurl = "rtmp://h/live"\nbudget = "1h"\n'
    )
    cfg.chmod(0o600)
    paths = Paths.in_home(home)
    StateStore(paths).save(StreamState(name=STATE_ONLY, budget_seconds=60.0), time.time())
    paths.log_dir.mkdir(mode=0o700)
    paths.log_file(CONFIGURED).write_text("a line\n")
    # HOME: no ~/.config/streamctl of the user running the tests in install-service's message
    return {**os.environ, "HOME": str(tmp_path)}


def _error(args: list[str], env: dict[str, str]) -> str:
    r = run_cli(*args, env=env)
    assert (r.returncode, r.stdout) == (3, ""), (r.returncode, r.stdout, r.stderr)
    return r.stderr


@pytest.mark.parametrize("command", ["stop", "reset-runtime"])
def test_stop_and_reset_runtime_suggest_configured_and_state_names(
    home: Path, tmp_path: Path, command: str
) -> None:
    env = _setup(home, tmp_path)
    assert (
        _error([command, "liv1"], env) == "streamctl: error: no stream named 'liv1'; did you mean 'live1'?\n"
    )
    assert _error([command, "backup-fed"], env) == (
        "streamctl: error: no stream named 'backup-fed'; did you mean 'backup-feed'?\n"
    )
    assert _error([command, "evening"], env) == "streamctl: error: no stream named 'evening'\n"


def test_logs_suggests_the_streams_that_have_a_log(home: Path, tmp_path: Path) -> None:
    env = _setup(home, tmp_path)
    log_dir = home / "state" / "logs"
    assert _error(["logs", "liv1"], env) == (
        f"streamctl: error: no log for stream 'liv1' at {log_dir}/liv1.log; did you mean 'live1'?\n"
    )
    # a stream with no log is no suggestion for `logs`
    assert _error(["logs", "backup-fed"], env) == (
        f"streamctl: error: no log for stream 'backup-fed' at {log_dir}/backup-fed.log\n"
    )
    assert _error(["logs", "evening"], env) == (
        f"streamctl: error: no log for stream 'evening' at {log_dir}/evening.log\n"
    )


def test_install_service_suggests_a_configured_stream(home: Path, tmp_path: Path) -> None:
    env = _setup(home, tmp_path)
    root = tmp_path / "root"
    cfg = home / "streamctl.toml"
    assert _error(["install-service", "liv1", "--root", str(root)], env) == (
        f"streamctl: error: no stream named 'liv1' in {cfg}; did you mean 'live1'?\n"
    )
    # a state file alone cannot be installed: not suggested
    assert _error(["install-service", "backup-fed", "--root", str(root)], env) == (
        f"streamctl: error: no stream named 'backup-fed' in {cfg}; add it with streamctl add\n"
    )
    assert _error(["install-service", "evening", "--root", str(root)], env) == (
        f"streamctl: error: no stream named 'evening' in {cfg}; add it with streamctl add\n"
    )
    assert not root.exists()  # nothing written


@pytest.mark.parametrize(
    "config",
    ["[streams.live1\n", '[streams.live1]\ninput = "x"\n[bogus]\n'],
    ids=["not-toml", "unknown-table"],
)
def test_a_broken_config_leaves_the_state_and_log_names(home: Path, tmp_path: Path, config: str) -> None:
    env = _setup(home, tmp_path, config)
    for command in ("stop", "reset-runtime"):
        assert _error([command, "backup-fed"], env) == (
            "streamctl: error: no stream named 'backup-fed'; did you mean 'backup-feed'?\n"
        )
        assert _error([command, "evening"], env) == "streamctl: error: no stream named 'evening'\n"
    log = home / "state" / "logs" / "liv1.log"
    assert _error(["logs", "liv1"], env) == (
        f"streamctl: error: no log for stream 'liv1' at {log}; did you mean 'live1'?\n"
    )
    # and a log that is there is printed as before
    assert run_cli("logs", "live1", env=env).stdout == "a line\n"
