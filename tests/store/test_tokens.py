"""The token repository, on every backend (see conftest.py)."""

from __future__ import annotations

import time

from dynvm.core.store import Store, Token


def test_tokens_roundtrip_and_revoke(store: Store) -> None:
    a = Token(id="t1", owner="team-a", hash="h" * 64, admin=False, created=1.0)
    b = Token(id="t2", owner="ops", hash="k" * 64, admin=True, created=2.0, expires=time.time() + 60)
    store.tokens.put(a)
    store.tokens.put(b)
    assert store.tokens.by_hash("h" * 64) == a
    assert store.tokens.by_hash("nope") is None
    assert [t.id for t in store.tokens.all()] == ["t1", "t2"]
    assert store.tokens.revoke("t1", 5.0) is True
    got = store.tokens.by_hash("h" * 64)
    assert got is not None and got.revoked == 5.0 and not got.valid()
    assert store.tokens.revoke("t1", 9.0) is True  # the first revocation time stays
    assert store.tokens.by_hash("h" * 64).revoked == 5.0
    assert store.tokens.revoke("missing", 1.0) is False
    assert store.tokens.by_hash("k" * 64).valid()
