"""`XenPoolClient`: the core's `XenPool` for one [xenhostN] (standalone host or pool).

Reads come from the event-fed `Inventory` (under `dynvm serve`, the one its
inventory process keeps for every worker: `SharedInventory`); writes go
through pooled sessions and are applied to the inventory at once so the next
request sees them. Each
subject has its module: tasks, build (with its clean-up and config drives,
uploaded by upload), guest (waiting for an address) and teardown; this client
reads views and hands the rest on.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

from dynvm.config import HostConfig
from dynvm.core.clock import SYSTEM, Clock
from dynvm.core.ports import (
    TAG_LEASE,
    Outage,
    PoolView,
    VmBuild,
    VmSnapshot,
    VmView,
    XenError,
)
from dynvm.xen import records as R
from dynvm.xen.build import VmBuilder
from dynvm.xen.configdrive import ConfigDrives
from dynvm.xen.guest import LINK_LOCAL_SETTLE, GuestWaiter
from dynvm.xen.inventory import EVENT_TIMEOUT, Inventory
from dynvm.xen.session import SessionPool, track_fork
from dynvm.xen.shared_inventory import AnyInventory, SharedInventory, shared_address
from dynvm.xen.snapshots import VmSnapshots
from dynvm.xen.tasks import TaskRunner
from dynvm.xen.teardown import VmRemover
from dynvm.xen.upload import RawImporter

DEFAULT_MAX_AGE = 30.0  # view() refuses older data unless asked otherwise


class XenPoolClient:
    """One pool seen through its master; thread-safe, fork-safe, lazy."""

    def __init__(self, host: HostConfig, *, sessions: int = 8,
                 link_local_settle: float = LINK_LOCAL_SETTLE,
                 event_timeout: float | None = None, clock: Clock = SYSTEM,
                 shared: tuple[str, bytes] | None = None) -> None:
        """`shared`: the inventory process's socket and key, None to keep our own."""
        self.host = host
        self.host_ref = host.ref
        self.sessions = SessionPool(host, size=sessions)
        timeout = EVENT_TIMEOUT if event_timeout is None else event_timeout
        self.inventory: AnyInventory = \
            Inventory(self.sessions, event_timeout=timeout, clock=clock) if shared is None \
            else SharedInventory(host, *shared, event_timeout=timeout, clock=clock)
        self._tasks = TaskRunner(self.sessions, self.inventory)
        self._remover = VmRemover(self.sessions, self.inventory)
        self._snapshots = VmSnapshots(self.sessions, self.inventory, self._remover)
        self._builder = VmBuilder(self.sessions, self.inventory, self._tasks, self._remover,
                                  ConfigDrives(RawImporter(self._tasks)))
        self._guest = GuestWaiter(self.sessions, self.inventory, link_local_settle)
        self._reset_process_state()
        track_fork(self)

    def _reset_process_state(self) -> None:
        self._memo: tuple[int, PoolView] | None = None
        self._vm_memo: dict[str, tuple[Any, Any, VmView]] = {}

    def call(self, method_path: str, *args: Any) -> Any:
        return self.sessions.call(method_path, *args)

    # -- reading ---------------------------------------------------------

    def view(self, max_age: float | None = None) -> PoolView:
        inv = self.inventory
        inv.ensure(DEFAULT_MAX_AGE if max_age is None else max_age)
        return dataclasses.replace(self.current_view()[1], age_secs=inv.age)

    def current_view(self) -> tuple[int, PoolView]:
        """(generation, view) of the copy as it stands, built once per generation."""
        inv = self.inventory
        if isinstance(inv, SharedInventory):
            memo = inv.current_view()
        else:
            cached = self._memo
            if cached is not None and cached[0] == inv.generation:
                return cached
            snap = inv.snapshot()
            memo = (snap.generation, self._build_view(snap.tables))
        self._memo = memo
        return memo

    def outage(self) -> Outage | None:
        inv = self.inventory
        since, err = inv.down_since, inv.last_error
        if since is None or err is None:
            return None
        memo = self._memo
        return Outage(since=since, detail=str(err), last=memo[1] if memo else None)

    def _build_view(self, recs: Mapping[str, Mapping[str, dict[str, Any]]]) -> PoolView:
        """The whole view from one snapshot of the inventory."""
        hosts = R.host_views(recs)
        host_uuids = {h.ref: h.uuid for h in hosts}
        vms: dict[str, VmView] = {}
        templates: dict[str, str] = {}
        for ref, rec in recs["vm"].items():
            if rec.get("is_control_domain"):
                continue
            if rec.get("is_a_template"):
                if not rec.get("is_a_snapshot") and \
                        TAG_LEASE not in (rec.get("other_config") or {}):
                    name = rec.get("name_label", "")
                    if name not in templates or ref < templates[name]:
                        templates[name] = ref
                continue
            v = self._vm_view(ref, rec, recs["vm_guest_metrics"], host_uuids)
            vms[v.uuid] = v
        live = set(recs["vm"])
        for ref in [r for r in self._vm_memo if r not in live]:
            del self._vm_memo[ref]
        return PoolView(host_ref=self.host_ref, hosts=hosts, vms=vms, templates=templates,
                        age_secs=0.0)

    def _vm_view(self, ref: str, rec: dict[str, Any], gms: Mapping[str, dict[str, Any]],
                 host_uuids: Mapping[str, str]) -> VmView:
        """VmView, memoised on the record objects it came from (replaced on every change)."""
        gm = gms.get(rec.get("guest_metrics", R.NULL))
        cached = self._vm_memo.get(ref)
        if cached is not None and cached[0] is rec and cached[1] is gm \
                and cached[2].resident_on == host_uuids.get(rec.get("resident_on", R.NULL), ""):
            return cached[2]
        v = R.vm_view(ref, rec, gm, host_uuids)
        self._vm_memo[ref] = (rec, gm, v)
        return v

    def tagged_vms(self) -> list[VmView]:
        inv = self.inventory
        inv.ensure(DEFAULT_MAX_AGE)
        if isinstance(inv, SharedInventory):
            return inv.tagged_vms()
        tables = inv.snapshot().tables
        host_uuids = R.host_uuids(tables["host"])
        gms = tables["vm_guest_metrics"]
        return [R.vm_view(ref, rec, gms.get(rec.get("guest_metrics", R.NULL)), host_uuids)
                for ref, rec in tables["vm"].items()
                if not rec.get("is_control_domain") and not rec.get("is_a_snapshot")
                and TAG_LEASE in (rec.get("other_config") or {})]

    def _vm_ref(self, vm_uuid: str) -> str | None:
        """VM ref by uuid: from the inventory, else asked (None when it does not exist)."""
        ref = self.inventory.ref_by_uuid("vm", vm_uuid)
        if ref is not None:
            return ref
        try:
            return self.call("VM.get_by_uuid", vm_uuid)
        except XenError as exc:
            if exc.code in ("UUID_INVALID", "HANDLE_INVALID"):
                return None
            raise

    def exists(self, vm_uuid: str) -> bool:
        try:
            self.call("VM.get_by_uuid", vm_uuid)
        except XenError as exc:
            if exc.code == "UUID_INVALID":
                return False
            raise
        return True

    def _known_vm_ref(self, vm_uuid: str) -> str:
        ref = self._vm_ref(vm_uuid)
        if ref is None:
            raise XenError("UUID_INVALID", ["VM", vm_uuid])
        return ref

    # -- acting (each subject in its module) ------------------------------------

    def run_task(self, method_path: str, *args: Any, timeout: float,
                 cancel: threading.Event | None = None) -> str:
        """Run an `Async.*` call and wait for it; returns the decoded result."""
        return self._tasks.run_task(method_path, *args, timeout=timeout, cancel=cancel)

    def build(self, spec: VmBuild, cancel: threading.Event | None = None) -> VmView:
        self.inventory.ensure(DEFAULT_MAX_AGE)
        return self._builder.build(spec, self._template_ref(spec.template), cancel)

    def _template_ref(self, name: str) -> str:
        """The view's choice of template (one rule for counting and building), else asked."""
        found = self.view().templates.get(name)
        if found:
            return found
        refs = self.call("VM.get_by_name_label", name)
        for ref in sorted(refs):
            if self.call("VM.get_is_a_template", ref):
                return ref
        raise XenError("TEMPLATE_NOT_FOUND", [name], f"no template named {name!r}")

    def wait_ready(self, vm_uuid: str, *, windows: bool, timeout: float,
                   cancel: threading.Event | None = None) -> str:
        self.inventory.ensure(DEFAULT_MAX_AGE)
        return self._guest.wait_ready(self._known_vm_ref(vm_uuid), vm_uuid, windows=windows,
                                      timeout=timeout, cancel=cancel)

    def destroy(self, vm_uuid: str) -> bool:
        ref = self._vm_ref(vm_uuid)
        return False if ref is None else self._remover.destroy_ref(ref)

    def disk_sizes(self, vm_uuid: str) -> list[int]:
        """virtual_size (bytes) of each disk of the VM, in VBD order (the seed's `disk`)."""
        return self._remover.disk_sizes(self._known_vm_ref(vm_uuid))

    def snapshot(self, vm_uuid: str, name: str) -> VmSnapshot:
        return self._snapshots.take(self._known_vm_ref(vm_uuid), name)

    def snapshots(self, vm_uuid: str) -> list[VmSnapshot]:
        return self._snapshots.listing(self._known_vm_ref(vm_uuid))

    def delete_snapshot(self, vm_uuid: str, name: str) -> VmSnapshot:
        return self._snapshots.delete(self._known_vm_ref(vm_uuid), name)

    def revert(self, vm_uuid: str, name: str | None) -> VmSnapshot:
        return self._snapshots.revert(self._known_vm_ref(vm_uuid), name)

    def update(self, vm_uuid: str, *, name: str | None = None,
               description: str | None = None,
               tags: Mapping[str, str] | None = None) -> None:
        ref = self._known_vm_ref(vm_uuid)
        if name is not None:
            self.call("VM.set_name_label", ref, name)
        if description is not None:
            self.call("VM.set_name_description", ref, description)
        for key, value in (tags or {}).items():
            self.call("VM.remove_from_other_config", ref, key)
            self.call("VM.add_to_other_config", ref, key, value)
        self.inventory.refresh_vm(ref)

    def close(self) -> None:
        self.inventory.close()
        self.sessions.close()


def open_pool(host: HostConfig, clock: Clock = SYSTEM) -> XenPoolClient:
    """The XenPool for one [xenhostN]; connects lazily (safe to call before fork).
    `clock`: the core's, for the waits on guests. In a worker of `dynvm serve` its
    inventory is the instance's shared one."""
    return XenPoolClient(host, clock=clock, shared=shared_address())
