"""Reservations in Couchbase: one document per member host, so `reserve` is one CAS step.

Keys: `resv::<host_key>` every reservation of one member host; `resv::hosts`
the host keys that have such a document; `quota::<owner>` reservations of an
owner being placed right now (see `reserve` with a quota).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dynvm.core.records import FreeSlots, QuotaCheck, Reservation, owner_usage
from dynvm.core.store import Reservations, plan_reservations
from dynvm.store.couchbase.kv import KEEP, CouchbaseKv, CouchbaseRepository
from dynvm.store.couchbase.leases import all_leases

QUOTA_PENDING_SECS = 60.0  # a quota claim of a process that died between its two steps


class CouchbaseReservations(CouchbaseRepository, Reservations):
    def __init__(self, kv: CouchbaseKv) -> None:
        super().__init__(kv)
        self._known_hosts: set[str] = set()

    def _hosts(self) -> list[str]:
        return sorted(self._kv.index_list("resv::hosts"))

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
            live = self.live()
            seen = {r.id for r in live}
            live += [Reservation.from_dict(v["r"]) for k, v in pending.items() if k not in seen]
            mine, owned = owner_usage(quota.owner, live, all_leases(self._kv))
            take = wanted[: max(0, int(quota.room(mine, owned)))]
            granted[0] = take
            for w in take:
                pending[w.id] = {"r": w.to_dict(), "until": now + QUOTA_PENDING_SECS}
            return {"dynvm": "quota", "owner": quota.owner, "pending": pending}
        key = f"quota::{quota.owner}"
        self._kv.mutate(key, claim)
        try:
            return self._reserve_host(host_key, granted[0], free_slots) if granted[0] else []
        finally:
            def unclaim(doc: dict[str, Any] | None) -> Any:
                if doc is None or not ids & doc.get("pending", {}).keys():
                    return KEEP
                doc["pending"] = {k: v for k, v in doc["pending"].items() if k not in ids}
                return doc
            self._kv.mutate(key, unclaim)

    def _reserve_host(self, host_key: str, wanted: list[Reservation],
                      free_slots: FreeSlots) -> list[Reservation]:
        if host_key not in self._known_hosts:
            self._kv.index_add("resv::hosts", host_key)
            self._known_hosts.add(host_key)
        result: list[list[Reservation]] = [[]]

        def fn(doc: dict[str, Any] | None) -> Any:
            now = time.time()
            items = [Reservation.from_dict(x) for x in (doc or {}).get("items", [])]
            live, already, taken = plan_reservations(items, wanted, free_slots, None, now)
            result[0] = already + taken
            if doc is not None and not taken and len(live) == len(items):
                return KEEP
            return {"dynvm": "reservations", "host_key": host_key,
                    "items": [r.to_dict() for r in live + taken]}
        self._kv.mutate(f"resv::{host_key}", fn)
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
                    return KEEP
                items = [Reservation.from_dict(x) for x in doc.get("items", [])]
                new = edit(items)
                if new is None:
                    return KEEP
                changed[0] = len(items) - len(new) or 1
                return {"dynvm": "reservations", "host_key": host_key,
                        "items": [r.to_dict() for r in new]}
            self._kv.mutate(f"resv::{host_key}", fn)
            changed_total += changed[0]
            if stop_early and changed[0]:
                break
        return changed_total

    def settle(self, res_id: str, *, vm_uuid: str | None = None,
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

    def drop_request(self, request_id: str) -> int:
        def edit(items: list[Reservation]) -> list[Reservation] | None:
            keep = [r for r in items if r.request_id != request_id]
            return None if len(keep) == len(items) else keep
        return self._edit_reservations(edit, stop_early=False)

    def live(self, host_key: str | None = None) -> list[Reservation]:
        hosts = [host_key] if host_key is not None else self._hosts()
        now = time.time()
        out: list[Reservation] = []
        for hk in hosts:
            doc, _ = self._kv.get(f"resv::{hk}")
            items = [Reservation.from_dict(x) for x in (doc or {}).get("items", [])]
            out.extend(sorted((r for r in items if r.live(now)), key=lambda r: r.id))
        return out

