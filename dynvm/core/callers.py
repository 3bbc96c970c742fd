"""Who is asking, and what they may act on or see: one rule for every API.

A VM, a request and a history document belong to an owner (the token owner
whose request built it; for a request without a token, the job's name). A
caller may act on and see what belongs to its own owner; an admin on all.
The legacy routes, /api/v1 and the dashboard all decide with these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dynvm.core.errors import Forbidden
from dynvm.core.store import Lease, RequestRecord, Store
from dynvm.core.tokens import known_owners


@dataclass(frozen=True)
class Caller:
    """Who is asking: a token's owner, and whether it is an admin token."""

    owner: str
    admin: bool = False

    def may_own(self, owner: str) -> bool:
        """May act on (and see) what belongs to `owner`."""
        return self.admin or owner == self.owner

    def may(self, lease: Lease) -> bool:
        return self.may_own(lease.owner)


# No [auth] in force (legacy=open): every caller sees everything, as before tokens existed.
EVERYONE = Caller(owner="", admin=True)


def request_owner(rec: RequestRecord) -> str:
    """Whose request this is: the token's owner, else (requests without one) the job's name."""
    return str(rec.detail.get("owner") or rec.name)


def doc_owner(doc: Mapping[str, Any]) -> str:
    """Who a history document's VM belonged to (`username` in documents before `owner`)."""
    return str(doc.get("owner", doc.get("username", "")))


def check_may_act(store: Store, caller: Caller | None, leases: Iterable[Lease]) -> None:
    """Raise Forbidden unless `caller` may act on every one of `leases` (legacy rule).

    `leases` must be exactly what the request then acts on. A VM of a token
    owner is protected from every other token owner; a VM built without a
    token (its owner is the job's name, nobody's token) stays releasable by
    anyone, as before tokens existed. No caller (legacy=open): no check.
    """
    if caller is None or caller.admin:
        return
    leases = list(leases)
    if all(caller.may(lease) for lease in leases):
        return
    protected = known_owners(store)
    for lease in leases:
        if lease.owner in protected and not caller.may(lease):
            raise Forbidden(f"Error: VM {lease.name} belongs to another owner")
