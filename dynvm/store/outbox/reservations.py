"""Reservations through the outbox: taking room is new work (straight to the backend, refused
during an outage); giving it back after a VM is up or gone queues."""

from __future__ import annotations

import time

from dynvm.core.store import FreeSlots, QuotaCheck, Reservation, Reservations
from dynvm.store.outbox.journal import Outbox


class OutboxReservations(Reservations):
    def __init__(self, primary: Reservations, outbox: Outbox) -> None:
        self.primary = primary
        self._outbox = outbox
        outbox.handle({
            "settle_reservation": self._replay_settle,
            "drop_reservations": lambda a: self.primary.drop_request(a["request_id"]),
        })

    def _replay_settle(self, a: dict) -> None:
        until = a.get("settle_until")
        secs = 0.0 if until is None else max(0.0, until - time.time())
        self.primary.settle(a["res_id"], vm_uuid=a["vm_uuid"], settle_secs=secs)

    def reserve(self, host_key: str, wanted: list[Reservation],
                free_slots: FreeSlots, quota: QuotaCheck | None = None) -> list[Reservation]:
        return self.primary.reserve(host_key, wanted, free_slots, quota)

    def reserve_many(self, batches: list[tuple[str, list[Reservation], FreeSlots]],
                     quota: QuotaCheck | None = None) -> list[list[Reservation]]:
        return self.primary.reserve_many(batches, quota)

    def settle(self, res_id: str, *, vm_uuid: str | None = None,
               settle_secs: float = 0.0) -> None:
        until = time.time() + settle_secs if settle_secs > 0 else None
        self._outbox.write("settle_reservation", f"resv:{res_id}",
                           {"res_id": res_id, "vm_uuid": vm_uuid, "settle_until": until})

    def drop_request(self, request_id: str) -> int:
        queued, result = self._outbox.write("drop_reservations", f"resv-request:{request_id}",
                                            {"request_id": request_id})
        if not queued:
            return int(result)
        # Not known until replay; report none dropped rather than guess.
        return 0

    def live(self, host_key: str | None = None) -> list[Reservation]:
        queued = self._outbox.queued_view()
        res = self.primary.live(host_key)
        if queued is None:
            return res
        now = time.time()
        for op, _, a in queued:
            if op == "drop_reservations":
                res = [r for r in res if r.request_id != a["request_id"]]
            elif op == "settle_reservation":
                for r in res:
                    if r.id == a["res_id"]:
                        r.settle_until = a["settle_until"] if a["settle_until"] else now
                        r.vm_uuid = a["vm_uuid"] or r.vm_uuid
        return [r for r in res if r.live(now)]
