"""Notifications with real parts: apprise's JSON target posting to a real HTTP server on 127.0.0.1, a real
hook script, real ffmpeg and nginx-rtmp for a crash; a webhook that never answers and a hook that never
exits, during which the budget still ends on time; the key in no payload, hook environment or message."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    Rtmp,
    cli,
    cli_bg,
    free_port,
    live_ffmpeg_pid,
    read_state,
    run_cli,
    wait_for,
)

KEY = "crash-streamkey"


class Receiver:
    """A webhook receiver: what apprise posted, or, hanging, nothing answered at all."""

    def __init__(self, hang: bool = False) -> None:
        self.posts: list[dict[str, object]] = []
        self.hang = hang
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append(json.loads(body))
                if outer.hang:
                    time.sleep(60)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def add_plain(home: Path, input_file: Path) -> Path:
    """Stream t, configured with no targets; its config file."""
    r = run_cli(
        "add", "t", "-i", str(input_file), "--url", "rtmp://h/live", "--key", "t-secret-key", "--hours", "1"
    )
    assert r.returncode == 0, r.stderr
    return home / "streamctl.toml"


def hook_script(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "hook.sh"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return p


def configure(home: Path, media: Path, rtmp: Rtmp, name: str, extra: str) -> None:
    r = cli(
        "add", name, "-i", str(media), "--url", rtmp.url, "--key", f"{name}-streamkey", "--duration", "8s"
    )
    assert r.returncode == 0, r.stderr
    config = home / "streamctl.toml"
    config.write_text(config.read_text() + extra)


@pytest.mark.e2e
def test_a_crash_is_told_to_a_webhook_and_a_hook_once_per_change_without_the_key(
    home: Path, media: Path, no_leftovers: Rtmp, receiver: Receiver, tmp_path: Path
) -> None:
    out = tmp_path / "hook-out"
    hook = hook_script(tmp_path, f'{{ echo "$STREAMCTL_EVENT"; env; cat; echo; }} >> {out}\n')
    configure(home, media, no_leftovers, "crash", f'notify = ["{receiver.url}"]\non_event = ["{hook}"]\n')
    r = run_cli("check", "crash")
    assert r.returncode == 0, r.stderr  # the notification keys are valid config, the ingest answers
    sup = cli_bg("start", "crash", "-q", "--restart-delay", "1")
    pid = live_ffmpeg_pid(home, "crash")
    time.sleep(3)
    os.kill(pid, signal.SIGSEGV)
    _, err = sup.communicate(timeout=40)
    assert sup.returncode == 0, err
    want = ["live", "ending soon", "restarted", "recovered", "ended"]
    wait_for(lambda: len(receiver.posts) >= len(want), timeout=30)
    time.sleep(1)  # nothing more comes: one message per change
    titles = [str(p["title"]) for p in receiver.posts]
    assert sorted(titles) == sorted(f"streamctl: crash {w}" for w in want)
    restarted = next(p for p in receiver.posts if "restarted" in str(p["title"]))
    assert "why=exited with -11" in str(restarted["message"])
    wait_for(lambda: out.exists() and out.read_text().count("STREAMCTL_EVENT=") >= len(want), timeout=30)
    text = out.read_text()
    assert sorted(line for line in text.splitlines() if line in {"live", "ending_soon", "restarted",
                  "recovered", "ended"}) == sorted(["live", "ending_soon", "restarted", "recovered", "ended"])  # fmt: skip
    assert '"event": "ended"' in text and "STREAMCTL_REASON=duration_reached" in text
    everything = json.dumps(receiver.posts) + text + (home / "state" / "logs" / "crash.log").read_text()
    assert KEY not in everything and receiver.url.split("//")[1] not in text


@pytest.mark.e2e
def test_a_hanging_webhook_and_a_hook_that_never_exits_change_no_timing(
    home: Path, media: Path, no_leftovers: Rtmp, tmp_path: Path
) -> None:
    hung = Receiver(hang=True)
    try:
        hook = hook_script(tmp_path, "sleep 1000\n")
        configure(home, media, no_leftovers, "slowtell", f'notify = ["{hung.url}"]\non_event = ["{hook}"]\n')
        t0 = time.monotonic()
        r = cli("start", "slowtell", "-q", timeout=60)
        wall = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        st = read_state(home, "slowtell")
        print(f"FIGURE hanging targets: an 8 s budget ended after {wall:.2f} s of wall time")
        assert st["stop_reason"] == "duration_reached" and abs(st["runtime_seconds"] - 8.0) <= 0.1
        assert wall < 8.0 + 6.0  # start-up and the end, as without targets; the targets add nothing
        assert abs(sum(no_leftovers.durations("slowtell-streamkey")) - 8.0) <= 0.5
        wait_for(lambda: hung.posts, timeout=20)  # it was tried all the same
    finally:
        hung.close()
        for p in psutil.process_iter(["cmdline"]):  # the hook that never exits (its helper kills it at 30 s)
            if str(tmp_path / "hook.sh") in " ".join(p.info["cmdline"] or []):
                with contextlib.suppress(psutil.Error):
                    p.kill()


def test_notify_test_says_which_target_got_it(
    home: Path, input_file: Path, receiver: Receiver, tmp_path: Path
) -> None:
    config = add_plain(home, input_file)
    base = config.read_text()
    r = run_cli("notify", "test", "t")
    assert r.returncode == 2 and "has no targets" in r.stderr
    out = tmp_path / "got"
    hook = hook_script(tmp_path, f"cat > {out}\n")
    dead = f"json://127.0.0.1:{free_port()}/nothing-listens"
    config.write_text(base + f'notify = ["{receiver.url}", "{dead}"]\non_event = ["{hook}"]\n')
    r = run_cli("notify", "test", "t")
    assert r.returncode == 1, r.stderr  # one target did not get it
    assert "notify[1] json://***: ok" in r.stdout and "notify[2] json://***: not delivered" in r.stdout
    assert "on_event: ok" in r.stdout and json.loads(out.read_text())["event"] == "test"
    assert [p["title"] for p in receiver.posts] == ["streamctl: t test"]
    assert "nothing-listens" not in r.stdout + r.stderr
    log = (home / "state" / "logs" / "t.log").read_text()
    assert "notify notify[2] json://***: not delivered" in log and "nothing-listens" not in log


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('notify = ["not a url"]\n', "notify: each entry must be an apprise URL"),
        ('on_event = ["/nonexistent/alert"]\n', "on_event: its command is not an executable file"),
        ('notify_events = ["gaveup"]\n', "'gaveup' is not an event"),
        ("notify = 5\n", "notify must be a list of apprise URLs"),
        ('notify = "tgram://TOKEN123/chat"\n', "notify must be a list of apprise URLs like"),
        ('on_event = "/bin/alert --token TOKEN123"\n', "on_event must be a command as a list"),
        ('on_event = ["bin/alert"]\n', "give the command's full path"),
    ],
)
def test_bad_notification_keys_are_one_line_exit_2(
    home: Path, input_file: Path, extra: str, message: str
) -> None:
    config = add_plain(home, input_file)
    config.write_text(config.read_text() + extra)
    r = run_cli("check", "t")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "/nonexistent/alert" not in r.stderr and "TOKEN123" not in r.stderr and "chat" not in r.stderr
