"""Building, waiting for and destroying VMs; failures leave nothing behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import XenAPI

from dynvm.core.ports import (
    TAG_LEASE,
    TAG_OWNER,
    TAG_STATE,
    LinkLocalOnly,
    VmBuild,
    WaitTimeout,
    XenError,
)
from dynvm.sim import Farm
from dynvm.xen.pool import XenPoolClient
from tests.support.clock import SteppedClock
from tests.xen.conftest import (
    LINUX_TEMPLATE,
    STORAGE,
    WINDOWS_TEMPLATE,
    host_config,
    wait_until,
)

GIB = 1 << 30


def spec(client: XenPoolClient, name: str, *, template: str = LINUX_TEMPLATE,
         vcpus: int | None = 2, memory: int | None = 2 * GIB,
         network_device: str | None = None, host: int = 0) -> VmBuild:
    hosts = client.view().hosts
    return VmBuild(
        name=name, description=f"{name} from {template}", template=template,
        host_uuid=hosts[host].uuid, storage_name=STORAGE, vcpus=vcpus, memory_bytes=memory,
        network_device=network_device,
        tags={TAG_OWNER: "tests", TAG_LEASE: f"lease-{name}"},
    )


def footprint(x: XenAPI.Session) -> tuple:
    """What a build must give back: free memory per host, SR usage, VM and VDI sets."""
    xa = x.xenapi
    mem = tuple(sorted((h["uuid"], xa.host_metrics.get_memory_free(h["metrics"]))
                       for h in xa.host.get_all_records().values()))
    srs = tuple(sorted((s["uuid"], s["physical_utilisation"])
                       for s in xa.SR.get_all_records().values()))
    vms = frozenset(xa.VM.get_all())
    vdis = frozenset(xa.VDI.get_all())
    return mem, srs, vms, vdis


def test_build_wait_destroy_gives_everything_back(fresh_client: XenPoolClient,
                                                  truth: XenAPI.Session) -> None:
    c = fresh_client
    before = footprint(truth)
    s = spec(c, "ci-linux-1", host=1)
    vm = c.build(s)
    # our own write is visible to the very next view, without waiting for events
    view = c.view()
    assert view.vms[vm.uuid].power_state == "Running"
    assert vm.resident_on == s.host_uuid
    assert vm.vcpus_max == 2 and vm.memory_static_max == 2 * GIB
    assert vm.name_description == s.description
    assert vm.other_config[TAG_LEASE] == "lease-ci-linux-1"
    assert vm.other_config[TAG_STATE] != "provisioning"
    assert not vm.is_template
    x = truth.xenapi
    ref = x.VM.get_by_uuid(vm.uuid)
    assert x.VM.get_VCPUs_at_startup(ref) == "2"
    disks = [x.VBD.get_VDI(b) for b in x.VM.get_VBDs(ref) if x.VBD.get_type(b) == "Disk"]
    assert disks
    for vdi in disks:
        sr = x.VDI.get_SR(vdi)
        assert x.SR.get_name_label(sr) == STORAGE
        hosts_of_sr = {x.PBD.get_host(p) for p in x.SR.get_PBDs(sr)}
        assert x.host.get_by_uuid(s.host_uuid) in hosts_of_sr

    ip = c.wait_ready(vm.uuid, windows=False, timeout=10)
    parts = ip.split(".")
    assert len(parts) == 4 and all(p.isdigit() for p in parts) and not ip.startswith("169.254.")
    assert ip in wait_until(lambda: c.view().vms[vm.uuid].ips)

    assert c.destroy(vm.uuid) is True
    assert vm.uuid not in c.view().vms
    assert footprint(truth) == before
    assert c.destroy(vm.uuid) is False  # idempotent


def test_destroy_unknown_vm_is_false(client: XenPoolClient) -> None:
    assert client.destroy("00000000-0000-0000-0000-000000000000") is False


def test_builds_in_parallel(fresh_client: XenPoolClient, truth: XenAPI.Session) -> None:
    c = fresh_client
    before = footprint(truth)
    specs = [spec(c, f"par-{i}", host=i % 2) for i in range(6)]
    results: dict[str, str] = {}
    uuids: list[str] = []
    errors: list[BaseException] = []

    def one(s: VmBuild) -> None:
        try:
            vm = c.build(s)
            uuids.append(vm.uuid)
            results[s.name] = c.wait_ready(vm.uuid, windows=False, timeout=15)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results.values())) == 6  # distinct addresses while all run
    assert sorted(v.name_label for v in c.view().running_on(specs[0].host_uuid)) \
        == ["par-0", "par-2", "par-4"]
    gone = [threading.Thread(target=c.destroy, args=(u,)) for u in uuids]
    for t in gone:
        t.start()
    for t in gone:
        t.join()
    assert footprint(truth) == before


FAILURES = [
    ("VM.clone", "SR_BACKEND_FAILURE_44", ["", "There is insufficient space", ""]),
    ("VM.set_other_config", "INTERNAL_ERROR", ["tags and disks spec"]),
    ("VM.set_memory_limits", "MEMORY_CONSTRAINT_VIOLATION_ORDER", []),
    ("VIF.create", "INTERNAL_ERROR", ["vif create failed"]),
    ("VM.add_to_other_config", "INTERNAL_ERROR", ["disks spec"]),
    ("VM.provision", "SR_BACKEND_FAILURE_44", ["", "There is insufficient space", ""]),
    ("VM.start_on", "HOST_NOT_ENOUGH_FREE_MEMORY", ["2147483648", "1024"]),
]


@pytest.mark.parametrize(("method", "code", "params"), FAILURES,
                         ids=[f[0] for f in FAILURES])
def test_failure_at_each_step_leaves_nothing(fresh_farm: Farm, fresh_client: XenPoolClient,
                                             truth: XenAPI.Session, method: str, code: str,
                                             params: list[str]) -> None:
    c = fresh_client
    s = spec(c, f"fail-{method}", network_device="eth0")
    before = footprint(truth)
    fresh_farm.fail_next(method, 1, code, params)
    with pytest.raises(XenError) as err:
        c.build(s)
    assert err.value.code == code
    assert err.value.params == params
    assert truth.xenapi.VM.get_by_name_label(s.name) == []
    assert footprint(truth) == before
    assert not [v for v in c.tagged_vms() if v.name_label == s.name]


def test_cancel_before_start_leaves_nothing(fresh_client: XenPoolClient,
                                            truth: XenAPI.Session) -> None:
    c = fresh_client
    s = spec(c, "cancelled")
    before = footprint(truth)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(XenError) as err:
        c.build(s, cancel)
    assert err.value.code == "CANCELLED"
    assert footprint(truth) == before


def test_unknown_template_is_an_error(client: XenPoolClient) -> None:
    with pytest.raises(XenError) as err:
        client.build(spec(client, "x", template="no such template"))
    assert err.value.code == "TEMPLATE_NOT_FOUND"


def test_unknown_network_device_fails_and_cleans_up(fresh_client: XenPoolClient,
                                                    truth: XenAPI.Session) -> None:
    before = footprint(truth)
    with pytest.raises(XenError) as err:
        fresh_client.build(spec(fresh_client, "nonet", network_device="eth99"))
    assert err.value.code == "PIF_NOT_FOUND"
    assert footprint(truth) == before


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def stepped_client(fresh_farm: Farm, clock: SteppedClock) -> Iterator[XenPoolClient]:
    """A client of the fresh farm whose waits on guests run on `clock`."""
    c = XenPoolClient(host_config(fresh_farm), clock=clock)
    try:
        yield c
    finally:
        c.close()


def link_local_seen(c: XenPoolClient, vm_uuid: str) -> bool:
    """The client's own view of the pool shows the VM with a 169.254.x.y address."""
    vm = c.view().vms.get(vm_uuid)
    return vm is not None and any(ip.startswith("169.254.") for ip in vm.ips)


