"""Per-pool VM state that xapi keeps outside its database: memory each
running VM holds on its host, boot generations, DHCP leases and open guest
ports, what the guests' disks hold (their images) and the bytes written into
VDIs. The addresses a loaded or generated farm's guests already hold are
reserved when it is built, and their guest ports opened when it starts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .db import NULL, Database
from .guestimage import GuestImage
from .guests import Dhcp, parse_range
from .guestsshd import GuestPorts

if TYPE_CHECKING:
    from .farm import SimPool


class VmRuntime:
    """Per-pool state that is not in the database: memory held, boots, leases."""

    def __init__(self, pool: SimPool) -> None:
        self.pool = pool
        self.lock = threading.Lock()
        self.consumed: dict[str, tuple[str, int]] = {}  # vm -> (host, bytes)
        self.boots: dict[str, int] = {}  # vm -> boot generation (stale timers are ignored)
        self.dhcp = Dhcp()
        self.ips: dict[str, str] = {}  # vm -> address with an open guest port
        self.migrations: dict[str, int] = {}  # host -> live migrations from or to it
        self.storage_migrations: dict[str, int] = {}  # host -> cross-pool moves from it
        self.images: dict[str, GuestImage] = {}  # vm -> what its guest's disk holds
        self.vdi_data: dict[str, bytes] = {}  # vdi -> bytes written by an import
        self._domid = 1
        self._reserve_existing()

    def next_domid(self) -> int:
        with self.lock:
            self._domid += 1
            return self._domid

    def bump_boot(self, vm: str) -> int:
        with self.lock:
            n = self.boots.get(vm, 0) + 1
            self.boots[vm] = n
            return n

    def image(self, vm: str) -> GuestImage:
        """The guest's image (made blank on first use); its agent reports a new hostname."""
        with self.lock:
            image = self.images.get(vm)
            if image is None:
                image = self.images[vm] = GuestImage()
                image.on_hostname = lambda name: report_hostname(self.pool.db, vm, name)
            return image

    def _existing_addresses(self) -> Iterator[tuple[str, str]]:
        """(VM, address) of the running guests a loaded or generated farm holds."""
        db = self.pool.db
        for vm, rec in db.tables["VM"].items():
            if rec.get("power_state") != "Running" or rec.get("is_control_domain"):
                continue
            gm = db.find("VM_guest_metrics", rec.get("guest_metrics", NULL))
            ip = ((gm or {}).get("networks") or {}).get("0/ip")
            if ip:
                yield vm, ip

    def _reserve_existing(self) -> None:
        """Addresses already held by running guests of a loaded/generated farm."""
        db = self.pool.db
        for vm, ip in self._existing_addresses():
            vif = first_vif(db, vm)
            if vif is None:
                continue
            net = db.tables["VIF"][vif]["network"]
            rng = dhcp_range(db, net)
            if rng:
                self.dhcp.reserve(vm, net, rng, ip)

    def open_existing_ports(self, ports: GuestPorts) -> None:
        """Answer on the addresses running guests already had (link-local aside)."""
        for vm, ip in self._existing_addresses():
            if not ip.startswith("169.254."):
                ports.open(ip, self.image(vm))
                self.ips[vm] = ip


def runtime(pool: SimPool) -> VmRuntime:
    """The pool's runtime state, made when its farm is built."""
    assert pool.runtime is not None
    return pool.runtime


def first_vif(db: Database, vm: str) -> str | None:
    """The VM's VIF with the lowest device number: the one its guest's address is on."""
    vifs = [v for v in db.tables["VM"][vm].get("VIFs", []) if v in db.tables["VIF"]]
    if not vifs:
        return None

    def order(v: str) -> tuple[int, str]:
        dev = db.tables["VIF"][v].get("device", "")
        return (int(dev) if dev.isdigit() else 1 << 30, dev)

    return min(vifs, key=order)


def dhcp_range(db: Database, network: str) -> tuple[int, int] | None:
    """The address range the simulator's DHCP hands out on `network`, if it serves one."""
    net = db.find("network", network)
    if net is None:
        return None
    spec = (net.get("other_config") or {}).get("dynvm_sim_dhcp", "")
    return parse_range(spec) if spec else None


def report_hostname(db: Database, vm: str, name: str) -> None:
    """What the guest agent writes (`data/host_name`): the guest metrics' netbios_name."""
    with db.lock:
        rec = db.find("VM", vm)
        gm = (rec or {}).get("guest_metrics", NULL)
        if db.find("VM_guest_metrics", gm) is not None:
            db.modify("VM_guest_metrics", gm, {"netbios_name": {"host_name": name}})
