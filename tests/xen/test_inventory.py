"""The event-fed inventory: matches XenAPI, costs no call per view, follows changes."""

from __future__ import annotations

import time

import pytest
import XenAPI

from dynvm.core.ports import TAG_LEASE
from dynvm.sim import Farm
from dynvm.xen.pool import XenPoolClient
from dynvm.xen.records import guest_addresses
from tests.xen.conftest import LINUX_TEMPLATE, STORAGE, wait_until, xapi_calls


def test_view_matches_xenapi(client: XenPoolClient, xapi: XenAPI.Session) -> None:
    view = client.view()
    x = xapi.xenapi
    hosts = x.host.get_all_records()
    metrics = x.host_metrics.get_all_records()
    assert {h.uuid for h in view.hosts} == {r["uuid"] for r in hosts.values()}
    for h in view.hosts:
        rec = hosts[h.ref]
        assert h.cpu_count == int(rec["cpu_info"]["cpu_count"])
        assert h.memory_free == int(metrics[rec["metrics"]]["memory_free"])
        assert h.memory_total == int(metrics[rec["metrics"]]["memory_total"])
        assert h.enabled == rec["enabled"]
        local = [x.SR.get_record(x.PBD.get_SR(p)) for p in rec["PBDs"]]
        local = [s for s in local if s["name_label"] == STORAGE]
        assert len(local) == 1
        assert h.srs[STORAGE] == (int(local[0]["physical_size"]),
                                  int(local[0]["physical_utilisation"]))
    vms = x.VM.get_all_records()
    expected = {r["uuid"] for r in vms.values()
                if not r["is_a_template"] and not r["is_control_domain"]}
    assert set(view.vms) == expected
    assert LINUX_TEMPLATE in view.templates
    assert vms[view.templates[LINUX_TEMPLATE]]["name_label"] == LINUX_TEMPLATE
    assert view.host_ref == 1
    assert 0 <= view.age_secs < float("inf")  # loaded: a real age


def test_repeated_views_make_no_xenapi_call(farm: Farm, client: XenPoolClient) -> None:
    first = client.view()
    farm.reset_call_counts()
    for _ in range(2000):
        v = client.view()
    assert xapi_calls(farm) == 0
    assert v.hosts == first.hosts
    assert v.vms is first.vms  # memoised: the same rows, not rebuilt per view


def test_follows_vm_created_and_destroyed_through_xenapi(client: XenPoolClient,
                                                         xapi: XenAPI.Session) -> None:
    client.view()
    x = xapi.xenapi
    tmpl = x.VM.get_by_name_label(LINUX_TEMPLATE)[0]
    vm = x.VM.clone(tmpl, "inventory-probe")
    uuid = x.VM.get_uuid(vm)
    x.VM.remove_from_other_config(vm, "disks")  # a diskless VM is enough here
    x.VM.provision(vm)  # no longer a template: a halted VM
    try:
        seen = wait_until(lambda: client.view().vms.get(uuid), timeout=30)
        assert seen.name_label == "inventory-probe"
        assert seen.power_state == "Halted"
        x.VM.set_name_description(vm, "changed outside dynvm")
        wait_until(lambda: client.view().vms[uuid].name_description == "changed outside dynvm",
                   timeout=30)
    finally:
        vdis = [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(vm) if x.VBD.get_type(b) == "Disk"]
        x.VM.destroy(vm)
        for vdi in vdis:
            x.VDI.destroy(vdi)
    wait_until(lambda: uuid not in client.view().vms, timeout=30)


def test_tagged_vms_include_a_half_built_template_clone(client: XenPoolClient,
                                                        xapi: XenAPI.Session) -> None:
    x = xapi.xenapi
    tmpl = x.VM.get_by_name_label(LINUX_TEMPLATE)[0]
    vm = x.VM.clone(tmpl, "half-built")
    try:
        x.VM.add_to_other_config(vm, TAG_LEASE, "req-123")
        uuid = x.VM.get_uuid(vm)
        found = wait_until(lambda: [v for v in client.tagged_vms() if v.uuid == uuid],
                           timeout=30)
        assert found[0].is_template
        assert found[0].other_config[TAG_LEASE] == "req-123"
        view = client.view()
        assert uuid not in view.vms  # still a template
        assert view.templates[LINUX_TEMPLATE] == tmpl  # and never offered as one
    finally:
        vdis = [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(vm) if x.VBD.get_type(b) == "Disk"]
        x.VM.destroy(vm)
        for vdi in vdis:
            x.VDI.destroy(vdi)


