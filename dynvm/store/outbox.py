"""Keep releases and expiries working while the shared store is down.

Longer than 400 lines on purpose: every Store method must say whether it is
queued, overlaid with queued writes, or passed straight through, in one place.

`ResilientStore` wraps the real backend. New work (`reserve`, `put_request`,
`put_lease`) and every read go straight to it, so an outage surfaces as
`StoreUnavailable` and the API refuses new VMs with 503 before touching a
host. The writes that release and expiry paths make after destroying a VM
cannot be refused (the VM is already gone), so when the backend is down they
are appended to a local SQLite outbox instead, durable and in order, and
replayed when the backend answers again. Once anything is queued, later
writes of those kinds queue behind it, so the backend sees them in the order
they were made.

Every queued operation is idempotent (merges, absolute values, deletes), so
replaying one twice after a crash is harmless. Only one replayer runs at a
time per outbox file (a lock row with a TTL), however many workers share it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from typing import Any

from dynvm.core import lifecycle
from dynvm.core.store import (
    LEASE_ACTIVE,
    Conflict,
    DocEdit,
    FreeSlots,
    Lease,
    QuotaCheck,
    RequestRecord,
    Reservation,
    Store,
    StoreUnavailable,
    Token,
)
from dynvm.store.sqlite import SqliteDb, drop_ttl_lock, take_ttl_lock

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    key TEXT NOT NULL,
    args TEXT NOT NULL,
    queued REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failed (
    seq INTEGER PRIMARY KEY,
    op TEXT NOT NULL,
    key TEXT NOT NULL,
    args TEXT NOT NULL,
    queued REAL NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS replay_lock (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires REAL NOT NULL
);
"""

REPLAY_LOCK_TTL = 60.0
LEASE_CACHE_MAX = 10000

QUEUED_OPS = ("put_history", "update_history", "update_lease", "transition", "delete_lease",
              "finish_request", "settle_reservation", "drop_reservations")


