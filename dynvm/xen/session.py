"""Logged-in XenAPI sessions for one [xenhostN], reused across requests.

A `XenAPI.Session` is not thread-safe (one HTTP connection, one session ref),
so callers check one out, use it alone, and give it back. Logging in costs a
round trip and an XAPI session slot, so sessions live as long as they work;
an invalid one is dropped and replaced. A login refused with HOST_IS_SLAVE is
followed to the pool master it names.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import weakref
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import XenAPI

from dynvm.config import HostConfig
from dynvm.core.ports import HostUnreachable, XenError
from dynvm.xen.metrics import count_error
from dynvm.xen.transport import make_transport

log = logging.getLogger(__name__)

ORIGINATOR = "dynvm"
MAX_MASTER_HOPS = 3
_SESSION_FAULT_TEXTS = ("Tried 3 times", "SESSION_INVALID")


class SessionInvalid(XenError):
    """The session ref is no longer valid (xapi restart, idle timeout, logout)."""


def master_url(current_url: str, address: str) -> str:
    """URL of the master named by HOST_IS_SLAVE, keeping the current scheme.

    XAPI answers a bare IP (port defaults for the scheme); the simulator
    answers "127.0.0.1:PORT".
    """
    scheme = urlsplit(current_url).scheme or "https"
    address = address.strip()
    if address.count(":") > 1 and not address.startswith("["):
        address = f"[{address}]"  # bare IPv6
    return f"{scheme}://{address}"


def translate(exc: BaseException, where: str) -> XenError:
    """Map whatever the XenAPI client raised to XenError / HostUnreachable (and count it)."""
    if isinstance(exc, XenError):
        return exc
    err = _translate(exc, where)
    count_error(err.code, where, err.params)
    return err


def _translate(exc: BaseException, where: str) -> XenError:
    if isinstance(exc, XenAPI.Failure):
        details = [str(d) for d in (exc.details or ["UNKNOWN"])]
        if details[0] == "SESSION_INVALID":
            return SessionInvalid(details[0], details[1:])
        return XenError(details[0], details[1:])
    if isinstance(exc, xmlrpc.client.Fault):
        text = str(exc.faultString)
        if any(t in text for t in _SESSION_FAULT_TEXTS):
            return SessionInvalid("SESSION_INVALID", [text])
        if exc.faultCode == 504:
            return HostUnreachable(f"{where}: {text}")
        return XenError("XMLRPC_FAULT", [str(exc.faultCode), text])
    if isinstance(exc, TimeoutError):
        return HostUnreachable(f"{where}: timed out")
    if isinstance(exc, (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError,
                        xml.parsers.expat.ExpatError)):
        return HostUnreachable(f"{where}: {type(exc).__name__}: {exc}")
    return XenError("INTERNAL_ERROR", [f"{type(exc).__name__}: {exc}"])


def resolve(session: XenAPI.Session, method_path: str) -> Callable[..., Any]:
    """`"VM.get_record"` / `"Async.VM.clone"` / `"event_from"` -> a bound dispatcher."""
    target: Any = session.xenapi
    for part in method_path.split("."):
        target = getattr(target, part)
    return target


def _drop(session: XenAPI.Session) -> None:
    """Close the connection without logging out (the ref may be shared or dead)."""
    try:
        session.transport.close()
    except Exception:  # best effort
        pass


def abort(session: XenAPI.Session) -> None:
    """Break a call blocked in another thread (e.g. a long-polling event.from)."""
    abort_call = getattr(getattr(session, "transport", None), "abort", None)
    if abort_call is not None:
        abort_call()


_instances: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Locks, sessions and threads of the parent are not ours after fork: start clean."""
    for obj in list(_instances):
        obj._reset_process_state()


os.register_at_fork(after_in_child=_after_fork_in_child)


def track_fork(obj: Any) -> None:
    """Have `obj._reset_process_state()` called in every forked child."""
    _instances.add(obj)


