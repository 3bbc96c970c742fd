"""XenAPI call failures by XAPI error code, for /metrics."""

from __future__ import annotations

import re

from prometheus_client import Counter

XENAPI_ERRORS = Counter("dynvm_xenapi_errors_total",
                        "XenAPI calls that failed, by XAPI error code", ["code"])


def count_error(code: str) -> None:
    """Count one failed call; the label is bounded to XAPI's code alphabet."""
    XENAPI_ERRORS.labels(re.sub(r"[^A-Z0-9_]", "", code.upper())[:64] or "UNKNOWN").inc()
