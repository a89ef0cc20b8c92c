"""Who may talk to `streamctl serve`: the token, the page's cookie, same-origin writes, and a limit on
failed logins. Pure: no web framework, the clock passed in, so the rules are unit-tested without a server."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from streamctl.errors import FileError, UsageError
from streamctl.store.paths import Paths

TOKEN_ENV = "STREAMCTL_TOKEN"
COOKIE = "streamctl_session"
COOKIE_MAX_AGE = 7 * 24 * 3600
MIN_TOKEN = 16  # characters: a STREAMCTL_TOKEN shorter than this is refused (guessable)
MAX_FAILURES = 10  # failed logins from one address within FAILURE_WINDOW before it is refused
FAILURE_WINDOW = 60.0


def token_file(paths: Paths) -> Path:
    return paths.state_dir / "serve.token"


def load_token(paths: Paths, env: Mapping[str, str] | None = None, create: bool = False) -> tuple[str, bool]:
    """The server's token, and whether it was made just now: STREAMCTL_TOKEN when set (a deployment's
    secret), else the token file (made on the first `serve`, 0600, when CREATE). UsageError when there is
    none and CREATE is not given; a STREAMCTL_TOKEN too short to be safe is refused."""
    e = os.environ if env is None else env
    given = e.get(TOKEN_ENV)
    if given:
        if len(given) < MIN_TOKEN or given != given.strip():
            raise UsageError(
                f"{TOKEN_ENV} is too short or has spaces around it: use at least {MIN_TOKEN} characters, "
                "e.g. from: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return given, False
    path = token_file(paths)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = ""
    except OSError as e:
        raise FileError(f"cannot read the server's token {path}: {e.strerror}") from None
    if text:
        return text, False
    if not create:
        raise UsageError(f"no token yet: `streamctl serve` makes one on its first start (or set {TOKEN_ENV})")
    return new_token(paths), True


def new_token(paths: Paths) -> str:
    """Make a new token (the old one stops working: its cookies too) and store it 0600."""
    from streamctl.store.fileio import atomic_write

    token = secrets.token_urlsafe(32)
    atomic_write(token_file(paths), (token + "\n").encode())
    return token


def session_value(token: str) -> str:
    """What the page's cookie holds: derived from the token, so the token itself never sits in a
    cookie, and a new token ends every session."""
    return hmac.new(token.encode(), b"streamctl serve session v1", hashlib.sha256).hexdigest()


def credential_ok(token: str, authorization: str | None, cookie: str | None) -> bool | None:
    """True: a right bearer token or session cookie; False: a wrong one (a failed login); None: none given."""
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())
    if cookie is not None:
        return hmac.compare_digest(cookie.encode(), session_value(token).encode())
    return None


def same_origin(origin: str | None, scheme: str, host: str | None) -> bool:
    """A state-changing request comes from our own page, or from no browser at all (no Origin header: curl,
    a script). A browser sends Origin with every POST; another site's (or 'null', a sandboxed frame's)
    is refused. The port counts: another local service's page is another origin."""
    if origin is None:
        return True
    return host is not None and origin.lower() == f"{scheme}://{host}".lower()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LoginLimiter:
    """At most MAX_FAILURES failed logins per client address within FAILURE_WINDOW seconds; past that, every
    attempt from it (a right token too, or guessing would go on) waits until its oldest failure ages out."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = FAILURE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        q = self._failures.get(client)
        if q is None:
            return deque()
        cutoff = self.clock() - self.window
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._failures[client]
        return q

    def retry_after(self, client: str) -> float:
        """Seconds CLIENT must wait before its next attempt is looked at; 0: go ahead."""
        q = self._recent(client)
        if len(q) < self.max_failures:
            return 0.0
        return max(0.0, q[0] + self.window - self.clock())

    def failed(self, client: str) -> None:
        if len(self._failures) > 10_000:  # many addresses (IPv6): forget the idle ones
            for c in list(self._failures):
                self._recent(c)
        self._failures.setdefault(client, deque()).append(self.clock())


class TokenSource:
    """The token a running server checks: STREAMCTL_TOKEN's fixed value, or the token file's, read again
    when the file changes, so `streamctl token --new` takes effect (and ends every session) at once."""

    def __init__(self, token: str, watch: Path | None = None) -> None:
        self._token = token
        self._watch = watch
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        if self._watch is None:
            return None
        try:
            st = os.stat(self._watch)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    def current(self) -> str:
        stamp = self._stamp()
        if stamp is not None and stamp != self._seen:
            self._seen = stamp
            try:
                text = self._watch.read_text(encoding="utf-8").strip() if self._watch else ""
            except OSError:
                text = ""
            if len(text) >= MIN_TOKEN:  # a file emptied or cut short is not a new token: keep the last
                self._token = text
        return self._token
