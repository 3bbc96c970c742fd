"""The legacy routes end to end: Flask app -> core -> XenAPI -> simulator."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynvm.api import create_app
from dynvm.core.services import Dynvm
from dynvm.sim import Farm
from tests.service.conftest import dynvm_on, wait_until, write_ini
from tests.support.clock import SteppedClock


def ips_ok(ips: list[str]) -> bool:
    return all(not ipaddress.IPv4Address(ip).is_link_local for ip in ips)


def test_getservers_one_vm_then_release(client, probe) -> None:
    r = client.get("/getservers/solo?os=centos")
    assert r.status_code == 200, r.text
    ips = json.loads(r.text)
    assert len(ips) == 1 and ips_ok(ips)
    assert r.text == json.dumps(ips)
    vms = probe.vms_named("solo")
    assert [v["name_label"] for v in vms] == ["solo"]
    oc = vms[0]["other_config"]
    assert oc["dynvm_owner"] == "solo" and oc["dynvm_os"] == "centos"
    assert {"dynvm_lease", "dynvm_created", "dynvm_expires"} <= set(oc)
    assert vms[0]["name_description"].startswith("solo from tmpl-cnt7.7 on ")

    r = client.get("/releaseservers/solo")
    assert r.status_code == 200
    assert r.text == json.dumps(["solo"], indent=2)
    assert probe.vms_named("solo") == []


def test_detailed_format_names_and_shape(client, service, probe) -> None:
    r = client.get("/getservers/job?os=centos&count=3&format=detailed")
    assert r.status_code == 200, r.text
    body = json.loads(r.text)
    assert sorted(body) == ["job1", "job2", "job3"] and ips_ok(list(body.values()))
    assert r.text == json.dumps(body, indent=2, sort_keys=True)
    docs = {d["name"]: d for d in service.ctx.store.history.recent()}
    for name, ip in body.items():
        d = docs[name]
        assert d["ipaddr"] == ip and d["state"] == "available" and d["os"] == "centos"
        assert d["poolId"] == "dynamicpool" and d["username"] == name  # the seed's meaning
        assert d["owner"] == "job"
        for key in ("origin", "prevUser", "ver", "memory", "os_version", "created_time",
                    "create_duration_secs", "cpu", "disk", "expired_time", "labels"):
            assert key in d
        vm = probe.vms_named(name)[0]
        assert d["memory"] == vm["memory_static_max"] and d["cpu"] == vm["VCPUs_max"]  # strings
        assert d["os_version"]  # the guest reported its OS
    r = client.get("/releaseservers/job?count=3")
    assert json.loads(r.text) == ["job1", "job2", "job3"]
    docs = {d["name"]: d for d in service.ctx.store.history.recent()}
    for name in body:
        assert docs[name]["state"] == "deleted"
        assert {"deleted_time", "live_duration_secs", "delete_duration_secs"} <= set(docs[name])


@pytest.mark.parametrize("pretty", [False, True])
def test_jenkins_shell_parsing(client, tmp_path, pretty) -> None:
    tag = "jenkins42"
    r = client.get(f"/getservers/{tag}?os=centos&count=2&format=detailed")
    assert r.status_code == 200, r.text
    out = tmp_path / "out.json"
    out.write_text(r.text)
    pipe = f"python -m json.tool {out} |" if pretty else f"cat {out} |"
    script = (f"{pipe} grep {tag} | cut -d: -f2- | xargs | sed 's/,//g'")
    words = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                           check=True).stdout.split()
    assert len(words) == 2
    for w in words:
        assert len(w.split(".")) == 4 and ipaddress.IPv4Address(w)
    client.get(f"/releaseservers/{tag}?count=2")


def test_showall_and_available_count_follow_requests(client) -> None:
    before = int(client.get("/getavailablecount/centos").text)
    assert before > 0
    assert client.get("/getservers/seen?os=centos").status_code == 200
    after = int(client.get("/getavailablecount/centos").text)
    assert after == before - 1
    r = client.get("/showall")
    assert r.status_code == 200
    body = json.loads(r.text)
    assert r.text == json.dumps(body, indent=2, sort_keys=True)
    rows = [row for rows in body.values() for row in rows if row["name"] == "seen"]
    assert len(rows) == 1
    assert set(rows[0]) == {"name", "power_state", "vcpus", "memory_static_max",
                            "networkinfo", "name_description"}
    assert rows[0]["power_state"] == "Running" and rows[0]["networkinfo"]
    assert "X-Dynvm-View-Age" in r.headers
    only_win = json.loads(client.get("/showall/windows").text)
    assert not any(row["name"] == "seen" for rows in only_win.values() for row in rows)
    client.get("/releaseservers/seen")
    assert int(client.get("/getavailablecount/centos").text) == before


def test_no_capacity_answers_503_and_builds_nothing(client, probe) -> None:
    avail = int(client.get("/getavailablecount/windows").text)
    r = client.get(f"/getservers/big?os=windows&count={avail + 1}")
    assert r.status_code == 503
    assert r.text.startswith("Error: No capacity is available!")
    assert probe.vms_named("big") == []


def test_unknown_os_and_unknown_vm(client) -> None:
    r = client.get("/getservers/x?os=plan9")
    assert r.status_code == 400 and "plan9" in r.text
    r = client.get("/releaseservers/nobody")
    assert r.status_code == 404 and r.text == "Error: VM nobody doesn't exist"


def test_duplicate_name_is_refused(client) -> None:
    assert client.get("/getservers/twice?os=centos").status_code == 200
    r = client.get("/getservers/twice?os=centos")
    assert r.status_code == 409
    client.get("/releaseservers/twice")


@pytest.mark.parametrize("query", [
    "count=0", "count=-1", "count=abc", "count=100000", "format=xml", "xhostref=99",
    "mem=abc", "cpus=0", "expiresin=-5", "allornone=maybe", "count=%D9%A1", "os=%0d%0a",
])
def test_bad_input_is_400_and_touches_no_host(client, farm, query) -> None:
    client.get("/getavailablecount/centos")  # inventory loaded before counting
    farm.reset_call_counts()
    r = client.get(f"/getservers/bad?{query}")
    assert r.status_code == 400, (query, r.status_code, r.text)
    assert r.text.strip()
    counts = farm.call_counts()
    assert not any(m for per in counts.values() for m in per if not m.startswith("event")), counts


@pytest.mark.parametrize("path", ["/getservers/a..b", "/getservers/has%20space",
                                  "/getservers/" + "n" * 300, "/getservers/a/b",
                                  "/releaseservers/" + "n" * 300, "/setexpiry/x/abc"])
def test_bad_names_are_refused(client, farm, path) -> None:
    client.get("/getavailablecount/centos")
    farm.reset_call_counts()
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    counts = farm.call_counts()
    assert not any(m for per in counts.values() for m in per if not m.startswith("event")), counts


def test_xhostref_places_on_that_host_and_release_spans_hosts(client, probe, service) -> None:
    r = client.get("/getservers/pin?os=centos&xhostref=2")
    assert r.status_code == 200, r.text
    lease = service.ctx.store.leases.find(name="pin")[0]
    assert lease.host_ref == 2
    r = client.get("/getservers/wide?os=centos&count=6&ignorelabels=true")
    assert r.status_code == 200, r.text
    refs = {lease.host_ref for n in range(1, 7) for lease in service.ctx.store.leases.find(name=f"wide{n}")}
    assert refs == {1, 2}  # spread over both pools
    members = {lease.host_uuid for n in range(1, 7)
               for lease in service.ctx.store.leases.find(name=f"wide{n}")}
    assert len(members) == 4  # and over every member host
    assert len(json.loads(client.get("/releaseservers/wide?count=6").text)) == 6
    client.get("/releaseservers/pin")
    assert probe.vms_named("wide") == []


def test_setexpiry_and_expiry_firing(client, service, probe) -> None:
    assert client.get("/getservers/short?os=centos&count=2").status_code == 200
    r = client.get("/setexpiry/short/30?count=2")
    assert json.loads(r.text) == ["short1", "short2"]
    lease = service.ctx.store.leases.find(name="short1")[0]
    assert abs(lease.expires - (service.ctx.clock() + 1800)) < 60
    r = client.get("/setexpiry/short/0?count=2&from=created")
    assert r.status_code == 200
    wait_until(lambda: probe.vms_named("short") == [], timeout=15, what="expiry to fire")
    docs = {d["name"]: d for d in service.ctx.store.history.recent()}
    assert docs["short1"]["state"] == "deleted" and docs["short1"]["delete_reason"] == "expired"


def test_all_or_none_rolls_back(client, farm, probe) -> None:
    farm.fail_next("VM.provision", 1, "SR_BACKEND_FAILURE_44", ["", "There is insufficient space", ""])
    r = client.get("/getservers/aon?os=centos&count=3")
    assert r.status_code == 499
    assert "all vms couldn't be created successfully" in r.text
    assert probe.vms_named("aon") == []


def test_allornone_false_keeps_what_worked(client, farm, probe) -> None:
    farm.fail_next("VM.provision", 1, "SR_BACKEND_FAILURE_44", ["", "There is insufficient space", ""])
    r = client.get("/getservers/some?os=centos&count=3&allornone=false&format=detailed")
    assert r.status_code == 200, r.text
    assert len(json.loads(r.text)) == 2
    assert len(probe.vms_named("some")) == 2
    client.get("/releaseservers/some?count=3")


def test_allornone_false_with_nothing_built_is_502(client, farm, probe) -> None:
    farm.fail_next("VM.provision", 2, "SR_BACKEND_FAILURE_44", ["", "There is insufficient space", ""])
    r = client.get("/getservers/none?os=centos&count=2&allornone=false")
    assert r.status_code == 502, r.text
    assert r.text.startswith("Error: no VM could be created:") and "SR_BACKEND_FAILURE_44" in r.text
    assert probe.vms_named("none") == []


def test_release_without_count_touches_only_that_name(client, probe) -> None:
    assert client.get("/getservers/build?os=centos&count=2").status_code == 200
    assert client.get("/releaseservers/build").status_code == 404  # build1, build2 stay
    assert len(probe.vms_named("build")) == 2
    assert json.loads(client.get("/releaseservers/build?count=2").text) == ["build1", "build2"]


class LinkLocalDeadline:
    """Moves the core's clock past the network timeout once dynvm's own view of xenhost1
    shows a VM named `prefix`... holding only a link-local address (at most `times`
    VMs): its wait for an address then ends as it would at the deadline, whatever
    the machine's pace."""

    def __init__(self, svc: Dynvm, clock: SteppedClock, prefix: str, times: int) -> None:
        self.svc, self.clock, self.prefix, self.times = svc, clock, prefix, times
        self.moved: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LinkLocalDeadline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        host = self.svc.config().hosts[1]
        timeout = self.svc.config().network_timeout_secs
        while len(self.moved) < self.times and not self._stop.wait(0.02):
            for vm in self.svc.ctx.view(host).vms.values():
                v4 = [ip for ip in vm.ips if ipaddress.ip_address(ip).version == 4]
                if vm.name_label.startswith(self.prefix) and vm.uuid not in self.moved \
                        and v4 and not ips_ok(v4):
                    self.moved.append(vm.uuid)
                    self.clock.advance(timeout + 1)


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def stepped_service(tmp_path: Path, farm: Farm, clean_farm: dict,
                    clock: SteppedClock) -> Iterator[Dynvm]:
    with dynvm_on(write_ini(tmp_path, farm), clock=clock) as svc:
        yield svc


