"""Telling people: each event to the stream's apprise URLs and its `on_event` command, off the supervision
path.

The supervisor (or `sweep`) hands an event to `send`, which starts a helper process (`python -m
streamctl.output.deliver`) in a session of its own and returns: the event, the targets and the secrets
to mask go to it on stdin, never in argv or the environment (`ps` would show them). The helper delivers
with a few tries and backoff, within a deadline, and outlives the supervisor if need be; a dead webhook or
a hook that never exits costs the supervisor one fork, never a moment of its timing. apprise is imported
by the helper only: a stream without targets never starts one, and no supervisor loads apprise.

The hook gets the event as JSON on stdin and as STREAMCTL_* variables (the way MediaMTX's runOnReady
hooks get theirs), runs without a shell in its own process group, and is killed at HOOK_TIMEOUT.
A delivery that fails is one line in the stream's log, with the target shown by its scheme only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

TRIES = 3
BACKOFF = 2.0  # seconds before the second try; doubles
HOOK_TIMEOUT = 30.0
DEADLINE = 120  # seconds the helper may live in all


def wanted(event: str, only: tuple[str, ...] | None) -> bool:
    return only is None or event in only


def send(
    record: dict[str, Any],
    notify: tuple[str, ...],
    on_event: tuple[str, ...],
    secrets: list[str],
    log_file: str | None,
    wait: bool = False,
    log_size: tuple[int, int] | None = None,
) -> dict[str, Any] | None:
    """Deliver RECORD to NOTIFY (apprise URLs) and ON_EVENT (a command) from a helper process. WAIT: for
    `notify test`, wait for it and return what it says of each target."""
    import subprocess
    import threading

    if not notify and not on_event:
        return None
    job = {"record": record, "notify": list(notify), "on_event": list(on_event), "secrets": secrets,
           "log": log_file, "log_max_bytes": log_size[0] if log_size else None,
           "log_keep": log_size[1] if log_size else None}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamctl.output.deliver"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE if wait else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives the supervisor, and a terminal's ^C
        close_fds=True,
    )
    data = json.dumps(job).encode()  # a few KiB: the pipe takes it whole, the helper reads it first
    if wait:
        out, _ = proc.communicate(data, timeout=DEADLINE + 10)
        try:
            result: dict[str, Any] = json.loads(out or b"{}")
            return result
        except ValueError:
            return {"error": "the delivery helper said nothing"}
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.write(data)
        proc.stdin.close()
    threading.Thread(target=proc.wait, daemon=True).start()  # reaped when done: no zombie
    return None


def title_and_body(record: dict[str, Any]) -> tuple[str, str]:
    from streamctl.output.alerts import format_event

    event = str(record.get("event", "event")).replace("_", " ")
    return f"streamctl: {record.get('stream', '?')} {event}", format_event(record)


def _shown(url: str) -> str:
    return url.split("://", 1)[0] + "://***"


def _notify(url: str, title: str, body: str) -> str | None:
    """One apprise URL, with tries and backoff; None when delivered, else why not."""
    import apprise

    why = "not delivered"
    for i in range(TRIES):
        a = apprise.Apprise()
        if not a.add(url):
            return "apprise does not take this URL"
        if a.notify(title=title, body=body):
            return None
        why = "not delivered (no answer, or an error answer)"
        if i < TRIES - 1:
            time.sleep(BACKOFF * 2**i)
    return why


def _hook(argv: list[str], record: dict[str, Any], secrets: list[str]) -> str | None:
    import signal
    import subprocess

    # the supervisor's environment, less anything that holds a secret (a key_env variable)
    env = {k: v for k, v in os.environ.items() if not any(s in v for s in secrets)}
    env.update({f"STREAMCTL_{k.upper()}": str(v) for k, v in record.items() if v is not None})
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
    except OSError as e:
        return f"cannot run it: {e.strerror}"
    try:
        proc.communicate(json.dumps(record).encode(), timeout=HOOK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return f"killed after {HOOK_TIMEOUT:g}s"
    return None if proc.returncode == 0 else f"exited with {proc.returncode}"


def main() -> None:
    import signal

    from streamctl.errors import StreamctlError
    from streamctl.masking import mask_text

    signal.alarm(DEADLINE)  # whatever hangs, the helper is gone by then
    job = json.loads(sys.stdin.buffer.read() or b"{}")
    record, secrets = job.get("record", {}), [s for s in job.get("secrets", []) if s]
    title, body = title_and_body(record)
    results: dict[str, Any] = {}
    urls = job.get("notify", [])
    for i, url in enumerate(urls, 1):
        shown = _shown(url) if len(urls) == 1 else f"notify[{i}] {_shown(url)}"
        results[shown] = _notify(url, title, body)
    if job.get("on_event"):
        results["on_event"] = _hook(job["on_event"], record, secrets)
    sys.stdout.write(json.dumps({k: v or "ok" for k, v in results.items()}))
    sys.stdout.flush()
    failed = {k: mask_text(v, secrets) for k, v in results.items() if v is not None}
    if failed and job.get("log"):
        from pathlib import Path

        from streamctl.output.logs import LOG_KEEP, LOG_MAX_BYTES
        from streamctl.store.rotating import append

        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        lines = "".join(f"{stamp},000 WARNING stream {record.get('stream')}: notify {target}: {why}\n"
                        for target, why in failed.items())  # fmt: skip
        # the log the supervisor writes, rotated as it rotates it (store/rotating.py); if it cannot be
        # written there is nowhere to say so (`notify test` has the result on stdout)
        with contextlib.suppress(OSError, StreamctlError):
            append(Path(job["log"]), lines.encode(), int(job.get("log_max_bytes") or LOG_MAX_BYTES),
                   int(job.get("log_keep") or LOG_KEEP))  # fmt: skip


if __name__ == "__main__":
    main()
