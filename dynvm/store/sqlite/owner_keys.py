"""Owners' SSH keys in SQLite: the `owner_keys` table, one row per owner and key."""

from __future__ import annotations

import json

from dynvm.core.store import OwnerKey, OwnerKeys, TooManyKeys
from dynvm.store.sqlite.db import SqliteRepository, dumps


class SqliteOwnerKeys(SqliteRepository, OwnerKeys):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS owner_keys (
        owner TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        added REAL NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (owner, fingerprint)
    );
    """

    def add(self, key: OwnerKey, limit: int) -> bool:
        with self._db.tx() as c:
            if c.execute("SELECT 1 FROM owner_keys WHERE owner=? AND fingerprint=?",
                         (key.owner, key.fingerprint)).fetchone():
                return False
            (count,) = c.execute("SELECT count(*) FROM owner_keys WHERE owner=?",
                                 (key.owner,)).fetchone()
            if count >= limit:
                raise TooManyKeys(f"an owner may keep at most {limit} keys")
            c.execute("INSERT INTO owner_keys(owner, fingerprint, added, data) VALUES (?,?,?,?)",
                      (key.owner, key.fingerprint, key.added, dumps(key.to_dict())))
            return True

    def of_owner(self, owner: str) -> list[OwnerKey]:
        rows = self._db.query("SELECT data FROM owner_keys WHERE owner=? "
                              "ORDER BY added, fingerprint", (owner,))
        return [OwnerKey.from_dict(json.loads(r[0])) for r in rows]

    def remove(self, owner: str, fingerprint: str) -> bool:
        with self._db.tx() as c:
            cur = c.execute("DELETE FROM owner_keys WHERE owner=? AND fingerprint=?",
                            (owner, fingerprint))
            return cur.rowcount > 0