def test_windows_with_exhausted_dhcp_is_link_local(fresh_farm: Farm, clock: SteppedClock) -> None:
    c = XenPoolClient(host_config(fresh_farm), link_local_settle=30, clock=clock)
    try:
        fresh_farm.exhaust_dhcp()
        vm = c.build(spec(c, "win-1", template=WINDOWS_TEMPLATE, vcpus=None, memory=None))
        wait_until(lambda: link_local_seen(c, vm.uuid), timeout=30, what="a link-local address")
        clock.advance_when_waiting(30)  # the settle time, far inside the deadline
        with pytest.raises(LinkLocalOnly) as err:
            c.wait_ready(vm.uuid, windows=True, timeout=600)
        assert err.value.params[0].startswith("169.254.")
        assert c.destroy(vm.uuid)
    finally:
        c.close()


def test_windows_link_local_at_the_deadline(fresh_farm: Farm, stepped_client: XenPoolClient,
                                            clock: SteppedClock) -> None:
    c = stepped_client  # default settle time is far longer than this wait
    fresh_farm.exhaust_dhcp()
    vm = c.build(spec(c, "win-2", template=WINDOWS_TEMPLATE, vcpus=None, memory=None))
    wait_until(lambda: link_local_seen(c, vm.uuid), timeout=30, what="a link-local address")
    clock.advance_when_waiting(21)
    with pytest.raises(LinkLocalOnly):
        c.wait_ready(vm.uuid, windows=True, timeout=20)
    c.destroy(vm.uuid)


