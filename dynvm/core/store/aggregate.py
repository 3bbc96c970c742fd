"""The store itself: one repository per subject, all on one backend."""

from __future__ import annotations

import functools
import typing
from collections.abc import Hashable, Mapping

from dynvm.core.store.documents import Documents
from dynvm.core.store.fleet import FleetEntries
from dynvm.core.store.history import History
from dynvm.core.store.leases import Leases
from dynvm.core.store.locks import Locks
from dynvm.core.store.owner_keys import OwnerKeys
from dynvm.core.store.queue import Queue
from dynvm.core.store.requests import Requests
from dynvm.core.store.reservations import Reservations
from dynvm.core.store.tokens import Tokens


class Store:
    """dynvm's state of record. Every repository is safe across processes.

    The subjects are the annotations below; a backend hands one repository
    per subject to `__init__`, which refuses a missing or foreign one.
    """

    history: History
    leases: Leases
    reservations: Reservations
    requests: Requests
    queue: Queue
    tokens: Tokens
    locks: Locks
    documents: Documents
    fleet: FleetEntries
    owner_keys: OwnerKeys

    def __init__(self, repositories: Mapping[str, object]) -> None:
        declared = subjects()
        if set(repositories) != set(declared):
            raise TypeError(f"a store needs exactly the repositories {sorted(declared)}, "
                            f"got {sorted(repositories)}")
        for name, port in declared.items():
            repo = repositories[name]
            if not isinstance(repo, port):
                raise TypeError(f"the {name} repository must be a {port.__name__}, "
                                f"not {type(repo).__name__}")
            setattr(self, name, repo)

    # -- writes waiting for the backend (an outbox in front of it) -------------------
    def pending(self) -> int:
        """How many writes wait to reach the backend (0 for a bare backend)."""
        return 0

    def replay(self) -> int:
        """Push waiting writes to the backend now; returns how many were applied."""
        return 0

    @property
    def direct(self) -> Store:
        """The backend itself: writes through it are made now or refused, never queued."""
        return self

    # -- change detection -------------------------------------------------------------
    def generation(self) -> Hashable | None:
        """A token that changes whenever any process changes anything in the store,
        cheaper to read than any record; None when the backend cannot tell (a reader
        then reads the records every time).

        Compare a token only with one the same thread read: a backend may derive it
        from the thread's own connection. Read it before the records it guards, so
        a change made in between shows as a new token next time.
        """
        return None

    # -- connection -----------------------------------------------------------------
    def ping(self) -> None:
        """Raise StoreUnavailable if the backend cannot be reached."""

    def ping_write(self) -> None:
        """Raise StoreUnavailable if the backend cannot be written (locked, full, read-only).

        Backends override it with a real, tiny write; by default a read is all we know.
        """
        self.ping()

    def close(self) -> None:
        """Release connections."""


@functools.cache
def subjects() -> dict[str, type]:
    """Subject name -> the repository port it must implement, in declaration order."""
    return typing.get_type_hints(Store)