def test_link_local_retry_then_success(stepped_service, clock, farm, probe) -> None:
    farm.exhaust_dhcp(on=True)
    store = stepped_service.ctx.store
    client = create_app(service=stepped_service).test_client()

    def lift_after_first_attempt_failed() -> None:
        wait_until(lambda: any(d["name"] == "win" and d["state"] == "failed"
                               for d in store.history.recent()),
                   timeout=20, what="the first windows attempt to fail on 169.254")
        farm.exhaust_dhcp(on=False)

    t = threading.Thread(target=lift_after_first_attempt_failed)
    t.start()
    try:
        with LinkLocalDeadline(stepped_service, clock, "win", times=1) as deadline:
            r = client.get("/getservers/win?os=windows&xhostref=1")
    finally:
        t.join()
        farm.exhaust_dhcp(on=False)
    assert r.status_code == 200, r.text
    assert ips_ok(json.loads(r.text))
    assert len(deadline.moved) == 1
    docs = [d for d in store.history.recent() if d["name"] == "win"]
    assert sorted(d["state"] for d in docs) == ["available", "failed"]
    assert "link-local" in next(d for d in docs if d["state"] == "failed")["failure_reason"]
    client.get("/releaseservers/win")


def test_link_local_every_attempt_fails_cleanly(stepped_service, clock, farm, probe) -> None:
    client = create_app(service=stepped_service).test_client()
    farm.exhaust_dhcp(on=True)
    try:
        with LinkLocalDeadline(stepped_service, clock, "ll", times=3) as deadline:
            r = client.get("/getservers/ll?os=windows&xhostref=1")
    finally:
        farm.exhaust_dhcp(on=False)
    assert r.status_code == 499, r.text
    assert "link-local" in r.text
    assert len(deadline.moved) == 3
    assert probe.vms_named("ll") == []
    store = stepped_service.ctx.store
    assert store.reservations.live() == []
    failed = [d for d in store.history.recent() if d["name"] == "ll"]
    assert len(failed) == 3 and all(d["state"] == "failed" for d in failed)