class ResilientStore(Store):
    """A Store that queues release/expiry writes locally while `primary` is unavailable."""

    def __init__(self, primary: Store, outbox_path: str) -> None:
        self.primary = primary
        self.outbox_path = outbox_path
        self._db = SqliteDb(outbox_path, _SCHEMA)
        self._replaying = threading.Lock()
        # Leases this process has seen, so a queued update_lease can still
        # answer with a best-effort Lease.
        self._seen: OrderedDict[str, Lease] = OrderedDict()
        self._seen_lock = threading.Lock()

    # -- the outbox -----------------------------------------------------------------
    @property
    def direct(self) -> Store:
        return self.primary

    def pending(self) -> int:
        """How many writes wait in the outbox."""
        return int(self._db.query("SELECT COUNT(*) FROM outbox")[0][0])

    def failed(self) -> list[dict[str, Any]]:
        """Queued writes the backend rejected for a reason other than an outage."""
        rows = self._db.query("SELECT seq, op, key, args, queued, error FROM failed ORDER BY seq")
        return [{"seq": s, "op": o, "key": k, "args": json.loads(a), "queued": q, "error": e}
                for s, o, k, a, q, e in rows]

    def _pending_ops(self, key: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        if key is None:
            rows = self._db.query("SELECT op, key, args FROM outbox ORDER BY seq")
        else:
            rows = self._db.query("SELECT op, key, args FROM outbox WHERE key=? ORDER BY seq",
                                  (key,))
        return [(op, k, json.loads(args)) for op, k, args in rows]

    def _enqueue(self, op: str, key: str, args: dict[str, Any]) -> None:
        with self._db.tx() as c:
            c.execute("INSERT INTO outbox(op, key, args, queued) VALUES (?,?,?,?)",
                      (op, key, json.dumps(args, sort_keys=True), time.time()))
        log.warning("store unavailable: %s %s queued in outbox %s", op, key, self.outbox_path)

    def _write(self, op: str, key: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """Apply a write now, or queue it; returns (queued, primary's result)."""
        if self.pending():
            self._enqueue(op, key, args)
            self._try_replay()
            return True, None
        try:
            return False, self._apply(op, args)
        except StoreUnavailable:
            self._enqueue(op, key, args)
            return True, None

    def _apply(self, op: str, a: dict[str, Any]) -> Any:
        p = self.primary
        if op == "put_history":
            return p.put_history(a["vm_uuid"], a["doc"])
        if op == "update_history":
            return p.update_history(a["vm_uuid"], a["patch"])
        if op == "update_lease":
            changes = dict(a["changes"])
            if "state" in changes:  # queued before state changes became transitions
                lease = p.get_lease(a["vm_uuid"])
                if lease is None or lease.state == changes["state"]:
                    return lease
                return p.transition(a["vm_uuid"], lease.state, changes.pop("state"), **changes)
            return p.update_lease(a["vm_uuid"], **changes)
        if op == "transition":
            return p.transition(a["vm_uuid"], a["src"], a["dst"], **a["changes"])
        if op == "delete_lease":
            return p.delete_lease(a["vm_uuid"])
        if op == "finish_request":
            return p.finish_request(a["request_id"], a["state"], a["detail"])
        if op == "settle_reservation":
            until = a.get("settle_until")
            secs = 0.0 if until is None else max(0.0, until - time.time())
            return p.settle_reservation(a["res_id"], vm_uuid=a["vm_uuid"], settle_secs=secs)
        if op == "drop_reservations":
            return p.drop_reservations(a["request_id"])
        raise ValueError(f"unknown outbox operation {op!r}")

    def _take_replay_lock(self, holder: str) -> bool:
        with self._db.tx() as c:
            return take_ttl_lock(c, "replay_lock", "replay", holder, REPLAY_LOCK_TTL)

    def _drop_replay_lock(self, holder: str) -> None:
        with self._db.tx() as c:
            drop_ttl_lock(c, "replay_lock", "replay", holder)

    def replay(self) -> int:
        """Flush the outbox to the backend in order; returns how many writes were applied.

        Stops at the first outage (the rest stays queued for the next call).
        Returns 0 at once if another thread or process is already replaying.
        """
        if not self._replaying.acquire(blocking=False):
            return 0
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        try:
            if not self.pending() or not self._take_replay_lock(holder):
                return 0
            done = 0
            try:
                while True:
                    rows = self._db.query(
                        "SELECT seq, op, key, args, queued FROM outbox ORDER BY seq LIMIT 1")
                    if not rows:
                        break
                    seq, op, key, args, queued = rows[0]
                    try:
                        self._apply(op, json.loads(args))
                    except (StoreUnavailable, Conflict):
                        break
                    except Exception as exc:  # a write the backend will never take
                        log.error("outbox %s: %s %s rejected, set aside: %s",
                                  self.outbox_path, op, key, exc)
                        with self._db.tx() as c:
                            c.execute("INSERT OR REPLACE INTO failed VALUES (?,?,?,?,?,?)",
                                      (seq, op, key, args, queued, repr(exc)))
                            c.execute("DELETE FROM outbox WHERE seq=?", (seq,))
                        continue
                    with self._db.tx() as c:
                        c.execute("DELETE FROM outbox WHERE seq=?", (seq,))
                    done += 1
                    if done % 50 == 0:
                        self._take_replay_lock(holder)  # renew
            finally:
                self._drop_replay_lock(holder)
            if done:
                log.info("outbox %s: replayed %d writes", self.outbox_path, done)
            return done
        finally:
            self._replaying.release()

    def _try_replay(self) -> None:
        try:
            self.replay()
        except StoreUnavailable:
            pass

    def _queued_view(self, key: str | None = None) -> list[tuple[str, str, dict[str, Any]]] | None:
        """For reads: replay what can be replayed, then the writes still queued.

        None means nothing is queued at all (read the backend as is). The
        snapshot is taken before the backend is read, so a write replayed by
        someone else in between is at worst applied twice to the answer, which
        is harmless because every queued write is idempotent.
        """
        if not self.pending():
            return None
        self._try_replay()
        if not self.pending():
            return None
        return self._pending_ops(key)

    # -- lease cache and overlays -----------------------------------------------------------
    def _remember(self, lease: Lease | None) -> Lease | None:
        if lease is not None:
            with self._seen_lock:
                self._seen[lease.vm_uuid] = lease
                self._seen.move_to_end(lease.vm_uuid)
                while len(self._seen) > LEASE_CACHE_MAX:
                    self._seen.popitem(last=False)
        return lease

    @staticmethod
    def _overlay_lease(lease: Lease | None, ops: list[tuple[str, str, dict[str, Any]]]
                       ) -> Lease | None:
        for op, _, a in ops:
            if op == "update_lease" and lease is not None:
                lease = lease.with_(**a["changes"])
            elif op == "transition" and lease is not None and lease.state == a["src"]:
                lease = lease.with_(**a["changes"], state=a["dst"])
            elif op == "delete_lease":
                lease = None
        return lease

    # -- history -----------------------------------------------------------------------------
    def put_history(self, vm_uuid: str, doc: dict[str, Any]) -> None:
        self._write("put_history", f"history:{vm_uuid}", {"vm_uuid": vm_uuid, "doc": doc})

    def update_history(self, vm_uuid: str, patch: dict[str, Any]) -> None:
        self._write("update_history", f"history:{vm_uuid}", {"vm_uuid": vm_uuid, "patch": patch})

    def get_history(self, vm_uuid: str) -> dict[str, Any] | None:
        queued = self._queued_view(f"history:{vm_uuid}")
        doc = self.primary.get_history(vm_uuid)
        if queued:
            for op, _, a in queued:
                if op == "put_history":
                    doc = dict(a["doc"])
                elif op == "update_history":
                    doc = {**(doc or {}), **a["patch"]}
        return doc

    def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        self._queued_view()
        return self.primary.history(limit)

    def history_mark(self) -> str:
        self._queued_view()
        return self.primary.history_mark()

    # -- leases ---------------------------------------------------------------------------------
    def put_lease(self, lease: Lease) -> None:
        self.primary.put_lease(lease)
        self._remember(lease)

    def get_lease(self, vm_uuid: str) -> Lease | None:
        queued = self._queued_view(f"lease:{vm_uuid}")
        lease = self._remember(self.primary.get_lease(vm_uuid))
        return self._overlay_lease(lease, queued) if queued else lease

    def update_lease(self, vm_uuid: str, **changes: Any) -> Lease | None:
        lifecycle.check_changes(changes)
        return self._lease_write("update_lease", vm_uuid, {"changes": changes})

    def transition(self, vm_uuid: str, src: str, dst: str, **changes: Any) -> Lease | None:
        move = lifecycle.lease_move(src, dst)
        lifecycle.check_changes(changes)
        if move.claim:
            # A claim is a compare-and-set: against a state the backend has not
            # seen yet it is unsafe, and it can never wait in the outbox.
            if self._queued_view(f"lease:{vm_uuid}"):
                raise StoreUnavailable(f"lease {vm_uuid} has queued changes not yet replayed")
            return self._remember(self.primary.transition(vm_uuid, src, dst, **changes))
        return self._lease_write("transition", vm_uuid,
                                 {"src": str(src), "dst": str(dst), "changes": changes})

    def _swap_lease(self, vm_uuid: str, expect_state: str | None,
                    changes: dict[str, Any]) -> Lease | None:
        raise NotImplementedError("the outbox changes leases through update_lease / transition")

    def _lease_write(self, op: str, vm_uuid: str, args: dict[str, Any]) -> Lease | None:
        """A lease write applied now or queued; answers the lease as it is (or will be)."""
        changes = args["changes"]
        unknown = set(changes) - set(Lease.__dataclass_fields__)
        if unknown or changes.get("vm_uuid", vm_uuid) != vm_uuid:
            # A bad call must fail now, not sit in the outbox until replay.
            raise TypeError(f"cannot change lease fields {sorted(unknown) or ['vm_uuid']}")
        queued, result = self._write(op, f"lease:{vm_uuid}", {"vm_uuid": vm_uuid, **args})
        if not queued:
            return self._remember(result)
        ops = self._pending_ops(f"lease:{vm_uuid}")
        if not ops:  # queued behind others, and already replayed
            try:
                return self._remember(self.primary.get_lease(vm_uuid))
            except StoreUnavailable:
                ops = [(op, f"lease:{vm_uuid}", args)]
        with self._seen_lock:
            seen = self._seen.get(vm_uuid)
        # Best effort: what this process last saw, with every queued change applied.
        return self._overlay_lease(seen, ops)

    def delete_lease(self, vm_uuid: str) -> None:
        self._write("delete_lease", f"lease:{vm_uuid}", {"vm_uuid": vm_uuid})

    def _overlaid_leases(self, queued: list[tuple[str, str, dict[str, Any]]]) -> list[Lease]:
        ops_by_key: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        for item in queued:
            ops_by_key.setdefault(item[1], []).append(item)
        out = []
        for lease in self.primary.leases():
            self._remember(lease)
            new = self._overlay_lease(lease, ops_by_key.get(f"lease:{lease.vm_uuid}", []))
            if new is not None:
                out.append(new)
        return out

    def leases(self, *, name: str | None = None, state: str | None = None,
               os: str | None = None) -> list[Lease]:
        queued = self._queued_view()
        if queued is None:
            return self.primary.leases(name=name, state=state, os=os)
        return [lease for lease in self._overlaid_leases(queued)
                if (name is None or lease.name == name)
                and (state is None or lease.state == state)
                and (os is None or lease.os == os)]

    def due_leases(self, now: float) -> list[Lease]:
        queued = self._queued_view()
        if queued is None:
            return self.primary.due_leases(now)
        return sorted((lease for lease in self._overlaid_leases(queued)
                       if lease.state == LEASE_ACTIVE and lease.expires <= now),
                      key=lambda lease: (lease.expires, lease.vm_uuid))

    # -- reservations ---------------------------------------------------------------------------
    def reserve(self, host_key: str, wanted: list[Reservation],
                free_slots: FreeSlots, quota: QuotaCheck | None = None) -> list[Reservation]:
        return self.primary.reserve(host_key, wanted, free_slots, quota)

    def reserve_many(self, batches: list[tuple[str, list[Reservation], FreeSlots]],
                     quota: QuotaCheck | None = None) -> list[list[Reservation]]:
        return self.primary.reserve_many(batches, quota)

    def settle_reservation(self, res_id: str, *, vm_uuid: str | None = None,
                           settle_secs: float = 0.0) -> None:
        until = time.time() + settle_secs if settle_secs > 0 else None
        self._write("settle_reservation", f"resv:{res_id}",
                    {"res_id": res_id, "vm_uuid": vm_uuid, "settle_until": until})

    def drop_reservations(self, request_id: str) -> int:
        queued, result = self._write("drop_reservations", f"resv-request:{request_id}",
                                     {"request_id": request_id})
        if not queued:
            return int(result)
        # Not known until replay; report none dropped rather than guess.
        return 0

    def reservations(self, host_key: str | None = None) -> list[Reservation]:
        queued = self._queued_view()
        res = self.primary.reservations(host_key)
        if queued is None:
            return res
        now = time.time()
        for op, _, a in queued:
            if op == "drop_reservations":
                res = [r for r in res if r.request_id != a["request_id"]]
            elif op == "settle_reservation":
                for r in res:
                    if r.id == a["res_id"]:
                        r.settle_until = a["settle_until"] if a["settle_until"] else now
                        r.vm_uuid = a["vm_uuid"] or r.vm_uuid
        return [r for r in res if r.live(now)]

    # -- requests --------------------------------------------------------------------------------
    def put_request(self, req: RequestRecord) -> None:
        self.primary.put_request(req)

    def finish_request(self, request_id: str, state: str,
                       detail: dict[str, Any] | None = None) -> None:
        self._write("finish_request", f"request:{request_id}",
                    {"request_id": request_id, "state": state, "detail": detail or {}})

    def requests(self, state: str | None = None) -> list[RequestRecord]:
        queued = self._queued_view()
        if queued is None:
            return self.primary.requests(state)
        out = []
        for req in self.primary.requests():
            for op, key, a in queued:
                if op == "finish_request" and key == f"request:{req.id}":
                    req.state = a["state"]
                    req.detail.update(a["detail"])
            if state is None or req.state == state:
                out.append(req)
        return out

    def get_request(self, request_id: str) -> RequestRecord | None:
        req = self.primary.get_request(request_id)
        if req is not None:  # a finish still waiting in the outbox counts already
            for op, _, a in self._pending_ops(f"request:{request_id}"):
                if op == "finish_request":
                    req.state = a["state"]
                    req.detail.update(a["detail"])
        return req

    def note_request_vm(self, request_id: str, name: str, entry: dict[str, Any]) -> None:
        self.primary.note_request_vm(request_id, name, entry)  # progress only: never queued

    # -- API tokens (new work: straight to the backend, never queued) ---------------------------
    def put_token(self, token: Token) -> None:
        self.primary.put_token(token)

    def token_by_hash(self, token_hash: str) -> Token | None:
        return self.primary.token_by_hash(token_hash)

    def tokens(self) -> list[Token]:
        return self.primary.tokens()

    def revoke_token(self, token_id: str, when: float) -> bool:
        return self.primary.revoke_token(token_id, when)

    # -- TTL locks ------------------------------------------------------------------------------
    def acquire_lock(self, name: str, holder: str, ttl: float) -> bool:
        return self.primary.acquire_lock(name, holder, ttl)

    def release_lock(self, name: str, holder: str) -> None:
        self.primary.release_lock(name, holder)

    def lock_holder(self, name: str) -> str | None:
        return self.primary.lock_holder(name)

    def deployment_id(self, new: str | None) -> str | None:
        return self.primary.deployment_id(new)  # never queued: an identity is never guessed

    # -- operator documents: never queued, an operator must see a refusal -----------------------
    def get_doc(self, key: str) -> dict[str, Any] | None:
        return self.primary.get_doc(key)

    def update_doc(self, key: str, edit: DocEdit) -> dict[str, Any] | None:
        return self.primary.update_doc(key, edit)

    # -- lifecycle ---------------------------------------------------------------------------------
    def ping(self) -> None:
        self.primary.ping()
        self._try_replay()

    def ping_write(self) -> None:
        self.primary.ping_write()

    def close(self) -> None:
        self.primary.close()
        self._db.close()

