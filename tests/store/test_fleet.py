"""The fleet repository, on every backend (see conftest.py): claims make a fleet VM built
or destroyed by exactly one process."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from dynvm.core.lifecycle import FleetState, IllegalTransition
from dynvm.core.store import FleetEntry, Store

CREATING, PRESENT, REMOVING = (s.value for s in FleetState)


def test_a_build_is_claimed_settled_and_listed(store: Store) -> None:
    fleet = store.fleet
    assert fleet.get("db1") is None and fleet.find() == []
    got = fleet.claim("db1", "a", until=200.0, now=100.0)
    assert got is not None and (got.state, got.holder, got.until) == (CREATING, "a", 200.0)
    assert fleet.claim("db1", "b", until=300.0, now=150.0) is None  # held by a
    assert fleet.settle("db1", CREATING, "b", vm_uuid="u1") is None  # only the holder settles
    done = fleet.settle("db1", CREATING, "a", vm_uuid="u1", host_ref=2, ip="10.0.0.5")
    assert done is not None
    assert (done.state, done.holder, done.until, done.vm_uuid, done.host_ref, done.ip) == \
        (PRESENT, "", 0.0, "u1", 2, "10.0.0.5")
    assert fleet.get("db1") == done
    # Present: nobody claims it for a build unless it is being built again.
    assert fleet.claim("db1", "b", until=300.0, now=150.0) is None
    fleet.claim("cache", "a", until=200.0, now=100.0)
    assert [e.name for e in fleet.find()] == ["cache", "db1"]


def test_a_lapsed_claim_is_taken_over_and_the_first_holder_can_no_longer_act(
        store: Store) -> None:
    fleet = store.fleet
    fleet.claim("db1", "a", until=200.0, now=100.0)
    assert fleet.claim("db1", "b", until=199.0, now=199.0) is None  # not lapsed yet
    taken = fleet.claim("db1", "b", until=400.0, now=200.0)
    assert taken is not None and (taken.holder, taken.until) == ("b", 400.0)
    assert fleet.settle("db1", CREATING, "a", vm_uuid="u1") is None
    assert not fleet.end("db1", CREATING, "a")
    assert fleet.end("db1", CREATING, "b")  # b's build failed: nothing left
    assert fleet.get("db1") is None
    assert not fleet.end("db1", CREATING, "b")


def test_recreate_and_removal_are_claims_on_a_present_record(store: Store) -> None:
    fleet = store.fleet
    fleet.claim("db1", "a", until=200.0, now=100.0)
    fleet.settle("db1", CREATING, "a", vm_uuid="u1")
    # Claimed again only while the record still names the VM found missing.
    assert fleet.claim("db1", "b", until=500.0, now=300.0, missing="u0") is None
    again = fleet.claim("db1", "b", until=500.0, now=300.0, missing="u1")
    assert again is not None and (again.state, again.holder) == (CREATING, "b")
    assert fleet.claim("db1", "c", until=500.0, now=300.0, missing="u1") is None
    renewed = fleet.claim("db1", "b", until=700.0, now=300.0)  # its holder may renew it
    assert renewed is not None and renewed.until == 700.0
    fleet.settle("db1", CREATING, "b", vm_uuid="u2")
    gone = fleet.claim_removal("db1", "c", until=600.0, now=300.0)
    assert gone is not None and (gone.state, gone.holder, gone.vm_uuid) == (REMOVING, "c", "u2")
    assert fleet.claim_removal("db1", "d", until=600.0, now=300.0) is None
    back = fleet.settle("db1", REMOVING, "c")  # the destroy failed
    assert back is not None and back.state == PRESENT
    fleet.claim_removal("db1", "c", until=600.0, now=300.0)
    assert fleet.claim_removal("db1", "d", until=900.0, now=601.0) is not None  # c died
    assert fleet.end("db1", REMOVING, "d")
    assert fleet.get("db1") is None


def test_updates_keep_the_state_and_undeclared_moves_are_refused(store: Store) -> None:
    fleet = store.fleet
    assert fleet.update("nope", ip="x") is None
    assert fleet.adopt(FleetEntry(name="web", state=PRESENT, vm_uuid="u9"))
    assert not fleet.adopt(FleetEntry(name="web", state=PRESENT, vm_uuid="other"))
    changed = fleet.update("web", start={"attempts": 2, "next": 50.0})
    assert changed is not None and changed.state == PRESENT and changed.start["attempts"] == 2
    assert fleet.get("web") == changed
    with pytest.raises(IllegalTransition):
        fleet.update("web", state=CREATING)
    with pytest.raises(IllegalTransition):
        fleet.adopt(FleetEntry(name="x", state=REMOVING))
    with pytest.raises(IllegalTransition):
        fleet.end("web", PRESENT, "")
    with pytest.raises(IllegalTransition):
        fleet.settle("web", PRESENT, "")
    assert fleet.get("web") == changed


def test_one_claim_wins_a_race(store: Store) -> None:
    barrier = threading.Barrier(8)

    def take(i: int) -> bool:
        barrier.wait()
        return store.fleet.claim("db1", f"w{i}", until=1e12, now=1.0) is not None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(take, range(8)))
    assert results.count(True) == 1
    entry = store.fleet.get("db1")
    assert entry is not None and entry.holder == f"w{results.index(True)}"
