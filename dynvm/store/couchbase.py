"""Couchbase backend (SDK 4.x), key-value only, CAS on every read-modify-write.

Longer than 400 lines on purpose: it is the whole Store port over one key layout
(below) and one CAS-retry helper, a section per subject.

Key layout (all keys may carry an optional prefix, used by tests to isolate runs):

- `<vm uuid>`          history document, in the seed's shape, so the existing
                       N1QL reports keep working;
- `lease::<uuid>`      `{"dynvm": "lease", "lease": {...}}`;
- `leases::index`      uuids of all leases (so listing needs no N1QL);
- `resv::<host_key>`   every reservation of one member host in one document,
                       so `reserve` is a single CAS read-modify-write;
- `resv::hosts`        host keys that have a reservation document;
- `req::<id>`, `requests::index`   requests in flight;
- `history::index`     the most recent history uuids, for `history()`;
- `history::mark`      a random token replaced after every history write
                       (`history_mark()`);
- `lock::<name>`       TTL lock (leader, name, heartbeat), with a document expiry;
- `doc::<key>`         `{"dynvm": "doc", "doc": {...}}`: operator state such as
                       host drains and maintenance runs.
- `quota::<owner>`     reservations of an owner being placed right now (see
                       `reserve` with a quota);
- `token::<hash>`, `tokens::index`   API tokens (only the secret's hash).

dynvm's own documents nest their data under a key instead of spreading fields
at the top level, so a report such as `SELECT ... WHERE state="available"`
only ever matches history documents.

Index entries are added before the document they point at and removed after
it, so a crash leaves at worst an entry without a document (skipped, and
pruned after a grace period), never a document nobody can find.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from couchbase.exceptions import (
    AmbiguousTimeoutException,
    CasMismatchException,
    CouchbaseException,
    DocumentExistsException,
    DocumentLockedException,
    DocumentNotFoundException,
    RequestCanceledException,
    ServiceUnavailableException,
    TemporaryFailException,
    TimeoutException,
    UnAmbiguousTimeoutException,
)
from couchbase.options import InsertOptions, RemoveOptions, ReplaceOptions

from dynvm.config import CouchbaseConfig
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
    owner_usage,
    plan_reservations,
)

# Worth retrying: the cluster may answer on the next attempt.
_TRANSIENT = (UnAmbiguousTimeoutException, AmbiguousTimeoutException, TimeoutException,
              ServiceUnavailableException, TemporaryFailException, RequestCanceledException,
              DocumentLockedException)
# Handled by the CAS loops, not connection trouble.
_DOC_LEVEL = (DocumentNotFoundException, DocumentExistsException, CasMismatchException)

HISTORY_INDEX_MAX = 5000  # history() answers from the newest this many documents
INDEX_GRACE_SECS = 3600.0  # an index entry without a document is pruned after this
REQUEST_KEEP = timedelta(days=7)  # finished request documents expire after this
QUOTA_PENDING_SECS = 60.0  # a quota claim of a process that died between its two steps

_KEEP = object()  # mutation callback: leave the document as it is
_DELETE = object()  # mutation callback: remove the document


class CollectionLike(Protocol):
    """The part of `couchbase.collection.Collection` this adapter uses."""

    def get(self, key: str, *opts: Any, **kwargs: Any) -> Any: ...
    def insert(self, key: str, value: Any, *opts: Any, **kwargs: Any) -> Any: ...
    def upsert(self, key: str, value: Any, *opts: Any, **kwargs: Any) -> Any: ...
    def replace(self, key: str, value: Any, *opts: Any, **kwargs: Any) -> Any: ...
    def remove(self, key: str, *opts: Any, **kwargs: Any) -> Any: ...


def connection_string(server: str) -> str:
    """The seed wrote a bare host ("127.0.0.1"); the SDK wants a couchbase:// URL."""
    return server if "://" in server else f"couchbase://{server}"