def test_windows_gets_an_address(fresh_client: XenPoolClient) -> None:
    c = fresh_client
    vm = c.build(spec(c, "win-3", template=WINDOWS_TEMPLATE, vcpus=None, memory=None))
    ip = c.wait_ready(vm.uuid, windows=True, timeout=15)
    assert not ip.startswith("169.254.")
    c.destroy(vm.uuid)


def test_linux_with_exhausted_dhcp_times_out(fresh_farm: Farm, stepped_client: XenPoolClient,
                                             clock: SteppedClock) -> None:
    c = stepped_client
    fresh_farm.exhaust_dhcp()
    vm = c.build(spec(c, "lin-nodhcp"))
    # A Windows guest started after it asks for its address later (longer boot, longer
    # DHCP): once it holds 169.254.x.y, the Linux guest has asked too, and got nothing.
    win = c.build(spec(c, "win-later", template=WINDOWS_TEMPLATE, vcpus=None, memory=None))
    wait_until(lambda: link_local_seen(c, win.uuid), timeout=30, what="a link-local address")
    clock.advance_when_waiting(21)
    with pytest.raises(WaitTimeout):
        c.wait_ready(vm.uuid, windows=False, timeout=20)
    c.destroy(vm.uuid)
    c.destroy(win.uuid)


def test_wait_ready_is_cheap(fresh_farm: Farm, stepped_client: XenPoolClient,
                             clock: SteppedClock) -> None:
    """Waiting rides on the event feed: no polling of VM or guest-metrics records, while
    a minute of the waiter's time passes in one-second steps."""
    c = stepped_client
    fresh_farm.exhaust_dhcp()
    vm = c.build(spec(c, "lin-cheap"))
    fresh_farm.reset_call_counts()
    done = threading.Event()

    def tick() -> None:
        while not done.wait(0.01):
            clock.advance(1.0)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        with pytest.raises(WaitTimeout):
            c.wait_ready(vm.uuid, windows=False, timeout=60)
    finally:
        done.set()
        ticker.join(10)
    from tests.xen.conftest import xapi_calls
    # at most one re-read of the VM, when an event batch in flight overlapped our write;
    # polling would cost several calls per second
    calls = fresh_farm.call_counts()
    assert xapi_calls(fresh_farm) <= 1, calls
    c.destroy(vm.uuid)


def test_update_is_visible_at_once(fresh_client: XenPoolClient) -> None:
    c = fresh_client
    vm = c.build(spec(c, "warm-1"))
    c.update(vm.uuid, name="handed-out", description="for job 7",
             tags={TAG_LEASE: "lease-7", TAG_STATE: "active"})
    v = c.view().vms[vm.uuid]
    assert v.name_label == "handed-out"
    assert v.name_description == "for job 7"
    assert v.other_config[TAG_LEASE] == "lease-7"
    assert v.other_config[TAG_STATE] == "active"
    c.destroy(vm.uuid)


