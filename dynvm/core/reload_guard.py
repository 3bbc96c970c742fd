"""What a configuration reload may not do silently: drop hosts that still hold leases.

A file cut short (at a section boundary it still validates) loses its last
hosts; taken as it is, their VMs would be neither released nor expired. The
watcher refuses such a file until the operator confirms it
(`dynvm check-config --accept-removal FILE`).
"""

from __future__ import annotations

from collections.abc import Callable

from dynvm.config import Config
from dynvm.core.store import Store, StoreError


def lease_guard(store: Store) -> Callable[[Config, Config], str | None]:
    """guard(old, new): why `new` must not be taken without confirmation, or None."""

    def guard(old: Config, new: Config) -> str | None:
        removed = set(old.hosts) - set(new.hosts)
        if not removed:
            return None
        names = ", ".join(f"xenhost{ref}" for ref in sorted(removed))
        try:
            held = sorted({lease.host_ref for lease in store.leases.find()} & removed)
        except StoreError as exc:
            return f"it drops {names}, and the store cannot tell whether they hold leases ({exc})"
        if held:
            return ("it drops " + ", ".join(f"xenhost{ref}" for ref in held)
                    + ", which still hold leases")
        return None

    return guard
