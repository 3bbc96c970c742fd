"""A rolling reboot with --exec on a simulated pool: no VM stops, HA comes back as it was.

The pool: 4 hosts, 48 foreign guests and 12 dynvm VMs (60 running), N+1 but
not N+2. A watcher follows XAPI's event feed through the official client the
whole time; getservers requests run beside the reboot, one for every step it
reports. Where a test must catch the run at a given point, it parks it there
(a reboot that lasts until the test ends it, a build in flight) or moves the
core's clock, instead of betting on the machine's pace.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import XenAPI

from dynvm.core.answers import ServersRequest
from dynvm.core.capacity import host_key
from dynvm.core.maintenance import state as S
from dynvm.core.release import release_names
from dynvm.core.services import Dynvm, Options
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from testbed.inis import Ini
from testbed.serving import wait_until
from tests.service.conftest import FAST, write_ini
from tests.support.clock import SteppedClock
from tests.support.maintenance_pool import (
    SHARED_SR,
    maintenance_farm,
    maintenance_ini,
    maintenance_service,
)

HA_CONFIG = {"timeout": "180"}


class Watcher:
    """Follows the pool through XAPI's event feed (on whichever host is master) until stopped.

    Every change of a VM or a host reaches it as an event, so it sees each
    move and each reboot without polling the whole pool in a loop.
    """

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.urls = [h.url for h in farm.pools[0].hosts]
        self.session: XenAPI.Session | None = None
        self.batches = 0  # answers of event.from that carried changes
        self.not_running: list[tuple[str, str]] = []  # (vm, state) seen during the run
        self.missing: set[str] = set()
        # Hosts in the order they rebooted, once per reboot: xapi stamps
        # other_config:boot_time on every start.
        self.reboots: list[str] = []
        self._booted: dict[str, str] = {}
        self.expected: dict[str, str] = {}
        self.moves: dict[str, int] = {}  # VM uuid -> times its resident host changed
        self._where: dict[str, str] = {}
        self._uuid_of: dict[str, str] = {}  # VM ref -> uuid, for deletions
        self._feed: XenAPI.Session | None = None
        self._token = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[str] = []

    def _login(self) -> XenAPI.Session:
        for url in self.urls:
            s = XenAPI.Session(url)
            try:
                s.xenapi.login_with_password("root", "xenroot", "1.0", "watcher")
                return s
            except Exception:  # a member, or down: try the next
                continue
        raise ConnectionError("no pool master answers")

    def records(self) -> tuple[dict, dict]:
        for _ in range(200):
            try:
                if self.session is None:
                    self.session = self._login()
                x = self.session.xenapi
                return x.VM.get_all_records(), x.host.get_all_records()
            except Exception:  # master moved or rebooting: find it again
                self.session = None
                time.sleep(0.02)
        raise AssertionError("the pool stopped answering")

    def guests(self) -> dict[str, dict]:
        vms, _ = self.records()
        return {r["uuid"]: r for r in vms.values()
                if not r["is_a_template"] and not r["is_control_domain"]}

    def start(self, expected: dict[str, str]) -> None:
        self.expected = expected
        self._feed = self._login()
        first = self._feed.xenapi.event_from(["vm", "host"], "", 0.0)
        self._apply(first["events"])
        self._token = first["token"]
        self._thread.start()

    def _apply(self, events: list[dict]) -> None:
        for ev in events:
            if ev["class"] == "host":
                if ev["operation"] != "del":
                    self._note_boot(ev["snapshot"])
                continue
            if ev["class"] != "vm":
                continue
            if ev["operation"] == "del":
                gone = self._uuid_of.pop(ev["ref"], None)
                if gone in self.expected:
                    self.missing.add(self.expected[gone])
                continue
            r = ev["snapshot"]
            self._uuid_of[ev["ref"]] = r["uuid"]
            if r["is_control_domain"] or r["is_a_template"]:
                continue
            if r["uuid"] in self.expected and r["power_state"] != "Running":
                self.not_running.append((self.expected[r["uuid"]], r["power_state"]))
            if r["power_state"] != "Running":
                continue  # a VM being shut down and destroyed is not moving
            was = self._where.get(r["uuid"])
            if was is not None and was != r["resident_on"]:
                self.moves[r["uuid"]] = self.moves.get(r["uuid"], 0) + 1
            self._where[r["uuid"]] = r["resident_on"]

    def _note_boot(self, host: dict) -> None:
        booted = host["other_config"].get("boot_time", "")
        was = self._booted.setdefault(host["name_label"], booted)
        if booted != was:
            self._booted[host["name_label"]] = booted
            self.reboots.append(host["name_label"])

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if self._feed is None:
                        self._feed = self._login()
                    got = self._feed.xenapi.event_from(["vm", "host"], self._token, 0.1)
                except Exception:  # master moved or rebooting: find it again
                    self._feed = None
                    self._stop.wait(0.02)
                    continue
                if got["events"]:
                    self.batches += 1
                self._apply(got["events"])
                self._token = got["token"]
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def enable_ha(w: Watcher) -> None:
    w.records()
    assert w.session is not None
    x = w.session.xenapi
    sr = x.SR.get_by_name_label("HA heartbeat")[0]
    x.pool.enable_ha([sr], HA_CONFIG)


def ha_state(w: Watcher) -> tuple[bool, dict]:
    """Read on a session of its own: the watcher's may be busy in its thread."""
    own = Watcher(w.farm)
    own.records()
    assert own.session is not None
    x = own.session.xenapi
    pool = x.pool.get_all_records()
    rec = next(iter(pool.values()))
    if rec["ha_enabled"]:  # the heartbeat SR it had, too
        srs = {x.VDI.get_SR(v) for v in rec["ha_statefiles"]}
        assert srs == set(x.SR.get_by_name_label("HA heartbeat"))
    return rec["ha_enabled"], rec["ha_configuration"]