class SessionPool:
    """Up to `size` logged-in sessions to one pool master, handed out one per caller."""

    def __init__(self, host: HostConfig, size: int = 8) -> None:
        self.host = host
        self.size = size
        self._url: str | None = None  # followed master URL, None: host.url
        self._reset_process_state()
        track_fork(self)

    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle: list[XenAPI.Session] = []
        self._slots = threading.BoundedSemaphore(self.size)
        self._closed = False

    def _check_fork(self) -> None:
        """Sessions inherited from the parent process belong to it: forget them.

        `os.register_at_fork` normally did this already; this covers forks
        that bypass it.
        """
        if self._pid != os.getpid():
            self._reset_process_state()

    @property
    def url(self) -> str:
        return self._url or self.host.url

    # -- login -----------------------------------------------------------

    def login(self, *, call_timeout: float | None = None) -> XenAPI.Session:
        """A new logged-in session on the master (following HOST_IS_SLAVE)."""
        url = self.url
        tried_configured = url == self.host.url
        for _hop in range(MAX_MASTER_HOPS + 1):
            session = XenAPI.Session(url, transport=make_transport(
                self.host, url, call_timeout=call_timeout))
            try:
                session.login_with_password(self.host.user, self.host.password, "1.0",
                                            ORIGINATOR)
            except Exception as exc:  # translated below
                _drop(session)
                err = translate(exc, f"login to {url}")
                if err.code == "HOST_IS_SLAVE" and err.params:
                    url = master_url(url, err.params[0])
                    log.info("xenhost%d: %s is a pool member, following master %s",
                             self.host.ref, self.host.name, url)
                    continue
                if isinstance(err, HostUnreachable) and not tried_configured:
                    # The master we followed is gone (failover?): ask the configured host.
                    tried_configured = True
                    url = self.host.url
                    continue
                raise err from exc
            self._url = None if url == self.host.url else url
            return session
        raise XenError("HOST_IS_SLAVE", [url], f"no pool master found from {self.host.name}")

    # -- checkout / checkin ------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[XenAPI.Session]:
        """Check out one session; it goes back to the pool unless the block failed badly."""
        self._check_fork()
        if self._closed:
            raise HostUnreachable(f"xenhost{self.host.ref}: session pool closed")
        slots = self._slots
        slots.acquire()
        try:
            with self._lock:
                session = self._idle.pop() if self._idle else None
            if session is None:
                session = self.login()
            healthy = False
            try:
                yield session
                healthy = True
            except XenError as exc:
                # An ordinary XAPI failure leaves the session usable.
                healthy = not isinstance(exc, (HostUnreachable, SessionInvalid)) \
                    and exc.code != "HOST_IS_SLAVE"
                raise
            finally:
                ours = self._pid == os.getpid()
                with self._lock:  # close() swaps _idle out under this lock
                    keep = healthy and ours and not self._closed
                    if keep:
                        self._idle.append(session)
                if healthy and ours and not keep:
                    self.logout(session)  # closed meanwhile: free the XAPI session slot
                elif not keep:
                    _drop(session)
        finally:
            slots.release()

    def call(self, method_path: str, *args: Any) -> Any:
        """One XenAPI call with a pooled session; errors come out as XenError.

        An invalid session is replaced and the call retried once; so is a
        HOST_IS_SLAVE answer (the pool master moved).
        """
        for attempt in (1, 2):
            try:
                with self.session() as session:
                    try:
                        return resolve(session, method_path)(*args)
                    except XenError:
                        raise
                    except Exception as exc:  # translated
                        raise translate(exc, f"{method_path} on {self.url}") from exc
            except SessionInvalid:
                if attempt == 2:
                    raise
                log.info("xenhost%d: session invalid, logging in again", self.host.ref)
            except XenError as exc:
                if exc.code != "HOST_IS_SLAVE" or attempt == 2 or not exc.params:
                    raise
                self._url = master_url(self.url, exc.params[0])
                self._discard_idle()
        raise AssertionError("unreachable")

    def _discard_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for s in idle:
            _drop(s)

    def logout(self, session: XenAPI.Session) -> None:
        """Log a dedicated session out (best effort) and close its connection."""
        try:
            session.xenapi.session.logout()
        except Exception:  # the host may be gone already
            pass
        _drop(session)

    def logout_aborted(self, session: XenAPI.Session) -> None:
        """Log out a session whose connection was aborted, over a fresh connection."""
        ref, url = session.handle, getattr(session, "_ServerProxy__host", None)
        if not ref:
            return
        full = f"{urlsplit(self.url).scheme}://{url}" if url else self.url
        proxy = XenAPI.Session(full, transport=make_transport(
            self.host, full, call_timeout=min(self.host.call_timeout, 5.0)))
        try:
            getattr(proxy, "session.logout")(ref)  # a plain wire call
        except Exception:  # best effort
            pass
        _drop(proxy)

    def close(self) -> None:
        """Log out every idle session (and those given back later); later checkouts fail."""
        self._closed = True
        if self._pid != os.getpid():
            return
        with self._lock:
            idle, self._idle = self._idle, []
        for s in idle:
            self.logout(s)
