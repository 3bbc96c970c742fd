"""An owner's quota and what it uses of it, as the owner (or an admin) may see it."""

from __future__ import annotations

from dataclasses import dataclass

from dynvm.config import QuotaLimits
from dynvm.core import quota
from dynvm.core.callers import Caller
from dynvm.core.errors import NotFound
from dynvm.core.quota import Usage
from dynvm.core.services.base import Subject

__all__ = ["QuotaReport", "Quotas", "Usage"]


@dataclass(frozen=True)
class QuotaReport:
    owner: str
    limits: QuotaLimits  # None in a field: no limit
    usage: Usage  # VMs being built and VMs leased, as the store holds them


class Quotas(Subject):
    """`/api/v1/quota`."""

    def of(self, caller: Caller, owner: str | None = None) -> QuotaReport:
        """`owner`'s quota (the caller's own when None); another's only for an admin."""
        self.rt.touch()
        owner = owner or caller.owner
        if not caller.may_own(owner):
            raise NotFound(f"no quota visible for {owner}")
        cfg = self.rt.config()
        return QuotaReport(owner=owner, limits=cfg.quota_for(owner),
                           usage=quota.usage(self.ctx.store, cfg, owner))
