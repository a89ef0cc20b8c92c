"""The monitor page of `streamctl serve` in a real browser (Debian's Chromium through Playwright), against a
real server and real streams (ffmpeg into nginx-rtmp): what a person sees on it, read from the DOM.

Chromium is required, not optional: a missing /usr/bin/chromium fails these tests (CI installs it).
STREAMCTL_SCREENSHOTS=FOLDER also writes the README's pictures there (monitor.png, monitor-phone.png,
status.png)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.conftest import Rtmp, free_port, live_ffmpeg_pid, needs_media, read_state, run_cli, wait_for
from tests.serving import Served, serve

CHROMIUM = "/usr/bin/chromium"
WAIT = 30_000  # ms: every wait on the page (a loaded 2-core CI box)
GREEN = "rgb(26, 127, 55)"  # --live
AMBER = "rgb(191, 135, 0)"  # --backoff
RED = "rgb(207, 34, 46)"  # --failed
GREY = "rgb(110, 119, 129)"  # --offline
DESKTOP = {"width": 1100, "height": 700}
PHONE = {"width": 390, "height": 844}


# ---- helpers --------------------------------------------------------------------------------------
@contextlib.contextmanager
def chromium(tmp_path: Path) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, with a fresh profile; no fallback to anything else."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is needed for the page tests (apt-get install chromium)"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            viewport=DESKTOP,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            yield ctx
        finally:
            ctx.close()


def open_page(ctx: BrowserContext, served: Served) -> Page:
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    page.set_default_timeout(WAIT)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.script_errors = errors  # type: ignore[attr-defined]
    page.goto(served.url + "/")
    return page


def script_errors(page: Page) -> list[str]:
    """The page's uncaught errors and console errors, less the failed loads a stopped server causes."""
    return [e for e in page.script_errors if "Failed to load resource" not in e and "ERR_" not in e]  # type: ignore[attr-defined]


def log_in(page: Page, token: str) -> None:
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", token)
    page.click("#login button[type=submit]")


def card(page: Page, name: str) -> Any:
    return page.locator(f'article.card[data-name="{name}"]')


def field(page: Page, name: str, key: str) -> Any:
    return card(page, name).locator(f'[data-field="{key}"]')


def press(page: Page, name: str, action: str, accept: bool = True) -> str:
    """Press a card's button and answer its confirm dialog; the dialog's question."""
    asked: list[str] = []

    def answer(d: Any) -> None:
        asked.append(d.message)
        d.accept() if accept else d.dismiss()

    page.once("dialog", answer)
    card(page, name).locator(f'[data-action="{action}"]').click()
    wait_for(lambda: asked, timeout=10)
    return asked[0]


def seconds(text: str) -> float:
    """The page's duration text back in seconds: `12.3s`, `1m05s`, `1h02m03s`."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)s", text.strip())
    assert m, f"not a duration: {text!r}"
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s)


def colours(page: Page, name: str) -> tuple[str, str]:
    """A card's left border colour and its status badge's background, as the browser paints them."""
    got = card(page, name).evaluate(
        "c => [getComputedStyle(c).borderLeftColor, getComputedStyle(c.querySelector('.badge')).backgroundColor]"
    )
    return (got[0], got[1])


def fits_width(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def add(name: str, media: Path | str, url: str, budget: str, *extra: str) -> None:
    r = run_cli("add", name, "-i", str(media), "--url", url, "--key", f"{name}-streamkey", "--duration", budget,
                *extra)  # fmt: skip
    assert r.returncode == 0, r.stderr


def append_config(home: Path, text: str) -> None:
    config = home / "streamctl.toml"
    config.write_text(config.read_text() + text)


def check_png(path: Path, width: int | None = None, low: int = 5_000, high: int = 600_000) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    w, h = struct.unpack(">II", data[16:24])
    assert low <= len(data) <= high, f"{path}: {len(data)} bytes"
    assert w >= 300 and h >= 150, (w, h)
    if width is not None:
        assert w == width, (path, w)


def screenshot_dir() -> Path | None:
    folder = os.environ.get("STREAMCTL_SCREENSHOTS")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def shoot(page: Page, tmp_path: Path, name: str) -> Path:
    """A PNG of the viewport in TMP_PATH (checked), copied to STREAMCTL_SCREENSHOTS when that is set."""
    out = tmp_path / name
    page.screenshot(path=str(out))
    check_png(out, width=page.viewport_size["width"] if page.viewport_size else None)
    if (folder := screenshot_dir()) is not None:
        (folder / name).write_bytes(out.read_bytes())
    return out


def status_in_a_terminal(home: Path, columns: int = 100) -> str:
    """`streamctl status` as a terminal gets it: on a pseudo-terminal (so it colours and fits, as for a
    person), COLUMNS wide; its output with the ANSI codes."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(STREAMCTL_HOME=str(home), COLUMNS=str(columns), TERM="xterm-256color")
    proc = subprocess.Popen([sys.executable, "-m", "streamctl", "status"], stdin=slave, stdout=slave,
                            stderr=slave, env=env, close_fds=True)  # fmt: skip
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


