"""The Couchbase plumbing every Couchbase repository goes through: connection, retries, CAS.

`CouchbaseKv` owns the collection (connected lazily, again after a failure and
in a forked child), bounds every SDK call with retries and a breaker, and
offers the one read-modify-write under CAS (`mutate`) and the index documents
(lists of keys, so listing needs no N1QL) that the repositories build on.
"""

from __future__ import annotations

import os
import random
import threading
import time
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
from dynvm.core.store import Conflict, StoreUnavailable

# Worth retrying: the cluster may answer on the next attempt.
_TRANSIENT = (UnAmbiguousTimeoutException, AmbiguousTimeoutException, TimeoutException,
              ServiceUnavailableException, TemporaryFailException, RequestCanceledException,
              DocumentLockedException)
# Handled by the CAS loops, not connection trouble.
_DOC_LEVEL = (DocumentNotFoundException, DocumentExistsException, CasMismatchException)

INDEX_GRACE_SECS = 3600.0  # an index entry without a document is pruned after this

KEEP = object()  # mutation callback: leave the document as it is
DELETE = object()  # mutation callback: remove the document


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


def real_collection(cfg: CouchbaseConfig, connect_secs: float, kv_secs: float) -> CollectionLike:
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


class CouchbaseKv:
    """One collection (or the test stand-in), shared by every repository of a store.

    Pass a ready `collection`, or a `factory` that builds one; the factory is
    called lazily, again after a failure and again in a forked child, so an
    unreachable cluster is a `StoreUnavailable` on use, never a crash at start.
    Every key may carry `prefix` (tests use it to keep runs apart).
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

    def key(self, key: str) -> str:
        """The stored key of `key`: `io` takes stored keys, the other methods plain ones."""
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

    def io(self, op: str, key: str, *args: Any) -> Any:
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

    def get(self, key: str) -> tuple[dict[str, Any] | None, int | None]:
        try:
            res = self.io("get", self.key(key))
        except DocumentNotFoundException:
            return None, None
        return res.content_as[dict], res.cas

    def mutate(self, key: str, fn: Callable[[dict[str, Any] | None], Any],
               expiry: timedelta | None = None) -> None:
        """Read, let `fn` compute the new document, write back under CAS; retry on races.

        `fn` gets the current document (None if missing) and returns the new
        one, `KEEP` or `DELETE`. It may run several times, so it must only
        record its outcome, never accumulate it.
        """
        full = self.key(key)
        for attempt in range(self.cas_retries):
            doc, cas = self.get(key)
            new = fn(doc)
            if new is KEEP or (new is DELETE and doc is None):
                return
            try:
                if new is DELETE:
                    self.io("remove", full, RemoveOptions(cas=cas))
                elif doc is None:
                    opts = InsertOptions(expiry=expiry) if expiry else InsertOptions()
                    self.io("insert", full, new, opts)
                elif expiry:
                    self.io("replace", full, new, ReplaceOptions(cas=cas, expiry=expiry))
                else:
                    self.io("replace", full, new, ReplaceOptions(cas=cas))
                return
            except _DOC_LEVEL:
                self._sleep(attempt)
        raise Conflict(f"Couchbase document {full} kept changing under us "
                       f"({self.cas_retries} attempts)")

    # -- index documents: a crash leaves at worst an entry without a document ----------
    def index_add(self, index: str, member: str) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            doc = doc or {"dynvm": "index", "keys": {}}
            if member in doc["keys"]:
                return KEEP
            doc["keys"][member] = time.time()
            return doc
        self.mutate(index, fn)

    def index_remove(self, index: str, members: set[str]) -> None:
        def fn(doc: dict[str, Any] | None) -> Any:
            if doc is None or not members & doc["keys"].keys():
                return KEEP
            for m in members:
                doc["keys"].pop(m, None)
            return doc
        self.mutate(index, fn)

    def index_list(self, index: str) -> dict[str, float]:
        """The members of `index` with when each was added."""
        doc, _ = self.get(index)
        return dict(doc["keys"]) if doc else {}

    def load_all(self, index: str, prefix: str) -> list[dict[str, Any]]:
        """Every document listed in `index`; prunes long-dangling entries."""
        members = self.index_list(index)
        out, dangling = [], set()
        for member, added in sorted(members.items()):
            doc, _ = self.get(prefix + member)
            if doc is None:
                if added < time.time() - INDEX_GRACE_SECS:
                    dangling.add(member)
                continue
            out.append(doc)
        if dangling:
            self.index_remove(index, dangling)
        return out

    def close(self) -> None:
        self._coll = None if self._factory is not None else self._coll


class CouchbaseRepository:
    """One subject's repository over the store's shared `CouchbaseKv`."""

    def __init__(self, kv: CouchbaseKv) -> None:
        self._kv = kv
