"""Where `pools=` documents go: the seed's static-pool bucket, or a table beside SQLite state.

With the four `static.*` keys (as in the seed's file) the documents go to that
Couchbase bucket, keyed by the VM's IP, where the static server pool manager
reads them. Without them, a SQLite deployment keeps them in a table of its
own state file; a Couchbase deployment without them cannot take `pools=`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from couchbase.exceptions import CasMismatchException, DocumentNotFoundException
from couchbase.options import RemoveOptions

from dynvm.config import CouchbaseConfig, StaticPoolConfig, StoreConfig
from dynvm.store.couchbase import CollectionLike, _real_collection

RECONNECT_SECS = 30.0  # after a failed connect to the static pools' cluster

_TABLE = """CREATE TABLE IF NOT EXISTS static_pool (
    ip TEXT PRIMARY KEY,
    vm_uuid TEXT NOT NULL,
    doc TEXT NOT NULL
)"""


class SqliteStaticPools:
    """Static-pool documents in a table of the SQLite state file."""

    def __init__(self, path: str) -> None:
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as c:
            c.execute(_TABLE)

    def _connect(self) -> sqlite3.Connection:
        # Rare writes (one per handed-out VM): a short-lived connection per call
        # is safe across threads and forked workers.
        return sqlite3.connect(self.path, timeout=30.0)

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        c = self._connect()
        try:
            with c:
                return fn(c)
        finally:
            c.close()

    def add(self, ip: str, doc: dict[str, Any]) -> None:
        self._run(lambda c: c.execute(
            "INSERT OR REPLACE INTO static_pool(ip, vm_uuid, doc) VALUES (?,?,?)",
            (ip, str(doc.get("vm_uuid", "")), json.dumps(doc))))

    def get(self, ip: str) -> dict[str, Any] | None:
        row = self._run(lambda c: c.execute(
            "SELECT doc FROM static_pool WHERE ip=?", (ip,)).fetchone())
        return json.loads(row[0]) if row else None

    def remove(self, ip: str, vm_uuid: str) -> bool:
        cur = self._run(lambda c: c.execute(
            "DELETE FROM static_pool WHERE ip=? AND vm_uuid=?", (ip, vm_uuid)))
        return cur.rowcount > 0

    def close(self) -> None:
        pass


class CouchbaseStaticPools:
    """Static-pool documents in the bucket of the `static.*` keys, keyed by IP."""

    def __init__(self, collection: CollectionLike | None = None, *,
                 factory: Callable[[], CollectionLike] | None = None,
                 retry_secs: float = RECONNECT_SECS) -> None:
        if (collection is None) == (factory is None):
            raise ValueError("pass exactly one of collection or factory")
        self._coll = collection
        self._factory = factory
        self._lock = threading.Lock()
        self.retry_secs = retry_secs
        self._down_until = 0.0
        self._down_reason = ""

    @classmethod
    def connect(cls, cfg: StaticPoolConfig) -> CouchbaseStaticPools:
        cb = CouchbaseConfig(server=cfg.server, bucket=cfg.bucket, username=cfg.username,
                             password=cfg.password)
        return cls(factory=lambda: _real_collection(cb, 5.0, 2.5))

    def _collection(self) -> CollectionLike:
        """Connect on first use; after a failed connect, fail fast for `retry_secs`.

        Without that, every VM of a request would wait out its own connect
        timeout while the static pools' cluster is unreachable.
        """
        with self._lock:
            if self._coll is None:
                assert self._factory is not None
                if time.monotonic() < self._down_until:
                    raise ConnectionError(f"static pools unreachable: {self._down_reason}")
                try:
                    self._coll = self._factory()
                except Exception as exc:
                    self._down_until = time.monotonic() + self.retry_secs
                    self._down_reason = str(exc) or type(exc).__name__
                    raise
            return self._coll

    def add(self, ip: str, doc: dict[str, Any]) -> None:
        self._collection().upsert(ip, dict(doc))

    def get(self, ip: str) -> dict[str, Any] | None:
        try:
            return self._collection().get(ip).content_as[dict]
        except DocumentNotFoundException:
            return None

    def remove(self, ip: str, vm_uuid: str) -> bool:
        coll = self._collection()
        try:
            res = coll.get(ip)
            if res.content_as[dict].get("vm_uuid") != vm_uuid:
                return False  # the address went to another VM since
            coll.remove(ip, RemoveOptions(cas=res.cas))
            return True
        except (DocumentNotFoundException, CasMismatchException):
            return False

    def close(self) -> None:
        if self._factory is not None:
            self._coll = None


def open_static_pools(cfg: StoreConfig) -> SqliteStaticPools | CouchbaseStaticPools | None:
    """The configured target of `pools=` documents; None when there is none."""
    if cfg.static_pool is not None:
        return CouchbaseStaticPools.connect(cfg.static_pool)
    if cfg.backend == "sqlite":
        return SqliteStaticPools(cfg.sqlite_path)
    return None
