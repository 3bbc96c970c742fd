"""The one way room is taken for a request: ready warm VMs first, then room to build the rest.

Every way to ask for VMs (a legacy `getservers`, a v1 request, the CLI through
v1, a queued request being dispatched) goes through `take` to hold what it
needs and through `hand_out` to turn it into VMs, so a warm pool serves them
all alike. `take` changes only the store (warm leases claimed, reservations
made, atomically each, with the owner's quota); nothing reaches a host until
the whole request is held, so a request that cannot be held gives everything
back untouched. What the owner asked its VMs to be given (`Want.setup`: keys,
hostname, cloud-config) rides along: warm VMs are claimed only when they can
take it (`guestsetup.warm_ok`), and get it over SSH as they are handed out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from dynvm.config import Config, HostConfig, OsSpec
from dynvm.core import guestsetup, quota, warmpool
from dynvm.core.capacity import GIB
from dynvm.core.context import Context
from dynvm.core.errors import NoCapacity
from dynvm.core.placement import Slot, reserve
from dynvm.core.provisioning import Built, release_slot
from dynvm.core.store import QuotaCheck

log = logging.getLogger("dynvm.obtain")


@dataclass(frozen=True)
class Want:
    """What a request needs, whoever asked for it."""

    os: str
    names: list[str]
    owner: str  # whose VMs they become (the token's owner, else the legacy name)
    request_id: str
    expires: float
    labels: list[str]
    hosts: list[HostConfig]  # where it may run
    spec: OsSpec  # the OS's sizes with the request's own
    vcpus: int | None = None  # asked explicitly (None: each host's own <os>.vcpus)
    memory_gib: float | None = None  # asked explicitly, whole GiB
    quota_owner: str | None = None  # a token's owner, whose quota applies
    warm: bool = True  # ready VMs fit it (no size or network of its own)
    check_ssh: bool = False
    ttl: float = 0.0  # how long a reservation outlives a builder that died
    # The owner's keys, hostname and cloud-config (never logged: the repr leaves them out),
    # and each VM's hostname when the request named one.
    setup: guestsetup.GuestSetup | None = field(default=None, repr=False)
    hostnames: dict[str, str] = field(default_factory=dict, repr=False)
    no_host: str = ""  # why `hosts` is empty, in words (placement.why_no_host), for a refusal

    @property
    def count(self) -> int:
        return len(self.names)


@dataclass
class Held:
    """What `take` holds for a request: claimed warm VMs, and reserved room for the rest."""

    warm: list[warmpool.Claimed] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)

    def cold_names(self, want: Want) -> list[str]:
        """The names to build, in order, one per slot."""
        return want.names[len(self.warm):]


def quota_check(cfg: Config, want: Want) -> QuotaCheck | None:
    if want.quota_owner is None:
        return None
    return quota.check_for(cfg, want.quota_owner, want.spec.vcpus, want.spec.memory_gib)


def take(ctx: Context, cfg: Config, want: Want) -> Held:
    """Hold everything the request needs, or nothing.

    Raises NoCapacity (how many fit now, warm VMs included) or QuotaExceeded
    having given everything back. StoreUnavailable passes through, everything
    held so far given back.
    """
    check = quota_check(cfg, want)
    held = Held()
    try:
        if want.warm and guestsetup.warm_ok(cfg, want.os, want.setup):
            held.warm = warmpool.claim(ctx, want.hosts, want.os, want.names, owner=want.owner,
                                       request_id=want.request_id, expires=want.expires,
                                       labels=want.labels, quota=check)
        left = want.count - len(held.warm)
        if left:
            slots, avail, down = reserve(
                ctx.store, cfg, want.hosts, want.spec, left, want.request_id, ctx.view,
                vcpus=want.vcpus, memory_gib=want.memory_gib, ttl=want.ttl, quota=check)
            held.slots = slots
            if len(slots) < left:
                give_back(ctx, held)  # before the usage is read for the refusal
                over = quota.exceeded(cfg, check.owner, quota.usage(ctx.store, cfg, check.owner),
                                      left, want.spec.vcpus, want.spec.memory_gib) \
                    if check else None
                if over:
                    raise over
                raise NoCapacity(asked=want.count, os=want.os,
                                 available=avail + want.count - left, unreachable=down,
                                 why=want.no_host)
    except BaseException:
        give_back(ctx, held)
        raise
    return held


def give_back(ctx: Context, held: Held) -> None:
    """Everything `take` held, back where it was: warm VMs to their pool, room freed."""
    warmpool.unclaim(ctx, held.warm)
    for s in held.slots:
        release_slot(ctx, s)
    held.warm, held.slots = [], []


def hand_out(ctx: Context, cfg: Config, want: Want, held: Held
             ) -> tuple[list[Built], list[tuple[str, Slot | None]]]:
    """Hand out the claimed warm VMs; a name whose VM could not be handed out gets a slot
    to be built instead, when one is free (None: there is no room for it).

    Returns (VMs handed out, (name, slot) for each one to build instead).
    """
    built, lost = warmpool.hand_out(ctx, cfg, want.hosts, held.warm, owner=want.owner,
                                    request_id=want.request_id, expires=want.expires,
                                    labels=want.labels, check_ssh=want.check_ssh,
                                    setup=want.setup, hostnames=want.hostnames)
    instead: list[tuple[str, Slot | None]] = []
    if lost:
        slots, _, _ = reserve(ctx.store, cfg, want.hosts, want.spec, len(lost),
                              want.request_id, ctx.view, vcpus=want.vcpus,
                              memory_gib=want.memory_gib, ttl=want.ttl,
                              quota=quota_check(cfg, want))
        instead = [(n, slots[i] if i < len(slots) else None) for i, n in enumerate(lost)]
    return built, instead


def whole_gib(mem_bytes: int | None) -> int | None:
    """Memory asked in bytes, as the whole GiB capacity counts it."""
    return None if mem_bytes is None else max(math.ceil(mem_bytes / GIB), 1)
