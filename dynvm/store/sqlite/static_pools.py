"""`pools=` documents in the `static_pool` table of the SQLite state file.

Not a subject of the store: the static-pool documents belong to the seed's
static server pool manager (see `dynvm.store.static_pool`); without the
`static.*` keys a SQLite deployment keeps them beside its own state.
"""

from __future__ import annotations

import json
from typing import Any

from dynvm.store.sqlite.db import SqliteRepository


class SqliteStaticPools(SqliteRepository):
    """Static-pool documents keyed by IP, through the state file's own connection keeper:
    the file is created private, and a file deleted under the service is reopened with
    the whole schema."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS static_pool (
        ip TEXT PRIMARY KEY,
        vm_uuid TEXT NOT NULL,
        doc TEXT NOT NULL
    );
    """

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
