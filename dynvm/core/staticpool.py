"""`pools=`: the seed's static server pools, fed with dynamic VMs.

A getservers request with `pools=a,b` also puts one document per new VM,
keyed by its IP, into the static pools' bucket (the `static.*` keys), where
the static server pool manager hands it out to test jobs. It is removed when
the VM is released. As for the seed, a failure to write or remove one is
logged and never fails the request or the release.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from dynvm.core.answers import ServerResult
from dynvm.core.context import Context
from dynvm.core.lifecycle import HistoryState
from dynvm.core.store import Lease

log = logging.getLogger("dynvm.staticpool")

STATIC_DOC_VERSION = 12  # the seed wrote `ver` as a number in these documents
_SEED_OS_NAMES = {"centos7": "centos"}  # the static pools know CentOS 7 as "centos"


class StaticPools(Protocol):
    """The static pools' documents, keyed by VM IP."""

    def add(self, ip: str, doc: dict[str, Any]) -> None: ...

    def get(self, ip: str) -> dict[str, Any] | None: ...

    def remove(self, ip: str, vm_uuid: str) -> bool:
        """Remove the document of `ip` if it is the one of VM `vm_uuid`."""

    def close(self) -> None: ...


def static_doc(history: dict[str, Any], pools: tuple[str, ...], vm_uuid: str) -> dict[str, Any]:
    """The seed's static-pool document for a new VM, from its history document."""
    os_key = str(history.get("os", ""))
    return {
        "ipaddr": history.get("ipaddr", ""),
        "origin": history.get("origin", ""),
        "os": _SEED_OS_NAMES.get(os_key, os_key),
        "state": HistoryState.AVAILABLE.value,  # the seed's word in these documents too
        "poolId": list(pools),
        "prevUser": "",
        "username": "",
        "ver": STATIC_DOC_VERSION,
        "memory": history.get("memory", ""),
        "os_version": history.get("os_version", ""),
        # dynvm's additions: which VM the document stands for
        "name": history.get("name", ""),
        "vm_uuid": vm_uuid,
    }


def publish(ctx: Context, servers: list[ServerResult], pools: tuple[str, ...]) -> int:
    """Add every handed-out VM to the static pools; returns how many were added."""
    target = ctx.static_pools
    if not pools or target is None:
        return 0
    added = 0
    for s in servers:
        try:
            doc = ctx.store.history.get(s.vm_uuid) or {"ipaddr": s.ip, "name": s.name}
            # Recorded first, so the release always looks for the document.
            ctx.store.history.update(s.vm_uuid, {"static_pools": list(pools)})
            target.add(s.ip, static_doc(doc, pools, s.vm_uuid))
            added += 1
        except Exception as exc:
            log.error("could not add %s (%s) to the static pools %s: %s",
                      s.name, s.ip, ",".join(pools), exc)
    return added


def withdraw(ctx: Context, lease: Lease, ip: str | None) -> None:
    """The VM is gone: remove its static-pool document, if it has one."""
    target = ctx.static_pools
    if target is None or not ip:
        return
    try:
        if target.remove(ip, lease.vm_uuid):
            log.info("%s (%s) removed from the static pools", lease.name, ip)
    except Exception as exc:
        log.error("could not remove %s (%s) from the static pools: %s", lease.name, ip, exc)
