"""The HTTP API and the monitor page: each route parses, calls the library the CLI calls, and answers JSON.

Starlette, because it is small, typed and well kept (async, so the live event streams cost a coroutine
each, not a thread), and asks for nothing we would not use: no ORM, no templates, no validation layer.
The library's typed errors become JSON errors with the CLI's message and the HTTP status of their exit
code (ERROR_STATUS). The blocking library calls run in Starlette's thread pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from streamctl.errors import (
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    StreamctlError,
    UsageError,
)
from streamctl.serve import auth
from streamctl.store.paths import Paths, validate_name

log = logging.getLogger("streamctl.serve")

# an error's HTTP status by the CLI's exit code (README, "Exit codes")
ERROR_STATUS = {
    EXIT_FAILED: 502,  # the stream failed: ffmpeg or the ingest (or a stop that did not take)
    EXIT_USAGE: 400,
    EXIT_NOT_FOUND: 404,
    EXIT_CONFLICT: 409,  # live: stop it first; already running
    5: 409,  # the budget is spent: reset the runtime first
    6: 500,  # a state or config file cannot be read or written
    7: 503,  # ffmpeg missing or unusable
}
LIVE_POLL = 0.5  # seconds between looks at the state folder for an event stream
LIVE_REFRESH = 5.0  # the rows are sent at least this often (a supervisor dies without writing its state)
HEARTBEAT = 15.0  # a comment line this often keeps proxies from closing an idle stream
MAX_EVENTS = 1000
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
          "/app.css": ("app.css", "text/css")}  # fmt: skip


def error(
    message: str, status: int, exit_code: int | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": " ".join(message.split())}
    if exit_code is not None:
        body["exit_code"] = exit_code
    return JSONResponse(body, status, headers={**SECURITY_HEADERS, **(headers or {})})


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status, headers=SECURITY_HEADERS)


Handler = Callable[[Request], Awaitable[Response]]


class Api:
    """The routes over one state folder, with its token. CLOCK is the login limiter's."""

    def __init__(
        self,
        paths: Paths,
        token: auth.TokenSource,
        secure: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = paths
        self.token = token
        self.secure = secure  # served over TLS: the cookie is Secure too
        self.limiter = auth.LoginLimiter(clock=clock)

    # ---- who may ask --------------------------------------------------------------------------------
    def _client(self, request: Request) -> str:
        return request.client.host if request.client else "?"

    def _refused(self, request: Request, write: bool) -> Response | None:
        """The answer to a request that may not go on, or None."""
        if write and not _same_origin(request):
            return CROSS_SITE()
        client = self._client(request)
        wait = self.limiter.retry_after(client)
        if wait > 0:
            return error(
                f"too many failed logins from {client}: try again in {wait:.0f}s",
                429,
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        verdict = auth.credential_ok(
            self.token.current(), request.headers.get("authorization"), request.cookies.get(auth.COOKIE)
        )
        if verdict:
            return None
        if verdict is False:
            self.limiter.failed(client)
            log.warning("refused a wrong token from %s for %s %s", client, request.method, request.url.path)
            return error("wrong token", 401, headers={"WWW-Authenticate": "Bearer"})
        return error(
            "a token is needed: send Authorization: Bearer TOKEN, or log in on the page "
            "(streamctl token shows it)",
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    def guarded(self, handler: Handler, write: bool = False) -> Handler:
        async def endpoint(request: Request) -> Response:
            refused = self._refused(request, write)
            if refused is not None:
                return refused
            try:
                return await handler(request)
            except StreamctlError as e:
                return error(str(e), ERROR_STATUS.get(e.exit_code, 500), e.exit_code)

        return endpoint

    # ---- the routes ---------------------------------------------------------------------------------
    def rows(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        from streamctl.commands.streams import views

        return [v.as_dict() for v in views(self.paths, names, warn=lambda m: log.warning("%s", m))]

    def _name(self, request: Request) -> str:
        return validate_name(request.path_params["name"])

    async def streams(self, request: Request) -> Response:
        return ok(await run_in_threadpool(self.rows))

    async def active(self, request: Request) -> Response:
        from streamctl.store.lifecycle import Status

        rows = await run_in_threadpool(self.rows)
        return ok([r for r in rows if Status(r["status"]).running or r["orphan"]])

    async def stream(self, request: Request) -> Response:
        name = self._name(request)
        return ok((await run_in_threadpool(self.rows, [name]))[0])

    async def runtime(self, request: Request) -> Response:
        from streamctl.cli_read import RUNTIME_KEYS

        name = self._name(request)
        row = (await run_in_threadpool(self.rows, [name]))[0]
        return ok({k: row[k] for k in RUNTIME_KEYS})

    async def reset_runtime(self, request: Request) -> Response:
        from streamctl.commands.streams import reset_runtime

        name = self._name(request)
        old = await run_in_threadpool(reset_runtime, self.paths, name)
        log.info("reset the runtime of %s (was %.1fs)", name, old)
        return ok({"name": name, "was_seconds": round(old, 3), "runtime_seconds": 0.0})

    async def stop(self, request: Request) -> Response:
        from streamctl.commands.streams import stop

        name = self._name(request)
        said = await run_in_threadpool(stop, self.paths, name)
        log.info("stop %s: %s", name, said)
        return ok({"name": name, "result": said})

    async def start(self, request: Request) -> Response:
        from streamctl.commands.streams import start_background

        name = self._name(request)
        started = await run_in_threadpool(start_background, self.paths, name)
        log.info("started %s: supervisor pid %s", name, started["supervisor_pid"])
        return ok(started, 202)

    async def events(self, request: Request) -> Response:
        from streamctl.store.events import read

        name = self._name(request)
        n = _int_param(request, "n", 20, 1, MAX_EVENTS)
        got = await run_in_threadpool(read, self.paths, name, None)
        if not got:
            await run_in_threadpool(self.rows, [name])  # an unknown stream is a 404 with a "did you mean"
        if "text/event-stream" in request.headers.get("accept", ""):
            after = _float(request.headers.get("last-event-id"))
            if after is None:
                after = got[-1].get("t", 0) if got else 0
            return _sse(self._follow(request, name, after))
        return ok(got[-n:])

    async def _follow(self, request: Request, name: str, after: float) -> AsyncIterator[str]:
        from streamctl.store.events import read

        yield "retry: 2000\n\n"
        look, beat = None, time.monotonic()
        while not await request.is_disconnected():
            now = await run_in_threadpool(_journal_look, self.paths, name)
            if now != look:
                look = now
                for rec in await run_in_threadpool(read, self.paths, name, None):
                    if rec.get("t", 0) > after:
                        after = rec.get("t", 0)
                        yield _event("event", rec, after)
                        beat = time.monotonic()
            if time.monotonic() - beat >= HEARTBEAT:
                yield ": ping\n\n"
                beat = time.monotonic()
            await asyncio.sleep(LIVE_POLL)

    async def live(self, request: Request) -> Response:
        """Everything the page shows, as it changes: `streams` (every row, when a state file changed, and
        every LIVE_REFRESH s) and `event` (each journal record, of every stream)."""
        return _sse(self._live(request))

    async def _live(self, request: Request) -> AsyncIterator[str]:
        from streamctl.store.events import read

        yield "retry: 2000\n\n"
        look: object = None
        sent = beat = 0.0
        seen: dict[str, float] | None = None  # each stream's last event sent
        while not await request.is_disconnected():
            now_look = await run_in_threadpool(_folder_look, self.paths)
            mono = time.monotonic()
            if now_look != look or mono - sent >= LIVE_REFRESH:
                rows = await run_in_threadpool(self.rows)
                old_look, look, sent = look, now_look, mono
                news = []  # read before anything is sent: what is journaled after this look is news
                for name in sorted(_changed_journals(old_look, now_look)):
                    recs = await run_in_threadpool(read, self.paths, name, None)
                    if seen is not None:
                        news += [r for r in recs if r.get("t", 0) > seen.get(name, 0.0)]
                    if recs:
                        seen = {} if seen is None else seen
                        seen[name] = max(seen.get(name, 0.0), recs[-1].get("t", 0))
                seen = {} if seen is None else seen  # the first look's events are the past: not sent
                yield _event("streams", {"at": time.time(), "streams": rows})
                for rec in news:
                    yield _event("event", rec)
                beat = mono
            elif mono - beat >= HEARTBEAT:
                yield ": ping\n\n"
                beat = mono
            await asyncio.sleep(LIVE_POLL)

    async def healthz(self, request: Request) -> Response:
        from streamctl.commands.streams import health

        rows = await run_in_threadpool(self.rows)
        problems = health(rows)
        running = sum(1 for r in rows if r["supervisor_pid"] is not None)
        body = {"ok": not problems, "streams": len(rows), "running": running, "problems": problems}
        return ok(body, 503 if problems else 200)

    async def metrics(self, request: Request) -> Response:
        from streamctl.output.metrics import prometheus

        text = prometheus(await run_in_threadpool(self.rows))
        return PlainTextResponse(text, headers=SECURITY_HEADERS, media_type="text/plain; version=0.0.4")

    async def openapi(self, request: Request) -> Response:
        from streamctl.serve.openapi import description

        return ok(description())

    async def login(self, request: Request) -> Response:
        """The page's token, exchanged for a session cookie (HttpOnly: no script of any page reads it)."""
        if not _same_origin(request):
            return CROSS_SITE()
        client = self._client(request)
        wait = self.limiter.retry_after(client)
        if wait > 0:
            return error(f"too many failed logins from {client}: try again in {wait:.0f}s", 429,
                         headers={"Retry-After": str(max(1, round(wait)))})  # fmt: skip
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        given = body.get("token") if isinstance(body, dict) else None
        if not isinstance(given, str) or not given:
            return error('send the token as JSON: {"token": "..."}', 400)
        if not auth.credential_ok(self.token.current(), f"Bearer {given}", None):
            self.limiter.failed(client)
            log.warning("refused a wrong token from %s at login", client)
            return error("wrong token", 401)
        response = ok({"ok": True})
        value = auth.session_value(self.token.current())
        response.set_cookie(auth.COOKIE, value, max_age=auth.COOKIE_MAX_AGE, path="/", secure=self.secure,
                            httponly=True, samesite="strict")  # fmt: skip
        return response

    async def logout(self, request: Request) -> Response:
        if not _same_origin(request):
            return CROSS_SITE()
        response = ok({"ok": True})
        response.delete_cookie(auth.COOKIE, path="/", secure=self.secure, httponly=True, samesite="strict")
        return response

    async def static(self, request: Request) -> Response:
        file, media_type = STATIC[request.url.path]
        body = resources.files("streamctl.serve").joinpath("static", file).read_bytes()
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": PAGE_POLICY}
        return Response(body, media_type=media_type, headers=headers)

    def routes(self) -> list[Route]:
        g = self.guarded
        return [
            *(Route(p, self.static, methods=["GET"]) for p in STATIC),
            Route("/api/login", self.login, methods=["POST"]),
            Route("/api/logout", self.logout, methods=["POST"]),
            Route("/api/openapi.json", g(self.openapi), methods=["GET"]),
            Route("/api/streams", g(self.streams), methods=["GET"]),
            Route("/api/streams/active/status", g(self.active), methods=["GET"]),
            Route("/api/streams/{name}", g(self.stream), methods=["GET"]),
            Route("/api/streams/{name}/runtime", g(self.runtime), methods=["GET"]),
            Route("/api/streams/{name}/reset-runtime", g(self.reset_runtime, write=True), methods=["POST"]),
            Route("/api/streams/{name}/stop", g(self.stop, write=True), methods=["POST"]),
            Route("/api/streams/{name}/start", g(self.start, write=True), methods=["POST"]),
            Route("/api/streams/{name}/events", g(self.events), methods=["GET"]),
            Route("/api/events", g(self.live), methods=["GET"]),
            Route("/healthz", g(self.healthz), methods=["GET"]),
            Route("/metrics", g(self.metrics), methods=["GET"]),
        ]


def make_app(
    paths: Paths, token: auth.TokenSource, secure: bool = False, clock: Callable[[], float] = time.monotonic
) -> Starlette:
    """The app over PATHS, checking requests against TOKEN; SECURE: served over TLS."""
    api = Api(paths, token, secure, clock)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such path (GET /api/openapi.json lists them)",
                   405: f"{request.method} is not allowed here"}.get(exc.status_code, exc.detail)  # fmt: skip
        return error(message, exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return error("internal error: the server's log says more", 500)

    return Starlette(
        routes=api.routes(),
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


def _same_origin(request: Request) -> bool:
    return auth.same_origin(request.headers.get("origin"), request.url.scheme, request.headers.get("host"))


def CROSS_SITE() -> JSONResponse:
    return error("cross-site request refused: use the page this server serves, or send no Origin", 403)


# ---- helpers --------------------------------------------------------------------------------------
def _int_param(request: Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise UsageError(f"?{key}= must be a whole number from {low} to {high}, got {raw[:40]!r}")
    return value


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _event(kind: str, data: Any, ident: float | None = None) -> str:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def _sse(body: AsyncIterator[str]) -> StreamingResponse:
    # no-transform and X-Accel-Buffering: a proxy in front (nginx) must not hold the events back
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def _journal_look(paths: Paths, name: str) -> list[tuple[int, int]]:
    from streamctl.store.events import files

    out = []
    for f in files(paths, name):
        try:
            st = os.stat(f)
        except FileNotFoundError:
            continue
        out.append((st.st_ino, st.st_size))
    return out


Look = dict[str, tuple[int, int]]


def _folder_look(paths: Paths) -> tuple[Look, Look, int]:
    """What changed on disk, cheaply: each state file's and journal's (mtime, size), the config's mtime."""

    def scan(folder: Any, suffix: str) -> Look:
        out: Look = {}
        try:
            with os.scandir(folder) as it:
                for e in it:
                    if e.name.endswith(suffix):
                        st = e.stat()
                        out[e.name.removesuffix(suffix)] = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            pass
        return out

    try:
        config = os.stat(paths.config_file).st_mtime_ns
    except OSError:
        config = 0
    return scan(paths.state_dir, ".json"), scan(paths.state_dir / "events", ".jsonl"), config


def _changed_journals(old: object, new: tuple[Look, Look, int]) -> set[str]:
    before = old[1] if isinstance(old, tuple) else {}
    return {n for n, v in new[1].items() if before.get(n) != v}