def terminal_html(ansi: str, columns: int) -> str:
    from rich.console import Console
    from rich.terminal_theme import MONOKAI
    from rich.text import Text

    console = Console(record=True, width=columns, file=open(os.devnull, "w"), color_system="truecolor")  # noqa: SIM115
    console.print(Text.from_ansi(ansi.rstrip("\n")), overflow="ignore", no_wrap=True, crop=False)
    page = (  # export_html's str.format template: the CSS's braces doubled
        "<!doctype html><html><head><meta charset='utf-8'><style>"
        "body{{margin:0;background:#1e1f1c}} .term{{display:inline-block;margin:0;padding:14px 18px;"
        "background:{background};color:{foreground};border-radius:8px}}"
        "pre{{margin:0;font:14px/1.35 'DejaVu Sans Mono',monospace}}"
        "</style></head><body><div class='term'><pre>$ streamctl status\n{code}</pre></div></body></html>"
    )
    return console.export_html(theme=MONOKAI, inline_styles=True, code_format=page)


# ---- login, and a lost server --------------------------------------------------------------------
@pytest.mark.e2e
def test_the_page_asks_for_the_token_refuses_a_wrong_one_and_says_when_the_server_is_gone(
    home: Path, tmp_path: Path
) -> None:
    add("studio", "testsrc", "rtmp://127.0.0.1:9/live", "2h", "--input-format", "lavfi")
    add("lobby", "testsrc", "rtmp://127.0.0.1:9/live", "4m", "--input-format", "lavfi")
    served = serve(home)
    stopped = False
    try:
        with chromium(tmp_path) as ctx:
            page = open_page(ctx, served)
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("article.card")).to_have_count(0)

            # a wrong token: the server's word under the form, no cards, still asked
            log_in(page, "not-the-token-at-all")
            expect(page.locator("#login-error")).to_have_text("wrong token")
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("article.card")).to_have_count(0)
            expect(page.locator("#logout")).to_be_hidden()

            # the right one: the cards, as the config has them, and the form gone
            log_in(page, served.token)
            expect(page.locator("article.card")).to_have_count(2)
            expect(page.locator("#login")).to_be_hidden()
            expect(page.locator("#login-error")).to_have_text("")
            expect(card(page, "studio")).to_have_attribute("data-status", "offline")
            expect(field(page, "studio", "budget")).to_have_text("2h00m00s")
            expect(field(page, "lobby", "budget")).to_have_text("4m00s")
            expect(field(page, "lobby", "runtime")).to_have_text("0.0s")
            expect(field(page, "lobby", "warning")).to_be_hidden()  # not running: nothing is ending
            assert colours(page, "studio") == (GREY, GREY)
            expect(page.locator("#conn")).to_have_class(re.compile(r"\bok\b"))
            expect(page.locator("#conn")).to_have_text("connected")  # the connection's word, not a status
            # nothing runs: Stop is off, Start on, and Reset timer off (the timer is at zero already)
            expect(card(page, "studio").locator('[data-action="stop"]')).to_be_disabled()
            expect(card(page, "studio").locator('[data-action="start"]')).to_be_enabled()
            expect(card(page, "studio").locator('[data-action="reset-runtime"]')).to_be_disabled()

            # the cookie keeps the session: a reload shows the cards without asking again
            page.reload()
            expect(page.locator("article.card")).to_have_count(2)
            expect(page.locator("#login")).to_be_hidden()
            expect(page.locator("#lost")).to_be_hidden()

            # the server goes away: the banner says so (the event stream breaks, or goes quiet)
            assert served.stop() == 0, served.output()
            stopped = True
            expect(page.locator("#lost")).to_be_visible(timeout=15_000)
            expect(page.locator("#conn")).to_have_text("connection lost")
            assert script_errors(page) == []
    finally:
        if not stopped:
            assert served.stop() == 0, served.output()