def test_host_down_is_left_out_and_named(client, farm) -> None:
    master = farm.pools[1].master.name_label
    farm.set_unreachable(master, True)
    try:
        r = client.get("/showall")
        assert r.status_code == 200
        assert r.headers["X-Dynvm-Unreachable"] == "2"
        assert "2" not in json.loads(r.text)
        r = client.get("/getservers/survivor?os=centos&ignorelabels=true")
        assert r.status_code == 200, r.text
    finally:
        farm.set_unreachable(master, False)
    client.get("/releaseservers/survivor")


def test_checkvms_keeps_vms_whose_ssh_answers(tmp_path, farm, ssh_port, clean_farm) -> None:
    from dynvm.api import create_app
    from dynvm.runtime.bootstrap import build_service
    from tests.service.conftest import FAST, write_ini

    ini = write_ini(tmp_path, farm, common={"vm.ssh.port": ssh_port})
    svc = build_service(str(ini), timings=FAST)
    try:
        c = create_app(service=svc).test_client()
        r = c.get("/getservers/sshok?os=centos&checkvms=true")
        assert r.status_code == 200, r.text
        c.get("/releaseservers/sshok")
    finally:
        svc.close()


def test_same_name_racing_is_built_once(service, probe) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from dynvm.api import create_app

    app = create_app(service=service)
    barrier = threading.Barrier(4)

    def ask(_: int) -> int:
        c = app.test_client()
        barrier.wait()
        return c.get("/getservers/race?os=centos").status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(ask, range(4)))
    assert codes == [200, 409, 409, 409]
    assert len(probe.vms_named("race")) == 1
    assert app.test_client().get("/releaseservers/race").status_code == 200


def test_a_label_no_host_carries_is_named_in_the_refusal(client, farm) -> None:
    before = farm.call_counts()
    r = client.get("/getservers/perf42?os=centos&count=4&labels=perf")
    assert r.status_code >= 400
    assert "No capacity is available! 4 centos VM(s) asked, 0 available" in r.text
    assert "no host carries the label perf (no host has labels)" in r.text, r.text
    r = client.get("/getservers/perf42?os=nosuchos&count=1")
    assert r.status_code >= 400
    after = farm.call_counts()
    assert {h: {m: n for m, n in c.items() if "clone" in m.lower()} for h, c in after.items()} \
        == {h: {m: n for m, n in c.items() if "clone" in m.lower()} for h, c in before.items()}
