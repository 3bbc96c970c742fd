"""The owner-key repository, on every backend (see conftest.py)."""

from __future__ import annotations

import threading

import pytest

from dynvm.core.store import OwnerKey, Store, TooManyKeys


def key(owner: str, n: int, added: float = 1.0) -> OwnerKey:
    return OwnerKey(owner=owner, line=f"ssh-ed25519 AAAA{n} k{n}", fingerprint=f"SHA256:f{n}",
                    added=added)


def test_keys_are_kept_per_owner_once_each(store: Store) -> None:
    keys = store.owner_keys
    assert keys.add(key("team-a", 2, added=2.0), limit=10) is True
    assert keys.add(key("team-a", 1, added=1.0), limit=10) is True
    assert keys.add(key("team-a", 1, added=5.0), limit=10) is False  # that key is there
    assert keys.add(key("team-b", 1), limit=10) is True  # another owner's copy is its own
    assert keys.of_owner("team-a") == [key("team-a", 1, 1.0), key("team-a", 2, 2.0)]
    assert keys.of_owner("nobody") == []
    assert keys.remove("team-a", "SHA256:f1") is True
    assert keys.remove("team-a", "SHA256:f1") is False
    assert keys.remove("team-a", "SHA256:f9") is False
    assert [k.fingerprint for k in keys.of_owner("team-a")] == ["SHA256:f2"]
    assert keys.remove("team-a", "SHA256:f2") is True
    assert keys.of_owner("team-a") == [] and len(keys.of_owner("team-b")) == 1
    long_owner = "o" * 400  # an owner name longer than a Couchbase key may be
    assert keys.add(key(long_owner, 3), limit=10) and keys.of_owner(long_owner)[0].owner == long_owner
    assert "AAAA" not in repr(keys.of_owner("team-b")[0])


def test_the_limit_holds_against_concurrent_adds(store: Store) -> None:
    results: list[object] = []

    def add(n: int) -> None:
        try:
            results.append(store.owner_keys.add(key("team-c", n), limit=3))
        except TooManyKeys as exc:
            results.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 3
    assert all(isinstance(r, TooManyKeys) for r in results if r is not True)
    assert len(store.owner_keys.of_owner("team-c")) == 3
    with pytest.raises(TooManyKeys):
        store.owner_keys.add(key("team-c", 99), limit=3)
    kept = store.owner_keys.of_owner("team-c")[0]
    assert store.owner_keys.add(kept, limit=3) is False  # one it has: no error, no change
