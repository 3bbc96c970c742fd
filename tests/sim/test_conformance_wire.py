"""Wire-level conformance: envelopes, value encodings, method names, argument
checks and the generic database errors, seen through real clients."""

from __future__ import annotations

import http.client
import ssl
import sys
import threading
import time
import xmlrpc.client
from typing import Any
from urllib.parse import urlparse

import pytest
import XenAPI

from dynvm.sim import Farm

from .conftest import PASSWORD, USER, fast_timing, login, raw_call, raw_login

NULL = "OpaqueRef:NULL"


def failure_of(fn: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        fn(*args)
    return info.value.details


def post(url: str, path: str, body: bytes) -> tuple[int, bytes]:
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    try:
        conn.request("POST", path, body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_envelope_and_value_encodings(farm: Farm, x: Any) -> None:
    url = farm.pools[0].master.url
    ref = raw_login(url)
    env = raw_call(url, "VM.get_all_records", ref)
    assert env["Status"] == "Success" and set(env) == {"Status", "Value"}
    vm = next(r for r in env["Value"].values() if not r["is_a_template"]
              and not r["is_control_domain"])
    for field in ("memory_static_max", "VCPUs_max", "domid", "user_version"):
        assert isinstance(vm[field], str) and int(vm[field]) >= 0, field
    assert isinstance(vm["HVM_shadow_multiplier"], float)
    assert isinstance(vm["is_a_template"], bool)
    assert isinstance(vm["snapshot_time"], xmlrpc.client.DateTime)
    assert vm["snapshot_time"].value == "19700101T00:00:00Z"
    assert vm["power_state"] == "Running"
    assert vm["parent"] == NULL
    assert all(r.startswith("OpaqueRef:") for r in env["Value"])
    void = raw_call(url, "VM.set_name_description", ref, next(iter(env["Value"])), "d")
    assert void == {"Status": "Success", "Value": ""}
    bad = raw_call(url, "VM.get_record", ref, NULL)
    assert bad == {"Status": "Failure", "ErrorDescription": ["HANDLE_INVALID", "VM", NULL]}


def test_raw_body_is_xapi_shaped(farm: Farm) -> None:
    url = farm.pools[0].master.url
    ref = raw_login(url)
    host = raw_call(url, "host.get_all", ref)["Value"][0]
    body = xmlrpc.client.dumps((ref, host), "host.get_API_version_major").encode()
    status, out = post(url, "/", body)
    assert status == 200
    assert b"<member><name>Value</name><value>2</value></member>" in out
    metrics = raw_call(url, "host.get_metrics", ref, host)["Value"]
    body = xmlrpc.client.dumps((ref, metrics), "host_metrics.get_last_updated").encode()
    assert b"<dateTime.iso8601>" in post(url, "/RPC2", body)[1]


def test_both_paths_and_malformed_requests(farm: Farm) -> None:
    url = farm.pools[0].master.url
    body = xmlrpc.client.dumps((USER, PASSWORD), "session.login_with_password").encode()
    for path in ("/", "/RPC2"):
        status, out = post(url, path, body)
        assert status == 200 and b"Success" in out
    assert post(url, "/nope", body)[0] == 404
    assert post(url, "/", b"<methodCall><oops")[0] == 500
    s1 = XenAPI.Session(url)  # no path: posts to /RPC2
    s1.xenapi.login_with_password(USER, PASSWORD)
    s2 = XenAPI.Session(url + "/")  # posts to /
    s2.xenapi.login_with_password(USER, PASSWORD)
    assert s1.xenapi.pool.get_all() == s2.xenapi.pool.get_all()


def test_underscore_names_and_event_from(farm: Farm, session: XenAPI.Session) -> None:
    x = session.xenapi
    assert x.VM_get_all() == x.VM.get_all()
    vm = x.VM.get_all()[0]
    assert x.VM_guest_metrics_get_all() == x.VM_guest_metrics.get_all()
    assert x.VM_get_name_label(vm) == x.VM.get_name_label(vm)
    assert "token" in x.event_from(["vm"], "", 0.0)


def test_unknown_method_count_mismatch_and_async_fault(farm: Farm) -> None:
    url = farm.pools[0].master.url
    ref = raw_login(url)
    assert raw_call(url, "VM.frobnicate", ref)["ErrorDescription"] == [
        "MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]
    assert raw_call(url, "Nope.get_all", ref)["ErrorDescription"] == [
        "MESSAGE_METHOD_UNKNOWN", "Nope.get_all"]
    vm = raw_call(url, "VM.get_all", ref)["Value"][0]
    assert raw_call(url, "VM.get_record", ref, vm, "extra")["ErrorDescription"] == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "2"]
    assert raw_call(url, "VM.clone", ref, vm)["ErrorDescription"] == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.clone", "2", "1"]
    assert raw_call(url, "VM_clone", ref, vm)["ErrorDescription"] == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM_clone", "2", "1"]
    fault = raw_call(url, "Async.VM.get_record", ref, vm)["ErrorDescription"]
    assert fault[0] == "Fault" and "No async mode" in fault[1]


def test_versioned_parameters(farm: Farm, x: Any) -> None:
    url = farm.pools[0].master.url
    for args in ((USER, PASSWORD), (USER, PASSWORD, "1.1"), (USER, PASSWORD, "1.1", "me")):
        assert raw_call(url, "session.login_with_password", *args)["Status"] == "Success"
    assert raw_call(url, "session.login_with_password", USER)["ErrorDescription"][0] == \
        "MESSAGE_PARAMETER_COUNT_MISMATCH"
    host = x.host.get_all()[1]
    x.host.disable(host)
    assert x.host.get_enabled(host) is False
    x.host.enable(host)
    x.host.disable(host, False)
    assert x.host.get_enabled(host) is False


def test_int_params_as_string_or_int(farm: Farm, x: Any) -> None:
    tpl = x.VM.get_by_name_label("tmpl-cnt7.7")[0]
    vm = x.VM.clone(tpl, "ints")
    x.VM.set_VCPUs_max(vm, "10")
    x.VM.set_VCPUs_at_startup(vm, 3)
    assert (x.VM.get_VCPUs_max(vm), x.VM.get_VCPUs_at_startup(vm)) == ("10", "3")
    x.VM.set_memory(vm, str(3 << 30))
    assert x.VM.get_memory_static_max(vm) == str(3 << 30)
    x.VM.set_memory_limits(vm, str(1 << 30), str(2 << 30), 1 << 30, str(2 << 30))
    assert x.VM.get_memory_dynamic_max(vm) == str(2 << 30)
    assert failure_of(x.VM.set_memory_limits, vm, str(3 << 30), str(2 << 30), str(2 << 30),
                      str(2 << 30)) == ["MEMORY_CONSTRAINT_VIOLATION_ORDER"]
    assert failure_of(x.VM.set_VCPUs_at_startup, vm, "11")[0] == "INVALID_VALUE"


def test_generic_getters_setters_and_db_errors(farm: Farm, x: Any) -> None:
    vm = x.VM.get_by_name_label("tmpl-cnt7.9")[0]
    rec = x.VM.get_record(vm)
    assert x.VM.get_by_uuid(rec["uuid"]) == vm
    assert x.VM.get_uuid(vm) == rec["uuid"]
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_name_label(vm) == "tmpl-cnt7.9"
    assert failure_of(x.VM.get_by_uuid, "nope") == ["UUID_INVALID", "VM", "nope"]
    assert failure_of(x.VM.get_record, "OpaqueRef:bogus") == ["HANDLE_INVALID", "VM",
                                                              "OpaqueRef:bogus"]
    assert failure_of(x.SR.get_record, vm) == ["HANDLE_INVALID", "SR", vm]
    assert x.VM.get_by_name_label("no such VM") == []
    x.VM.set_name_label(vm, "renamed")
    x.VM.set_name_description(vm, "desc")
    x.VM.set_PV_args(vm, "quiet")
    host = x.host.get_all()[0]
    x.VM.set_affinity(vm, host)
    rec2 = x.VM.get_record(vm)
    assert (rec2["name_label"], rec2["name_description"], rec2["PV_args"], rec2["affinity"]) == (
        "renamed", "desc", "quiet", host)
    x.VM.add_to_other_config(vm, "k", "v")
    assert failure_of(x.VM.add_to_other_config, vm, "k", "v") == [
        "MAP_DUPLICATE_KEY", "VM", "other_config", vm, "k"]
    x.VM.remove_from_other_config(vm, "k")
    x.VM.remove_from_other_config(vm, "k")  # missing key: no error
    assert "k" not in x.VM.get_other_config(vm)
    x.VM.add_tags(vm, "t1")
    assert x.VM.get_tags(vm) == ["t1"]
    x.VM.remove_tags(vm, "t1")
    assert x.VM.get_tags(vm) == []


def test_read_calls_of_every_class(farm: Farm, session: XenAPI.Session) -> None:
    x = session.xenapi
    pool = x.pool.get_all()[0]
    prec = x.pool.get_record(pool)
    master = x.pool.get_master(pool)
    assert prec["master"] == master and x.pool.get_default_SR(pool) == prec["default_SR"]
    hosts = x.host.get_all()
    assert set(x.host.get_all_records()) == set(hosts)
    h = x.host.get_record(master)
    assert x.host.get_by_name_label(h["name_label"]) == [master]
    assert int(h["cpu_info"]["cpu_count"]) > 0
    assert isinstance(h["software_version"]["product_version"], str)
    metrics = x.host.get_metrics(master)
    assert int(x.host_metrics.get_record(metrics)["memory_total"]) > int(
        x.host_metrics.get_memory_free(metrics))
    resident = x.host.get_resident_VMs(master)
    assert h["control_domain"] in resident
    guest = next(v for v in resident if not x.VM.get_is_control_domain(v))
    gm = x.VM.get_guest_metrics(guest)
    assert x.VM_guest_metrics.get_record(gm)["networks"]["0/ip"].startswith("127.")
    assert gm in x.VM_guest_metrics.get_all_records()
    assert x.VM_guest_metrics.get_os_version(gm)["distro"]
    assert int(x.VM_metrics.get_record(x.VM.get_metrics(guest))["memory_actual"]) > 0
    vif = x.VM.get_VIFs(guest)[0]
    assert x.VIF.get_VM(vif) == guest and vif in x.VIF.get_all()
    net = x.VIF.get_network(vif)
    assert vif in x.network.get_record(net)["VIFs"]
    vbd = x.VM.get_VBDs(guest)[0]
    vdi = x.VBD.get_VDI(vbd)
    vdi_rec = x.VDI.get_record(vdi)
    assert vbd in vdi_rec["VBDs"] and vdi in x.SR.get_VDIs(vdi_rec["SR"])
    srs = x.SR.get_all_records()
    assert srs[vdi_rec["SR"]]["name_label"] == "Local storage"
    assert int(x.SR.get_physical_size(vdi_rec["SR"])) > int(
        x.SR.get_physical_utilisation(vdi_rec["SR"]))
    pbd = x.SR.get_PBDs(vdi_rec["SR"])[0]
    assert x.PBD.get_record(pbd)["host"] == x.VM.get_resident_on(guest)
    pif = x.host.get_PIFs(master)[0]
    assert x.PIF.get_record(pif)["host"] == master
    assert pif in x.network.get_PIFs(x.PIF.get_network(pif))
    assert x.session.get_this_host(session.handle) == master


def test_https_with_verification() -> None:
    with Farm.generate(pools=1, hosts=1, https=True, timing=fast_timing()) as farm:
        url = farm.pools[0].master.url
        assert url.startswith("https://") and farm.ca_file
        ctx = ssl.create_default_context(cafile=farm.ca_file)
        session = login(url, transport=xmlrpc.client.SafeTransport(context=ctx))
        assert len(session.xenapi.host.get_all()) == 1
        with pytest.raises(ssl.SSLError):
            XenAPI.Session(url).xenapi.login_with_password(USER, PASSWORD)
        assert "host.tls.ca=" + farm.ca_file in farm.ini_sections()


def test_string_escaping(farm: Farm, x: Any) -> None:
    vm = x.VM.get_all()[0]
    x.VM.set_name_description(vm, 'a<b>&"c"\td')
    assert x.VM.get_name_description(vm) == 'a<b>&"c"\td'
    # Control characters (which XML cannot carry) are dropped on the way out.
    farm.pools[0].db.modify("VM", vm, {"name_description": 'a<b>&"c"\x01\td'})
    assert x.VM.get_name_description(vm) == 'a<b>&"c"\td'
    assert x.VM.get_record(vm)["name_description"] == 'a<b>&"c"\td'


def test_name_lookups_survive_concurrent_creates() -> None:
    """VM.get_by_name_label scans the table while clones add rows to it."""
    from dynvm.sim.db import Database
    from dynvm.sim.farmgen import generate_pool

    db = Database(generate_pool("p", 2, 50))
    done = threading.Event()

    def churn() -> None:
        while not done.is_set():
            db.create("VM", {"name_label": "churn"})
            time.sleep(0)  # let the reader at the lock

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so a scan meets a create
    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for _ in range(300):
            assert len(db.select("VM", name_label="tmpl-cnt7.7")) == 1
    finally:
        done.set()
        writer.join()
        sys.setswitchinterval(interval)
