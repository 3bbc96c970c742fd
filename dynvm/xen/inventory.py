"""An in-memory copy of one pool's records, kept current by XAPI's event feed.

Requests (`/getavailablecount`, `/showall`, placement) read this copy and make
no XenAPI call. It is loaded once with `get_all_records` and then followed
with `event.from` on a dedicated session in a daemon thread; if the feed
breaks, the thread backs off and reloads everything. `age` is the time since
the feed last confirmed the copy (an `event.from` that returned, even empty),
so it stays below `EVENT_TIMEOUT` plus one round trip while the feed runs.

Over ~400 lines on purpose: the copy, its queries and the feed that keeps it
share one lock and its invariants (pins, feed times); split apart, each half
would reach into the other's private state.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import XenAPI

from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.ports import HostUnreachable, XenError
from dynvm.xen.records import NULL, host_uuids
from dynvm.xen.session import SessionPool, abort, track_fork, translate

log = logging.getLogger(__name__)

# Wire class names we keep, and the lower-case names events use for them.
CLASSES = ("host", "host_metrics", "VM", "VM_guest_metrics", "SR", "PBD", "VIF",
           "network", "PIF")
EVENT_CLASSES = [*CLASSES, "task"]
_WIRE_NAMES = {c.lower(): c for c in CLASSES}
EVENT_TIMEOUT = 5.0  # seconds one event.from may block
REFRESH_TRIES = 5  # re-reads of one VM while the feed keeps changing it
FED_KEEP = 10000  # feed-change times kept before old ones are dropped
FED_WINDOW = 300.0  # seconds: far longer than any single read
RETRY_MIN, RETRY_MAX = 0.5, 15.0  # backoff after a feed failure
MAX_TASKS = 2000

Record = dict[str, Any]
Records = dict[str, Record]


@dataclass(frozen=True)
class Snapshot:
    """The copy at one generation: table (lower-case class name) -> ref -> record."""

    generation: int
    tables: Mapping[str, Mapping[str, Record]]


def finished(task: Record | None) -> Record | None:
    """The task record when it has ended (success, failure or cancelled), else None."""
    if task is not None and task.get("status") not in (None, "pending", "cancelling"):
        return task
    return None


# Event feed failures that mean "the master is elsewhere now", not "the pool is down".
_MASTER_MOVED = ("HOST_IS_SLAVE", "SESSION_INVALID")


class Inventory:
    """Records of one pool by class (lower-case name) and ref, plus finished tasks."""

    def __init__(self, sessions: SessionPool, *, event_timeout: float = EVENT_TIMEOUT,
                 clock: Clock = SYSTEM) -> None:
        self.sessions = sessions
        self.event_timeout = event_timeout
        self.clock = clock  # the deadlines of `wait_for` (the feed's own timing stays real)
        self._reset_process_state()
        track_fork(self)

    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._load_lock = threading.Lock()
        self._tables: dict[str, Records] = {c.lower(): {} for c in CLASSES}
        self._tasks: Records = {}
        self.generation = 0  # bumped on every change that can alter a view
        self.loaded = False
        self.fresh_at = 0.0  # monotonic time the feed last confirmed the copy
        self.failed_at = 0.0  # monotonic time of the last failed load
        self.retry_at = 0.0  # until then, callers fail fast
        self.last_error: XenError | None = None
        self.down_since: float | None = None  # wall time the pool first failed, until it answers
        self.feed_ok = False
        self.ticks = 0  # bumped on every change a waiter may care for (tasks, feed times)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._feed_session: XenAPI.Session | None = None
        # (class, ref) -> when we applied our own read of it; events from an
        # event.from issued before that may be older than what we hold.
        self._pins: dict[tuple[str, str], float] = {}
        self._fed: dict[tuple[str, str], float] = {}  # when the feed last changed a record

    def _notify(self) -> None:
        """Wake the waiters; the caller holds the lock."""
        self.ticks += 1
        self._cond.notify_all()

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # a fork that bypassed os.register_at_fork
            self._reset_process_state()

    # -- reading ---------------------------------------------------------

    @property
    def age(self) -> float:
        return time.monotonic() - self.fresh_at if self.loaded else float("inf")

    def ensure(self, max_age: float) -> None:
        """Make sure a copy no older than `max_age` exists; raise HostUnreachable if not.

        The first call starts the feed and waits for its initial load. Later
        calls are free while the feed keeps the copy fresh. While the pool is
        known to be failing, callers fail at once rather than each waiting
        out a connect timeout; the feed thread does the retrying.
        """
        self._check_fork()
        if self.loaded and self.last_error is None and self.age <= max_age:
            self._start_feed()
            return
        if self._failing():
            raise self._unreachable()
        if not self.loaded:
            since = time.monotonic()
            self._start_feed()
            host = self.sessions.host
            self.wait_for(lambda: self.loaded or self.failed_at >= since,
                          host.connect_timeout + 10 * host.call_timeout)
            if self.loaded:
                return
            raise self._unreachable()
        # Loaded, but the feed has not confirmed it lately: read it all again.
        with self._load_lock:
            if self.last_error is None and self.age <= max_age:
                return
            if self._failing():
                raise self._unreachable()
            self.reload()
        self._start_feed()

    def _failing(self) -> bool:
        return self.last_error is not None and time.monotonic() < self.retry_at

    def _unreachable(self) -> XenError:
        err = self.last_error
        if err is None:
            return HostUnreachable(f"xenhost{self.sessions.host.ref}: inventory not loaded")
        if isinstance(err, HostUnreachable):
            return err
        return HostUnreachable(f"xenhost{self.sessions.host.ref}: inventory unavailable: {err}")

    # -- queries: the only way in; each reads under the lock ------------------

    def snapshot(self) -> Snapshot:
        """Every table as it stands, one consistent read to build a whole view from.

        The tables are shallow copies (records are replaced, never changed in
        place), so a caller builds without holding the lock the feed needs.
        """
        with self._cond:
            return Snapshot(self.generation, MappingProxyType(
                {cls: MappingProxyType(dict(table)) for cls, table in self._tables.items()}))

    def tables(self, *names: str) -> dict[str, Records]:
        """Copies of some tables (lower-case names), read together."""
        with self._cond:
            return {name: dict(self._tables[name]) for name in names}

    def record(self, cls: str, ref: str) -> Record | None:
        with self._cond:
            return self._tables[cls.lower()].get(ref)

    def has(self, cls: str, ref: str) -> bool:
        with self._cond:
            return ref in self._tables[cls.lower()]

    def ref_by_uuid(self, cls: str, uuid: str) -> str | None:
        """The ref of the `cls` record with that uuid, if the copy holds it."""
        with self._cond:
            for ref, rec in self._tables[cls.lower()].items():
                if rec.get("uuid") == uuid:
                    return ref
        return None

    def host_uuids(self) -> dict[str, str]:
        """Host ref -> uuid, how VM views name the host a VM runs on."""
        with self._cond:
            return host_uuids(self._tables["host"])

    def vm_with_metrics(self, ref: str) -> tuple[Record, Record | None] | None:
        """A VM's record and its guest metrics (None: none yet), read together."""
        with self._cond:
            rec = self._tables["vm"].get(ref)
            if rec is None:
                return None
            return rec, self._tables["vm_guest_metrics"].get(rec.get("guest_metrics", NULL))

    def host_pifs(self, host_ref: str) -> list[Record]:
        with self._cond:
            return [p for p in self._tables["pif"].values() if p.get("host") == host_ref]

    def attached_srs(self, host_ref: str) -> list[Record]:
        """SRs plugged into the host (PBD not known to be detached), in PBD order."""
        with self._cond:
            srs = self._tables["sr"]
            return [srs[pbd["SR"]] for pbd in self._tables["pbd"].values()
                    if pbd.get("host") == host_ref and pbd.get("currently_attached") is not False
                    and pbd.get("SR", NULL) in srs]

    def finished_task(self, ref: str) -> Record | None:
        """The task's record once it is no longer pending or cancelling."""
        with self._cond:
            return finished(self._tasks.get(ref))

    # -- loading and applying --------------------------------------------

    def reload(self) -> None:
        """Replace the whole copy with fresh `get_all_records` results."""
        try:
            fresh = {c.lower(): self.sessions.call(f"{c}.get_all_records") for c in CLASSES}
        except XenError as exc:
            self._failed(exc)
            raise
        with self._cond:
            self._tables = fresh
            self.loaded = True
            self.fresh_at = time.monotonic()
            self.failed_at = 0.0
            self.last_error = None
            self.down_since = None
            self.generation += 1
            self._notify()

    def _failed(self, exc: XenError, retry_in: float = RETRY_MIN) -> None:
        with self._cond:
            self.failed_at = time.monotonic()
            self.retry_at = self.failed_at + max(retry_in, RETRY_MIN)
            self.last_error = exc
            if self.down_since is None:
                self.down_since = time.time()
            self.feed_ok = False
            self._notify()

    def apply_record(self, cls: str, ref: str, record: dict[str, Any] | None,
                     read_at: float | None = None) -> bool:
        """Put one record (None: deleted) into the copy, e.g. right after our own write.

        `read_at` is when the caller started reading `record`. If the feed has
        applied a change to it since, the read may predate that change and must
        not overwrite it: nothing is applied and False tells the caller to read
        again.
        """
        cls = cls.lower()
        with self._cond:
            if read_at is not None and self._fed.get((cls, ref), -1.0) > read_at:
                return False
            if cls == "task":
                if record is None:
                    self._tasks.pop(ref, None)
                else:
                    self._tasks[ref] = record
                    if len(self._tasks) > MAX_TASKS:
                        self._trim_tasks()
            else:
                table = self._tables.get(cls)
                if table is None:
                    return False
                if record is None:
                    table.pop(ref, None)
                else:
                    table[ref] = record
                self.generation += 1
                # An event.from already in flight may carry an older snapshot.
                self._pins[(cls, ref)] = time.monotonic()
            self._notify()
        return True

    def _trim_tasks(self) -> None:
        done = [r for r, t in self._tasks.items() if t.get("status") != "pending"]
        for ref in done[: len(self._tasks) - MAX_TASKS // 2]:
            del self._tasks[ref]

    def refresh_vm(self, ref: str) -> dict[str, Any] | None:
        """Re-read one VM (and its guest metrics) so our own change shows at once.

        Read again if the feed changed either record while we were reading, so
        a slow read never puts an older VM (say, one without its new guest
        metrics) over what the feed already delivered.
        """
        rec: dict[str, Any] | None = None
        for _ in range(REFRESH_TRIES):
            read_at = time.monotonic()
            try:
                rec = self.sessions.call("VM.get_record", ref)
            except XenError as exc:
                if exc.code == "HANDLE_INVALID":
                    self.apply_record("vm", ref, None)
                    return None
                raise
            gm = rec.get("guest_metrics", "OpaqueRef:NULL")
            fresh = True
            if gm and gm != "OpaqueRef:NULL":
                try:
                    fresh = self.apply_record(
                        "vm_guest_metrics", gm,
                        self.sessions.call("VM_guest_metrics.get_record", gm), read_at)
                except XenError as exc:
                    if exc.code != "HANDLE_INVALID":
                        raise
            if fresh and self.apply_record("vm", ref, rec, read_at):
                return rec
        return rec  # the feed keeps changing it: what it delivers is newer anyway

    def wait_for(self, predicate: Callable[[], Any], timeout: float,
                 cancel: threading.Event | None = None, poll: float = 1.0) -> Any:
        """Wait until predicate() is truthy (re-checked on every change); None at timeout.

        `poll` bounds each sleep so cancellation and clock-driven predicates
        are noticed even when no event arrives.
        """
        clock = self.clock
        deadline = clock.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                left = deadline - clock.monotonic()
                if left <= 0 or (cancel is not None and cancel.is_set()):
                    return None
                clock.wait_on(self._cond, min(left, poll))

    # -- the event feed ----------------------------------------------------

    def _start_feed(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            if self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"xen-events-{self.sessions.host.ref}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = RETRY_MIN
        need_reload = False
        while not self._stop.is_set():
            try:
                session = self.sessions.login(
                    call_timeout=self.sessions.host.call_timeout + self.event_timeout)
            except XenError as exc:
                self._failed(exc, backoff)
                log.warning("xenhost%d: event feed login failed: %s", self.sessions.host.ref,
                            exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
                continue
            with self._cond:
                self._feed_session = session
            try:
                try:
                    self._follow(session, need_reload)
                except XenError:
                    raise
                except Exception as exc:  # keep the feed alive
                    log.exception("xenhost%d: event feed error", self.sessions.host.ref)
                    raise XenError("INTERNAL_ERROR", [repr(exc)]) from exc
            except XenError as exc:
                if exc.code in _MASTER_MOVED and self.feed_ok:
                    # The pool master moved (designate_new_master during maintenance, a
                    # failover): log in again at once, following HOST_IS_SLAVE, and keep
                    # serving the copy meanwhile instead of calling the pool unreachable.
                    with self._cond:
                        self.feed_ok = False  # once: failing again before it runs is a failure
                    log.info("xenhost%d: event feed: %s, following the pool master",
                             self.sessions.host.ref, exc.code)
                    need_reload = True
                    continue
                self._failed(exc, backoff)
                if not self._stop.is_set():
                    log.warning("xenhost%d: event feed failed (%s), reloading in %.1fs",
                                self.sessions.host.ref, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
            else:
                backoff = RETRY_MIN
            finally:
                # close() takes the session it finds (aborts and logs it out);
                # one it did not see, e.g. logged in while it ran, is ours to end.
                with self._cond:
                    mine = self._feed_session is session
                    self._feed_session = None
                if mine:
                    self.sessions.logout(session)
            need_reload = True

    def _follow(self, session: XenAPI.Session, reload_first: bool) -> None:
        """Take a token, reload if needed, then apply events until stopped or failing."""
        try:
            token = session.xenapi.event_from(["pool"], "", 0.0)["token"]
        except Exception as exc:  # translated
            raise translate(exc, f"event.from on {self.sessions.url}") from exc
        if reload_first or not self.loaded:
            self.reload()
        started = time.monotonic()
        with self._cond:
            self.feed_ok = True
        while not self._stop.is_set():
            issued = time.monotonic()
            try:
                result = session.xenapi.event_from(EVENT_CLASSES, token, self.event_timeout)
            except Exception as exc:  # translated
                raise translate(exc, f"event.from on {self.sessions.url}") from exc
            token = result["token"]
            for cls, ref in self._apply_events(result.get("events") or [], issued):
                self._refetch(cls, ref)
            if time.monotonic() - started > 3600:
                return  # a periodic full reload guards against any drift
        return

    def _apply_events(self, events: list[dict[str, Any]],
                      issued: float) -> list[tuple[str, str]]:
        """Apply one event.from batch; returns pinned records to read again."""
        refetch: list[tuple[str, str]] = []
        now = time.monotonic()
        with self._cond:
            changed = False
            for ev in events:
                cls = str(ev.get("class", "")).lower()
                ref = ev.get("ref", "")
                op = ev.get("operation")
                snapshot = ev.get("snapshot") if op != "del" else None
                if cls == "task":
                    if snapshot is None:
                        self._tasks.pop(ref, None)
                    else:
                        self._tasks[ref] = snapshot
                    continue
                table = self._tables.get(cls)
                if table is None:
                    continue
                if self._pins.get((cls, ref), -1.0) >= issued:
                    refetch.append((cls, ref))  # may predate our own write
                    continue
                if snapshot is None:
                    table.pop(ref, None)
                else:
                    table[ref] = snapshot
                self._fed[(cls, ref)] = now
                changed = True
            # Pins older than this call's start can no longer be overtaken.
            self._pins = {k: t for k, t in self._pins.items() if t >= issued}
            if len(self._fed) > FED_KEEP:  # only the last moments matter to a reader
                self._fed = {k: t for k, t in self._fed.items() if t > now - FED_WINDOW}
            if len(self._tasks) > MAX_TASKS:
                self._trim_tasks()
            if changed:
                self.generation += 1
            self.fresh_at = time.monotonic()
            self.failed_at = 0.0
            self.last_error = None
            self.down_since = None
            self.feed_ok = True
            self._notify()
        return refetch

    def _refetch(self, cls: str, ref: str) -> None:
        """Read one record afresh (after an event we could not trust)."""
        try:
            record = self.sessions.call(f"{_WIRE_NAMES[cls]}.get_record", ref)
        except XenError as exc:
            if exc.code != "HANDLE_INVALID":
                raise
            record = None
        with self._cond:
            table = self._tables[cls]
            if record is None:
                table.pop(ref, None)
            else:
                table[ref] = record
            self.generation += 1
            self._notify()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            session, self._feed_session = self._feed_session, None
        if session is not None:
            abort(session)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() \
                and self._pid == os.getpid():
            thread.join(timeout=2.0)
        if session is not None and self._pid == os.getpid():
            self.sessions.logout_aborted(session)
