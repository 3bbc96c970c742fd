"""Builders shared by the store tests (and importable by spawned processes)."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from dynvm.core.store import LEASE_ACTIVE, Lease, Reservation
from dynvm.store.sqlite import SqliteStore


def make_lease(name: str = "job1", *, state: str = LEASE_ACTIVE, os: str = "centos",
               expires_in: float = 3600.0, vm_uuid: str | None = None) -> Lease:
    now = time.time()
    return Lease(vm_uuid=vm_uuid or str(uuid.uuid4()), name=name, owner=name.rstrip("0123456789"),
                 host_ref=1, host_uuid="host-1", vm_ref="OpaqueRef:vm", os=os,
                 request_id="req-1", created=now, expires=now + expires_in, state=state,
                 ip="10.0.0.5", labels=["fast"], extra={"template": "CentOS 7"})


def make_resv(host_key: str = "1/host-a", *, request_id: str = "req-1",
              expires_in: float = 600.0, rid: str | None = None) -> Reservation:
    now = time.time()
    return Reservation(id=rid or uuid.uuid4().hex, host_key=host_key, request_id=request_id,
                       os="centos", vcpus=8, memory_gib=4, disk_gib=35, created=now,
                       expires=now + expires_in)


def capped(slots: int):
    """A free_slots callback for a host that fits `slots` VMs in total."""
    return lambda live: slots - len(live)


def reserve_in_process(path: str, host_key: str, tries: int, slots: int,
                       start: Any, results: Any) -> None:
    """Run in a child process: try `tries` single-slot reservations; report how many held.

    All processes wait on `start` so they really race. The free-slot callback
    dawdles a little, widening the window between reading the live
    reservations and writing the new ones: a non-atomic reserve would
    over-book here.
    """
    store = SqliteStore(path)
    store.ping()
    start.wait()

    def slow_capped(live: list[Reservation]) -> int:
        time.sleep(0.002)
        return slots - len(live)

    got = 0
    for i in range(tries):
        taken = store.reservations.reserve(host_key, [make_resv(host_key, request_id=f"{os.getpid()}-{i}")],
                                           slow_capped)
        got += len(taken)
    store.close()
    results.put((os.getpid(), got))
