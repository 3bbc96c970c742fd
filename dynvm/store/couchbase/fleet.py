"""Fleet records in Couchbase, one document each, under CAS.

Keys: `fleet::<name>` `{"dynvm": "fleet", "fleet": {...}}`; `fleet::index` the
names of all records (so listing needs no N1QL).
"""

from __future__ import annotations

from typing import Any

from dynvm.core.store import FleetEntries, FleetEntry
from dynvm.core.store.fleet import Check
from dynvm.store.couchbase.kv import DELETE, KEEP, CouchbaseRepository


def _doc(entry: FleetEntry) -> dict[str, Any]:
    return {"dynvm": "fleet", "fleet": entry.to_dict()}


class CouchbaseFleet(CouchbaseRepository, FleetEntries):
    def get(self, name: str) -> FleetEntry | None:
        doc, _ = self._kv.get(f"fleet::{name}")
        return FleetEntry.from_dict(doc["fleet"]) if doc else None

    def find(self) -> list[FleetEntry]:
        out = [FleetEntry.from_dict(d["fleet"]) for d in self._kv.load_all("fleet::index", "fleet::")]
        return sorted(out, key=lambda e: e.name)

    def _insert(self, entry: FleetEntry) -> bool:
        done = [False]

        def fn(doc: dict[str, Any] | None) -> Any:
            done[0] = doc is None
            return _doc(entry) if doc is None else KEEP
        self._kv.index_add("fleet::index", entry.name)  # before the document (see the package)
        self._kv.mutate(f"fleet::{entry.name}", fn)
        return done[0]

    def _swap(self, name: str, check: Check, changes: dict[str, Any]) -> FleetEntry | None:
        result: list[FleetEntry | None] = [None]

        def fn(doc: dict[str, Any] | None) -> Any:
            result[0] = None
            if doc is None:
                return KEEP
            entry = FleetEntry.from_dict(doc["fleet"])
            if not check(entry):
                return KEEP
            new = FleetEntry.from_dict({**entry.to_dict(), **changes})
            result[0] = new
            return _doc(new)
        self._kv.mutate(f"fleet::{name}", fn)
        return result[0]

    def _remove(self, name: str, check: Check) -> bool:
        done = [False]

        def fn(doc: dict[str, Any] | None) -> Any:
            done[0] = doc is not None and check(FleetEntry.from_dict(doc["fleet"]))
            return DELETE if done[0] else KEEP
        self._kv.mutate(f"fleet::{name}", fn)
        if done[0]:
            self._kv.index_remove("fleet::index", {name})
        return done[0]
