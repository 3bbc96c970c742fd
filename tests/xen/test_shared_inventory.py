"""One inventory per instance: workers read the views the inventory process keeps.

The process (`InventoryHost`) runs here in a thread on a real Unix socket;
each `XenPoolClient(shared=...)` is what a gunicorn worker holds.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from dynvm.core.ports import HostUnreachable
from dynvm.sim import Farm
from dynvm.xen.inventory_host import IDLE_CLOSE_SECS, InventoryHost
from dynvm.xen.pool import XenPoolClient
from dynvm.xen.shared_inventory import SharedInventory, host_key, socket_address
from testbed.clock import SteppedClock
from testbed.serving import wait_until
from tests.xen.conftest import count_of, host_config, xapi_calls
from tests.xen.test_build import spec


@pytest.fixture
def served_host() -> Iterator[tuple[InventoryHost, SteppedClock, tuple[str, bytes]]]:
    """The inventory process's host on a clock the test moves, and its (socket, key)."""
    address = socket_address(f"dynvm-test-inventory-{secrets.token_hex(8)}")
    key = secrets.token_bytes(32)
    clock = SteppedClock()
    host = InventoryHost(address, key, clock=clock)
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    try:
        yield host, clock, (address, key)
    finally:
        host.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "stop() must end serve_forever's accept()"


@pytest.fixture
def shared(served_host: tuple[InventoryHost, SteppedClock, tuple[str, bytes]]) \
        -> tuple[str, bytes]:
    return served_host[2]


def workers(farm: Farm, shared: tuple[str, bytes], n: int, **overrides: Any) \
        -> list[XenPoolClient]:
    return [XenPoolClient(host_config(farm, **overrides), shared=shared) for _ in range(n)]


def close(clients: list[XenPoolClient]) -> None:
    for c in clients:
        c.close()


def test_workers_share_one_inventory_and_a_new_one_is_warm_at_once(
        farm: Farm, shared: tuple[str, bytes]) -> None:
    first, second = workers(farm, shared, 2)
    own = XenPoolClient(host_config(farm))
    try:
        assert isinstance(first.inventory, SharedInventory)
        view = first.view()
        farm.reset_call_counts()
        again = second.view()  # a new worker: its views come from the process
        assert count_of(farm, "VM.get_all_records") == 0
        assert xapi_calls(farm) == 0
        expected = own.view()
        for v in (view, again):
            assert v.vms == expected.vms
            assert v.hosts == expected.hosts
            assert v.templates == expected.templates
    finally:
        close([first, second, own])


def test_a_change_behind_our_back_reaches_every_worker(
        farm: Farm, shared: tuple[str, bytes], xapi: XenAPI.Session) -> None:
    clients = workers(farm, shared, 2)
    try:
        host = clients[0].view().hosts[0]
        ref = xapi.xenapi.host.get_by_uuid(host.uuid)
        xapi.xenapi.host.set_name_label(ref, "renamed behind our back")
        try:
            for c in clients:
                def renamed(c: XenPoolClient = c) -> bool:
                    return any(h.name_label == "renamed behind our back" for h in c.view().hosts)

                assert c.inventory.wait_for(renamed, timeout=60), c.view().hosts
        finally:
            xapi.xenapi.host.set_name_label(ref, host.name_label)
    finally:
        close(clients)


def test_a_worker_sees_its_own_build_and_destroy_at_once(
        fresh_farm: Farm, shared: tuple[str, bytes]) -> None:
    builder, other = workers(fresh_farm, shared, 2)
    try:
        other.view()
        vm = builder.build(spec(builder, "shared-1", host=1))
        assert builder.view().vms[vm.uuid].power_state == "Running"  # no wait: our write
        ip = builder.wait_ready(vm.uuid, windows=False, timeout=120)
        assert ip in builder.view().vms[vm.uuid].ips or builder.inventory.wait_for(
            lambda: ip in builder.view().vms[vm.uuid].ips, timeout=60)
        assert other.inventory.wait_for(lambda: vm.uuid in other.view().vms, timeout=60)
        assert vm.uuid in {v.uuid for v in builder.tagged_vms()}
        assert builder.destroy(vm.uuid)
        assert vm.uuid not in builder.view().vms
        assert other.inventory.wait_for(lambda: vm.uuid not in other.view().vms, timeout=60)
    finally:
        close([builder, other])


