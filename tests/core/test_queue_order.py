"""The queue's rules as pure functions (`dynvm.core.queueorder`): order, backfill, start times."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dynvm.core import queueorder
from dynvm.core.queueorder import (
    Freeing,
    Need,
    Room,
    may_backfill,
    order,
    start_times,
)
from dynvm.core.records import QueueEntry

OWNERS = ("ann", "bob", "cat", "dan")


def entry(rid: str, owner: str, enqueued: float, *, priority: int = 0, count: int = 1,
          weight: float = 1.0, lease_secs: float = 3600.0) -> QueueEntry:
    return QueueEntry(id=rid, owner=owner, os="centos", count=count, enqueued=enqueued,
                      deadline=enqueued + 3600, priority=priority, weight=weight,
                      lease_secs=lease_secs)


entries_st = st.lists(
    st.builds(lambda o, t, p, c, w: (o, t, p, c, w), st.sampled_from(OWNERS),
              st.integers(0, 50), st.integers(0, 3), st.integers(1, 10),
              st.sampled_from([1.0, 2.0, 4.0, 16.0])),
    max_size=25,
).map(lambda rows: [entry(f"r{i:02d}", o, float(t), priority=p, count=c, weight=w)
                    for i, (o, t, p, c, w) in enumerate(rows)])
held_st = st.dictionaries(st.sampled_from(OWNERS), st.sampled_from([0.0, 1.0, 8.0, 32.0]))


@settings(max_examples=300, deadline=None)
@given(entries_st, held_st)
def test_order_is_priority_then_fair_then_fifo(entries: list[QueueEntry],
                                               held: dict[str, float]) -> None:
    out = order(entries, held)
    assert sorted(e.id for e in out) == sorted(e.id for e in entries)  # each once
    assert [e.priority for e in out] == sorted((e.priority for e in out), reverse=True)
    arrival = {e.id: (e.enqueued, e.id) for e in entries}
    for owner in OWNERS:  # one owner's requests keep their order within a priority
        for p in range(4):
            mine = [arrival[e.id] for e in out if e.owner == owner and e.priority == p]
            assert mine == sorted(mine)
    # Each pick is an owner holding the least among those still waiting at that priority,
    # counting what was picked before it.
    counted = dict(held)
    for i, e in enumerate(out):
        rivals = {x.owner for x in out[i:] if x.priority == e.priority}
        least = min(counted.get(o, 0.0) for o in rivals)
        assert counted.get(e.owner, 0.0) == least, (i, e, counted)
        counted[e.owner] = counted.get(e.owner, 0.0) + e.weight * e.count


def test_order_examples() -> None:
    a1, a2 = entry("a1", "ann", 1.0), entry("a2", "ann", 2.0)
    b1 = entry("b1", "bob", 3.0)
    urgent = entry("u", "cat", 9.0, priority=2)
    # Priority first; then bob, who holds nothing, before ann's second; ann's in order.
    assert [e.id for e in order([a1, a2, b1, urgent], {})] == ["u", "a1", "b1", "a2"]
    # ann holds 8 GiB of VMs already: bob goes first although he came last.
    assert [e.id for e in order([a1, a2, b1], {"ann": 8.0})] == ["b1", "a1", "a2"]
    # A big VM weighs more: after ann's 16-GiB VM, bob's two small ones go first.
    big = entry("big", "ann", 0.0, weight=16.0)
    b2 = entry("b2", "bob", 4.0)
    assert [e.id for e in order([big, a1, b1, b2], {})] == ["big", "b1", "b2", "a1"]


@given(st.floats(0, 1e5), st.floats(0, 1e4), st.floats(0, 1e5),
       st.one_of(st.none(), st.floats(0, 3e5)))
def test_backfill_never_outlasts_the_heads_start(now: float, build: float, lease: float,
                                                 head_start: float | None) -> None:
    e = entry("s", "bob", 0.0, lease_secs=lease)
    ok = may_backfill(now, e, build, head_start)
    if head_start is None:
        assert ok  # no head waits (or nothing known will make room for it)
    else:
        assert ok == (now + build + lease <= head_start)


ROOM = Room(vcpus=8, memory_gib=16, disk_gib=400)


def need(rid: str, count: int, hosts: frozenset[str] = frozenset({"h1", "h2"})) -> Need:
    return Need(id=rid, count=count, vcpus=2, memory_gib=4, disk_gib=20, hosts=hosts)


def freeing(at: float, host: str = "h1") -> Freeing:
    return Freeing(at=at, host=host, vcpus=2, memory_gib=4, disk_gib=20)


def test_start_times_from_lease_expiries() -> None:
    empty = Room(0, 0, 0)
    rooms = {"h1": empty, "h2": Room(vcpus=2, memory_gib=4, disk_gib=400)}  # one VM fits now
    ends = [freeing(100.0), freeing(200.0, "h2"), freeing(300.0), freeing(400.0)]
    got = start_times([need("one", 1), need("two", 2), need("big", 9), need("last", 1)],
                      rooms, ends, now=10.0)
    # one: now; two: once two more leases end; big: never (nothing known makes room for 9),
    # and it holds nobody up; last: when the next lease ends.
    assert got == {"one": 10.0, "two": 200.0, "big": None, "last": 300.0}
    assert queueorder.eta_secs(got["two"], 10.0, 60.0) == 250.0
    assert queueorder.eta_secs(None, 10.0, 60.0) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=8),
       st.lists(st.tuples(st.floats(0, 1000), st.sampled_from(["h1", "h2"])), max_size=12),
       st.integers(0, 4))
def test_start_times_never_go_back(counts: list[int], ends: list[tuple[float, str]],
                                   free_now: int) -> None:
    rooms = {"h1": ROOM.less(need("x", 1), 4 - min(free_now, 4)), "h2": Room(0, 0, 0)}
    needs = [need(f"n{i}", c) for i, c in enumerate(counts)]
    got = start_times(needs, rooms, [freeing(t, h) for t, h in ends], now=0.0)
    known = [t for n in needs if (t := got[n.id]) is not None]
    assert known == sorted(known)  # served in order: none before one ahead of it
    assert all(t is not None and t >= 0.0 for t in known)
    # The first starts now if it fits in what is free now, else when a lease ends.
    first = needs[0]
    if rooms["h1"].fits(first) >= first.count:
        assert got[first.id] == 0.0
    else:
        assert got[first.id] is None or got[first.id] in {t for t, _ in ends}
