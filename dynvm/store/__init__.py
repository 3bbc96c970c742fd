"""dynvm's durable shared state: history, leases, reservations, requests, TTL locks."""

from dynvm.core.store import (
    LEASE_ACTIVE,
    LEASE_PROVISIONING,
    LEASE_READY,
    LEASE_RELEASING,
    Conflict,
    FreeSlots,
    Lease,
    RequestRecord,
    Reservation,
    Store,
    StoreError,
    StoreUnavailable,
    live_only,
)
from dynvm.store.factory import open_backend, open_store
from dynvm.store.outbox import ResilientStore

__all__ = [
    "LEASE_ACTIVE",
    "LEASE_PROVISIONING",
    "LEASE_READY",
    "LEASE_RELEASING",
    "Conflict",
    "FreeSlots",
    "Lease",
    "RequestRecord",
    "Reservation",
    "ResilientStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "live_only",
    "open_backend",
    "open_store",
]
