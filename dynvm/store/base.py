"""Old import path of the store port, which now lives in `dynvm.core.store`."""

from dynvm.core.store import (  # noqa: F401
    LEASE_ACTIVE,
    LEASE_PROVISIONING,
    LEASE_READY,
    LEASE_RELEASING,
    Conflict,
    DocEdit,
    FreeSlots,
    Lease,
    QuotaCheck,
    RequestRecord,
    Reservation,
    Store,
    StoreError,
    StoreUnavailable,
    Token,
    live_only,
    owner_usage,
)
