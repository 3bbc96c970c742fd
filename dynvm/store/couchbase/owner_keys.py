"""Owners' SSH keys in Couchbase: one document per owner, changed under CAS.

Key: `ownerkeys::<sha256 of the owner>` (an owner name may be longer than a
key allows) `{"dynvm": "owner_keys", "owner": ..., "keys": [{...}, ...]}`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dynvm.core.store import OwnerKey, OwnerKeys, TooManyKeys
from dynvm.store.couchbase.kv import DELETE, KEEP, CouchbaseRepository


def _key(owner: str) -> str:
    return "ownerkeys::" + hashlib.sha256(owner.encode()).hexdigest()


class CouchbaseOwnerKeys(CouchbaseRepository, OwnerKeys):
    def add(self, key: OwnerKey, limit: int) -> bool:
        outcome: list[bool] = []

        def fn(doc: dict[str, Any] | None) -> Any:
            outcome.clear()
            keys = list((doc or {}).get("keys") or [])
            if any(k["fingerprint"] == key.fingerprint for k in keys):
                outcome.append(False)
                return KEEP
            if len(keys) >= limit:
                raise TooManyKeys(f"an owner may keep at most {limit} keys")
            outcome.append(True)
            return {"dynvm": "owner_keys", "owner": key.owner, "keys": [*keys, key.to_dict()]}

        self._kv.mutate(_key(key.owner), fn)
        return outcome == [True]

    def of_owner(self, owner: str) -> list[OwnerKey]:
        doc, _ = self._kv.get(_key(owner))
        keys = [OwnerKey.from_dict(k) for k in (doc or {}).get("keys") or []]
        return sorted(keys, key=lambda k: (k.added, k.fingerprint))

    def remove(self, owner: str, fingerprint: str) -> bool:
        outcome: list[bool] = []

        def fn(doc: dict[str, Any] | None) -> Any:
            outcome.clear()
            keys = list((doc or {}).get("keys") or [])
            left = [k for k in keys if k["fingerprint"] != fingerprint]
            outcome.append(len(left) < len(keys))
            if len(left) == len(keys):
                return KEEP
            return {**(doc or {}), "keys": left} if left else DELETE

        self._kv.mutate(_key(owner), fn)
        return outcome == [True]