def test_age_stays_small_while_events_flow(farm: Farm) -> None:
    """Age is bounded by the long-poll timeout even when nothing changes."""
    from tests.xen.conftest import host_config

    c = XenPoolClient(host_config(farm), event_timeout=0.25)  # a quiet long poll ends this often
    try:
        c.view()
        generation = c.inventory.generation
        confirmed: set[float] = set()

        def confirmations() -> bool:
            confirmed.add(c.inventory.fresh_at)
            return len(confirmed) >= 4

        # Each long poll that returns with nothing new still confirms the copy.
        wait_until(confirmations, timeout=60, what="the feed to confirm the copy 3 more times")
        assert c.inventory.generation == generation  # nothing changed meanwhile
        assert c.inventory.feed_ok and c.inventory.last_error is None
    finally:
        c.close()


def test_view_fails_fast_when_the_host_goes_down(fresh_farm: Farm) -> None:
    from dynvm.core.ports import HostUnreachable
    from tests.xen.conftest import host_config

    c = XenPoolClient(host_config(fresh_farm, connect_timeout=1.0))
    try:
        assert len(c.view().hosts) == 2
        fresh_farm.set_unreachable(fresh_farm.pools[0].master.name_label)
        # the feed's long poll notices (connection refused / reset) and views fail
        def refused() -> bool:
            try:
                c.view()
                return False
            except HostUnreachable:
                return True
        wait_until(refused, timeout=c.inventory.event_timeout + 30)
        # While the pool is known to fail, every view fails (at once, from the known state).
        for _ in range(50):
            with pytest.raises(HostUnreachable):
                c.view()
        fresh_farm.set_unreachable(fresh_farm.pools[0].master.name_label, False)
        wait_until(lambda: not refused(), timeout=30)
    finally:
        c.close()


def test_guest_addresses_order() -> None:
    nets = {"1/ip": "10.0.0.9", "0/ipv6/0": "fe80::1", "0/ip": "10.0.0.5",
            "0/ipv4/0": "10.0.0.5", "0/ipv4/1": "10.0.0.6", "1/ipv4/0": "10.0.0.9",
            "junk": "x"}
    assert guest_addresses(nets) == ("10.0.0.5", "10.0.0.6", "10.0.0.9", "fe80::1")


def test_forked_child_starts_clean(farm: Farm) -> None:
    """A gunicorn worker forked after the master used the client gets its own sessions."""
    import os

    from tests.xen.conftest import count_of, host_config

    c = XenPoolClient(host_config(farm))
    try:
        parent_view = c.view()
        farm.reset_call_counts()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report and leave without running pytest's teardown
            code = 1
            try:
                v = c.view()
                ok = {h.uuid for h in v.hosts} == {h.uuid for h in parent_view.hosts} \
                    and c.inventory._thread is not None and c.inventory._thread.is_alive()
                os.write(w, b"ok" if ok else b"bad")
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            answer = f.read()
        _, status = os.waitpid(pid, 0)
        assert answer == b"ok" and os.WEXITSTATUS(status) == 0
        assert count_of(farm, "session.login_with_password") >= 1  # the child logged in anew
        assert c.view().hosts == parent_view.hosts  # the parent is unaffected
    finally:
        c.close()


