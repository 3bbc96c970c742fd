"""Who is calling: the token a request presents, and whether it is valid.

A token comes as `Authorization: Bearer`, as `token=` on the legacy routes,
or from the dashboard's sign-in cookie (`dynvm.api.access` says which a route
takes).

Failed authentications are counted per client address in this process and,
past `[auth] fail.limit` within `fail.window.secs`, answered 429 before the
token is even looked up. Per process, not in the store, on purpose: a flood of
bad tokens must not turn into a flood of store writes, and the bound still
holds per worker (N workers allow at most N times the limit).

The secret never leaves this module: it is hashed and dropped, and a
`token=` query parameter is cut out of the request line before anything logs it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from flask import Request, current_app, g, request

from dynvm.core.errors import DynvmError, StoreDown, StoreUnavailable
from dynvm.core.services import Caller

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm


class Unauthorized(DynvmError):
    """No token, or not a valid one: 401."""

    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="dynvm"'}


class TooManyFailures(DynvmError):
    """Too many failed authentications from this address: 429."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class AuthUnavailable(StoreDown):
    """The store holding the tokens cannot be read: 503, answered as any store outage."""

    status = 503


@dataclass
class FailureLimiter:
    """Sliding window of failed attempts per client address (bounded memory)."""

    limit: int = 20
    window: float = 60.0
    max_clients: int = 10000

    def __post_init__(self) -> None:
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, addr: str, now: float) -> deque[float]:
        q = self._fails.get(addr)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._fails[addr]
        return q

    def blocked_for(self, addr: str, now: float | None = None) -> int:
        """Seconds until `addr` may try again (0: it may now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(addr, now)
            if len(q) < self.limit:
                return 0
            return max(1, int(q[0] + self.window - now) + 1)

    def fail(self, addr: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if addr not in self._fails and len(self._fails) >= self.max_clients:
                self._fails.pop(next(iter(self._fails)))  # forget the oldest client
            self._fails.setdefault(addr, deque()).append(now)


def limiter(limit: int, window: float) -> FailureLimiter:
    """This app's limiter (one per worker process), following the configuration's values."""
    lim = current_app.extensions.setdefault("dynvm_auth_failures", FailureLimiter())
    lim.limit, lim.window = limit, float(window)
    return lim


COOKIE = "dynvm_token"  # the dashboard's sign-in: the token itself, HttpOnly, SameSite=Strict
CSRF_HEADER = "X-Dynvm-CSRF"
CSRF_FIELD = "csrf"


def csrf_of(secret: str) -> str:
    """The CSRF token that goes with a signed-in browser's token.

    Derived from the secret, so nothing is kept anywhere and every worker
    agrees; a page of another site can neither read the cookie nor compute it.
    """
    return hashlib.sha256(b"dynvm-csrf\0" + secret.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _cookie_secret(req: Request, state_changing: bool) -> str | None:
    """The sign-in cookie's token; on a state-changing request only with its CSRF token."""
    secret = req.cookies.get(COOKIE)
    if not secret:
        return None
    if not state_changing:
        return secret
    given = req.headers.get(CSRF_HEADER) or req.form.get(CSRF_FIELD, "")
    return secret if hmac.compare_digest(given.encode(), csrf_of(secret).encode()) else None


def secret_of(req: Request, *, allow_param: bool, allow_cookie: bool,
              state_changing: bool) -> str | None:
    """The secret the request presents: bearer header, else `token=` (where allowed),
    else the sign-in cookie (where allowed; with its CSRF token on a state change)."""
    header = req.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    if allow_param and g.get("dynvm_token_param"):
        return g.get("dynvm_token_param")
    if allow_cookie:
        return _cookie_secret(req, state_changing)
    return None


def strip_token_param() -> None:
    """Take `token=` out of the query string, so no log line or error body can show it."""
    g.pop("dynvm_token_param", None)
    raw = request.query_string
    if b"token=" not in raw:
        return
    kept, secret = [], None
    for part in raw.split(b"&"):
        if part.startswith(b"token="):
            secret = unquote_to_bytes(part[6:].replace(b"+", b" ")).decode("utf-8", "replace")
        else:
            kept.append(part)
    g.dynvm_token_param = secret
    request.query_string = b"&".join(kept)
    request.environ["QUERY_STRING"] = request.query_string.decode("latin-1")
    request.__dict__.pop("args", None)  # parsed again without it
    request.__dict__.pop("full_path", None)


def authenticate(svc: Dynvm, secret: str | None, how: str) -> Caller:
    """The caller behind `secret`; raises 401 (none or not valid), 429 or 503.

    Only a wrong secret counts as a failed attempt: a request without one
    guesses nothing. `how` says what to send, for the 401's message.
    """
    settings = svc.access.settings()
    addr = request.remote_addr or "?"
    lim = limiter(settings.fail_limit, settings.fail_window_secs)
    wait = lim.blocked_for(addr)
    if wait:
        raise TooManyFailures(f"too many failed authentications from {addr}; "
                              f"try again in {wait} s", wait)
    if not secret:
        raise Unauthorized(f"a token is needed: send {how}")
    try:
        caller = svc.access.caller_for(secret)
    except StoreUnavailable as exc:
        raise AuthUnavailable("tokens cannot be checked: the state store is unreachable") from exc
    if caller is None:
        lim.fail(addr)
        raise Unauthorized("the token is not valid (unknown, expired or revoked)")
    return caller
