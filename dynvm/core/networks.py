"""`networkid`: checked against the PIFs the inventory knows, before any XenAPI write.

An unknown device would otherwise surface half-way through a build (after the
clone) as a failed VM and a 499; it is a bad request, answered 400.
"""

from __future__ import annotations

from collections.abc import Callable

from dynvm.config import HostConfig
from dynvm.core.errors import BadRequest
from dynvm.core.placement import views_of
from dynvm.core.ports import PoolView

Matches = Callable[[frozenset[str], str], bool]


def device_named(devices: frozenset[str], wanted: str) -> bool:
    """The seed's meaning: `networkid` is the PIF device (eth1) whose network VMs join."""
    return wanted in devices


def with_network(hosts: list[HostConfig], wanted: str, view_of: Callable[[HostConfig], PoolView],
                 matches: Matches = device_named) -> list[HostConfig]:
    """The hosts whose pool has a PIF `wanted`; BadRequest when none has.

    Unreachable pools cannot be checked and are left out (they could not
    take the VMs anyway).
    """
    views, _down = views_of(hosts, view_of)
    known: set[str] = set()
    keep: list[HostConfig] = []
    for hc, view in views:
        devices = frozenset(d for member in view.hosts for d in member.pif_devices)
        known |= devices
        if matches(devices, wanted):
            keep.append(hc)
    if not keep:
        listed = ", ".join(sorted(known)) or "none known"
        raise BadRequest(f"Error: bad parameter 'networkid': no host that could take these VMs "
                         f"has a network device '{wanted[:64]}'; known: {listed}")
    return keep
