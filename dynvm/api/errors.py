"""How core errors become HTTP answers: the status code and each API's wording.

The core raises errors that carry data (what was asked, what is available,
which hosts were unreachable); the status codes and the legacy API's exact
sentences are decided here only.
"""

from __future__ import annotations

from dynvm.core.errors import (
    AllOrNoneFailed,
    BadRequest,
    Conflict,
    DynvmError,
    Forbidden,
    HostNotConfigured,
    NameInUse,
    NoCapacity,
    NotFound,
    ProvisionFailed,
    QuotaExceeded,
    ServiceStopping,
    StoreDown,
    Unprocessable,
)

STATUS: dict[type[DynvmError], int] = {
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Unprocessable: 422,
    Conflict: 409,
    HostNotConfigured: 409,
    NameInUse: 409,
    QuotaExceeded: 429,
    AllOrNoneFailed: 499,  # the seed's code for an all-or-none request that failed
    ProvisionFailed: 502,
    NoCapacity: 503,
    StoreDown: 503,
    ServiceStopping: 503,
}

NO_CAPACITY = "No capacity is available!"


def status_of(exc: DynvmError) -> int:
    """The status code of a core error (errors of the API layer carry their own)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return int(getattr(exc, "status", 500))


def detail_of(exc: DynvmError) -> str:
    """The error in words, without the legacy `Error:` prefix."""
    message = exc.message.strip().removeprefix("Error:").strip()
    if isinstance(exc, NoCapacity) and not message.startswith(NO_CAPACITY):
        message = f"{NO_CAPACITY} {message}".strip()
    return message
