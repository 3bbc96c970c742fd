"""Sessions of one pool: login, expiry, logout and host-local emergency sessions.

Pool sessions are rows of the pool's `session` table (so their getters are
the generic ones); idle times are kept beside the table so that using a
session does not count as a database change and wake event listeners.
Host-local (`slave_local_*`) sessions exist only on the host that made them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .datamodel import new_ref
from .db import NULL, now_stamp
from .wire import XapiError

if TYPE_CHECKING:
    from .farm import SimHost, SimPool

MAX_PER_ORIGINATOR = 500


@dataclass
class SessionInfo:
    ref: str
    user: str
    originator: str
    last_used: float
    local_host: str | None = None  # host ref for slave_local sessions


class Sessions:
    def __init__(self, pool: SimPool) -> None:
        self.pool = pool
        self._lock = threading.Lock()
        self._live: OrderedDict[str, SessionInfo] = OrderedDict()

    def _idle_limit(self) -> float:
        timing = self.pool.farm.timing
        return timing.scaled(timing.session_idle_timeout)

    def authenticate(self, uname: str, pwd: str) -> None:
        farm = self.pool.farm
        if uname != farm.user or pwd != farm.password:
            time.sleep(farm.timing.scaled(farm.timing.login_failure_delay))
            raise XapiError("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")

    def login(self, host: SimHost, uname: str, pwd: str, originator: str = "",
              local: bool = False, preauth: bool = False) -> str:
        """`preauth`: over the local socket, where xapi trusts root without a password."""
        if not preauth:
            self.authenticate(uname, pwd)
        db = self.pool.db
        if local:
            ref = new_ref()
        else:
            ref = db.create("session", {
                "this_host": host.ref,
                "this_user": NULL,
                "last_active": now_stamp(),
                "pool": False,
                "originator": originator,
                "is_local_superuser": True,
                "validation_time": now_stamp(),
                "auth_user_name": uname,
            })
        info = SessionInfo(ref, uname, originator, time.monotonic(), host.ref if local else None)
        evicted: list[str] = []
        with self._lock:
            self._live[ref] = info
            if not local:
                same = [r for r, i in self._live.items()
                        if i.local_host is None and i.originator == originator]
                evicted = same[: max(0, len(same) - MAX_PER_ORIGINATOR)]
                for r in evicted:
                    del self._live[r]
        for r in evicted:
            self._drop_row(r)
        return ref

    def _drop_row(self, ref: str) -> None:
        db = self.pool.db
        with db.lock:
            if db.find("session", ref) is not None:
                db.destroy("session", ref)

    def check(self, ref: object, host: SimHost) -> SessionInfo:
        """The live session `ref` as seen on `host`; SESSION_INVALID / HOST_IS_SLAVE otherwise."""
        if not isinstance(ref, str):
            raise XapiError("SESSION_INVALID", str(ref))
        now = time.monotonic()
        with self._lock:
            info = self._live.get(ref)
            if info is not None and now - info.last_used > self._idle_limit():
                del self._live[ref]
                expired = True
            else:
                expired = False
            if info is not None and not expired:
                info.last_used = now
        if info is None or expired:
            if expired:
                self._drop_row(ref)
            raise XapiError("SESSION_INVALID", ref)
        if info.local_host is not None:
            if info.local_host != host.ref:
                raise XapiError("SESSION_INVALID", ref)
        elif not host.is_master:
            raise XapiError("HOST_IS_SLAVE", self.pool.master.address)
        return info

    def logout(self, ref: str) -> None:
        with self._lock:
            info = self._live.pop(ref, None)
        if info is not None and info.local_host is None:
            self._drop_row(ref)

    def invalidate_all(self) -> None:
        with self._lock:
            refs = [r for r, i in self._live.items() if i.local_host is None]
            self._live.clear()
        for r in refs:
            self._drop_row(r)

    def drop_local(self, host_ref: str) -> None:
        """A host restarted: its local sessions are gone."""
        with self._lock:
            for r in [r for r, i in self._live.items() if i.local_host == host_ref]:
                del self._live[r]