SPEED = 1000.0  # a reboot takes 0.12 s, a 4 GiB live migration 0.03 s
PARKED = 1e9  # host_reboot_secs that keeps a rebooting host down until the test ends it


@pytest.fixture
def rfarm() -> Iterator[Farm]:
    with maintenance_farm(SPEED) as f:
        yield f


@pytest.fixture
def ini(tmp_path: Path, rfarm: Farm) -> Path:
    return maintenance_ini(tmp_path, rfarm)


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def svc(ini: Path, clock: SteppedClock) -> Iterator[Dynvm]:
    with maintenance_service(ini, clock=clock) as s:
        yield s


@contextmanager
def reboots_parked(farm: Farm) -> Iterator[None]:
    """Rebooting hosts stay down until the block ends (the farm re-reads the time)."""
    normal = farm.timing.host_reboot_secs
    farm.timing.host_reboot_secs = PARKED
    try:
        yield
    finally:
        farm.timing.host_reboot_secs = normal


def end_when_waited(svc: Dynvm, vms: set[str], seen: list[dict],
                    clock: SteppedClock | None = None) -> Callable[[dict], None]:
    """A progress callback that records each status and, each time the run starts to
    wait for leases to end, ends the leases of `vms` and waits until expiry has released
    them; with `clock`, it then moves the clock past the drain timeout, so what is left
    is moved at once. The run waits while the callback runs: the test never bets on
    the wall clock against the run's pace."""
    waits: set[str] = set()

    def progress(st: dict) -> None:
        seen.append(dict(st))
        if st.get("step") != "drain" or st.get("host_name") in waits:
            return
        waits.add(st.get("host_name", ""))
        for u in vms:
            if svc.ctx.store.leases.get(u) is not None:
                svc.ctx.store.leases.update(u, expires=svc.ctx.clock() - 1)
        wait_until(lambda: not [u for u in vms if svc.ctx.store.leases.get(u) is not None],
                   timeout=60, what="expiry to release the ended leases")
        if clock is not None:
            clock.advance(Options().drain_timeout + 1)

    return progress


class SideTraffic:
    """One getservers (then its release) for every step the run reports, beside the run:
    each must succeed, never on a host in maintenance."""

    def __init__(self, svc: Dynvm) -> None:
        self.svc = svc
        self.outcomes: list[str] = []
        self._steps: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._last: tuple[str, str] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def progress(self, st: dict) -> None:
        step = (str(st.get("host_name")), str(st.get("step")))
        if step != self._last:
            self._last = step
            self._steps.put(step)

    def _run(self) -> None:
        n = 0
        while self._steps.get() is not None:
            n += 1
            name = f"side{n}x"
            store = self.svc.ctx.store
            try:
                blocked_before = S.placement_blocked(store)
                got = self.svc.legacy.get_servers(ServersRequest(name=name, count=1))
                lease = store.leases.get(got.servers[0].vm_uuid)
                blocked_after = S.placement_blocked(store)
                key = host_key(1, lease.host_uuid) if lease else ""
                self.outcomes.append("placed in maintenance" if key in blocked_before
                                     and key in blocked_after else "ok")
                release_names(self.svc.ctx, [name], reason="test")
            except Exception as exc:  # counted as a failure
                self.outcomes.append(f"failed: {exc!r}")

    def stop(self) -> None:
        self._steps.put(None)
        self._thread.join(60)


