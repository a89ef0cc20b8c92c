"""State and config files: atomic, private, locked, and never silently reset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamctl.errors import FileError, NotFound, Untrusted, UsageError
from streamctl.masking import mask_url
from streamctl.run.ffmpeg import build_argv
from streamctl.store.config import add_stream, load_config, remove_stream, resolve_spec
from streamctl.store.paths import Paths, validate_name
from streamctl.store.state import StateStore, StreamState


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(config_file=tmp_path / "streamctl.toml", state_dir=tmp_path / "state")


def test_state_round_trip_is_private(paths: Paths) -> None:
    store = StateStore(paths)
    with store.update("s", now=1.0) as st:
        st.runtime_seconds = 12.5
    loaded = store.load("s")
    assert loaded is not None and loaded.runtime_seconds == 12.5 and loaded.updated_at == 1.0
    assert paths.state_file("s").stat().st_mode & 0o777 == 0o600
    assert paths.state_dir.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in paths.state_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_update_writes_nothing_when_the_block_raises(paths: Paths) -> None:
    store = StateStore(paths)
    with store.update("s", now=1.0) as st:
        st.runtime_seconds = 1.0
    before = paths.state_file("s").read_bytes()
    with pytest.raises(RuntimeError), store.update("s", now=2.0) as st:
        st.runtime_seconds = 99.0
        raise RuntimeError
    assert paths.state_file("s").read_bytes() == before


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'{"schema": 99, "name": "s"}', b'{"schema":1,"name":"s","status":"bogus"}']
)
def test_corrupt_state_is_kept_and_refused(paths: Paths, content: bytes) -> None:
    paths.state_dir.mkdir(parents=True)
    paths.state_file("s").write_bytes(content)
    with pytest.raises(FileError, match=r"corrupt.*\.corrupt"):
        StateStore(paths).load("s")
    assert paths.state_file("s").read_bytes() == content  # untouched
    assert (paths.state_dir / "s.json.corrupt").read_bytes() == content


@pytest.mark.parametrize("name", ["a/b", "..", "../x", "a b", "x" * 300, "", "-x", ".hidden"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError):
        validate_name(name)


def test_add_list_remove_config(paths: Paths, tmp_path: Path, input_file: Path) -> None:
    add_stream(
        paths,
        "yt",
        {"input": str(input_file), "url": "rtmp://a.example/live2", "key": "SECRETKEY", "budget": "5h"},
    )
    assert paths.config_file.stat().st_mode & 0o777 == 0o600
    spec = load_config(paths).spec("yt")
    assert (spec.budget_seconds, spec.mode, spec.loop, spec.output_url) == (
        18000.0,
        "copy",
        True,
        "rtmp://a.example/live2/SECRETKEY",
    )
    with pytest.raises(UsageError, match="already exists"):
        add_stream(paths, "yt", {"input": str(input_file), "url": "rtmp://a.example/live2"})
    before = paths.config_file.read_bytes()
    with pytest.raises(UsageError):
        add_stream(paths, "bad", {"input": str(input_file), "url": "http://example.com/x"})
    with pytest.raises(UsageError, match="not found"):
        add_stream(paths, "bad", {"input": str(tmp_path / "missing.mp4"), "url": "rtmp://h/live"})
    assert paths.config_file.read_bytes() == before
    over = resolve_spec(paths, "yt", {"budget_seconds": 60.0, "retries": 7, "input": None})
    assert (over.budget_seconds, over.settings.retries) == (60.0, 7)
    remove_stream(paths, "yt")
    with pytest.raises(NotFound):
        remove_stream(paths, "yt")


def test_config_errors_are_clear(paths: Paths) -> None:
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text('[streams.x]\ninput = "a\n')
    os.chmod(paths.config_file, 0o600)
    with pytest.raises(UsageError, match=r"line 2, column"):
        load_config(paths)
    os.chmod(paths.config_file, 0o666)
    with pytest.raises(Untrusted, match="writable by every user") as refused:
        load_config(paths)
    assert refused.value.exit_code == 2


def test_t_stands_before_the_output_and_the_key_is_masked(paths: Paths, input_file: Path) -> None:
    spec = resolve_spec(paths, "s", {"input": str(input_file), "url": "rtmp://h/live2", "key": "K3Y12345"})
    argv = build_argv("ffmpeg", spec, 12.3456)
    assert argv[-1] == "rtmp://h/live2/K3Y12345"
    assert argv.index("-t") < argv.index("-f") < len(argv) - 1 and argv[argv.index("-t") + 1] == "12.346"
    assert argv[argv.index("-progress") + 1] == "pipe:1"
    assert mask_url("rtmp://h/live2/K3Y", ["K3Y"]) == "rtmp://h/live2/****"
    assert mask_url("rtmp://user:pw@h/app/abc?token=z") == "rtmp://****@h/app/****?****"
    assert mask_url("/tmp/out.flv") == "/tmp/out.flv"


def test_state_total_runtime_counts_the_checkpointed_session() -> None:
    from streamctl.store.state import OpenSession

    st = StreamState(name="x", budget_seconds=100.0, runtime_seconds=30.0, status="live")
    st.session = OpenSession(started_at=0.0, t_arg=70.0, runtime_seconds=10.0, checkpoint_at=50.0)
    assert st.total_runtime() == 40.0
    # extrapolated past the checkpoint at its rate (1 for old files), at most HORIZON: the supervisor
    # never counts less than that, so a reader is never taken back
    assert st.total_runtime(now=50.5) == 40.5
    assert st.total_runtime(now=53.0) == 41.0
    assert st.remaining(now=53.0) == 59.0
    st.session.rate = 0.5
    assert st.total_runtime(now=53.0) == 40.5
