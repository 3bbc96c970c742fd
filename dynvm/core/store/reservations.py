"""The reservation repository: capacity held on member hosts for VMs being built."""

from __future__ import annotations

import abc

from dynvm.core.records import FreeSlots, QuotaCheck, Reservation


def plan_reservations(items: list[Reservation], wanted: list[Reservation], free_slots: FreeSlots,
                      room_left: int | None, now: float
                      ) -> tuple[list[Reservation], list[Reservation], list[Reservation]]:
    """The reserve rule, applied by every backend inside its atomic step on one host.

    From the host's stored `items`, returns (live, already, taken): the live
    reservations, those of `wanted` the caller already holds (a retry gets
    what it has), and those it takes now: as many as `free_slots(live)` and
    the owner's `room_left` (None: no quota) allow.
    """
    live = [r for r in items if r.live(now)]
    held = {r.id for r in live}
    already = [w for w in wanted if w.id in held]
    fresh = [w for w in wanted if w.id not in held]
    room = max(0, int(free_slots(live)))
    if room_left is not None:
        room = min(room, max(room_left, 0))
    return live, already, fresh[:room]


class Reservations(abc.ABC):
    """Reservations are taken atomically before any XenAPI call, so two requests at the
    same moment can never both take the last slot of a host or of an owner's quota."""

    @abc.abstractmethod
    def reserve(self, host_key: str, wanted: list[Reservation],
                free_slots: FreeSlots, quota: QuotaCheck | None = None) -> list[Reservation]:
        """Atomically take as many of `wanted` as fit on `host_key`.

        Within one atomic step: read the live reservations of the host, call
        `free_slots(live)` to learn how many more fit, store the first
        min(len(wanted), that) of `wanted`, and return those. Two processes
        calling this at once can never both take the last slot.

        With `quota`, the owner's usage (`owner_usage`, over its reservations
        and its leases) is read in the same atomic step and at most
        `quota.room(...)` are taken, so two requests of one owner can never
        both take the last unit of its quota.
        """

    def reserve_many(self, batches: list[tuple[str, list[Reservation], FreeSlots]],
                     quota: QuotaCheck | None = None) -> list[list[Reservation]]:
        """`reserve` on several hosts, answered per host in order.

        A backend may run them as one atomic step (one commit instead of one
        per host: a 10-VM request spread over 8 hosts is then answered sooner);
        by default they run one after the other, each atomic on its own.
        """
        return [self.reserve(hk, wanted, free, quota) for hk, wanted, free in batches]

    @abc.abstractmethod
    def settle(self, res_id: str, *, vm_uuid: str | None = None,
               settle_secs: float = 0.0) -> None:
        """The VM is up (or failed): keep counting it for `settle_secs`, then drop it."""

    @abc.abstractmethod
    def drop_request(self, request_id: str) -> int:
        """Remove every reservation of a request; returns how many."""

    @abc.abstractmethod
    def live(self, host_key: str | None = None) -> list[Reservation]:
        """Live reservations, of one host or of all."""
