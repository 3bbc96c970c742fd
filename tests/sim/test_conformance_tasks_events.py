"""Async tasks and event.from."""

from __future__ import annotations

import threading
import xmlrpc.client
from typing import Any

import pytest
import XenAPI

from dynvm.sim import Farm

from .conftest import fast_timing, login, raw_call, raw_login, wait_for

NULL = "OpaqueRef:NULL"


def finished(x: Any, task: str) -> dict[str, Any]:
    wait_for(lambda: x.task.get_status(task) != "pending", timeout=60)
    return x.task.get_record(task)


def test_async_clone_success(farm: Farm, x: Any) -> None:
    tpl = x.VM.get_by_name_label("tmpl-cnt8.2")[0]
    task = x.Async.VM.clone(tpl, "async-1")
    assert task.startswith("OpaqueRef:") and task in x.task.get_all()
    rec = finished(x, task)
    assert rec["status"] == "success" and rec["progress"] == 1.0
    assert rec["name_label"] == "Async.VM.clone"
    assert rec["error_info"] == [] and rec["finished"].value != "19700101T00:00:00Z"
    vm = x.VM.get_by_name_label("async-1")[0]
    assert rec["result"] == f"<value>{vm}</value>"
    assert xmlrpc.client.loads(
        f"<params><param>{rec['result']}</param></params>")[0][0] == vm
    # void results are an empty value
    void = x.Async.VM.set_VCPUs_max(vm, "12")
    assert finished(x, void)["result"] == "<value></value>"
    x.task.destroy(void)
    assert void not in x.task.get_all()


def test_async_failure_carries_error_info(farm: Farm, x: Any) -> None:
    tpl = x.VM.get_by_name_label("tmpl-cnt8.2")[0]
    rec = finished(x, x.Async.VM.start(tpl, False, False))
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["VM_IS_TEMPLATE", tpl, "start"]
    assert rec["result"] == ""
    # Arity errors come back synchronously, before any task exists.
    with pytest.raises(XenAPI.Failure) as info:
        x.Async.VM.clone(tpl)
    assert info.value.details[0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"


def test_task_cancel() -> None:
    timing = fast_timing()
    timing.speed = 0.01  # a 1000 s Windows clone: only cancelling ends it in this test
    with Farm.generate(pools=1, hosts=1, timing=timing) as farm:
        x = login(farm.pools[0].master.url).xenapi
        tpl = x.VM.get_by_name_label("tmpl-win16dc - PATCHED (1)")[0]
        before = len(x.VM.get_all())
        task = x.Async.VM.clone(tpl, "never")
        # The clone's wait blocks neither the server nor the database.
        assert x.VM.get_name_label(tpl) == "tmpl-win16dc - PATCHED (1)"
        x.VM.set_name_description(tpl, "still served")
        assert x.task.get_status(task) == "pending"
        x.task.cancel(task)
        rec = finished(x, task)
        assert rec["status"] == "cancelled"
        assert rec["error_info"] == ["TASK_CANCELLED", task]
        assert len(x.VM.get_all()) == before
        with pytest.raises(XenAPI.Failure) as info:
            x.task.cancel(task)
        assert info.value.details[0] == "OPERATION_NOT_ALLOWED"


def test_event_from_initial_dump_and_tokens(farm: Farm, x: Any) -> None:
    full = x.event_from(["vm"], "", 0.0)
    vms = x.VM.get_all()
    assert {e["ref"] for e in full["events"]} == set(vms)
    assert all(e["operation"] == "add" and e["class"] == "vm" for e in full["events"])
    ev = full["events"][0]
    assert ev["snapshot"] == x.VM.get_record(ev["ref"])
    assert full["valid_ref_counts"] == {"vm": len(vms)}
    token = full["token"]
    assert isinstance(token, str) and token

    quiet = x.event_from(["vm"], token, 0.2)
    assert quiet["events"] == [] and quiet["token"] >= token

    vm = vms[0]
    x.VM.set_name_description(vm, "changed")
    got = x.event_from(["VM"], token, 5.0)
    assert [(e["operation"], e["ref"]) for e in got["events"]] == [("mod", vm)]
    assert got["events"][0]["snapshot"]["name_description"] == "changed"

    # Per-object subscriptions and "*".
    other = vms[1]
    t2 = got["token"]
    x.VM.set_name_description(other, "x")
    x.VM.set_name_description(vm, "y")
    only = x.event_from([f"vm/{vm}"], t2, 1.0)
    assert [e["ref"] for e in only["events"]] == [vm]
    anything = x.event_from(["*"], t2, 1.0)
    assert {vm, other} <= {e["ref"] for e in anything["events"]}


def test_event_from_blocks_until_a_change(farm: Farm, session: XenAPI.Session) -> None:
    x = session.xenapi
    token = x.event_from(["vm"], "", 0.0)["token"]
    vm = x.VM.get_all()[0]
    url = farm.pools[0].master.url
    changer_session = raw_login(url)

    host = farm.pools[0].master.name_label
    farm.reset_call_counts()

    def change() -> None:
        # Only once the long poll is being served: what it returns came after it.
        def arrived() -> bool:  # the client may spell it event_from
            counts = farm.call_counts().get(host, {})
            return counts.get("event.from", 0) + counts.get("event_from", 0) >= 1

        wait_for(arrived, timeout=60, what="the event.from call to arrive")
        raw_call(url, "VM.set_name_label", changer_session, vm, "woken")

    t = threading.Thread(target=change)
    t.start()
    got = x.event_from(["vm"], token, 120.0)
    t.join()
    assert [e["snapshot"]["name_label"] for e in got["events"]] == ["woken"]


def test_event_from_add_and_del_and_errors(farm: Farm, x: Any) -> None:
    token = x.event_from(["vm", "vbd"], "", 0.0)["token"]
    tpl = x.VM.get_by_name_label("tmpl-ubu18.04")[0]
    vm = x.VM.clone(tpl, "ev")
    got = x.event_from(["vm"], token, 1.0)
    assert ("add", vm) in [(e["operation"], e["ref"]) for e in got["events"]]
    x.VM.destroy(vm)
    gone = x.event_from(["vm"], got["token"], 1.0)
    dels = [e for e in gone["events"] if e["operation"] == "del"]
    assert [e["ref"] for e in dels] == [vm] and "snapshot" not in dels[0]
    with pytest.raises(XenAPI.Failure) as info:
        x.event_from(["vm"], "garbage", 0.0)
    assert info.value.details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]
    with pytest.raises(XenAPI.Failure) as info:
        x.event_from(["nosuchclass"], "", 0.0)
    assert info.value.details == ["EVENT_SUBSCRIPTION_PARSE_FAILURE", "nosuchclass"]
    assert getattr(x.event, "from")(["task"], "", 0.0)["valid_ref_counts"] == {
        "task": len(x.task.get_all())}


def test_legacy_event_calls(farm: Farm, x: Any) -> None:
    with pytest.raises(XenAPI.Failure) as info:
        x.event.next()
    assert info.value.details[0] == "SESSION_NOT_REGISTERED"
    x.event.register(["vm"])
    vm = x.VM.get_all()[0]
    x.VM.set_name_description(vm, "legacy")
    evs = x.event.next()
    assert [e["ref"] for e in evs] == [vm] and float(evs[0]["timestamp"]) > 0
    assert int(x.event.get_current_id()) > 0
