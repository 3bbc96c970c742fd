"""What each subject of the pool client (tasks, building, waiting, removal) works with."""

from __future__ import annotations

import logging
from typing import Any

from dynvm.core.ports import XenError
from dynvm.xen import records as R
from dynvm.xen.session import SessionPool
from dynvm.xen.shared_inventory import AnyInventory

log = logging.getLogger(__name__)


class PoolAccess:
    """One pool's sessions and inventory; subclasses add one subject each."""

    def __init__(self, sessions: SessionPool, inventory: AnyInventory) -> None:
        self.sessions = sessions
        self.inventory = inventory
        self.host_ref = sessions.host.ref

    def call(self, method_path: str, *args: Any) -> Any:
        return self.sessions.call(method_path, *args)

    def _quietly(self, method_path: str, *args: Any) -> None:
        try:
            self.call(method_path, *args)
        except XenError as exc:
            log.debug("xenhost%d: %s failed: %s", self.host_ref, method_path, exc)

    def _host_ref(self, host_uuid: str) -> str:
        ref = self.inventory.ref_by_uuid("host", host_uuid)
        return ref if ref is not None else self.call("host.get_by_uuid", host_uuid)

    def _host_pifs(self, host_ref: str) -> list[dict[str, Any]]:
        pifs = self.inventory.host_pifs(host_ref)
        if not pifs:  # not in the copy (yet): ask
            pifs = [self.call("PIF.get_record", p) for p in self.call("host.get_PIFs", host_ref)]
        return pifs

    def _network(self, host_ref: str, device: str | None) -> str | None:
        """The network of the host's PIF `device` (untagged first), else its management
        network (None when it has none)."""
        pifs = self._host_pifs(host_ref)
        if device is not None:
            matching = sorted((p for p in pifs if p.get("device") == device),
                              key=lambda p: R.as_int(p.get("VLAN"), -1) != -1)
            if not matching:
                raise XenError("PIF_NOT_FOUND", [device, host_ref],
                               f"no PIF {device} on host {host_ref}")
            return str(matching[0]["network"])
        mgmt = [p for p in pifs if p.get("management")]
        return str(mgmt[0]["network"]) if mgmt else None

    def _sr_ref(self, host_ref: str, name: str) -> str:
        uuid = self._sr_uuid(host_ref, name)
        ref = self.inventory.ref_by_uuid("sr", uuid)
        return ref if ref is not None else self.call("SR.get_by_uuid", uuid)

    def _sr_uuid(self, host_ref: str, name: str) -> str:
        """Uuid of the SR named `name` attached to the host (most free space wins)."""
        sr = R.srs_by_name(self.inventory.attached_srs(host_ref)).get(name)
        if sr is None:
            raise XenError("SR_NOT_FOUND", [name, host_ref],
                           f"no SR named {name!r} attached to host {host_ref}")
        return str(sr["uuid"])
