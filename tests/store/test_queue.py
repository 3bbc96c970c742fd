"""The queue repository, on every backend (see conftest.py)."""

from __future__ import annotations

import threading

from dynvm.core.store import QueueEntry, Store


def entry(rid: str, enqueued: float, **kw: object) -> QueueEntry:
    return QueueEntry(id=rid, owner=str(kw.pop("owner", "alice")), os="centos", count=1,
                      enqueued=enqueued, deadline=enqueued + 600, **kw)  # type: ignore[arg-type]


def test_entries_in_arrival_order(store: Store) -> None:
    store.queue.add(entry("b", 2.0))
    store.queue.add(entry("a", 2.0, priority=3))
    store.queue.add(entry("c", 1.0, owner="bob"))
    assert [e.id for e in store.queue.entries()] == ["c", "a", "b"]
    assert store.queue.get("a") == entry("a", 2.0, priority=3)
    assert store.queue.get("missing") is None
    store.queue.add(entry("a", 2.0, priority=5))  # again: replaced, not doubled
    assert [e.priority for e in store.queue.entries()] == [0, 5, 0]


def test_remove(store: Store) -> None:
    store.queue.add(entry("a", 1.0))
    assert store.queue.remove("a") is True
    assert store.queue.remove("a") is False
    assert store.queue.entries() == [] and store.queue.get("a") is None
    assert store.queue.claim("a", "me", 10, 5.0) is None


def test_claim_is_held_until_it_lapses_or_is_given_back(store: Store) -> None:
    store.queue.add(entry("a", 1.0))
    got = store.queue.claim("a", "leader-1", 30.0, 100.0)
    assert got is not None and got.claimed_by == "leader-1" and got.claimed_until == 130.0
    assert store.queue.claim("a", "leader-2", 30.0, 129.0) is None  # held
    renewed = store.queue.claim("a", "leader-1", 30.0, 120.0)  # the holder renews
    assert renewed is not None and renewed.claimed_until == 150.0
    store.queue.unclaim("a", "leader-2")  # not its claim: nothing changes
    assert store.queue.claim("a", "leader-2", 30.0, 149.0) is None
    after = store.queue.claim("a", "leader-2", 30.0, 150.0)  # lapsed: the holder died
    assert after is not None and after.claimed_by == "leader-2"
    store.queue.unclaim("a", "leader-2")
    back = store.queue.get("a")
    assert back is not None and back.claimed_by is None
    assert store.queue.claim("a", "leader-3", 30.0, 151.0) is not None


def test_one_claim_wins_among_many(store: Store) -> None:
    """Eight dispatchers claim one entry at once: exactly one gets it."""
    store.queue.add(entry("a", 1.0))
    start = threading.Barrier(8)
    won: list[str] = []

    def claim(who: str) -> None:
        start.wait()
        if store.queue.claim("a", who, 60.0, 10.0) is not None:
            won.append(who)
    threads = [threading.Thread(target=claim, args=(f"leader-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    held = store.queue.get("a")
    assert held is not None and held.claimed_by == won[0]
