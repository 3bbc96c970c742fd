"""Leases in Couchbase, one document each, under CAS.

Keys: `lease::<uuid>` `{"dynvm": "lease", "lease": {...}}`; `leases::index`
the uuids of all leases (so listing needs no N1QL).
"""

from __future__ import annotations

from typing import Any

from couchbase.exceptions import DocumentNotFoundException

from dynvm.core import lifecycle
from dynvm.core.store import LEASE_ACTIVE, Lease, Leases
from dynvm.store.couchbase.kv import KEEP, CouchbaseKv, CouchbaseRepository


def all_leases(kv: CouchbaseKv) -> list[Lease]:
    """Every lease, soonest expiry first (also read by the quota check of `reserve`)."""
    out = [Lease.from_dict(d["lease"]) for d in kv.load_all("leases::index", "lease::")]
    return sorted(out, key=lambda lease: (lease.expires, lease.vm_uuid))


class CouchbaseLeases(CouchbaseRepository, Leases):
    def put(self, lease: Lease) -> None:
        lifecycle.check_birth(lease.state)
        self._kv.index_add("leases::index", lease.vm_uuid)
        self._kv.io("upsert", self._kv.key(f"lease::{lease.vm_uuid}"),
                    {"dynvm": "lease", "lease": lease.to_dict()})

    def get(self, vm_uuid: str) -> Lease | None:
        doc, _ = self._kv.get(f"lease::{vm_uuid}")
        return Lease.from_dict(doc["lease"]) if doc else None

    def _swap(self, vm_uuid: str, expect_state: str | None,
              changes: dict[str, Any]) -> Lease | None:
        if "vm_uuid" in changes and changes["vm_uuid"] != vm_uuid:
            raise ValueError("a lease's vm_uuid cannot change")
        result: list[Lease | None] = [None]

        def fn(doc: dict[str, Any] | None) -> Any:
            result[0] = None
            if doc is None:
                return KEEP
            lease = Lease.from_dict(doc["lease"])
            if expect_state is not None and lease.state != expect_state:
                return KEEP
            lease = lease.with_(**changes)
            result[0] = lease
            return {"dynvm": "lease", "lease": lease.to_dict()}
        self._kv.mutate(f"lease::{vm_uuid}", fn)
        return result[0]

    def delete(self, vm_uuid: str) -> None:
        try:
            self._kv.io("remove", self._kv.key(f"lease::{vm_uuid}"))
        except DocumentNotFoundException:
            pass
        self._kv.index_remove("leases::index", {vm_uuid})

    def find(self, *, name: str | None = None, state: str | None = None,
             os: str | None = None) -> list[Lease]:
        return [lease for lease in all_leases(self._kv)
                if (name is None or lease.name == name)
                and (state is None or lease.state == state)
                and (os is None or lease.os == os)]

    def due(self, now: float) -> list[Lease]:
        return [lease for lease in self.find(state=LEASE_ACTIVE) if lease.expires <= now]
