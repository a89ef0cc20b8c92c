"""`start --detach` waits for the first outcome: live (silent), a failed first attempt (a warning; the
supervisor retries in the background), or a supervisor that gave up (its error line and exit code)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import Rtmp, cli, gone, needs_media, read_state, run_cli, wait_for

pytestmark = [pytest.mark.e2e, needs_media]
REFUSED = "the ingest refused the stream: check the stream key and the application name in the URL"


def _detach(name: str, media: Path, url: str, *extra: str) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    r = cli("start", name, "--input", str(media), "--url", url, "--key", f"{name}-key-1234", "--duration",
            "30s", *extra, "--detach")  # fmt: skip
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def _started(home: Path, name: str, stdout: str) -> int:
    pid = int(stdout.split("supervisor pid ")[1].split(";")[0])
    assert stdout == (
        f"{name}: started in the background, supervisor pid {pid}; log: {home / 'state' / 'logs'}/{name}.log\n"
    )
    return pid


def test_detach_warns_when_the_first_attempt_fails(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    wrong = no_leftovers.url.rsplit("/", 1)[0] + "/wrongapp"  # nginx-rtmp drops an unknown application
    rc, out, err, took = _detach("w", media, wrong)
    try:
        assert rc == 0, err
        pid = _started(home, "w", out)
        assert err == (
            f"streamctl: warning: w: the first attempt failed: {REFUSED}; it retries in the background "
            "(streamctl status w)\n"
        )
        assert took < 10
        st = read_state(home, "w")
        assert (st["supervisor_pid"], st["status"]) == (pid, "backoff")
        assert "w-key-1234" not in out + err
    finally:
        assert run_cli("stop", "w").returncode == 0
    # `stop` returns once the run has ended (its lock released); the process exits a moment later
    wait_for(lambda: gone(pid), timeout=10)


def test_detach_to_the_live_app_prints_only_the_started_line(
    home: Path, media: Path, no_leftovers: Rtmp
) -> None:
    rc, out, err, took = _detach("l", media, no_leftovers.url)
    try:
        assert (rc, err) == (0, "")
        pid = _started(home, "l", out)
        assert took < 10
        st = read_state(home, "l")
        assert (st["supervisor_pid"], st["status"], st["last_error"]) == (pid, "live", None)
    finally:
        assert run_cli("stop", "l").returncode == 0


def test_detach_that_gives_up_at_once_is_an_error(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    wrong = no_leftovers.url.rsplit("/", 1)[0] + "/wrongapp"
    rc, out, err, _ = _detach("g", media, wrong, "--retries", "0")
    assert (rc, out) == (1, "")
    assert err == f"streamctl: error: g: {REFUSED}\n"
    assert read_state(home, "g")["status"] == "failed"
