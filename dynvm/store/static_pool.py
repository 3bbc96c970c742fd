"""Where `pools=` documents go: the seed's static-pool bucket, or a table beside SQLite state.

With the four `static.*` keys (as in the seed's file) the documents go to that
Couchbase bucket, keyed by the VM's IP, where the static server pool manager
reads them. Without them, a SQLite deployment keeps them in a table of its
own state file; a Couchbase deployment without them cannot take `pools=`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dynvm.config import StoreConfig
from dynvm.store.sqlite import SCHEMA, SqliteDb

if TYPE_CHECKING:
    from dynvm.store.static_pool_cb import CouchbaseStaticPools


class SqliteStaticPools:
    """Static-pool documents in the `static_pool` table of the SQLite state file.

    Through the state file's own connection keeper: the file is created private,
    and a file deleted under the service is reopened with the whole schema.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SqliteDb(path, SCHEMA)

    def add(self, ip: str, doc: dict[str, Any]) -> None:
        with self._db.tx() as c:
            c.execute("INSERT OR REPLACE INTO static_pool(ip, vm_uuid, doc) VALUES (?,?,?)",
                      (ip, str(doc.get("vm_uuid", "")), json.dumps(doc)))

    def get(self, ip: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT doc FROM static_pool WHERE ip=?", (ip,))
        return json.loads(rows[0][0]) if rows else None

    def remove(self, ip: str, vm_uuid: str) -> bool:
        with self._db.tx() as c:
            cur = c.execute("DELETE FROM static_pool WHERE ip=? AND vm_uuid=?", (ip, vm_uuid))
            return cur.rowcount > 0

    def close(self) -> None:
        self._db.close()


def open_static_pools(cfg: StoreConfig) -> SqliteStaticPools | CouchbaseStaticPools | None:
    """The configured target of `pools=` documents; None when there is none."""
    if cfg.static_pool is not None:
        from dynvm.store.static_pool_cb import CouchbaseStaticPools  # the SDK only when used

        return CouchbaseStaticPools.connect(cfg.static_pool)
    if cfg.backend == "sqlite":
        return SqliteStaticPools(cfg.sqlite_path)
    return None
