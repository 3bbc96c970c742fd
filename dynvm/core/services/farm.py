"""The farm as the v1 API shows it: the configured hosts, and what fits now per label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynvm.core import getservers
from dynvm.core.services.base import Runtime, Subject
from dynvm.core.services.legacy import LegacyServers


@dataclass(frozen=True)
class Offer:
    """What the configuration in force lets a caller ask for."""

    max_lease_minutes: int  # vm.expiry.minutes
    os_keys: tuple[str, ...]  # served somewhere, sorted
    host_refs: tuple[int, ...]  # configured [xenhostN] numbers, sorted


class Farm(Subject):
    """`/api/v1/hosts` and `/api/v1/capacity`."""

    def __init__(self, rt: Runtime, legacy: LegacyServers) -> None:
        super().__init__(rt)
        self._legacy = legacy  # counts capacity exactly as /getavailablecount does

    def offer(self) -> Offer:
        """The longest lease, the OS keys served and the host numbers, as configured now."""
        cfg = self.rt.config()
        return Offer(cfg.expiry_minutes_max, tuple(sorted(getservers.served_os(cfg))),
                     tuple(sorted(cfg.hosts)))

    def hosts(self) -> list[dict[str, Any]]:
        """The configured hosts: number, URL, labels, OS keys, drain (the configuration's),
        whether the pool answers, its member hosts and VMs (0 when it does not)."""
        cfg = self.rt.touch()
        rows = []
        for h in cfg.hosts.values():
            try:
                view = self.ctx.view(h)
                reachable, members, nvms = True, len(view.hosts), len(view.vms)
            except Exception:  # unreachable hosts are listed, not fatal
                reachable, members, nvms = False, 0, 0
            rows.append({"ref": h.ref, "url": h.url, "labels": sorted(h.labels),
                         "os": sorted(h.os), "drain": h.drain, "reachable": reachable,
                         "members": members, "vms": nvms})
        return rows

    def capacity(self) -> dict[str, dict[str, int]]:
        """VMs that fit now, for every served OS (sorted), per host label and `default`."""
        self.rt.touch()
        return {os: {r["label"]: r["count"] for r in self._legacy.available_by_label(os)}
                for os in sorted(getservers.served_os(self.rt.config()))}
