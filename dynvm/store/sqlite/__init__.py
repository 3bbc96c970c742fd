"""SQLite backend: the embedded default, shared by every process on one machine.

One state file; a module per subject (`history`, `leases`, ...), each a
repository over the one connection keeper of `db`, whose transactions take
the write lock up front, so a repository may read another subject's table in
its transaction (a quota reads leases while reserving).
"""

from __future__ import annotations

import os
from collections.abc import Hashable

from dynvm.core.store import Store, StoreUnavailable
from dynvm.store.sqlite.db import SHARED_SCHEMA, SqliteDb, SqliteRepository
from dynvm.store.sqlite.documents import SqliteDocuments
from dynvm.store.sqlite.fleet import SqliteFleet
from dynvm.store.sqlite.history import SqliteHistory
from dynvm.store.sqlite.leases import SqliteLeases
from dynvm.store.sqlite.locks import SqliteLocks
from dynvm.store.sqlite.owner_keys import SqliteOwnerKeys
from dynvm.store.sqlite.queue import SqliteQueue
from dynvm.store.sqlite.requests import SqliteRequests
from dynvm.store.sqlite.reservations import SqliteReservations
from dynvm.store.sqlite.static_pools import SqliteStaticPools
from dynvm.store.sqlite.tokens import SqliteTokens

# Subject -> its repository on this backend (the subjects `dynvm.core.store.Store` declares).
REPOSITORIES: dict[str, type[SqliteRepository]] = {
    "history": SqliteHistory,
    "leases": SqliteLeases,
    "reservations": SqliteReservations,
    "requests": SqliteRequests,
    "queue": SqliteQueue,
    "tokens": SqliteTokens,
    "locks": SqliteLocks,
    "documents": SqliteDocuments,
    "fleet": SqliteFleet,
    "owner_keys": SqliteOwnerKeys,
}

# The whole state file, static-pool documents (`pools=`) included: every process that
# opens the file, and every reopening of a deleted one, applies all of it.
_TABLES: tuple[type[SqliteRepository], ...] = (*REPOSITORIES.values(), SqliteStaticPools)
SCHEMA = SHARED_SCHEMA + "".join(cls.SCHEMA for cls in _TABLES)


def state_file(path: str) -> SqliteDb:
    """A connection keeper on the state file at `path`, with its whole schema."""
    return SqliteDb(path, SCHEMA)


class SqliteStore(Store):
    """The store on one SQLite file (default `.dynvm/dynvm.sqlite`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = state_file(path)
        super().__init__({name: cls(self._db) for name, cls in REPOSITORIES.items()})

    def ping(self) -> None:
        # Reads the schema, so a damaged or replaced file fails here; `SELECT 1`
        # answers without touching the file at all.
        self._db.query("SELECT count(*) FROM sqlite_master")

    def ping_write(self) -> None:
        # A real write through the WAL: a read-only or deleted file and a held write
        # lock fail here (the last after the busy timeout). A full disk may still
        # take this tiny write in the WAL's free frames, so the last refused real
        # write counts too, until a real write succeeds again.
        with self._db.tx(probe=True) as c:
            c.execute("INSERT OR REPLACE INTO locks(name, holder, expires) VALUES (?,?,?)",
                      ("dynvm-write-probe", f"pid {os.getpid()}", 0.0))
        fault = self._db.write_fault
        if fault is not None:
            raise StoreUnavailable(f"SQLite store {self._db.path}: the last write failed "
                                   f"({fault}) and none has succeeded since")

    def generation(self) -> Hashable:
        return self._db.generation()

    def close(self) -> None:
        self._db.close()


__all__ = ["REPOSITORIES", "SCHEMA", "SqliteStaticPools", "SqliteStore", "state_file"]