def sixty_running(svc: Dynvm, w: Watcher) -> dict[str, str]:
    svc.legacy.get_servers(ServersRequest(name="job", count=12))
    guests = w.guests()
    assert len(guests) == 60
    assert all(r["power_state"] == "Running" for r in guests.values())
    return {u: r["name_label"] for u, r in guests.items()}


def test_rolling_reboot_keeps_every_vm_running(svc: Dynvm, rfarm: Farm) -> None:
    w = Watcher(rfarm)
    expected = sixty_running(svc, w)
    enable_ha(w)
    master = rfarm.pools[0].master.name_label
    master_ref = rfarm.pools[0].master.ref
    on_master = {u for u, r in w.guests().items() if r["resident_on"] == master_ref}
    assert 0 < len(on_master) < 60

    w.start(expected)
    side = SideTraffic(svc)
    seen: list[dict] = []

    def progress(status: dict) -> None:
        seen.append(dict(status))
        side.progress(status)

    try:
        plan = svc.maintenance.rolling_reboot(1, Options(execute=True, parallel=5, poll=0.02), progress)
    finally:
        side.stop()
        w.stop()

    assert not w.errors
    assert w.batches > 10
    assert w.not_running == [] and w.missing == set()
    assert w.reboots[0] == master
    # The master's VMs move twice (no host is rebooted before it); the others once.
    assert all(w.moves.get(u, 0) == 2 for u in on_master)
    assert all(w.moves.get(u, 0) == 1 for u in expected if u not in on_master)
    assert sorted(w.reboots) == sorted(h.name_label for h in rfarm.pools[0].hosts)
    final = w.guests()
    assert {u: r["name_label"] for u, r in final.items()} == expected  # none lost, none doubled
    assert all(r["power_state"] == "Running" for r in final.values())
    enabled, config = ha_state(w)
    assert enabled and config.get("timeout") == "180"
    assert len(side.outcomes) >= 4 * 7  # every step of every host
    assert [o for o in side.outcomes if o != "ok"] == []
    status = S.get_status(svc.ctx.store, 1)
    assert status is not None and status["state"] == "done"
    assert len(status["hosts_done"]) == 4
    assert status["migrations_done"] >= len(plan.migrations) > 0
    assert {s["step"] for s in seen} >= {"placement-off", "disable", "migrate", "reboot", "wait",
                                         "enable", "placement-on"}
    assert S.in_maintenance(svc.ctx.store) == {}
    assert all(h.enabled for h in svc.ctx.view(svc.config().hosts[1]).hosts)
    assert svc.ctx.store.locks.holder(S.lock_name(1)) is None


def test_kill_9_mid_run_then_resume(svc: Dynvm, ini: Path, rfarm: Farm) -> None:
    w = Watcher(rfarm)
    expected = sixty_running(svc, w)
    enable_ha(w)
    cmd = [sys.executable, "-m", "dynvm", "maintenance", "reboot", "--config", str(ini), "1",
           "--exec", "--lock-ttl", "2", "--reboot-timeout", "120"]
    w.start(expected)
    first = rfarm.pools[0].master.name_label
    with reboots_parked(rfarm):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            # Killed while it waits for the master to come back: HA off, the host disabled.
            wait_until(lambda: (S.get_status(svc.ctx.store, 1) or {}).get("step") == "wait",
                       timeout=120, what="the run to wait for the first host's reboot")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    # Reported cleanly: interrupted, with HA off said out loud, once the lock lapses.
    status = wait_until(lambda: (S.all_status(svc.ctx.store, [1]).get(1) or {}).get("state")
                        == "interrupted" and S.all_status(svc.ctx.store, [1])[1],
                        timeout=30, what="the run to show as interrupted")
    assert status["ha_off"] is True and status["host_name"] == first
    health = svc.health.report()
    assert health["maintenance"]["1"]["state"] == "interrupted"
    assert "HA of xenhost1 is OFF" in health["maintenance"]["1"]["warning"]
    # Degraded, and that is the first thing it says.
    assert health["status"] == "degraded"
    assert "HA of xenhost1 is OFF" in health["reasons"][0]
    # The same command again resumes where it was.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    w.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming run" in done.stderr
    assert not w.errors and w.not_running == [] and w.missing == set()
    final = w.guests()
    assert {u: r["name_label"] for u, r in final.items()} == expected
    status = S.get_status(svc.ctx.store, 1)
    assert status is not None and status["state"] == "done" and len(status["hosts_done"]) == 4
    enabled, config = ha_state(w)
    assert enabled and config.get("timeout") == "180"
    assert sorted(set(w.reboots)) == sorted(h.name_label for h in rfarm.pools[0].hosts)
    assert w.reboots.count(first) == 1  # the resumed run waited for it, did not reboot it again
    assert not [r for r in svc.ctx.store.reservations.live() if r.request_id.startswith("maint")]


