"""The usual cast for tests with `[auth]` on: two teams and an admin, and their tokens."""

from __future__ import annotations

from dynvm.core import tokens
from dynvm.core.services import Dynvm

OWNER, OTHER, ADMIN = "team-a", "team-b", "ops"
MODES = ("open", "mutating", "all")


def auth_section(mode: str) -> str:
    # Failed attempts are limited per client address; these tests make many on purpose.
    return f"\n[auth]\nlegacy={mode}\nfail.limit=100000\nfail.window.secs=60\n"


def make_tokens(svc: Dynvm) -> dict[str, str]:
    """Secrets of team-a, team-b and the admin `ops`, by owner."""
    out = {}
    for owner, admin in ((OWNER, False), (OTHER, False), (ADMIN, True)):
        out[owner], _ = tokens.create(svc.ctx.store, owner, admin=admin)
    return out


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
