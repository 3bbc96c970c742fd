"""A worker's window on the one inventory of a pool that its `dynvm serve` keeps.

Each worker used to load every pool with `get_all_records` and follow its own
`event.from` feed: at 10,000 VMs that is ~300 MB of records per worker, and a
new worker (a reload) read the whole farm before it could serve. Now one
process per instance (`dynvm.xen.inventory_host`) holds the records and the
feed; a worker holds only the views requests read (`VmView`, `HostView`, a
fraction of the records' size), kept current by a stream of changed views,
and asks the rest (a task's outcome, one VM's record, PIFs, SRs) over a local
Unix socket. A new worker receives the views at once, making no XenAPI call.

The connection is `multiprocessing.connection` on a Unix socket of Linux's
abstract namespace (no file to leave behind, no path length to exceed under a
deep $TMPDIR), and only a process holding the key the serving process hands
its children passes its HMAC challenge. The monotonic clock is system-wide,
so feed times (`fresh_at`) mean the same on both sides.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Client, Connection
from multiprocessing.reduction import ForkingPickler
from types import MappingProxyType
from typing import Any

from dynvm.config import HostConfig
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.ports import HostUnreachable, HostView, PoolView, VmView, XenError
from dynvm.xen.inventory import EVENT_TIMEOUT, Inventory, Record, Records
from dynvm.xen.session import track_fork

log = logging.getLogger(__name__)

ADDRESS_ENV = "DYNVM_INVENTORY_SOCKET"
KEY_ENV = "DYNVM_INVENTORY_KEY"
CONNECT_SECS = 30.0  # how long a worker waits for the inventory process to listen
DELIVERY_SECS = 30.0  # how long a worker waits for its views to reach a generation
RETRY_MIN, RETRY_MAX = 0.1, 5.0
CANCEL_POLL = 0.02  # seconds between looks at a waiter's cancel event

HostKey = tuple[Any, ...]



def read_only(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(mapping)


# Views hold read-only mappings (a VM's other_config); they travel as what they wrap.
ForkingPickler.register(MappingProxyType, lambda m: (read_only, (dict(m),)))


def host_key(host: HostConfig) -> HostKey:
    """What names one pool's inventory: how it is reached (labels, caps, drain aside)."""
    return (host.ref, host.url, host.user, host.password, host.verify_tls, host.ca_file,
            host.connect_timeout, host.call_timeout)


def encode_error(exc: BaseException) -> tuple[str, str, list[str], str]:
    """An exception as plain data (XenError subclasses take other constructor arguments)."""
    if isinstance(exc, HostUnreachable):
        return ("unreachable", exc.code, [], str(exc))
    if isinstance(exc, XenError):
        return ("xen", exc.code, list(exc.params), str(exc))
    return ("xen", "INTERNAL_ERROR", [repr(exc)], f"inventory process: {exc!r}")


def decode_error(data: tuple[str, str, list[str], str]) -> XenError:
    kind, code, params, message = data
    return HostUnreachable(message) if kind == "unreachable" else XenError(code, params, message)


def socket_address(name: str) -> str:
    """The abstract-namespace address of a socket name (an environment cannot hold NUL)."""
    return "\0" + name


def shared_address() -> tuple[str, bytes] | None:
    """The inventory process's socket and key, when this process is one of its workers."""
    name, key = os.environ.get(ADDRESS_ENV), os.environ.get(KEY_ENV)
    if not name or not key:
        return None
    return socket_address(name), bytes.fromhex(key)


def connect(address: str, authkey: bytes, deadline_secs: float | None = None) -> Connection:
    """A connection to the inventory process, waiting for it to listen (it may be starting).

    The deadline defaults to `CONNECT_SECS` as it is when called, not when defined.
    """
    deadline = time.monotonic() + (CONNECT_SECS if deadline_secs is None else deadline_secs)
    pause = RETRY_MIN
    while True:
        try:
            return Client(address, "AF_UNIX", authkey=authkey)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if time.monotonic() + pause > deadline:
                raise HostUnreachable(f"the inventory process does not answer: {exc}") from exc
            time.sleep(pause)  # another process starting: nothing to wait on
            pause = min(pause * 2, RETRY_MAX)


