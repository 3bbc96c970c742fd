"""Running a rolling reboot of one pool: dry run by default, resumable, one run per pool.

The plan is made from the pool as it is, then re-made before each host (new
VMs arrive on hosts in service meanwhile; leases end), so every host is
evacuated by a plan that fits at that moment. Everything another process
must see (where the run is, what HA was, which hosts are out of placement)
is in the store before the step it describes is taken, so a run whose
process died can be resumed, or at least reported exactly.

Over 400 lines because it is one procedure: the steps of a host (out of
placement, disable, evacuate, hand over the master, reboot, wait, enable,
back in placement) share the run's status, lock and resume rules, and read
best in the order they run.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from dynvm.config import HostConfig
from dynvm.core.capacity import host_key
from dynvm.core.context import Context
from dynvm.core.errors import MaintenanceFailed, MaintenanceRefused
from dynvm.core.fleet.maintenance import fleet_groups, homecomings
from dynvm.core.lifecycle import RunState, RunStep
from dynvm.core.maintenance import leftovers
from dynvm.core.maintenance import state as S
from dynvm.core.maintenance.plan import GIB, Plan, PlanHost, PlanVm, host_order, plan_reboot
from dynvm.core.maintenance.ports import HaState, HostState, MaintenancePort, PoolState
from dynvm.core.ports import XenError
from dynvm.core.release import release_lease
from dynvm.core.store import LEASE_ACTIVE, LEASE_READY, Reservation

log = logging.getLogger("dynvm.maintenance")
T = TypeVar("T")

EVENTS_KEPT = 30
HOLD_SECS = 600.0  # a migration's room held in the store frees itself after this (a crash)
DOWN_WAIT_SECS = 30.0  # how long a rebooting host may still look live


@dataclass(frozen=True)
class Options:
    execute: bool = False
    strategy: str = "auto"  # migrate | drain | auto
    parallel: int = 5
    drain_timeout: float = 600.0  # seconds a lease may be waited for before its VM is moved
    reboot_timeout: float = 1800.0  # seconds a host may take to come back
    settle_timeout: float = 120.0  # seconds to wait for builds in flight on a host
    poll: float = 0.5
    lock_ttl: float = S.LOCK_TTL_SECS  # how soon another process may resume after a crash


def ha_restore_command(ha: HaState) -> str:
    """What an operator types to put HA back as it was, if dynvm could not."""
    conf = " ".join(f"ha-config:{k}={v}" for k, v in sorted(ha.configuration.items()))
    return (f"xe pool-ha-enable heartbeat-sr-uuids={','.join(ha.heartbeat_srs)} {conf}").strip()


class RollingReboot:
    """One rolling reboot of the pool `[xenhostN]` named by `host`."""

    def __init__(self, ctx: Context, host: HostConfig, port: MaintenancePort, options: Options,
                 on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.ctx = ctx
        self.host = host
        self.ref = host.ref
        self.port = port
        self.opts = options
        self.on_progress = on_progress or (lambda status: None)
        self.clock = ctx.clock  # every poll, deadline and timestamp of the run
        self.holder = f"{ctx.instance}:{uuid.uuid4().hex[:6]}"
        self._lost_lock = threading.Event()
        self._stop = threading.Event()
        self._status_lock = threading.Lock()
        self.locked = threading.Event()  # set once this run holds the pool's lock

    # -- planning ---------------------------------------------------------------------
    def plan(self, pool: PoolState | None = None, done: list[str] | None = None,
             order: list[str] | None = None, strategy: str | None = None) -> Plan:
        """The whole plan from the pool as it is now (hosts in `done` are skipped)."""
        pool = pool or self.port.state()
        if done is None:
            previous = S.get_status(self.ctx.store, self.ref)
            done = list(previous.get("hosts_done", [])) if previous and \
                previous.get("state") != RunState.DONE else []
        leases = {lease.vm_uuid: lease for lease in self.ctx.store.leases.find()}
        # Room held for VMs being built (or moved by this run) that XAPI does not show yet.
        running = {(v.host, v.uuid) for v in pool.vms}
        held: dict[str, float] = {}
        for r in self.ctx.store.reservations.live():
            ref, _, member = r.host_key.partition("/")
            if ref == str(self.ref) and (member, r.vm_uuid) not in running:
                held[member] = held.get(member, 0.0) + r.memory_gib
        hosts = [PlanHost(h.uuid, h.name, h.memory_free - int(held.get(h.uuid, 0.0) * GIB),
                          h.memory_total, h.is_master)
                 for h in pool.hosts]
        groups, unknown = fleet_groups(self.ctx, pool.vms)
        vms = []
        for v in pool.vms:
            lease = leases.get(v.uuid)
            vms.append(PlanVm(
                v.uuid, v.name, v.host, v.memory, v.blocker,
                lease_expires=lease.expires if lease and lease.state == LEASE_ACTIVE else None,
                warm=bool(lease and lease.state == LEASE_READY), group=groups.get(v.uuid, "")))
        plan = plan_reboot(hosts, vms, strategy=strategy or self.opts.strategy,
                           drain_window=self.opts.drain_timeout, now=self.ctx.clock(),
                           done=done, order=order)
        if unknown:
            plan.problems.append(unknown)
        return plan

    # -- status -------------------------------------------------------------------------
    def _status(self, event: str | None = None, **changes: Any) -> dict[str, Any]:
        with self._status_lock:
            if event is not None:
                log.info("xenhost%d maintenance: %s", self.ref, event)
                previous = S.get_status(self.ctx.store, self.ref) or {}
                events = list(previous.get("events", []))[-(EVENTS_KEPT - 1):]
                stamp = time.strftime('%H:%M:%S', time.localtime(self.clock()))
                events.append(f"{stamp} {event}")
                changes["events"] = events
            doc = S.put_status(self.ctx.store, self.ref, **changes)
        self.on_progress(doc)
        return doc

    # -- the lock -----------------------------------------------------------------------
    def _take_lock(self) -> None:
        store = self.ctx.store
        if not store.locks.acquire(S.lock_name(self.ref), self.holder, self.opts.lock_ttl):
            current = S.get_status(store, self.ref) or {}
            raise MaintenanceRefused(
                f"a maintenance run of xenhost{self.ref} is already running "
                f"(held by {store.locks.holder(S.lock_name(self.ref))}, "
                f"host {current.get('host_name')}, "
                f"step {current.get('step')})")
        threading.Thread(target=self._keep_lock, name=f"dynvm-maint-lock-{self.ref}",
                         daemon=True).start()

    def _keep_lock(self) -> None:
        store = self.ctx.store
        while not self.clock.wait(self._stop, S.LOCK_TTL_SECS / 4):
            try:
                if not store.locks.acquire(S.lock_name(self.ref), self.holder, self.opts.lock_ttl):
                    self._lost_lock.set()
                    return
            except Exception:  # a store hiccup: try again next beat, the TTL covers it
                log.warning("xenhost%d maintenance: lock renewal failed", self.ref, exc_info=True)

    def _check(self) -> None:
        if self._lost_lock.is_set():
            raise MaintenanceFailed("the maintenance lock was lost (store unreachable too long?)")

    # -- running --------------------------------------------------------------------------
    def run(self) -> Plan:
        """Dry run (print the plan) unless `options.execute`; returns the plan made at the start."""
        pool = self.port.state()
        previous = S.get_status(self.ctx.store, self.ref)
        resuming = bool(previous and previous.get("state") not in (RunState.DONE, None)
                        and previous.get("hosts_done") is not None
                        and previous.get("execute"))
        done = list(previous.get("hosts_done", [])) if resuming and previous else []
        order = list(previous.get("order_uuids", [])) if resuming and previous else None
        plan = self.plan(pool, done, order or None)
        if not self.opts.execute:
            return plan
        if not plan.ok:
            raise MaintenanceRefused("; ".join(plan.problems))
        self._take_lock()
        self.locked.set()
        try:
            self._execute(pool, plan, previous if resuming else None)
        finally:
            self._stop.set()
            self.ctx.store.locks.release(S.lock_name(self.ref), self.holder)
        return plan

    def _execute(self, pool: PoolState, plan: Plan, previous: dict[str, Any] | None) -> None:
        # The order is fixed at the start: the master role moves during the run.
        order = list(previous.get("order_uuids", [])) if previous else []
        if not order:
            order = [h.uuid for h in host_order([PlanHost(h.uuid, h.name, h.memory_free,
                                                          h.memory_total, h.is_master)
                                                 for h in pool.hosts])]
        self.order = order
        names = {h.uuid: h.name for h in pool.hosts}
        master = next((h.uuid for h in pool.hosts if h.is_master), order[0])
        if previous:
            ha = HaState.from_dict(previous.get("ha", {}))
            master = previous.get("original_master", master)
            done = list(previous.get("hosts_done", []))
            migrations_done = int(previous.get("migrations_done", 0))
            run_id = previous.get("run", uuid.uuid4().hex[:12])
            self._status(f"resuming run {run_id} after {previous.get('host_name')} "
                         f"step {previous.get('step')}", state=RunState.RUNNING, holder=self.holder,
                         error=None, hosts_left=None)
        else:
            ha = pool.ha
            done, migrations_done, run_id = [], 0, uuid.uuid4().hex[:12]
            # HA as it was goes into the store before it is touched.
            self._status(f"run {run_id} starts: {len(order)} host(s), "
                         f"{len(plan.migrations)} migration(s) planned",
                         run=run_id, state=RunState.RUNNING, execute=True, holder=self.holder,
                         strategy=self.opts.strategy, parallel=self.opts.parallel,
                         started=self.clock(), order=[names[u] for u in order],
                         order_uuids=order,
                         original_master=master, ha=ha.to_dict(), ha_off=False,
                         hosts_done=[], host=None, host_name=None, step=RunStep.START,
                         migrations_done=0, migrations_total=len(plan.migrations),
                         error=None, events=[])
        self.run_id = run_id
        self.ctx.store.reservations.drop_request(self._holds_id())  # left by a process that died
        try:
            self._hold_back([h for h in order if h not in done], names)
            if pool.ha.enabled:
                self._status("pool HA off", step=RunStep.HA_OFF, ha_off=True)
                self.port.disable_ha()
            for h in order:
                if h in done:
                    continue
                self._check()
                migrations_done = self._one_host(h, names, done, migrations_done, previous)
                previous = None
                done.append(h)
                self._status(f"{names[h]} done", hosts_done=list(done))
            self._restore_master(master, names)
            self._fleet_home()
            self._restore_ha(ha)
            self._status("rolling reboot finished", state=RunState.DONE, step=RunStep.DONE, host=None,
                         host_name=None, finished=self.clock())
        except Exception as exc:
            self._fail(exc, ha)
            raise

    def _fleet_home(self) -> None:
        """Pinned fleet VMs go back to the host their file names, now that all are rebooted."""
        moves, notes = homecomings(self.ctx, self.ref, self._wait_state())
        for note in notes:
            self._status(note)
        for m in moves:
            self._status(f"{m.name}: back to {m.dst_name}, its declared host" if m.home else
                         f"{m.name}: to {m.dst_name} for a moment, making way", step="fleet")
            try:
                self.port.migrate(m.vm, m.dst)
            except XenError as exc:  # said, and left to `dynvm fleet apply`
                self._status(f"{m.name} not moved back to {m.dst_name}: {exc}")

    def _hold_back(self, pending: list[str], names: dict[str, str]) -> None:
        """Hosts still to reboot take no VM that could not leave them again.

        dynvm puts a VM's disks on the SR named `host.storage.name`. When that SR is
        host-local, a VM placed on a host this run has yet to reboot could never be
        live-migrated off it, and the run would stop there; so each such host is out
        of placement from now until it is rebooted. On shared storage a host leaves
        placement at its turn only: a VM placed on it before then is moved by its plan.
        """
        if not pending or self.port.storage_shared(self.host.storage_name):
            return
        for h in pending:
            S.set_in_maintenance(self.ctx.store, host_key(self.ref, h), True, self.run_id)
        self._status(f"{', '.join(names.get(h, h) for h in pending)}: out of dynvm placement "
                     f"until rebooted (a VM on '{self.host.storage_name}', host-local, could not "
                     f"be live-migrated)")

    def _fail(self, exc: Exception, ha: HaState) -> None:
        note = ""
        try:
            self.ctx.store.reservations.drop_request(self._holds_id())
        except Exception:  # they free themselves after HOLD_SECS
            log.warning("xenhost%d maintenance: room held for migrations not given back",
                        self.ref)
        try:
            self._restore_ha(ha)
        except Exception as ha_exc:  # reported, never silent
            note = (f"; pool HA is still OFF ({ha_exc}): resume this run with --exec, "
                    f"or restore HA with: {ha_restore_command(ha)}")
        left: list[dict[str, Any]] | None = None
        try:
            left = leftovers.give_back(self.ctx.store, self.port, self.ref,
                                       S.get_status(self.ctx.store, self.ref) or {})
        except Exception as back_exc:  # the store or XAPI may be what failed
            note += (f"; hosts this run took out of service may still be out ({back_exc}): "
                     f"see `dynvm hosts`, run `dynvm maintenance reboot {self.ref} --exec` "
                     f"to resume")
        if left:
            disabled = " and disabled" if any(h["disabled"] is not False for h in left) else ""
            note += (f"; {', '.join(h['host'] for h in left)} left out of dynvm placement"
                     f"{disabled}: {S.finish(self.ref, left)}")
        log.error("xenhost%d maintenance stopped: %s%s", self.ref, exc, note)
        try:
            self._status(f"stopped: {exc}{note}", state=RunState.FAILED, error=f"{exc}{note}",
                         hosts_left=left)
        except Exception:  # the store itself may be what failed
            log.exception("xenhost%d maintenance: could not record the failure", self.ref)

    def _restore_ha(self, ha: HaState) -> None:
        if not ha.enabled:
            return
        if self._wait_state().ha.enabled:  # never turned off, or put back by hand
            self._status(None, ha_off=False)
            return
        self._status(f"pool HA back on (timeout {ha.configuration.get('timeout', 'default')})",
                     step=RunStep.HA_ON)
        self.port.enable_ha(ha.heartbeat_srs, ha.configuration, ha.failures_to_tolerate)
        self._status(None, ha_off=False)

    def _restore_master(self, master: str, names: dict[str, str]) -> None:
        if any(h.uuid == master and h.is_master for h in self._wait_hosts()):
            return
        self._status(f"{names.get(master, master)} is the pool master again", step=RunStep.MASTER)
        self.port.designate_master(master)
        self._wait(lambda: any(h.uuid == master and h.is_master and h.live
                               for h in self._wait_hosts()),
                   self.opts.reboot_timeout, "the pool master to answer")

    # -- one host -------------------------------------------------------------------------
    def _one_host(self, h: str, names: dict[str, str], done: list[str], migrations_done: int,
                  previous: dict[str, Any] | None) -> int:
        name = names[h]
        key = host_key(self.ref, h)
        store = self.ctx.store
        # Resuming: "wait" means the reboot was asked for. At "reboot" it may or may not
        # have been: a host still up reboots (again at worst), rather than be left unpatched.
        rebooting = False
        booted = ""  # its boot_time before the reboot: it is back once that changed
        if previous and previous.get("host") == h:
            booted = str(previous.get("booted", ""))
            if previous.get("step") == RunStep.WAIT:
                rebooting = True
            elif previous.get("step") == RunStep.REBOOT:
                rebooting = not any(x.uuid == h and x.live and (not booted or x.boot_time == booted)
                                    for x in self._wait_hosts())
        self._status(f"{name}: out of dynvm placement", host=h, host_name=name,
                     step=RunStep.PLACEMENT_OFF)
        S.set_in_maintenance(store, key, True, self.run_id)
        if not rebooting:
            self._wait(lambda: not [r for r in store.reservations.live(key)
                                    if r.settle_until is None],
                       self.opts.settle_timeout, f"VMs being built on {name}", fail=False)
            self._status(f"{name}: host.disable", step=RunStep.DISABLE)
            self.port.disable_host(h)
            migrations_done = self._evacuate(h, name, done, migrations_done)
            self._hand_over_master(h, names, done)
            booted = next((x.boot_time for x in self._wait_hosts() if x.uuid == h), "")
            self._status(f"{name}: host.reboot", step=RunStep.REBOOT, booted=booted)
            self.port.reboot(h)
            if not booted:
                # No boot_time to compare, and XAPI may still call it live for a
                # moment: see it go down before waiting for it.
                self._wait(lambda: not self.port.host_back(h),
                           min(DOWN_WAIT_SECS, self.opts.reboot_timeout),
                           f"{name} to go down", fail=False)
        self._status(f"{name}: waiting until it is back", step=RunStep.WAIT)
        self._wait(lambda: self.port.host_back(h, booted), self.opts.reboot_timeout,
                   f"{name} to come back")
        self._status(f"{name}: host.enable", step=RunStep.ENABLE)
        self.port.enable_host(h)
        self._wait(lambda: any(x.uuid == h and x.enabled and x.live
                               for x in self._wait_hosts()),
                   self.opts.reboot_timeout, f"{name} to be enabled")
        # Placement reads dynvm's event-fed inventory, not XAPI: the next host leaves
        # placement only once that inventory offers this one again, or a loaded
        # service would briefly count two hosts out and refuse requests it has room for.
        self._wait(lambda: any(m.uuid == h and m.enabled for m in self.ctx.view(self.host).hosts),
                   self.opts.reboot_timeout, f"dynvm's inventory to see {name} enabled",
                   fail=False)
        self._status(f"{name}: back in dynvm placement", step=RunStep.PLACEMENT_ON)
        S.set_in_maintenance(store, key, False)
        return migrations_done

    def _evacuate(self, h: str, name: str, done: list[str], migrations_done: int) -> int:
        for attempt in range(3):
            pool = self._wait_state()
            # After one round, leases waited for are over or out of time: move what is left.
            plan = self.plan(pool, done, self.order, None if attempt == 0 else "migrate")
            step = next((s for s in plan.hosts if s.host == h), None)
            own = [p for p in plan.problems if f" on {name} " in p or f"evacuating {name} " in p]
            if own:
                raise MaintenanceFailed("; ".join(own))
            if step is None:
                break
            self._status(None, migrations_total=migrations_done + len(plan.migrations))
            for vm in step.destroy:
                lease = self.ctx.store.leases.get(vm)
                if lease is not None and lease.state == LEASE_READY:
                    self._status(f"{name}: destroy warm VM {plan.vm_names.get(vm, vm)}",
                                 step=RunStep.EVACUATE)
                    release_lease(self.ctx, lease, reason="host maintenance")
            if step.drain_first:
                self._drain(h, name, step)
            if step.migrations:
                self._status(f"{name}: migrating {len(step.migrations)} VM(s), "
                             f"{self.opts.parallel} at a time", step=RunStep.MIGRATE)
                counter = [migrations_done]
                holds = self._hold_room(step.migrations)

                def move(m: Any, counter: list[int] = counter, plan: Plan = plan,
                         holds: dict[str, str] = holds) -> None:
                    self._check()
                    self.ctx.store.reservations.settle(holds[m.vm])  # XAPI holds it from here
                    try:
                        if not self.port.migrate(m.vm, m.dst):
                            log.info("xenhost%d maintenance: %s is gone, not moved", self.ref,
                                     m.name)
                    except XenError as exc:
                        if exc.code != "HOST_NOT_ENOUGH_FREE_MEMORY":
                            raise
                        # Filled meanwhile by something else: the next round re-plans it.
                        log.warning("xenhost%d maintenance: %s not moved to %s: %s", self.ref,
                                    m.name, plan.names.get(m.dst, m.dst), exc)
                        return
                    with self._status_lock:
                        counter[0] += 1
                        n = counter[0]
                    self._status(None, migrations_done=n)
                    log.info("xenhost%d maintenance: %s %s -> %s done (%d)", self.ref, m.name,
                             name, plan.names.get(m.dst, m.dst), n)

                try:
                    with ThreadPoolExecutor(max(self.opts.parallel, 1),
                                            thread_name_prefix="dynvm-migrate") as ex:
                        for f in [ex.submit(move, m) for m in step.migrations]:
                            f.result()
                finally:
                    self.ctx.store.reservations.drop_request(self._holds_id())
                migrations_done = counter[0]
            if step.wait_for and not step.drain_first:
                self._drain(h, name, step)
            left = [v for v in self._wait_state().vms if v.host == h]
            if not left:
                return migrations_done
        left = [v for v in self._wait_state().vms if v.host == h]
        if left:
            raise MaintenanceFailed(f"{name} still runs {', '.join(v.name for v in left)}; "
                                    f"not rebooting it")
        return migrations_done

    def _drain(self, h: str, name: str, step: Any) -> None:
        """Wait (bounded by the drain timeout) for leases on the host to end."""
        leased = {lease.vm_uuid for lease in self.ctx.store.leases.find()}
        waiting = set(step.wait_for) | ({v.vm for v in step.migrations} & leased
                                         if step.drain_first else set())
        if not waiting:
            return
        self._status(f"{name}: waiting for {len(waiting)} lease(s) to end", step=RunStep.DRAIN)
        deadline = min(step.wait_until or 0.0, self.ctx.clock() + self.opts.drain_timeout)
        self._wait(lambda: not waiting & {v.uuid for v in self._wait_state().vms if v.host == h},
                   max(deadline - self.ctx.clock(), 0.0) + 5 * self.opts.poll,
                   "leases to end", fail=False)

    def _holds_id(self) -> str:
        return f"maintenance-{self.run_id}"

    def _hold_room(self, migrations: list[Any]) -> dict[str, str]:
        """Reserve the targets' memory in the store, so placement does not take it meanwhile.

        Held only while a migration waits its turn: once it starts, XAPI holds
        the target's memory itself (counting both would hide free room from
        placement). Returns VM uuid -> reservation id.
        """
        request_id = self._holds_id()
        now = time.time()  # the store judges reservations by its wall clock
        by_target: dict[str, list[Reservation]] = {}
        for m in migrations:
            by_target.setdefault(m.dst, []).append(Reservation(
                id=uuid.uuid4().hex, host_key=host_key(self.ref, m.dst), request_id=request_id,
                os="maintenance", vcpus=0, memory_gib=m.memory / GIB, disk_gib=0.0,
                created=now, expires=now + HOLD_SECS, vm_uuid=m.vm))
        for dst, wanted in by_target.items():
            count = len(wanted)
            self.ctx.store.reservations.reserve(host_key(self.ref, dst), wanted,
                                                lambda live, count=count: count)  # type: ignore[misc]
        return {r.vm_uuid or "": r.id for wanted in by_target.values() for r in wanted}

    def _hand_over_master(self, h: str, names: dict[str, str], done: list[str]) -> None:
        """The pool stays managed while its master reboots: another live host takes over."""
        hosts = self._wait_hosts()
        if not any(x.uuid == h and x.is_master for x in hosts):
            return
        others = [x for x in hosts if x.uuid != h and x.enabled and x.live]
        if not others:
            return  # a standalone host: nothing to hand over to
        ordered = {u: i for i, u in enumerate(
            x.uuid for x in host_order([PlanHost(x.uuid, x.name, 0, 0, x.is_master)
                                        for x in hosts]))}
        new = max(others, key=lambda x: (x.uuid in done, ordered.get(x.uuid, 0)))
        self._status(f"{names[h]}: pool master role handed to {new.name}", step=RunStep.MASTER)
        self.port.designate_master(new.uuid)
        self._wait(lambda: any(x.uuid == new.uuid and x.is_master
                               for x in self._wait_hosts()),
                   self.opts.reboot_timeout, f"{new.name} to answer as pool master")

    # -- waiting ----------------------------------------------------------------------------
    def _wait_state(self) -> PoolState:
        """The pool's state, riding out a moment when XAPI does not answer."""
        return self._riding_out(self.port.state)

    def _wait_hosts(self) -> list[HostState]:
        """The member hosts alone (a lighter read), riding out XAPI's silences too."""
        return self._riding_out(self.port.hosts)

    def _riding_out(self, read: Callable[[], T]) -> T:
        deadline = self.clock.monotonic() + self.opts.reboot_timeout
        while True:
            try:
                return read()
            except XenError:
                if self.clock.monotonic() >= deadline:
                    raise
                self.clock.sleep(self.opts.poll)

    def _wait(self, cond: Callable[[], bool], timeout: float, what: str, *,
              fail: bool = True) -> bool:
        deadline = self.clock.monotonic() + timeout
        while True:
            self._check()
            try:
                if cond():
                    return True
            except XenError as exc:
                log.debug("xenhost%d maintenance: waiting for %s: %s", self.ref, what, exc)
            if self.clock.monotonic() >= deadline:
                if fail:
                    raise MaintenanceFailed(f"timed out after {timeout:.0f}s waiting for {what}")
                return False
            self.clock.sleep(self.opts.poll)
