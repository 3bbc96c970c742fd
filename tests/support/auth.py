"""The usual cast for tests with `[auth]` on: two teams and an admin, and their tokens."""

from __future__ import annotations

from pathlib import Path

from dynvm.core import tokens
from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import open_tokens

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


def token_for(ini: Path, owner: str, admin: bool = False) -> str:
    """A token of `owner` in the store `ini` names, made as `dynvm token create` makes
    it (through the same bootstrap), without starting a process for it."""
    admin_port = open_tokens(str(ini))
    try:
        secret, _ = admin_port.create(owner, admin=admin)
    finally:
        admin_port.close()
    return secret
