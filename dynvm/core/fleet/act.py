"""Doing one step of a fleet plan, under the store's claims.

A build is claimed in the store (`store.fleet.claim`) before any XenAPI call
and its room reserved like any other VM's, so two processes never build one
fleet VM twice, and a request for disposable VMs never takes the room meanwhile.
A destroy is claimed too, and only ever of a VM whose tags prove it the fleet's.
Each step says what it did in one line, or raises `StepFailed` with the reason;
a build that fails leaves nothing behind (the pool client destroys what it made).
"""

from __future__ import annotations

import logging
import uuid

from dynvm.config import FleetVm, HostConfig, OsSpec
from dynvm.core import staticpool
from dynvm.core.capacity import GIB, free_on, host_key, unseen
from dynvm.core.context import Context
from dynvm.core.fleet.observe import PortOf, fleet_name
from dynvm.core.fleet.plan import Action, Kind
from dynvm.core.fleet.ports import FleetPort
from dynvm.core.lifecycle import FleetState
from dynvm.core.placement import SETTLE_SECS
from dynvm.core.ports import (
    TAG_BUILDER,
    TAG_CREATED,
    TAG_DEPLOYMENT,
    TAG_FLEET,
    TAG_OS,
    TAG_OWNER,
    TAG_RESERVATION,
    TAG_STATE,
    VmBuild,
    XenError,
)
from dynvm.core.store import FleetEntry, Lease, Reservation

log = logging.getLogger("dynvm.fleet")

CREATING, PRESENT, REMOVING = FleetState.CREATING, FleetState.PRESENT, FleetState.REMOVING


class StepFailed(Exception):
    """One step could not be done; the farm and the store are as before it, or say why."""