def test_auto_strategy_waits_for_ending_leases_and_rebuilds_warm_vms(
        tmp_path: Path, rfarm: Farm) -> None:
    ini = write_ini(tmp_path, rfarm, hosts=Ini.of_farm(rfarm, storage_name=SHARED_SR),
                    extra="\n[pool centos]\nready=2\n")
    svc = build_service(str(ini), timings=FAST)
    try:
        from dynvm.core.store import LEASE_READY

        svc.legacy.get_servers(ServersRequest(name="short", count=2))
        svc.legacy.get_servers(ServersRequest(name="long", count=2))
        # The background worker fills the warm pool.
        warm = wait_until(lambda: len(svc.ctx.store.leases.find(state=LEASE_READY)) == 2 and
                          svc.ctx.store.leases.find(state=LEASE_READY), timeout=60,
                          what="two warm VMs")
        warm_uuids = {lease.vm_uuid for lease in warm}
        short = {lease.vm_uuid for lease in svc.ctx.store.leases.find()
                 if lease.name.startswith("short")}
        for u in short:  # ends within the drain window, but not on its own during the test
            svc.ctx.store.leases.update(u, expires=time.time() + 300)
        w = Watcher(rfarm)
        w.start({})
        seen: list[dict] = []
        try:
            svc.maintenance.rolling_reboot(1, Options(execute=True, strategy="auto", drain_timeout=600,
                                           poll=0.02), end_when_waited(svc, short, seen))
        finally:
            w.stop()
        events = sorted({e for st in seen for e in st.get("events", [])})
        assert any("waiting for" in e and "lease(s) to end" in e for e in events)
        assert sum("destroy warm VM" in e for e in events) >= 2
        assert all(w.moves.get(u, 0) == 0 for u in short)  # never migrated: expired in place
        assert all(w.moves.get(u, 0) == 0 for u in warm_uuids)  # destroyed, not moved
        guests = w.guests()
        assert not short & set(guests) and not warm_uuids & set(guests)
        longs = {lease.vm_uuid for lease in svc.ctx.store.leases.find() if lease.name.startswith("long")}
        assert len(longs) == 2 and longs <= set(guests)
        assert all(guests[u]["power_state"] == "Running" for u in longs)
        # The warm pool is rebuilt on hosts in service.
        wait_until(lambda: len(svc.ctx.store.leases.find(state=LEASE_READY)) == 2, timeout=60,
                   what="the warm pool to be rebuilt")
    finally:
        from dynvm.core.release import release_lease
        from dynvm.core.store import LEASE_PROVISIONING

        # No warm build may still be running when the store closes: let the pool
        # settle, stop the worker that refills it, then release.
        wait_until(lambda: not svc.ctx.store.leases.find(state=LEASE_PROVISIONING)
                   and not svc.ctx.store.requests.find(state="running"), timeout=60,
                   what="warm-pool builds to finish")
        svc.background.stop()
        wait_until(lambda: not svc.ctx.store.leases.find(state=LEASE_PROVISIONING)
                   and not svc.ctx.store.requests.find(state="running"), timeout=60,
                   what="warm-pool builds to finish")
        for lease in svc.ctx.store.leases.find():
            release_lease(svc.ctx, lease, reason="test teardown")
        svc.close()


