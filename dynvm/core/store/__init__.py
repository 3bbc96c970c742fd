"""The store contract: dynvm's state of record, shared by every worker and instance.

Everything another process must agree on lives behind this port, one
repository per subject: `store.history`, `store.leases`, `store.reservations`,
`store.requests`, `store.tokens`, `store.locks`, `store.documents`,
`store.fleet`, `store.owner_keys`. Backends
(`dynvm.store.sqlite`, `dynvm.store.couchbase`) implement each repository in a
module of its own over one shared connection, so an operation that must be
atomic across subjects (a quota read from leases while reserving, a history
mark changed with the document) still runs in one transaction or CAS step of
its backend. The outbox (`dynvm.store.outbox`) wraps only the repositories
whose writes it queues during an outage; the others reach the backend directly.

Adding a subject (say `queue`):

1. `dynvm/core/store/queue.py`: the port, an ABC whose docstrings say what is
   atomic; export it below.
2. One line in `Store` (`aggregate.py`): `queue: Queue`.
3. Per backend, one module (`dynvm/store/sqlite/queue.py`,
   `dynvm/store/couchbase/queue.py`) and one line in that backend's
   `REPOSITORIES` table. A SQLite repository declares its tables in `SCHEMA`;
   a Couchbase one documents its keys in its docstring.
4. Only if its writes must survive an outage: an outbox module with the
   wrapper and its replayed operations, and one line in the outbox's
   `WRAPPERS`. Otherwise the outbox passes the subject through unchanged.
5. Its contract tests in `tests/store/test_<subject>.py`, on the `store`
   fixture, which runs them on every backend.
"""

from __future__ import annotations

from dynvm.core.records import (
    LEASE_ACTIVE,
    LEASE_PROVISIONING,
    LEASE_READY,
    LEASE_RELEASING,
    DocEdit,
    FleetEntry,
    FreeSlots,
    Lease,
    QueueEntry,
    QuotaCheck,
    RequestRecord,
    Reservation,
    Token,
    live_only,
    owner_usage,
)
from dynvm.core.store.aggregate import Store, subjects
from dynvm.core.store.documents import Documents
from dynvm.core.store.errors import Conflict, StoreError, StoreUnavailable
from dynvm.core.store.fleet import FleetEntries
from dynvm.core.store.history import History
from dynvm.core.store.leases import Leases
from dynvm.core.store.locks import Locks
from dynvm.core.store.owner_keys import OwnerKey, OwnerKeys, TooManyKeys
from dynvm.core.store.queue import Queue
from dynvm.core.store.requests import Requests
from dynvm.core.store.reservations import Reservations, plan_reservations
from dynvm.core.store.tokens import Tokens

__all__ = [
    "LEASE_ACTIVE",
    "LEASE_PROVISIONING",
    "LEASE_READY",
    "LEASE_RELEASING",
    "Conflict",
    "DocEdit",
    "Documents",
    "FleetEntries",
    "FleetEntry",
    "FreeSlots",
    "History",
    "Lease",
    "Leases",
    "Locks",
    "OwnerKey",
    "OwnerKeys",
    "Queue",
    "QueueEntry",
    "QuotaCheck",
    "RequestRecord",
    "Requests",
    "Reservation",
    "Reservations",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Token",
    "TooManyKeys",
    "Tokens",
    "live_only",
    "owner_usage",
    "plan_reservations",
    "subjects",
]