@pytest.fixture
def template_with_vif(fresh_farm: Farm, truth: XenAPI.Session) -> str:
    """A template (cloned from the farm's) that carries a VIF on eth0's network."""
    x = truth.xenapi
    src = x.VM.get_by_name_label(LINUX_TEMPLATE)[0]
    tmpl = x.VM.clone(src, "tmpl-with-vif")
    eth0 = next(p for p in x.PIF.get_all_records().values() if p["device"] == "eth0")
    x.VIF.create({"device": "0", "network": eth0["network"], "VM": tmpl, "MAC": "",
                  "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                  "qos_algorithm_params": {}})
    return "tmpl-with-vif"


def test_vif_is_moved_to_the_configured_network(fresh_client: XenPoolClient,
                                               truth: XenAPI.Session,
                                               template_with_vif: str) -> None:
    c = fresh_client
    wait_until(lambda: template_with_vif in c.view().templates)
    vm = c.build(spec(c, "on-eth1", template=template_with_vif, network_device="eth1"))
    x = truth.xenapi
    vifs = x.VM.get_VIFs(x.VM.get_by_uuid(vm.uuid))
    assert len(vifs) == 1
    host = x.host.get_by_uuid(vm.resident_on)
    eth1 = next(p for p in x.PIF.get_all_records().values()
                if p["device"] == "eth1" and p["host"] == host)
    assert x.VIF.get_network(vifs[0]) == eth1["network"]
    assert c.wait_ready(vm.uuid, windows=False, timeout=10)
    assert c.destroy(vm.uuid)


def test_vif_move_failure_leaves_nothing(fresh_farm: Farm, fresh_client: XenPoolClient,
                                         truth: XenAPI.Session, template_with_vif: str) -> None:
    c = fresh_client
    wait_until(lambda: template_with_vif in c.view().templates)
    before = footprint(truth)
    fresh_farm.fail_next("VIF.move", 1, "INTERNAL_ERROR", ["vif move failed"])
    with pytest.raises(XenError) as err:
        c.build(spec(c, "move-fails", template=template_with_vif, network_device="eth1"))
    assert err.value.code == "INTERNAL_ERROR"
    assert footprint(truth) == before


@pytest.fixture
def slow_farm() -> Iterator[Farm]:
    """Tasks that last long enough (a clone takes ~0.5 s) to be waited on or cancelled."""
    f = Farm.generate(pools=1, hosts=2, speed=10).start()
    try:
        yield f
    finally:
        f.stop()


def test_task_waits_ride_on_the_event_feed(slow_farm: Farm) -> None:
    """A healthy feed reports every task's end: no task.get_record polling."""
    from tests.xen.conftest import count_of

    c = XenPoolClient(host_config(slow_farm))
    try:
        s = spec(c, "evented")
        slow_farm.reset_call_counts()
        vm = c.build(s)
        assert count_of(slow_farm, "Async.VM.clone") == 1
        assert count_of(slow_farm, "task.get_record") == 0
        assert c.destroy(vm.uuid)
    finally:
        c.close()


def test_cancel_during_a_task_leaves_nothing(slow_farm: Farm) -> None:
    from tests.xen.conftest import count_of

    c = XenPoolClient(host_config(slow_farm))
    s = XenAPI.Session(slow_farm.pools[0].master.url)
    s.login_with_password("root", "xenroot", "1.0", "dynvm-tests")
    try:
        sp = spec(c, "cancel-mid-clone")
        before = footprint(s)
        slow_farm.reset_call_counts()
        cancel = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                c.build(sp, cancel)
            except BaseException as exc:  # asserted below
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        wait_until(lambda: count_of(slow_farm, "Async.VM.clone") == 1, timeout=30)
        cancel.set()
        t.join(timeout=10)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], XenError)
        assert errors[0].code in ("TASK_CANCELLED", "CANCELLED")
        assert count_of(slow_farm, "task.cancel") <= 1
        assert footprint(s) == before
    finally:
        s.xenapi.session.logout()
        c.close()
