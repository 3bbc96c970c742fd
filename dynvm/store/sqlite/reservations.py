"""Reservations in SQLite: the `reservations` table; the quota reads leases in the same
transaction."""

from __future__ import annotations

import json
import sqlite3
import time

from dynvm.core.records import FreeSlots, QuotaCheck, Reservation, owner_usage
from dynvm.core.store import Reservations, plan_reservations
from dynvm.store.sqlite.db import SqliteRepository, dumps
from dynvm.store.sqlite.leases import owned_leases


class SqliteReservations(SqliteRepository, Reservations):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS reservations (
        id TEXT PRIMARY KEY,
        host_key TEXT NOT NULL,
        request_id TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS reservations_host ON reservations(host_key);
    CREATE INDEX IF NOT EXISTS reservations_request ON reservations(request_id);
    """

    def reserve(self, host_key: str, wanted: list[Reservation],
                free_slots: FreeSlots, quota: QuotaCheck | None = None) -> list[Reservation]:
        return self.reserve_many([(host_key, wanted, free_slots)], quota)[0]

    def reserve_many(self, batches: list[tuple[str, list[Reservation], FreeSlots]],
                     quota: QuotaCheck | None = None) -> list[list[Reservation]]:
        now = time.time()
        out = []
        with self._db.tx() as c:
            # The write lock is held: the owner's usage cannot change until commit.
            room_left = self._quota_room(c, quota, now) if quota is not None else None
            for host_key, wanted, free_slots in batches:
                already, taken = self._reserve_in(c, host_key, wanted, free_slots, room_left,
                                                  now)
                if room_left is not None:
                    room_left -= len(taken)
                out.append(already + taken)
        return out

    @staticmethod
    def _reserve_in(c: sqlite3.Connection, host_key: str, wanted: list[Reservation],
                    free_slots: FreeSlots, room_left: int | None,
                    now: float) -> tuple[list[Reservation], list[Reservation]]:
        """(what the caller already held, what it takes now) on one host."""
        rows = c.execute("SELECT data FROM reservations WHERE host_key=?", (host_key,)).fetchall()
        items = [Reservation.from_dict(json.loads(data)) for (data,) in rows]
        live, already, taken = plan_reservations(items, wanted, free_slots, room_left, now)
        kept = {r.id for r in live}
        for r in items:
            if r.id not in kept:
                c.execute("DELETE FROM reservations WHERE id=?", (r.id,))
        for r in taken:
            c.execute("INSERT OR REPLACE INTO reservations(id, host_key, request_id, data) "
                      "VALUES (?,?,?,?)", (r.id, host_key, r.request_id, dumps(r.to_dict())))
        return already, taken

    @staticmethod
    def _quota_room(c: sqlite3.Connection, quota: QuotaCheck, now: float) -> int:
        res = [Reservation.from_dict(json.loads(r[0]))
               for r in c.execute("SELECT data FROM reservations").fetchall()]
        mine, owned = owner_usage(quota.owner, [r for r in res if r.live(now)],
                                  owned_leases(c, quota.owner))
        return max(0, int(quota.room(mine, owned)))

    def settle(self, res_id: str, *, vm_uuid: str | None = None,
               settle_secs: float = 0.0) -> None:
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM reservations WHERE id=?", (res_id,)).fetchone()
            if row is None:
                return
            if settle_secs <= 0:
                c.execute("DELETE FROM reservations WHERE id=?", (res_id,))
                return
            r = Reservation.from_dict(json.loads(row[0]))
            r.settle_until = time.time() + settle_secs
            if vm_uuid is not None:
                r.vm_uuid = vm_uuid
            c.execute("UPDATE reservations SET data=? WHERE id=?", (dumps(r.to_dict()), res_id))

    def drop_request(self, request_id: str) -> int:
        with self._db.tx() as c:
            cur = c.execute("DELETE FROM reservations WHERE request_id=?", (request_id,))
            return cur.rowcount

    def live(self, host_key: str | None = None) -> list[Reservation]:
        if host_key is None:
            rows = self._db.query("SELECT data FROM reservations ORDER BY host_key, id")
        else:
            rows = self._db.query("SELECT data FROM reservations WHERE host_key=? ORDER BY id",
                                  (host_key,))
        now = time.time()
        res = [Reservation.from_dict(json.loads(r[0])) for r in rows]
        return [r for r in res if r.live(now)]
