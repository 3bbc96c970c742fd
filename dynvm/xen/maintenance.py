"""The XenAPI side of host maintenance: pool state, HA, host power and live migration.

Reads are plain `get_all_records` calls, so a dry run makes no write call at
all. Migrations run as async tasks (`Async.VM.pool_migrate`, live), waited
for like every other task dynvm runs.
"""

from __future__ import annotations

import logging
from typing import Any

from dynvm.core.maintenance.ports import HaState, HostState, PoolState, VmState
from dynvm.core.ports import XenError
from dynvm.xen import records as R
from dynvm.xen.pool import XenPoolClient

log = logging.getLogger(__name__)

MIGRATE_TIMEOUT = 3600.0
BOOT_TIME = "boot_time"  # host.other_config key xapi sets at every start (dbsync)


def _blocker(vm: dict[str, Any], vbds: dict[str, Any], vdis: dict[str, Any],
             srs: dict[str, Any]) -> str:
    """Why XAPI would refuse a live pool migration of this VM ("" when it would not)."""
    if vm.get("is_control_domain"):
        return "control domain"
    for vbd_ref in vm.get("VBDs", []):
        vbd = vbds.get(vbd_ref)
        if not vbd or vbd.get("empty") or R.is_null(vbd.get("VDI")):
            continue
        vdi = vdis.get(vbd["VDI"])
        sr = srs.get(vdi.get("SR", R.NULL)) if vdi else None
        if sr is None or sr.get("shared"):
            continue
        name = sr.get("name_label", "")
        if vbd.get("type") == "CD":
            return f"CD attached from host-local SR '{name}'"
        return f"disk on host-local SR '{name}' (no storage motion)"
    return ""


