"""A real `streamctl serve` in a child process on a free port, and a plain HTTP client for it (urllib: what
a script or an uptime monitor would use, no test client that skips the socket)."""

from __future__ import annotations

import functools
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import free_port, wait_for


class _FromAddress(urllib.request.HTTPHandler):
    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(
            functools.partial(http.client.HTTPConnection, source_address=(self.source, 0)), req
        )


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    def header(self, name: str) -> str | None:
        return {k.lower(): v for k, v in self.headers.items()}.get(name.lower())


@dataclass
class Served:
    home: Path
    proc: subprocess.Popen[str]
    port: int
    token: str
    log: Path
    scheme: str = "http"
    host: str = "127.0.0.1"

    def output(self) -> str:
        return self.log.read_text()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def call(
        self,
        method: str,
        path: str,
        token: str | bool | None = True,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 60,
        source: str | None = None,
    ) -> Reply:
        """METHOD PATH with the token (True), another (a str) or none; from the address SOURCE when given
        (127.0.0.2 is loopback too: another client, as the login limit sees it)."""
        h = dict(headers or {})
        if token is True:
            token = self.token
        if token:
            h["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=h)
        ctx = ssl._create_unverified_context() if self.scheme == "https" else None
        opener = urllib.request.build_opener(
            *([_FromAddress(source)] if source else []), urllib.request.HTTPSHandler(context=ctx)
        )
        try:
            with opener.open(req, timeout=timeout) as r:
                return Reply(r.status, dict(r.headers), r.read().decode())
        except urllib.error.HTTPError as e:
            return Reply(e.code, dict(e.headers), e.read().decode())

    def get(self, path: str, **kw: Any) -> Reply:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Reply:
        return self.call("POST", path, **kw)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return rc


def serve(home: Path, *args: str, env: dict[str, str] | None = None, scheme: str = "http") -> Served:
    """Start `streamctl serve` for HOME on a free port; return once it answers (the token from its file,
    or from STREAMCTL_TOKEN in ENV)."""
    port = free_port()
    full_env = {**os.environ, "STREAMCTL_HOME": str(home), **(env or {})}
    log = home.parent / f"serve-{port}.log"  # a file, not a pipe: the access log must never fill one
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamctl", "serve", "--bind", f"127.0.0.1:{port}", *args],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    token_file = home / "state" / "serve.token"

    def token() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {log.read_text()}")
        if full_env.get("STREAMCTL_TOKEN"):
            return full_env["STREAMCTL_TOKEN"]
        return token_file.read_text().strip() or None

    served = Served(home, proc, port, str(wait_for(token, timeout=30)), log, scheme=scheme)

    def answers() -> bool:
        try:
            return served.get("/healthz", timeout=5).status in (200, 503)
        except OSError:
            return False

    wait_for(answers, timeout=30, every=0.1)
    return served


def sse(
    served: Served, path: str, want: Any, timeout: float = 30, headers: dict[str, str] | None = None
) -> list[tuple[str, Any]]:
    """Read PATH's event stream until WANT(events so far) holds; the (event, data) pairs read."""
    h = {"Authorization": f"Bearer {served.token}", "Accept": "text/event-stream", **(headers or {})}
    req = urllib.request.Request(served.url + path, headers=h)
    got: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        kind, data = "message", []
        while time.monotonic() < deadline:
            line = r.readline().decode()
            if not line:
                break
            line = line.rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                got.append((kind, json.loads("\n".join(data))))
                kind, data = "message", []
                if want(got):
                    return got
    raise AssertionError(f"the event stream did not give what was wanted in {timeout}s: {got[-5:]}")
