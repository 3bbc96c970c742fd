"""Tokens on the legacy routes, as `[auth] legacy=` asks: open (default), mutating, all.

With a token, a legacy request acts for the token's owner: VMs it builds
belong to that owner, and it may release or re-expire only VMs of its owner
(an admin any), or VMs no token owner holds (those built anonymously).
"""

from __future__ import annotations

from flask import current_app, g, request

from dynvm.api.v1 import auth
from dynvm.core import tokens
from dynvm.core.release import leases_named, names_for
from dynvm.core.vms import Forbidden

MUTATING = frozenset({"legacy.getservers", "legacy.releaseservers", "legacy.setexpiry"})


def _names() -> list[str]:
    rest = (request.view_args or {}).get("rest", "")
    if request.endpoint == "legacy.releaseservers":
        name = rest.split("/")[0]
    else:
        name = rest.rpartition("/")[0]
    count = request.args.get("count", "")
    n = int(count) if count.isascii() and count.isdigit() and 0 < int(count) <= 1000 else None
    return names_for(name, n) if name else []


def check() -> None:
    """before_request for every non-v1 route; raises 401/403/429 as legacy text answers."""
    auth.strip_token_param()  # whatever the mode: a token must never reach a log line
    endpoint = request.endpoint or ""
    if not endpoint.startswith("legacy."):
        return
    svc = current_app.extensions["dynvm"]
    if not hasattr(svc, "ctx"):  # a core without a store (the HTTP layer's own tests)
        return
    cfg = svc.config()
    mode = cfg.auth.legacy
    if mode == "open" or (mode == "mutating" and endpoint not in MUTATING):
        return
    caller = auth.authenticate(svc.ctx.store, cfg.auth.fail_limit, cfg.auth.fail_window_secs,
                               allow_param=True)
    g.dynvm_caller = caller
    if caller.admin or endpoint not in ("legacy.releaseservers", "legacy.setexpiry"):
        return
    owners = tokens.known_owners(svc.ctx.store)
    for lease in leases_named(svc.ctx, _names()):
        if lease.owner in owners and not caller.may(lease):
            raise Forbidden(f"Error: VM {lease.name} belongs to another owner")
