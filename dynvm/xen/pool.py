"""`XenPoolClient`: the core's `XenPool` for one [xenhostN] (standalone host or pool).

Reads come from the event-fed `Inventory`; writes go through pooled sessions
and are applied to the inventory at once so the next request sees them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from dynvm.config import HostConfig
from dynvm.core.ports import (
    TAG_LEASE,
    TAG_STATE,
    CloneFailed,
    LinkLocalOnly,
    PoolView,
    VmBuild,
    VmView,
    WaitTimeout,
    XenError,
)
from dynvm.xen import records as R
from dynvm.xen.inventory import Inventory, finished
from dynvm.xen.metrics import count_error
from dynvm.xen.session import SessionPool, track_fork

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 30.0  # view() refuses older data unless asked otherwise
STATE_PROVISIONING = "provisioning"
STATE_STARTED = "ready"
CLONE_TIMEOUT = 1800.0  # seconds a clone / provision task may take
START_TIMEOUT = 900.0
TASK_POLL = 5.0  # seconds between task.get_record checks, a net under the event feed
LINK_LOCAL_SETTLE = 90.0  # seconds a guest may hold only 169.254.x.y before we give up
_RUNNING_STATES = ("Running", "Paused", "Suspended")


class Cancelled(XenError):
    def __init__(self, what: str) -> None:
        super().__init__("CANCELLED", [what], f"cancelled while {what}")


class XenPoolClient:
    """One pool seen through its master; thread-safe, fork-safe, lazy."""

    def __init__(self, host: HostConfig, *, sessions: int = 8,
                 link_local_settle: float = LINK_LOCAL_SETTLE,
                 event_timeout: float | None = None) -> None:
        self.host = host
        self.host_ref = host.ref
        self.link_local_settle = link_local_settle
        self.sessions = SessionPool(host, size=sessions)
        self.inventory = Inventory(self.sessions) if event_timeout is None \
            else Inventory(self.sessions, event_timeout=event_timeout)
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
        memo = self._memo
        if memo is None or memo[0] != inv.generation:
            snap = inv.snapshot()
            memo = (snap.generation, self._build_view(snap.tables))
            self._memo = memo
        return dataclasses.replace(memo[1], age_secs=inv.age)

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
        self.inventory.ensure(DEFAULT_MAX_AGE)
        tables = self.inventory.snapshot().tables
        host_uuids = {ref: h.get("uuid", "") for ref, h in tables["host"].items()}
        gms = tables["vm_guest_metrics"]
        return [R.vm_view(ref, rec, gms.get(rec.get("guest_metrics", R.NULL)), host_uuids)
                for ref, rec in tables["vm"].items()
                if not rec.get("is_control_domain")
                and TAG_LEASE in (rec.get("other_config") or {})]

    def _view_vm(self, ref: str) -> VmView | None:
        found = self.inventory.vm_with_metrics(ref)
        if found is None:
            return None
        return R.vm_view(ref, *found, self.inventory.host_uuids())

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

    # -- tasks -------------------------------------------------------------

    def run_task(self, method_path: str, *args: Any, timeout: float,
                 cancel: threading.Event | None = None) -> str:
        """Run an `Async.*` call and wait for it; returns the decoded result.

        Waiting rides on the event feed (task events wake us) with a slow
        poll of `task.get_record` as a safety net (the feed may be reconnecting,
        and a reload does not bring tasks back). When `cancel` is set we ask
        XAPI to cancel but still wait for the outcome, so that whatever the
        task created can be cleaned up by the caller.
        """
        task = self.call(method_path, *args)
        inv = self.inventory
        deadline = time.monotonic() + timeout
        cancel_sent = False
        try:
            while True:
                left = max(deadline - time.monotonic(), 0.0)
                rec = inv.wait_for(lambda: inv.finished_task(task),
                                   min(TASK_POLL, left), None if cancel_sent else cancel)
                if rec is not None:
                    break
                if cancel is not None and cancel.is_set() and not cancel_sent:
                    cancel_sent = True
                    self._quietly("task.cancel", task)
                    continue
                rec = finished(self.call("task.get_record", task))
                if rec is not None:
                    break
                if time.monotonic() >= deadline:
                    self._quietly("task.cancel", task)
                    raise WaitTimeout(method_path, timeout)
        finally:
            self._quietly("task.destroy", task)
            inv.apply_record("task", task, None)
        status = rec.get("status")
        if status == "success":
            return R.task_result(rec.get("result", ""))
        info = [str(x) for x in (rec.get("error_info") or [])]
        if status == "cancelled" and not info:
            info = ["TASK_CANCELLED", task]
        err = XenError(info[0] if info else "TASK_FAILED", info[1:])
        count_error(err.code)  # an async call's failure, as translate counts the others
        raise err

    def _quietly(self, method_path: str, *args: Any) -> None:
        try:
            self.call(method_path, *args)
        except XenError as exc:
            log.debug("xenhost%d: %s failed: %s", self.host_ref, method_path, exc)

    # -- building ------------------------------------------------------------

    def build(self, spec: VmBuild, cancel: threading.Event | None = None) -> VmView:
        self.inventory.ensure(DEFAULT_MAX_AGE)
        template = self._template_ref(spec.template)
        host_ref = self._host_ref(spec.host_uuid)
        vm: str | None = None
        step = "clone"
        notify = spec.on_step or (lambda _step: None)
        try:
            _check(cancel, "cloning")
            notify("cloning")
            vm = self.run_task("Async.VM.clone", template, spec.name,
                               timeout=CLONE_TIMEOUT, cancel=cancel)
            rec = self.call("VM.get_record", vm)
            other = {**(rec.get("other_config") or {}), **spec.tags,
                     TAG_STATE: STATE_PROVISIONING}
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
            _check(cancel, "sizing")
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
            _check(cancel, "provisioning")
            step = "provision"
            notify("provisioning")
            self.run_task("Async.VM.provision", vm, timeout=CLONE_TIMEOUT, cancel=cancel)
            _check(cancel, "starting")
            step = "start"
            notify("starting")
            self.run_task("Async.VM.start_on", vm, host_ref, False, False,
                          timeout=START_TIMEOUT, cancel=cancel)
            step = "tag state"
            state = spec.tags.get(TAG_STATE, STATE_STARTED)
            if state == STATE_PROVISIONING:
                state = STATE_STARTED
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
            if isinstance(exc, XenError) or not isinstance(exc, Exception):
                raise
            raise XenError("INTERNAL_ERROR", [f"{type(exc).__name__}: {exc}"]) from exc

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

    def _host_ref(self, host_uuid: str) -> str:
        ref = self.inventory.ref_by_uuid("host", host_uuid)
        return ref if ref is not None else self.call("host.get_by_uuid", host_uuid)

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

    def _host_pifs(self, host_ref: str) -> list[dict[str, Any]]:
        pifs = self.inventory.host_pifs(host_ref)
        if not pifs:  # not in the copy (yet): ask
            pifs = [self.call("PIF.get_record", p) for p in self.call("host.get_PIFs", host_ref)]
        return pifs

    def _set_network(self, vm: str, rec: dict[str, Any], host_ref: str,
                     device: str | None) -> None:
        """Move the template's first VIF to the wanted network, or create one."""
        vifs = rec.get("VIFs") or ()
        if vifs and device is None:
            return  # keep the template's network
        pifs = self._host_pifs(host_ref)
        if device is not None:
            matching = sorted((p for p in pifs if p.get("device") == device),
                              key=lambda p: R.as_int(p.get("VLAN"), -1) != -1)
            if not matching:
                raise XenError("PIF_NOT_FOUND", [device, host_ref],
                               f"no PIF {device} on host {host_ref}")
            network = matching[0]["network"]
        else:
            mgmt = [p for p in pifs if p.get("management")]
            network = mgmt[0]["network"] if mgmt else None
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

    def _sr_uuid(self, host_ref: str, name: str) -> str:
        """Uuid of the SR named `name` attached to the host (most free space wins)."""
        best: tuple[int, str] | None = None
        for sr in self.inventory.attached_srs(host_ref):
            if sr.get("name_label") != name:
                continue
            free = R.as_int(sr.get("physical_size")) - R.as_int(sr.get("physical_utilisation"))
            if best is None or free > best[0]:
                best = (free, sr["uuid"])
        if best is None:
            raise XenError("SR_NOT_FOUND", [name, host_ref],
                           f"no SR named {name!r} attached to host {host_ref}")
        return best[1]

    # -- waiting for the guest -------------------------------------------------

    def wait_ready(self, vm_uuid: str, *, windows: bool, timeout: float,
                   cancel: threading.Event | None = None) -> str:
        inv = self.inventory
        inv.ensure(DEFAULT_MAX_AGE)
        ref = self._vm_ref(vm_uuid)
        if ref is None:
            raise XenError("UUID_INVALID", ["VM", vm_uuid])
        if not inv.has("vm", ref):
            inv.refresh_vm(ref)
        deadline = time.monotonic() + timeout
        link_local: dict[str, Any] = {"since": None, "ip": ""}

        def check() -> tuple[str, str] | None:
            found = inv.vm_with_metrics(ref)
            if found is None:
                return ("gone", "")
            rec, gm = found
            if rec.get("power_state") != "Running":
                return ("halted", str(rec.get("power_state")))
            v4 = R.ipv4_addresses(R.guest_addresses((gm or {}).get("networks")))
            usable = [ip for ip in v4 if not R.is_link_local(ip)]
            if usable:
                link_local["since"] = None
                if windows or R.os_name(gm):
                    return ("ok", usable[0])
                return None
            if v4:
                link_local["ip"] = v4[0]
                if link_local["since"] is None:
                    link_local["since"] = time.monotonic()
                elif time.monotonic() - link_local["since"] >= self.link_local_settle:
                    return ("link-local", v4[0])
            else:
                link_local["since"] = None
            return None

        stale_after = 2 * inv.event_timeout + self.host.call_timeout
        while True:
            left = deadline - time.monotonic()
            outcome = inv.wait_for(check, max(min(left, 5.0), 0.0), cancel)
            if outcome is not None:
                break
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"waiting for {vm_uuid}")
            if time.monotonic() >= deadline:
                if link_local["since"] is not None:
                    raise LinkLocalOnly(link_local["ip"])
                raise WaitTimeout(f"an IPv4 address on VM {vm_uuid}", timeout)
            if inv.age > stale_after:  # the feed is not delivering: look ourselves
                try:
                    inv.refresh_vm(ref)
                except XenError as exc:
                    log.info("xenhost%d: refreshing %s: %s", self.host_ref, vm_uuid, exc)
        kind, detail = outcome
        if kind == "ok":
            return detail
        if kind == "link-local":
            raise LinkLocalOnly(detail)
        if kind == "gone":
            raise XenError("HANDLE_INVALID", ["VM", ref], f"VM {vm_uuid} disappeared")
        raise XenError("VM_BAD_POWER_STATE", [ref, "running", detail.lower()],
                       f"VM {vm_uuid} is {detail}, not running")

    # -- destroying and updating -------------------------------------------------

    def destroy(self, vm_uuid: str) -> bool:
        ref = self._vm_ref(vm_uuid)
        return False if ref is None else self._destroy_ref(ref)

    def _destroy_ref(self, ref: str) -> bool:
        try:
            rec = self.call("VM.get_record", ref)
            if rec.get("is_control_domain"):
                raise XenError("OPERATION_NOT_ALLOWED",
                               ["This operation is not allowed on a control domain"])
            if rec.get("power_state") in _RUNNING_STATES:
                try:
                    self.call("VM.hard_shutdown", ref)
                except XenError as exc:
                    if exc.code != "VM_BAD_POWER_STATE":
                        raise
            vdis = self._own_vdis(ref, rec)
            self.call("VM.destroy", ref)
        except XenError as exc:
            if exc.code == "HANDLE_INVALID" and exc.params[:1] == ["VM"]:
                self.inventory.apply_record("vm", ref, None)
                return False
            raise
        self.inventory.apply_record("vm", ref, None)
        failed: list[XenError] = []
        for vdi in vdis:  # the VM is gone: try every disk before reporting any failure
            try:
                self.call("VDI.destroy", vdi)
            except XenError as exc:
                if exc.code != "HANDLE_INVALID":
                    log.error("xenhost%d: VDI %s of VM %s left behind: %s",
                              self.host_ref, vdi, ref, exc)
                    failed.append(exc)
        if failed:
            raise failed[0]
        return True

    def _own_vdis(self, ref: str, rec: dict[str, Any]) -> list[str]:
        """The VM's disk VDIs that no other VM uses (never CDs / ISOs)."""
        out = []
        for vbd in rec.get("VBDs") or ():
            try:
                vbd_rec = self.call("VBD.get_record", vbd)
                if vbd_rec.get("type") != "Disk" or R.is_null(vbd_rec.get("VDI")):
                    continue
                vdi = vbd_rec["VDI"]
                vdi_rec = self.call("VDI.get_record", vdi)
            except XenError as exc:
                if exc.code == "HANDLE_INVALID":
                    continue
                raise
            if vdi_rec.get("is_tools_iso"):
                continue
            others = [v for v in vdi_rec.get("VBDs") or () if v != vbd]
            if any(self._vbd_vm(v) not in (ref, None) for v in others):
                continue
            out.append(vdi)
        return out

    def disk_sizes(self, vm_uuid: str) -> list[int]:
        """virtual_size (bytes) of each disk of the VM, in VBD order (the seed's `disk`)."""
        ref = self._vm_ref(vm_uuid)
        if ref is None:
            raise XenError("UUID_INVALID", ["VM", vm_uuid])
        sizes = []
        for vbd in self.call("VM.get_VBDs", ref):
            vbd_rec = self.call("VBD.get_record", vbd)
            if vbd_rec.get("type") != "Disk" or R.is_null(vbd_rec.get("VDI")):
                continue
            sizes.append(R.as_int(self.call("VDI.get_virtual_size", vbd_rec["VDI"])))
        return sizes

    def _vbd_vm(self, vbd: str) -> str | None:
        try:
            return self.call("VBD.get_VM", vbd)
        except XenError as exc:
            if exc.code == "HANDLE_INVALID":
                return None
            raise

    def _discard(self, vm: str, tags: Mapping[str, str] | None = None) -> None:
        """Best-effort removal of a half-built VM; its tags let reconciliation retry.

        A build can fail before the VM was tagged (right after the clone): then
        the tags are written now, so that reconciliation can find the VM and
        prove it abandoned, rather than leave it behind untagged.
        """
        try:
            self._destroy_ref(vm)
        except XenError as exc:
            log.error("xenhost%d: could not remove half-built VM %s: %s", self.host_ref, vm, exc)
            if not tags:
                return
            try:
                for key, value in {**tags, TAG_STATE: STATE_PROVISIONING}.items():
                    self.call("VM.remove_from_other_config", vm, key)
                    self.call("VM.add_to_other_config", vm, key, value)
                self.inventory.refresh_vm(vm)
            except XenError as again:
                log.error("xenhost%d: half-built VM %s could not be tagged for a later "
                          "clean-up either: %s", self.host_ref, vm, again)

    def update(self, vm_uuid: str, *, name: str | None = None,
               description: str | None = None,
               tags: Mapping[str, str] | None = None) -> None:
        ref = self._vm_ref(vm_uuid)
        if ref is None:
            raise XenError("UUID_INVALID", ["VM", vm_uuid])
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


def _check(cancel: threading.Event | None, what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled(what)


def open_pool(host: HostConfig) -> XenPoolClient:
    """The XenPool for one [xenhostN]; connects lazily (safe to call before fork)."""
    return XenPoolClient(host)


