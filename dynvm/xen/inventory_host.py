"""The inventory process: one event-fed `Inventory` per pool, shared by every worker.

`dynvm serve` starts it (`dynvm.runtime.inventory_process`) before its
workers and it dies with `dynvm serve` (the kernel's parent-death signal).
Workers connect over a Unix socket (`SharedInventory`): a subscription gets
the pool's views at once and then, on every change, the views that changed;
any other connection asks questions, one answer each. A pool is opened the
first time a worker names it (by how it is reached, `host_key`), so a
configuration reload that adds a host needs nothing from here; one that no
worker has subscribed to for `IDLE_CLOSE_SECS` (a reload dropped or changed
its section, and the old workers are gone) is closed: its event feed stops
and its sessions are logged out.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection, Listener
from typing import Any

from dynvm.config import HostConfig
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.ports import PoolView
from dynvm.xen.pool import XenPoolClient
from dynvm.xen.shared_inventory import HostKey, encode_error, host_key

log = logging.getLogger(__name__)

HEARTBEAT_SECS = 1.0  # a subscriber hears at least this often (feed times, liveness)
# A pool nobody subscribes to is closed after this long: long enough that a worker
# restarted alone (max_requests, a crash) finds it still loaded.
IDLE_CLOSE_SECS = 120.0
SWEEP_SECS = 10.0


class ServedPool:
    """One pool's client and its views, built once per generation for every subscriber."""

    def __init__(self, host: HostConfig, now: float) -> None:
        self.pool = XenPoolClient(host, shared=None)
        self.inventory = self.pool.inventory
        self._lock = threading.Lock()
        self.subscribers = 0  # under InventoryHost's lock
        self.used_at = now  # when a subscriber last left or a question came

    def current(self) -> tuple[int, PoolView]:
        with self._lock:
            return self.pool.current_view()

    def status(self, generation: int) -> dict[str, Any]:
        inv = self.inventory
        err = inv.last_error
        return {"loaded": inv.loaded, "generation": generation, "fresh_at": inv.fresh_at,
                "retry_at": inv.retry_at, "down_since": inv.down_since,
                "error": None if err is None else encode_error(err)}

    def answer(self, method: str, args: tuple[Any, ...]) -> Any:
        inv = self.inventory
        if method == "ensure":
            inv.ensure(float(args[0]))
            return inv.generation
        if method == "apply_record":
            applied = inv.apply_record(*args)
            return applied, inv.generation
        if method == "refresh_vm":
            record = inv.refresh_vm(*args)
            return record, inv.generation
        if method == "tagged_vms":
            return self.pool.tagged_vms()
        if method in QUERIES:
            return getattr(inv, method)(*args)
        raise ValueError(f"no such question: {method!r}")


QUERIES = frozenset({"tables", "record", "has", "ref_by_uuid", "vm_with_metrics", "host_pifs",
                     "attached_srs", "finished_task"})


