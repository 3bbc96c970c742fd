"""What runs inside simulated VMs: their OS identity and DHCP leases (their
SSH servers are in `guestsshd`, what their disks hold in `guestimage`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from dataclasses import dataclass
from typing import Any

from .oscatalog import OS_CATALOG, by_template_name

GENERIC_LINUX = {"name": "Linux", "distro": "linux", "major": "0", "minor": "0",
                 "uname": "5.10.0-generic"}
GENERIC_WINDOWS = {"name": "Microsoft Windows Server|C:\\Windows|\\Device\\Harddisk0\\Partition2",
                   "distro": "windows", "major": "10", "minor": "0", "spmajor": "0",
                   "spminor": "0"}


@dataclass(frozen=True)
class GuestOs:
    windows: bool
    os_version: dict[str, str]


def guest_os(vm: dict[str, Any]) -> GuestOs:
    """The OS a VM boots: from its template's catalog key, else a guess from names."""
    oc = vm.get("other_config") or {}
    entry = OS_CATALOG.get(oc.get("dynvm_sim_os", ""))
    if entry is None:
        entry = by_template_name(oc.get("base_template_name", "")) or by_template_name(
            vm.get("name_label", ""))
    if entry is not None:
        return GuestOs(entry.windows, entry.os_version())
    names = " ".join([vm.get("name_label", ""), oc.get("base_template_name", ""),
                      vm.get("name_description", "")]).lower()
    if "win" in names:
        return GuestOs(True, dict(GENERIC_WINDOWS))
    return GuestOs(False, dict(GENERIC_LINUX))


def link_local_for(uuid: str) -> str:
    """A stable 169.254.x.y address, as Windows picks when DHCP gives nothing."""
    h = hashlib.sha1(uuid.encode()).digest()
    return f"169.254.{1 + h[0] % 254}.{1 + h[1] % 254}"


def parse_range(spec: str) -> tuple[int, int] | None:
    """`"127.1.2.10-127.1.2.250"` (or `"...10-250"`) -> inclusive int range."""
    try:
        lo_s, hi_s = (p.strip() for p in spec.split("-", 1))
        lo = int(ipaddress.IPv4Address(lo_s))
        if "." not in hi_s:
            hi_s = lo_s.rsplit(".", 1)[0] + "." + hi_s
        hi = int(ipaddress.IPv4Address(hi_s))
    except (ValueError, AttributeError):
        return None
    return (lo, hi) if lo <= hi else None


class Dhcp:
    """Leases per network, lowest free address first; one lease per VM."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, set[int]] = {}
        self.leases: dict[str, tuple[str, int]] = {}  # vm ref -> (network ref, address)

    def reserve(self, vm: str, network: str, rng: tuple[int, int], ip: str) -> None:
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return
        if rng[0] <= value <= rng[1]:
            with self._lock:
                self._used.setdefault(network, set()).add(value)
                self.leases[vm] = (network, value)

    def allocate(self, vm: str, network: str, rng: tuple[int, int]) -> str | None:
        with self._lock:
            if vm in self.leases:
                return str(ipaddress.IPv4Address(self.leases[vm][1]))
            used = self._used.setdefault(network, set())
            for value in range(rng[0], rng[1] + 1):
                if value not in used:
                    used.add(value)
                    self.leases[vm] = (network, value)
                    return str(ipaddress.IPv4Address(value))
        return None

    def release(self, vm: str) -> None:
        with self._lock:
            lease = self.leases.pop(vm, None)
            if lease is not None:
                self._used.get(lease[0], set()).discard(lease[1])