class Steps:
    """The steps of fleet plans, done by `holder` (an apply, or the background leader)."""

    def __init__(self, ctx: Context, port_of: PortOf, holder: str) -> None:
        self.ctx, self.port_of, self.holder = ctx, port_of, holder

    def do(self, action: Action) -> str:
        hc = self.ctx.config().hosts.get(action.pool)
        if hc is None:
            raise StepFailed(f"xenhost{action.pool} is no longer configured")
        try:
            return self._do(action, hc)
        except XenError as exc:
            raise StepFailed(f"{action.kind.value} {action.name}: {exc}") from exc

    def _do(self, a: Action, hc: HostConfig) -> str:
        port = self.port_of(hc)
        if a.kind == Kind.CREATE:
            assert a.declared is not None
            return self.create(a.declared, hc, a.member, a.where, expect_vm=a.vm_uuid or None)
        if a.kind == Kind.DESTROY:
            return self.destroy(a, hc)
        if a.kind == Kind.MIGRATE and a.to_pool is not None:
            return self.move(a, port)
        if a.kind == Kind.MIGRATE:
            if not port.migrate(a.vm_uuid, a.member):
                raise StepFailed(f"{a.name} is gone: not moved")
            return f"migrated {a.name} {a.src} -> {a.where}"
        if a.kind == Kind.STOP:
            if port.power_state(a.vm_uuid) != "Running":
                return f"{a.name}'s copy {a.vm_uuid} is not running"
            port.shutdown(a.vm_uuid)
            return f"stopped {a.name} on {a.where} ({a.why})"
        assert a.declared is not None
        vm = a.declared
        if a.kind == Kind.RESIZE:
            if a.restart:
                port.shutdown(a.vm_uuid)
            port.resize(a.vm_uuid, vm.vcpus, vm.memory_gib * GIB, vm.disk_gib * GIB)
            if a.restart:
                port.start(a.vm_uuid, a.member)
            return f"resized {a.name}: {a.why}"
        if port.power_state(a.vm_uuid) == "Running":  # started meanwhile (a look at XAPI)
            return f"{a.name} runs already"
        port.start(a.vm_uuid, a.member)
        return f"started {a.name} on {a.where}"

    # -- move to another pool ----------------------------------------------------------------
    def move(self, a: Action, src: FleetPort) -> str:
        """XAPI's cross-pool migration; when it fails, XAPI leaves the VM where it was: the
        failure says where the VM is now (so it is known to exist once)."""
        cfg = self.ctx.config()
        hc = cfg.hosts.get(a.to_pool or 0)
        if hc is None or a.declared is None:
            raise StepFailed(f"xenhost{a.to_pool} is no longer configured")
        dest = self.port_of(hc)
        moving = f"migrate {a.name} from xenhost{a.pool} to xenhost{hc.ref}"
        try:
            landing = dest.receive(a.member, hc.storage_name,
                                   hc.network_id or hc.template_networks.get(a.declared.os))
            src.send(a.vm_uuid, landing)
        except XenError as exc:
            raise StepFailed(f"{moving}: {exc}; {self._where_now(a, src, dest)}") from exc
        entry = self.ctx.store.fleet.update(a.name, host_ref=hc.ref)
        try:
            dest.arrived(a.vm_uuid)
        except XenError as exc:  # it moved; that pool's inventory learns it from its events
            log.warning("fleet: %s moved to xenhost%d, not read there yet: %s", a.name,
                        hc.ref, exc)
        if entry is not None and entry.ip and a.declared.pools and self.ctx.static_pools:
            self._publish(a.declared, hc, a.vm_uuid, entry.ip)  # its new pool as its origin
        return f"migrated {a.name} from xenhost{a.pool} to xenhost{hc.ref}: {a.src} -> {a.where}"

    @staticmethod
    def _where_now(a: Action, src: FleetPort, dest: FleetPort) -> str:
        for port, where in ((src, f"it stays on {a.src}"), (dest, f"it is on xenhost{a.to_pool}")):
            try:
                if port.power_state(a.vm_uuid):
                    return where
            except XenError:
                continue
        return "where it is now is not known (a pool does not answer)"

    # -- destroy ---------------------------------------------------------------------------
    def destroy(self, a: Action, hc: HostConfig) -> str:
        """A removed file's VM (claimed for removal) or a half-built one (claimed for the
        build that replaces it, which keeps the claim)."""
        store, now = self.ctx.store, self.ctx.clock()
        until = now + self.ctx.config().reservation_ttl_secs
        if a.declared is not None:
            if store.fleet.claim(a.name, self.holder, until, now) is None:
                raise StepFailed(f"{a.name} is being built by another process")
            self.ctx.pool(hc).destroy(a.vm_uuid)
            return f"destroyed {a.name} ({a.why})"
        if store.fleet.get(a.name) is None:
            store.fleet.adopt(FleetEntry(name=a.name, state=PRESENT, vm_uuid=a.vm_uuid,
                                         host_ref=hc.ref))
        entry = store.fleet.claim_removal(a.name, self.holder, until, now)
        if entry is None:
            raise StepFailed(f"{a.name} is being acted on by another process")
        try:
            self.ctx.pool(hc).destroy(a.vm_uuid)
        except Exception:
            store.fleet.settle(a.name, REMOVING, self.holder)
            raise
        if entry.ip:
            staticpool.withdraw(self.ctx, _as_lease(entry), entry.ip)
        store.fleet.end(a.name, REMOVING, self.holder)
        return f"destroyed {a.name} on {a.where} ({a.why})"

    # -- create ----------------------------------------------------------------------------
    def create(self, vm: FleetVm, hc: HostConfig, member: str, where: str,
               expect_vm: str | None = None) -> str:
        """Build `vm` on `member`: claimed, room reserved, built, recorded, addressed.

        `expect_vm`: the uuid of the VM found missing (a record `present` is then
        claimed again only if it still names that VM).
        """
        ctx, store = self.ctx, self.ctx.store
        cfg, now = ctx.config(), ctx.clock()
        until = now + cfg.reservation_ttl_secs
        if store.fleet.claim(vm.name, self.holder, until, now, missing=expect_vm) is None:
            raise StepFailed(f"{vm.name} is being built by another process, or exists")
        found = self._built_meanwhile(vm.name)
        if found is not None:  # a claim that lapsed had finished its build after all
            store.fleet.settle(vm.name, CREATING, self.holder, vm_uuid=found[0], host_ref=found[1])
            return f"{vm.name} exists already (xenhost{found[1]})"
        spec = hc.os[vm.os]
        res = self._reserve(vm, hc, member, spec, until)
        try:
            built = ctx.pool(hc).build(VmBuild(
                name=vm.name, description=f"{vm.name}: fleet VM from {spec.template} "
                                          f"({vm.source})",
                template=spec.template, host_uuid=member, storage_name=hc.storage_name,
                vcpus=vm.vcpus, memory_bytes=vm.memory_gib * GIB,
                network_device=hc.network_id or hc.template_networks.get(vm.os),
                tags={TAG_FLEET: vm.name, TAG_DEPLOYMENT: ctx.deployment(),
                      TAG_BUILDER: ctx.instance, TAG_CREATED: str(int(now)), TAG_OS: vm.os,
                      TAG_OWNER: vm.owner, TAG_RESERVATION: res.id,
                      TAG_STATE: PRESENT.value},
                disk_bytes=vm.disk_gib * GIB))
        except Exception as exc:
            store.reservations.drop_request(res.request_id)
            store.fleet.end(vm.name, CREATING, self.holder)
            raise StepFailed(f"build of {vm.name} on {where} failed: {exc}") from exc
        store.reservations.settle(res.id, vm_uuid=built.uuid, settle_secs=SETTLE_SECS)
        if store.fleet.settle(vm.name, CREATING, self.holder, vm_uuid=built.uuid,
                              host_ref=hc.ref, created=now, start={}) is None:
            log.warning("fleet: the claim on %s lapsed during its build", vm.name)
        return f"created {vm.name} on {where}" + self._address(vm, hc, built.uuid)

    def _built_meanwhile(self, name: str) -> tuple[str, int] | None:
        """A fleet VM of that name the farm shows complete: (uuid, pool)."""
        own = self.ctx.deployment()
        for hc in self.ctx.config().hosts.values():
            for v in self.ctx.view(hc).vms.values():
                if fleet_name(v, own) == name and v.other_config.get(TAG_STATE) == PRESENT:
                    return v.uuid, hc.ref
        return None

    def _reserve(self, vm: FleetVm, hc: HostConfig, member: str, spec: OsSpec,
                 until: float) -> Reservation:
        """Hold the new VM's room in the store, as any other build does (or StepFailed)."""
        view = self.ctx.view(hc)
        host = next((h for h in view.hosts if h.uuid == member), None)
        key = host_key(hc.ref, member)
        now = self.ctx.clock()
        res = Reservation(id=uuid.uuid4().hex, host_key=key,
                          request_id=f"fleet-{vm.name}-{uuid.uuid4().hex[:6]}", os=vm.os,
                          vcpus=vm.vcpus, memory_gib=vm.memory_gib, disk_gib=vm.disk_gib,
                          created=now, expires=until)
        sized = OsSpec(vm.os, spec.template, vm.vcpus, vm.memory_gib, vm.disk_gib)

        def free_slots(live: list[Reservation]) -> int:
            if host is None or not host.enabled:
                return 0
            load = view.load_on(member)
            return free_on(host, load.vcpus, hc.storage_name,
                           unseen(live, load.shown, view.running_anywhere())).slots(sized)

        if not self.ctx.store.reservations.reserve(key, [res], free_slots):
            self.ctx.store.fleet.end(vm.name, CREATING, self.holder)
            raise StepFailed(f"no room for {vm.name} on xenhost{hc.ref} any more")
        return res

    def _address(self, vm: FleetVm, hc: HostConfig, vm_uuid: str) -> str:
        """Wait for its address (kept with its record); its static-pool document then."""
        spec = hc.os[vm.os]
        try:
            ip = self.ctx.pool(hc).wait_ready(vm_uuid, windows=spec.is_windows,
                                              timeout=self.ctx.config().network_timeout_secs)
        except XenError as exc:
            log.warning("fleet: %s has no address yet: %s", vm.name, exc)
            return f"; no address yet ({exc.code})"
        self.ctx.store.fleet.update(vm.name, ip=ip)
        if vm.pools and self.ctx.static_pools is not None:
            self._publish(vm, hc, vm_uuid, ip)
        return f" at {ip}"

    def _publish(self, vm: FleetVm, hc: HostConfig, vm_uuid: str, ip: str) -> None:
        """Its static-pool document, as the seed writes one (its pool as its origin)."""
        assert self.ctx.static_pools is not None
        doc = staticpool.static_doc({"ipaddr": ip, "origin": hc.name, "os": vm.os,
                                     "name": vm.name, "memory": str(vm.memory_gib * GIB)},
                                    vm.pools, vm_uuid)
        try:
            self.ctx.static_pools.add(ip, doc)
        except Exception as exc:  # as for getservers: logged, never a failed build
            log.error("fleet: %s not added to the static pools: %s", vm.name, exc)


def _as_lease(entry: FleetEntry) -> Lease:
    """What `staticpool.withdraw` reads of a VM (its name and uuid)."""
    return Lease(vm_uuid=entry.vm_uuid, name=entry.name, owner="", host_ref=entry.host_ref,
                 host_uuid="", vm_ref="", os="", request_id="", created=entry.created,
                 expires=0.0)
