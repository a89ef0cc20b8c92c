"""`start --detach`: the same supervisor, in its own session, with this command returning at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from streamctl.config import StreamSpec
from streamctl.errors import ERROR_PREFIX, StreamctlError
from streamctl.ffmpeg import find_ffmpeg, preflight_input
from streamctl.paths import Paths

DETACHED = "_STREAMCTL_DETACHED"


def start_detached(
    paths: Paths, spec: StreamSpec, ffmpeg: str | None, args: list[str], wait: float = 10.0
) -> int:
    """Launch `streamctl ARGS -q` detached; return its pid once it has taken the stream.

    Everything checkable is checked here first, so bad input fails in this terminal, not in a log.
    """
    from streamctl.supervisor import prepare_input

    found, _ = find_ffmpeg(ffmpeg, spec.settings.ffmpeg)
    preflight_input(found, prepare_input(paths, spec))  # a playlist is checked as the supervisor will run it
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "streamctl", *args, "-q"],
            env={**os.environ, DETACHED: "1"},  # the child runs in the foreground of its own session
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # no terminal: closing it sends no SIGHUP
            close_fds=True,
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            rc = child.poll()
            if rc is not None:  # it ended at once: already running, budget spent, ...
                err.seek(0)
                message = err.read().decode(errors="replace").strip().removeprefix(ERROR_PREFIX)
                e = StreamctlError(message or f"the supervisor exited with {rc}")
                e.exit_code = rc
                raise e
            try:
                st = json.loads(paths.state_file(spec.name).read_text())
                if st.get("supervisor_pid") == child.pid:
                    return child.pid
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
    return child.pid
