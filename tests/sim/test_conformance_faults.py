"""Faults on demand (Farm methods and the HTTP control endpoint) and call counts."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import XenAPI

from dynvm.sim import Farm

from .conftest import PASSWORD, USER, fast_timing, login, raw_call, wait_for
from .test_conformance_ops import new_vm


def control(farm: Farm, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(farm.control_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def guest_ip(x: Any, vm: str) -> str | None:
    gm = x.VM.get_guest_metrics(vm)
    if gm == "OpaqueRef:NULL":
        return None
    return x.VM_guest_metrics.get_networks(gm).get("0/ip")


def test_unreachable_host_refuses_connections(farm: Farm) -> None:
    master = farm.pools[0].master
    session = login(master.url)
    farm.set_unreachable(master.name_label)
    with pytest.raises(ConnectionRefusedError):
        session.xenapi.pool.get_all()
    with pytest.raises(ConnectionRefusedError):
        XenAPI.Session(master.url).xenapi.login_with_password(USER, PASSWORD)
    status, _ = control(farm, "POST", "/faults",
                        {"kind": "unreachable", "host": master.name_label, "on": False})
    assert status == 200
    assert len(session.xenapi.pool.get_all()) == 1


def test_slow_host(farm: Farm) -> None:
    master = farm.pools[0].master
    x = login(master.url).xenapi
    control(farm, "POST", "/faults", {"kind": "slow", "host": master.name_label, "seconds": 1.0})
    start = time.monotonic()
    x.pool.get_all()
    assert time.monotonic() - start >= 0.99  # a delay can only make it later
    farm.set_slow(master.name_label, 0)
    start = time.monotonic()
    x.pool.get_all()
    assert time.monotonic() - start < 0.9  # no longer delayed (a local call takes milliseconds)


def test_fail_next(farm: Farm, x: Any) -> None:
    tpl = x.VM.get_by_name_label("tmpl-cnt7.7")[0]
    farm.fail_next("VM.clone", 2, "SR_BACKEND_FAILURE_44", ["", "There is insufficient space", ""])
    for _ in range(2):
        with pytest.raises(XenAPI.Failure) as info:
            x.VM.clone(tpl, "f")
        assert info.value.details == ["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""]
    assert x.VM.clone(tpl, "ok").startswith("OpaqueRef:")
    status, _ = control(farm, "POST", "/faults", {"kind": "fail_next", "method": "VM.start",
                                                  "count": 1, "code": "HOST_OFFLINE",
                                                  "params": ["h"]})
    assert status == 200
    task = x.Async.VM.start(tpl, False, False)  # the Async spelling matches too
    wait_for(lambda: x.task.get_status(task) != "pending")
    assert x.task.get_error_info(task) == ["HOST_OFFLINE", "h"]
    farm.fail_next("VM_get_name_label", 1, "INTERNAL_ERROR", ["boom"],
                   host=farm.pools[0].master.name_label)
    with pytest.raises(XenAPI.Failure) as info:
        x.VM.get_name_label(tpl)  # sent as VM.get_name_label: same message
    assert info.value.details == ["INTERNAL_ERROR", "boom"]
    assert x.VM.get_name_label(tpl) == "tmpl-cnt7.7"


def test_a_held_call_waits_until_released(farm: Farm, x: Any) -> None:
    tpl = x.VM.get_by_name_label("tmpl-cnt7.7")[0]
    url = farm.pools[0].master.url
    hold = farm.hold("VM.clone")
    answers: dict[str, str] = {}

    def clone(name: str, asynchronously: bool = False) -> None:
        api = login(url).xenapi  # a session of its own: this one waits
        answers[name] = (api.Async.VM.clone if asynchronously else api.VM.clone)(tpl, name)

    first = threading.Thread(target=clone, args=("held",))
    first.start()
    assert hold.reached.wait(30)
    assert "held" not in answers  # it waits, however long the test looks
    assert x.VM.get_name_label(tpl) == "tmpl-cnt7.7"  # other calls go on
    hold.release()
    first.join(30)
    assert answers["held"].startswith("OpaqueRef:")
    # The Async spelling is held too, and clear_faults lets every held call go.
    again = farm.hold("Async.VM.clone")
    second = threading.Thread(target=clone, args=("again", True))
    second.start()
    assert again.reached.wait(30) and "again" not in answers
    farm.clear_faults()
    second.join(30)
    assert answers["again"].startswith("OpaqueRef:")


def test_dhcp_exhausted_windows_link_local_linux_nothing(farm: Farm, x: Any) -> None:
    status, _ = control(farm, "POST", "/faults", {"kind": "dhcp_exhausted", "pool": "pool1"})
    assert status == 200
    win = new_vm(x, "w", template="tmpl-win16dc - PATCHED (1)")
    lin = new_vm(x, "l", template="tmpl-cnt7.9")
    # Linux first: its boot and address times are shorter, so its address event is
    # due before the Windows one, and the farm's scheduler runs events in due order.
    x.VM.start(lin, False, False)
    x.VM.start(win, False, False)
    ip = wait_for(lambda: guest_ip(x, win))
    assert ip.startswith("169.254.")
    # The Linux guest booted (os_version appears) but never reports an address.
    assert x.VM.get_guest_metrics(lin) != "OpaqueRef:NULL"
    assert guest_ip(x, lin) is None
    farm.exhaust_dhcp("pool1", on=False)
    x.VM.hard_reboot(lin)
    assert wait_for(lambda: guest_ip(x, lin)).startswith("127.")


def test_real_range_exhaustion() -> None:
    with Farm.generate(pools=1, hosts=1, timing=fast_timing()) as farm:
        x = login(farm.pools[0].master.url).xenapi
        net = next(n for n, r in x.network.get_all_records().items()
                   if "eth0" in r["name_label"])
        x.network.remove_from_other_config(net, "dynvm_sim_dhcp")
        x.network.add_to_other_config(net, "dynvm_sim_dhcp", "127.77.0.10-127.77.0.10")
        first = new_vm(x, "a", template="tmpl-cnt7.7")
        x.VM.start(first, False, False)
        assert wait_for(lambda: guest_ip(x, first)) == "127.77.0.10"
        win = new_vm(x, "b", template="tmpl-win16dc - PATCHED (1)")
        x.VM.start(win, False, False)
        assert wait_for(lambda: guest_ip(x, win)).startswith("169.254.")


def test_call_counts_and_control_endpoint(farm: Farm, x: Any) -> None:
    master = farm.pools[0].master.name_label
    farm.reset_call_counts()
    x.VM.get_all()
    x.VM_get_all()
    x.VM.get_all()
    status, counts = control(farm, "GET", "/counts")
    assert status == 200
    assert counts[master]["VM.get_all"] == 2 and counts[master]["VM_get_all"] == 1
    assert farm.call_counts() == counts  # the control calls were not counted
    assert control(farm, "POST", "/counts/reset") == (200, {"ok": True})
    assert farm.call_counts() == {}
    assert control(farm, "GET", "/health") == (200, {"ok": True})
    doc = control(farm, "GET", "/farm")[1]
    assert doc["pools"][0]["master"] == master and len(doc["pools"][0]["hosts"]) == 2
    assert control(farm, "POST", "/faults", {"kind": "bogus"})[0] == 400
    assert control(farm, "POST", "/faults", {"kind": "slow"})[0] == 400
    assert control(farm, "POST", "/faults", {"kind": "slow", "host": "nope",
                                             "seconds": 1})[0] == 404
    assert control(farm, "GET", "/nope")[0] == 404


def test_invalidate_sessions_via_control(farm: Farm) -> None:
    url = farm.pools[0].master.url
    ref = raw_call(url, "session.login_with_password", USER, PASSWORD)["Value"]
    assert control(farm, "POST", "/faults", {"kind": "invalidate_sessions"})[0] == 200
    assert raw_call(url, "VM.get_all", ref)["ErrorDescription"] == ["SESSION_INVALID", ref]


def test_guest_ssh_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Farm.generate(pools=1, hosts=1, vms_per_host=1, guest_ssh_port=port,
                       timing=fast_timing()) as farm:
        x = login(farm.pools[0].master.url).xenapi
        vm = new_vm(x, "ssh")
        x.VM.start(vm, False, False)
        ip = wait_for(lambda: guest_ip(x, vm))
        with socket.create_connection((ip, port), timeout=5) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-")
        existing = next(v for v, r in x.VM.get_all_records().items()
                        if r["power_state"] == "Running" and not r["is_control_domain"]
                        and v != vm)
        with socket.create_connection((guest_ip(x, existing), port), timeout=5):
            pass
        x.VM.hard_shutdown(vm)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((ip, port), timeout=5)


def test_clear_lifts_every_fault_unreachable_hosts_too(farm: Farm) -> None:
    master = farm.pools[0].master
    session = login(master.url)
    try:
        assert control(farm, "POST", "/faults",
                       {"kind": "unreachable", "host": master.name_label})[0] == 200
        with pytest.raises(ConnectionRefusedError):
            session.xenapi.pool.get_all()
        assert control(farm, "POST", "/faults", {"kind": "clear"}) == (200, {"ok": True})
        assert len(session.xenapi.pool.get_all()) == 1
    finally:
        farm.set_unreachable(master.name_label, False)


def test_every_timing_field_get_lists_can_be_posted(farm: Farm) -> None:
    before = control(farm, "GET", "/timing")[1]
    try:
        status, doc = control(farm, "POST", "/timing",
                              {"boot_secs": {"windows": 90}, "clone_secs": 3, "ip_secs": 1.5})
        assert status == 200, doc
        assert doc["boot_secs"] == {"linux": before["boot_secs"]["linux"], "windows": 90.0}
        assert doc["clone_secs"] == {"linux": 3.0, "windows": 3.0}
        assert farm.timing.boot_secs["windows"] == 90.0
        for bad in ({"boot_secs": {"solaris": 1}}, {"boot_secs": -1}, {"nope": 1},
                    {"boot_secs": {"linux": "fast"}}):
            status, err = control(farm, "POST", "/timing", bad)
            assert status == 400 and err["error"], (bad, err)
        assert control(farm, "GET", "/timing")[1]["ip_secs"] == {"linux": 1.5, "windows": 1.5}
        assert set(before) == set(control(farm, "GET", "/timing")[1])
    finally:
        control(farm, "POST", "/timing", {k: v for k, v in before.items()})