class InventoryHost:
    """Serves the pools' inventories on a Unix socket until stopped."""

    def __init__(self, address: str, authkey: bytes, clock: Clock = SYSTEM) -> None:
        self.listener = Listener(address, "AF_UNIX", authkey=authkey)
        self.clock = clock
        self._pools: dict[HostKey, ServedPool] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def pool(self, host: HostConfig, subscribe: bool = False) -> ServedPool:
        """The pool's served inventory, opened if need be; a subscriber is counted in
        under the lock `sweep` takes, so a pool is never closed under one."""
        key = host_key(host)
        with self._lock:
            served = self._pools.get(key)
            if served is None:
                served = self._pools[key] = ServedPool(host, self.clock.monotonic())
            served.subscribers += subscribe
            served.used_at = self.clock.monotonic()
            return served

    def _unsubscribe(self, served: ServedPool) -> None:
        with self._lock:
            served.subscribers -= 1
            served.used_at = self.clock.monotonic()

    def open_pools(self) -> list[HostKey]:
        with self._lock:
            return list(self._pools)

    def subscribers(self, host: HostConfig) -> int:
        with self._lock:
            served = self._pools.get(host_key(host))
            return 0 if served is None else served.subscribers

    def sweep(self) -> list[HostKey]:
        """Close the pools no worker subscribed to for `IDLE_CLOSE_SECS`; their keys."""
        idle_since = self.clock.monotonic() - IDLE_CLOSE_SECS
        with self._lock:
            gone = {key: served for key, served in self._pools.items()
                    if served.subscribers == 0 and served.used_at <= idle_since}
            for key in gone:
                del self._pools[key]
        for key, served in gone.items():
            log.info("inventory process: closing pool %s (no worker has used it for %.0f s)",
                     key[1], IDLE_CLOSE_SECS)
            served.pool.close()
        return list(gone)

    def _sweep_forever(self) -> None:
        while not self.clock.wait(self._stop, SWEEP_SECS):
            try:
                self.sweep()
            except Exception:  # the next sweep tries again
                log.exception("inventory process: closing an unused pool failed")

    def serve_forever(self) -> None:
        threading.Thread(target=self._sweep_forever, daemon=True, name="inventory-sweep").start()
        while not self._stop.is_set():
            try:
                conn = self.listener.accept()
            except OSError:
                if self._stop.is_set():
                    return
                log.exception("inventory process: accept failed")
                continue
            except Exception as exc:  # a client that failed the handshake
                if self._stop.is_set():
                    return  # stop()'s own wake-up call, not a stranger
                log.warning("inventory process: connection refused: %s", exc)
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True,
                             name="inventory-conn").start()

    def _handle(self, conn: Connection) -> None:
        try:
            first = conn.recv()
            if first[0] == "subscribe":
                served = self.pool(first[1], subscribe=True)
                try:
                    self._publish(conn, served)
                finally:
                    self._unsubscribe(served)
                return
            while True:
                self._reply(conn, first)
                first = conn.recv()
        except (EOFError, OSError):
            pass  # the worker went away
        except Exception:  # the worker reconnects and starts afresh
            log.exception("inventory process: a connection failed")
        finally:
            conn.close()

    def _reply(self, conn: Connection, message: tuple[Any, ...]) -> None:
        _, host, method, args = message
        try:
            reply: tuple[bool, Any] = (True, self.pool(host).answer(method, args))
        except Exception as exc:  # sent to the worker, raised there
            reply = (False, encode_error(exc))
        conn.send(reply)

    def _publish(self, conn: Connection, served: ServedPool) -> None:
        """Send the views at once, then what changed, whenever the inventory changes."""
        inv = served.inventory
        sent: Mapping[str, Any] | None = None
        hosts: Any = None
        templates: Any = None
        seen = last = -1
        while not self._stop.is_set():
            ticks = inv.ticks
            if ticks == seen:
                inv.wait_for(_changed(inv, seen), HEARTBEAT_SECS)
                ticks = inv.ticks
            seen = ticks
            msg: dict[str, Any] = {}
            generation = inv.generation
            if inv.loaded:
                generation, view = served.current()
                vms = view.vms  # a new mapping per generation, never changed after
                if sent is None:
                    msg.update(vms=dict(vms), full=True)
                elif generation != last:
                    msg["vms"] = {u: v for u, v in vms.items() if sent.get(u) is not v}
                    msg["gone"] = [u for u in sent if u not in vms]
                sent, last = vms, generation
                if view.hosts != hosts:
                    hosts = msg["hosts"] = view.hosts
                if view.templates != templates:
                    templates = msg["templates"] = dict(view.templates)
            msg["status"] = served.status(generation)
            conn.send(msg)

    def stop(self) -> None:
        self._stop.set()
        self._wake_accept()  # closing a listening socket does not end an accept() under way
        self.listener.close()
        with self._lock:
            pools = list(self._pools.values())
        for served in pools:
            served.pool.close()

    def _wake_accept(self) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                probe.connect(self.listener.address)
        except OSError:
            pass  # nothing listening any more: nothing to wake


def _changed(inv: Any, seen: int) -> Callable[[], bool]:
    return lambda: inv.ticks != seen
