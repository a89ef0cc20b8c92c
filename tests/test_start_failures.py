"""A start that never gets media out says why in one line, in ffmpeg's words, with what to check.

The classifier is tested on stderr lines captured from ffmpeg 5.1.9 (Debian 12) at `-loglevel warning`,
as the supervisor runs it; the CLI tests run the real ffmpeg against a closed port, a name that does not
resolve, a real nginx-rtmp and a silent TCP listener.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamctl.run.ffmpeg import explain_failure
from streamctl.store.lifecycle import StopReason
from streamctl.store.state import StreamState
from tests.conftest import Rtmp, cli, cli_bg, free_port, make, needs_media, read_state, run_cli, wait_for

KEY = "k123456789"
CHECK_KEY = "check the stream key and the application name in the URL"

# (case, url, ffmpeg's stderr lines, expected cause)
CAPTURED = [
    ("closed port", "rtmp://127.0.0.1:36517/live/k123456789", [
        "[tcp @ 0x55f136c6c980] Connection to tcp://127.0.0.1:36517?tcp_nodelay=0 failed: Connection refused",
        "[rtmp @ 0x55f136c6d000] Cannot open connection tcp://127.0.0.1:36517?tcp_nodelay=0",
        "rtmp://127.0.0.1:36517/live/k123456789: Connection refused",
    ], "connection refused by 127.0.0.1:36517: is the ingest running and the port right?"),
    ("closed port, IPv6", "rtmp://[::1]:44745/live/k123456789", [
        "[tcp @ 0x5646a6ab8e80] Connection to tcp://[::1]:44745?tcp_nodelay=0 failed: Connection refused",
        "[rtmp @ 0x5646a6ae34c0] Cannot open connection tcp://[::1]:44745?tcp_nodelay=0",
        "rtmp://[::1]:44745/live/k123456789: Connection refused",
    ], "connection refused by [::1]:44745: is the ingest running and the port right?"),
    ("no such host", "rtmp://nosuch.invalid/live/k123456789", [
        "[tcp @ 0x55b2be191980] Failed to resolve hostname nosuch.invalid: Name or service not known",
        "[rtmp @ 0x55b2be192000] Cannot open connection tcp://nosuch.invalid:1935?tcp_nodelay=0",
        "rtmp://nosuch.invalid/live/k123456789: Input/output error",
    ], "no such host nosuch.invalid: check the URL's host name"),
    ("no such host, rtmps", "rtmps://nosuch.invalid/live/k123456789", [
        "[tcp @ 0x558c1439f2c0] Failed to resolve hostname nosuch.invalid: Name or service not known",
        "[rtmps @ 0x558c143a54c0] Cannot open connection tls://nosuch.invalid:443",
        "rtmps://nosuch.invalid/live/k123456789: Input/output error",
    ], "no such host nosuch.invalid: check the URL's host name"),
    ("nginx-rtmp, unknown application", "rtmp://127.0.0.1:47085/wrongapp/k123456789", [
        "rtmp://127.0.0.1:47085/wrongapp/k123456789: Input/output error",
    ], f"the ingest refused the stream: {CHECK_KEY}"),
    ("nginx-rtmp, second publisher on the key", "rtmp://127.0.0.1:47085/live/k123456789", [
        "[rtmp @ 0x56179d1454c0] Server error: Already publishing",
        "rtmp://127.0.0.1:47085/live/k123456789: Operation not permitted",
    ], "the ingest says the stream is already publishing (another encoder uses this key)"),
    ("no scheme", "a.rtmp.youtube.com/live2/k123456789", [
        "[NULL @ 0x55f989c7fd40] Unable to find a suitable output format for 'a.rtmp.youtube.com/live2/k123456789'",
        "a.rtmp.youtube.com/live2/k123456789: Invalid argument",
    ], "unsupported URL a.rtmp.youtube.com/live2/****: it needs rtmp://, rtmps:// or srt://"),
    ("connect timed out (SYN dropped)", "rtmp://127.0.0.1:42957/live/k123456789", [
        "[tcp @ 0x55abc0611e80] Connection to tcp://127.0.0.1:42957?tcp_nodelay=0 failed: Connection timed out",
        "[rtmp @ 0x55abc063c4c0] Cannot open connection tcp://127.0.0.1:42957?tcp_nodelay=0",
        "rtmp://127.0.0.1:42957/live/k123456789: Connection timed out",
    ], "timed out connecting to 127.0.0.1:42957: is the host reachable and the port right?"),
    ("not an RTMP server", "rtmp://127.0.0.1:38219/live/k123456789", [
        "[rtmp @ 0x5607bcb004c0] Cannot read RTMP handshake response",
        "rtmp://127.0.0.1:38219/live/k123456789: Connection reset by peer",
    ], "127.0.0.1:38219 took the connection but did not answer as an RTMP server: is the port right?"),
    ("rtmps to a server that answers no TLS", "rtmps://127.0.0.1:34743/live/k123456789", [
        "[tls @ 0x556ef2cace80] An unexpected TLS packet was received.",
        "[rtmps @ 0x556ef2cd74c0] Cannot open connection tls://127.0.0.1:34743",
        "rtmps://127.0.0.1:34743/live/k123456789: Input/output error",
    ], "TLS handshake with 127.0.0.1:34743 failed (An unexpected TLS packet was received): is it an rtmps:// ingest and the port right (RTMPS is usually 443)?"),
    ("rtmps, the server hangs up", "rtmps://127.0.0.1:34161/live/k123456789", [
        "[tls @ 0x5558a329fe80] Error in the pull function.",
        "[tls @ 0x5558a329fe80] IO error: End of file",
        "[rtmps @ 0x5558a32ca4c0] Cannot open connection tls://127.0.0.1:34161",
        "rtmps://127.0.0.1:34161/live/k123456789: End of file",
    ], "TLS handshake with 127.0.0.1:34161 failed (IO error: End of file): is it an rtmps:// ingest and the port right (RTMPS is usually 443)?"),
    ("rtmps, -tls_verify 1 and a self-signed certificate", "rtmps://127.0.0.1:44697/live/k123456789", [
        "[tls @ 0x556c0896c080] Peer certificate failed verification",
        "[rtmps @ 0x556c08992300] Cannot open connection tls://127.0.0.1:44697",
        "rtmps://127.0.0.1:44697/live/k123456789: Input/output error",
    ], "the TLS certificate of 127.0.0.1:44697 failed verification (Peer certificate failed verification): check the host"),
    ("srt, nothing listening", "srt://127.0.0.1:38669?streamid=k123456789", [
        "[srt @ 0x56372c1c1000] Connection to srt://127.0.0.1:38669 failed: Input/output error",
        "srt://127.0.0.1:38669: Input/output error",
    ], "no answer from 127.0.0.1:38669 (Input/output error): is the SRT ingest running and the port right?"),
    ("two destinations (tee), both failing", "rtmp://127.0.0.1:35605/live/k123456789", [
        "[tcp @ 0x5621dbf50d00] Connection to tcp://127.0.0.1:35605?tcp_nodelay=0 failed: Connection refused",
        "[rtmp @ 0x5621dbf1afc0] Cannot open connection tcp://127.0.0.1:35605?tcp_nodelay=0",
        "[tee @ 0x5621dbf1ee00] Slave '[f=flv:flvflags=no_duration_filesize:onfail=ignore]rtmp://127.0.0.1:35605/live/k123456789': error opening: Connection refused",
        "[tee @ 0x5621dbf1ee00] Slave muxer #0 failed: Connection refused, continuing with 1/2 slaves.",
        "[tcp @ 0x5621dbf117c0] Failed to resolve hostname nosuch.invalid: Name or service not known",
        "[rtmp @ 0x5621dbf50f40] Cannot open connection tcp://nosuch.invalid:1935?tcp_nodelay=0",
        "[tee @ 0x5621dbf1ee00] Slave '[f=flv:flvflags=no_duration_filesize:onfail=ignore]rtmp://nosuch.invalid/live/otherkey': error opening: Input/output error",
        "[tee @ 0x5621dbf1ee00] All tee outputs failed.",
        "Could not write header for output file #0 (incorrect codec parameters ?): Input/output error",
        "Error initializing output stream 0:1 -- ",
    ], "connection refused by 127.0.0.1:35605: is the ingest running and the port right?; "
       "no such host nosuch.invalid: check the URL's host name"),
    ("copy of VP9 to FLV: unknown, ffmpeg's own line", "rtmp://127.0.0.1:35075/live/k123456789", [
        "[flv @ 0x55c32ecb1c00] Video codec vp9 not compatible with flv",
        "Could not write header for output file #0 (incorrect codec parameters ?): Function not implemented",
        "Error initializing output stream 0:0 -- ",
    ], "ffmpeg: Video codec vp9 not compatible with flv; see `streamctl logs s`"),
]  # fmt: skip

# Stopped by the supervisor for no progress (stall_timeout): what ffmpeg says as it is interrupted.
INTERRUPTED = [
    ("accepts TCP, never answers RTMP", "rtmp://127.0.0.1:55137/live/k123456789", [
        "[rtmp @ 0x55b0fdb6f4c0] Cannot read RTMP handshake response",
        "rtmp://127.0.0.1:55137/live/k123456789: Immediate exit requested",
    ], "127.0.0.1:55137 took the connection but did not answer as an RTMP server: is the port right?"),
    ("TCP connect hangs", "rtmp://127.0.0.1:55061/live/k123456789", [
        "[rtmp @ 0x562ec1c3b4c0] Cannot open connection tcp://127.0.0.1:55061?tcp_nodelay=0",
        "rtmp://127.0.0.1:55061/live/k123456789: Immediate exit requested",
    ], "timed out connecting to 127.0.0.1:55061: no answer in 15 s; is the ingest running and the port right?"),
    ("rtmps to plain nginx-rtmp: TLS handshake hangs", "rtmps://127.0.0.1:37445/live/k123456789", [
        "[rtmps @ 0x55a3308b44c0] Cannot open connection tls://127.0.0.1:37445",
        "rtmps://127.0.0.1:37445/live/k123456789: Input/output error",
    ], "TLS handshake with 127.0.0.1:37445 timed out (no answer in 15 s): is it an rtmps:// ingest and the port right (RTMPS is usually 443)?"),
    ("nothing said at all", "rtmp://a.rtmp.youtube.com/live2/k123456789", [],
     "timed out connecting to a.rtmp.youtube.com:1935: no answer in 15 s; is the ingest running and the port right?"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "lines", "cause"), [c[1:] for c in CAPTURED], ids=[c[0] for c in CAPTURED])
def test_cause_of_a_failed_start(url: str, lines: list[str], cause: str) -> None:
    assert explain_failure("s", url, lines, [KEY], rc=1) == cause


@pytest.mark.parametrize(
    ("url", "lines", "cause"), [c[1:] for c in INTERRUPTED], ids=[c[0] for c in INTERRUPTED]
)
def test_cause_of_a_start_stopped_for_no_progress(url: str, lines: list[str], cause: str) -> None:
    assert explain_failure("s", url, lines, [KEY], stalled_after=15.0, rc=255) == cause


def test_after_media_flowed_the_cause_is_ffmpegs_last_line_masked() -> None:
    """nginx killed 2 s into a stream: no 'the ingest refused', and the key (in ffmpeg's line) is masked."""
    lines = [
        "av_interleaved_write_frame(): Broken pipe",
        "Error writing trailer of rtmp://127.0.0.1:35075/live/k123456789: Broken pipe",
        "Error closing file rtmp://127.0.0.1:35075/live/k123456789: Broken pipe",
    ]
    cause = explain_failure("s", "rtmp://127.0.0.1:35075/live/k123456789", lines, [KEY], streamed=True, rc=1)
    assert (
        cause
        == "ffmpeg: Error writing trailer of rtmp://127.0.0.1:35075/live/****: Broken pipe; see `streamctl logs s`"
    )


def test_without_a_message_the_exit_code_and_the_log() -> None:
    assert explain_failure("s", "rtmp://h/live/k", [], ["k"], rc=-11) == (
        "ffmpeg exited with code -11 and no message; see `streamctl logs s`"
    )


def test_a_key_written_into_the_url_is_masked_too() -> None:
    url = "rtmp://127.0.0.1:1935/app/inline-secret"
    from streamctl.masking import url_secrets

    cause = explain_failure(
        "s", url, ["[flv @ 0x1] weird: rtmp://127.0.0.1:1935/app/inline-secret"], url_secrets(url)
    )
    assert cause == "ffmpeg: weird: rtmp://127.0.0.1:1935/app/****; see `streamctl logs s`"


def test_old_state_files_load_without_last_error() -> None:
    assert StreamState.from_dict({"name": "old", "schema": 1}).last_error is None


def test_no_cause_on_the_outcome_once_a_session_streamed(tmp_path: Path) -> None:
    """A stream that ran, then failed for good, is a flaky ingest, not a setup problem: no one-line cause
    for the terminal; the state still says why the last session failed."""
    sup, *_, store = make(tmp_path, 3600, [(30.0, 1), (0.0, 1), (0.0, 1)], retries=2, restart_delay=1.0)
    out = sup.run()
    st = store.load("unit")
    assert (out.reason, out.cause) == (StopReason.RETRIES_EXHAUSTED, None)
    assert (
        st is not None
        and st.last_error == "ffmpeg exited with code 1 and no message; see `streamctl logs unit`"
    )


# ---- the real CLI, the real ffmpeg -------------------------------------------------------------------
def failing_start(
    name: str, media: Path, url: str, *extra: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return cli("start", name, "-q", "--input", str(media), "--url", url, "--key", KEY, "--duration", "30",
               "--retries", "1", "--restart-delay", "0.2", *extra, timeout=timeout)  # fmt: skip


def assert_recorded(home: Path, name: str, r: subprocess.CompletedProcess[str], cause: str) -> None:
    """Exit 1, the one line, and the same cause in the state file and in `status --json`; no key anywhere."""
    assert (r.returncode, r.stderr, r.stdout) == (1, f"streamctl: error: {name}: {cause}\n", "")
    st = read_state(home, name)
    assert (st["status"], st["stop_reason"], st["last_error"]) == ("failed", "retries_exhausted", cause)
    status = run_cli("status", name, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)[0]["last_error"] == cause
    log = (home / "state" / "logs" / f"{name}.log").read_text()
    assert f"stream {name}: ffmpeg failed: {cause}" in log
    for text in (r.stderr, (home / "state" / f"{name}.json").read_text(), log, status.stdout):
        assert KEY not in text


@pytest.mark.e2e
@needs_media
def test_closed_port(home: Path, media: Path) -> None:
    port = free_port()
    r = failing_start("s", media, f"rtmp://127.0.0.1:{port}/live")
    assert_recorded(
        home, "s", r, f"connection refused by 127.0.0.1:{port}: is the ingest running and the port right?"
    )
    assert read_state(home, "s")["session_count"] == 2  # --retries 1: tried twice


@pytest.mark.e2e
@needs_media
def test_host_that_does_not_resolve(home: Path, media: Path) -> None:
    r = failing_start("s", media, "rtmp://nosuch.invalid/live")
    assert_recorded(home, "s", r, "no such host nosuch.invalid: check the URL's host name")


@pytest.mark.e2e
@needs_media
def test_wrong_application_on_nginx_rtmp(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    r = failing_start("s", media, f"rtmp://127.0.0.1:{no_leftovers.port}/wrongapp")
    assert_recorded(home, "s", r, f"the ingest refused the stream: {CHECK_KEY}")
    assert no_leftovers.recordings() == []


@pytest.mark.e2e
@needs_media
def test_a_second_encoder_on_the_same_key(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    first = cli_bg("start", "first", "-q", "--input", str(media), "--url", no_leftovers.url, "--key", KEY,
                   "--duration", "30")  # fmt: skip
    try:
        wait_for(lambda: read_state(home, "first")["status"] == "live")
        r = failing_start("second", media, no_leftovers.url)
    finally:
        assert run_cli("stop", "first").returncode == 0
        first.communicate(timeout=30)
    assert_recorded(
        home, "second", r, "the ingest says the stream is already publishing (another encoder uses this key)"
    )
    assert first.returncode == 0 and read_state(home, "first")["last_error"] is None


@pytest.mark.e2e
@needs_media
def test_a_silent_ingest_times_out(home: Path, media: Path) -> None:
    """A listener that takes the TCP connection and never says a word: replaced after --stall-timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshakes; nobody ever reads
        port = listener.getsockname()[1]
        r = failing_start("s", media, f"rtmp://127.0.0.1:{port}/live", "--retries", "0", "--stall-timeout", "1",
                          "--grace", "1")  # fmt: skip
    cause = f"127.0.0.1:{port} took the connection but did not answer as an RTMP server: is the port right?"
    assert (r.returncode, r.stderr) == (1, f"streamctl: error: s: {cause}\n")
    assert read_state(home, "s")["last_error"] == cause


@pytest.mark.e2e
@needs_media
def test_going_live_clears_last_error(home: Path, media: Path, no_leftovers: Rtmp) -> None:
    failing_start("s", media, f"rtmp://127.0.0.1:{no_leftovers.port}/wrongapp")
    assert read_state(home, "s")["last_error"] is not None
    r = cli(
        "start", "s", "-q", "--input", str(media), "--url", no_leftovers.url, "--key", KEY, "--duration", "1"
    )
    assert (r.returncode, r.stderr) == (0, "")
    st = read_state(home, "s")
    assert (st["status"], st["stop_reason"], st["last_error"]) == ("offline", "duration_reached", None)


# ---- logs to a file: one line a record ----------------------------------------------------------------
@pytest.mark.e2e
@needs_media
def test_log_to_a_redirected_stderr_is_not_wrapped(
    home: Path, media: Path, no_leftovers: Rtmp, tmp_path: Path
) -> None:
    out = tmp_path / "console.log"
    with out.open("w") as f:
        r = subprocess.run(
            [sys.executable, "-m", "streamctl", "start", "s", "--input", str(media), "--url", no_leftovers.url,
             "--key", KEY, "--duration", "1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f, timeout=60,
        )  # fmt: skip
    assert r.returncode == 0
    lines = out.read_text().splitlines()
    assert [ln for ln in lines if ln != ln.rstrip()] == []
    launch = [ln for ln in lines if " launched with -t " in ln]
    assert len(launch) == 1 and len(launch[0]) > 200
    assert " INFO stream s: ffmpeg pid " in launch[0]
    assert launch[0].endswith(
        f" -flvflags no_duration_filesize rtmp://127.0.0.1:{no_leftovers.port}/live/****"
    )
    assert any(ln.endswith(" INFO stream s: live") for ln in lines)
    assert KEY not in out.read_text()