def test_api_starts_a_run_and_reports_it(svc: Dynvm, rfarm: Farm) -> None:
    from dynvm.api import create_app

    w = Watcher(rfarm)
    expected = {u: r["name_label"] for u, r in w.guests().items()}
    client = create_app(service=svc).test_client()
    w.start(expected)
    try:
        with reboots_parked(rfarm):  # still running when the second request comes
            started = client.post("/maintenance/1", json={"execute": True, "parallel": 3})
            assert started.status_code == 202, started.get_data(as_text=True)
            assert started.get_json()["plan"]["hosts"][0]["host"] == \
                rfarm.pools[0].master.name_label
            seen = wait_until(lambda: client.get("/health").get_json()["maintenance"].get("1"),
                              timeout=30, what="the run on /health")
            assert seen["run"] and seen["order"][0] == rfarm.pools[0].master.name_label
            again = client.post("/maintenance/1", json={"execute": True})
            assert again.status_code == 409 and "already running" in again.get_json()["error"]
        wait_until(lambda: client.get("/maintenance").get_json()["1"]["state"] == "done",
                   timeout=240, what="the run to finish")
    finally:
        wait_until(lambda: svc.ctx.store.locks.holder(S.lock_name(1)) is None, timeout=240,
                   what="every run to end")
        w.stop()
    assert not w.errors and w.not_running == [] and w.missing == set()
    assert sorted(set(w.reboots)) == sorted(h.name_label for h in rfarm.pools[0].hosts)
    assert not [r for r in svc.ctx.store.reservations.live() if r.request_id.startswith("maint")]


def test_a_failed_step_stops_the_run_puts_ha_back_and_a_rerun_resumes(
        svc: Dynvm, rfarm: Farm) -> None:
    from dynvm.core.ports import XenError

    w = Watcher(rfarm)
    expected = {u: r["name_label"] for u, r in w.guests().items()}
    enable_ha(w)
    w.start(expected)
    try:
        rfarm.fail_next("host.reboot", 1, "INTERNAL_ERROR", ["injected"])
        with pytest.raises(XenError) as failed:
            svc.maintenance.rolling_reboot(1, Options(execute=True, poll=0.02))
        assert failed.value.code == "INTERNAL_ERROR"
        status = S.get_status(svc.ctx.store, 1)
        assert status is not None and status["state"] == "failed"
        assert "INTERNAL_ERROR" in status["error"] and status["ha_off"] is False
        enabled, config = ha_state(w)
        assert enabled and config.get("timeout") == "180"  # HA back while nobody acts
        # The master, whose reboot was refused, is up: enabled and in placement again.
        assert status["hosts_left"] == [] and S.in_maintenance(svc.ctx.store) == {}
        assert all(h.enabled for h in svc.ctx.view(svc.config().hosts[1]).hosts)
        assert svc.ctx.store.locks.holder(S.lock_name(1)) is None
        seen: list[dict] = []
        svc.maintenance.rolling_reboot(1, Options(execute=True, poll=0.02),  # the same command resumes
                       lambda st: seen.append(dict(st)))
    finally:
        w.stop()
    status = S.get_status(svc.ctx.store, 1)
    assert status is not None and status["state"] == "done" and len(status["hosts_done"]) == 4
    assert any("resuming run" in e for st in seen for e in st.get("events", []))
    assert not w.errors and w.not_running == [] and w.missing == set()
    assert sorted(set(w.reboots)) == sorted(h.name_label for h in rfarm.pools[0].hosts)
    enabled, config = ha_state(w)
    assert enabled and config.get("timeout") == "180"


def test_drain_strategy_waits_for_leases_then_moves_what_is_left(
        svc: Dynvm, rfarm: Farm, clock: SteppedClock) -> None:
    svc.legacy.get_servers(ServersRequest(name="brief", count=2))
    svc.legacy.get_servers(ServersRequest(name="stays", count=2))
    brief = {lease.vm_uuid for lease in svc.ctx.store.leases.find() if lease.name.startswith("brief")}
    stays = {lease.vm_uuid for lease in svc.ctx.store.leases.find() if lease.name.startswith("stays")}
    for u in brief:  # would outlast the test on their own
        svc.ctx.store.leases.update(u, expires=clock() + 300)
    w = Watcher(rfarm)
    w.start({})
    seen: list[dict] = []
    try:
        # The brief leases end at the first wait; "stays" outlasts the drain timeout
        # (the clock is moved past it once the brief ones are gone) and is moved.
        svc.maintenance.rolling_reboot(1, Options(execute=True, strategy="drain", poll=0.02),
                       end_when_waited(svc, brief, seen, clock))
    finally:
        w.stop()
    events = {e for st in seen for e in st.get("events", [])}
    assert any("lease(s) to end" in e for e in events)
    assert all(w.moves.get(u, 0) == 0 for u in brief)
    guests = w.guests()
    assert not brief & set(guests)
    assert stays <= set(guests) and all(guests[u]["power_state"] == "Running" for u in stays)
    assert all(w.moves.get(u, 0) >= 1 for u in stays)
    assert not w.errors
    assert S.get_status(svc.ctx.store, 1)["state"] == "done"
    from dynvm.core.release import release_lease

    for lease in svc.ctx.store.leases.find():
        release_lease(svc.ctx, lease, reason="test teardown")
