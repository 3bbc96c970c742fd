"""Choosing member hosts for a request and reserving their capacity in the store."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dynvm.config import Config, HostConfig, OsSpec
from dynvm.core.capacity import host_key, slots_on
from dynvm.core.maintenance.state import is_blocked, placement_blocked
from dynvm.core.ports import HostUnreachable, HostView, PoolView, XenError
from dynvm.core.store import FreeSlots, QuotaCheck, Reservation, Store

log = logging.getLogger("dynvm.placement")

LOGGED_HOSTS = 16  # member hosts named when a request is refused for room
SETTLE_SECS = 30.0  # keep counting a finished reservation until every worker's view shows the VM


def eligible_hosts(cfg: Config, os_key: str | None, labels: frozenset[str],
                   ignore_labels: bool, xhostref: int | None = None) -> list[HostConfig]:
    """Host sections a request may use: serving the OS, matching the labels.

    Drained hosts take no new VMs (`os_key` given) but are still shown.

    Without `labels`, only unlabelled hosts take ordinary work (labelled hosts
    are kept for the jobs that ask for them); `ignore_labels` uses every host;
    `xhostref` names one host whatever its labels.
    """
    hosts = [h for h in sorted(cfg.hosts.values(), key=lambda h: h.ref)
             if os_key is None or (os_key in h.os and not h.drain)]
    if xhostref is not None:
        return [h for h in hosts if h.ref == xhostref]
    if ignore_labels:
        return hosts
    if labels:
        return [h for h in hosts if h.labels & labels]
    return [h for h in hosts if not h.labels]


def why_no_host(cfg: Config, os_key: str, labels: frozenset[str], ignore_labels: bool,
                xhostref: int | None = None) -> str:
    """Why `eligible_hosts` found no host at all, in words ("" when it found some), so that
    a refusal says what to change rather than only "0 available"."""
    if eligible_hosts(cfg, os_key, labels, ignore_labels, xhostref):
        return ""
    serving = [h for h in cfg.hosts.values() if os_key in h.os]
    if xhostref is not None:
        host = cfg.hosts.get(xhostref)
        if host is None:
            return f"there is no xenhost{xhostref}"
        return (f"xenhost{xhostref} is drained" if host.drain and os_key in host.os
                else f"xenhost{xhostref} has no template for {os_key}")
    if not serving:
        return f"no host has a template for {os_key}"
    if all(h.drain for h in serving):
        return f"every host serving {os_key} is drained"
    known = sorted({lbl for h in cfg.hosts.values() for lbl in h.labels})
    on_hosts = f"labels on hosts: {', '.join(known)}" if known else "no host has labels"
    if labels:
        carrying = [h for h in cfg.hosts.values() if h.labels & labels]
        wanted = ", ".join(sorted(labels))
        if not carrying:
            return f"no host carries the label {wanted} ({on_hosts})"
        return f"no host carrying the label {wanted} serves {os_key} undrained ({on_hosts})"
    return (f"every host serving {os_key} carries labels, and a request without labels uses "
            f"only unlabelled hosts ({on_hosts}; ask with labels=, or ignorelabels=true)")


@dataclass(frozen=True)
class Candidate:
    host: HostConfig
    view: PoolView
    member: HostView
    slots: int

    @property
    def key(self) -> str:
        return host_key(self.host.ref, self.member.uuid)


def views_of(hosts: Iterable[HostConfig], view_of: Callable[[HostConfig], PoolView]
             ) -> tuple[list[tuple[HostConfig, PoolView]], list[int]]:
    """Current views of the given pools; unreachable ones are named, not fatal."""
    out, down = [], []
    for h in hosts:
        try:
            out.append((h, view_of(h)))
        except (HostUnreachable, XenError) as exc:
            log.warning("xenhost%d unreachable: %s", h.ref, exc)
            down.append(h.ref)
    return out, down


def candidates(views: Iterable[tuple[HostConfig, PoolView]], os_key: str,
               reservations: list[Reservation], sizes: tuple[int, int] | None = None,
               blocked: frozenset[str] = frozenset()) -> list[Candidate]:
    """Every member host of the given pools with its free slots; `sizes` = (vcpus, GiB).

    `blocked` (see `placement_blocked`) names pools drained and member hosts
    in maintenance in the store: they get no slots.
    """
    by_host: dict[str, list[Reservation]] = {}
    for r in reservations:
        by_host.setdefault(r.host_key, []).append(r)
    out = []
    for hc, view in views:
        for member in view.hosts:
            key = host_key(hc.ref, member.uuid)
            if is_blocked(blocked, hc.ref, member.uuid):
                out.append(Candidate(hc, view, member, 0))
                continue
            live = by_host.get(key, [])
            out.append(Candidate(hc, view, member,
                                 slots_on(view, member, hc, os_key, live, sizes)))
    return out


def spread(cands: list[Candidate], count: int) -> dict[int, int]:
    """Spread `count` VMs evenly over candidates: fewest assigned first, then most room.

    Returns candidate index -> number of VMs.
    """
    left = {i: c.slots for i, c in enumerate(cands) if c.slots > 0}
    plan: dict[int, int] = {}
    for _ in range(count):
        if not left:
            break
        i = max(left, key=lambda k: (-plan.get(k, 0), left[k], -k))
        plan[i] = plan.get(i, 0) + 1
        left[i] -= 1
        if left[i] == 0:
            del left[i]
    return plan


@dataclass
class Slot:
    """One VM to build: where, and the reservation that holds its room."""

    host: HostConfig
    member_uuid: str
    member_name: str
    reservation: Reservation


def reserve(store: Store, cfg: Config, hosts: list[HostConfig], spec: OsSpec, count: int,
            request_id: str, view_of: Callable[[HostConfig], PoolView],
            vcpus: int | None, memory_gib: float | None, ttl: float,
            exclude: frozenset[str] = frozenset(),
            quota: QuotaCheck | None = None) -> tuple[list[Slot], int, list[int]]:
    """Atomically reserve room for `count` VMs, spread over the given hosts.

    Returns (slots, what was available at the last look, unreachable hosts).
    Fewer slots than `count` means the caller must give them back: there is no
    room (or, with `quota`, the owner's quota is used up). The count is the one
    seen when giving up (other requests may have taken room since an earlier
    attempt), so the refusal reports it as it is.
    Member hosts whose key is in `exclude` are not used (a retry elsewhere).
    `vcpus` / `memory_gib` None: each host's own <os>.* sizes.
    """
    def sized(hc: HostConfig) -> tuple[int, float, float]:
        """(vCPUs, memory GiB, disk GiB) of one VM on this host: the request's
        sizes where given (None: not given), else that host's own <os>.* sizes."""
        own = hc.os.get(spec.key, spec)
        return (vcpus if vcpus is not None else own.vcpus,
                memory_gib if memory_gib is not None else own.memory_gib,
                float(own.disk_gib))

    def counted(views: list[tuple[HostConfig, PoolView]]) -> list[Candidate]:
        live, blocked = store.reservations.live(), placement_blocked(store)
        return [c for hc, view in views for c in candidates(
            [(hc, view)], spec.key, live, (sized(hc)[0], int(sized(hc)[1])), blocked)
            if c.key not in exclude]

    got: list[Slot] = []
    now_avail = 0
    down: list[int] = []
    for _attempt in range(3):
        views, down = views_of(hosts, view_of)
        cands = counted(views)
        avail = sum(c.slots for c in cands)
        now_avail = avail + len(got)
        plan = spread(cands, count - len(got))
        if sum(plan.values()) < count - len(got):
            break
        now = time.time()
        batches: list[tuple[str, list[Reservation], FreeSlots]] = []
        for i, n in plan.items():
            c = cands[i]
            cpus, mem, disk = sized(c.host)
            wanted = [Reservation(id=uuid.uuid4().hex, host_key=c.key, request_id=request_id,
                                  os=spec.key, vcpus=cpus, memory_gib=mem, disk_gib=disk,
                                  created=now, expires=now + ttl,
                                  owner=quota.owner if quota else "")
                      for _ in range(n)]
            # the store's atomic check: slots left on the member given its live reservations
            batches.append((c.key, wanted, functools.partial(
                slots_on, c.view, c.member, c.host, spec.key, sizes=(cpus, int(mem)))))
        # One atomic step for every host where the backend can (one commit, not one per host).
        taken_per_host = store.reservations.reserve_many(batches, quota)
        for (key, _, _), taken in zip(batches, taken_per_host, strict=True):
            c = next(c for c in cands if c.key == key)
            got.extend(Slot(c.host, c.member.uuid, c.member.name_label, r) for r in taken)
        if len(got) >= count:
            break
    if len(got) < count:  # refused: count again, as things stand now
        views, down = views_of(hosts, view_of)
        cands = counted(views)
        now_avail = sum(c.slots for c in cands) + len(got)
        shown = [f"xenhost{c.host.ref}/{c.member.name_label} {c.slots}"
                 f"{'' if c.member.enabled else ' (disabled)'}" for c in cands[:LOGGED_HOSTS]]
        if len(cands) > LOGGED_HOSTS:
            shown.append(f"(+{len(cands) - LOGGED_HOSTS} more)")
        log.info("no room for %d more %s VM(s); free slots: %s", count - len(got), spec.key,
                 ", ".join(shown) or "no host")
    return got, now_avail, down
