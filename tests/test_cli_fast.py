"""The fast way into the read commands (cli_fast) against the Typer app it stands in for.

The spec it parses by is what the Typer app declares now; every read command, with its options and its
mistakes, prints the same bytes and exits the same both ways (real processes, one STREAMCTL_HOME); what
it does not understand goes to Typer; and it imports neither Typer nor rich.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamctl import cli_fast, cli_read, cli_spec
from streamctl.cli_fast import FORCE_TYPER, plan
from streamctl.store.paths import Paths
from streamctl.store.state import OpenSession, StateStore

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """\
[streams.morning]
input = "/srv/morning.mp4"
url = "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop"
hours = 5

[streams.evening]
input = "lavfi:testsrc"
input_format = "lavfi"
url = "rtmp://b.example/live"
key = "secret-key-1234"
budget = "45m"
mode = "encode"

[streams.broken]
input = "/srv/x.mp4"
url = "rtmp://c.example/live/kkkkkkkkkkkk"
hours = "many"
"""


def make_home(home: Path) -> None:
    """A config (one stream of it broken) and state files: offline ones, a failed one, and a `live` one
    whose supervisor is long gone (status shows it offline, sweep records it lost)."""
    home.mkdir(parents=True)
    (home / "streamctl.toml").write_text(CONFIG)
    (home / "streamctl.toml").chmod(0o600)
    store = StateStore(Paths(config_file=home / "streamctl.toml", state_dir=home / "state"))
    now = time.time()
    for i in range(12):
        with store.update(f"s{i:02d}", now=now) as s:
            s.status, s.budget_seconds, s.runtime_seconds = "offline", 3600.0, float(i * 317)
            s.restarts, s.session_count = i % 3, i
    with store.update("morning", now=now) as s:
        s.status, s.budget_seconds, s.runtime_seconds = "failed", 18000.0, 42.5
        s.stop_reason, s.last_error = "retries_exhausted", "Connection refused\nrtmp://host/live/****"
        s.last_exit_code = 1
    with store.update("ghost", now=now) as s:
        s.status, s.budget_seconds, s.runtime_seconds = "live", 600.0, 120.0
        s.supervisor_pid, s.supervisor_create_time, s.started_at = 2**22 + 17, now - 7200, now - 7200
        s.session = OpenSession(
            started_at=now - 7000, t_arg=480.0, ffmpeg_pid=2**22 + 18, ffmpeg_create_time=now - 7000,
            runtime_seconds=30.0, checkpoint_at=now - 6990,
        )  # fmt: skip


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("fast") / "home"
    make_home(home)
    return home


def run(args: list[str], home: Path, typer: bool) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != FORCE_TYPER and not k.endswith("_COMPLETE")}
    env.update(STREAMCTL_HOME=str(home), PYTHONPATH=str(ROOT), NO_COLOR="", COLUMNS="100")
    if typer:
        env[FORCE_TYPER] = "1"
    return subprocess.run(
        [sys.executable, "-m", "streamctl", *args], env=env, capture_output=True, timeout=60, cwd=home.parent
    )


# (arguments, taken by the fast path?)
CASES = [
    (["status"], True),
    (["status", "--json"], True),
    (["status", "--format", "json"], True),
    (["status", "--format=prometheus"], True),
    (["status", "--format", "table"], True),
    (["status", "s03"], True),
    (["status", "s03", "--json", "morning", "ghost"], True),
    (["status", "--json", "--json", "s01"], True),
    (["status", "--format", "json", "--format", "table", "s01"], True),
    (["status", "nope"], True),  # exit 3, with a "did you mean"
    (["status", "s0"], True),
    (["status", ".."], True),  # not a stream name: exit 2
    (["status", "--format", "xml"], True),  # exit 2, from cli_read
    (["status", "--format="], True),
    (["runtime", "s05"], True),
    (["runtime", "s05", "--json"], True),
    (["runtime", "--json", "ghost"], True),
    (["runtime", "morning"], True),
    (["runtime", "evening"], True),  # configured, never started
    (["runtime", "nope"], True),
    (["list"], True),  # the broken stream: exit 2 after the others
    (["list", "--json"], True),
    (["sweep"], True),
    (["sweep", "--json"], True),
    (["sweep", "--grace", "1.5"], True),
    (["sweep", "--grace=0", "--json"], True),
    (["sweep", "--grace", "99999"], True),  # exit 2, from the library
    # Typer's own: the fast path hands these over
    (["status", "--bogus"], False),
    (["status", "-x"], False),
    (["status", "--json=1"], False),
    (["status", "--format"], False),
    (["status", "--", "s01"], False),
    (["status", "--help"], False),
    (["runtime"], False),
    (["runtime", "s01", "s02"], False),
    (["runtime", "-h"], False),
    (["list", "extra"], False),
    (["sweep", "--grace", "abc"], False),
    (["sweep", "--grace", "-1"], False),
    (["sweep", "--grace", "inf"], False),
    (["sweep", "--grace", " 2"], False),
    (["stauts"], False),
    (["--version"], False),
    ([], False),
]


@pytest.mark.parametrize(("args", "fast"), CASES, ids=[" ".join(a) or "(none)" for a, _ in CASES])
def test_both_ways_print_the_same_bytes_and_exit_the_same(
    args: list[str], fast: bool, template: Path, tmp_path: Path
) -> None:
    assert (plan(args, {}) is not None) == fast
    ran = []
    for typer in (False, True):
        home = tmp_path / f"home-{typer}"
        shutil.copytree(template, home)  # sweep writes: each way starts from the same files
        r = run(args, home, typer)
        # the paths in the output (the config's) are each home's own: make them the same
        ran.append(
            (r.returncode, r.stdout.replace(bytes(home), b"HOME"), r.stderr.replace(bytes(home), b"HOME"))
        )
        assert b"Traceback" not in r.stderr, r.stderr.decode()
    assert ran[0] == ran[1]


def test_the_cases_cover_every_option_of_every_fast_command() -> None:
    typed = {a for args, fast in CASES if fast for a in args} | {"--watch", "-w"}  # never ends: cli()
    for command, spec in cli_spec.COMMANDS.items():
        assert any(args[:1] == [command] for args, fast in CASES if fast)
        for option in spec["options"]:
            assert option in typed or any(a.startswith(option + "=") for a in typed), option


def test_the_spec_is_what_the_typer_app_declares() -> None:
    """cli_spec.py is generated: after changing a read command in cli.py, regenerate it with
    `python -m streamctl.cli_fast > streamctl/cli_spec.py` (the generator refuses what it cannot parse)."""
    assert cli_fast.generate() == cli_spec.COMMANDS
    assert set(cli_spec.COMMANDS) == set(cli_fast.FAST_COMMANDS)


def test_the_generated_file_is_what_the_generator_writes() -> None:
    assert (ROOT / "streamctl" / "cli_spec.py").read_text() == cli_fast.source()


def test_sweeps_default_grace_is_the_settings_one() -> None:
    from streamctl.store.config import Settings

    assert Settings().grace == cli_read.DEFAULT_GRACE


def test_the_fast_path_imports_neither_typer_nor_rich(template: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(template, home)
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['streamctl', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('streamctl', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = {m.split('.')[0] for m in sys.modules} & {'typer', 'click', 'rich', 'pydantic'}\n"
        "sys.stderr.write(f'HEAVY={sorted(heavy)}')\n"
    )
    env = {**os.environ, "STREAMCTL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop(FORCE_TYPER, None)
    for args in (["status"], ["status", "--json"], ["runtime", "s01"], ["list"], ["sweep"]):
        r = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True)
        assert r.stderr.endswith("HEAVY=[]"), (args, r.stderr)
    r = subprocess.run(
        [sys.executable, "-c", probe, "status", "--help"], env=env, capture_output=True, text=True
    )
    assert "typer" in r.stderr.rsplit("HEAVY=", 1)[1]


@pytest.mark.parametrize(
    "environ",
    [{FORCE_TYPER: "1"}, {"_STREAMCTL_COMPLETE": "complete_bash"}, {"_PYTHON _M STREAMCTL_COMPLETE": "zsh"}],
)
def test_typer_when_forced_or_completing(environ: dict[str, str]) -> None:
    assert plan(["status"], {}) is not None
    assert plan(["status"], environ) is None


def test_completion_still_answers(template: Path) -> None:
    env = {**os.environ, "STREAMCTL_HOME": str(template), "PYTHONPATH": str(ROOT)}
    env.update(_STREAMCTL_COMPLETE="complete_bash", COMP_WORDS="streamctl sta", COMP_CWORD="1")
    r = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv[0] = 'streamctl'; from streamctl.cli_fast import main; main()"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert "status" in r.stdout and "start" in r.stdout, (r.stdout, r.stderr)


def test_what_the_parser_hands_the_read_functions() -> None:
    assert plan(["status"], {}) == (
        "status",
        {"names": None, "as_json": False, "watch": False, "format": "table"},
    )
    assert plan(["status", "a", "-w", "b", "--format=json"], {}) == (
        "status",
        {"names": ["a", "b"], "as_json": False, "watch": True, "format": "json"},
    )
    assert plan(["runtime", "--json", "x"], {}) == ("runtime", {"name": "x", "as_json": True})
    assert plan(["list"], {}) == ("list_", {"as_json": False})
    assert plan(["sweep", "--grace", "2.25"], {}) == ("sweep", {"as_json": False, "grace": 2.25})
    assert plan(["sweep", "--grace", "7"], {}) == ("sweep", {"as_json": False, "grace": 7.0})
    assert plan(["status", "\udcff"], {}) is None  # not UTF-8: Typer says so


_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text()
)
_flat = st.dictionaries(st.text(), _scalar, max_size=6)
_any: Any = st.recursive(
    _scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
)


@given(st.one_of(st.lists(_flat, max_size=4), _flat, _any))
def test_dumps_is_json_dumps_indent_2(data: Any) -> None:
    assert cli_read.dumps(data) == json.dumps(data, indent=2)


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["list"], ["list", "--json"], ["sweep"]])
def test_an_empty_home_both_ways(args: list[str], tmp_path: Path) -> None:
    """No config, no state: "no streams", "no streams configured in ...", nothing swept."""
    ran = [run(args, tmp_path / "home", typer) for typer in (False, True)]
    assert [(r.returncode, r.stdout, r.stderr) for r in ran[:1]] == [
        (r.returncode, r.stdout, r.stderr) for r in ran[1:]
    ]
    assert ran[0].returncode == 0 and (ran[0].stdout or args == ["sweep"])


def test_only_serve_imports_the_web_framework(template: Path, tmp_path: Path) -> None:
    """starlette, uvicorn (and apprise) cost every other command nothing: not even the Typer ones."""
    home = tmp_path / "home"
    shutil.copytree(template, home)
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['streamctl', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('streamctl', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "web = {m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'apprise', 'anyio', 'h11'}\n"
        "sys.stderr.write(f'WEB={sorted(web)}')\n"
    )
    env = {**os.environ, "STREAMCTL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    for args in (["status"], ["--help"], ["serve", "--help"], ["events", "s01"], ["token"], ["check", "s01"]):
        r = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True)
        assert r.stderr.endswith("WEB=[]"), (args, r.stderr)
