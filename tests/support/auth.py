"""Services with `[auth]` on, and tokens for the usual cast: two teams and an admin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dynvm.core import tokens
from dynvm.core.background import Timings
from dynvm.core.service import Dynvm
from dynvm.runtime.bootstrap import build_service

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


@contextmanager
def auth_service(ini: Path, timings: Timings) -> Iterator[Dynvm]:
    """A service of `ini` (with an `auth_section`); everything it leased is released after."""
    from tests.service.conftest import _release_everything

    svc = build_service(str(ini), timings=timings)
    try:
        yield svc
    finally:
        _release_everything(svc)
        svc.close()
