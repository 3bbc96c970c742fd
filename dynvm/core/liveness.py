"""Whether a dynvm process is alive: each keeps a heartbeat lock in the store.

A process renews `instance:<id>` well within its TTL (`dynvm.core.background`); once
it lapses, what the process held (requests it ran, VMs it was building) is judged
abandoned by reconciliation, and a name it was building is no longer "being built".
"""

from __future__ import annotations

from dynvm.core.context import Context

HEARTBEAT_PREFIX = "instance:"


def instance_alive(ctx: Context, instance: str) -> bool:
    return (instance == ctx.instance
            or ctx.store.locks.holder(HEARTBEAT_PREFIX + instance) is not None)
