"""How `streamctl serve` listens: the address checked, the socket bound here (a clear error for a port in
use), then uvicorn, a well-kept ASGI server (h11, no C build), in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from streamctl.errors import Conflict, FileError, UsageError
from streamctl.serve.auth import is_loopback
from streamctl.store.paths import Paths

SHUTDOWN_GRACE = 2.0  # seconds open connections (the page's event stream) get to close on SIGTERM


def parse_bind(bind: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets: [::1]:8080); a bare port means 127.0.0.1."""
    host, sep, port_text = bind.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", bind
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UsageError(f"--bind must be HOST:PORT, e.g. 127.0.0.1:8080, got {bind[:80]!r}")
    return host, port


def check_exposure(
    host: str, tls: tuple[Path, Path] | None, insecure_http: bool, warn: Callable[[str], None]
) -> None:
    """Off loopback the token crosses the network: only over TLS, or when told plainly (a TLS proxy in
    front, a private network)."""
    if is_loopback(host):
        return
    if tls is None and not insecure_http:
        raise UsageError(
            f"--bind {host} is reachable from other machines and the token would cross the network in the "
            "clear: give --tls-cert and --tls-key, or --insecure-http (behind a TLS proxy), or bind 127.0.0.1"
        )
    warn(f"serving on {host}, reachable from other machines" + ("" if tls else " over plain HTTP"))


def check_tls(tls: tuple[Path, Path] | None) -> None:
    for f in tls or ():
        if not f.is_file():
            raise FileError(f"cannot read {f}: no such file (--tls-cert / --tls-key)")


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without
    # it every answer on a kept-alive connection waited ~40 ms for a delayed ACK (headers, then body)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == 98:  # EADDRINUSE
            raise Conflict(
                f"cannot listen on {host}:{port}: the address is in use; give another --bind"
            ) from None
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    paths: Paths,
    token: str,
    watch: Path | None,
    sock: socket.socket,
    tls: tuple[Path, Path] | None,
    announce: Callable[[str], None],
) -> None:
    import uvicorn

    from streamctl.serve.api import make_app

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from streamctl.serve.auth import TokenSource

    app = make_app(paths, TokenSource(token, watch), secure=tls is not None)
    config = uvicorn.Config(
        app,
        log_level="info",
        log_config=None,  # our basicConfig: one format for uvicorn's lines and ours
        access_log=True,  # paths and statuses only: no token is ever in a URL
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        server_header=False,
        proxy_headers=False,  # the client's address is the socket's: a header cannot dodge the login limit
    )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    announce(f"serving {'https' if tls else 'http'}://{shown}:{port}/ for {paths.describe()} (Ctrl-C stops)")
    # uvicorn raises the signal that stopped it again once it is done, to die of it; we end with 0 instead
    # (a stop asked for is a clean end, as for systemd): the signal it raises meets a handler that returns
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run(sockets=[sock])
