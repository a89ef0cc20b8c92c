"""`start --detach`: the same supervisor, in its own session; this command returns once it is live, or
its first attempt failed (a warning), or it gave up (an error), or after a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from streamctl.errors import ERROR_PREFIX, StreamctlError
from streamctl.run.ffmpeg import find_ffmpeg, preflight_input
from streamctl.store.config import StreamSpec
from streamctl.store.lifecycle import SessionEnd, Status
from streamctl.store.paths import Paths
from streamctl.store.state import StateStore, StreamState

DETACHED = "_STREAMCTL_DETACHED"


def start_detached(
    paths: Paths,
    spec: StreamSpec,
    ffmpeg: str | None,
    args: list[str],
    wait: float = 15.0,
    env: dict[str, str] | None = None,
) -> tuple[int, str | None]:
    """Launch `streamctl ARGS -q` detached; return its pid, and why its first attempt failed, if it did.

    Everything checkable is checked here first, so bad input fails in this terminal, not in a log. Then it
    waits (up to WAIT seconds) for the first outcome: the stream is live; or its first session failed and
    the supervisor waits to retry (returned: the cause); or the supervisor exited (raised, with its exit
    code and error line). With none of them within WAIT, it returns as the supervisor goes on.
    """
    from streamctl.run.playlist import prepare_input

    found, _ = find_ffmpeg(ffmpeg, spec.settings.ffmpeg)
    # a playlist is checked as the supervisor will run it
    preflight_input(found, prepare_input(paths.state_dir, spec))
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "streamctl", *args, "-q"],
            env={**os.environ, **(env or {}), DETACHED: "1"},  # in the foreground of its own session
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # no terminal: closing it sends no SIGHUP
            close_fds=True,
        )
        deadline = time.monotonic() + wait
        store = StateStore(paths)
        while time.monotonic() < deadline:
            rc = child.poll()
            if rc == 0:  # the whole (short) budget streamed already
                return child.pid, None
            if rc is not None:  # it ended: already running, budget spent, every attempt failed, ...
                err.seek(0)
                message = err.read().decode(errors="replace").strip().removeprefix(ERROR_PREFIX)
                e = StreamctlError(message or f"the supervisor exited with {rc}")
                e.exit_code = rc
                raise e
            try:
                st = store.load(spec.name)
            except StreamctlError:
                st = None
            if st is not None and st.supervisor_pid == child.pid:
                if st.status_enum == Status.LIVE:
                    return child.pid, None
                failed = _first_failure(st)
                if failed:
                    return child.pid, failed
            time.sleep(0.05)
    return child.pid, None


def _first_failure(st: StreamState) -> str | None:
    """The cause (masked) when this supervisor run's last session failed and it waits to retry."""
    last = st.sessions[-1] if st.sessions else {}
    this_run = (last.get("started_at") or 0) >= (st.started_at or float("inf"))
    failed = last.get("end") in (SessionEnd.FAILED, SessionEnd.STALLED)
    if st.status_enum == Status.BACKOFF and this_run and failed:
        return st.last_error
    return None
