"""Where `pools=` documents go: the seed's static-pool bucket, or a table beside SQLite state.

With the four `static.*` keys (as in the seed's file) the documents go to that
Couchbase bucket, keyed by the VM's IP, where the static server pool manager
reads them. Without them, a SQLite deployment keeps them in a table of its
own state file; a Couchbase deployment without them cannot take `pools=`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynvm.config import StoreConfig

if TYPE_CHECKING:
    from dynvm.store.static_pool_cb import CouchbaseStaticPools

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


def open_static_pools(cfg: StoreConfig) -> SqliteStaticPools | CouchbaseStaticPools | None:
    """The configured target of `pools=` documents; None when there is none."""
    if cfg.static_pool is not None:
        from dynvm.store.static_pool_cb import CouchbaseStaticPools  # the SDK only when used

        return CouchbaseStaticPools.connect(cfg.static_pool)
    if cfg.backend == "sqlite":
        return SqliteStaticPools(cfg.sqlite_path)
    return None