def test_an_unreachable_pool_is_reported_to_the_worker(
        fresh_farm: Farm, shared: tuple[str, bytes]) -> None:
    fresh_farm.set_unreachable(fresh_farm.pools[0].master.name_label)
    (c,) = workers(fresh_farm, shared, 1, connect_timeout=1.0)
    try:
        with pytest.raises(HostUnreachable):
            c.view()
        assert c.outage() is not None  # the dashboard says since when and why
        fresh_farm.set_unreachable(fresh_farm.pools[0].master.name_label, False)
    finally:
        close([c])


def test_without_the_inventory_process_a_worker_says_so(farm: Farm,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dynvm.xen.shared_inventory.CONNECT_SECS", 0.2)
    (c,) = workers(farm, (socket_address(f"dynvm-nobody-{secrets.token_hex(8)}"), b"k"), 1)
    try:
        with pytest.raises(HostUnreachable, match="inventory process"):
            c.view()
    finally:
        close([c])


def test_a_pool_no_worker_subscribes_to_any_more_is_closed(
        fresh_farm: Farm,
        served_host: tuple[InventoryHost, SteppedClock, tuple[str, bytes]]) -> None:
    host, clock, shared = served_host
    kept_cfg = host_config(fresh_farm)
    dropped_cfg = host_config(fresh_farm, call_timeout=11.0)  # a reload changed its section
    kept = XenPoolClient(kept_cfg, shared=shared)
    dropped = XenPoolClient(dropped_cfg, shared=shared)
    try:
        kept.view()
        dropped.view()
        assert set(host.open_pools()) == {host_key(kept_cfg), host_key(dropped_cfg)}
        dropped.close()  # the old workers are gone; the new ones name only `kept`
        wait_until(lambda: host.subscribers(dropped_cfg) == 0, timeout=60,
                   what="the inventory process to see its subscriber leave")
        host.sweep()
        assert host_key(dropped_cfg) in host.open_pools()  # not before IDLE_CLOSE_SECS
        logouts = count_of(fresh_farm, "session.logout")
        clock.advance(IDLE_CLOSE_SECS)
        host.sweep()  # or the process's own sweep, whichever comes first
        assert host.open_pools() == [host_key(kept_cfg)]
        assert count_of(fresh_farm, "session.logout") > logouts  # its sessions logged out
        assert host.subscribers(kept_cfg) == 1
        fresh_farm.reset_call_counts()
        assert kept.view().hosts  # the pool still in use was left alone: no reload
        assert count_of(fresh_farm, "VM.get_all_records") == 0
    finally:
        close([kept, dropped])


def test_a_restarted_inventory_process_never_takes_a_worker_back_in_generations(
        farm: Farm) -> None:
    """A new process counts its generations from zero: a worker's go on past the old
    ones, or a view cached at an old number, and everything keyed by it, would come
    back for a new farm state that happens to reach that number."""
    inv = SharedInventory(host_config(farm), socket_address("unused"), b"k")

    def delivered(generation: int, name: str) -> None:  # a message of the stream
        status = {"loaded": True, "generation": generation, "fresh_at": 0.0,
                  "retry_at": 0.0, "down_since": None, "error": None}
        inv._apply({"vms": {}, "full": True, "templates": {"centos": name}, "status": status})

    delivered(3, "old")
    old_generation, old_view = inv.current_view()
    inv._lost(ConnectionResetError("the process was killed"))
    delivered(1, "new")  # the restarted process's first views...
    assert inv.generation > old_generation
    delivered(3, "newer")  # ...and the one that reaches the old process's number
    generation, view = inv.current_view()
    assert generation > old_generation and view is not old_view
    assert view.templates == {"centos": "newer"}