def test_a_slow_read_never_overwrites_what_the_feed_delivered(client: XenPoolClient,
                                                              xapi: XenAPI.Session) -> None:
    """refresh_vm reads, the feed meanwhile applies a newer change: the newer change wins."""
    client.view()
    x = xapi.xenapi
    vm = x.VM.clone(x.VM.get_by_name_label(LINUX_TEMPLATE)[0], "read-race")
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.provision(vm)
    uuid = x.VM.get_uuid(vm)
    inv = client.inventory
    try:
        wait_until(lambda: uuid in client.view().vms, timeout=30)
        read_at = time.monotonic()
        stale = x.VM.get_record(vm)  # a read that started before the change below
        x.VM.set_name_description(vm, "newer than the read")
        wait_until(lambda: client.view().vms[uuid].name_description == "newer than the read",
                   timeout=30)
        assert inv.apply_record("vm", vm, stale, read_at) is False
        assert client.view().vms[uuid].name_description == "newer than the read"
        assert inv.apply_record("vm", vm, x.VM.get_record(vm), time.monotonic()) is True
        inv.refresh_vm(vm)
        assert client.view().vms[uuid].name_description == "newer than the read"
    finally:
        x.VM.destroy(vm)


def test_a_snapshot_keeps_its_generation_while_the_copy_moves_on(
        client: XenPoolClient, xapi: XenAPI.Session) -> None:
    """Views are built from a snapshot: later changes never show through it."""
    client.view()
    inv = client.inventory
    x = xapi.xenapi
    vm = x.VM.clone(x.VM.get_by_name_label(LINUX_TEMPLATE)[0], "snapshot-probe")
    uuid = x.VM.get_uuid(vm)
    try:
        wait_until(lambda: inv.ref_by_uuid("vm", uuid) == vm, timeout=30)
        snap = inv.snapshot()
        assert snap.tables["vm"][vm]["name_label"] == "snapshot-probe"
        with pytest.raises(TypeError):
            snap.tables["vm"][vm] = {}  # read-only
        x.VM.set_name_label(vm, "renamed")
        wait_until(lambda: (inv.record("vm", vm) or {}).get("name_label") == "renamed",
                   timeout=30)
        assert inv.generation > snap.generation
        assert snap.tables["vm"][vm]["name_label"] == "snapshot-probe"
    finally:
        x.VM.destroy(vm)
    wait_until(lambda: not inv.has("vm", vm), timeout=30)
    assert inv.ref_by_uuid("vm", uuid) is None and inv.vm_with_metrics(vm) is None


def test_queries_answer_as_xenapi_does(client: XenPoolClient, xapi: XenAPI.Session) -> None:
    client.view()
    inv = client.inventory
    x = xapi.xenapi
    hosts = x.host.get_all_records()
    assert inv.host_uuids() == {ref: h["uuid"] for ref, h in hosts.items()}
    for ref, h in hosts.items():
        assert inv.ref_by_uuid("host", h["uuid"]) == ref
        assert {p["uuid"] for p in inv.host_pifs(ref)} == \
            {x.PIF.get_uuid(p) for p in h["PIFs"]}
        attached = {x.SR.get_uuid(x.PBD.get_SR(p)) for p in h["PBDs"]
                    if x.PBD.get_currently_attached(p)}
        assert {s["uuid"] for s in inv.attached_srs(ref)} == attached
    assert inv.ref_by_uuid("host", "no-such-uuid") is None


def test_only_the_inventory_touches_its_tables_and_lock() -> None:
    """The adapter reads the inventory through its queries, never its internals."""
    import ast
    import pathlib

    import dynvm.xen

    offenders = []
    for path in pathlib.Path(dynvm.xen.__file__).parent.glob("*.py"):
        if path.name == "inventory.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and ast.unparse(node.value).split(".")[-1] in ("inv", "inventory"):
                offenders.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


def test_one_sr_per_name_the_most_free_first_on_a_tie() -> None:
    """Counting room (host views) and placing disks (build) choose the same SR."""
    from dynvm.xen.records import srs_by_name

    def sr(uuid: str, name: str, size: int, used: int) -> dict[str, str]:
        return {"uuid": uuid, "name_label": name, "physical_size": str(size),
                "physical_utilisation": str(used)}

    srs = [sr("a", "Local storage", 100, 90), sr("b", "Local storage", 100, 40),
           sr("c", "Local storage", 200, 140), sr("d", "ISO", 10, 0)]
    chosen = srs_by_name(srs)
    assert {n: s["uuid"] for n, s in chosen.items()} == {"Local storage": "b", "ISO": "d"}