# ---- a day on the air -------------------------------------------------------------------------------
@needs_media
@pytest.mark.e2e
def test_live_streams_on_the_page_green_counting_a_crash_stop_start_reset_and_a_phone(
    home: Path, media: Path, no_leftovers: Rtmp, tmp_path: Path
) -> None:
    rtmp = no_leftovers
    add("studio", media, rtmp.url, "2h")
    append_config(home, "restart_delay = 3\nretries = 5\n")  # a crash is seen in backoff, 3 s
    add("lobby", media, rtmp.url, "4m")  # under 5 minutes: the warning
    add("archive", media, rtmp.url, "30m")  # never started: offline
    add("backup", media, f"rtmp://127.0.0.1:{free_port()}/live", "1h")  # nothing listens: it fails
    append_config(home, "retries = 0\n")
    served = serve(home)
    names = ("studio", "lobby", "backup")
    try:
        # a real failure first: ffmpeg refused by the ingest, no retries left
        failed = served.post("/api/streams/backup/start")
        assert failed.status in (202, 502), failed.text
        wait_for(lambda: read_state(home, "backup")["status"] == "failed", timeout=60)
        for name in ("studio", "lobby"):
            r = served.post(f"/api/streams/{name}/start")
            assert r.status == 202, r.text

        with chromium(tmp_path) as ctx:
            page = open_page(ctx, served)
            log_in(page, served.token)
            expect(page.locator("article.card")).to_have_count(4)

            # live is green, and the runtime counts on the page
            for name in ("studio", "lobby"):
                expect(card(page, name)).to_have_attribute("data-status", "live")
                expect(field(page, name, "status")).to_have_text("live")
            assert colours(page, "studio") == (GREEN, GREEN)
            first = seconds(field(page, "studio", "runtime").inner_text())
            time.sleep(2.2)  # two of the page's one-second ticks (the check is the comparison below)
            later = seconds(field(page, "studio", "runtime").inner_text())
            assert later > first + 0.5, (first, later)
            assert seconds(field(page, "studio", "remaining").inner_text()) < 7200 - later + 5

            # the warning on the short one only
            expect(field(page, "lobby", "warning")).to_be_visible()
            expect(field(page, "lobby", "warning")).to_have_text("Under 5 minutes left")
            expect(field(page, "studio", "warning")).to_be_hidden()

            # the failed one in red, with the reason and the ingest's error
            expect(card(page, "backup")).to_have_attribute("data-status", "failed")
            assert colours(page, "backup") == (RED, RED)
            expect(field(page, "backup", "stop_reason")).to_have_text("retries_exhausted")
            expect(field(page, "backup", "last_error")).to_contain_text("last error: ")
            expect(card(page, "archive")).to_have_attribute("data-status", "offline")
            expect(field(page, "archive", "stop_reason")).to_have_text("-")
            assert "backup-streamkey" not in page.content()

            # the pictures: live, live ending soon, failed, offline
            expect(field(page, "lobby", "runtime")).not_to_have_text("0.0s")
            shoot(page, tmp_path, "monitor.png")
            ansi = status_in_a_terminal(home)
            assert "\x1b[32m" in ansi and "\x1b[31m" in ansi, ansi  # live green, failed red
            term = ctx.new_page()
            term.set_viewport_size({"width": 900, "height": 240})
            term.set_content(terminal_html(ansi, 100))
            out = tmp_path / "status.png"
            term.locator(".term").screenshot(path=str(out))
            check_png(out, low=3_000)
            assert "studio" in term.inner_text("pre") and "failed" in term.inner_text("pre")
            if (folder := screenshot_dir()) is not None:
                (folder / "status.png").write_bytes(out.read_bytes())
            term.close()

            # on a phone: no sideways scrolling, the buttons on screen
            page.set_viewport_size(PHONE)
            page.wait_for_function("window.innerWidth === 390")
            assert fits_width(page), page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            for name in ("studio", "lobby", "archive", "backup"):
                box = card(page, name).bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (name, box)
            buttons = card(page, "studio").locator("button[data-action]")
            expect(buttons).to_have_count(3)
            for i in range(3):
                b = buttons.nth(i)
                b.scroll_into_view_if_needed()
                expect(b).to_be_visible()
                box = b.bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
                assert box["height"] >= 36, box  # a finger's size
            page.evaluate("window.scrollTo(0, 0)")
            shoot(page, tmp_path, "monitor-phone.png")
            page.set_viewport_size(DESKTOP)

            # a crash: amber while it waits, then live again with one restart, the runtime kept
            before = seconds(field(page, "studio", "runtime").inner_text())
            os.kill(live_ffmpeg_pid(home, "studio"), signal.SIGSEGV)
            expect(card(page, "studio")).to_have_attribute("data-status", "backoff")
            assert colours(page, "studio") == (AMBER, AMBER)
            expect(field(page, "studio", "restarts")).to_have_text("1")  # counted as it fails
            expect(card(page, "studio")).to_have_attribute("data-status", "live")
            assert colours(page, "studio") == (GREEN, GREEN)
            expect(field(page, "studio", "restarts")).to_have_text("1")
            assert seconds(field(page, "studio", "runtime").inner_text()) >= before - 1.5
            restarted = page.locator("#events li").filter(has_text="restarted")
            expect(restarted).to_have_count(1)
            expect(restarted).to_contain_text("studio")
            assert re.search(r"delay=\d+(\.\d)?s ", restarted.inner_text()), (
                restarted.inner_text()
            )  # not 3.2190835373668216

            # Stop, confirmed: offline, stopped; Start, confirmed: live again
            asked = press(page, "studio", "stop")
            assert "Stop studio?" in asked
            expect(card(page, "studio")).to_have_attribute("data-status", "offline")
            expect(field(page, "studio", "stop_reason")).to_have_text("stopped")
            expect(field(page, "studio", "said")).to_have_text("stopped")
            assert colours(page, "studio") == (GREY, GREY)
            assert read_state(home, "studio")["status"] == "offline"
            assert "Start studio?" in press(page, "studio", "start")
            expect(card(page, "studio")).to_have_attribute("data-status", "live")
            expect(field(page, "studio", "said")).to_have_text(re.compile(r"^started"))

            # Reset timer on the stopped stream: dismissed changes nothing; accepted puts it at zero
            press(page, "studio", "stop")
            expect(card(page, "studio")).to_have_attribute("data-status", "offline")
            reset = card(page, "studio").locator('[data-action="reset-runtime"]')
            expect(reset).to_be_enabled()
            kept = read_state(home, "studio")["runtime_seconds"]
            shown = field(page, "studio", "runtime").inner_text()
            assert kept > 1 and seconds(shown) > 1
            assert "Reset the timer of studio" in press(page, "studio", "reset-runtime", accept=False)
            time.sleep(1.2)  # a tick of the page, and time for a request that must not have been made
            expect(field(page, "studio", "runtime")).to_have_text(shown)
            assert read_state(home, "studio")["runtime_seconds"] == kept
            press(page, "studio", "reset-runtime")
            expect(field(page, "studio", "runtime")).to_have_text("0.0s")
            expect(field(page, "studio", "said")).to_have_text(re.compile(r"^timer reset \(was "))
            expect(reset).to_be_disabled()
            assert read_state(home, "studio")["runtime_seconds"] == 0
            assert script_errors(page) == []
    finally:
        for name in names:
            served.post(f"/api/streams/{name}/stop")
        assert served.stop() == 0, served.output()