def _real_collection(cfg: CouchbaseConfig, connect_secs: float, kv_secs: float) -> CollectionLike:
    from couchbase.auth import PasswordAuthenticator
    from couchbase.cluster import Cluster
    from couchbase.options import ClusterOptions, ClusterTimeoutOptions

    timeouts = ClusterTimeoutOptions(
        connect_timeout=timedelta(seconds=connect_secs),
        bootstrap_timeout=timedelta(seconds=connect_secs),
        kv_timeout=timedelta(seconds=kv_secs))
    opts = ClusterOptions(PasswordAuthenticator(cfg.username, cfg.password),
                          timeout_options=timeouts)
    cluster = Cluster(connection_string(cfg.server), opts)
    cluster.wait_until_ready(timedelta(seconds=connect_secs))
    return cluster.bucket(cfg.bucket).scope(cfg.scope).collection(cfg.collection)


class CouchbaseStore(Store):
    """The Store contract on a Couchbase collection (or the test stand-in).

    Pass a ready `collection`, or a `factory` that builds one; the factory is
    called lazily, again after a failure and again in a forked child, so an
    unreachable cluster is a `StoreUnavailable` on use, never a crash at start.
    """

    def __init__(self, collection: CollectionLike | None = None, *,
                 factory: Callable[[], CollectionLike] | None = None,
                 prefix: str = "", cas_retries: int = 8, io_retries: int = 3,
                 backoff_secs: float = 0.02, breaker_secs: float = 0.0) -> None:
        if (collection is None) == (factory is None):
            raise ValueError("pass exactly one of collection or factory")
        self._factory = factory
        self._coll: CollectionLike | None = collection
        self._pid = os.getpid()
        self._conn_lock = threading.Lock()
        self.prefix = prefix
        self.cas_retries = cas_retries
        self.io_retries = io_retries
        self.backoff_secs = backoff_secs
        # After an outage is detected, fail fast for this long instead of
        # letting every caller wait out its own timeouts.
        self.breaker_secs = breaker_secs
        self._down_until = 0.0
        self._known_hosts: set[str] = set()

    @classmethod
    def connect(cls, cfg: CouchbaseConfig, *, connect_secs: float = 5.0,
                kv_secs: float = 2.5, breaker_secs: float = 2.0,
                prefix: str = "") -> CouchbaseStore:
        """A store on the real cluster of `cfg`; connects on first use."""
        return cls(factory=lambda: _real_collection(cfg, connect_secs, kv_secs),
                   breaker_secs=breaker_secs, prefix=prefix)

    # -- plumbing -----------------------------------------------------------------
    def _k(self, key: str) -> str:
        return self.prefix + key

    def _collection(self) -> CollectionLike:
        if self._factory is None:
            assert self._coll is not None
            return self._coll
        pid = os.getpid()
        if self._coll is not None and self._pid == pid:
            return self._coll
        with self._conn_lock:
            if self._coll is None or self._pid != pid:
                try:
                    self._coll = self._factory()
                    self._pid = pid
                except CouchbaseException as exc:
                    self._coll = None
                    raise self._down(f"cannot connect to Couchbase: {exc}") from exc
            return self._coll

    def _down(self, message: str) -> StoreUnavailable:
        if self.breaker_secs > 0:
            self._down_until = time.monotonic() + self.breaker_secs
        return StoreUnavailable(message)

    def _sleep(self, attempt: int) -> None:
        base = self.backoff_secs * (2 ** min(attempt, 5))
        time.sleep(base * (0.5 + random.random()))

    def _io(self, op: str, key: str, *args: Any) -> Any:
        """One SDK call with bounded retries on timeouts and connection trouble."""
        if self._down_until and time.monotonic() < self._down_until:
            raise StoreUnavailable("Couchbase is unavailable (recent failures; retrying shortly)")
        last: Exception | None = None
        for attempt in range(max(1, self.io_retries)):
            coll = self._collection()
            try:
                result = getattr(coll, op)(key, *args)
                self._down_until = 0.0
                return result
            except _DOC_LEVEL:
                self._down_until = 0.0
                raise
            except _TRANSIENT as exc:
                last = exc
                if attempt + 1 < self.io_retries:
                    self._sleep(attempt)
            except CouchbaseException as exc:
                raise self._down(f"Couchbase {op} {key}: {exc}") from exc
        raise self._down(f"Couchbase {op} {key} failed after {self.io_retries} attempts: {last}")

    def _get(self, key: str) -> tuple[dict[str, Any] | None, int | None]:
        try:
            res = self._io("get", self._k(key))
        except DocumentNotFoundException:
            return None, None
        return res.content_as[dict], res.cas

    def _mutate(self, key: str, fn: Callable[[dict[str, Any] | None], Any],
                expiry: timedelta | None = None) -> None:
        """Read, let `fn` compute the new document, write back under CAS; retry on races.

        `fn` gets the current document (None if missing) and returns the new
        one, `_KEEP` or `_DELETE`. It may run several times, so it must only
        record its outcome, never accumulate it.
        """
        full = self._k(key)
        for attempt in range(self.cas_retries):
            doc, cas = self._get(key)
            new = fn(doc)
            if new is _KEEP or (new is _DELETE and doc is None):
                return
            try:
                if new is _DELETE:
                    self._io("remove", full, RemoveOptions(cas=cas))
                elif doc is None:
                    opts = InsertOptions(expiry=expiry) if expiry else InsertOptions()
                    self._io("insert", full, new, opts)
                elif expiry:
                    self._io("replace", full, new, ReplaceOptions(cas=cas, expiry=expiry))
                else:
                    self._io("replace", full, new, ReplaceOptions(cas=cas))
                return
            except _DOC_LEVEL:
                self._sleep(attempt)
        raise Conflict(f"Couchbase document {full} kept changing under us "
                       f"({self.cas_retries} attempts)")

    # -- indexes ------------------------------------------------------------------
    def _index_add(self, index: str, member: str) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            doc = doc or {"dynvm": "index", "keys": {}}
            if member in doc["keys"]:
                return _KEEP
            doc["keys"][member] = time.time()
            return doc
        self._mutate(index, fn)

    def _index_remove(self, index: str, members: set[str]) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is None or not members & doc["keys"].keys():
                return _KEEP
            for m in members:
                doc["keys"].pop(m, None)
            return doc
        self._mutate(index, fn)

    def _index_list(self, index: str) -> dict[str, float]:
        doc, _ = self._get(index)
        return dict(doc["keys"]) if doc else {}

    def _load_all(self, index: str, prefix: str) -> list[dict[str, Any]]:
        """Every document listed in `index`; prunes long-dangling entries."""
        members = self._index_list(index)
        out, dangling = [], set()
        for member, added in sorted(members.items()):
            doc, _ = self._get(prefix + member)
            if doc is None:
                if added < time.time() - INDEX_GRACE_SECS:
                    dangling.add(member)
                continue
            out.append(doc)
        if dangling:
            self._index_remove(index, dangling)
        return out

    # -- history --------------------------------------------------------------------
    def _history_index_add(self, vm_uuid: str, created: float) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            doc = doc or {"dynvm": "history-index", "items": []}
            if any(u == vm_uuid for u, _ in doc["items"]):
                return _KEEP
            items = doc["items"] + [[vm_uuid, created]]
            items.sort(key=lambda i: i[1], reverse=True)
            doc["items"] = items[:HISTORY_INDEX_MAX]
            return doc
        self._mutate("history::index", fn)

    def put_history(self, vm_uuid: str, doc: dict[str, Any]) -> None:
        self._history_index_add(vm_uuid, float(doc.get("created_time") or time.time()))
        self._io("upsert", self._k(vm_uuid), dict(doc))
        self._new_history_mark()

    def update_history(self, vm_uuid: str, patch: dict[str, Any]) -> None:
        existing, _ = self._get(vm_uuid)
        if existing is None:
            created = (patch.get("created_time") or time.time())
            self._history_index_add(vm_uuid, float(created))

        def fn(doc: dict[str, Any] | None) -> Any:
            merged = dict(doc or {})
            merged.update(patch)
            return merged
        self._mutate(vm_uuid, fn)
        self._new_history_mark()

    def get_history(self, vm_uuid: str) -> dict[str, Any] | None:
        return self._get(vm_uuid)[0]

    def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        doc, _ = self._get("history::index")
        items = doc["items"] if doc else []
        out: list[tuple[float, str, dict[str, Any]]] = []
        for vm_uuid, created in items[: max(0, int(limit))]:
            h, _ = self._get(vm_uuid)
            if h is not None:
                out.append((float(h.get("created_time") or created), vm_uuid, h))
        out.sort(key=lambda t: (-t[0], t[1]))
        return [h for _, _, h in out]

    def _new_history_mark(self) -> None:
        # A plain upsert of a random token: any write changes it, so writers never contend on it.
        self._io("upsert", self._k("history::mark"), {"dynvm": "mark", "mark": uuid.uuid4().hex})

    def history_mark(self) -> str:
        doc, _ = self._get("history::mark")
        return str(doc["mark"]) if doc else ""

    # -- leases -----------------------------------------------------------------------
    def put_lease(self, lease: Lease) -> None:
        lifecycle.check_birth(lease.state)
        self._index_add("leases::index", lease.vm_uuid)
        self._io("upsert", self._k(f"lease::{lease.vm_uuid}"),
                 {"dynvm": "lease", "lease": lease.to_dict()})

    def get_lease(self, vm_uuid: str) -> Lease | None:
        doc, _ = self._get(f"lease::{vm_uuid}")
        return Lease.from_dict(doc["lease"]) if doc else None

    def _swap_lease(self, vm_uuid: str, expect_state: str | None,
                      changes: dict[str, Any]) -> Lease | None:
        if "vm_uuid" in changes and changes["vm_uuid"] != vm_uuid:
            raise ValueError("a lease's vm_uuid cannot change")
        result: list[Lease | None] = [None]

        def fn(doc: dict[str, Any] | None) -> Any:
            result[0] = None
            if doc is None:
                return _KEEP
            lease = Lease.from_dict(doc["lease"])
            if expect_state is not None and lease.state != expect_state:
                return _KEEP
            lease = lease.with_(**changes)
            result[0] = lease
            return {"dynvm": "lease", "lease": lease.to_dict()}
        self._mutate(f"lease::{vm_uuid}", fn)
        return result[0]

    def delete_lease(self, vm_uuid: str) -> None:
        try:
            self._io("remove", self._k(f"lease::{vm_uuid}"))
        except DocumentNotFoundException:
            pass
        self._index_remove("leases::index", {vm_uuid})

    def leases(self, *, name: str | None = None, state: str | None = None,
               os: str | None = None) -> list[Lease]:
        out = [Lease.from_dict(d["lease"]) for d in self._load_all("leases::index", "lease::")]
        out = [lease for lease in out
               if (name is None or lease.name == name)
               and (state is None or lease.state == state)
               and (os is None or lease.os == os)]
        return sorted(out, key=lambda lease: (lease.expires, lease.vm_uuid))

    def due_leases(self, now: float) -> list[Lease]:
        return [lease for lease in self.leases(state=LEASE_ACTIVE) if lease.expires <= now]

    # -- reservations -------------------------------------------------------------------
    def _hosts(self) -> list[str]:
        return sorted(self._index_list("resv::hosts"))

    def reserve(self, host_key: str, wanted: list[Reservation],
                free_slots: FreeSlots, quota: QuotaCheck | None = None) -> list[Reservation]:
        if quota is None:
            return self._reserve_host(host_key, wanted, free_slots)
        # Key-value only, so no transaction spans the owner and the host: every
        # increase of an owner's usage first goes through one CAS on the owner's
        # document (`pending` claims), then into the host's document, then the
        # claim is dropped. A concurrent caller always sees a wanted VM in one
        # place or the other, so the quota is never exceeded; a claim left by a
        # process that died in between lapses after QUOTA_PENDING_SECS.
        ids = {w.id for w in wanted}
        granted: list[list[Reservation]] = [[]]

        def claim(doc: dict[str, Any] | None) -> Any:
            now = time.time()
            pending = {k: v for k, v in (doc or {}).get("pending", {}).items()
                       if v["until"] > now and k not in ids}
            live = self.reservations()
            seen = {r.id for r in live}
            live += [Reservation.from_dict(v["r"]) for k, v in pending.items() if k not in seen]
            mine, owned = owner_usage(quota.owner, live, self.leases())
            take = wanted[: max(0, int(quota.room(mine, owned)))]
            granted[0] = take
            for w in take:
                pending[w.id] = {"r": w.to_dict(), "until": now + QUOTA_PENDING_SECS}
            return {"dynvm": "quota", "owner": quota.owner, "pending": pending}
        key = f"quota::{quota.owner}"
        self._mutate(key, claim)
        try:
            return self._reserve_host(host_key, granted[0], free_slots) if granted[0] else []
        finally:
            def unclaim(doc: dict[str, Any] | None) -> Any:
                if doc is None or not ids & doc.get("pending", {}).keys():
                    return _KEEP
                doc["pending"] = {k: v for k, v in doc["pending"].items() if k not in ids}
                return doc
            self._mutate(key, unclaim)

    def _reserve_host(self, host_key: str, wanted: list[Reservation],
                      free_slots: FreeSlots) -> list[Reservation]:
        if host_key not in self._known_hosts:
            self._index_add("resv::hosts", host_key)
            self._known_hosts.add(host_key)
        result: list[list[Reservation]] = [[]]

        def fn(doc: dict[str, Any] | None) -> Any:
            now = time.time()
            items = [Reservation.from_dict(x) for x in (doc or {}).get("items", [])]
            live, already, taken = plan_reservations(items, wanted, free_slots, None, now)
            result[0] = already + taken
            if doc is not None and not taken and len(live) == len(items):
                return _KEEP
            return {"dynvm": "reservations", "host_key": host_key,
                    "items": [r.to_dict() for r in live + taken]}
        self._mutate(f"resv::{host_key}", fn)
        return result[0]

    def _edit_reservations(self, edit: Callable[[list[Reservation]], list[Reservation] | None],
                           stop_early: bool) -> int:
        """Apply `edit` to every host's reservations; it returns the new list or None."""
        changed_total = 0
        for host_key in self._hosts():
            changed: list[int] = [0]

            def fn(doc: dict[str, Any] | None, host_key: str = host_key,
                   changed: list[int] = changed) -> Any:
                changed[0] = 0
                if doc is None:
                    return _KEEP
                items = [Reservation.from_dict(x) for x in doc.get("items", [])]
                new = edit(items)
                if new is None:
                    return _KEEP
                changed[0] = len(items) - len(new) or 1
                return {"dynvm": "reservations", "host_key": host_key,
                        "items": [r.to_dict() for r in new]}
            self._mutate(f"resv::{host_key}", fn)
            changed_total += changed[0]
            if stop_early and changed[0]:
                break
        return changed_total

    def settle_reservation(self, res_id: str, *, vm_uuid: str | None = None,
                           settle_secs: float = 0.0) -> None:
        def edit(items: list[Reservation]) -> list[Reservation] | None:
            if not any(r.id == res_id for r in items):
                return None
            now = time.time()
            out = []
            for r in items:
                if r.id == res_id:
                    if settle_secs <= 0:
                        continue
                    r.settle_until = now + settle_secs
                    if vm_uuid is not None:
                        r.vm_uuid = vm_uuid
                if r.live(now):
                    out.append(r)
            return out
        self._edit_reservations(edit, stop_early=True)

    def drop_reservations(self, request_id: str) -> int:
        def edit(items: list[Reservation]) -> list[Reservation] | None:
            keep = [r for r in items if r.request_id != request_id]
            return None if len(keep) == len(items) else keep
        return self._edit_reservations(edit, stop_early=False)

    def reservations(self, host_key: str | None = None) -> list[Reservation]:
        hosts = [host_key] if host_key is not None else self._hosts()
        now = time.time()
        out: list[Reservation] = []
        for hk in hosts:
            doc, _ = self._get(f"resv::{hk}")
            items = [Reservation.from_dict(x) for x in (doc or {}).get("items", [])]
            out.extend(sorted((r for r in items if r.live(now)), key=lambda r: r.id))
        return out

    # -- requests -------------------------------------------------------------------------
    def put_request(self, req: RequestRecord) -> None:
        self._index_add("requests::index", req.id)
        self._io("upsert", self._k(f"req::{req.id}"),
                 {"dynvm": "request", "request": req.to_dict()})

    def finish_request(self, request_id: str, state: str,
                       detail: dict[str, Any] | None = None) -> None:
        now = time.time()

        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is None:
                return _KEEP
            req = RequestRecord.from_dict(doc["request"])
            lifecycle.check_request_move(req.state, state)
            req.state = state
            req.finished = now
            if detail:
                req.detail.update(detail)
            return {"dynvm": "request", "request": req.to_dict()}
        # Finished requests expire on their own; the index prunes them later.
        self._mutate(f"req::{request_id}", fn, expiry=REQUEST_KEEP)

    def get_request(self, request_id: str) -> RequestRecord | None:
        doc, _ = self._get(f"req::{request_id}")
        return RequestRecord.from_dict(doc["request"]) if doc else None

    def note_request_vm(self, request_id: str, name: str, entry: dict[str, Any]) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is None:
                return _KEEP
            req = RequestRecord.from_dict(doc["request"])
            req.detail.setdefault("vms", {}).setdefault(name, {}).update(entry)
            return {"dynvm": "request", "request": req.to_dict()}
        self._mutate(f"req::{request_id}", fn)

    def requests(self, state: str | None = None) -> list[RequestRecord]:
        out = [RequestRecord.from_dict(d["request"])
               for d in self._load_all("requests::index", "req::")]
        out = [r for r in out if state is None or r.state == state]
        return sorted(out, key=lambda r: (r.started, r.id))

    # -- API tokens ---------------------------------------------------------------------------
    def put_token(self, token: Token) -> None:
        self._index_add("tokens::index", token.hash)
        self._io("upsert", self._k(f"token::{token.hash}"),
                 {"dynvm": "token", "token": token.to_dict()})

    def token_by_hash(self, token_hash: str) -> Token | None:
        doc, _ = self._get(f"token::{token_hash}")
        return Token.from_dict(doc["token"]) if doc else None

    def tokens(self) -> list[Token]:
        out = [Token.from_dict(d["token"]) for d in self._load_all("tokens::index", "token::")]
        return sorted(out, key=lambda t: (t.created, t.id))

    def revoke_token(self, token_id: str, when: float) -> bool:
        found = [t for t in self.tokens() if t.id == token_id]
        for token in found:
            def fn(doc: dict[str, Any] | None) -> Any:
                if doc is None:
                    return _KEEP
                t = Token.from_dict(doc["token"])
                if t.revoked is not None:
                    return _KEEP
                t.revoked = when
                return {"dynvm": "token", "token": t.to_dict()}
            self._mutate(f"token::{token.hash}", fn)
        return bool(found)

    # -- TTL locks -------------------------------------------------------------------------
    def acquire_lock(self, name: str, holder: str, ttl: float) -> bool:
        got = [False]

        def fn(doc: dict[str, Any] | None) -> Any:
            now = time.time()
            got[0] = False
            if doc is not None and doc.get("holder") != holder and doc.get("expires", 0) > now:
                return _KEEP
            got[0] = True
            return {"dynvm": "lock", "name": name, "holder": holder, "expires": now + ttl}
        # The document outlives the wall-clock TTL by a little: `expires` decides,
        # the server's expiry only cleans up after holders that vanished.
        self._mutate(f"lock::{name}", fn, expiry=timedelta(seconds=math.ceil(ttl) + 1))
        return got[0]

    def release_lock(self, name: str, holder: str) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is None or doc.get("holder") != holder:
                return _KEEP
            return _DELETE
        self._mutate(f"lock::{name}", fn)

    def lock_holder(self, name: str) -> str | None:
        doc, _ = self._get(f"lock::{name}")
        if doc and doc.get("expires", 0) > time.time():
            return str(doc["holder"])
        return None

    # -- deployment identity ---------------------------------------------------------------
    def deployment_id(self, new: str | None) -> str | None:
        if new is None:
            doc, _ = self._get("deployment")
            return str(doc["id"]) if doc and doc.get("id") else None
        got = [new]

        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is not None and doc.get("id"):
                got[0] = str(doc["id"])
                return _KEEP
            got[0] = new
            return {"dynvm": "deployment", "id": new}
        self._mutate("deployment", fn)
        return got[0]

    # -- operator documents ------------------------------------------------------------------
    def get_doc(self, key: str) -> dict[str, Any] | None:
        doc, _ = self._get(f"doc::{key}")
        return dict(doc["doc"]) if doc else None

    def update_doc(self, key: str, edit: DocEdit) -> dict[str, Any] | None:
        result: list[dict[str, Any] | None] = [None]

        def fn(doc: dict[str, Any] | None) -> Any:
            new = edit(dict(doc["doc"]) if doc else None)
            result[0] = new
            if new is None:
                return _DELETE
            return {"dynvm": "doc", "doc": new}
        self._mutate(f"doc::{key}", fn)
        return result[0]

    # -- lifecycle --------------------------------------------------------------------------
    def ping(self) -> None:
        self._get("dynvm::ping")

    def ping_write(self) -> None:
        self._io("upsert", self._k("dynvm::ping"), {"at": time.time()})

    def close(self) -> None:
        self._coll = None if self._factory is not None else self._coll
