"""Keep releases and expiries working while the shared store is down.

`ResilientStore` wraps the real backend. New work (`reservations.reserve`,
`requests.put`, `leases.put`) and every read go straight to it, so an outage
surfaces as `StoreUnavailable` and the API refuses new VMs with 503 before
touching a host. The writes that release and expiry paths make after
destroying a VM cannot be refused (the VM is already gone), so when the
backend is down they are appended to a local SQLite outbox instead (`journal`)
and replayed in order when the backend answers again; reads show them already.

Only the subjects with such writes are wrapped (`WRAPPERS`, a module each);
every other subject (tokens, locks, documents, owner keys) is the backend's own
repository: new work or an operator's, which must see a refusal, never a
queue.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from dynvm.core.store import Store, subjects
from dynvm.store.outbox.history import OutboxHistory
from dynvm.store.outbox.journal import Outbox
from dynvm.store.outbox.leases import OutboxLeases
from dynvm.store.outbox.requests import OutboxRequests
from dynvm.store.outbox.reservations import OutboxReservations

# Subject -> its wrapper, built from the backend's repository and the one outbox.
WRAPPERS: dict[str, Callable[[Any, Outbox], object]] = {
    "history": OutboxHistory,
    "leases": OutboxLeases,
    "reservations": OutboxReservations,
    "requests": OutboxRequests,
}


class ResilientStore(Store):
    """A store that queues release/expiry writes locally while `primary` is unavailable."""

    def __init__(self, primary: Store, outbox_path: str) -> None:
        self.primary = primary
        self.outbox = Outbox(outbox_path)
        super().__init__({
            name: (WRAPPERS[name](getattr(primary, name), self.outbox) if name in WRAPPERS
                   else getattr(primary, name))
            for name in subjects()})

    @property
    def direct(self) -> Store:
        return self.primary

    def pending(self) -> int:
        return self.outbox.pending()

    def replay(self) -> int:
        return self.outbox.replay()

    def generation(self) -> Hashable | None:
        # While writes wait in the outbox every read must replay and merge them.
        quiet = self.outbox.quiet_generation()
        primary = self.primary.generation()
        return None if quiet is None or primary is None else (quiet, primary)

    def ping(self) -> None:
        self.primary.ping()
        self.outbox.try_replay()

    def ping_write(self) -> None:
        self.primary.ping_write()

    def close(self) -> None:
        self.primary.close()
        self.outbox.close()


__all__ = ["WRAPPERS", "ResilientStore"]
