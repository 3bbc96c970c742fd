"""Leases in SQLite: the `leases` table, the lease as JSON beside the columns it is found by."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from dynvm.core import lifecycle
from dynvm.core.store import LEASE_ACTIVE, Lease, Leases
from dynvm.store.sqlite.db import SqliteRepository, dumps


def owned_leases(c: sqlite3.Connection, owner: str) -> list[Lease]:
    """An owner's leases, read inside `c`'s transaction (the quota check of `reserve`)."""
    rows = c.execute("SELECT data FROM leases WHERE json_extract(data, '$.owner')=?",
                     (owner,)).fetchall()
    return [Lease.from_dict(json.loads(r[0])) for r in rows]


class SqliteLeases(SqliteRepository, Leases):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS leases (
        vm_uuid TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        os TEXT NOT NULL,
        expires REAL NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS leases_name ON leases(name);
    CREATE INDEX IF NOT EXISTS leases_state ON leases(state);
    CREATE INDEX IF NOT EXISTS leases_expires ON leases(expires);
    """

    @staticmethod
    def _write(c: sqlite3.Connection, lease: Lease) -> None:
        c.execute("INSERT OR REPLACE INTO leases(vm_uuid, name, state, os, expires, data) "
                  "VALUES (?,?,?,?,?,?)",
                  (lease.vm_uuid, lease.name, lease.state, lease.os, float(lease.expires),
                   dumps(lease.to_dict())))

    def put(self, lease: Lease) -> None:
        lifecycle.check_birth(lease.state)
        with self._db.tx() as c:
            self._write(c, lease)

    def get(self, vm_uuid: str) -> Lease | None:
        rows = self._db.query("SELECT data FROM leases WHERE vm_uuid=?", (vm_uuid,))
        return Lease.from_dict(json.loads(rows[0][0])) if rows else None

    def _swap(self, vm_uuid: str, expect_state: str | None,
              changes: dict[str, Any]) -> Lease | None:
        if "vm_uuid" in changes and changes["vm_uuid"] != vm_uuid:
            raise ValueError("a lease's vm_uuid cannot change")
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM leases WHERE vm_uuid=?", (vm_uuid,)).fetchone()
            if row is None:
                return None
            lease = Lease.from_dict(json.loads(row[0]))
            if expect_state is not None and lease.state != expect_state:
                return None
            lease = lease.with_(**changes)
            self._write(c, lease)
            return lease

    def delete(self, vm_uuid: str) -> None:
        with self._db.tx() as c:
            c.execute("DELETE FROM leases WHERE vm_uuid=?", (vm_uuid,))

    def find(self, *, name: str | None = None, state: str | None = None,
             os: str | None = None) -> list[Lease]:
        where, args = [], []
        for col, val in (("name", name), ("state", state), ("os", os)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        sql = "SELECT data FROM leases"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY expires, vm_uuid"
        return [Lease.from_dict(json.loads(r[0])) for r in self._db.query(sql, tuple(args))]

    def due(self, now: float) -> list[Lease]:
        rows = self._db.query(
            "SELECT data FROM leases WHERE state=? AND expires<=? ORDER BY expires, vm_uuid",
            (LEASE_ACTIVE, float(now)))
        return [Lease.from_dict(json.loads(r[0])) for r in rows]