class XenMaintenance:
    """`MaintenancePort` for one [xenhostN], through dynvm's pooled sessions."""

    def __init__(self, pool: XenPoolClient) -> None:
        self.pool = pool

    def _call(self, method: str, *args: Any) -> Any:
        return self.pool.call(method, *args)

    def _host_ref(self, host_uuid: str) -> str:
        return str(self._call("host.get_by_uuid", host_uuid))

    def _vm_ref(self, vm_uuid: str) -> str:
        return str(self._call("VM.get_by_uuid", vm_uuid))

    # -- reading -------------------------------------------------------------------------
    def _pool(self) -> dict[str, Any]:
        pools = self._call("pool.get_all_records")
        return next(iter(pools.values())) if pools else {}

    def _hosts(self, pool: dict[str, Any]) -> tuple[list[HostState], dict[str, str]]:
        """The member hosts, and host ref -> uuid."""
        master = pool.get("master", R.NULL)
        hosts = self._call("host.get_all_records")
        metrics = self._call("host_metrics.get_all_records")
        states = []
        for ref, h in hosts.items():
            m = metrics.get(h.get("metrics", R.NULL), {})
            states.append(HostState(
                uuid=h.get("uuid", ""), name=h.get("name_label", ""),
                enabled=bool(h.get("enabled")), live=bool(m.get("live")),
                memory_free=R.as_int(m.get("memory_free")),
                memory_total=R.as_int(m.get("memory_total")), is_master=ref == master,
                boot_time=str((h.get("other_config") or {}).get(BOOT_TIME, ""))))
        return states, {ref: h.get("uuid", "") for ref, h in hosts.items()}

    def hosts(self) -> list[HostState]:
        return self._hosts(self._pool())[0]

    def state(self) -> PoolState:
        pool = self._pool()
        host_states, uuid_of = self._hosts(pool)
        vms = self._call("VM.get_all_records")
        vbds = self._call("VBD.get_all_records")
        vdis = self._call("VDI.get_all_records")
        srs = self._call("SR.get_all_records")
        vm_states = []
        for v in vms.values():
            if v.get("is_a_template") or v.get("is_control_domain") or \
                    v.get("power_state") not in ("Running", "Paused"):
                continue
            vm_states.append(VmState(
                uuid=v.get("uuid", ""), name=v.get("name_label", ""),
                host=uuid_of.get(v.get("resident_on", R.NULL), ""),
                power_state=v.get("power_state", ""),
                memory=R.as_int(v.get("memory_static_max")) + R.as_int(v.get("memory_overhead")),
                blocker=_blocker(v, vbds, vdis, srs),
                other_config=dict(v.get("other_config") or {})))
        heartbeat = []
        for vdi_ref in pool.get("ha_statefiles", []) or []:
            vdi = vdis.get(vdi_ref)
            sr = srs.get(vdi.get("SR", R.NULL)) if vdi else None
            if sr and sr.get("uuid") not in heartbeat:
                heartbeat.append(sr["uuid"])
        ha = HaState(enabled=bool(pool.get("ha_enabled")), heartbeat_srs=heartbeat,
                     configuration=dict(pool.get("ha_configuration") or {}),
                     failures_to_tolerate=R.as_int(pool.get("ha_host_failures_to_tolerate")))
        return PoolState(host_states, vm_states, ha)

    def storage_shared(self, sr_name: str) -> bool:
        srs = [sr for sr in self._call("SR.get_all_records").values()
               if sr.get("name_label") == sr_name]
        return bool(srs) and all(sr.get("shared") for sr in srs)

    def host_back(self, host_uuid: str, booted_before: str = "") -> bool:
        ref = self._host_ref(host_uuid)
        rec = self._call("host.get_record", ref)
        if booted_before and (rec.get("other_config") or {}).get(BOOT_TIME, "") == booted_before:
            return False  # not rebooted yet, however live it looks
        return bool(self._call("host_metrics.get_live", rec["metrics"]))

    # -- acting ----------------------------------------------------------------------------
    def disable_ha(self) -> None:
        self._call("pool.disable_ha")

    def enable_ha(self, heartbeat_srs: list[str], configuration: dict[str, str],
                  failures_to_tolerate: int) -> None:
        srs = [self._call("SR.get_by_uuid", u) for u in heartbeat_srs]
        self._call("pool.enable_ha", srs, dict(configuration))
        if failures_to_tolerate > 0:
            pool_ref = next(iter(self._call("pool.get_all")))
            try:
                self._call("pool.set_ha_host_failures_to_tolerate", pool_ref,
                           str(failures_to_tolerate))
            except XenError as exc:
                log.warning("xenhost%d: HA back on, but failures to tolerate not set to %d: %s",
                            self.pool.host_ref, failures_to_tolerate, exc)

    def disable_host(self, host_uuid: str) -> None:
        self._call("host.disable", self._host_ref(host_uuid))

    def enable_host(self, host_uuid: str) -> None:
        self._call("host.enable", self._host_ref(host_uuid))

    def designate_master(self, host_uuid: str) -> None:
        self._call("pool.designate_new_master", self._host_ref(host_uuid))

    def migrate(self, vm_uuid: str, host_uuid: str) -> bool:
        try:
            self.pool.inventory.ensure(60.0)  # task events wake the wait below
        except XenError:
            pass  # the wait falls back to polling the task
        try:
            vm = self._vm_ref(vm_uuid)
            self.pool.run_task("Async.VM.pool_migrate", vm, self._host_ref(host_uuid),
                               {"live": "true"}, timeout=MIGRATE_TIMEOUT)
        except XenError as exc:
            if exc.code in ("UUID_INVALID", "HANDLE_INVALID"):
                return False  # released meanwhile: nothing left to move
            if exc.code == "VM_BAD_POWER_STATE" and not self._running(vm_uuid):
                return False
            raise
        return True

    def _running(self, vm_uuid: str) -> bool:
        try:
            return self._call("VM.get_power_state", self._vm_ref(vm_uuid)) in ("Running", "Paused")
        except XenError:
            return False

    def reboot(self, host_uuid: str) -> None:
        self._call("host.reboot", self._host_ref(host_uuid))
