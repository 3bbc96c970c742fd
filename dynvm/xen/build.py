"""Building a VM: clone the template, tag, size, network, provision, give it
its config drive when asked, and start it.

A build that fails at any step removes what it made (or, failing that, tags
it so that reconciliation finds it): no VM or disk is left behind untagged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from dynvm.core.lifecycle import Step, TagState
from dynvm.core.ports import TAG_STATE, CloneFailed, HostCannotTake, VmBuild, VmView, XenError
from dynvm.xen import records as R
from dynvm.xen.configdrive import ConfigDrives
from dynvm.xen.pool_access import PoolAccess
from dynvm.xen.session import SessionPool
from dynvm.xen.shared_inventory import AnyInventory
from dynvm.xen.tasks import TaskRunner, check_cancel
from dynvm.xen.teardown import VmRemover

log = logging.getLogger(__name__)

CLONE_TIMEOUT = 1800.0  # seconds a clone / provision task may take
START_TIMEOUT = 900.0
# VM.start_on errors about the member host's state, not the VM: another member may start it.
HOST_STATE_ERRORS = frozenset({"HOST_DISABLED", "HOST_DISABLED_UNTIL_REBOOT", "HOST_OFFLINE",
                               "HOST_NOT_LIVE", "HOST_NOT_ENOUGH_FREE_MEMORY"})


class VmBuilder(PoolAccess):
    """Builds VMs on one pool from the template the client chose."""

    def __init__(self, sessions: SessionPool, inventory: AnyInventory, tasks: TaskRunner,
                 remover: VmRemover, drives: ConfigDrives) -> None:
        super().__init__(sessions, inventory)
        self.run_task = tasks.run_task
        self.remover = remover
        self.drives = drives

    def build(self, spec: VmBuild, template: str,
              cancel: threading.Event | None = None) -> VmView:
        """Build `spec` from the template `template` (a ref); the VM's view once started."""
        host_ref = self._host_ref(spec.host_uuid)
        vm: str | None = None
        step = "clone"
        notify = spec.on_step or (lambda _step: None)
        try:
            check_cancel(cancel, Step.CLONING)
            notify(Step.CLONING)
            vm = self.run_task("Async.VM.clone", template, spec.name,
                               timeout=CLONE_TIMEOUT, cancel=cancel)
            rec = self.call("VM.get_record", vm)
            other = {**(rec.get("other_config") or {}), **spec.tags,
                     TAG_STATE: TagState.PROVISIONING.value}
            if "disks" in other:  # point the provisioning spec at our SR, with the tags
                step = "disks"
                other["disks"] = R.point_disks_at(
                    other["disks"], self._sr_uuid(host_ref, spec.storage_name))
                if spec.disk_bytes is not None:  # provision then creates it at that size
                    other["disks"] = R.grow_system_disk(other["disks"], spec.disk_bytes)
            step = "tag"
            self.call("VM.set_other_config", vm, other)
            step = "describe"
            self.call("VM.set_name_description", vm, spec.description)
            check_cancel(cancel, "sizing")
            if spec.vcpus is not None:
                step = "vcpus"
                self._set_vcpus(vm, rec, spec.vcpus)
            if spec.memory_bytes is not None:
                step = "memory"
                self._set_memory(vm, rec, spec.memory_bytes)
            if spec.disk_bytes is not None and "disks" not in other:
                step = "disk"
                self._grow_system_disk(rec, spec.disk_bytes)
            step = "network"
            self._set_network(vm, rec, host_ref, spec.network_device)
            check_cancel(cancel, Step.PROVISIONING)
            step = "provision"
            notify(Step.PROVISIONING)
            self.run_task("Async.VM.provision", vm, timeout=CLONE_TIMEOUT, cancel=cancel)
            if spec.first_boot is not None:
                step = "config drive"
                check_cancel(cancel, Step.PROVISIONING)
                self.drives.attach(vm, rec["uuid"], self._sr_ref(host_ref, spec.storage_name),
                                   spec.first_boot, cancel)
            check_cancel(cancel, Step.STARTING)
            step = "start"
            notify(Step.STARTING)
            self.run_task("Async.VM.start_on", vm, host_ref, False, False,
                          timeout=START_TIMEOUT, cancel=cancel)
            step = "tag state"
            # Started, not built yet: the caller's build tags it done (`finish_build`).
            state = spec.tags.get(TAG_STATE, TagState.STARTED.value)
            if state == TagState.PROVISIONING:
                state = TagState.STARTED.value
            self.call("VM.remove_from_other_config", vm, TAG_STATE)
            self.call("VM.add_to_other_config", vm, TAG_STATE, state)
            self.inventory.refresh_vm(vm)
            view = self._view_vm(vm)
            if view is None:
                raise XenError("HANDLE_INVALID", ["VM", vm], "VM vanished after start")
            return view
        except BaseException as exc:
            log.warning("xenhost%d: building %s failed at %s: %s", self.host_ref, spec.name,
                        step, exc)
            if vm is not None:
                self._discard(vm, spec.tags)
            if isinstance(exc, XenError) and step == "clone" and vm is None:
                raise CloneFailed(exc.code, exc.params, str(exc)) from exc
            if isinstance(exc, XenError) and step == "start" and exc.code in HOST_STATE_ERRORS:
                # Disabled (maintenance) or filled after placement chose it.
                raise HostCannotTake(exc.code, exc.params, str(exc)) from exc
            if isinstance(exc, XenError) or not isinstance(exc, Exception):
                raise
            raise XenError("INTERNAL_ERROR", [f"{type(exc).__name__}: {exc}"]) from exc

    def _view_vm(self, ref: str) -> VmView | None:
        found = self.inventory.vm_with_metrics(ref)
        if found is None:
            return None
        return R.vm_view(ref, *found, self.inventory.host_uuids())

    def _set_vcpus(self, vm: str, rec: Mapping[str, Any], n: int) -> None:
        """VCPUs_at_startup may never exceed VCPUs_max: order the two calls accordingly."""
        current_max = R.as_int(rec.get("VCPUs_max"), 1)
        if current_max == n and R.as_int(rec.get("VCPUs_at_startup"), 1) == n:
            return  # the template's already
        if n > current_max:
            self.call("VM.set_VCPUs_max", vm, str(n))
            self.call("VM.set_VCPUs_at_startup", vm, str(n))
        else:
            self.call("VM.set_VCPUs_at_startup", vm, str(n))
            self.call("VM.set_VCPUs_max", vm, str(n))

    def _set_memory(self, vm: str, rec: Mapping[str, Any], size: int) -> None:
        """Static max and the dynamic range all `size` (no ballooning below what was counted)."""
        now = [R.as_int(rec.get(f)) for f in ("memory_static_max", "memory_dynamic_min",
                                               "memory_dynamic_max")]
        if now == [size, size, size] and R.as_int(rec.get("memory_static_min")) <= size:
            return  # the template's already
        static_min = min(R.as_int(rec.get("memory_static_min")), size)
        m = str(size)
        self.call("VM.set_memory_limits", vm, str(static_min), m, m, m)

    def _grow_system_disk(self, rec: Mapping[str, Any], size: int) -> None:
        """Grow the clone's system disk to `size` bytes when the template's is smaller.

        XAPI resizes only a VDI with no attached VBD (the clone is a halted
        template, so its VBDs are not) on an SR that supports resize; the
        storage manager refuses to shrink, so a bigger disk is left as it is.
        """
        vdi = self._system_vdi(rec)
        if vdi is None:
            return
        if R.as_int(self.call("VDI.get_virtual_size", vdi)) < size:
            self.call("VDI.resize", vdi, str(size))

    def _system_vdi(self, rec: Mapping[str, Any]) -> str | None:
        """The boot disk: bootable Disk VBD first, else the lowest userdevice."""
        disks: list[tuple[bool, int, str]] = []
        for vbd in rec.get("VBDs") or ():
            b = self.call("VBD.get_record", vbd)
            if b.get("type") != "Disk" or R.is_null(b.get("VDI")) or b.get("empty"):
                continue
            disks.append((not b.get("bootable"), R.as_int(b.get("userdevice"), 99), b["VDI"]))
        return min(disks)[2] if disks else None

    def _set_network(self, vm: str, rec: dict[str, Any], host_ref: str,
                     device: str | None) -> None:
        """Move the template's first VIF to the wanted network, or create one."""
        vifs = rec.get("VIFs") or ()
        if vifs and device is None:
            return  # keep the template's network
        network = self._network(host_ref, device)
        if vifs:
            first = vifs[0] if len(vifs) == 1 else \
                min(vifs, key=lambda v: R.as_int(self.call("VIF.get_device", v)))
            self.call("VIF.move", first, network)
            return
        if network is None:
            raise XenError("PIF_NOT_FOUND", ["management", host_ref],
                           "no management network for a new VIF")
        net = self.inventory.record("network", network)
        mtu = "1500" if net is None else str(net.get("MTU", "1500"))
        self.call("VIF.create", {
            "device": "0", "network": network, "VM": vm, "MAC": "", "MTU": mtu,
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
        })

    def _discard(self, vm: str, tags: Mapping[str, str] | None = None) -> None:
        """Best-effort removal of a half-built VM; its tags let reconciliation retry.

        A build can fail before the VM was tagged (right after the clone): then
        the tags are written now, so that reconciliation can find the VM and
        prove it abandoned, rather than leave it behind untagged.
        """
        try:
            self.remover.destroy_ref(vm)
        except XenError as exc:
            log.error("xenhost%d: could not remove half-built VM %s: %s", self.host_ref, vm, exc)
            if not tags:
                return
            try:
                for key, value in {**tags, TAG_STATE: TagState.PROVISIONING.value}.items():
                    self.call("VM.remove_from_other_config", vm, key)
                    self.call("VM.add_to_other_config", vm, key, value)
                self.inventory.refresh_vm(vm)
            except XenError as again:
                log.error("xenhost%d: half-built VM %s could not be tagged for a later "
                          "clean-up either: %s", self.host_ref, vm, again)
