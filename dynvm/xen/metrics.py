"""XenAPI call failures: counted by XAPI error code for /metrics, and each one logged once
with the call and the host it came from (a count with no log line explains nothing)."""

from __future__ import annotations

import logging
import re

from prometheus_client import Counter

XENAPI_ERRORS = Counter("dynvm_xenapi_errors_total",
                        "XenAPI calls that failed, by XAPI error code", ["code"])


log = logging.getLogger("dynvm.xenapi")


def count_error(code: str, where: str, params: list[str] | None = None) -> None:
    """Count one failed call (the label bounded to XAPI's code alphabet) and log it once:
    `where` names the call and the host ("VM.clone on https://10.1.2.3")."""
    label = re.sub(r"[^A-Z0-9_]", "", code.upper())[:64] or "UNKNOWN"
    XENAPI_ERRORS.labels(label).inc()
    detail = f" {params}"[:300] if params else ""
    log.warning("XenAPI %s failed: %s%s", where, label, detail)