class SharedInventory:
    """The `Inventory` interface of the xen layer, served by the inventory process.

    Views live here, kept current by a stream (one thread); every other query
    is one round trip. Waiters wake on each change the process reports.
    """

    def __init__(self, host: HostConfig, address: str, authkey: bytes, *,
                 event_timeout: float = EVENT_TIMEOUT, clock: Clock = SYSTEM) -> None:
        self.host = host
        self.event_timeout = event_timeout
        self.clock = clock  # the deadlines of `wait_for`, as `Inventory.clock`
        self._address, self._authkey = address, authkey
        self._key = host_key(host)
        self._reset_process_state()
        track_fork(self)

    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._idle: list[Connection] = []
        self._thread: threading.Thread | None = None
        self._stream: Connection | None = None
        self._stop = threading.Event()
        self._vms: dict[str, VmView] = {}
        self._hosts: tuple[HostView, ...] = ()
        self._templates: dict[str, str] = {}
        self._view: tuple[int, PoolView] | None = None
        self.generation = 0
        # Added to the process's generations: a restarted inventory process counts from
        # zero again, and ours must only move forward (views and caches are keyed by it).
        self._base = 0
        self.ticks = 0
        self.loaded = False
        self.fresh_at = 0.0
        self.retry_at = 0.0
        self.last_error: XenError | None = None
        self.down_since: float | None = None

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._reset_process_state()

    # -- the views -------------------------------------------------------------

    @property
    def age(self) -> float:
        return time.monotonic() - self.fresh_at if self.loaded else float("inf")

    def ensure(self, max_age: float) -> None:
        """As `Inventory.ensure`: the process loads or reloads; we wait for its views."""
        self._check_fork()
        self._start_stream()
        if self.loaded and self.last_error is None and self.age <= max_age:
            return
        if self.last_error is not None and time.monotonic() < self.retry_at:
            raise self._unreachable()
        try:
            generation = int(self._call("ensure", max_age))
        except XenError as exc:
            with self._cond:  # known at once, as the stream will say it
                self.last_error = exc
                self.retry_at = time.monotonic() + RETRY_MIN
                if self.down_since is None:
                    self.down_since = time.time()
            raise
        self._await(generation)

    def _unreachable(self) -> XenError:
        err = self.last_error
        if isinstance(err, HostUnreachable):
            return err
        return HostUnreachable(f"xenhost{self.host.ref}: inventory unavailable: {err}")

    def _await(self, generation: int) -> None:
        """Wait until the views reflect `generation` (what the process answered at)."""
        with self._cond:
            if not self._cond.wait_for(
                    lambda: self.loaded and self.generation >= self._base + generation,
                    DELIVERY_SECS):
                raise HostUnreachable(f"xenhost{self.host.ref}: the inventory process sent "
                                      f"no views of generation {generation}")

    def current_view(self) -> tuple[int, PoolView]:
        """(generation, view) of what the stream delivered; one PoolView per generation."""
        with self._cond:
            view = self._view
            if view is None or view[0] != self.generation:
                view = (self.generation, PoolView(
                    host_ref=self.host.ref, hosts=self._hosts, vms=dict(self._vms),
                    templates=dict(self._templates), age_secs=0.0))
                self._view = view
            return view

    def host_uuids(self) -> dict[str, str]:
        with self._cond:
            return {h.ref: h.uuid for h in self._hosts}

    def _apply(self, msg: dict[str, Any]) -> None:
        with self._cond:
            if "vms" in msg:
                if msg.get("full"):
                    self._vms = dict(msg["vms"])
                else:
                    self._vms.update(msg["vms"])
                    for uuid in msg.get("gone", ()):
                        self._vms.pop(uuid, None)
            if msg.get("hosts") is not None:
                self._hosts = msg["hosts"]
            if msg.get("templates") is not None:
                self._templates = msg["templates"]
            status = msg["status"]
            err = status["error"]
            self.last_error = None if err is None else decode_error(err)
            self.loaded = status["loaded"]
            self.fresh_at = status["fresh_at"]
            self.retry_at = status["retry_at"]
            self.down_since = status["down_since"]
            self.generation = self._base + status["generation"]
            self.ticks += 1
            self._cond.notify_all()

    # -- the stream ------------------------------------------------------------

    def _start_stream(self) -> None:
        with self._cond:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._follow, daemon=True,
                                            name=f"inventory-views-{self.host.ref}")
            self._thread.start()

    def _follow(self) -> None:
        pause = RETRY_MIN
        while not self._stop.is_set():
            try:
                conn = connect(self._address, self._authkey)
                with self._cond:
                    self._stream = conn
                conn.send(("subscribe", self.host))
                while not self._stop.is_set():
                    self._apply(conn.recv())
                    pause = RETRY_MIN
            except Exception as exc:  # the stream must outlive any failure
                if self._stop.is_set():
                    return  # close() shut the connection under us
                log.warning("xenhost%d: inventory stream lost (%s); reconnecting",
                            self.host.ref, exc)
                self._lost(exc)
                self._stop.wait(pause)
                pause = min(pause * 2, RETRY_MAX)

    def _lost(self, exc: Exception) -> None:
        """The stream broke: the process may be a new one when it comes back, counting
        its generations from zero, so ours go on from beyond the last one seen."""
        with self._cond:
            self.last_error = HostUnreachable(
                f"xenhost{self.host.ref}: the inventory process is gone: {exc}")
            self.retry_at = 0.0
            self._base = self.generation + 1
            self.ticks += 1
            self._cond.notify_all()

    # -- questions -------------------------------------------------------------

    def _call(self, method: str, *args: Any) -> Any:
        """One question to the inventory process; what it raised is raised here."""
        self._check_fork()
        for attempt in (1, 2):
            with self._cond:
                conn = self._idle.pop() if self._idle else None
            try:
                if conn is None:
                    conn = connect(self._address, self._authkey)
                conn.send((self._key, self.host, method, args))
                ok, value = conn.recv()
            except (OSError, EOFError) as exc:
                if conn is not None:
                    conn.close()
                if attempt == 2:
                    raise HostUnreachable(f"xenhost{self.host.ref}: the inventory process "
                                          f"is gone: {exc}") from exc
                continue
            with self._cond:
                self._idle.append(conn)
            if not ok:
                raise decode_error(value)
            return value
        raise AssertionError("unreachable")

    def tables(self, *names: str) -> dict[str, Records]:
        return dict(self._call("tables", *names))

    def record(self, cls: str, ref: str) -> Record | None:
        return self._call("record", cls, ref)

    def has(self, cls: str, ref: str) -> bool:
        return bool(self._call("has", cls, ref))

    def ref_by_uuid(self, cls: str, uuid: str) -> str | None:
        return self._call("ref_by_uuid", cls, uuid)

    def vm_with_metrics(self, ref: str) -> tuple[Record, Record | None] | None:
        return self._call("vm_with_metrics", ref)

    def host_pifs(self, host_ref: str) -> list[Record]:
        return list(self._call("host_pifs", host_ref))

    def attached_srs(self, host_ref: str) -> list[Record]:
        return list(self._call("attached_srs", host_ref))

    def finished_task(self, ref: str) -> Record | None:
        return self._call("finished_task", ref)

    def tagged_vms(self) -> list[VmView]:
        return list(self._call("tagged_vms"))

    def apply_record(self, cls: str, ref: str, record: dict[str, Any] | None,
                     read_at: float | None = None) -> bool:
        """As `Inventory.apply_record`; returns once this worker's views show it."""
        applied, generation = self._call("apply_record", cls, ref, record, read_at)
        self._await(generation)
        return bool(applied)

    def refresh_vm(self, ref: str) -> dict[str, Any] | None:
        """The process re-reads the VM; returns once this worker's views show it."""
        record, generation = self._call("refresh_vm", ref)
        self._await(generation)
        return record

    def wait_for(self, predicate: Callable[[], Any], timeout: float,
                 cancel: threading.Event | None = None, poll: float = 1.0) -> Any:
        """As `Inventory.wait_for`: predicate() re-checked on every change reported."""
        self._start_stream()
        clock = self.clock
        deadline = clock.monotonic() + timeout
        while True:
            with self._cond:
                seen = self.ticks
            result = predicate()  # questions to the process: not under our lock
            left = deadline - clock.monotonic()
            if result or left <= 0 or (cancel is not None and cancel.is_set()):
                return result or None
            # Between changes only the cancel and the deadline are looked at (no question
            # to the process), often, so a stopping worker's builds answer at once.
            step = min(poll, CANCEL_POLL) if cancel is not None else poll
            with self._cond:
                while self.ticks == seen and not (cancel is not None and cancel.is_set()):
                    left = deadline - clock.monotonic()
                    if left <= 0:
                        break
                    clock.wait_on(self._cond, min(left, step))

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            conns, self._idle = self._idle, []
            stream, self._stream = self._stream, None
        for conn in [*conns, *([stream] if stream is not None else [])]:
            try:
                conn.close()
            except OSError:
                pass


AnyInventory = Inventory | SharedInventory  # what the pool client's subjects work with
