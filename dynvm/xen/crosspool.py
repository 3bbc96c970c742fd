"""Moving a VM to another pool with its disks: XAPI's cross-pool migration
(storage motion), `host.migrate_receive` on the receiving pool, then
`VM.assert_can_migrate` and `VM.migrate_send` on the sending one.

Every disk goes to the one SR of the receiving member host that the
receiving [xenhostN] builds on, every VIF to its network, so the VM lands as
that pool builds its VMs. XAPI checks the move before anything is copied (CPU
vendor and features, room, maps) and, when it fails midway, leaves the VM
where it was with its disks; the VM keeps its uuid and other_config, so it is
still provably dynvm's there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynvm.core.fleet.ports import Landing
from dynvm.core.ports import XenError
from dynvm.xen import records as R
from dynvm.xen.pool_access import PoolAccess

MOVE_TIMEOUT = 4 * 3600.0  # the disks are copied: hours for big ones


class VmMover(PoolAccess):
    """Both ends of a cross-pool move, for one pool."""

    def receive(self, host_uuid: str, storage_name: str,
                network_device: str | None) -> Landing:
        host = self._host_ref(host_uuid)
        network = self._network(host, network_device)
        if network is None:
            raise XenError("PIF_NOT_FOUND", ["management", host],
                           "no management network to receive a VM on")
        sr = self._sr_ref(host, storage_name)
        token = self.call("host.migrate_receive", host, network, {})
        return Landing(host_uuid=host_uuid, sr=sr, network=network, token=dict(token))

    def send(self, vm_uuid: str, landing: Landing, run_task: Callable[..., Any]) -> None:
        vm = str(self.call("VM.get_by_uuid", vm_uuid))
        rec = self.call("VM.get_record", vm)
        vdi_map: dict[str, str] = {}
        for vbd in rec.get("VBDs") or ():
            b = self.call("VBD.get_record", vbd)
            if b.get("type") == "Disk" and not b.get("empty") and not R.is_null(b.get("VDI")):
                vdi_map[b["VDI"]] = landing.sr
        vif_map = dict.fromkeys(rec.get("VIFs") or (), landing.network)
        live = rec.get("power_state") == "Running"
        args: tuple[Any, ...] = (vm, landing.token, live, vdi_map, vif_map, {}, {})
        self.call("VM.assert_can_migrate", *args)
        try:
            run_task("Async.VM.migrate_send", *args, timeout=MOVE_TIMEOUT)
        finally:
            self.inventory.refresh_vm(vm)

    def arrived(self, vm_uuid: str) -> None:
        self.inventory.refresh_vm(str(self.call("VM.get_by_uuid", vm_uuid)))
