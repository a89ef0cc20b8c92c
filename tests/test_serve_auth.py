"""The rules of who may talk to `streamctl serve`, and `healthz`'s verdict: pure logic, an injected clock."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from streamctl.commands.streams import health
from streamctl.errors import UsageError
from streamctl.serve import auth
from streamctl.serve.server import check_exposure, parse_bind
from streamctl.store.paths import Paths


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_failed_logins_are_limited_per_address_within_a_sliding_window() -> None:
    clock = Clock()
    limiter = auth.LoginLimiter(max_failures=3, window=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("a") == 0
        limiter.failed("a")
        clock.t += 1
    assert limiter.retry_after("a") == pytest.approx(57)  # the oldest failure (t=100) ages out at 160
    assert limiter.retry_after("b") == 0  # another address is not held up
    clock.t = 160.0
    assert limiter.retry_after("a") == 0  # one failure aged out: one more attempt
    limiter.failed("a")
    assert limiter.retry_after("a") == pytest.approx(1)  # t=101's failure ages out at 161


def test_credentials_bearer_cookie_or_none() -> None:
    t = "x" * 43
    assert auth.credential_ok(t, f"Bearer {t}", None) is True
    assert auth.credential_ok(t, f"bearer {t}", None) is True
    assert auth.credential_ok(t, "Bearer wrong", None) is False
    assert auth.credential_ok(t, f"Basic {t}", None) is False
    assert auth.credential_ok(t, None, auth.session_value(t)) is True
    assert auth.credential_ok(t, None, t) is False  # the cookie holds a derived value, not the token
    assert auth.credential_ok(t, None, None) is None
    assert auth.session_value(t) != auth.session_value("y" * 43)


@pytest.mark.parametrize(
    ("origin", "scheme", "host", "ok"),
    [
        (None, "http", "127.0.0.1:8080", True),  # curl, a script: no browser, no Origin
        ("http://127.0.0.1:8080", "http", "127.0.0.1:8080", True),
        ("HTTP://LOCALHOST:8080", "http", "localhost:8080", True),
        ("http://127.0.0.1:9090", "http", "127.0.0.1:8080", False),  # another local service's page
        ("https://127.0.0.1:8080", "http", "127.0.0.1:8080", False),
        ("http://evil.example", "http", "127.0.0.1:8080", False),
        ("null", "http", "127.0.0.1:8080", False),  # a sandboxed frame, a file: page
        ("http://127.0.0.1:8080", "http", None, False),
    ],
)
def test_writes_only_from_our_own_origin(origin: str | None, scheme: str, host: str | None, ok: bool) -> None:
    assert auth.same_origin(origin, scheme, host) is ok


def test_binding_off_loopback_needs_tls_or_being_told() -> None:
    assert parse_bind("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_bind("9000") == ("127.0.0.1", 9000)
    assert parse_bind("[::1]:8080") == ("::1", 8080)
    assert parse_bind(":8080") == ("127.0.0.1", 8080)
    for bad in ("host:port", "1.2.3.4:70000", "x:-1"):
        with pytest.raises(UsageError, match="--bind must be HOST:PORT"):
            parse_bind(bad)
    warned: list[str] = []
    for host in ("127.0.0.1", "127.8.0.1", "::1", "localhost"):
        check_exposure(host, None, False, warned.append)
    assert warned == []
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.org"):
        with pytest.raises(UsageError, match="--tls-cert and --tls-key, or --insecure-http"):
            check_exposure(host, None, False, warned.append)
    check_exposure("0.0.0.0", None, True, warned.append)
    check_exposure("0.0.0.0", (Path("c"), Path("k")), False, warned.append)
    assert warned == ["serving on 0.0.0.0, reachable from other machines over plain HTTP",
                      "serving on 0.0.0.0, reachable from other machines"]  # fmt: skip


def test_the_token_from_the_environment_or_made_once_0600(tmp_path: Path) -> None:
    paths = Paths.in_home(tmp_path / "home")
    with pytest.raises(UsageError, match="no token yet"):
        auth.load_token(paths, env={})
    assert not (tmp_path / "home").exists()  # asking made nothing
    token, made = auth.load_token(paths, env={}, create=True)
    assert made and len(token) >= 40
    f = auth.token_file(paths)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and stat.S_IMODE(f.parent.stat().st_mode) == 0o700
    assert auth.load_token(paths, env={}, create=True) == (token, False)
    assert auth.load_token(paths, env={"STREAMCTL_TOKEN": "s" * 16}) == ("s" * 16, False)
    for weak in ("s" * 15, " " + "s" * 20):
        with pytest.raises(UsageError, match="too short or has spaces") as e:
            auth.load_token(paths, env={"STREAMCTL_TOKEN": weak})
        assert weak.strip() not in str(e.value)  # the secret is not repeated back


def test_a_running_server_takes_a_new_token_at_once(tmp_path: Path) -> None:
    paths = Paths.in_home(tmp_path)
    old, _ = auth.load_token(paths, env={}, create=True)
    source = auth.TokenSource(old, auth.token_file(paths))
    assert source.current() == old
    new = auth.new_token(paths)
    assert new != old and source.current() == new
    auth.token_file(paths).write_text("")  # emptied by hand: not a token, the last one stays
    assert source.current() == new
    assert auth.TokenSource("fixed-token-from-env", None).current() == "fixed-token-from-env"


def row(name: str, status: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "status": status, "stop_reason": None, "last_error": None, "orphan": False,
            "remaining_seconds": 60.0, **kw}  # fmt: skip


def test_healthz_counts_what_should_run_and_does_not() -> None:
    fine = [row("a", "live"), row("b", "backoff"), row("c", "offline"),  # never started
            row("d", "offline", stop_reason="duration_reached", remaining_seconds=0.0),
            row("e", "offline", stop_reason="stopped"), row("f", "offline", stop_reason="swept"),
            row("g", "offline", stop_reason="supervisor_lost", remaining_seconds=0.0)]  # fmt: skip
    assert health(fine) == []
    bad = [row("h", "failed", stop_reason="retries_exhausted", last_error="exited with 1"),
           row("i", "offline", orphan=True), row("j", "offline", stop_reason="supervisor_lost")]  # fmt: skip
    got = health(fine + bad)
    assert [p["name"] for p in got] == ["h", "i", "j"]
    assert got[0]["reason"] == "gave up (retries_exhausted): exited with 1"
    assert "orphaned ffmpeg" in got[1]["reason"] and "died with budget left" in got[2]["reason"]


def test_the_description_names_every_route_the_app_has() -> None:
    from streamctl.serve.api import STATIC, Api
    from streamctl.serve.openapi import description

    routes = Api(Paths.in_home(Path("/nonexistent")), auth.TokenSource("t" * 20)).routes()
    served = {(m, r.path) for r in routes for m in (r.methods or ()) - {"HEAD"}}
    documented = {(m.upper(), p) for p, ops in description()["paths"].items() for m in ops}
    public = {("GET", p) for p in STATIC} | {("POST", "/api/login"), ("POST", "/api/logout")}
    assert served - public == documented


def test_the_listening_socket_says_it_is_tcp() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; with 0 every kept-alive answer
    waited ~40 ms for a delayed ACK (bench/run.py --only serve: 54 ms a request, 12.6 ms with it)."""
    import socket

    from streamctl.serve.server import listen

    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
