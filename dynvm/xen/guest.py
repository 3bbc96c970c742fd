"""Waiting for a started guest to report a usable IPv4 address (not only link-local)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from dynvm.core.ports import LinkLocalOnly, WaitTimeout, XenError
from dynvm.xen import records as R
from dynvm.xen.pool_access import PoolAccess
from dynvm.xen.session import SessionPool
from dynvm.xen.shared_inventory import AnyInventory
from dynvm.xen.tasks import Cancelled

log = logging.getLogger(__name__)

LINK_LOCAL_SETTLE = 90.0  # seconds a guest may hold only 169.254.x.y before we give up


class GuestWaiter(PoolAccess):
    """Waits on the inventory's event feed, reading a VM afresh when the feed stalls.

    Its deadline and the link-local settle time run on the inventory's clock, so a
    test that hands in a clock of its own ends a wait when it moves that clock.
    """

    def __init__(self, sessions: SessionPool, inventory: AnyInventory,
                 link_local_settle: float = LINK_LOCAL_SETTLE) -> None:
        super().__init__(sessions, inventory)
        self.link_local_settle = link_local_settle

    def wait_ready(self, ref: str, vm_uuid: str, *, windows: bool, timeout: float,
                   cancel: threading.Event | None = None) -> str:
        """The first usable IPv4 address of VM `ref` (known to the caller as `vm_uuid`)."""
        inv = self.inventory
        now = inv.clock.monotonic
        if not inv.has("vm", ref):
            inv.refresh_vm(ref)
        deadline = now() + timeout
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
                    link_local["since"] = now()
                elif now() - link_local["since"] >= self.link_local_settle:
                    return ("link-local", v4[0])
            else:
                link_local["since"] = None
            return None

        stale_after = 2 * inv.event_timeout + self.sessions.host.call_timeout
        while True:
            left = deadline - now()
            outcome = inv.wait_for(check, max(min(left, 5.0), 0.0), cancel)
            if outcome is not None:
                break
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"waiting for {vm_uuid}")
            if now() >= deadline:
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
